-- Add an execution's CPU seconds to its tenant's current minute (see cpu_check.lua).
-- KEYS[1] the key prefix of the tenant's minute counters, ARGV[1] CPU seconds
local t = redis.call('TIME')
local window = math.floor(tonumber(t[1]) / 60)
local key = KEYS[1] .. window
redis.call('INCRBYFLOAT', key, ARGV[1])
redis.call('EXPIRE', key, 180)
return 1
