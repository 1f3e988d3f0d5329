-- Shared by finish.lua and cancel.lua (prepended by link.load_script).
-- Finishes a job once: DONE with its result, or CANCELLED. A job already finished (another
-- node ran it too after a reclaim: at-least-once delivery) keeps its first result, so a client
-- sees exactly one. From now on the job, its result and its idempotency key expire after the
-- retention; the request payload is deleted; the stream entry is acknowledged and deleted;
-- waiters on every node are told on the events channel. The tenant's counts (see submit.lua)
-- go down, and a job of its backlog takes the stream place this one had.
local function lower(key, field, by)
  local value = tonumber(redis.call('HGET', key, field) or '0') - by
  if value < 0 then
    value = 0
  end
  redis.call('HSET', key, field, value)
end

-- Move the tenant's oldest backlog jobs into the stream while it has fewer entries there
-- than its concurrency limit (cancelled ones are skipped).
local function promote(prefix, tenant, stream)
  local tkey = prefix .. 'tenant:' .. tenant
  local backlog = prefix .. 'backlog:' .. tenant
  local limit = tonumber(redis.call('HGET', tkey, 'limit') or '1')
  while tonumber(redis.call('HGET', tkey, 'streamed') or '0') < limit do
    local id = redis.call('LPOP', backlog)
    if not id then
      return
    end
    local job = prefix .. 'job:' .. id
    if redis.call('HGET', job, 'state') == 'QUEUED' and (redis.call('HGET', job, 'entry') or '') == '' then
      local entry = redis.call('XADD', stream, '*', 'id', id)
      redis.call('HSET', job, 'entry', entry)
      redis.call('HINCRBY', tkey, 'streamed', 1)
    end
  end
end

local function finish_job(job, id, state, result, retention_ms, stream, group, channel, prefix)
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
  local tenant = redis.call('HGET', job, 'tenant')
  local tkey = prefix .. 'tenant:' .. tenant
  lower(tkey, 'unfinished', 1)
  lower(tkey, 'bytes', tonumber(redis.call('HGET', job, 'bytes') or '0'))
  if tonumber(redis.call('GET', prefix .. 'unfinished') or '0') > 0 then
    redis.call('DECR', prefix .. 'unfinished')
  end
  local entry = redis.call('HGET', job, 'entry')
  if entry and entry ~= '' then
    redis.call('XACK', stream, group, entry)
    redis.call('XDEL', stream, entry)
    lower(tkey, 'streamed', 1)
    promote(prefix, tenant, stream)
  else
    redis.call('LREM', prefix .. 'backlog:' .. tenant, 1, id)
  end
  redis.call('PUBLISH', channel, 'done:' .. id)
  return 1
end
