-- (after _finish.lua) A node finished a job. KEYS[1] the stream, KEYS[2] the job's hash.
-- ARGV[1] 'DONE' or 'CANCELLED', ARGV[2] the result (codec.py bytes; '' when CANCELLED),
-- ARGV[3] retention ms, ARGV[4] group, ARGV[5] events channel, ARGV[6] execution id,
-- ARGV[7] the entry this node held (acknowledged even if the job was requeued since),
-- ARGV[8] the key prefix.
-- Returns 1 when this call wrote the result, 0 when the job was finished already.
redis.call('XACK', KEYS[1], ARGV[4], ARGV[7])
return finish_job(KEYS[2], ARGV[6], ARGV[1], ARGV[2], tonumber(ARGV[3]), KEYS[1], ARGV[4], ARGV[5],
  ARGV[8])
