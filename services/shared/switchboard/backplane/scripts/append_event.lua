-- Append events as the gateway's scripts do (events.lua is prepended): for
-- tools, tests and the events contract test.
-- KEYS[1] events stream   ARGV[1] EVENTS_MAXLEN
-- ARGV[2], ...: event JSON objects without "id"
-- Returns the number of events given.
for i = 2, #ARGV do
  append_event(KEYS[1], ARGV[1], ARGV[i])
end
return #ARGV - 1
