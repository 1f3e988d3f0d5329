-- A draining node gives back a job it took but did not start: a new stream entry for the
-- same job, so another node takes it at once. KEYS[1] the stream, KEYS[2] the job's hash.
-- ARGV[1] group, ARGV[2] the entry the node held, ARGV[3] execution id.
-- Returns 1 requeued, 0 nothing to do (finished, expired or requeued already).
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
local state = redis.call('HGET', KEYS[2], 'state')
if (not state) or state == 'DONE' or state == 'CANCELLED' then
  return 0
end
if redis.call('HGET', KEYS[2], 'entry') ~= ARGV[2] then
  return 0
end
local entry = redis.call('XADD', KEYS[1], '*', 'id', ARGV[3])
redis.call('HSET', KEYS[2], 'entry', entry)
redis.call('HDEL', KEYS[2], 'node')
return 1
