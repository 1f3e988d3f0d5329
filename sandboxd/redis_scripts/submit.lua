-- Accept a job (jobs_redis.py). KEYS[1] the stream, KEYS[2] the job's hash, KEYS[3] the
-- tenant's idempotency key slot (used only when ARGV[3] == '1').
-- ARGV[1] execution id, ARGV[2] tenant, ARGV[3] '1' with an idempotency key, ARGV[4] the
-- request (job_codec bytes: stored as its own key, the stream entry holds only the id),
-- ARGV[5] the most unfinished jobs the stream may hold.
-- Returns {1, id} accepted, {0, earlier id} for a repeated idempotency key, {-1, count} full.
if ARGV[3] == '1' then
  local existing = redis.call('GET', KEYS[3])
  if existing then
    return {0, existing}
  end
end
local unfinished = redis.call('XLEN', KEYS[1])
if unfinished >= tonumber(ARGV[5]) then
  return {-1, unfinished}
end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[2] .. ':req', ARGV[4])
local entry = redis.call('XADD', KEYS[1], '*', 'id', ARGV[1])
local idem = ''
if ARGV[3] == '1' then
  idem = KEYS[3]
  redis.call('SET', KEYS[3], ARGV[1])
end
redis.call('HSET', KEYS[2], 'tenant', ARGV[2], 'state', 'QUEUED', 'submitted_ms', now_ms,
  'entry', entry, 'idem', idem, 'attempts', 0)
return {1, ARGV[1]}
