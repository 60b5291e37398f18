-- prune.lua: remove the entries of a dedup set older than its time to live, a bounded
-- number at a time (the Redis clock decides what is old).
--
-- KEYS[1]  dedup set (member task, score unix seconds when it was queued)
-- ARGV[1]  time to live in seconds: entries scored before now - ttl are old
-- ARGV[2]  most entries removed by this call
-- ARGV[3]  '1' for a dry run: count, remove nothing
--
-- Returns {removed (or, dry, all old entries), old entries left, entries left,
--          score of the oldest entry left or '' when empty}.
local now = math.floor(now_ms() / 1000)
local cutoff = '(' .. (now - tonumber(ARGV[1]))
local removed = 0
if ARGV[3] == '1' then
    removed = redis.call('ZCOUNT', KEYS[1], '-inf', cutoff)
else
    local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[2]))
    if #old > 0 then
        removed = redis.call('ZREM', KEYS[1], unpack(old))
    end
end
local old_left = 0
if ARGV[3] ~= '1' then
    old_left = redis.call('ZCOUNT', KEYS[1], '-inf', cutoff)
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {removed, old_left, redis.call('ZCARD', KEYS[1]), oldest[2] or '', now}
