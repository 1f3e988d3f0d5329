-- A worker took the job (RUNNING). KEYS[1] the job's hash, ARGV[1] the node.
-- Returns 1 go on, 2 a cancel was asked (kill it), 0 already finished elsewhere (kill it).
local state = redis.call('HGET', KEYS[1], 'state')
if (not state) or state == 'DONE' or state == 'CANCELLED' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'RUNNING', 'node', ARGV[1])
if redis.call('HGET', KEYS[1], 'cancel') == '1' then
  return 2
end
return 1
