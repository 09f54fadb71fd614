-- Expire stale connections, then return the members' user JSON, one per connection.
sweep()
return redis.call('HVALS', KEYS[1])
