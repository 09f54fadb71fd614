-- A user's direct rooms, the most recently active first (direct_touch.lua).
-- KEYS[1] sorted set   KEYS[2] hash   ARGV[1] most rooms returned
-- Returns {room, when (ms), other user's JSON or false, ...}.
local rooms = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
local out = {}
for i = 1, #rooms, 2 do
  out[#out + 1] = rooms[i]
  out[#out + 1] = rooms[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], rooms[i])
end
return out
