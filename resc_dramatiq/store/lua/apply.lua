#!lua flags=allow-cross-slot-keys
-- apply.lua: apply parts of an outbox entry, each once: the tasks of one committed batch
-- whose keys fall in one hash slot of a Redis Cluster, other than the watcher's.
--
-- The watcher's commit (commit.lua) released the batch's events and recorded the parts
-- in its outbox; this script runs on the node that serves the parts' slots (one call
-- for all the parts a node serves: the flag above lets one script touch keys of several
-- slots of one node; a server without it gets one call per part, the flag line left
-- out). Each part's marker is in its slot, so a part's tasks and its marker are written
-- together: a part applied again (a retry after a lost reply, another router finishing
-- a dead one's entry) writes nothing.
--
-- ARGV[1]  the header, a MessagePack map: id (the batch id), score (the dedup score:
--          when the batch was taken, unix s), marker_ttl_ms, channel (nil: none),
--          prefix (of the notification lines), keys (below), parts: per part its base:
--          its keys are keys[base + 1 ..]
-- ARGV[2]  a MessagePack array holding, per part, the array of its planned tasks
--          (contract.TASK_FIELDS; their event is its text, '' without a channel) whose
--          key indexes count from keys[base + 1]: each part's tasks as the outbox keeps
--          them, put together (one unpack rather than one per part)
-- keys     per part: applied (hash batch id -> "<queued> <deduplicated> <position>...",
--          for a repeated call to answer as the first did), applied times (sorted set
--          batch id -> when, ms; older than marker_ttl_ms forgotten, a bounded number
--          per call), then the part's keys, each once. A cluster refuses declared keys
--          of several slots (CROSSSLOT) before the flag is looked at: KEYS[1] is the
--          first part's applied key (it routes the call to the node), the others are
--          named in the header; the server checks each one is on this node.
--
-- Returns per part {DONE | BEFORE, queued, deduplicated, position...} (the positions,
-- from 1, of its deduplicated tasks), or {WRONG_TYPE, key index, type found, type
-- needed} when a key holds another type: the tasks' keys and the applied hashes are
-- checked before any write, so no task and no marker is written then (the applied
-- times of some parts may be: harmless, they only say when a marker may be forgotten).

local h = cmsgpack.unpack(ARGV[1])
K = h.keys
local id, bases = h.id, h.parts
local tasks_of = cmsgpack.unpack(ARGV[2])
-- every part's checks before any write: its marker read (a part applied before is
-- only answered), then the types of the keys it would write
-- A part is its slot's marker (its applied hash, the batch id): a part listed again in
-- this call (same: the index of its first listing) is answered as that one.
local before, fresh, same, first_of = {}, {}, {}, {}  -- fresh: the parts to apply now
for i, base in ipairs(bases) do
    local applied = K[base + 1]
    if first_of[applied] then
        same[i] = first_of[applied]
    else
        first_of[applied] = i
        -- the applied hash's type is checked by reading it (a wrong type answers an error)
        local found = redis.pcall('HGET', applied, id)
        if type(found) == 'table' then return wrong_type(base + 1, 'hash') end
        before[i] = found
        if not found then fresh[#fresh + 1] = i end
    end
end
-- a key that does not exist holds no other type: a part's key types are asked only
-- when one EXISTS of its keys (one slot) finds some (in a layout that gives each task
-- a slot of its own, its queue and dedup set are mostly new)
local function some_exist(first, last)
    for from = first, last, PUSH_CHUNK do
        if redis.call('EXISTS', unpack(K, from, math.min(from + PUSH_CHUNK - 1, last))) > 0 then
            return true
        end
    end
    return false
end
for _, i in ipairs(fresh) do
    if some_exist(bases[i] + 3, bases[i + 1] or #K) then
        local problem = tasks_refusal(tasks_of[i], bases[i])
        if problem then return problem end
    end
end
-- the applied times first: a write that checks its key's type itself
local now = now_ms()
for _, i in ipairs(fresh) do
    local added = redis.pcall('ZADD', K[bases[i] + 2], now, id)
    if type(added) == 'table' then
        if not string.find(added.err, 'WRONGTYPE', 1, true) then return added end
        return wrong_type(bases[i] + 2, 'zset')
    end
end

local channel, prefix = h.channel, h.prefix
-- one writer for every part (their keys differ: one slot each), flushed before the
-- markers are written; the counts of the part being written, for the callbacks
local w = writes()
local queued, deduplicated_at = 0, {}
local function on_queued(_, t)
    queued = queued + 1
    if channel then
        redis.call('PUBLISH', channel, prefix .. ' TRIGGER ' .. t[T_EVENT] .. ' -> ' .. t[T_TASK])
    end
end
local function on_skipped(position) deduplicated_at[#deduplicated_at + 1] = position end
local replies, results = {}, {}
for i, base in ipairs(bases) do
    local reply
    local earlier = before[i] or (same[i] and (before[same[i]] or results[same[i]]))
    if earlier then
        reply = {BEFORE}
        for number in string.gmatch(earlier, '%d+') do reply[#reply + 1] = tonumber(number) end
    else
        queued = 0
        if #deduplicated_at > 0 then deduplicated_at = {} end
        write_tasks(tasks_of[i], base, h.score, on_queued, on_skipped, w)
        reply = {DONE, queued, #deduplicated_at}
        for _, position in ipairs(deduplicated_at) do reply[#reply + 1] = position end
        results[i] = table.concat(reply, ' ', 2)
    end
    replies[i] = reply
end
w.flush()
local ttl_ms = h.marker_ttl_ms
for i, base in ipairs(bases) do
    if results[i] then
        redis.call('HSET', K[base + 1], id, results[i])
        -- one part in FORGET_EVERY forgets its slot's old markers (up to FORGET_CHUNK,
        -- more than it adds meanwhile): a call may hold hundreds of parts
        if (now + i) % FORGET_EVERY == 0 then forget(K[base + 2], now, ttl_ms, K[base + 1]) end
    end
end
return replies
