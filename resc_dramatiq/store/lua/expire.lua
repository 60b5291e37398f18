-- expire.lua: fire a join group whose deadline has come, once: queue its join's
-- 'expired' make and leave a tombstone, all or nothing (see store/joins.py); or a group
-- made ready (complete before its fan-out was recorded: library.lua's join_record):
-- queue the join's own make, and leave a 'done' tombstone.
--
-- KEYS[1] the group's hash, KEYS[2] the slot's open groups (sorted set), KEYS[3] its
--         deadlines (sorted set), KEYS[4] the open groups per rule (hash), KEYS[5] the
--         watcher's stats hash; then the watcher's lineage bucket
--         (KEYS[h.lineage_key], when it keeps lineage) and the tasks' keys, each once.
-- ARGV[1] a MessagePack map: rule (the join rule), token (the text of the tasks'
--         messages the members' payloads replace), ready (true: the tasks are the join's
--         make, for a ready group; false: its expired make), tasks (planned tasks,
--         contract.TASK_FIELDS; their event is the group key's text), score (the dedup
--         score, unix s), channel (nil: none), prefix (of the notification lines), ttl
--         (ms: the tombstone's, when no member gave one); lineage_key (0: no
--         lineage kept), lineage_ttl_ms, lineage_max, records: the lineage records of
--         the tasks queued, kept as commit.lua keeps them (library.lua's lineage).
--
-- Returns {DONE, queued} when fired now; {BEFORE, 0} when the group is closed already
-- (completed, failed, or fired by another router) or gone; {NOT_DUE, 0} when it is open
-- and its deadline (kept in the group; the index only finds it) has not come (Redis's
-- clock); {WRONG_TYPE, ...} when a key holds
-- another type (nothing written).

local h = cmsgpack.unpack(ARGV[1])
local g = KEYS[1]
J = {open = KEYS[2], due = KEYS[3], counts = KEYS[4]}
local problem = read_group(1, '') or refusal({{2, 'zset'}, {3, 'zset'}, {4, 'hash'},
    {5, 'hash'}}) or tasks_refusal(h.tasks, 0)
    or (h.lineage_key > 0 and wrong_type(h.lineage_key, 'hash'))
if problem then return problem end
local kept = h.lineage_key > 0 and lineage(h.records) or nil

if groups[g].state ~= 'open' then
    redis.call('ZREM', J.due, g)  -- a stale entry, if any: its group is closed or gone
    return {BEFORE, 0}
end
local now = now_ms()
local f = redis.call('HMGET', g, 'due', 'ready')
local deadline, ready = tonumber(f[1]), f[2] ~= false
-- what Python planned (h.ready: the join's make; else its expired make) must be what
-- the group is now
if ready ~= h.ready or not deadline or deadline > now then return {NOT_DUE, 0} end

local queued = queue_join_tasks(h.tasks, h.token, g, h.score, h.channel, h.prefix, kept)
close_group(g, ready and 'done' or 'expired', now, h.ttl)
redis.call('HINCRBY', KEYS[5], h.rule .. (ready and '|completed' or '|expired'), 1)
if queued > 0 then redis.call('HINCRBY', KEYS[5], h.rule .. '|queued', queued) end
if kept then kept.write(KEYS[h.lineage_key], h.lineage_ttl_ms, h.lineage_max) end
index_flush()
return {DONE, queued}
