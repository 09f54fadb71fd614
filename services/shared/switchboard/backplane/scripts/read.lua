-- Read a room's position and, optionally, part of its history, atomically.
-- Creates the room's epoch when it has none, so a joiner gets a stable one.
-- KEYS[1] meta hash   KEYS[2] history stream
-- ARGV[1] epoch to use when the room has none   ARGV[2] history TTL (s)
-- ARGV[3] mode: 'none' | 'after' (offsets > ARGV[4]) | 'before' (offsets < ARGV[4], newest
--         ARGV[5]) | 'last' (newest ARGV[5])
-- ARGV[4] offset   ARGV[5] count
-- Returns {epoch, newest offset, offset of the first frame (0 if none), frame, ...},
-- frames ascending by offset (offsets are consecutive: one entry per offset).
local meta = redis.call('HMGET', KEYS[1], 'e', 's')
local epoch, top = meta[1], tonumber(meta[2])
if not epoch then
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
  entries = redis.call('XRANGE', KEYS[2], (tonumber(ARGV[4]) + 1) .. '-0', '+', 'COUNT', ARGV[5])
elseif mode == 'before' or mode == 'last' then
  local hi = '+'
  if mode == 'before' then
    if tonumber(ARGV[4]) <= 1 then return out end
    hi = (tonumber(ARGV[4]) - 1) .. '-0'
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
