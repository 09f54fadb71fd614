-- Record that one of a user's direct rooms was active: the user's list of
-- direct rooms is a sorted set (room -> last activity, ms) capped at its
-- newest ARGV[5] rooms, and a hash (room -> the other user's JSON). Both
-- keys are the user's own (hash tag {u:<id>}): one slot, never the room's.
-- KEYS[1] sorted set   KEYS[2] hash
-- ARGV[1] room   ARGV[2] when (ms)   ARGV[3] the other user's JSON
-- ARGV[4] '1': overwrite the other user's JSON; '0': only if none yet (the
--         writer does not know that user's name, only their id)
-- ARGV[5] most rooms kept   ARGV[6] TTL of both keys (s), renewed each time
-- Returns 1 when the room was not in the list (the user had not got it).
local added = redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
else
  redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[3])
end
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[5])
if over > 0 then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, over - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, over - 1)
  redis.call('HDEL', KEYS[2], unpack(oldest))
end
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
return added
