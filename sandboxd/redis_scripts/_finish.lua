-- Shared by finish.lua and cancel.lua (prepended by redis_link.load_script).
-- Finishes a job once: DONE with its result, or CANCELLED. A job already finished (another
-- node ran it too after a reclaim: at-least-once delivery) keeps its first result, so a client
-- sees exactly one. From now on the job, its result and its idempotency key expire after the
-- retention; the request payload is deleted; the stream entry is acknowledged and deleted;
-- waiters on every node are told on the events channel.
local function finish_job(job, id, state, result, retention_ms, stream, group, channel)
  local current = redis.call('HGET', job, 'state')
  if (not current) or current == 'DONE' or current == 'CANCELLED' then
    return 0
  end
  local t = redis.call('TIME')
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', job, 'state', state, 'finished_ms', now_ms)
  redis.call('HDEL', job, 'cancel')
  if state == 'DONE' then
    redis.call('SET', job .. ':result', result, 'PX', retention_ms)
  end
  redis.call('DEL', job .. ':req')
  redis.call('PEXPIRE', job, retention_ms)
  local idem = redis.call('HGET', job, 'idem')
  if idem and idem ~= '' then
    redis.call('PEXPIRE', idem, retention_ms)
  end
  local entry = redis.call('HGET', job, 'entry')
  if entry then
    redis.call('XACK', stream, group, entry)
    redis.call('XDEL', stream, entry)
  end
  redis.call('PUBLISH', channel, 'done:' .. id)
  return 1
end
