-- commit.lua: commit one planned batch of one watcher, all or nothing.
--
-- Two modes, one script:
--   'taken'   (the router) the batch's events sit at the right end of the instance's
--             taken list; they are checked to still be there, and removed;
--   'message' (a worker routing a done event inline) the one event comes in the
--             header; the Dramatiq message's id is recorded in the done list's markers,
--             so a retried call after a lost reply, or the same message redelivered
--             after a worker was killed, writes nothing.
--
-- ARGV[1]  the header: a MessagePack map whose fields store/contract.py declares
--          (CommitHeader, read here as h.<field>); nothing else comes in ARGV.
-- KEYS     the keys this commit needs, by role: KEYS[h.keys.<role>] (roles and what
--          they are: contract.COMMIT_KEYS; a role this commit does not need is absent),
--          then the tasks' keys, each once (dedup sets, target lists, messages hashes).
--          marker: mode 'taken', the instance's "<id> <queued> <dedup> <retried> <dead>"
--          of its last commit; mode 'message', the done list's markers, a sorted set of
--          message ids scored by when (ms, Redis clock) they were committed.
--          history: the minute's counters (every counter of stats is added there too;
--          it expires h.history_ttl_s after the minute's last commit).
--
-- lineage: with h.lineage_ttl_ms > 0, each task queued now leaves its lineage record
--          (h.records from the task row's T_LINEAGE: field, value pairs) in KEYS[k.lineage],
--          the hash of this stretch of time (store/keys.py, lineage_at): 't:<task>' or,
--          for a Dramatiq message, 't:<task>' -> {"see": <message id>} and
--          'm:<message id>' -> the record (empty in h.records: the message's JSON,
--          T_PAYLOAD, is its record); at most h.lineage_max fields (the
--          records past it are not kept); it expires h.lineage_ttl_ms after the last
--          commit that wrote to it (library.lua's lineage, which the other scripts
--          that queue tasks share).
--
-- h.joins   per event of a join rule or a fan-out, in event order, a join hit
--          (contract.JOIN_HIT_FIELDS, read as hit[H_KIND] ...; its group is
--          KEYS[hit[H_GROUP]]): see library.lua's joins and store/joins.py.
--
-- Returns {status, queued, deduplicated, retried, dead}, followed when committed now
-- with h.later by D, the positions (from 1) of the D deduplicated tasks, and the
-- '<rule>|retried' counters as field, increment pairs; status DONE committed now,
-- BEFORE this very commit was made before (a retry after a lost reply; the counts are
-- the first commit's), NOT_OWNED the taken list no longer holds this batch (another
-- instance reclaimed it). Returns {WRONG_TYPE, key index, type found, type needed}
-- when a key it would write holds another type: checked before any write, so nothing
-- is half-done.

local h = cmsgpack.unpack(ARGV[1])
local k = h.keys
local by_message = h.mode == 'message'
if by_message then
    if redis.call('TYPE', KEYS[k.marker])['ok'] == 'zset'
        and redis.call('ZSCORE', KEYS[k.marker], h.id) then
        return {BEFORE, 0, 0, 0, 0}
    end
else
    local marker = redis.call('GET', KEYS[k.marker])
    if marker then
        local id, q, d, r, x = string.match(marker, '^(%S+) (%d+) (%d+) (%d+) (%d+)$')
        if id == h.id then
            return {BEFORE, tonumber(q), tonumber(d), tonumber(r), tonumber(x)}
        end
    end
end

-- the batch is the n oldest events of the taken list (the router may already have
-- taken the next batch, to the left of it, while this commit was on its way)
local n = h.n
if not by_message and (redis.call('LLEN', KEYS[k.taken]) < n
    or redis.call('LINDEX', KEYS[k.taken], -n) ~= h.newest
    or redis.call('LINDEX', KEYS[k.taken], -1) ~= h.oldest) then
    return {NOT_OWNED, 0, 0, 0, 0}
end

local needs = {{k.stats, 'hash'}, {k.history, 'hash'}, {k.attempts, 'hash'},
    {k.marker, by_message and 'zset' or 'string'}}
if #h.failed > 0 then
    needs[#needs + 1] = {k.input, 'list'}
    needs[#needs + 1] = {k.dead, 'list'}
end
if #h.unmatched > 0 and k.unmatched then needs[#needs + 1] = {k.unmatched, 'list'} end
if h.release then needs[#needs + 1] = {k.release, 'zset'} end
if h.outbox then
    needs[#needs + 1] = {k.outbox, 'hash'}
    needs[#needs + 1] = {k.outbox_at, 'zset'}
end
if h.lineage_ttl_ms > 0 then needs[#needs + 1] = {k.lineage, 'hash'} end
if #h.joins > 0 then
    needs[#needs + 1] = {k.join_open, 'zset'}
    needs[#needs + 1] = {k.join_due, 'zset'}
    needs[#needs + 1] = {k.join_counts, 'hash'}
end
local problem = refusal(needs) or tasks_refusal(h.tasks, 0)
for _, hit in ipairs(h.joins) do
    if problem then break end
    problem = read_group(hit[H_GROUP], hit[H_MEMBER]) or tasks_refusal(hit[H_TASKS], 0)
end
if problem then return problem end

-- the batch's events, newest first: the event of index i (0: oldest) is events[n - i]
local events
if by_message then
    events = {h.oldest}
    if h.release then redis.call('ZREM', KEYS[k.release], h.release) end
else
    events = redis.call('LRANGE', KEYS[k.taken], -n, -1)
end

-- a counter goes to the totals and to the minute's history: two HINCRBY per counter
-- and batch (never per task: per-rule counts are summed first), one EXPIRE per batch
local function bump(field, increment)
    redis.call('HINCRBY', KEYS[k.stats], field, increment)
    redis.call('HINCRBY', KEYS[k.history], field, increment)
end
local per_rule = {}
local function count(rule, what, increment)
    local field = rule .. '|' .. what
    per_rule[field] = (per_rule[field] or 0) + (increment or 1)
end

-- the lineage records of the tasks queued now (library.lua's lineage)
local kept = lineage(h.records)
local keep = kept.keep

local channel, prefix, later = h.channel, h.prefix, h.later
local queued, deduplicated = 0, 0
local queued_by_rule, deduplicated_by_rule = {}, {}
local deduplicated_at = {}  -- with 'later': the positions of the deduplicated tasks
write_tasks(h.tasks, 0, h.score,
    function(_, t)
        queued = queued + 1
        keep(t)
        if not later then queued_by_rule[t[T_RULE]] = (queued_by_rule[t[T_RULE]] or 0) + 1 end
        if channel then
            redis.call('PUBLISH', channel, prefix .. ' TRIGGER ' .. events[n - t[T_EVENT]] .. ' -> ' .. t[T_TASK])
        end
    end,
    function(position, t)
        deduplicated = deduplicated + 1
        if later then
            deduplicated_at[#deduplicated_at + 1] = position
        else
            deduplicated_by_rule[t[T_RULE]] = (deduplicated_by_rule[t[T_RULE]] or 0) + 1
        end
    end)
for rule, c in pairs(queued_by_rule) do count(rule, 'queued', c) end
for rule, c in pairs(deduplicated_by_rule) do count(rule, 'deduplicated', c) end

-- joins, in event order: members recorded, groups completed or failed (their tasks
-- queued), fan-outs recorded; '<rule>|completed', '|failed', '|late' counted
local now = now_ms()
if #h.joins > 0 then
    J = {open = KEYS[k.join_open], due = KEYS[k.join_due], counts = KEYS[k.join_counts]}
    JOIN_EVENT = function(hit) return events[n - hit[H_EVENT]] end
    local function hit_queued(_, t)
        queued = queued + 1
        keep(t)
        count(t[T_RULE], 'queued')
        if channel then
            redis.call('PUBLISH', channel, prefix .. ' TRIGGER ' .. events[n - t[T_EVENT]] .. ' -> ' .. t[T_TASK])
        end
    end
    local function hit_skipped(_, t)
        deduplicated = deduplicated + 1
        count(t[T_RULE], 'deduplicated')
    end
    local pushes = writes()  -- the makes' pushes, made after the loop
    for _, hit in ipairs(h.joins) do
        local g, kind, rule = KEYS[hit[H_GROUP]], hit[H_KIND], hit[H_RULE]
        if kind == 'member' then
            local complete = join_member(hit, g, now)
            if complete then
                fill_members(hit[H_TASKS], hit[H_TOKEN] or '', g)
                fill_ids(hit[H_TASKS], hit[H_IDS] or '', g, h.records)
                write_tasks(hit[H_TASKS], 0, h.score, hit_queued, hit_skipped, pushes)
                close_group(g, 'done', now, hit[H_TTL])
                count(rule, 'completed')
            elseif complete == false then
                count(rule, 'late')
            end
        elseif kind == 'fail' then
            if open_group(g) then
                write_tasks(hit[H_TASKS], 0, h.score, hit_queued, hit_skipped, pushes)
                close_group(g, 'failed', now, hit[H_TTL])
                count(rule, 'failed')
            end
        else
            join_record(hit, g, now)
        end
    end
    pushes.flush()
    index_flush()
end

-- failed events: back in line (not done yet) or dead-lettered (done for good)
local retried, dead = 0, 0
local failed_events, again = {}, {}
for _, f in ipairs(h.failed) do
    local event, entry, rule = f[1], f[2], f[3]
    failed_events[event] = true
    if redis.call('HINCRBY', KEYS[k.attempts], event, 1) >= h.max_attempts then
        redis.call('HDEL', KEYS[k.attempts], event)
        redis.call('LPUSH', KEYS[k.dead], entry)
        bump(rule .. '|dead', 1)
        dead = dead + 1
    else
        redis.call('LPUSH', KEYS[k.input], event)
        again[event] = true
        retried = retried + 1
        count(rule, 'retried')
    end
end

local unmatched = #h.unmatched
if unmatched > 0 then
    if k.unmatched then
        chunked('LPUSH', KEYS[k.unmatched], h.unmatched)
    end
    bump('unmatched', unmatched)
end

for i = 1, #h.counters, 2 do bump(h.counters[i], h.counters[i + 1]) end
local reply_per_rule = {}
if later then
    reply_per_rule[1] = #deduplicated_at
    for _, position in ipairs(deduplicated_at) do reply_per_rule[#reply_per_rule + 1] = position end
    for field, increment in pairs(per_rule) do
        reply_per_rule[#reply_per_rule + 1] = field
        reply_per_rule[#reply_per_rule + 1] = increment
    end
else
    for field, increment in pairs(per_rule) do bump(field, increment) end
end

-- an event that failed before and went through now starts afresh next time
if redis.call('EXISTS', KEYS[k.attempts]) == 1 then
    for _, event in ipairs(events) do
        if not failed_events[event] then redis.call('HDEL', KEYS[k.attempts], event) end
    end
end

if not by_message then redis.call('LTRIM', KEYS[k.taken], 0, -n - 1) end
if channel then
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
redis.call('EXPIRE', KEYS[k.history], h.history_ttl_s)
if h.outbox then
    redis.call('HSET', KEYS[k.outbox], h.id, h.outbox)
    redis.call('ZADD', KEYS[k.outbox_at], now, h.id)
end
if h.lineage_ttl_ms > 0 then kept.write(KEYS[k.lineage], h.lineage_ttl_ms, h.lineage_max) end
if by_message then
    mark(KEYS[k.marker], h.id, now, h.marker_ttl_ms)
else
    redis.call('SET', KEYS[k.marker],
        h.id .. ' ' .. queued .. ' ' .. deduplicated .. ' ' .. retried .. ' ' .. dead,
        'PX', h.marker_ttl_ms)
end
local reply = {DONE, queued, deduplicated, retried, dead}
for _, v in ipairs(reply_per_rule) do reply[#reply + 1] = v end
return reply
