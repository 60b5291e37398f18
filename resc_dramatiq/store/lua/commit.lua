-- commit.lua: commit one batch of one watcher, all or nothing.
--
-- KEYS[1]  taken list of this instance (this batch at its right end, newest first)
-- KEYS[2]  stats hash of the watcher
-- KEYS[3]  input list (failed events retried go back to its left end)
-- KEYS[4]  attempts hash (event -> failed attempts)
-- KEYS[5]  dead-letter list
-- KEYS[6]  unmatched list (only written when ARGV[11] is '1')
-- KEYS[7]  commit marker of this instance: "<batch id> <queued> <dedup> <retried> <dead>"
-- KEYS[8..] the tasks' keys, each once: dedup sets, target lists, Dramatiq messages hashes
--
-- ARGV[1]  number of events in the batch N
-- ARGV[2]  newest event of the batch (expected n-th from the right end of the taken list)
-- ARGV[3]  oldest event (expected at the right end)
-- ARGV[4]  dedup score: the time the batch was taken, in whole unix seconds
-- ARGV[5]  listener channel, '' for none
-- ARGV[6]  taken queue name as configured (prefix of the notification lines)
-- ARGV[7]  number of tasks T
-- ARGV[8]  number of failed events F
-- ARGV[9]  number of unmatched events U
-- ARGV[10] maximum attempts before an event is dead-lettered
-- ARGV[11] '1' to keep unmatched events in KEYS[6]
-- ARGV[12] number of rule-counter pairs R (field, increment)
-- ARGV[13] batch id (unique per computed batch)
-- ARGV[14] time to live of the commit marker, in ms
-- ARGV[15] the T tasks, one MessagePack array (one argument: far cheaper to send than
--          nine per task), each {kind ('r' raw, 'd' Dramatiq), KEYS index of its dedup
--          set (0: none), of its target list, of its messages hash (0: raw), task,
--          payload ('' for raw), Redis message id ('' for raw), index of its event in
--          the batch (0: oldest), rule name (counted as '<rule>|queued' / '|deduplicated')}
-- then F groups of 3: event, dead-letter entry (JSON), rule name
-- then U events
-- then R pairs: stats field, increment
-- The events themselves are read from the taken list.
--
-- Returns {status, queued, deduplicated, retried, dead}; status 1 committed now,
-- 2 this very batch was committed before (a retry after a lost reply; the counts are
-- the first commit's), -1 the taken list no longer holds this batch (another instance
-- reclaimed it). Returns {-2, key index, type found, type needed} when a key it would
-- write holds another type: checked before any write, so nothing is half-done.
local marker = redis.call('GET', KEYS[7])
if marker then
    local id, q, d, r, x = string.match(marker, '^(%S+) (%d+) (%d+) (%d+) (%d+)$')
    if id == ARGV[13] then
        return {2, tonumber(q), tonumber(d), tonumber(r), tonumber(x)}
    end
end

-- the batch is the n oldest events of the taken list (the router may already have
-- taken the next batch, to the left of it, while this commit was on its way)
local taken = KEYS[1]
local n = tonumber(ARGV[1])
if redis.call('LLEN', taken) < n
    or redis.call('LINDEX', taken, -n) ~= ARGV[2]
    or redis.call('LINDEX', taken, -1) ~= ARGV[3] then
    return {-1, 0, 0, 0, 0}
end

local tasks, failed, unmatched = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])

-- every key written must be absent or of the type written: a Lua error halfway would
-- keep the writes made before it
local checked = {}
local function wrong(index, needed)
    local key = KEYS[index]
    if checked[key] == nil then
        checked[key] = redis.call('TYPE', key)['ok']
    end
    local found = checked[key]
    if found ~= 'none' and found ~= needed then
        return {-2, index, found, needed}
    end
    return nil
end
local needs = {{2, 'hash'}, {4, 'hash'}}
if failed > 0 then
    needs[#needs + 1] = {3, 'list'}
    needs[#needs + 1] = {5, 'list'}
end
if unmatched > 0 and ARGV[11] == '1' then needs[#needs + 1] = {6, 'list'} end
for _, need in ipairs(needs) do
    local problem = wrong(need[1], need[2])
    if problem then return problem end
end
local planned = tasks > 0 and cmsgpack.unpack(ARGV[15]) or {}
for _, t in ipairs(planned) do
    local problem = (t[2] > 0 and wrong(t[2], 'zset')) or wrong(t[3], 'list')
        or (t[4] > 0 and wrong(t[4], 'hash'))
    if problem then return problem end
end

local score = ARGV[4]
local channel = ARGV[5]
local prefix = ARGV[6]
local max_attempts = tonumber(ARGV[10])
local pairs_count = tonumber(ARGV[12])
local a = 16
-- the batch's events, newest first: the event of index i (0: oldest) is events[n - i]
local events = redis.call('LRANGE', taken, -n, -1)

local queued, deduplicated = 0, 0
local per_rule = {}
local function count(rule, what)
    local field = rule .. '|' .. what
    per_rule[field] = (per_rule[field] or 0) + 1
end
for _, t in ipairs(planned) do
    local task = t[5]
    if t[2] == 0 or redis.call('ZADD', KEYS[t[2]], 'NX', score, task) == 1 then
        if t[1] == 'r' then
            redis.call('LPUSH', KEYS[t[3]], task)
        else
            redis.call('HSET', KEYS[t[4]], t[7], t[6])
            redis.call('RPUSH', KEYS[t[3]], t[7])
        end
        queued = queued + 1
        count(t[9], 'queued')
        if channel ~= '' then
            local event = events[n - t[8]]
            redis.call('PUBLISH', channel, prefix .. ' TRIGGER ' .. event .. ' -> ' .. task)
        end
    else
        deduplicated = deduplicated + 1
        count(t[9], 'deduplicated')
    end
end

-- failed events: back in line (not done yet) or dead-lettered (done for good)
local retried, dead = 0, 0
local failed_events = {}
local again = {}
for _ = 1, failed do
    local event = ARGV[a]
    failed_events[event] = true
    if redis.call('HINCRBY', KEYS[4], event, 1) >= max_attempts then
        redis.call('HDEL', KEYS[4], event)
        redis.call('LPUSH', KEYS[5], ARGV[a + 1])
        redis.call('HINCRBY', KEYS[2], ARGV[a + 2] .. '|dead', 1)
        dead = dead + 1
    else
        redis.call('LPUSH', KEYS[3], event)
        again[event] = true
        retried = retried + 1
        count(ARGV[a + 2], 'retried')
    end
    a = a + 3
end

if unmatched > 0 then
    if ARGV[11] == '1' then
        for i = a, a + unmatched - 1, 4000 do
            redis.call('LPUSH', KEYS[6], unpack(ARGV, i, math.min(i + 3999, a + unmatched - 1)))
        end
    end
    redis.call('HINCRBY', KEYS[2], 'unmatched', unmatched)
    a = a + unmatched
end

for _ = 1, pairs_count do
    redis.call('HINCRBY', KEYS[2], ARGV[a], ARGV[a + 1])
    a = a + 2
end
for field, increment in pairs(per_rule) do
    redis.call('HINCRBY', KEYS[2], field, increment)
end

-- an event that failed before and went through now starts afresh next time
if redis.call('EXISTS', KEYS[4]) == 1 then
    for _, event in ipairs(events) do
        if not failed_events[event] then
            redis.call('HDEL', KEYS[4], event)
        end
    end
end

redis.call('LTRIM', taken, 0, -n - 1)
if channel ~= '' then
    for i = n, 1, -1 do
        if not again[events[i]] then
            redis.call('PUBLISH', channel, prefix .. ' DONE ' .. events[i])
        end
    end
end
redis.call('HINCRBY', KEYS[2], 'events', n)
redis.call('HINCRBY', KEYS[2], 'queued', queued)
redis.call('HINCRBY', KEYS[2], 'deduplicated', deduplicated)
if retried > 0 then redis.call('HINCRBY', KEYS[2], 'retried', retried) end
if dead > 0 then redis.call('HINCRBY', KEYS[2], 'dead', dead) end
redis.call('SET', KEYS[7],
    ARGV[13] .. ' ' .. queued .. ' ' .. deduplicated .. ' ' .. retried .. ' ' .. dead,
    'PX', ARGV[14])
return {1, queued, deduplicated, retried, dead}
