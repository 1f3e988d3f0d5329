-- One of a tenant's concurrent executions, cluster-wide (quotas.py).
-- KEYS[1] the tenant's lease set (sorted set: lease id -> expiry, ms of the Redis clock)
-- ARGV[1] lease id, ARGV[2] the tenant's limit, ARGV[3] lease time-to-live in ms
-- Returns {1, running} when the lease was taken, {0, running} when the tenant is at its limit.
-- Expired leases (a node that died holding them) are dropped first.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local running = redis.call('ZCARD', KEYS[1])
if running >= tonumber(ARGV[2]) then
  return {0, running}
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return {1, running + 1}
