-- Connection slots of one subject (a user), shared by every gateway:
-- MAX_CONNECTIONS_PER_USER across the cluster. A slot lives until its expiry
-- unless its gateway refreshes it, so a crashed gateway's slots free
-- themselves.
-- KEYS[1] zset: slot (connection id) -> expiry (ms, Redis clock)
-- ARGV[1] 'claim' | 'refresh' | 'release'   ARGV[2] limit   ARGV[3] lifetime (ms)
-- ARGV[4], ...: slots
-- claim: 1 when ARGV[4] got a slot (or had one), 0 when the subject is at the
--        limit. refresh: re-adds the slots (healing a Redis that lost them).
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local expiry = string.format('%d', now_ms + tonumber(ARGV[3]))
local mode = ARGV[1]
if mode == 'release' then
  for i = 4, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
  return 1
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if mode == 'claim' then
  if not redis.call('ZSCORE', KEYS[1], ARGV[4])
      and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    return 0
  end
end
for i = 4, #ARGV do redis.call('ZADD', KEYS[1], expiry, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
