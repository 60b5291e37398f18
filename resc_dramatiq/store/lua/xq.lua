-- xq.lua: requeue or drop Dramatiq's dead-lettered messages of one queue, each atomically.
--
-- A message is moved only if this call removed it from the dead set (ZREM returned 1):
-- a second operator working on the same ids removes nothing and enqueues nothing, so a
-- message is never both dead and queued, nor queued twice. A requeue enqueues as
-- Dramatiq's dispatch.lua does (HSET payload, RPUSH id) and only a payload whose
-- queue_name is the queue's own: one from the delay queue (``q.DQ``, dead-lettered in
-- ``q.XQ`` too) or one that cannot be read is skipped and left dead.
--
-- KEYS[1]  dead set ``ns:q.XQ`` (redis message id -> when it died, ms)
-- KEYS[2]  dead payloads ``ns:q.XQ.msgs`` (redis message id -> payload)
-- KEYS[3]  queue ``ns:q`` (requeue: the id is pushed on its right end, as Dramatiq does)
-- KEYS[4]  payloads ``ns:q.msgs`` (requeue: the payload goes here)
--
-- ARGV[1]  action: 'requeue' or 'drop'
-- ARGV[2]  '1' for a dry run: count what would be done, change nothing
-- ARGV[3]  the queue's name ``q``: a requeued payload's queue_name must equal it
-- ARGV[4..] redis message ids
--
-- Returns {moved, skipped} (dry run: would be), or {-2, key index, type found, type
-- needed} when a key it reads or writes holds another type (checked before any write).
local XQ, XQ_MSGS, QUEUE, QUEUE_MSGS = 1, 2, 3, 4
local ACTION, DRY_RUN, QUEUE_NAME, FIRST_ID = 1, 2, 3, 4

local requeue = ARGV[ACTION] == 'requeue'
local dry = ARGV[DRY_RUN] == '1'
local needs = {{XQ, 'zset'}, {XQ_MSGS, 'hash'}}
if requeue then
    needs[3] = {QUEUE, 'list'}
    needs[4] = {QUEUE_MSGS, 'hash'}
end
local problem = refusal(needs)
if problem then return problem end

local function queue_of(payload)
    local ok, data = pcall(cjson.decode, payload)
    if ok and type(data) == 'table' then return data['queue_name'] end
    return nil
end

local moved, skipped = 0, 0
for i = FIRST_ID, #ARGV do
    local id = ARGV[i]
    if redis.call('ZSCORE', KEYS[XQ], id) then
        local payload = redis.call('HGET', KEYS[XQ_MSGS], id)
        if requeue and not (payload and queue_of(payload) == ARGV[QUEUE_NAME]) then
            skipped = skipped + 1
        elseif dry then
            moved = moved + 1
        elseif redis.call('ZREM', KEYS[XQ], id) == 1 then
            redis.call('HDEL', KEYS[XQ_MSGS], id)
            if requeue then
                local w = writes()
                w.enqueue(KEYS[QUEUE], KEYS[QUEUE_MSGS], id, payload)
                w.flush()
            end
            moved = moved + 1
        end
    end
end
return {moved, skipped}
