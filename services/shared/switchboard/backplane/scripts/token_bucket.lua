-- Take tokens from a token bucket shared by every gateway (per-user publish
-- and typing rates, guest sign-ins per address). The clock is Redis's own
-- (TIME), so gateways with skewed clocks agree; reconnecting refills nothing.
-- KEYS[1] hash: t = tokens left, s = when they were counted (ms)
-- ARGV[1] rate (tokens per second)   ARGV[2] burst (bucket size)
-- ARGV[3] the most tokens to take (a gateway may take a few ahead and spend
--         them locally: they are gone from the bucket either way)
-- Returns {taken, wait}: taken >= 1 (at most ARGV[3], at most what is
-- there) and wait 0, or taken 0 and the milliseconds until one token is
-- there (nothing is taken then).
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local rate, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 't', 's')
local tokens, stamp = tonumber(state[1]), tonumber(state[2])
if not tokens or not stamp then
  tokens, stamp = burst, now_ms
end
tokens = math.min(burst, tokens + math.max(0, now_ms - stamp) * rate / 1000)
local taken, wait = 0, 0
if tokens >= 1 then
  taken = math.min(want, math.floor(tokens))
  tokens = tokens - taken
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 't', string.format('%.6f', tokens), 's', string.format('%d', now_ms))
-- A bucket left alone this long is full again: the key may as well go.
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.ceil(burst * 1000 / rate) + 1000))
return {taken, wait}
