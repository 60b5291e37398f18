-- join_close.lua: an operator completes or drops an open join group, all or nothing
-- (see store/join_ops.py). Complete queues the join's make (planned in Python from the
-- group's first member's variables) and leaves a 'done' tombstone; drop queues nothing
-- and leaves a 'dropped' tombstone. Either way the group leaves the index, as when a
-- member completes it (library.lua's close_group).
--
-- KEYS[1] the group's hash, KEYS[2] the slot's open groups (sorted set), KEYS[3] its
--         deadlines (sorted set), KEYS[4] the open groups per rule (hash), KEYS[5] the
--         stats hash of the join rule's watcher; then the watcher's lineage bucket
--         (KEYS[h.lineage_key], when it keeps lineage) and the tasks' keys, each once.
-- ARGV[1] a MessagePack map: action ('complete' or 'drop'), token (the text of the
--         tasks' messages the members' payloads replace), rule (the join rule the
--         group was read with; '' for a fan-out's group no member joined), first (its
--         first member's time, ms, as read: the group planned for, not one opened anew
--         since), tasks (complete: planned tasks,
--         contract.TASK_FIELDS; their event is the group key's text), score (the dedup
--         score, unix s), channel (nil: none), prefix (of the notification lines), ttl
--         (ms: the tombstone's, when no member gave one); lineage_key (0: no
--         lineage kept), lineage_ttl_ms, lineage_max, records: the lineage records of
--         the tasks queued, kept as commit.lua keeps them (library.lua's lineage).
--
-- Returns {DONE, queued} when closed now; {BEFORE, 0, state} when the group is not the
-- open group that was read: state is its tombstone's state (done, failed, expired,
-- dropped), '' when it is gone, 'reopened' when it is open again since (another first
-- member, another rule); {WRONG_TYPE, ...} when a key holds another type (nothing
-- written).

local h = cmsgpack.unpack(ARGV[1])
local g = KEYS[1]
J = {open = KEYS[2], due = KEYS[3], counts = KEYS[4]}
local problem = read_group(1, '') or refusal({{2, 'zset'}, {3, 'zset'}, {4, 'hash'},
    {5, 'hash'}}) or tasks_refusal(h.tasks, 0)
    or (h.lineage_key > 0 and wrong_type(h.lineage_key, 'hash'))
if problem then return problem end
local kept = h.lineage_key > 0 and lineage(h.records) or nil

local state = groups[g].state  -- 'fanout': a fan-out's group no member joined: open
if state ~= 'open' and state ~= 'fanout' then return {BEFORE, 0, state} end
-- HMGET gives false for a missing field: a fan-out's group no member joined has no
-- rule nor first time (read as '')
local f = redis.call('HMGET', g, 'rule', 'first')
if (f[1] or '') ~= h.rule or (f[2] or '') ~= h.first then return {BEFORE, 0, 'reopened'} end

local queued = 0
if h.action == 'complete' then
    queued = queue_join_tasks(h.tasks, h.token, g, h.score, h.channel, h.prefix, kept)
end
local now = now_ms()
if h.action == 'complete' then
    close_group(g, 'done', now, h.ttl)
    redis.call('HINCRBY', KEYS[5], h.rule .. '|completed', 1)
else
    close_group(g, 'dropped', now, h.ttl)
    if h.rule ~= '' then redis.call('HINCRBY', KEYS[5], h.rule .. '|dropped', 1) end
end
if queued > 0 then redis.call('HINCRBY', KEYS[5], h.rule .. '|queued', queued) end
if kept then kept.write(KEYS[h.lineage_key], h.lineage_ttl_ms, h.lineage_max) end
index_flush()
return {DONE, queued}
