-- Append an entry to a room's history and publish it, atomically, so
-- offsets are +1 in publish order and every gateway sees that one order.
-- An entry is a chat message or a change to one (protocol §11: edit,
-- delete, react, unreact); changes are checked against the room's state
-- hash here, in the same atomic step that appends them.
-- KEYS[1] meta hash (e = epoch, s = newest offset)
-- KEYS[2] history stream (entry id = offset)
-- KEYS[3] state hash (fields below)
-- KEYS[4] optional idempotency key for (user, client_msg_id): idem_key below
-- ARGV[1] pub/sub channel (same hash slot as the keys)
-- ARGV[2] frame head: {"type":"message","room":"<room>","offset":
-- ARGV[3] frame tail: ,"kind":...,"user":{...},"text":"...","ts":<ms>}
-- ARGV[4] epoch to use when the room has none (new room, or history lost)
-- ARGV[5] history size (entries kept)   ARGV[6] history TTL (s)
-- ARGV[7] idempotency window (s)        ARGV[8] ts (ms)
-- ARGV[9] fan-out command: PUBLISH (one Redis) or SPUBLISH (cluster: the room's shard only)
-- ARGV[10] epoch and ARGV[11] newest offset the calling gateway has heard of
--          ("" and 0 when it has heard of none)
-- ARGV[12] kind: message | edit | delete | react | unreact
-- ARGV[13] target offset ('0' for a message)   ARGV[14] emoji ('' unless react/unreact)
-- ARGV[15] user id   ARGV[16] '1': a moderator (may delete any message)
-- ARGV[17] most distinct emoji per message
-- ARGV[#ARGV] (the LAST one) EVENTS_MAXLEN, '0' when events are off;
-- KEYS[#KEYS] (the LAST one) the room's events stream, only when they are on.
-- Returns {offset, epoch, duplicate (0/1), status}: status '' (stored or
-- duplicate), or nothing stored and offset 0: 'noop' (a repeated react, an
-- unreact without reaction), 'no_target' (not a message of the room's
-- history), 'deleted', 'forbidden' (not the author), 'emoji_limit'.
--
-- The state hash belongs to one epoch (field e) and holds, per offset o:
--   a:<o>  message o: '=' .. its author's id, or '-' once deleted (only
--          messages in history have one; unread counting reads just these)
--   n:<o>  distinct emoji on message o
--   c:<o>:<emoji>  users who reacted with it
--   r:<o>:<#emoji>:<emoji>:<user>  that user reacted (#emoji: its length in
--                  bytes, so no emoji/user pair can collide with another)
--   k:<x>  on react entry x: the r: field suffix it created
--   f      oldest offset whose fields may remain (trimming below)
--   l:<user>  read state: the highest offset the user has read (read_mark.lua)
-- Trimmed with history: when offset x leaves the stream its a/n/k fields
-- go, and a react entry x takes the r:/c: fields it created with it (their
-- message is older than x, so already out of history). The hash thus holds
-- O(history size) reaction fields, plus one read field per reader.
local state = KEYS[3]
local kind = ARGV[12]
-- >>> events stream (events.lua is prepended)
local events_key = ARGV[#ARGV] ~= '0' and KEYS[#KEYS] or nil
local idem_key = KEYS[4] ~= events_key and KEYS[4] or nil
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
      return {tonumber(string.sub(prior, 1, sep - 1)), prior_epoch, 1, ''}
    end
  end
end
local target = ARGV[13]
local reaction, count_field
if kind ~= 'message' then
  -- A change: its target must be a message of this epoch's history (one
  -- with an a: field), not deleted. Refusals write nothing.
  if not epoch or redis.call('HGET', state, 'e') ~= epoch then
    return {0, epoch or '', 0, 'no_target'}
  end
  local author = redis.call('HGET', state, 'a:' .. target)
  if not author then return {0, epoch, 0, 'no_target'} end
  if author == '-' then return {0, epoch, 0, 'deleted'} end
  if (kind == 'edit' or kind == 'delete') and author ~= '=' .. ARGV[15] and ARGV[16] ~= '1' then
    return {0, epoch, 0, 'forbidden'}
  end
  if kind == 'react' or kind == 'unreact' then
    local emoji = ARGV[14]
    reaction = target .. ':' .. #emoji .. ':' .. emoji .. ':' .. ARGV[15]
    count_field = 'c:' .. target .. ':' .. emoji
    local reacted = redis.call('HEXISTS', state, 'r:' .. reaction) == 1
    if kind == 'react' then
      if reacted then return {0, epoch, 0, 'noop'} end
      if redis.call('HEXISTS', state, count_field) == 0
          and tonumber(redis.call('HGET', state, 'n:' .. target) or '0') >= tonumber(ARGV[17]) then
        return {0, epoch, 0, 'emoji_limit'}
      end
    elseif not reacted then
      return {0, epoch, 0, 'noop'}
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
-- The state hash follows the epoch: another epoch's fields are dropped
-- (history was lost or renewed: its offsets mean other messages now).
local floor = math.max(1, offset - tonumber(ARGV[5]) + 1)  -- oldest offset the stream keeps
local kept = redis.call('HMGET', state, 'e', 'f')
local f = tonumber(kept[2]) or floor
if kept[1] ~= epoch then
  redis.call('DEL', state)
  redis.call('HSET', state, 'e', epoch)
  f = floor
end
if f < floor then
  for x = f, floor - 1 do
    local owned = redis.call('HGET', state, 'k:' .. x)
    if owned then
      local t, len = string.match(owned, '^(%d+):(%d+):')
      local emoji = string.sub(owned, #t + #len + 3, #t + #len + 2 + tonumber(len))
      redis.call('HDEL', state, 'r:' .. owned, 'c:' .. t .. ':' .. emoji)
    end
    redis.call('HDEL', state, 'a:' .. x, 'n:' .. x, 'k:' .. x)
  end
end
-- f is written with the entry's own field: one HSET.
if kind == 'message' then
  redis.call('HSET', state, 'f', floor, 'a:' .. offset, '=' .. ARGV[15])
elseif kind == 'delete' then
  redis.call('HSET', state, 'f', floor, 'a:' .. target, '-')
elseif kind == 'react' then
  redis.call('HSET', state, 'f', floor, 'r:' .. reaction, 1, 'k:' .. offset, reaction)
  if redis.call('HINCRBY', state, count_field, 1) == 1 then
    redis.call('HINCRBY', state, 'n:' .. target, 1)
  end
elseif kind == 'edit' then
  redis.call('HSET', state, 'f', floor)
elseif kind == 'unreact' then
  redis.call('HSET', state, 'f', floor)
  redis.call('HDEL', state, 'r:' .. reaction)
  if redis.call('HINCRBY', state, count_field, -1) <= 0 then
    redis.call('HDEL', state, count_field)
    redis.call('HINCRBY', state, 'n:' .. target, -1)
  end
end
redis.call('EXPIRE', state, ARGV[6])
if idem_key then
  redis.call('SET', idem_key, offset .. ':' .. epoch, 'EX', ARGV[7])
end
-- >>> events stream: the logged entry, as its frame (every kind of entry alike)
append_event(events_key, ARGV[#ARGV], frame)
-- <<< events stream
redis.call(ARGV[9], ARGV[1], 'm' .. offset .. ' ' .. epoch .. ' ' .. ARGV[8] .. ' ' .. frame)
return {offset, epoch, 0, ''}
