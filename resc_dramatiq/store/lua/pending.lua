-- pending.lua: where a test's pipeline still has work, read in one step (the testing
-- kit's idle check: keys read one by one could miss a message moving between two of
-- them). Reads only.
--
-- ARGV[1] the glob of the Dramatiq namespace's keys ('dramatiq:*'), ARGV[2] its
--         prefix ('dramatiq:'); ARGV[3..] the watchers' lists: a name, or a glob
--         (ending in '*') of a taken list's per-instance lists.
--
-- Returns {key, count, ...}: each non-empty queue or delay queue (a list of the
-- namespace not starting with '__'), acks set ('__acks__.*'), and watcher list.

local found = {}
-- count: a reply of LLEN or SCARD; an error reply (another type) is no work
local function add(key, count)
    if type(count) == 'number' and count > 0 then
        found[#found + 1] = key
        found[#found + 1] = count
    end
end
local function scan(pattern, each)
    local cursor = '0'
    repeat
        local r = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)
        cursor = r[1]
        for _, key in ipairs(r[2]) do each(key) end
    until cursor == '0'
end
local function list_length(key) add(key, redis.pcall('LLEN', key)) end

local prefix = ARGV[2]
scan(ARGV[1], function(key)
    local name = string.sub(key, #prefix + 1)
    if string.sub(name, 1, 9) == '__acks__.' then
        add(key, redis.pcall('SCARD', key))
    elseif string.sub(name, 1, 2) ~= '__' then
        list_length(key)
    end
end)
for i = 3, #ARGV do
    if string.sub(ARGV[i], -1) == '*' then scan(ARGV[i], list_length) else list_length(ARGV[i]) end
end
return found
