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
        -- PUSH_CHUNK is even: a chunk of an HSET's values holds whole field-value pairs
        flush = function()
            for command, by_key in pairs(w) do
                for key, values in pairs(by_key) do
                    for i = 1, #values, PUSH_CHUNK do
                        redis.call(command, key, unpack(values, i, math.min(i + PUSH_CHUNK - 1, #values)))
                    end
                end
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
