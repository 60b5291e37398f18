-- emit.lua: write a Dramatiq message's done or failure event, once per message.
--
-- KEYS[1]  markers of the list: a sorted set of message ids scored by the time (ms,
--          Redis clock) their event was written (shared with inline commits)
-- KEYS[2]  the list the event goes to (done list or failure list)
-- KEYS[3]  dedup set to release the task from (only written when ARGV[4] is '1')
--
-- ARGV[1]  what is pushed: the event (the task string), or its envelope (with a payload)
-- ARGV[2]  the message id
-- ARGV[3]  time to live of a marker, in ms (older markers are forgotten, a bounded
--          number per call)
-- ARGV[4]  '1' to ZREM the task from KEYS[3]
-- ARGV[5]  the task string released from KEYS[3]
--
-- Returns {1} when written now, {2} when this message's event was written before (a
-- retry after a lost reply, or the message redelivered after its worker was killed),
-- {-2, key index, type found, type needed} when a key holds another type (nothing
-- written: the types are checked first, a Lua error halfway would keep earlier writes).
local MARKERS, LIST, SET = 1, 2, 3
local EVENT, MESSAGE_ID, MARKER_TTL_MS, RELEASE, TASK = 1, 2, 3, 4, 5

local release = ARGV[RELEASE] == '1'
local needs = {{MARKERS, 'zset'}, {LIST, 'list'}}
if release then needs[3] = {SET, 'zset'} end
local problem = refusal(needs)
if problem then return problem end
if redis.call('ZSCORE', KEYS[MARKERS], ARGV[MESSAGE_ID]) then return {BEFORE} end

if release then redis.call('ZREM', KEYS[SET], ARGV[TASK]) end
redis.call('LPUSH', KEYS[LIST], ARGV[EVENT])
mark(KEYS[MARKERS], ARGV[MESSAGE_ID], now_ms(), ARGV[MARKER_TTL_MS])
return {DONE}
