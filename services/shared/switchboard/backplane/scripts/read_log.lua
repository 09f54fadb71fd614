-- read_log(): a room's position and, optionally, part of its history, atomically
-- (prepended to the `read` and `join` scripts).
-- A room without history has no epoch; reads leave it so (a read never
-- creates a key: history/presence/join of unknown rooms cost Redis nothing).
-- Only the gateway itself asks for one to be created, after it saw a room's
-- history lost (so members get `reset` with the new epoch at once).
-- meta_key: the meta hash   log_key: the history stream
-- create: epoch to create when the room has none, or '' (create nothing:
--         the epoch is then returned as '' and the newest offset as 0)
-- ttl: history TTL (s)
-- mode: 'none' | 'after' (offsets > offset) | 'before' (offsets < offset, newest
--       count) | 'last' (newest count)
-- Returns {epoch, newest offset, offset of the first frame (0 if none), frame, ...},
-- frames ascending by offset (offsets are consecutive: one entry per offset).
local function read_log(meta_key, log_key, create, ttl, mode, offset, count)
  local meta = redis.call('HMGET', meta_key, 'e', 's')
  local epoch, top = meta[1], tonumber(meta[2])
  if not epoch then
    if create == '' then return {'', 0, 0} end
    epoch, top = create, 0
    redis.call('DEL', log_key)
    redis.call('HSET', meta_key, 'e', epoch, 's', 0)
    redis.call('EXPIRE', meta_key, ttl)
  end
  local out = {epoch, top, 0}
  -- COUNT 0 makes XRANGE/XREVRANGE reply nil (false in Lua), not an empty list.
  if tonumber(count) <= 0 then return out end
  local entries
  if mode == 'after' then
    -- string.format('%d'): `..` would print offsets >= 1e14 as "1e+14".
    entries = redis.call('XRANGE', log_key, string.format('%d-0', tonumber(offset) + 1), '+', 'COUNT', count)
  elseif mode == 'before' or mode == 'last' then
    local hi = '+'
    if mode == 'before' then
      if tonumber(offset) <= 1 then return out end
      hi = string.format('%d-0', tonumber(offset) - 1)
    end
    entries = redis.call('XREVRANGE', log_key, hi, '-', 'COUNT', count)
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
end
