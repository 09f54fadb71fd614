-- Expire stale connections, then list at most ARGV[8] users (see listing()).
sweep()
publish_count()
return listing(tonumber(ARGV[8]), {})
