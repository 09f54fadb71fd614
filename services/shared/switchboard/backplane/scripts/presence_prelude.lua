-- Shared head of the presence scripts (prepended by scripts.py).
-- KEYS[1] hash connection -> user JSON {"id","name"}
-- KEYS[2] zset connection -> expiry (ms)
-- KEYS[3] hash user id -> number of live connections in the room
-- ARGV[1] pub/sub channel   ARGV[2] room as JSON   ARGV[3] now (ms)
-- ARGV[4] key TTL (s): the keys vanish when no gateway refreshes them.
-- ARGV[5] fan-out command: PUBLISH (one Redis) or SPUBLISH (cluster)
-- A user's first connection publishes presence_join, its last one presence_leave.
local function announce(kind, user)
  redis.call(ARGV[5], ARGV[1],
    'e{"type":"presence_' .. kind .. '","room":' .. ARGV[2] .. ',"user":' .. user .. '}')
end

local function remove(conn)
  local user = redis.call('HGET', KEYS[1], conn)
  redis.call('ZREM', KEYS[2], conn)
  if not user then return end
  redis.call('HDEL', KEYS[1], conn)
  local uid = cjson.decode(user)['id']
  if redis.call('HINCRBY', KEYS[3], uid, -1) <= 0 then
    redis.call('HDEL', KEYS[3], uid)
    announce('leave', user)
  end
end

local function sweep()
  for _, conn in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])) do
    remove(conn)
  end
end

local function keep_alive()
  for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[4]) end
end
