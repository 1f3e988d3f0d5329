-- A node took a stream entry (XREADGROUP or XAUTOCLAIM). KEYS[1] the stream, KEYS[2] the
-- job's hash. ARGV[1] group, ARGV[2] the entry id, ARGV[3] the node.
-- Returns {'skip'} (finished, expired or a stale entry: acknowledged and deleted),
-- {'cancelled', state} (cancel asked while no live node had it), or
-- {'run', state, request, submitted_ms, now_ms, attempts}.
local state = redis.call('HGET', KEYS[2], 'state')
local entry = redis.call('HGET', KEYS[2], 'entry')
if (not state) or state == 'DONE' or state == 'CANCELLED' or entry ~= ARGV[2] then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[1], ARGV[2])
  return {'skip'}
end
if redis.call('HGET', KEYS[2], 'cancel') == '1' then
  return {'cancelled', state}
end
redis.call('HSET', KEYS[2], 'node', ARGV[3])
local attempts = redis.call('HINCRBY', KEYS[2], 'attempts', 1)
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {'run', state, redis.call('GET', KEYS[2] .. ':req') or '',
  redis.call('HGET', KEYS[2], 'submitted_ms'), now_ms, attempts}
