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

-- The events of a presence change (presence_prelude.lua's changed()):
-- a user's first connection is user_joined, preceded by room_occupied when
-- that user is the room's first (`count`: users present after the change);
-- a user's last one is user_left, followed by room_vacated when the room is
-- now empty. Nothing at all when events are off.
local function presence_events(key, maxlen, change, room_json, ts, user_json, count)
  if not key or maxlen == '0' then return end
  if change == 'join' then
    if count == 1 then append_event(key, maxlen, room_event('room_occupied', room_json, ts, user_json)) end
    append_event(key, maxlen, room_event('user_joined', room_json, ts, user_json))
  else
    append_event(key, maxlen, room_event('user_left', room_json, ts, user_json))
    if count == 0 then append_event(key, maxlen, room_event('room_vacated', room_json, ts, user_json)) end
  end
end
