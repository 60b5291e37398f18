-- settle.lua: end an outbox entry once every part of it is applied, and count its tasks.
--
-- Runs in the watcher's slot. Only the call that removes the entry counts, so an entry
-- settled twice (its owner and another router finishing it at once) is counted once.
--
-- KEYS[1]  outbox hash of the watcher (batch id -> entry)
-- KEYS[2]  outbox times (batch id -> when it was committed, ms)
-- KEYS[3]  stats hash of the watcher
-- KEYS[4]  history hash of the current minute (the counters are added there too)
--
-- ARGV[1]  batch id
-- ARGV[2]  time to live of the history hash, in seconds
-- ARGV[3..] stats field, increment pairs
--
-- Returns 1 when the entry was settled now, 0 when it had been before.
local OUTBOX, OUTBOX_AT, STATS, HISTORY = 1, 2, 3, 4
local ID, HISTORY_TTL_S, FIRST_PAIR = 1, 2, 3

redis.call('ZREM', KEYS[OUTBOX_AT], ARGV[ID])
if redis.call('HDEL', KEYS[OUTBOX], ARGV[ID]) == 0 then return 0 end
for i = FIRST_PAIR, #ARGV, 2 do
    redis.call('HINCRBY', KEYS[STATS], ARGV[i], ARGV[i + 1])
    redis.call('HINCRBY', KEYS[HISTORY], ARGV[i], ARGV[i + 1])
end
if #ARGV >= FIRST_PAIR then redis.call('EXPIRE', KEYS[HISTORY], ARGV[HISTORY_TTL_S]) end
return 1
