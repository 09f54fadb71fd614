-- Add or refresh connections (upsert()). A refresh of known connections
-- announces nothing and lists nobody.
-- ARGV[8] expiry (ms)   ARGV[9] how many users to list (0: none)
-- ARGV[10], ARGV[11], ...: connection id, user JSON pairs
-- Returns listing(): the users of these entries are listed first.
sweep()
for i = 10, #ARGV, 2 do
  upsert(ARGV[i], ARGV[i + 1], ARGV[8])
end
keep_alive()
publish_count()
local limit = tonumber(ARGV[9])
local first = {}
if limit > 0 then
  for i = 11, #ARGV, 2 do
    first[#first + 1] = listed_first(ARGV[i])
  end
end
return listing(limit, first)
