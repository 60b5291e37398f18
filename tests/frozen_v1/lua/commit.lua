-- commit.lua: commit one planned batch of one watcher, all or nothing.
--
-- Two modes, one script:
--   'taken'   (the router) the batch's events sit at the right end of the instance's
--             taken list; they are checked to still be there, and removed;
--   'message' (a worker routing a done event inline) the one event comes in ARGV; the
--             Dramatiq message's id is recorded in the done list's markers, so a retried
--             call after a lost reply, or the same message redelivered after a worker was
--             killed, writes nothing.
--
-- KEYS[1]  taken list of this instance (mode 'message': unused, the marker is passed)
-- KEYS[2]  stats hash of the watcher
-- KEYS[3]  input list (failed events retried go back to its left end)
-- KEYS[4]  attempts hash (event -> failed attempts)
-- KEYS[5]  dead-letter list
-- KEYS[6]  unmatched list (only written when ARGV[11] is '1')
-- KEYS[7]  mode 'taken': the instance's marker, "<id> <queued> <dedup> <retried> <dead>"
--          of its last commit; mode 'message': the done list's markers, a sorted set of
--          message ids scored by the time (ms, Redis clock) they were committed
-- KEYS[8]  dedup set to release the event from (only written when ARGV[16] is '1')
-- KEYS[9]  history hash of the minute the batch was taken (every counter of KEYS[2] is
--          also added here; it expires ARGV[19] seconds after the minute's last commit)
-- KEYS[10] outbox hash of the watcher: batch id -> the parts of the batch in other hash
--          slots of a Redis Cluster (only written when ARGV[20] is not '')
-- KEYS[11] outbox times: batch id -> when it was committed (ms, Redis clock)
-- KEYS[12..] the tasks' keys, each once: dedup sets, target lists, Dramatiq messages hashes
--
-- ARGV[1]  number of events in the batch N (mode 'message': 1)
-- ARGV[2]  newest event of the batch (expected N-th from the right end of the taken list)
-- ARGV[3]  oldest event (expected at the right end); mode 'message': the event
-- ARGV[4]  dedup score: the time the batch was taken, in whole unix seconds
-- ARGV[5]  listener channel, '' for none
-- ARGV[6]  taken queue name as configured (prefix of the notification lines)
-- ARGV[7]  number of tasks T
-- ARGV[8]  number of failed events F
-- ARGV[9]  number of unmatched events U
-- ARGV[10] maximum attempts before an event is dead-lettered
-- ARGV[11] '1' to keep unmatched events in KEYS[6]
-- ARGV[12] number of rule-counter pairs R (field, increment)
-- ARGV[13] id of the commit: the batch id (mode 'taken'), the message id ('message')
-- ARGV[14] time to live of a marker, in ms (older message markers are forgotten, a
--          bounded number per call)
-- ARGV[15] mode: 'taken' or 'message'
-- ARGV[16] '1' to release the event from the dedup set KEYS[8] (mode 'message')
-- ARGV[17] the T tasks, one MessagePack array (one argument: far cheaper to send than
--          nine per task), each {kind ('r' raw, 'd' Dramatiq), KEYS index of its dedup
--          set (0: none), of its target list, of its messages hash (0: raw), task,
--          payload ('' for raw), Redis message id ('' for raw), index of its event in
--          the batch (0: oldest), rule name (counted as '<rule>|queued' / '|deduplicated')}
-- ARGV[18] '1' to leave the per-rule counters of this batch to the caller, which writes
--          them late, in one step per second, when a batch touches many rules: the
--          script then counts nothing per rule for its tasks (their rule names may be
--          ''), returns the positions of the deduplicated tasks (the caller knows each
--          task's rule) and the '<rule>|retried' counts
-- ARGV[19] time to live of the history hash KEYS[9], in seconds
-- ARGV[20] the outbox entry ('' for none): the batch's tasks in other slots, applied
--          after this commit by apply.lua, one call per slot (see store/outbox.py)
-- ARGV[21..] F groups of 3: event, dead-letter entry (JSON), rule name;
--          then U events; then R pairs: stats field, increment
--
-- Returns {status, queued, deduplicated, retried, dead}, followed when committed now
-- with ARGV[18] '1' by D, the positions (from 1) of the D deduplicated tasks, and the
-- '<rule>|retried' counters as field, increment pairs; status 1 committed now,
-- 2 this very commit was made before (a retry after a lost reply; the counts are the
-- first commit's), -1 the taken list no longer holds this batch (another instance
-- reclaimed it). Returns {-2, key index, type found, type needed} when a key it would
-- write holds another type: checked before any write, so nothing is half-done.

local TAKEN, STATS, INPUT, ATTEMPTS, DEAD, UNMATCHED, MARKER, RELEASE, HISTORY = 1, 2, 3, 4, 5, 6, 7, 8, 9
local OUTBOX, OUTBOX_AT = 10, 11
local N, NEWEST, OLDEST, SCORE, CHANNEL, PREFIX = 1, 2, 3, 4, 5, 6
local TASKS, FAILED, UNMATCHED_COUNT, MAX_ATTEMPTS, KEEP_UNMATCHED, COUNTERS = 7, 8, 9, 10, 11, 12
local ID, MARKER_TTL_MS, MODE, RELEASE_EVENT, PLANNED, RETURN_PER_RULE = 13, 14, 15, 16, 17, 18
local HISTORY_TTL_S, OUTBOX_ENTRY = 19, 20
local FIRST_GROUP = 21
-- fields of a planned task
local KIND, SET, QUEUE, MESSAGES, TASK, PAYLOAD, MESSAGE_ID, EVENT, RULE = 1, 2, 3, 4, 5, 6, 7, 8, 9
-- values per LPUSH of unmatched events (unpack() is bounded by Lua's stack)
local PUSH_CHUNK = 4000
-- most expired message markers forgotten per call
local FORGET_CHUNK = 100
local COMMITTED, ALREADY_COMMITTED, NOT_OWNED, WRONG_TYPE = 1, 2, -1, -2

local by_message = ARGV[MODE] == 'message'
if by_message then
    if redis.call('TYPE', KEYS[MARKER])['ok'] == 'zset'
        and redis.call('ZSCORE', KEYS[MARKER], ARGV[ID]) then
        return {ALREADY_COMMITTED, 0, 0, 0, 0}
    end
else
    local marker = redis.call('GET', KEYS[MARKER])
    if marker then
        local id, q, d, r, x = string.match(marker, '^(%S+) (%d+) (%d+) (%d+) (%d+)$')
        if id == ARGV[ID] then
            return {ALREADY_COMMITTED, tonumber(q), tonumber(d), tonumber(r), tonumber(x)}
        end
    end
end

-- the batch is the n oldest events of the taken list (the router may already have
-- taken the next batch, to the left of it, while this commit was on its way)
local taken = KEYS[TAKEN]
local n = tonumber(ARGV[N])
if not by_message and (redis.call('LLEN', taken) < n
    or redis.call('LINDEX', taken, -n) ~= ARGV[NEWEST]
    or redis.call('LINDEX', taken, -1) ~= ARGV[OLDEST]) then
    return {NOT_OWNED, 0, 0, 0, 0}
end

local tasks, failed = tonumber(ARGV[TASKS]), tonumber(ARGV[FAILED])
local unmatched = tonumber(ARGV[UNMATCHED_COUNT])
local release = ARGV[RELEASE_EVENT] == '1'

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
        return {WRONG_TYPE, index, found, needed}
    end
    return nil
end
local needs = {{STATS, 'hash'}, {HISTORY, 'hash'}, {ATTEMPTS, 'hash'},
    {MARKER, by_message and 'zset' or 'string'}}
if failed > 0 then
    needs[#needs + 1] = {INPUT, 'list'}
    needs[#needs + 1] = {DEAD, 'list'}
end
if unmatched > 0 and ARGV[KEEP_UNMATCHED] == '1' then needs[#needs + 1] = {UNMATCHED, 'list'} end
if release then needs[#needs + 1] = {RELEASE, 'zset'} end
local outbox = ARGV[OUTBOX_ENTRY] ~= ''
if outbox then
    needs[#needs + 1] = {OUTBOX, 'hash'}
    needs[#needs + 1] = {OUTBOX_AT, 'zset'}
end
for _, need in ipairs(needs) do
    local problem = wrong(need[1], need[2])
    if problem then return problem end
end
local planned = tasks > 0 and cmsgpack.unpack(ARGV[PLANNED]) or {}
for _, t in ipairs(planned) do
    local problem = (t[SET] > 0 and wrong(t[SET], 'zset')) or wrong(t[QUEUE], 'list')
        or (t[MESSAGES] > 0 and wrong(t[MESSAGES], 'hash'))
    if problem then return problem end
end

-- the batch's events, newest first: the event of index i (0: oldest) is events[n - i]
local events
if by_message then
    events = {ARGV[OLDEST]}
    if release then redis.call('ZREM', KEYS[RELEASE], ARGV[OLDEST]) end
else
    events = redis.call('LRANGE', taken, -n, -1)
end

local score, channel, prefix = ARGV[SCORE], ARGV[CHANNEL], ARGV[PREFIX]
local queued, deduplicated = 0, 0
local per_rule = {}
-- a counter goes to the totals and to the minute's history: two HINCRBY per counter
-- and batch (never per task: per-rule counts are summed first), one EXPIRE per batch
local function bump(field, increment)
    redis.call('HINCRBY', KEYS[STATS], field, increment)
    redis.call('HINCRBY', KEYS[HISTORY], field, increment)
end
local function count(rule, what, increment)
    local field = rule .. '|' .. what
    per_rule[field] = (per_rule[field] or 0) + (increment or 1)
end
-- the tasks' writes are gathered per key (by KEYS index) and made after the loop, one
-- call per key rather than one or two per task: the lists and hashes end the same, as
-- pushes to one end of a list keep their order and pushes to its two ends commute
local lpushes, rpushes, hsets = {}, {}, {}
local function gather(into, index, value)
    local values = into[index]
    if values == nil then
        values = {}
        into[index] = values
    end
    values[#values + 1] = value
    return values
end
local later = ARGV[RETURN_PER_RULE] == '1'
local queued_by_rule, deduplicated_by_rule = {}, {}
local deduplicated_at = {}  -- with 'later': the positions of the deduplicated tasks
for position, t in ipairs(planned) do
    local task, rule = t[TASK], t[RULE]
    if t[SET] == 0 or redis.call('ZADD', KEYS[t[SET]], 'NX', score, task) == 1 then
        if t[KIND] == 'r' then
            gather(lpushes, t[QUEUE], task)
        else
            local values = gather(hsets, t[MESSAGES], t[MESSAGE_ID])
            values[#values + 1] = t[PAYLOAD]
            gather(rpushes, t[QUEUE], t[MESSAGE_ID])
        end
        queued = queued + 1
        if not later then queued_by_rule[rule] = (queued_by_rule[rule] or 0) + 1 end
        if channel ~= '' then
            local event = events[n - t[EVENT]]
            redis.call('PUBLISH', channel, prefix .. ' TRIGGER ' .. event .. ' -> ' .. task)
        end
    else
        deduplicated = deduplicated + 1
        if later then
            deduplicated_at[#deduplicated_at + 1] = position
        else
            deduplicated_by_rule[rule] = (deduplicated_by_rule[rule] or 0) + 1
        end
    end
end
-- PUSH_CHUNK is even: a chunk of an HSET's values holds whole field-value pairs
for command, into in pairs({LPUSH = lpushes, RPUSH = rpushes, HSET = hsets}) do
    for index, values in pairs(into) do
        for i = 1, #values, PUSH_CHUNK do
            redis.call(command, KEYS[index], unpack(values, i, math.min(i + PUSH_CHUNK - 1, #values)))
        end
    end
end
for rule, c in pairs(queued_by_rule) do count(rule, 'queued', c) end
for rule, c in pairs(deduplicated_by_rule) do count(rule, 'deduplicated', c) end

-- failed events: back in line (not done yet) or dead-lettered (done for good)
local a = FIRST_GROUP
local max_attempts = tonumber(ARGV[MAX_ATTEMPTS])
local retried, dead = 0, 0
local failed_events = {}
local again = {}
for _ = 1, failed do
    local event = ARGV[a]
    failed_events[event] = true
    if redis.call('HINCRBY', KEYS[ATTEMPTS], event, 1) >= max_attempts then
        redis.call('HDEL', KEYS[ATTEMPTS], event)
        redis.call('LPUSH', KEYS[DEAD], ARGV[a + 1])
        bump(ARGV[a + 2] .. '|dead', 1)
        dead = dead + 1
    else
        redis.call('LPUSH', KEYS[INPUT], event)
        again[event] = true
        retried = retried + 1
        count(ARGV[a + 2], 'retried')
    end
    a = a + 3
end

if unmatched > 0 then
    if ARGV[KEEP_UNMATCHED] == '1' then
        local last = a + unmatched - 1
        for i = a, last, PUSH_CHUNK do
            redis.call('LPUSH', KEYS[UNMATCHED], unpack(ARGV, i, math.min(i + PUSH_CHUNK - 1, last)))
        end
    end
    bump('unmatched', unmatched)
    a = a + unmatched
end

for _ = 1, tonumber(ARGV[COUNTERS]) do
    bump(ARGV[a], ARGV[a + 1])
    a = a + 2
end
local reply_per_rule = {}
if later then
    reply_per_rule[1] = #deduplicated_at
    for _, position in ipairs(deduplicated_at) do reply_per_rule[#reply_per_rule + 1] = position end
    for field, increment in pairs(per_rule) do
        reply_per_rule[#reply_per_rule + 1] = field
        reply_per_rule[#reply_per_rule + 1] = increment
    end
else
    for field, increment in pairs(per_rule) do
        bump(field, increment)
    end
end

-- an event that failed before and went through now starts afresh next time
if redis.call('EXISTS', KEYS[ATTEMPTS]) == 1 then
    for _, event in ipairs(events) do
        if not failed_events[event] then
            redis.call('HDEL', KEYS[ATTEMPTS], event)
        end
    end
end

if not by_message then redis.call('LTRIM', taken, 0, -n - 1) end
if channel ~= '' then
    for i = n, 1, -1 do
        if not again[events[i]] then
            redis.call('PUBLISH', channel, prefix .. ' DONE ' .. events[i])
        end
    end
end
bump('events', n)
bump('queued', queued)
bump('deduplicated', deduplicated)
if retried > 0 then bump('retried', retried) end
if dead > 0 then bump('dead', dead) end
redis.call('EXPIRE', KEYS[HISTORY], ARGV[HISTORY_TTL_S])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if outbox then
    redis.call('HSET', KEYS[OUTBOX], ARGV[ID], ARGV[OUTBOX_ENTRY])
    redis.call('ZADD', KEYS[OUTBOX_AT], now_ms, ARGV[ID])
end
if by_message then
    redis.call('ZADD', KEYS[MARKER], now_ms, ARGV[ID])
    local cutoff = '(' .. (now_ms - tonumber(ARGV[MARKER_TTL_MS]))
    local old = redis.call('ZRANGEBYSCORE', KEYS[MARKER], '-inf', cutoff, 'LIMIT', 0, FORGET_CHUNK)
    if #old > 0 then redis.call('ZREM', KEYS[MARKER], unpack(old)) end
else
    redis.call('SET', KEYS[MARKER],
        ARGV[ID] .. ' ' .. queued .. ' ' .. deduplicated .. ' ' .. retried .. ' ' .. dead,
        'PX', ARGV[MARKER_TTL_MS])
end
local reply = {COMMITTED, queued, deduplicated, retried, dead}
for _, v in ipairs(reply_per_rule) do reply[#reply + 1] = v end
return reply
