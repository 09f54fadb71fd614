-- Give a room a fresh epoch when the one its members were delivered is
-- stale: Redis lost its newest writes (a failover promoted a replica that
-- lacked them), so its offsets would be reused for other messages. Only if
-- the room's epoch is still ARGV[1]: gateways noticing at once renew once.
-- KEYS[1] meta hash   KEYS[2] history stream
-- ARGV[1] the stale epoch   ARGV[2] the new epoch   ARGV[3] history TTL (s)
-- Returns {epoch, newest offset}: the new position, or the current one when
-- another gateway renewed first (or the room has no state: created as read.lua does).
local epoch = redis.call('HGET', KEYS[1], 'e')
if epoch == ARGV[1] or not epoch then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', ARGV[2], 's', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return {ARGV[2], 0}
end
return {epoch, tonumber(redis.call('HGET', KEYS[1], 's'))}
