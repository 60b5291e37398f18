-- take.lua: move up to ARGV[1] events from the right end (oldest) of the input list
-- to the left end of this instance's taken list, without blocking.
--
-- KEYS[1]  input list
-- KEYS[2]  taken list of this instance
-- ARGV[1]  maximum number of events to take
--
-- Returns the events taken, oldest first.
local n = tonumber(ARGV[1])
if n < 1 then
    return {}  -- LRANGE -0 -1 would be the whole list
end
local events = redis.call('LRANGE', KEYS[1], -n, -1)
local count = #events
if count == 0 then
    return events
end
redis.call('LTRIM', KEYS[1], 0, -count - 1)
-- events is newest..oldest; push oldest first so the taken list reads newest..oldest,
-- the same order a run of BLMOVE RIGHT LEFT leaves.
local oldest_first = {}
for i = count, 1, -1 do
    oldest_first[#oldest_first + 1] = events[i]
end
chunked('LPUSH', KEYS[2], oldest_first)
return oldest_first
