-- heartbeat.lua: mark an instance alive until now + ttl (Redis clock) and list the
-- instances whose heartbeat has expired.
--
-- KEYS[1]  instances sorted set of the watcher (member instance, score expiry in ms)
-- KEYS[2]  beats sorted set of the watcher (member instance, score last beat in ms)
-- ARGV[1]  this instance's name
-- ARGV[2]  heartbeat time to live in ms
--
-- Returns the names of expired instances.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
redis.call('ZADD', KEYS[2], now_ms, ARGV[1])
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now_ms)
