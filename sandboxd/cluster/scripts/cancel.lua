-- (after _finish.lua) CancelExecution, from any node. KEYS[1] the stream, KEYS[2] the job's
-- hash. ARGV[1] the caller's tenant, ARGV[2] group, ARGV[3] events channel, ARGV[4] retention
-- ms, ARGV[5] execution id, ARGV[6] the key prefix.
-- A job no node has taken yet is CANCELLED here (it never runs). Otherwise the cancel is
-- recorded on the job (a node that takes it later sees it) and published: the node holding
-- it kills its worker (DONE, KILLED) or, before a worker was taken, cancels it.
-- Returns {'missing'} (unknown, expired or another tenant's) or {state after the call}.
local tenant = redis.call('HGET', KEYS[2], 'tenant')
if (not tenant) or tenant ~= ARGV[1] then
  return {'missing'}
end
local state = redis.call('HGET', KEYS[2], 'state')
if state == 'DONE' or state == 'CANCELLED' then
  return {state}
end
local node = redis.call('HGET', KEYS[2], 'node')
if state == 'QUEUED' and ((not node) or node == '') then
  finish_job(KEYS[2], ARGV[5], 'CANCELLED', '', tonumber(ARGV[4]), KEYS[1], ARGV[2], ARGV[3],
    ARGV[6])
  return {'CANCELLED'}
end
redis.call('HSET', KEYS[2], 'cancel', '1')
redis.call('PUBLISH', ARGV[3], 'cancel:' .. ARGV[5])
return {state}
