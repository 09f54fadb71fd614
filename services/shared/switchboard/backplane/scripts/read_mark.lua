-- Move a user's read state in a room forward (protocol §11) and tell the
-- room's other members with an ephemeral `read` event, atomically: the
-- event goes out only when the state moved, so it never goes backwards.
-- KEYS[1] the room's state hash (see publish.lua; field l:<user>)
-- ARGV[1] the room's epoch the offset belongs to   ARGV[2] offset
-- ARGV[3] user id   ARGV[4] pub/sub channel   ARGV[5] the `read` event frame
-- ARGV[6] fan-out command (PUBLISH or SPUBLISH)
-- Returns 1 when the state moved, 0 when not (another epoch: that offset
-- means nothing now; or not beyond what is stored).
-- Only this one key: the write is cheap and never meets a key that does
-- not exist yet on a migrating slot (TRYAGAIN).
if redis.call('HGET', KEYS[1], 'e') ~= ARGV[1] then return 0 end
local field = 'l:' .. ARGV[3]
if tonumber(redis.call('HGET', KEYS[1], field) or '0') >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], field, ARGV[2])
redis.call(ARGV[6], ARGV[4], 'e' .. ARGV[5])
return 1
