-- Append a chat message to a room's history and publish it, atomically, so
-- offsets are +1 in publish order and every gateway sees that one order.
-- KEYS[1] meta hash (e = epoch, s = newest offset)
-- KEYS[2] history stream (entry id = offset)
-- KEYS[3] optional idempotency key for (user, client_msg_id)
-- ARGV[1] pub/sub channel (same hash slot as the keys)
-- ARGV[2] frame head: {"type":"message","room":"<room>","offset":
-- ARGV[3] frame tail: ,"user":{...},"text":"...","ts":<ms>}
-- ARGV[4] epoch to use when the room has none (new room, or history lost)
-- ARGV[5] history size (entries kept)   ARGV[6] history TTL (s)
-- ARGV[7] idempotency window (s)        ARGV[8] ts (ms)
-- ARGV[9] fan-out command: PUBLISH (one Redis) or SPUBLISH (cluster: the room's shard only)
-- ARGV[10] epoch and ARGV[11] newest offset the calling gateway has heard of
--          ("" and 0 when it has heard of none)
-- ARGV[#ARGV] (the LAST one) EVENTS_MAXLEN, '0' when events are off;
-- KEYS[#KEYS] (the LAST one) the room's events stream, only when they are on.
-- Returns {offset, epoch, duplicate (0/1)}.
-- >>> events stream (events.lua is prepended)
local events_key = ARGV[#ARGV] ~= '0' and KEYS[#KEYS] or nil
local idem_key = KEYS[3] ~= events_key and KEYS[3] or nil
-- <<< events stream
local epoch = redis.call('HGET', KEYS[1], 'e')
if epoch and epoch == ARGV[10] and tonumber(redis.call('HGET', KEYS[1], 's')) < tonumber(ARGV[11]) then
  -- This shard lacks writes a gateway heard of (a failover promoted a replica
  -- that had not got them): their offsets must not be reused for other
  -- messages, so the room starts a fresh epoch with this one.
  epoch = false
end
if idem_key then
  local prior = redis.call('GET', idem_key)
  if prior then
    local sep = string.find(prior, ':', 1, true)
    local prior_epoch = string.sub(prior, sep + 1)
    -- Only a result of the room's current epoch stands: after the epoch was
    -- renewed (history lost), the message is stored again.
    if prior_epoch == epoch then
      -- A write, so that a WAIT after this call also covers the original
      -- (WAIT counts the writes of the calling connection).
      redis.call('SET', idem_key, prior, 'KEEPTTL')
      return {tonumber(string.sub(prior, 1, sep - 1)), prior_epoch, 1}
    end
  end
end
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
if idem_key then
  redis.call('SET', idem_key, offset .. ':' .. epoch, 'EX', ARGV[7])
end
-- >>> events stream: the logged entry, as its frame (every kind of entry alike)
append_event(events_key, ARGV[#ARGV], frame)
-- <<< events stream
redis.call(ARGV[9], ARGV[1], 'm' .. offset .. ' ' .. epoch .. ' ' .. ARGV[8] .. ' ' .. frame)
return {offset, epoch, 0}
