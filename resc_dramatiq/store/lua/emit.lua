-- emit.lua: write a Dramatiq message's done or failure event, once per message.
--
-- KEYS[1]  the message's marker (shared with an inline commit of the same message)
-- KEYS[2]  the list the event goes to (done list or failure list)
-- KEYS[3]  dedup set to release the task from (only written when ARGV[4] is '1')
--
-- ARGV[1]  the event (the task string)
-- ARGV[2]  the message id (the marker's content)
-- ARGV[3]  time to live of the marker, in ms
-- ARGV[4]  '1' to ZREM the task from KEYS[3]
--
-- Returns {1} when written now, {2} when this message's event was written before (a
-- retry after a lost reply, or the message redelivered after its worker was killed),
-- {-2, key index, type found, type needed} when a key holds another type (nothing
-- written: the types are checked first, a Lua error halfway would keep earlier writes).
local MARKER, LIST, SET = 1, 2, 3
local EVENT, MESSAGE_ID, MARKER_TTL_MS, RELEASE = 1, 2, 3, 4
local WRITTEN, ALREADY_WRITTEN, WRONG_TYPE = 1, 2, -2

if redis.call('EXISTS', KEYS[MARKER]) == 1 then return {ALREADY_WRITTEN} end
local release = ARGV[RELEASE] == '1'
local needs = {{LIST, 'list'}}
if release then needs[2] = {SET, 'zset'} end
for _, need in ipairs(needs) do
    local found = redis.call('TYPE', KEYS[need[1]])['ok']
    if found ~= 'none' and found ~= need[2] then return {WRONG_TYPE, need[1], found, need[2]} end
end
if release then redis.call('ZREM', KEYS[SET], ARGV[EVENT]) end
redis.call('LPUSH', KEYS[LIST], ARGV[EVENT])
redis.call('SET', KEYS[MARKER], ARGV[MESSAGE_ID] .. ' 0 0 0 0', 'PX', ARGV[MARKER_TTL_MS])
return {WRITTEN}
