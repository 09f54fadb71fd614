-- Read a room's position and, optionally, part of its history (read_log,
-- prepended by scripts.py).
-- KEYS[1] meta hash   KEYS[2] history stream
-- ARGV[1] epoch to create when the room has none, or ''   ARGV[2] history TTL (s)
-- ARGV[3] mode   ARGV[4] offset   ARGV[5] count
return read_log(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
