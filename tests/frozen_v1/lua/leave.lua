-- leave.lua: an instance that stops hands what its taken list still holds back to the
-- input list, first in line, and removes itself from the instances, in one step (an
-- instance must never leave the set while its taken list holds events: nobody would
-- reclaim them).
--
-- KEYS[1]  instances sorted set of the watcher
-- KEYS[2]  input list
-- KEYS[3]  taken list of the instance
-- KEYS[4]  beats sorted set of the watcher
-- ARGV[1]  name of the instance
--
-- Returns the number of events handed back.
local moved = 0
while redis.call('LMOVE', KEYS[3], KEYS[2], 'LEFT', 'RIGHT') do
    moved = moved + 1
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return moved
