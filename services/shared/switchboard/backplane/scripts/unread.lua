-- A user's read state in a room and its unread count (protocol §11), from
-- the room's state hash alone (see publish.lua).
-- KEYS[1] state hash
-- ARGV[1] the room's epoch   ARGV[2] its newest offset   ARGV[3] user id
-- ARGV[4] history size       ARGV[5] cap of the count
-- Returns {last_read, unread}: unread counts the messages after last_read
-- still in history (author field a:<o> present), not by the user, not
-- deleted (d:<o>), at most ARGV[5]. State of another epoch counts nothing:
-- no message of the current epoch was stored yet.
-- Cost: two HMGETs over at most history-size offsets (1,000 by default),
-- whatever the room's size or the number of its readers.
if redis.call('HGET', KEYS[1], 'e') ~= ARGV[1] then return {0, 0} end
local user = ARGV[3]
local last = tonumber(redis.call('HGET', KEYS[1], 'l:' .. user) or '0')
local top = tonumber(ARGV[2])
local from = math.max(last + 1, top - tonumber(ARGV[4]) + 1, 1)
local cap = tonumber(ARGV[5])
local unread = 0
-- In chunks, so that no HMGET has more arguments than Lua's stack takes.
local lo = from
while lo <= top and unread < cap do
  local hi = math.min(top, lo + 499)
  local authors, deleted = {}, {}
  for o = lo, hi do
    authors[#authors + 1] = 'a:' .. o
    deleted[#deleted + 1] = 'd:' .. o
  end
  local a = redis.call('HMGET', KEYS[1], unpack(authors))
  local d = redis.call('HMGET', KEYS[1], unpack(deleted))
  for i = 1, #a do
    if a[i] and a[i] ~= user and not d[i] then unread = unread + 1 end
  end
  lo = hi + 1
end
return {last, math.min(unread, cap)}
