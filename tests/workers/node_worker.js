// A resc worker in Node, with no dependency: it speaks RESP over a socket.
//
//   node node_worker.js HOST PORT QUEUE DONE_LIST COUNT
//
// It takes COUNT tasks from QUEUE as resc workers do (BRPOPLPUSH into its taken list),
// "measures" each one, pushes its done event as an envelope (the task string with a
// payload: rules read it as ${data.<field>}) onto DONE_LIST, and forgets it from its
// taken list. The envelope is the one docs/data.md describes.
"use strict";
const net = require("net");

const [host, port, queue, doneList, count] = process.argv.slice(2);
const taken = `${queue}/taken/node`;

function encode(args) {
  let out = `*${args.length}\r\n`;
  for (const a of args) out += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
  return out;
}

// One reply at a time: an integer, a status, an error or a bulk string (enough here).
function readReply(buffer) {
  const end = buffer.indexOf("\r\n");
  if (end < 0) return null;
  const kind = buffer[0], line = buffer.slice(1, end);
  if (kind === "$") {
    const size = Number(line);
    if (size < 0) return { value: null, rest: buffer.slice(end + 2) };
    if (buffer.length < end + 2 + size + 2) return null;
    return { value: buffer.slice(end + 2, end + 2 + size), rest: buffer.slice(end + 4 + size) };
  }
  if (kind === "-") throw new Error(line);
  return { value: line, rest: buffer.slice(end + 2) };
}

const socket = net.connect(Number(port), host);
let buffer = "", waiting = null;
socket.setEncoding("utf8");
socket.on("data", (chunk) => {
  buffer += chunk;
  const reply = readReply(buffer);
  if (reply && waiting) {
    buffer = reply.rest;
    const resolve = waiting;
    waiting = null;
    resolve(reply.value);
  }
});
const call = (...args) => new Promise((resolve) => { waiting = resolve; socket.write(encode(args)); });

(async () => {
  for (let i = 0; i < Number(count); i++) {
    const task = await call("BRPOPLPUSH", queue, taken, "10");
    if (task === null) throw new Error(`no task in ${queue} within 10 s`);
    const data = { worker: "node", length: task.length, path: `/out/${task}.json` };
    const envelope = JSON.stringify({ resc: 1, event: task, data });
    await call("LPUSH", doneList, envelope);
    await call("LREM", taken, "1", task);
  }
  socket.end();
})().catch((e) => { console.error(e); process.exit(1); });
