-- Append a chat message to a room's history and publish it, atomically, so
-- offsets are +1 in publish order and every gateway sees that one order.
-- KEYS[1] meta hash (e = epoch, s = newest offset)
-- KEYS[2] history stream (entry id = offset)
-- KEYS[3] optional idempotency key for (user, client_msg_id)
-- ARGV[1] pub/sub channel
-- ARGV[2] frame head: {"type":"message","room":"<room>","offset":
-- ARGV[3] frame tail: ,"user":{...},"text":"...","ts":<ms>}
-- ARGV[4] epoch to use when the room has none (new room, or history lost)
-- ARGV[5] history size (entries kept)   ARGV[6] history TTL (s)
-- ARGV[7] idempotency window (s)        ARGV[8] ts (ms)
-- Returns {offset, epoch, duplicate (0/1)}.
if KEYS[3] then
  local prior = redis.call('GET', KEYS[3])
  if prior then
    local sep = string.find(prior, ':', 1, true)
    return {tonumber(string.sub(prior, 1, sep - 1)), string.sub(prior, sep + 1), 1}
  end
end
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[4]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0)
end
local offset = redis.call('HINCRBY', KEYS[1], 's', 1)
-- The middle part mirrors switchboard.protocol.codec.message_position byte for byte.
local frame = ARGV[2] .. offset .. ',"epoch":"' .. epoch .. '","msg_id":"' .. epoch .. '-' .. offset .. '"' .. ARGV[3]
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[5], offset .. '-0', 'd', frame)
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[6])
if KEYS[3] then
  redis.call('SET', KEYS[3], offset .. ':' .. epoch, 'EX', ARGV[7])
end
redis.call('PUBLISH', ARGV[1], 'm' .. offset .. ' ' .. epoch .. ' ' .. ARGV[8] .. ' ' .. frame)
return {offset, epoch, 0}
