-- Extend leases this node still holds (quotas_redis.py, every lease_s / 3).
-- KEYS[1..n] lease sets, ARGV[1] lease time-to-live in ms, ARGV[1 + i] the lease id in KEYS[i]
-- Returns how many leases were no longer there (expired while Redis was unreachable).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local lost = 0
for i, key in ipairs(KEYS) do
  local changed = redis.call('ZADD', key, 'XX', 'CH', now + ttl, ARGV[i + 1])
  if changed == 0 and not redis.call('ZSCORE', key, ARGV[i + 1]) then
    lost = lost + 1
  end
  redis.call('PEXPIRE', key, ttl * 2)
end
return lost
