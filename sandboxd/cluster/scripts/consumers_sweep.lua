-- Remove the consumers of nodes that are gone from the jobs' group (jobs.py). A node
-- keeps its heartbeat key (ARGV[4] .. its consumer name) alive while it runs; a consumer whose
-- heartbeat expired, idle for at least ARGV[2] ms and with no pending entry (another node took
-- its entries over after the visibility timeout) is removed. Atomic: no entry can be delivered
-- to a consumer between the check and its removal, and a node that was only cut off from Redis
-- gets its consumer back with its next read. ARGV[3] (optional): only that consumer (a node
-- removing its own at its end, heartbeat already deleted).
-- KEYS[1] the stream, ARGV[1] the group. Returns the names removed.
local removed = {}
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then
  return removed -- no stream or no group yet
end
local min_idle = tonumber(ARGV[2])
local only = ARGV[3]
for _, consumer in ipairs(consumers) do
  local fields = {}
  for i = 1, #consumer, 2 do
    fields[consumer[i]] = consumer[i + 1]
  end
  local name = fields['name']
  if (only == '' or name == only) and tonumber(fields['pending']) == 0
      and tonumber(fields['idle']) >= min_idle
      and redis.call('EXISTS', ARGV[4] .. name) == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    table.insert(removed, name)
  end
end
return removed
