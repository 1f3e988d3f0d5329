-- Token bucket: one execution of a tenant limited to ARGV[1] per second (sandboxd.quotas.rates has
-- the same arithmetic for one node). KEYS[1] the bucket (hash: tokens, at_s).
-- Returns {1, "0"} when a token was taken, {0, seconds until one is there}.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local capacity = math.max(1, rate)
local v = redis.call('HMGET', KEYS[1], 'tokens', 'at_s')
local tokens = tonumber(v[1]) or capacity
local at = tonumber(v[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local ok, retry = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  ok = 1
else
  retry = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at_s', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return {ok, string.format('%.6f', retry)}
