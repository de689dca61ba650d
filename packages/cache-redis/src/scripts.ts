// The Lua scripts the Redis cache runs. Each one runs atomically in Redis, so a check and the
// write it guards (a lease compared before a value is stored, a value read before a lease is
// taken) cannot be split by another agent's command. Every key a script touches is passed in
// KEYS except the index names an entry records about itself (`ip`, `ia`), which INVALIDATE and
// DISCARD read from the entry: fine on a single Redis (the only deployment this package
// supports; Redis Cluster is not).
//
// Times (`now`, `ea`, `ra`) are the agents' clocks in ms since the epoch, compared as numbers.

/**
 * KEYS: entry, lease. ARGV: now, token, leaseMs.
 * Returns `{'fresh', field, value, …}` when the entry is fresh (a value or a remembered
 * not-found), else `{'lease'}` after taking the lease, else `{'busy'}`.
 */
export const ACQUIRE = `
local ea = redis.call('HGET', KEYS[1], 'ea')
if ea and tonumber(ARGV[1]) < tonumber(ea) then
  local fields = redis.call('HGETALL', KEYS[1])
  table.insert(fields, 1, 'fresh')
  return fields
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return {'lease'} end
return {'busy'}
`;

/**
 * KEYS: entry, lease, all, …indexes. ARGV: token ('' = unconditional), pxMs, score (the entry's
 * removal time), now, then field, value, … pairs.
 * Replaces the entry (a pxMs of 0 or less only removes it), indexes it, prunes index members
 * past their removal time and drops the lease. With a token, does nothing unless the lease is
 * still that token's: an invalidation or a `set` meanwhile deleted it, and the load's result is
 * older news. Returns the number of entries indexed, or -1 when the lease was lost.
 */
export const STORE = `
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[1], KEYS[2])
local px = tonumber(ARGV[2])
if px <= 0 then
  for i = 3, #KEYS do redis.call('ZREM', KEYS[i], KEYS[1]) end
  return redis.call('ZCARD', KEYS[3])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('PEXPIRE', KEYS[1], px)
for i = 3, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. ARGV[4])
  redis.call('ZADD', KEYS[i], ARGV[3], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < px then redis.call('PEXPIRE', KEYS[i], px) end
end
return redis.call('ZCARD', KEYS[3])
`;

/**
 * KEYS: entry, lease, all, …indexes. ARGV: now.
 * Deletes one entry and its lease. Returns 1 when the entry was live (before its removal time).
 */
export const REMOVE = `
local ra = redis.call('HGET', KEYS[1], 'ra')
redis.call('DEL', KEYS[1], KEYS[2])
for i = 3, #KEYS do redis.call('ZREM', KEYS[i], KEYS[1]) end
if ra and tonumber(ra) > tonumber(ARGV[1]) then return 1 end
return 0
`;

/**
 * KEYS: all, then entry, lease pairs. ARGV: now.
 * Deletes each entry and its lease and takes it out of its indexes. Returns how many were live.
 */
export const INVALIDATE = `
local removed = 0
for i = 2, #KEYS, 2 do
  local f = redis.call('HMGET', KEYS[i], 'ra', 'ip', 'ia')
  redis.call('DEL', KEYS[i], KEYS[i + 1])
  redis.call('ZREM', KEYS[1], KEYS[i])
  if f[2] and f[2] ~= '' then redis.call('ZREM', f[2], KEYS[i]) end
  if f[3] and f[3] ~= '' then redis.call('ZREM', f[3], KEYS[i]) end
  if f[1] and tonumber(f[1]) > tonumber(ARGV[1]) then removed = removed + 1 end
end
return removed
`;

/**
 * KEYS: entry, all. ARGV: the sealed blob that failed to open.
 * Deletes the entry only if it still holds that blob, so a good value another agent wrote
 * meanwhile survives. Returns 1 when it deleted.
 */
export const DISCARD = `
if redis.call('HGET', KEYS[1], 'c') ~= ARGV[1] then return 0 end
local f = redis.call('HMGET', KEYS[1], 'ip', 'ia')
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], KEYS[1])
if f[1] and f[1] ~= '' then redis.call('ZREM', f[1], KEYS[1]) end
if f[2] and f[2] ~= '' then redis.call('ZREM', f[2], KEYS[1]) end
return 1
`;

/** KEYS: lease. ARGV: token. Deletes the lease if it is still the token's (compare-and-delete). */
export const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/** KEYS: lease. ARGV: token, leaseMs. Extends the lease if it is still the token's. */
export const RENEW = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`;
