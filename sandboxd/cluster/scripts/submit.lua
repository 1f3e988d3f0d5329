-- (after _finish.lua, for `promote`) Accept a job (jobs.py).
-- KEYS[1] the stream, KEYS[2] the job's hash, KEYS[3] the tenant's idempotency key slot (used
-- only when ARGV[3] == '1').
-- ARGV[1] execution id, ARGV[2] tenant, ARGV[3] '1' with an idempotency key, ARGV[4] the
-- request (codec.py bytes: stored as its own key, the stream entry holds only the id),
-- ARGV[5] the most unfinished jobs the cluster may hold, ARGV[6] the key prefix,
-- ARGV[7] the tenant's most unfinished jobs, ARGV[8] the bytes this job reserves (its request
-- and room for its output), ARGV[9] the tenant's most reserved bytes, ARGV[10] the tenant's
-- concurrency limit.
-- Per tenant (hash PREFIX tenant:TENANT): unfinished (accepted, not finished), bytes
-- (reserved by those), streamed (of those, entries in the stream), limit (ARGV[10], as of
-- its latest Submit). A job enters the tenant's backlog (list PREFIX backlog:TENANT) and
-- moves to the stream only while the tenant has fewer than `limit` entries there, so another
-- tenant's job is never behind more than this tenant's share of the stream.
-- Returns {1, id} accepted, {0, earlier id} for a repeated idempotency key, {-1, count} the
-- cluster is full, {-2, count} the tenant has its most unfinished jobs, {-3, bytes} the
-- tenant has no room for this job's bytes.
if ARGV[3] == '1' then
  local existing = redis.call('GET', KEYS[3])
  if existing then
    return {0, existing}
  end
end
local prefix = ARGV[6]
local tenant = ARGV[2]
local tkey = prefix .. 'tenant:' .. tenant
local unfinished = tonumber(redis.call('HGET', tkey, 'unfinished') or '0')
if unfinished >= tonumber(ARGV[7]) then
  return {-2, unfinished}
end
local used = tonumber(redis.call('HGET', tkey, 'bytes') or '0')
if used + tonumber(ARGV[8]) > tonumber(ARGV[9]) then
  return {-3, used}
end
local total = tonumber(redis.call('GET', prefix .. 'unfinished') or '0')
if total >= tonumber(ARGV[5]) then
  return {-1, total}
end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[2] .. ':req', ARGV[4])
local idem = ''
if ARGV[3] == '1' then
  idem = KEYS[3]
  redis.call('SET', KEYS[3], ARGV[1])
end
redis.call('HSET', KEYS[2], 'tenant', tenant, 'state', 'QUEUED', 'submitted_ms', now_ms,
  'entry', '', 'idem', idem, 'attempts', 0, 'bytes', ARGV[8])
redis.call('HINCRBY', tkey, 'unfinished', 1)
redis.call('HINCRBY', tkey, 'bytes', ARGV[8])
redis.call('HSET', tkey, 'limit', ARGV[10])
redis.call('INCR', prefix .. 'unfinished')
redis.call('RPUSH', prefix .. 'backlog:' .. tenant, ARGV[1])
promote(prefix, tenant, KEYS[1])
return {1, ARGV[1]}
