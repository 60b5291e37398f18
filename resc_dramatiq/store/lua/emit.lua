-- emit.lua: write a Dramatiq message's done or failure event, once per message.
--
-- KEYS[1]  markers of the list: a sorted set of message ids scored by the time (ms,
--          Redis clock) their event was written (shared with inline commits)
-- KEYS[2]  the list the event goes to (done list or failure list)
-- KEYS[3]  dedup set to release the task from (only written when ARGV[4] is '1')
--
-- ARGV[1]  the event (the task string)
-- ARGV[2]  the message id
-- ARGV[3]  time to live of a marker, in ms (older markers are forgotten, a bounded
--          number per call)
-- ARGV[4]  '1' to ZREM the task from KEYS[3]
--
-- Returns {1} when written now, {2} when this message's event was written before (a
-- retry after a lost reply, or the message redelivered after its worker was killed),
-- {-2, key index, type found, type needed} when a key holds another type (nothing
-- written: the types are checked first, a Lua error halfway would keep earlier writes).
local MARKERS, LIST, SET = 1, 2, 3
local EVENT, MESSAGE_ID, MARKER_TTL_MS, RELEASE = 1, 2, 3, 4
local WRITTEN, ALREADY_WRITTEN, WRONG_TYPE = 1, 2, -2
-- most expired markers forgotten per call
local FORGET_CHUNK = 100

local release = ARGV[RELEASE] == '1'
local needs = {{MARKERS, 'zset'}, {LIST, 'list'}}
if release then needs[3] = {SET, 'zset'} end
for _, need in ipairs(needs) do
    local found = redis.call('TYPE', KEYS[need[1]])['ok']
    if found ~= 'none' and found ~= need[2] then return {WRONG_TYPE, need[1], found, need[2]} end
end
if redis.call('ZSCORE', KEYS[MARKERS], ARGV[MESSAGE_ID]) then return {ALREADY_WRITTEN} end

if release then redis.call('ZREM', KEYS[SET], ARGV[EVENT]) end
redis.call('LPUSH', KEYS[LIST], ARGV[EVENT])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[MARKERS], now_ms, ARGV[MESSAGE_ID])
local cutoff = '(' .. (now_ms - tonumber(ARGV[MARKER_TTL_MS]))
local old = redis.call('ZRANGEBYSCORE', KEYS[MARKERS], '-inf', cutoff, 'LIMIT', 0, FORGET_CHUNK)
if #old > 0 then redis.call('ZREM', KEYS[MARKERS], unpack(old)) end
return {WRITTEN}
