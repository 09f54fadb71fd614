-- Add or refresh connections; a missing one is (re-)added, which also heals
-- presence after Redis lost it. A refresh of known connections announces
-- nothing and lists nobody.
-- ARGV[8] expiry (ms)   ARGV[9] how many users to list (0: none)
-- ARGV[10], ARGV[11], ...: connection id, user JSON pairs
-- Returns listing(): the users of these entries are listed first.
sweep()
for i = 10, #ARGV, 2 do
  local conn, user = ARGV[i], ARGV[i + 1]
  if redis.call('HSETNX', KEYS[1], conn, user) == 1 then
    local uid = cjson.decode(user)['id']
    if redis.call('HINCRBY', KEYS[3], uid, 1) == 1 then
      redis.call('HSET', KEYS[4], uid, user)
      changed('join', user)
    end
  end
  redis.call('ZADD', KEYS[2], ARGV[8], conn)
end
keep_alive()
publish_count()
local limit = tonumber(ARGV[9])
local first = {}
if limit > 0 then
  for i = 11, #ARGV, 2 do
    local uid = cjson.decode(ARGV[i])['id']
    -- (HSETNX: the joiner is listed even if its profile was never stored,
    -- e.g. it joined through an older gateway version.)
    redis.call('HSETNX', KEYS[4], uid, ARGV[i])
    first[#first + 1] = uid
  end
end
return listing(limit, first)
