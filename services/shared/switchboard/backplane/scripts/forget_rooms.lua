-- Drop rooms from the events janitor's room index (switchboard/backplane/events.py).
-- KEYS[1] room index   ARGV[1], ARGV[2], ...: room, score as the janitor read it
-- A room whose score changed since was joined or refreshed again: it stays.
-- Returns the number of rooms dropped.
local dropped = 0
for i = 1, #ARGV, 2 do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    dropped = dropped + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return dropped
