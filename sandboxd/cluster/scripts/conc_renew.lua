-- Extend the leases this node holds (quotas.py, every lease_s / 3), and take again those
-- that are not there: leases that expired while Redis was unreachable (or that Redis lost), and
-- slots this node counted locally while it could not reach Redis. Their executions are running,
-- so they count against the tenant's limit whatever it is now: a tenant over its limit gets no
-- new slot until enough of them ended.
-- KEYS[1..n] lease sets, ARGV[1] lease time-to-live in ms, ARGV[1 + i] the lease id in KEYS[i]
-- Returns how many leases were taken again (were not in their set).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local retaken = 0
for i, key in ipairs(KEYS) do
  retaken = retaken + redis.call('ZADD', key, now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', key, ttl * 2)
end
return retaken
