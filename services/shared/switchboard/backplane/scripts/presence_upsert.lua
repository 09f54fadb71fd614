-- Add or refresh connections; a missing one is (re-)added, which also heals
-- presence after Redis lost it. Returns the members' user JSON when asked.
-- ARGV[6] expiry (ms)   ARGV[7] '1' to return members
-- ARGV[8], ARGV[9], ...: connection id, user JSON pairs
sweep()
for i = 8, #ARGV, 2 do
  local conn, user = ARGV[i], ARGV[i + 1]
  if redis.call('HSETNX', KEYS[1], conn, user) == 1 then
    local uid = cjson.decode(user)['id']
    if redis.call('HINCRBY', KEYS[3], uid, 1) == 1 then
      announce('join', user)
    end
  end
  redis.call('ZADD', KEYS[2], ARGV[6], conn)
end
keep_alive()
if ARGV[7] == '1' then
  return redis.call('HVALS', KEYS[1])
end
return {}
