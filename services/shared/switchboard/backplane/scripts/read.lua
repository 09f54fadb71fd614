-- Read a room's position and, optionally, part of its history, atomically.
-- A room without history has no epoch; reads leave it so (a read never
-- creates a key: history/presence/join of unknown rooms cost Redis nothing).
-- Only the gateway itself asks for one to be created, after it saw a room's
-- history lost (so members get `reset` with the new epoch at once).
-- KEYS[1] meta hash   KEYS[2] history stream
-- ARGV[1] epoch to create when the room has none, or '' (create nothing:
--         the epoch is then returned as '' and the newest offset as 0)
-- ARGV[2] history TTL (s)
-- ARGV[3] mode: 'none' | 'after' (offsets > ARGV[4]) | 'before' (offsets < ARGV[4], newest
--         ARGV[5]) | 'last' (newest ARGV[5])
-- ARGV[4] offset   ARGV[5] count
-- Returns {epoch, newest offset, offset of the first frame (0 if none), frame, ...},
-- frames ascending by offset (offsets are consecutive: one entry per offset).
local meta = redis.call('HMGET', KEYS[1], 'e', 's')
local epoch, top = meta[1], tonumber(meta[2])
if not epoch then
  if ARGV[1] == '' then return {'', 0, 0} end
  epoch, top = ARGV[1], 0
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
local out = {epoch, top, 0}
local mode = ARGV[3]
-- COUNT 0 makes XRANGE/XREVRANGE reply nil (false in Lua), not an empty list.
if tonumber(ARGV[5]) <= 0 then return out end
local entries
if mode == 'after' then
  -- string.format('%d'): `..` would print offsets >= 1e14 as "1e+14".
  entries = redis.call('XRANGE', KEYS[2], string.format('%d-0', tonumber(ARGV[4]) + 1), '+', 'COUNT', ARGV[5])
elseif mode == 'before' or mode == 'last' then
  local hi = '+'
  if mode == 'before' then
    if tonumber(ARGV[4]) <= 1 then return out end
    hi = string.format('%d-0', tonumber(ARGV[4]) - 1)
  end
  entries = redis.call('XREVRANGE', KEYS[2], hi, '-', 'COUNT', ARGV[5])
  local n = #entries
  for i = 1, math.floor(n / 2) do
    entries[i], entries[n - i + 1] = entries[n - i + 1], entries[i]
  end
else
  return out
end
if #entries > 0 then
  out[3] = tonumber(string.match(entries[1][1], '^%d+'))
end
for _, entry in ipairs(entries) do
  out[#out + 1] = entry[2][2]
end
return out
