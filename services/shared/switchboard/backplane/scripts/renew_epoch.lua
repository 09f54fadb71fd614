-- Give a room a fresh epoch because its offsets were reused (a failover lost
-- writes that gateways had already delivered), atomically and only once:
-- several gateways may notice together, and only the first request renews.
-- KEYS[1] meta hash (e = epoch, s = newest offset)   KEYS[2] history stream
-- ARGV[1] the stale epoch   ARGV[2] the fresh epoch   ARGV[3] history TTL (s)
-- If the room's epoch is still ARGV[1] (or it has none), it becomes ARGV[2]
-- at offset 0 and the old history is dropped.
-- Returns {epoch, newest offset}.
local meta = redis.call('HMGET', KEYS[1], 'e', 's')
if meta[1] and meta[1] ~= ARGV[1] then
  return {meta[1], tonumber(meta[2])}
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'e', ARGV[2], 's', 0)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {ARGV[2], 0}
