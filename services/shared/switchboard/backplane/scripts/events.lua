-- Events stream helpers (docs/protocol.md "Events stream"; key layout in
-- switchboard/backplane/events.py). Prepended by scripts.py to every script
-- that makes a change with an event, so the event is appended by the same
-- atomic script as the change: no window where one happened without the
-- other, and exactly one gateway appends it.
--
-- The caller passes the room's events stream as one of its KEYS (on a
-- cluster it is in the room's slot) and EVENTS_MAXLEN as an ARGV string;
-- '0' (events off) or a nil key appends nothing and costs one comparison.

-- Append one event: `event` is its JSON object WITHOUT "id" (the stream
-- entry id is the id). MAXLEN ~ trims whole stream nodes: cheap, and the
-- stream keeps at least `maxlen` entries.
local function append_event(key, maxlen, event)
  if key and maxlen and maxlen ~= '0' then
    redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', 'e', event)
  end
end

-- The JSON of a room_occupied, room_vacated, user_joined or user_left event.
-- room_json and user_json are already JSON ("\"lobby\"", {"id":..,"name":..});
-- ts is milliseconds since the epoch.
local function room_event(kind, room_json, ts, user_json)
  return '{"type":"' .. kind .. '","room":' .. room_json .. ',"ts":' .. ts .. ',"user":' .. user_json .. '}'
end
