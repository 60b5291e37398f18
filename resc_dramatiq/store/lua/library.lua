-- library.lua: what the scripts share, one copy of each. The script loader
-- (store/scripts.py) puts it in front of every script, after the constants it
-- generates from store/contract.py (statuses, the fields of a planned task, chunk sizes).

-- The keys the library's functions name by index: the declared KEYS, unless the script
-- names its keys otherwise (apply.lua, whose keys of other slots are not declared).
local K = KEYS

-- The type found at each key, asked once per call.
local key_types = {}

-- {WRONG_TYPE, index, type found, type needed} when K[index] holds another type than
-- needed (absent is fine), else nil. A script checks every key it writes before its
-- first write: a Lua error halfway would keep the writes made before it.
local function wrong_type(index, needed)
    local key = K[index]
    local found = key_types[key]
    if found == nil then
        found = redis.call('TYPE', key)['ok']
        key_types[key] = found
    end
    if found ~= 'none' and found ~= needed then
        return {WRONG_TYPE, index, found, needed}
    end
    return nil
end

-- The first refusal among needs, a list of {K index, type}; nil when none.
local function refusal(needs)
    for _, need in ipairs(needs) do
        local problem = wrong_type(need[1], need[2])
        if problem then return problem end
    end
    return nil
end

-- The first refusal among the keys of planned tasks (their K indexes after base).
local function tasks_refusal(planned, base)
    for _, t in ipairs(planned) do
        local problem = (t[T_SET] > 0 and wrong_type(base + t[T_SET], 'zset'))
            or wrong_type(base + t[T_QUEUE], 'list')
            or (t[T_MESSAGES] > 0 and wrong_type(base + t[T_MESSAGES], 'hash'))
        if problem then return problem end
    end
    return nil
end

-- Redis's clock, in ms.
local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Forget the markers older than ttl_ms of a markers sorted set (id -> when, ms), at
-- most FORGET_CHUNK per call; their fields of results (a hash kept beside the markers,
-- or nil) too.
local function forget(markers, now, ttl_ms, results)
    local cutoff = '(' .. (now - tonumber(ttl_ms))
    local old = redis.call('ZRANGEBYSCORE', markers, '-inf', cutoff, 'LIMIT', 0, FORGET_CHUNK)
    if #old > 0 then
        redis.call('ZREM', markers, unpack(old))
        if results then redis.call('HDEL', results, unpack(old)) end
    end
end

-- Record id in the markers sorted set (scored now, ms) and, unless told to skip it
-- (skip_forgetting), forget the old markers (see forget).
local function mark(markers, id, now, ttl_ms, results, skip_forgetting)
    redis.call('ZADD', markers, now, id)
    if not skip_forgetting then forget(markers, now, ttl_ms, results) end
end

-- redis.call(command, key, <values 1..n>) in calls of at most PUSH_CHUNK values
-- (unpack() is bounded by Lua's stack; PUSH_CHUNK is even, so that a chunk of an HSET's
-- or a ZADD's values holds whole pairs); n defaults to #values.
local function chunked(command, key, values, n)
    n = n or #values
    for i = 1, n, PUSH_CHUNK do
        redis.call(command, key, unpack(values, i, math.min(i + PUSH_CHUNK - 1, n)))
    end
end

-- Writes gathered per key and made by flush(), one call per key (in chunks) rather than
-- one or two per value: lists and hashes end the same, as pushes to one end of a list
-- keep their order and pushes to its two ends commute.
local function writes()
    local w = {LPUSH = {}, RPUSH = {}, HSET = {}}
    local function gather(command, key, value)
        local values = w[command][key]
        if values == nil then
            values = {}
            w[command][key] = values
        end
        values[#values + 1] = value
        return values
    end
    return {
        -- an event (a raw task) at the left end of a list, as producers push them
        push = function(list, value) gather('LPUSH', list, value) end,
        -- Dramatiq's enqueue, as its RedisBroker's dispatch.lua does: the message in
        -- the queue's messages hash, its Redis message id at the queue's right end
        enqueue = function(queue, messages, id, payload)
            local values = gather('HSET', messages, id)
            values[#values + 1] = payload
            gather('RPUSH', queue, id)
        end,
        flush = function()
            for command, by_key in pairs(w) do
                for key, values in pairs(by_key) do chunked(command, key, values) end
            end
        end,
    }
end

-- Queue planned tasks (their K indexes after base), the loop commit.lua and
-- apply.lua share for exactly-once to hold: a task whose dedup set holds it already
-- (scored score when added) is skipped. queued(position, t) or skipped(position, t)
-- is called for each, in order. The pushes are gathered in w (a writes(), flushed by
-- the caller) when given, else made before returning.
local function write_tasks(planned, base, score, queued, skipped, w)
    local own = w == nil
    w = w or writes()
    for position, t in ipairs(planned) do
        local task = t[T_TASK]
        if t[T_SET] == 0 or redis.call('ZADD', K[base + t[T_SET]], 'NX', score, task) == 1 then
            if t[T_KIND] == 'r' then
                w.push(K[base + t[T_QUEUE]], task)
            else
                w.enqueue(K[base + t[T_QUEUE]], K[base + t[T_MESSAGES]], t[T_MESSAGE_ID], t[T_PAYLOAD])
            end
            queued(position, t)
        else
            skipped(position, t)
        end
    end
    if own then w.flush() end
end

-- Lineage records (docs/lineage.md), kept the same way by every script that queues
-- tasks: lineage(records) gathers with keep(t) the record of each planned task t queued
-- now from records (field, value pairs: a task row's T_LINEAGE is the position of its
-- first, 0 none; a raw task's one pair 't:<task>'; a Dramatiq message's two,
-- 't:<task>' -> {"see": <message id>} and 'm:<message id>' -> its record, '' when the
-- message itself, T_PAYLOAD, is its record), or with keep_message(at, payload) those of
-- a message that is no planned task (a schedule's tick); write(key, expiry_ms, most)
-- puts them in the bucket key (store/lineage.py): at most most fields in it (the
-- records past it are not kept until the next bucket), expiring expiry_ms from now.
-- Read the records at keep time: a join's make has its members filled in by then.
local function lineage(records)
    local kept = {}
    local function keep_message(at, payload)
        kept[#kept + 1] = records[at]
        kept[#kept + 1] = records[at + 1]
        kept[#kept + 1] = records[at + 2]
        local record = records[at + 3]
        if record == '' then record = payload end  -- the message is its record
        kept[#kept + 1] = record
    end
    return {
        keep = function(t)
            local at = t[T_LINEAGE]
            if at == nil or at <= 0 then return end
            if t[T_KIND] == 'd' then
                keep_message(at, t[T_PAYLOAD])
            else
                kept[#kept + 1] = records[at]
                kept[#kept + 1] = records[at + 1]
            end
        end,
        keep_message = keep_message,
        write = function(key, expiry_ms, most)
            if #kept == 0 then return end
            local n = math.min(#kept, 2 * math.max(0, most - redis.call('HLEN', key)))
            chunked('HSET', key, kept, n)
            if n > 0 then redis.call('PEXPIRE', key, expiry_ms) end
        end,
    }
end

-- Join groups (see store/joins.py). An open group's hash: state ('open'; 'fanout' while
-- only a fan-out's record made it), rule (its join rule, set by its first member), first
-- (ms), due (ms: its deadline, if any; J.due is only its index), event (the first
-- member's event: its variables, for the expired make), ttl (ms, of its tombstone), seen (members seen), expect
-- (members expected; absent: not known yet), listed ('1': the expectation is the e:
-- fields), matched (listed members seen), ready ('1': complete, its make for a deadline
-- round to fire: see join_record), m:<member>, e:<expected member>. A closed group
-- is a tombstone {state: done | failed | expired, at} that expires after its ttl: a late
-- or redelivered member finds it and does nothing. J holds the KEYS of the slot's join
-- index: J.open (group -> first ms), J.due (group -> deadline ms), J.counts (rule ->
-- open groups). A hit is a join hit of contract.JOIN_HIT_FIELDS (hit[H_KIND] ...).
local J = {}

-- The join index's writes of this call, made at its end by index_flush(): per group
-- its place in J.open and J.due (a score; false: out of it), per rule the change of
-- its count in J.counts. Gathered, they are a few calls per call, not a few per group.
local index_writes = {open = {}, due = {}, counts = {}}

local function index_flush()
    for _, name in ipairs({'open', 'due'}) do
        local add, remove = {}, {}
        for g, score in pairs(index_writes[name]) do
            if score then
                add[#add + 1] = score
                add[#add + 1] = g
            else
                remove[#remove + 1] = g
            end
        end
        chunked('ZADD', J[name], add)
        chunked('ZREM', J[name], remove)
    end
    for rule, change in pairs(index_writes.counts) do
        if change ~= 0 and redis.call('HINCRBY', J.counts, rule, change) <= 0 then
            redis.call('HDEL', J.counts, rule)
        end
    end
end

-- A hit's field left out (contract.HIT_EMPTY): no expected members.
local NONE = {}

-- What this call knows of each group it met: read before any write (the read checks
-- the key's type), then kept up to date by the functions below, which make every write
-- to a group in this call: {state ('' when absent), expect, listed, seen, matched,
-- m = {member -> seen}, e = {member -> expected}} (a member absent from m or e: not read).
local groups = {}

-- Read what a hit of group K[index] needs (its state and counts, member's m: and e:
-- fields) into groups; a refusal when the key holds no hash.
local function read_group(index, member)
    local g = K[index]
    local f = redis.pcall('HMGET', g, 'state', 'expect', 'listed', 'seen', 'matched',
        'bytes', 'm:' .. member, 'e:' .. member)
    if f.err then return {WRONG_TYPE, index, redis.call('TYPE', g)['ok'], 'hash'} end
    local group = groups[g]
    if not group then
        group = {state = f[1] or '', expect = tonumber(f[2]), listed = f[3] ~= false,
            seen = tonumber(f[4]) or 0, matched = tonumber(f[5]) or 0,
            bytes = tonumber(f[6]) or 0, m = {}, e = {}}
        groups[g] = group
    end
    if member ~= '' then
        group.m[member] = f[7] ~= false
        group.e[member] = f[8] ~= false
    end
    return nil
end

local function is_open(state) return state == '' or state == 'open' or state == 'fanout' end

-- True when group g is open, made (as a fan-out's group, forgotten after FAN_OUT_TTL_MS
-- unless a member joins it) when absent; false when it is closed.
local function open_group(g)
    local group = groups[g]
    if group.state == '' then
        redis.call('HSET', g, 'state', 'fanout')
        redis.call('PEXPIRE', g, FAN_OUT_TTL_MS)
        group.state = 'fanout'
    end
    return group.state == 'open' or group.state == 'fanout'
end

-- Add m to the expected members of open group g.
local function expect_member(g, m)
    local group = groups[g]
    if group.e[m] then return end
    if redis.call('HSETNX', g, 'e:' .. m, 1) == 0 then
        group.e[m] = true
        return
    end
    group.e[m] = true
    group.expect = redis.call('HINCRBY', g, 'expect', 1)
    local seen = group.m[m]
    if seen == nil then
        seen = redis.call('HEXISTS', g, 'm:' .. m) == 1
        group.m[m] = seen
    end
    if seen then group.matched = redis.call('HINCRBY', g, 'matched', 1) end
end

-- Close group g as state ('done', 'failed', 'expired'): a tombstone kept for the
-- group's ttl (default_ttl when no member set it), out of the index.
local function close_group(g, state, now, default_ttl)
    local f = redis.call('HMGET', g, 'rule', 'ttl', 'due')
    redis.call('DEL', g)
    redis.call('HSET', g, 'state', state, 'at', now)
    redis.call('PEXPIRE', g, tonumber(f[2]) or default_ttl)
    index_writes.open[g] = false
    if f[3] then index_writes.due[g] = false end
    if f[1] then index_writes.counts[f[1]] = (index_writes.counts[f[1]] or 0) - 1 end
    groups[g].state = state
end

-- The fields of a group's first member (its rule, time, event, tombstone ttl and
-- deadline) added to fields; the group enters the index. JOIN_EVENT(hit) is the hit's
-- event, as the calling script knows it.
local JOIN_EVENT
local function first_member(hit, g, now, fields)
    local more = {'state', 'open', 'rule', hit[H_RULE], 'first', now,
        'event', JOIN_EVENT(hit), 'ttl', hit[H_TTL]}
    for _, v in ipairs(more) do fields[#fields + 1] = v end
    local deadline = hit[H_DEADLINE] or 0
    if deadline > 0 then
        fields[#fields + 1] = 'due'
        fields[#fields + 1] = now + deadline
        index_writes.due[g] = now + deadline
    end
    index_writes.open[g] = now
    index_writes.counts[hit[H_RULE]] = (index_writes.counts[hit[H_RULE]] or 0) + 1
    groups[g].state = 'open'
end

-- What a member's field holds: its payload (JSON) when its join keeps them and the
-- group's kept payloads stay within JOIN_DATA_LIMIT bytes, else 1.
local function member_value(group, hit, fields)
    local data = hit[H_DATA] or ''
    if data == '' or group.bytes + #data > JOIN_DATA_LIMIT then return 1 end
    group.bytes = group.bytes + #data
    fields[#fields + 1] = 'bytes'
    fields[#fields + 1] = group.bytes
    return data
end

-- The members' payloads of group g as one JSON object, member -> payload (null: none).
local function members_json(g)
    local all, parts = redis.call('HGETALL', g), {}
    for i = 1, #all, 2 do
        if string.sub(all[i], 1, 2) == 'm:' then
            local value = all[i + 1]
            if value == '1' then value = 'null' end
            parts[#parts + 1] = cjson.encode(string.sub(all[i], 3)) .. ':' .. value
        end
    end
    return '{' .. table.concat(parts, ',') .. '}'
end

-- Put the members' payloads of group g in place of token in the planned tasks' messages.
local function fill_members(tasks, token, g)
    if token == '' then return end
    local json = members_json(g)
    for _, t in ipairs(tasks) do
        if t[T_KIND] == 'd' then
            local p = t[T_PAYLOAD]
            local s, e = string.find(p, token, 1, true)
            if s then t[T_PAYLOAD] = string.sub(p, 1, s - 1) .. json .. string.sub(p, e + 1) end
        end
    end
end

-- The message ids of group g's members (at most MEMBERS_LIMIT, kept as 'i:<member>')
-- in place of the JSON string token ('' none) in the planned tasks' messages and their
-- lineage records in records (field, value pairs: see commit.lua; nil: none), so that
-- a join's make names its members (rules/lineage.py).
local function fill_ids(tasks, token, g, records)
    if token == '' then return end
    local all, ids, traces = redis.call('HGETALL', g), {}, {}
    for i = 1, #all, 2 do
        local kind = string.sub(all[i], 1, 2)
        if kind == 'i:' and #ids < MEMBERS_LIMIT then
            ids[#ids + 1] = cjson.encode(all[i + 1])
        elseif kind == 'k:' and #traces < MEMBERS_LIMIT then
            traces[#traces + 1] = cjson.encode(all[i + 1])
        end
    end
    local lists = {
        {'"' .. token .. '"', '[' .. table.concat(ids, ',') .. ']'},
        {'"resc-traces-' .. string.sub(token, 10) .. '"', '[' .. table.concat(traces, ',') .. ']'},
    }
    local function put(text)
        for _, pair in ipairs(lists) do
            local s, e = string.find(text, pair[1], 1, true)
            if s then text = string.sub(text, 1, s - 1) .. pair[2] .. string.sub(text, e + 1) end
        end
        return text
    end
    for _, t in ipairs(tasks) do
        if t[T_KIND] == 'd' then t[T_PAYLOAD] = put(t[T_PAYLOAD]) end
        local at = t[T_LINEAGE]
        if records and at ~= nil and at > 0 then
            local value = at + (t[T_KIND] == 'd' and 3 or 1)
            records[value] = put(records[value])
        end
    end
end

-- A member's message id and trace, kept in its group's fields ('i:<member>',
-- 'k:<member>'; the first MEMBERS_LIMIT only).
local function member_id(group, hit, fields)
    if group.seen > MEMBERS_LIMIT then return end
    local parent, trace = hit[H_PARENT] or '', hit[H_TRACE] or ''
    if parent ~= '' then
        fields[#fields + 1] = 'i:' .. hit[H_MEMBER]
        fields[#fields + 1] = parent
    end
    if trace ~= '' then
        fields[#fields + 1] = 'k:' .. hit[H_MEMBER]
        fields[#fields + 1] = trace
    end
end

-- A new group, made by its first member in one write.
local function new_group(hit, g, now)
    local group, member = groups[g], hit[H_MEMBER]
    local fields = {'seen', 1}
    local value = member_value(group, hit, fields)
    fields[#fields + 1] = 'm:' .. member
    fields[#fields + 1] = value
    group.m[member], group.seen = true, 1
    member_id(group, hit, fields)
    local members = hit[H_MEMBERS] or NONE
    if #members > 0 then
        group.listed, group.expect, group.matched = true, #members, 0
        for _, m in ipairs(members) do
            fields[#fields + 1] = 'e:' .. m
            fields[#fields + 1] = 1
            group.e[m] = true
            if m == member then group.matched = 1 end
        end
        fields[#fields + 1] = 'listed'
        fields[#fields + 1] = 1
        fields[#fields + 1] = 'matched'
        fields[#fields + 1] = group.matched
    elseif hit[H_EXPECT] > 0 then
        group.expect = hit[H_EXPECT]
    end
    if group.expect then
        fields[#fields + 1] = 'expect'
        fields[#fields + 1] = group.expect
    end
    first_member(hit, g, now, fields)
    chunked('HSET', g, fields)
end

-- Record member event hit in group g (read by read_group); true when the group is
-- complete now, nil when it is not, false when it was closed before (a late or
-- redelivered member).
local function join_member(hit, g, now)
    local group = groups[g]
    if not is_open(group.state) then return false end
    if group.state == '' then
        new_group(hit, g, now)
    else
        local fields = {}
        if group.state == 'fanout' then  -- the first member of a fan-out's group
            first_member(hit, g, now, fields)
            redis.call('PERSIST', g)
        end
        local member = hit[H_MEMBER]
        if not group.m[member] then
            group.m[member], group.seen = true, group.seen + 1
            local value = member_value(group, hit, fields)
            fields[#fields + 1] = 'm:' .. member
            fields[#fields + 1] = value
            fields[#fields + 1] = 'seen'
            fields[#fields + 1] = group.seen
            member_id(group, hit, fields)
            if group.listed and group.e[member] then
                group.matched = group.matched + 1
                fields[#fields + 1] = 'matched'
                fields[#fields + 1] = group.matched
            end
        end
        if #fields > 0 then chunked('HSET', g, fields) end
        if not group.expect and hit[H_EXPECT] > 0 then  -- it comes with this member
            local members = hit[H_MEMBERS] or NONE
            if #members > 0 then
                redis.call('HSET', g, 'listed', 1)
                group.listed = true
                for _, m in ipairs(members) do expect_member(g, m) end
            else
                redis.call('HSET', g, 'expect', hit[H_EXPECT])
                group.expect = hit[H_EXPECT]
            end
        end
    end
    local progress = group.listed and group.matched or group.seen
    if group.expect and progress >= group.expect then return true end
    return nil
end

-- A fan-out's record: its tasks are members group g expects (added to those known).
-- A group its members completed before the record came (they came from elsewhere
-- than the fan-out's tasks) is made ready: due now, for a router's or a worker's
-- deadline round to fire its join's make (its first member's event is kept).
local function join_record(hit, g, now)
    if not open_group(g) then return end
    local group = groups[g]
    if not group.listed then
        redis.call('HSET', g, 'listed', 1)
        group.listed = true
    end
    for _, m in ipairs(hit[H_MEMBERS] or NONE) do expect_member(g, m) end
    if group.state == 'open' and group.expect and group.matched >= group.expect then
        redis.call('HSET', g, 'ready', 1, 'due', now)
        index_writes.due[g] = now
    end
end

-- Queue a join's planned tasks (their K indexes from 1; their event is a text) with the
-- members' payloads of group g put in place of token, each queued one said on channel
-- (nil: none) as '<prefix> TRIGGER <event> -> <task>' and its lineage record kept in
-- kept (a lineage(); nil: none); the count queued. The closing steps an upkeep round or
-- an operator takes (expire.lua, join_close.lua) share it.
local function queue_join_tasks(planned, token, g, score, channel, prefix, kept)
    local queued = 0
    fill_members(planned, token, g)
    write_tasks(planned, 0, score,
        function(_, t)
            queued = queued + 1
            if kept then kept.keep(t) end
            if channel then
                redis.call('PUBLISH', channel, prefix .. ' TRIGGER ' .. t[T_EVENT] .. ' -> ' .. t[T_TASK])
            end
        end,
        function() end)
    return queued
end
