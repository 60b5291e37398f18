-- reclaim.lua: hand the taken list of an instance back to the input list, first in
-- line, if that instance is still expired (or ARGV[2] is '1': own list at start).
--
-- KEYS[1]  instances sorted set of the watcher
-- KEYS[2]  input list
-- KEYS[3]  taken list of the instance to reclaim
-- KEYS[4]  beats sorted set of the watcher (the instance's last beat is dropped with it)
-- ARGV[1]  name of that instance
-- ARGV[2]  '1' to reclaim regardless of the heartbeat (this instance's own list)
--
-- Returns the number of events handed back, or -1 when the instance is alive again.
if ARGV[2] ~= '1' then
    local t = redis.call('TIME')
    local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
    if expiry and tonumber(expiry) >= now_ms then
        return -1
    end
    redis.call('ZREM', KEYS[1], ARGV[1])
    redis.call('ZREM', KEYS[4], ARGV[1])
end
local moved = 0
-- newest at the left: moving left to right onto the input's right end puts the
-- oldest event rightmost, where the next take finds it first.
while redis.call('LMOVE', KEYS[3], KEYS[2], 'LEFT', 'RIGHT') do
    moved = moved + 1
end
return moved
