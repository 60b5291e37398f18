-- apply.lua: apply one part of an outbox entry, once: the tasks of one committed batch
-- whose keys fall in one hash slot of a Redis Cluster, other than the watcher's.
--
-- The watcher's commit (commit.lua) released the batch's events and recorded the parts
-- in its outbox; this script runs in the part's slot. Its marker is in that slot too,
-- so the tasks and the marker are written together: a part applied again (a retry after
-- a lost reply, another router finishing a dead one's entry) writes nothing.
--
-- KEYS[1]  applied: hash of the parts applied in this slot, batch id -> result
--          ("<queued> <deduplicated> <position>..." : the positions, from 1, of the
--          deduplicated tasks), for a repeated call to answer as the first did
-- KEYS[2]  applied times: sorted set batch id -> when (ms, Redis clock); entries older
--          than ARGV[4] are forgotten from both keys, a bounded number per call
-- KEYS[3..] the part's keys, each once: dedup sets, target lists, messages hashes
--
-- ARGV[1]  batch id
-- ARGV[2]  dedup score: the time the batch was taken, whole unix seconds
-- ARGV[3]  the tasks, one MessagePack array, each {kind ('r' raw, 'd' Dramatiq), KEYS
--          index of its dedup set (0: none), of its target list, of its messages hash
--          (0: raw), task, payload ('' raw), Redis message id ('' raw), its event (the
--          text of TRIGGER lines, '' without a channel), rule name (unused here)}
-- ARGV[4]  time to live of a marker, in ms
-- ARGV[5]  listener channel, '' for none
-- ARGV[6]  taken queue name as configured (prefix of the notification lines)
--
-- Returns {1 applied now | 2 applied before, queued, deduplicated, position...}, or
-- {-2, key index, type found, type needed} when a key holds another type (checked
-- before any write: nothing is half-done).

local APPLIED, APPLIED_AT = 1, 2
local ID, SCORE, PLANNED, MARKER_TTL_MS, CHANNEL, PREFIX = 1, 2, 3, 4, 5, 6
local KIND, SET, QUEUE, MESSAGES, TASK, PAYLOAD, MESSAGE_ID, EVENT = 1, 2, 3, 4, 5, 6, 7, 8
local APPLIED_NOW, APPLIED_BEFORE, WRONG_TYPE = 1, 2, -2
-- most expired markers forgotten per call
local FORGET_CHUNK = 100

local before = redis.call('HGET', KEYS[APPLIED], ARGV[ID])
if before then
    local reply = {APPLIED_BEFORE}
    for number in string.gmatch(before, '%d+') do reply[#reply + 1] = tonumber(number) end
    return reply
end

local checked = {}
local function wrong(index, needed)
    local key = KEYS[index]
    if checked[key] == nil then checked[key] = redis.call('TYPE', key)['ok'] end
    local found = checked[key]
    if found ~= 'none' and found ~= needed then return {WRONG_TYPE, index, found, needed} end
    return nil
end
local problem = wrong(APPLIED, 'hash') or wrong(APPLIED_AT, 'zset')
if problem then return problem end
local planned = cmsgpack.unpack(ARGV[PLANNED])
for _, t in ipairs(planned) do
    problem = (t[SET] > 0 and wrong(t[SET], 'zset')) or wrong(t[QUEUE], 'list')
        or (t[MESSAGES] > 0 and wrong(t[MESSAGES], 'hash'))
    if problem then return problem end
end

local score, channel, prefix = ARGV[SCORE], ARGV[CHANNEL], ARGV[PREFIX]
local queued, deduplicated_at = 0, {}
for position, t in ipairs(planned) do
    local task = t[TASK]
    if t[SET] == 0 or redis.call('ZADD', KEYS[t[SET]], 'NX', score, task) == 1 then
        if t[KIND] == 'r' then
            redis.call('LPUSH', KEYS[t[QUEUE]], task)
        else
            redis.call('HSET', KEYS[t[MESSAGES]], t[MESSAGE_ID], t[PAYLOAD])
            redis.call('RPUSH', KEYS[t[QUEUE]], t[MESSAGE_ID])
        end
        queued = queued + 1
        if channel ~= '' then
            redis.call('PUBLISH', channel, prefix .. ' TRIGGER ' .. t[EVENT] .. ' -> ' .. task)
        end
    else
        deduplicated_at[#deduplicated_at + 1] = position
    end
end

local result = queued .. ' ' .. #deduplicated_at
for _, position in ipairs(deduplicated_at) do result = result .. ' ' .. position end
redis.call('HSET', KEYS[APPLIED], ARGV[ID], result)
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[APPLIED_AT], now_ms, ARGV[ID])
local cutoff = '(' .. (now_ms - tonumber(ARGV[MARKER_TTL_MS]))
local old = redis.call('ZRANGEBYSCORE', KEYS[APPLIED_AT], '-inf', cutoff, 'LIMIT', 0, FORGET_CHUNK)
if #old > 0 then
    redis.call('ZREM', KEYS[APPLIED_AT], unpack(old))
    redis.call('HDEL', KEYS[APPLIED], unpack(old))
end

local reply = {APPLIED_NOW, queued, #deduplicated_at}
for _, position in ipairs(deduplicated_at) do reply[#reply + 1] = position end
return reply
