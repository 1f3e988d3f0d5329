-- CPU seconds per minute, sliding window (sandboxd.quotas.rates has the same arithmetic).
-- KEYS[1] the key prefix of the tenant's minute counters ("...:cpu:TENANT:" + minute number)
-- ARGV[1] the limit in CPU seconds per minute
-- Returns {1, "0"} when under the limit, else {0, seconds until it is under}.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = math.floor(now / 60)
local elapsed = now - window * 60
local limit = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1] .. window) or '0')
local previous = tonumber(redis.call('GET', KEYS[1] .. (window - 1)) or '0')
if current + previous * (1 - elapsed / 60) < limit then
  return {1, '0'}
end
local retry
if current >= limit or previous <= 0 then
  retry = 60 - elapsed
else
  retry = math.max(0, 60 * (1 - (limit - current) / previous) - elapsed)
end
return {0, string.format('%.6f', retry)}
