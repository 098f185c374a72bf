"""One Lua script per atomic waiting-room operation.

Keys of a room (all share the `{room}` hash tag, so a Redis Cluster keeps a room on one slot):
  KEYS[1] meta    hash: seq (positions handed out), served, serving, expired, expired_sessions,
                  completed, abandoned, exempt, paused, inlet_ts, inlet_credit, prequeue_last, shuffled
  KEYS[2] reqs    hash: request id -> "state|position|class rank|joined ms|changed ms"
  KEYS[3] hb      zset: waiting request id -> last heartbeat ms
  KEYS[4] active  zset: admitted/active request id -> session deadline ms
  KEYS[5..]       zset per priority class (rank 0 first): waiting request id -> position
  KEYS[#KEYS-1]   claims  zset: jti of a site claim that was used -> its exp ms (one visitor per claim)
  KEYS[#KEYS]     gone    zset: request id of a waiter that expired -> when (their old place, for rejoin_grace_s)
  ended (its own key, passed last to UPDATE_SESSION and ENDED only) zset: request id of a session ended before
                  its deadline -> when: every worker's forward-auth refuses that session's tokens from then on
Numbers in records are kept as the decimal strings they arrived as, so Lua never prints a float.
"""

_PARSE = r"""
local function parse(rec)
  return string.match(rec, '^(%a+)|(%d+)|(%d+)|(%d+)|(%d+)$')
end
"""

JOIN = _PARSE + r"""
-- ARGV: rid now_ms method phase rank inventory exempt claim_timeout_ms claim_jti claim_exp_ms
--       rejoin_grace_ms (-1: not a rejoin; else the caller proved the id with its queue token)
--       policy rate_per_ms burst max_active nclasses (the inlet, for a join into an empty room) classes_tag
-- a worker that has not yet seen a change of the room's classes would file the visitor under the old rank
local tag = redis.call('HGET', KEYS[1], 'classes')
if tag and tag ~= ARGV[17] then return {'stale', ''} end
local rid = ARGV[1]
local rec = redis.call('HGET', KEYS[2], rid)
local method, phase = ARGV[3], ARGV[4]
local now, rank = ARGV[2], ARGV[5]
local outcome = 'new'
if rec then
  local state, opos, orank, ojoined = parse(rec)
  local grace = tonumber(ARGV[11])
  if grace < 0 or not (state == 'expired' or state == 'completed' or state == 'abandoned') then
    return {'existing', rec}
  end
  -- the holder of this place's queue token comes back after it closed: a place again, in their class
  if method == 'reject' or phase == 'closed' then return {'closed', ''} end
  rank = tostring(math.min(tonumber(orank), tonumber(ARGV[16]) - 1))
  local gone = redis.call('ZSCORE', KEYS[#KEYS], rid)
  if state == 'expired' and gone and grace > 0 and tonumber(gone) >= tonumber(now) - grace then
    -- within rejoin_grace_s of losing it: the old place, as if they had never stopped polling
    redis.call('ZREM', KEYS[#KEYS], rid)
    rec = 'waiting|' .. opos .. '|' .. rank .. '|' .. ojoined .. '|0'
    redis.call('HSET', KEYS[2], rid, rec)
    redis.call('ZADD', KEYS[5 + tonumber(rank)], opos, rid)
    redis.call('ZADD', KEYS[3], now, rid)
    return {'rejoined_place', rec}
  end
  redis.call('ZREM', KEYS[#KEYS], rid)
  outcome = 'rejoined'  -- at the back, below
elseif method == 'reject' or phase == 'closed' then
  return {'closed', ''}
end
if outcome == 'new' and ARGV[9] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[#KEYS - 1], '-inf', '(' .. now)
  if redis.call('ZSCORE', KEYS[#KEYS - 1], ARGV[9]) then return {'claim_used', ''} end
  redis.call('ZADD', KEYS[#KEYS - 1], ARGV[10], ARGV[9])
end
local deadline = tonumber(now) + tonumber(ARGV[8])
if ARGV[7] == '1' and outcome == 'new' then
  rec = 'admitted|0|' .. rank .. '|' .. now .. '|' .. now
  redis.call('HSET', KEYS[2], rid, rec)
  redis.call('ZADD', KEYS[4], deadline, rid)
  redis.call('HINCRBY', KEYS[1], 'exempt', 1)
  return {'new', rec}
end
local inv = tonumber(ARGV[6])
if inv >= 0 and tonumber(redis.call('HGET', KEYS[1], 'served') or '0') >= inv then return {'sold_out', ''} end
local pos = redis.call('HINCRBY', KEYS[1], 'seq', 1)
if method == 'passthrough' and phase == 'open' then
  rec = 'admitted|' .. pos .. '|' .. rank .. '|' .. now .. '|' .. now
  redis.call('HSET', KEYS[2], rid, rec)
  redis.call('ZADD', KEYS[4], deadline, rid)
  redis.call('HINCRBY', KEYS[1], 'served', 1)
  redis.call('HSET', KEYS[1], 'serving', pos)
  return {outcome, rec}
end
-- an empty room admits at once when the inlet has room, instead of leaving the first visitor to the next tick
-- and their next poll (~ refresh_interval_s later)
local policy = ARGV[12]
if phase == 'open' and (method == 'fifo' or method == 'random') and policy ~= 'manual'
    and redis.call('HGET', KEYS[1], 'paused') ~= '1' then
  local empty = true
  for c = 0, tonumber(ARGV[16]) - 1 do
    if redis.call('ZCARD', KEYS[5 + c]) > 0 then empty = false; break end
  end
  local cap = tonumber(ARGV[15])
  local ok = empty and (cap <= 0 or redis.call('ZCARD', KEYS[4]) < cap)
  local credit = 0
  if ok and policy == 'fixed_rate' then
    local last = redis.call('HGET', KEYS[1], 'inlet_ts')  -- no tick yet: the inlet's clock has not started
    credit = tonumber(redis.call('HGET', KEYS[1], 'inlet_credit') or '0')
    if last then
      credit = math.min(tonumber(ARGV[14]), credit + math.max(0, tonumber(now) - tonumber(last)) * tonumber(ARGV[13]))
    end
    ok = last and credit >= 1
  end
  if ok then
    rec = 'admitted|' .. pos .. '|' .. rank .. '|' .. now .. '|' .. now
    redis.call('HSET', KEYS[2], rid, rec)
    redis.call('ZADD', KEYS[4], deadline, rid)
    redis.call('HINCRBY', KEYS[1], 'served', 1)
    redis.call('HSET', KEYS[1], 'serving', pos)
    if policy == 'fixed_rate' then
      redis.call('HSET', KEYS[1], 'inlet_ts', now, 'inlet_credit', tostring(credit - 1))
    end
    return {outcome, rec}
  end
end
rec = 'waiting|' .. pos .. '|' .. rank .. '|' .. now .. '|0'
redis.call('HSET', KEYS[2], rid, rec)
redis.call('ZADD', KEYS[5 + tonumber(rank)], pos, rid)
redis.call('ZADD', KEYS[3], now, rid)
if phase == 'pre' then redis.call('HSET', KEYS[1], 'prequeue_last', pos) end
return {outcome, rec}
"""

STATUS = _PARSE + r"""
-- ARGV: rid now_ms heartbeat_ms ; heartbeats a waiter, or expires it if it was silent too long
local rid = ARGV[1]
local rec = redis.call('HGET', KEYS[2], rid)
if not rec then return {'', 0, 0} end
local state, pos, rank, joined = parse(rec)
if state ~= 'waiting' then return {rec, 0, 0} end
local now = tonumber(ARGV[2])
local hb = tonumber(redis.call('ZSCORE', KEYS[3], rid) or now)
local r = tonumber(rank)
-- a worker that has not reloaded since classes were added has no key for this rank yet: answer, change nothing
if r >= #KEYS - 6 then return {rec, 0, 0} end
if now - hb > tonumber(ARGV[3]) then
  rec = 'expired|' .. pos .. '|' .. rank .. '|' .. joined .. '|' .. ARGV[2]
  redis.call('HSET', KEYS[2], rid, rec)
  redis.call('ZREM', KEYS[5 + r], rid)
  redis.call('ZREM', KEYS[3], rid)
  redis.call('ZADD', KEYS[#KEYS], ARGV[2], rid)
  redis.call('HINCRBY', KEYS[1], 'expired', 1)
  return {rec, 0, 1}
end
redis.call('ZADD', KEYS[3], ARGV[2], rid)
local ahead = redis.call('ZCOUNT', KEYS[5 + r], '-inf', '(' .. pos)
for c = 0, r - 1 do ahead = ahead + redis.call('ZCARD', KEYS[5 + c]) end
return {rec, ahead, 0}
"""

_COUNTERS = r"""
local function counters(nclasses)
  local m = redis.call('HMGET', KEYS[1], 'served', 'serving', 'seq', 'expired', 'expired_sessions',
                       'completed', 'abandoned', 'exempt', 'paused')
  local waiting = 0
  for c = 0, nclasses - 1 do waiting = waiting + redis.call('ZCARD', KEYS[5 + c]) end
  return {tonumber(m[1] or 0), tonumber(m[2] or 0), tonumber(m[3] or 0), waiting,
          redis.call('ZCARD', KEYS[4]), tonumber(m[4] or 0), tonumber(m[5] or 0),
          tonumber(m[6] or 0), tonumber(m[7] or 0), tonumber(m[8] or 0), tonumber(m[9] or 0)}
end
"""

COUNTERS = _COUNTERS + r"""
return counters(tonumber(ARGV[1]))
"""

ADMIT = _PARSE + _COUNTERS + r"""
-- ARGV: now can_admit policy rate_per_ms burst max_active manual inventory heartbeat_ms claim_timeout_ms nclasses
--       limit rejoin_grace_ms
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[12])
local nclasses = tonumber(ARGV[11])
-- 1. waiters that stopped polling lose their place (counted, so the inlet never waits on them)
local expired_w = 0
local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. (now - tonumber(ARGV[9])), 'LIMIT', 0, limit)
for _, rid in ipairs(stale) do
  redis.call('ZREM', KEYS[3], rid)
  local rec = redis.call('HGET', KEYS[2], rid)
  if rec then
    local state, pos, rank, joined = parse(rec)
    if state == 'waiting' then
      redis.call('ZREM', KEYS[5 + tonumber(rank)], rid)
      redis.call('HSET', KEYS[2], rid, 'expired|' .. pos .. '|' .. rank .. '|' .. joined .. '|' .. ARGV[1])
      redis.call('ZADD', KEYS[#KEYS], ARGV[1], rid)
      expired_w = expired_w + 1
    end
  end
end
if expired_w > 0 then redis.call('HINCRBY', KEYS[1], 'expired', expired_w) end
-- old places are kept for rejoin_grace_s only
redis.call('ZREMRANGEBYSCORE', KEYS[#KEYS], '-inf', '(' .. (now - tonumber(ARGV[13])))
-- 2. sessions past their deadline free their slot
local expired_s = 0
local done = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[1], 'LIMIT', 0, limit)
for _, rid in ipairs(done) do
  redis.call('ZREM', KEYS[4], rid)
  local rec = redis.call('HGET', KEYS[2], rid)
  if rec then
    local state, pos, rank, joined = parse(rec)
    if state == 'admitted' or state == 'active' then
      redis.call('HSET', KEYS[2], rid, 'expired|' .. pos .. '|' .. rank .. '|' .. joined .. '|' .. ARGV[1])
      expired_s = expired_s + 1
    end
  end
end
if expired_s > 0 then redis.call('HINCRBY', KEYS[1], 'expired_sessions', expired_s) end
-- 3. how many the inlet may admit now
local served = tonumber(redis.call('HGET', KEYS[1], 'served') or '0')
local n, credit = 0, 0
local policy = ARGV[3]
-- paused lives here (not in the caller's copy of the settings) so every worker sees it at once
local can = ARGV[2] == '1' and redis.call('HGET', KEYS[1], 'paused') ~= '1'
if policy == 'fixed_rate' then
  local last = tonumber(redis.call('HGET', KEYS[1], 'inlet_ts') or ARGV[1])
  credit = tonumber(redis.call('HGET', KEYS[1], 'inlet_credit') or '0')
  if can then
    credit = math.min(tonumber(ARGV[5]), credit + math.max(0, now - last) * tonumber(ARGV[4]))
    n = math.floor(credit)
    local cap = tonumber(ARGV[6])
    if cap > 0 then n = math.min(n, math.max(0, cap - redis.call('ZCARD', KEYS[4]))) end
  end
elseif policy == 'max_active' and can then
  n = math.max(0, tonumber(ARGV[6]) - redis.call('ZCARD', KEYS[4]))
end
local manual = tonumber(ARGV[7])
n = n + manual
local inv = tonumber(ARGV[8])
if inv >= 0 then n = math.min(n, inv - served) end
if n > limit then n = limit end
-- 4. admit the head of each class queue, highest class first
local out = {}
local admitted = 0
local serving = tonumber(redis.call('HGET', KEYS[1], 'serving') or '0')
local deadline = now + tonumber(ARGV[10])
for c = 0, nclasses - 1 do
  if admitted >= n then break end
  local popped = redis.call('ZPOPMIN', KEYS[5 + c], n - admitted)
  for i = 1, #popped, 2 do
    local rid, pos = popped[i], popped[i + 1]
    local rec = redis.call('HGET', KEYS[2], rid)
    local joined = string.match(rec, '^%a+|%d+|%d+|(%d+)|')
    redis.call('HSET', KEYS[2], rid, 'admitted|' .. pos .. '|' .. c .. '|' .. joined .. '|' .. ARGV[1])
    redis.call('ZREM', KEYS[3], rid)
    redis.call('ZADD', KEYS[4], deadline, rid)
    if tonumber(pos) > serving then serving = tonumber(pos) end
    admitted = admitted + 1
    out[#out + 1] = rid
    out[#out + 1] = pos
    out[#out + 1] = joined
  end
end
if admitted > 0 then
  redis.call('HINCRBY', KEYS[1], 'served', admitted)
  redis.call('HSET', KEYS[1], 'serving', serving)
end
if policy == 'fixed_rate' then
  -- the inlet's credit pays for what it admitted (manual admissions are on top of it)
  credit = credit - math.max(0, admitted - manual)
  if credit < 0 then credit = 0 end
  redis.call('HSET', KEYS[1], 'inlet_ts', ARGV[1], 'inlet_credit', tostring(credit))
end
return {counters(nclasses), expired_w, expired_s, out}
"""

ISSUE = _PARSE + r"""
-- ARGV: rid now session_ms ; an admitted request gets its session (deadline = token exp)
local rid = ARGV[1]
local rec = redis.call('HGET', KEYS[2], rid)
if not rec then return {'unknown', '', 0} end
local state, pos, rank, joined, changed = parse(rec)
local now = tonumber(ARGV[2])
if state == 'admitted' then
  local exp = now + tonumber(ARGV[3])
  local deadline = tonumber(redis.call('ZSCORE', KEYS[4], rid) or '0')
  if deadline <= now then
    -- admitted but never claimed in time: the sweep may not have run yet
    rec = 'expired|' .. pos .. '|' .. rank .. '|' .. joined .. '|' .. ARGV[2]
    redis.call('HSET', KEYS[2], rid, rec)
    redis.call('ZREM', KEYS[4], rid)
    redis.call('HINCRBY', KEYS[1], 'expired_sessions', 1)
    return {'closed', rec, 0}
  end
  rec = 'active|' .. pos .. '|' .. rank .. '|' .. joined .. '|' .. ARGV[2]
  redis.call('HSET', KEYS[2], rid, rec)
  redis.call('ZADD', KEYS[4], exp, rid)
  return {'issued', rec, exp}
elseif state == 'active' then
  local exp = tonumber(redis.call('ZSCORE', KEYS[4], rid) or '0')
  if exp <= now then
    rec = 'expired|' .. pos .. '|' .. rank .. '|' .. joined .. '|' .. ARGV[2]
    redis.call('HSET', KEYS[2], rid, rec)
    redis.call('ZREM', KEYS[4], rid)
    redis.call('HINCRBY', KEYS[1], 'expired_sessions', 1)
    return {'closed', rec, 0}
  end
  return {'issued', rec, exp}
elseif state == 'waiting' then
  return {'waiting', rec, 0}
end
return {'closed', rec, 0}
"""

UPDATE_SESSION = _PARSE + r"""
-- ARGV: rid status(completed|abandoned) now
local rid, status = ARGV[1], ARGV[2]
local rec = redis.call('HGET', KEYS[2], rid)
if not rec then return {'unknown', ''} end
local state, pos, rank, joined = parse(rec)
local new = status .. '|' .. pos .. '|' .. rank .. '|' .. joined .. '|' .. ARGV[3]
if state == 'admitted' or state == 'active' then
  redis.call('ZREM', KEYS[4], rid)
  redis.call('ZADD', KEYS[#KEYS], ARGV[3], rid)
elseif state == 'waiting' and status == 'abandoned' then
  redis.call('ZREM', KEYS[5 + tonumber(rank)], rid)
  redis.call('ZREM', KEYS[3], rid)
elseif state == 'waiting' then
  return {'conflict', rec}
else
  return {'closed', rec}
end
redis.call('HSET', KEYS[2], rid, new)
redis.call('HINCRBY', KEYS[1], status, 1)
return {'updated', new}
"""

RENEW = _PARSE + r"""
-- ARGV: rid now session_ms max_session_ms ; an active session that is still on is extended to now + session_ms,
-- never past max_session_ms from when its token was first taken (the record's changed ms)
local rid = ARGV[1]
local rec = redis.call('HGET', KEYS[2], rid)
if not rec then return {'unknown', 0} end
local state, pos, rank, joined, changed = parse(rec)
local now = tonumber(ARGV[2])
local exp = tonumber(redis.call('ZSCORE', KEYS[4], rid) or '0')
if state ~= 'active' or exp <= now then return {'closed', 0} end
local new = math.min(now + tonumber(ARGV[3]), tonumber(changed) + tonumber(ARGV[4]))
if new > exp then
  redis.call('ZADD', KEYS[4], new, rid)
  exp = new
end
return {'renewed', exp}
"""

ENDED = r"""
-- KEYS[1] ended ; ARGV: since_ms now_ms keep_ms -> sessions ended from since_ms on: {rid, ended ms, ...}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (tonumber(ARGV[2]) - tonumber(ARGV[3])))
return redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'WITHSCORES')
"""

SHUFFLE = _PARSE + r"""
-- ARGV: seed nclasses ; once, at the start: permute the positions of everyone who joined before it
if redis.call('HGET', KEYS[1], 'shuffled') == '1' then return -1 end
redis.call('HSET', KEYS[1], 'shuffled', '1')
local last = tonumber(redis.call('HGET', KEYS[1], 'prequeue_last') or '0')
if last == 0 then return 0 end
local rids, classes, positions = {}, {}, {}
for c = 0, tonumber(ARGV[2]) - 1 do
  local m = redis.call('ZRANGEBYSCORE', KEYS[5 + c], '-inf', last, 'WITHSCORES')
  for i = 1, #m, 2 do
    rids[#rids + 1] = m[i]; classes[#classes + 1] = c; positions[#positions + 1] = m[i + 1]
  end
end
-- Fisher-Yates with a Park-Miller generator seeded by the caller (exact in doubles)
local s = tonumber(ARGV[1]) % 2147483646 + 1
for i = #positions, 2, -1 do
  s = (s * 16807) % 2147483647
  local j = (s % i) + 1
  positions[i], positions[j] = positions[j], positions[i]
end
for i, rid in ipairs(rids) do
  local state, _, rank, joined, changed = parse(redis.call('HGET', KEYS[2], rid))
  redis.call('HSET', KEYS[2], rid, state .. '|' .. positions[i] .. '|' .. rank .. '|' .. joined .. '|' .. changed)
  redis.call('ZADD', KEYS[5 + classes[i]], positions[i], rid)
end
return #rids
"""

CLASSES = _PARSE + r"""
-- ARGV: old_n new_n classes_tag settings_json map[0..old_n-1] (old rank -> new rank, -1: the class is gone)
-- KEYS: the room's keys for max(old_n, new_n) classes, then its cfg key. The priority classes change and the
-- settings are written in one step: waiters keep their positions (so their order) in the class they map to,
-- and a removed class that still has waiters refuses the change (returned: those old ranks).
local old_n, new_n = tonumber(ARGV[1]), tonumber(ARGV[2])
local map, refused = {}, {}
for c = 0, old_n - 1 do
  map[c] = tonumber(ARGV[5 + c])
  if map[c] < 0 and redis.call('ZCARD', KEYS[5 + c]) > 0 then refused[#refused + 1] = c end
end
if #refused > 0 then return {'refused', refused} end
-- read every queue that moves before writing any: a permutation (two classes swapped) must not mix them
local moved = {}
for c = 0, old_n - 1 do
  if map[c] ~= c then
    moved[c] = redis.call('ZRANGE', KEYS[5 + c], 0, -1, 'WITHSCORES')
    redis.call('DEL', KEYS[5 + c])
  end
end
local n = 0
for c, m in pairs(moved) do
  for i = 1, #m, 2 do
    redis.call('ZADD', KEYS[5 + map[c]], m[i + 1], m[i])
    local state, pos, _, joined, changed = parse(redis.call('HGET', KEYS[2], m[i]))
    redis.call('HSET', KEYS[2], m[i], state .. '|' .. pos .. '|' .. map[c] .. '|' .. joined .. '|' .. changed)
    n = n + 1
  end
end
-- admitted and active sessions keep naming their class in the tokens they get (a gone class: the default)
for _, rid in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  local rec = redis.call('HGET', KEYS[2], rid)
  if rec then
    local state, pos, rank, joined, changed = parse(rec)
    local r = tonumber(rank)
    local t = map[r] or (new_n - 1)
    if t < 0 then t = new_n - 1 end
    if t ~= r then
      redis.call('HSET', KEYS[2], rid, state .. '|' .. pos .. '|' .. t .. '|' .. joined .. '|' .. changed)
    end
  end
end
redis.call('HSET', KEYS[1], 'classes', ARGV[3])
redis.call('SET', KEYS[#KEYS], ARGV[4])
return {'ok', n}
"""

OUTAGE = _PARSE + r"""
-- ARGV: start_ms end_ms ; the store was unreachable from start to end: nobody could poll or take a token then,
-- so that time does not count against anyone. Heartbeats from before the end move forward by the outage's
-- length (never past its end), and so do the claim deadlines of admitted visitors. Several workers report
-- the same outage: only the part after the last one recorded is added.
local last = tonumber(redis.call('HGET', KEYS[1], 'outage_end') or '0')
local e = tonumber(ARGV[2])
local s = math.max(tonumber(ARGV[1]), last)
if e <= s then return 0 end
local shift = e - s
local m = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. e, 'WITHSCORES')
for i = 1, #m, 2 do
  redis.call('ZADD', KEYS[3], math.min(tonumber(m[i + 1]) + shift, e), m[i])
end
local a = redis.call('ZRANGEBYSCORE', KEYS[4], s, '+inf', 'WITHSCORES')
for i = 1, #a, 2 do
  local rec = redis.call('HGET', KEYS[2], a[i])
  if rec and string.sub(rec, 1, 9) == 'admitted|' then
    redis.call('ZADD', KEYS[4], tonumber(a[i + 1]) + shift, a[i])
  end
end
redis.call('HSET', KEYS[1], 'outage_end', ARGV[2])
return #m / 2
"""

SCRIPTS = {"outage": OUTAGE, "classes": CLASSES, "join": JOIN, "status": STATUS, "admit": ADMIT, "issue": ISSUE,
           "update_session": UPDATE_SESSION, "renew": RENEW, "ended": ENDED, "shuffle": SHUFFLE, "counters": COUNTERS}
