-- Join one connection to a room, atomically: refused while the user is
-- banned from the room (nothing changes), else the room's position and the
-- history asked for (read_log()) and the connection's presence entry, the
-- joiner listed first (as presence_upsert). One call where a join made three.
-- KEYS[1..5] as the presence scripts; KEYS[5] is the events stream, or when
--   events are off any key of the room's slot (never touched then)
-- KEYS[6] meta hash   KEYS[7] history stream   KEYS[8] the user's ban from the room
-- ARGV[1..9] as presence_upsert (ARGV[8] expiry, ARGV[9] users to list)
-- ARGV[10] connection id   ARGV[11] user JSON
-- ARGV[12] history TTL (s)   ARGV[13] read mode   ARGV[14] offset   ARGV[15] count
-- Returns {ms of the ban left} when banned, else {0, read_log(), listing()}.
local banned = redis.call('PTTL', KEYS[8])
if banned > 0 then return {banned} end
local snapshot = read_log(KEYS[6], KEYS[7], '', ARGV[12], ARGV[13], ARGV[14], ARGV[15])
sweep()
upsert(ARGV[10], ARGV[11], ARGV[8])
keep_alive()
publish_count()
local limit = tonumber(ARGV[9])
local first = {}
if limit > 0 then
  first[1] = listed_first(ARGV[11])
end
return {0, snapshot, listing(limit, first)}
