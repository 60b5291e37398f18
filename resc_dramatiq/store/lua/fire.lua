-- fire.lua: fire the due ticks of one schedule, each exactly once, and record the last.
--
-- A tick is named by its scheduled time; the state's 'tick' only moves forward, so a
-- tick at or before it was fired already (by this router or another) and is skipped.
-- Pushing and recording happen in this one script: no crash leaves one without the other.
--
-- KEYS[1]  the schedule's state hash: tick (last fired, unix s), fired_ms (when, Redis
--          clock), lag_ms (fired_ms - tick), fired (ticks fired in all), by (instance)
-- KEYS[2]  the target list: an input list (events, LPUSH as producers do) or a Dramatiq
--          queue (Redis message ids, RPUSH as Dramatiq's broker does)
-- KEYS[3]  the Dramatiq queue's messages hash (kind 'd' only)
-- KEYS[l.lineage_key]  the lineage bucket of the watcher owning the schedule, when it
--          keeps lineage and shares the slot (kind 'd' only)
--
-- ARGV[1]  kind: 'r' an event, 'd' a Dramatiq message
-- ARGV[2]  name of the router instance firing
-- ARGV[3]  a MessagePack map l: lineage_key (0: no lineage kept), lineage_ttl_ms,
--          lineage_max, records (field, value pairs, as commit.lua's h.records): each
--          message pushed keeps its lineage record as commit.lua's do (library.lua's
--          lineage); its root is itself, its cause the tick's event
-- ARGV[4..] groups of 4, oldest tick first: tick (unix s), payload (the event, or the
--          message), Redis message id ('' for an event), the position of its lineage
--          record's first field in l.records (0: none)
--
-- Returns {fired, last tick, lag_ms}: fired is how many ticks this call pushed (0: all
-- were fired before), last the state's tick afterwards, lag_ms the lag of the newest
-- tick pushed (0 when none). Returns {-2, key index, type found, type needed} when a
-- key it would write holds another type (checked before any write).

local STATE, TARGET, MESSAGES = 1, 2, 3
local KIND, INSTANCE, LINEAGE, FIRST = 1, 2, 3, 4
local raw = ARGV[KIND] == 'r'
local l = cmsgpack.unpack(ARGV[LINEAGE])

local needs = {{STATE, 'hash'}, {TARGET, 'list'}}
if not raw then needs[#needs + 1] = {MESSAGES, 'hash'} end
if l.lineage_key > 0 then needs[#needs + 1] = {l.lineage_key, 'hash'} end
local problem = refusal(needs)
if problem then return problem end

local last = tonumber(redis.call('HGET', KEYS[STATE], 'tick') or '-1')
local fired, newest = 0, nil
local w = writes()
local kept = lineage(l.records)
for a = FIRST, #ARGV, 4 do
    local tick = tonumber(ARGV[a])
    if tick > last then
        if raw then
            w.push(KEYS[TARGET], ARGV[a + 1])
        else
            w.enqueue(KEYS[TARGET], KEYS[MESSAGES], ARGV[a + 2], ARGV[a + 1])
            local at = tonumber(ARGV[a + 3])
            if at > 0 then kept.keep_message(at, ARGV[a + 1]) end
        end
        last, newest, fired = tick, tick, fired + 1
    end
end
if fired == 0 then return {0, last, 0} end
w.flush()
if l.lineage_key > 0 then kept.write(KEYS[l.lineage_key], l.lineage_ttl_ms, l.lineage_max) end

local now = now_ms()
local lag_ms = now - newest * 1000
redis.call('HSET', KEYS[STATE], 'tick', last, 'fired_ms', now, 'lag_ms', lag_ms,
    'by', ARGV[INSTANCE])
redis.call('HINCRBY', KEYS[STATE], 'fired', fired)
return {fired, last, lag_ms}
