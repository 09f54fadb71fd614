-- Shared head of the presence scripts (prepended by scripts.py).
-- KEYS[1] hash connection -> user JSON {"id","name"}
-- KEYS[2] zset connection -> expiry (ms)
-- KEYS[3] hash user id -> number of live connections in the room
--         (its HLEN is the number of users present)
-- KEYS[4] hash user id -> user JSON of the users present (for listing them)
-- ARGV[1] pub/sub channel   ARGV[2] room as JSON   ARGV[3] now (ms)
-- ARGV[4] key TTL (s): the keys vanish when no gateway refreshes them.
-- ARGV[5] PRESENCE_EVENTS_MAX
-- ARGV[6] fan-out command: PUBLISH (one Redis) or SPUBLISH (cluster)
-- ARGV[7] EVENTS_MAXLEN ('0': events off)
-- KEYS[5] the room's events stream, only when events are on (events.lua,
--         prepended before this file, appends to it)
-- A user's first connection publishes presence_join, its last one
-- presence_leave, while the room has at most ARGV[5] users (counted after
-- the change); above that, one 'c<count>' per script run tells the gateways
-- the new count instead. Per-user state is kept incrementally, so nothing
-- here reads the whole room: a join costs the same in a room of ten users
-- or of a hundred thousand.
local count_changed = false

local function publish(payload)
  redis.call(ARGV[6], ARGV[1], payload)
end

local function changed(kind, user)
  local count = redis.call('HLEN', KEYS[3])
  presence_events(KEYS[5], ARGV[7], kind, ARGV[2], ARGV[3], user, count)
  if count <= tonumber(ARGV[5]) then
    publish('e{"type":"presence_' .. kind .. '","room":' .. ARGV[2] .. ',"user":' .. user
      .. ',"count":' .. count .. '}')
  else
    count_changed = true
  end
end

-- Once at the end of a script: the count, if it changed above the threshold
-- (when it ends at or below it, the last presence event already carried it).
local function publish_count()
  if not count_changed then return end
  local count = redis.call('HLEN', KEYS[3])
  if count > tonumber(ARGV[5]) then
    publish('c' .. count)
  end
end

local function remove(conn)
  local user = redis.call('HGET', KEYS[1], conn)
  redis.call('ZREM', KEYS[2], conn)
  if not user then return end
  redis.call('HDEL', KEYS[1], conn)
  local uid = cjson.decode(user)['id']
  if redis.call('HINCRBY', KEYS[3], uid, -1) <= 0 then
    redis.call('HDEL', KEYS[3], uid)
    redis.call('HDEL', KEYS[4], uid)
    changed('leave', user)
  end
end

-- Add or refresh one connection, expiring at `expiry` (ms); a missing one is
-- (re-)added, which also heals presence after Redis lost it.
local function upsert(conn, user, expiry)
  if redis.call('HSETNX', KEYS[1], conn, user) == 1 then
    local uid = cjson.decode(user)['id']
    if redis.call('HINCRBY', KEYS[3], uid, 1) == 1 then
      redis.call('HSET', KEYS[4], uid, user)
      changed('join', user)
    end
  end
  redis.call('ZADD', KEYS[2], expiry, conn)
end

-- The id of a user (JSON) that listing() puts first, its profile stored if it
-- never was (HSETNX: it joined through an older gateway version).
local function listed_first(user)
  local uid = cjson.decode(user)['id']
  redis.call('HSETNX', KEYS[4], uid, user)
  return uid
end

local function sweep()
  for _, conn in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])) do
    remove(conn)
  end
end

local function keep_alive()
  for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[4]) end
end

-- {count, user JSON, connections, user JSON, connections, ...}: at most
-- `limit` users, those of `first` (user ids) before any other. The others
-- are whatever HSCAN meets first: a bounded number of rounds of about
-- `limit` entries each, never the whole hash.
local function listing(limit, first)
  local out = {redis.call('HLEN', KEYS[3])}
  local uids, users, seen = {}, {}, {}
  local function take(uid, user)
    if #uids < limit and not seen[uid] then
      seen[uid] = true
      uids[#uids + 1] = uid
      users[#users + 1] = user
    end
  end
  for _, uid in ipairs(first) do
    local user = redis.call('HGET', KEYS[4], uid)
    if user then take(uid, user) end
  end
  local cursor = '0'
  for _ = 1, 8 do
    if #uids >= limit then break end
    local reply = redis.call('HSCAN', KEYS[4], cursor, 'COUNT', math.max(limit - #uids, 10))
    cursor = reply[1]
    local fields = reply[2]
    for i = 1, #fields, 2 do take(fields[i], fields[i + 1]) end
    if cursor == '0' then break end
  end
  -- Connections per listed user, in chunks (unpack has a stack limit).
  for from = 1, #uids, 1000 do
    local to = math.min(from + 999, #uids)
    local conns = redis.call('HMGET', KEYS[3], unpack(uids, from, to))
    for i = from, to do
      local n = conns[i - from + 1]
      if n then
        out[#out + 1] = users[i]
        out[#out + 1] = tonumber(n)
      else
        -- A profile whose user left without it being dropped (a script of an
        -- older gateway version, during a rolling upgrade): drop it now.
        redis.call('HDEL', KEYS[4], uids[i])
      end
    end
  end
  return out
end
