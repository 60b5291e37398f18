-- dead.lua: requeue or drop dead letters of one watcher, each entry atomically.
--
-- An entry is moved only if this call removed it (LREM ... 1 returned 1): a second
-- operator working on the same entries removes nothing and pushes nothing, so an event
-- is never both requeued and still dead, nor requeued twice.
--
-- KEYS[1]  dead-letter list
-- KEYS[2]  input list (requeue: the event goes back to its left end, where producers push)
-- KEYS[3]  attempts hash (requeue: the event's field is removed, its attempts start afresh)
--
-- ARGV[1]  action: 'requeue' or 'drop'
-- ARGV[2]  '1' for a dry run: count the entries still there (LPOS), change nothing
-- ARGV[3]  where to look for each entry first: '1' from the newest end (a page just
--          listed), '-1' from the oldest end (a move of all, read oldest first): LREM
--          and LPOS walk the list from that end, so finding an entry costs its distance
--          from it, not the list's length
-- ARGV[4..] pairs: dead-letter entry (exact bytes), its event
--
-- Returns the number of entries moved (dry run: found), or {-2, key index, type found,
-- type needed} when a key it would write holds another type (checked before any write:
-- an entry removed from the dead list must never fail to reach the input list).
local DEAD, INPUT, ATTEMPTS = 1, 2, 3
local ACTION, DRY_RUN, FROM, FIRST_PAIR = 1, 2, 3, 4

local requeue = ARGV[ACTION] == 'requeue'
local dry = ARGV[DRY_RUN] == '1'
local from = ARGV[FROM] == '-1' and -1 or 1
local needs = {{DEAD, 'list'}}
if requeue then
    needs[2] = {INPUT, 'list'}
    needs[3] = {ATTEMPTS, 'hash'}
end
local problem = refusal(needs)
if problem then return problem end
local moved = 0
for i = FIRST_PAIR, #ARGV, 2 do
    local entry, event = ARGV[i], ARGV[i + 1]
    if dry then
        if redis.call('LPOS', KEYS[DEAD], entry, 'RANK', from) then moved = moved + 1 end
    elseif redis.call('LREM', KEYS[DEAD], from, entry) == 1 then
        if requeue then
            redis.call('HDEL', KEYS[ATTEMPTS], event)
            redis.call('LPUSH', KEYS[INPUT], event)
        end
        moved = moved + 1
    end
end
return moved
