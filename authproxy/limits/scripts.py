"""The Lua scripts of the shared limits: one admission, one settlement, renewal.

Each runs atomically in Redis and reads Redis's own clock (``TIME``), so the
replicas' clocks never disagree about a bucket or a lease. Per key, under the
prefix: ``rpm`` (a token bucket: ``tokens``, ``at``), ``leases`` (a sorted set
of running requests by expiry), ``reserved`` (lease -> tokens held) and the
day's and month's used tokens.
"""

from __future__ import annotations

from typing import Final

# KEYS: rpm, leases, reserved, day, month.
# ARGV: rpm, concurrent, day limit, month limit (-1: none), tokens to
# reserve, lease id, lease ttl (ms), metered (1/0).
# Returns {"ok"} or {reason, retry_after, limit, remaining, reset}; a refusal
# changes nothing.
ADMIT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #expired > 0 then
  redis.call('ZREM', KEYS[2], unpack(expired))
  redis.call('HDEL', KEYS[3], unpack(expired))
end
local concurrent = tonumber(ARGV[2])
if concurrent >= 0 and redis.call('ZCARD', KEYS[2]) >= concurrent then
  return {'concurrency_limit', 1, concurrent, 0, 1}
end
local rpm = tonumber(ARGV[1])
local bucket = 0
if rpm >= 0 then
  local saved = redis.call('HMGET', KEYS[1], 'tokens', 'at')
  bucket = tonumber(saved[1]) or rpm
  local at = tonumber(saved[2]) or now
  bucket = math.min(rpm, bucket + math.max(0, now - at) * rpm / 60000)
  if bucket < 1 then
    local wait = math.ceil((1 - bucket) * 60 / rpm)
    return {'rate_limit', wait, rpm, 0, math.ceil((rpm - bucket) * 60 / rpm)}
  end
end
if ARGV[8] == '1' then
  local held = 0
  for _, v in ipairs(redis.call('HVALS', KEYS[3])) do held = held + tonumber(v) end
  local periods = {{KEYS[4], tonumber(ARGV[3]), 'day'},
                   {KEYS[5], tonumber(ARGV[4]), 'month'}}
  for _, p in ipairs(periods) do
    local used = tonumber(redis.call('GET', p[1]) or '0')
    if p[2] >= 0 and used + held >= p[2] then
      return {'token_quota_' .. p[3], 0, p[2], 0, 0}
    end
  end
end
if rpm >= 0 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(bucket - 1), 'at', now)
  redis.call('PEXPIRE', KEYS[1], 120000)
end
local ttl = tonumber(ARGV[7])
redis.call('ZADD', KEYS[2], now + ttl, ARGV[6])
redis.call('PEXPIRE', KEYS[2], ttl * 2)
if tonumber(ARGV[5]) > 0 then
  redis.call('HSET', KEYS[3], ARGV[6], ARGV[5])
  redis.call('PEXPIRE', KEYS[3], ttl * 2)
end
return {'ok'}
"""

# KEYS: leases, reserved, day, month. ARGV: lease id, tokens used, day ttl,
# month ttl (seconds). Frees the slot, drops the reservation, charges tokens.
SETTLE: Final = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local used = tonumber(ARGV[2])
if used > 0 then
  redis.call('INCRBY', KEYS[3], used)
  redis.call('EXPIRE', KEYS[3], ARGV[3])
  redis.call('INCRBY', KEYS[4], used)
  redis.call('EXPIRE', KEYS[4], ARGV[4])
end
return 1
"""

# KEYS: leases sets; ARGV: ttl (ms), then one lease id per key. Extends the
# leases of running requests that still hold them (XX: never revives one).
RENEW: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', key, ttl * 2)
end
return #KEYS
"""
