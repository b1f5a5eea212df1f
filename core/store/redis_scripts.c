/*
 * The Lua scripts behind the Redis store (see store.h for the semantics;
 * memory.c implements the same rules in C). Every script gets the key
 * prefix P as ARGV[1] and builds its keys from it, because several keys
 * (job ids found in an index, tasks popped from the queue) are known only
 * inside the script: this is for a standalone Redis (>= 6.2), not a
 * cluster. Times come from Redis's own clock (TIME), so replicas need not
 * agree on theirs; scripts are replicated by effect (Redis >= 5).
 *
 * Key layout (P defaults to "kl:"; ids are 26 characters, see store.h):
 *   P job:<id>               hash: id stream pipeline dataset params status cancel
 *                            created started finished err_type err_detail err_shard
 *                            messages dead_letters tasks_total tasks_done
 *   P job:<id>:rows          hash: table -> rows
 *   P job:<id>:shards        hash: <shard>|seq |sub |mbl |msgs |done |gfrom |gto |greason
 *                            |wop |wsince |wuntil |wwhy (a Kinesis call it waits on)
 *                            |rfrom |rload (where it resumed: origin, dlt's load id)
 *   P job:<id>:tasks         hash: <shard>|st (q queued, f in flight, d delayed, a acked)
 *                            |att |dlv (deliveries) |meta |owner |adone |atotal
 *   P job:<id>:budget        hash: <shard> -> messages reserved, |total (their sum)
 *                            (all five job keys expire together, retention after the end)
 *   P jobs                   zset (score 0, ordered by id = by time): every job
 *   P jobs:stream:<stream>   zset: the stream's jobs
 *   P jobs:status:<status>   zset: the jobs in that status
 *                            (index entries of expired jobs are pruned lazily)
 *   P active:<pipeline>:<stream>  string: the id of the queued or running job
 *   P idem:<key>             string: job id of an Idempotency-Key (PX 24 h)
 *   P q                      list of "<id>/<shard>": LPUSH at the back, RPOP at the front
 *   P q:inflight             zset: "<id>/<shard>" -> lease deadline (ms)
 *   P q:delayed              zset: "<id>/<shard>" -> ready time (ms)
 *   P q:wake                 list of tokens: one per enqueue, BLPOPed by idle takers
 *   P lease:<pipeline>:<stream>:<shard>   string "<token> <owner>", PX ttl
 *   P fence:<pipeline>:<stream>:<shard>   integer: the highest token handed out
 */
#include "core/store/redis_scripts.h"
#include "core/store/store.h"

/* Helpers every script starts with. Sequence numbers compare numerically:
 * leading zeros dropped, longer is larger, then digit by digit. */
#define PRELUDE                                                                                    \
    "local P = ARGV[1]\n"                                                                          \
    "local function jk(id) return P .. 'job:' .. id end\n"                                         \
    "local function now_ms()\n"                                                                    \
    "  local t = redis.call('TIME')\n"                                                             \
    "  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"                         \
    "end\n"                                                                                        \
    "local function seq_cmp(a, b)\n"                                                               \
    "  a = (string.gsub(a, '^0+(%d)', '%1'))\n"                                                    \
    "  b = (string.gsub(b, '^0+(%d)', '%1'))\n"                                                    \
    "  if #a ~= #b then return #a < #b and -1 or 1 end\n"                                          \
    "  for i = 1, #a do\n"                                                                         \
    "    local x, y = string.byte(a, i), string.byte(b, i)\n"                                      \
    "    if x ~= y then return x < y and -1 or 1 end\n"                                            \
    "  end\n"                                                                                      \
    "  return 0\n"                                                                                 \
    "end\n"                                                                                        \
    "local function pos_cmp(sa, ua, sb, ub)\n"                                                     \
    "  if sa == '' or sb == '' then\n"                                                             \
    "    return (sa ~= '' and 1 or 0) - (sb ~= '' and 1 or 0)\n"                                   \
    "  end\n"                                                                                      \
    "  local c = seq_cmp(sa, sb)\n"                                                                \
    "  if c ~= 0 then return c end\n"                                                              \
    "  ua, ub = tonumber(ua), tonumber(ub)\n"                                                      \
    "  if ua == ub then return 0 end\n"                                                            \
    "  return ua < ub and -1 or 1\n"                                                               \
    "end\n"                                                                                        \
    "local function prune(idx)\n"                                                                  \
    "  for _, j in ipairs(redis.call('ZRANGE', idx, 0, 7)) do\n"                                   \
    "    if redis.call('EXISTS', jk(j)) == 0 then redis.call('ZREM', idx, j) end\n"                \
    "  end\n"                                                                                      \
    "end\n"                                                                                        \
    "local function wake()\n"                                                                      \
    "  redis.call('LPUSH', P .. 'q:wake', '1')\n"                                                  \
    "  redis.call('LTRIM', P .. 'q:wake', 0, 63)\n"                                                \
    "end\n"

/* ARGV: P id stream pipeline dataset params now idem_key idem_ttl
 * -> {'created', id} | {'existing', id} | {'conflict', id, status} */
static const char job_create[] =
    PRELUDE "local id, stream, pipeline, idem = ARGV[2], ARGV[3], ARGV[4], ARGV[8]\n"
            "local k = jk(id)\n"
            /* a retry of a create that did happen */
            "if redis.call('EXISTS', k) == 1 then return {'created', id} end\n"
            "if idem ~= '' then\n"
            "  local prev = redis.call('GET', P .. 'idem:' .. idem)\n"
            "  if prev and redis.call('EXISTS', jk(prev)) == 1 then return {'existing', prev} end\n"
            "end\n"
            "local ak = P .. 'active:' .. pipeline .. ':' .. stream\n"
            "local act = redis.call('GET', ak)\n"
            "if act then\n"
            "  local st = redis.call('HGET', jk(act), 'status')\n"
            "  if st == 'queued' or st == 'running' then return {'conflict', act, st} end\n"
            "end\n"
            "redis.call('HSET', k, 'id', id, 'stream', stream, 'pipeline', pipeline,\n"
            "  'dataset', ARGV[5], 'params', ARGV[6], 'status', 'queued', 'cancel', '0',\n"
            "  'created', ARGV[7], 'messages', '0', 'dead_letters', '0',\n"
            "  'tasks_total', '0', 'tasks_done', '0')\n"
            "redis.call('SET', ak, id)\n"
            "redis.call('ZADD', P .. 'jobs', 0, id)\n"
            "redis.call('ZADD', P .. 'jobs:stream:' .. stream, 0, id)\n"
            "redis.call('ZADD', P .. 'jobs:status:queued', 0, id)\n"
            "if idem ~= '' then redis.call('SET', P .. 'idem:' .. idem, id, 'PX', ARGV[9]) end\n"
            "prune(P .. 'jobs')\n"
            "prune(P .. 'jobs:stream:' .. stream)\n"
            "return {'created', id}\n";

/* ARGV: P stream status cursor limit scan_cap
 * -> {next_cursor, {hash, rows, shards}, ...} newest first */
static const char job_list[] =
    PRELUDE "local stream, status, cursor = ARGV[2], ARGV[3], ARGV[4]\n"
            "local limit, cap = tonumber(ARGV[5]), tonumber(ARGV[6])\n"
            "local idx = P .. 'jobs'\n"
            "if stream ~= '' then idx = P .. 'jobs:stream:' .. stream\n"
            "elseif status ~= '' then idx = P .. 'jobs:status:' .. status end\n"
            "local max = cursor == '' and '+' or '(' .. cursor\n"
            "local ids, scanned, last, exhausted = {}, 0, nil, false\n"
            "while #ids <= limit and scanned < cap do\n"
            "  local batch = redis.call('ZREVRANGEBYLEX', idx, max, '-', 'LIMIT', 0, 64)\n"
            "  if #batch == 0 then exhausted = true break end\n"
            "  for _, j in ipairs(batch) do\n"
            "    scanned = scanned + 1\n"
            "    last = j\n"
            "    local st = redis.call('HGET', jk(j), 'status')\n"
            "    if not st then redis.call('ZREM', idx, j)\n"
            "    elseif status == '' or st == status then ids[#ids + 1] = j end\n"
            "    if #ids > limit or scanned >= cap then break end\n"
            "  end\n"
            "  max = '(' .. last\n"
            "end\n"
            "local nxt = ''\n"
            "if #ids > limit then ids[#ids] = nil nxt = ids[#ids]\n"
            "elseif not exhausted and last then nxt = last end\n"
            "local out = {nxt}\n"
            "for _, j in ipairs(ids) do\n"
            "  local k = jk(j)\n"
            "  out[#out + 1] = {redis.call('HGETALL', k), redis.call('HGETALL', k .. ':rows'),\n"
            "                   redis.call('HGETALL', k .. ':shards')}\n"
            "end\n"
            "return out\n";

/* ARGV: P pipeline stream -> nil | id */
static const char job_active[] =
    PRELUDE "local act = redis.call('GET', P .. 'active:' .. ARGV[2] .. ':' .. ARGV[3])\n"
            "if not act then return false end\n"
            "local st = redis.call('HGET', jk(act), 'status')\n"
            "if st == 'queued' or st == 'running' then return act end\n"
            "return false\n";

/* ARGV: P id to now retention_ms err_type err_detail err_shard; to may be 'cancel'
 * -> {'ok', status} | {'conflict', status} | {'missing'} */
static const char job_transition[] = PRELUDE
    "local id, to, now = ARGV[2], ARGV[3], ARGV[4]\n"
    "local k = jk(id)\n"
    "local st = redis.call('HGET', k, 'status')\n"
    "if not st then return {'missing'} end\n"
    "if to == 'cancel' then\n"
    "  if st == 'running' then redis.call('HSET', k, 'cancel', '1') return {'ok', st} end\n"
    "  if st == 'cancelled' then return {'ok', st} end\n"
    "  if st ~= 'queued' then return {'conflict', st} end\n"
    "  redis.call('HSET', k, 'cancel', '1')\n"
    "  to = 'cancelled'\n"
    "elseif st == to then return {'ok', st}\n"
    "else\n"
    "  local allowed = {queued = {running = 1, failed = 1, cancelled = 1},\n"
    "                   running = {succeeded = 1, failed = 1, cancelled = 1}}\n"
    "  if not (allowed[st] and allowed[st][to]) then return {'conflict', st} end\n"
    "end\n"
    "redis.call('HSET', k, 'status', to)\n"
    "redis.call('ZREM', P .. 'jobs:status:' .. st, id)\n"
    "redis.call('ZADD', P .. 'jobs:status:' .. to, 0, id)\n"
    "if to == 'running' then redis.call('HSET', k, 'started', now) return {'ok', to} end\n"
    "redis.call('HSET', k, 'finished', now)\n"
    "if to == 'failed' and ARGV[6] ~= '' then\n"
    "  redis.call('HSET', k, 'err_type', ARGV[6], 'err_detail', ARGV[7], 'err_shard', ARGV[8])\n"
    "end\n"
    "local f = redis.call('HMGET', k, 'pipeline', 'stream')\n"
    "local ak = P .. 'active:' .. f[1] .. ':' .. f[2]\n"
    "if redis.call('GET', ak) == id then redis.call('DEL', ak) end\n"
    "for _, s in ipairs({'', ':rows', ':shards', ':tasks', ':budget'}) do\n"
    "  redis.call('PEXPIRE', k .. s, ARGV[5])\n"
    "end\n"
    "prune(P .. 'jobs:status:' .. to)\n"
    "return {'ok', to}\n";

/* Gives n (< 0: all) of a shard's reservation back, never below 0. */
#define BUDGET_RELEASE                                                                             \
    "local function release(k, sh, n)\n"                                                           \
    "  local bk = k .. ':budget'\n"                                                                \
    "  local have = tonumber(redis.call('HGET', bk, sh) or '0')\n"                                 \
    "  if n < 0 or n > have then n = have end\n"                                                   \
    "  if n > 0 then\n"                                                                            \
    "    redis.call('HINCRBY', bk, sh, -n)\n"                                                      \
    "    redis.call('HINCRBY', bk, '|total', -n)\n"                                                \
    "  end\n"                                                                                      \
    "end\n"

/* ARGV: P id shard seq sub mbl msgs dead_letters done gap_from gap_to gap_reason
 *       wait_op ('' unchanged, '-' cleared) wait_since wait_until wait_why released
 *       resumed_from ('' unchanged) resumed_from_load_id owner ('' unchanged)
 *       last_arrival_ms committed_at_ms window ('' unchanged; only rises)
 *       [table rows]... -> 1 applied | 0 duplicate | -1 no such job
 * The shard's rate (|rate as of |rat, messages/s) decays with a time
 * constant of KL_STORE_RATE_WINDOW_MS, as kl_store_rate_add does. */
#define STR_(x) #x
#define STR(x) STR_(x)
#define RATE_WINDOW_MS STR(KL_STORE_RATE_WINDOW_MS)

static const char job_progress[] = PRELUDE BUDGET_RELEASE
    "local k = jk(ARGV[2])\n"
    "if redis.call('EXISTS', k) == 0 then return -1 end\n"
    "local sk, sh, seq, sub = k .. ':shards', ARGV[3], ARGV[4], ARGV[5]\n"
    "local apply = true\n"
    "if seq ~= '' then\n"
    "  local cur = redis.call('HMGET', sk, sh .. '|seq', sh .. '|sub')\n"
    "  if cur[1] and pos_cmp(seq, sub, cur[1], cur[2] or '-1') <= 0 then apply = false end\n"
    "end\n"
    "if apply then\n"
    "  if seq ~= '' then redis.call('HSET', sk, sh .. '|seq', seq, sh .. '|sub', sub) end\n"
    "  redis.call('HINCRBY', sk, sh .. '|msgs', ARGV[7])\n"
    "  if ARGV[7] ~= '0' then redis.call('HINCRBY', k, 'messages', ARGV[7]) end\n"
    "  if ARGV[8] ~= '0' then redis.call('HINCRBY', k, 'dead_letters', ARGV[8]) end\n"
    "  for i = 24, #ARGV, 2 do redis.call('HINCRBY', k .. ':rows', ARGV[i], ARGV[i + 1]) end\n"
    "  if ARGV[17] ~= '0' then release(k, sh, tonumber(ARGV[17])) end\n"
    "  if ARGV[6] ~= '-1' then redis.call('HSET', sk, sh .. '|mbl', ARGV[6]) end\n"
    "  local arr = tonumber(ARGV[21])\n"
    "  if arr > tonumber(redis.call('HGET', sk, sh .. '|arr') or '0') then\n"
    "    redis.call('HSET', sk, sh .. '|arr', ARGV[21])\n"
    "  end\n"
    "  local at = tonumber(ARGV[22])\n"
    "  if at > 0 then\n"
    "    local r = tonumber(redis.call('HGET', sk, sh .. '|rate') or '0')\n"
    "    local rat = tonumber(redis.call('HGET', sk, sh .. '|rat') or '0')\n"
    "    if rat > 0 and at > rat then r = r * math.exp(-(at - rat) / " RATE_WINDOW_MS ") end\n"
    "    r = r + tonumber(ARGV[7]) * 1000 / " RATE_WINDOW_MS "\n"
    "    if at < rat then at = rat end\n"
    "    redis.call('HSET', sk, sh .. '|rate', string.format('%.6f', r), sh .. '|rat', at)\n"
    "  end\n"
    "end\n"
    "if ARGV[20] ~= '' then redis.call('HSET', sk, sh .. '|own', ARGV[20]) end\n"
    "if ARGV[23] ~= '' and tonumber(ARGV[23]) > tonumber(redis.call('HGET', sk, sh .. '|win')\n"
    "    or '-1') then redis.call('HSET', sk, sh .. '|win', ARGV[23]) end\n"
    "if ARGV[9] == '1' then redis.call('HSET', sk, sh .. '|done', '1') end\n"
    "if ARGV[10] ~= '' then\n"
    "  redis.call('HSET', sk, sh .. '|gfrom', ARGV[10], sh .. '|gto', ARGV[11],\n"
    "             sh .. '|greason', ARGV[12])\n"
    "end\n"
    "if ARGV[18] ~= '' then\n"
    "  redis.call('HSET', sk, sh .. '|rfrom', ARGV[18], sh .. '|rload', ARGV[19])\n"
    "end\n"
    "if ARGV[13] == '-' then\n"
    "  redis.call('HDEL', sk, sh .. '|wop', sh .. '|wsince', sh .. '|wuntil', sh .. '|wwhy')\n"
    "elseif ARGV[13] ~= '' then\n"
    "  redis.call('HSET', sk, sh .. '|wop', ARGV[13], sh .. '|wsince', ARGV[14],\n"
    "             sh .. '|wuntil', ARGV[15], sh .. '|wwhy', ARGV[16])\n"
    "end\n"
    /* a finished job's keys all expire; keys created now must too */
    "local ttl = redis.call('PTTL', k)\n"
    "if ttl > 0 then\n"
    "  redis.call('PEXPIRE', sk, ttl)\n"
    "  redis.call('PEXPIRE', k .. ':rows', ttl)\n"
    "end\n"
    "return apply and 1 or 0\n";

/* ARGV: P id shard max want -> granted (>= 0) | -1 no such job. Grants
 * min(want, max - messages - reserved) of a queued or running job. */
static const char budget_reserve[] =
    PRELUDE "local k = jk(ARGV[2])\n"
            "local st = redis.call('HGET', k, 'status')\n"
            "if not st then return -1 end\n"
            "if st ~= 'queued' and st ~= 'running' then return 0 end\n"
            "local bk = k .. ':budget'\n"
            "local left = tonumber(ARGV[4]) - tonumber(redis.call('HGET', k, 'messages') or '0')\n"
            "            - tonumber(redis.call('HGET', bk, '|total') or '0')\n"
            "local g = tonumber(ARGV[5])\n"
            "if left < g then g = left end\n"
            "if g <= 0 then return 0 end\n"
            "redis.call('HINCRBY', bk, ARGV[3], g)\n"
            "redis.call('HINCRBY', bk, '|total', g)\n"
            "local ttl = redis.call('PTTL', k)\n"
            "if ttl > 0 then redis.call('PEXPIRE', bk, ttl) end\n"
            "return g\n";

/* ARGV: P id shard n -> 1 | -1 no such job */
static const char budget_release[] =
    PRELUDE BUDGET_RELEASE "local k = jk(ARGV[2])\n"
                           "if redis.call('EXISTS', k) == 0 then return -1 end\n"
                           "release(k, ARGV[3], tonumber(ARGV[4]))\n"
                           "return 1\n";

/* ARGV: P job_id shard meta delay_ms -> 'created' | 'exists' | 'missing' | 'final' */
static const char task_enqueue[] =
    PRELUDE "local jid, sh = ARGV[2], ARGV[3]\n"
            "local k = jk(jid)\n"
            "local st = redis.call('HGET', k, 'status')\n"
            "if not st then return 'missing' end\n"
            "if st ~= 'queued' and st ~= 'running' then return 'final' end\n"
            "local tk = k .. ':tasks'\n"
            "if redis.call('HEXISTS', tk, sh .. '|st') == 1 then return 'exists' end\n"
            "local tid = jid .. '/' .. sh\n"
            "local delay = tonumber(ARGV[5])\n"
            "redis.call('HSET', tk, sh .. '|att', '0', sh .. '|dlv', '0', sh .. '|meta', ARGV[4])\n"
            "redis.call('HINCRBY', k, 'tasks_total', 1)\n"
            "if delay > 0 then\n"
            "  redis.call('HSET', tk, sh .. '|st', 'd')\n"
            "  redis.call('ZADD', P .. 'q:delayed', now_ms() + delay, tid)\n"
            "else\n"
            "  redis.call('HSET', tk, sh .. '|st', 'q')\n"
            "  redis.call('LPUSH', P .. 'q', tid)\n"
            "  wake()\n"
            "end\n"
            "return 'created'\n";

/* ARGV: P owner lease_ms pop. Readies due delayed tasks, puts expired
 * in-flight tasks back at the front (attempt + 1), then, with pop = 1,
 * takes the first queued task.
 * -> pop = 0: number requeued; pop = 1: nil | {job_id, shard, attempt, delivery, meta} */
static const char task_take[] = PRELUDE
    "local now = now_ms()\n"
    "local q, qi, qd = P .. 'q', P .. 'q:inflight', P .. 'q:delayed'\n"
    "local function split(tid) return string.sub(tid, 1, 26), string.sub(tid, 28) end\n"
    "for _, tid in ipairs(redis.call('ZRANGEBYSCORE', qd, '-inf', now, 'LIMIT', 0, 100)) do\n"
    "  redis.call('ZREM', qd, tid)\n"
    "  local jid, sh = split(tid)\n"
    "  local tk = jk(jid) .. ':tasks'\n"
    "  if redis.call('HGET', tk, sh .. '|st') == 'd' then\n"
    "    redis.call('HSET', tk, sh .. '|st', 'q')\n"
    "    redis.call('LPUSH', q, tid)\n"
    "  end\n"
    "end\n"
    "local requeued = 0\n"
    "for _, tid in ipairs(redis.call('ZRANGEBYSCORE', qi, '-inf', now, 'LIMIT', 0, 100)) do\n"
    "  redis.call('ZREM', qi, tid)\n"
    "  local jid, sh = split(tid)\n"
    "  local tk = jk(jid) .. ':tasks'\n"
    "  if redis.call('HGET', tk, sh .. '|st') == 'f' then\n"
    "    redis.call('HSET', tk, sh .. '|st', 'q')\n"
    "    redis.call('HINCRBY', tk, sh .. '|att', 1)\n"
    "    redis.call('RPUSH', q, tid)\n"
    "    requeued = requeued + 1\n"
    "  end\n"
    "end\n"
    "if ARGV[4] ~= '1' then return requeued end\n"
    /* entries whose task is gone (job expired or lost) are dropped */
    "for _ = 1, 1000 do\n"
    "  local tid = redis.call('RPOP', q)\n"
    "  if not tid then return false end\n"
    "  local jid, sh = split(tid)\n"
    "  local tk = jk(jid) .. ':tasks'\n"
    "  if redis.call('HGET', tk, sh .. '|st') == 'q' then\n"
    "    local dlv = redis.call('HINCRBY', tk, sh .. '|dlv', 1)\n"
    "    redis.call('HSET', tk, sh .. '|st', 'f', sh .. '|owner', ARGV[2])\n"
    "    redis.call('ZADD', qi, now + tonumber(ARGV[3]), tid)\n"
    "    local v = redis.call('HMGET', tk, sh .. '|att', sh .. '|meta')\n"
    "    return {jid, sh, v[1] or '0', dlv, v[2] or ''}\n"
    "  end\n"
    "end\n"
    "return false\n";

/* ARGV: P job_id shard delivery lease_ms -> 1 | 0 (not held) */
static const char task_heartbeat[] = PRELUDE
    "local tk, sh = jk(ARGV[2]) .. ':tasks', ARGV[3]\n"
    "local v = redis.call('HMGET', tk, sh .. '|st', sh .. '|dlv')\n"
    "if v[1] ~= 'f' or v[2] ~= ARGV[4] then return 0 end\n"
    "redis.call('ZADD', P .. 'q:inflight', now_ms() + tonumber(ARGV[5]), ARGV[2] .. '/' .. sh)\n"
    "return 1\n";

/* ARGV: P job_id shard delivery -> nil (not held) | {tasks_done, tasks_total} */
static const char task_ack[] = PRELUDE
    "local k, sh = jk(ARGV[2]), ARGV[3]\n"
    "local tk = k .. ':tasks'\n"
    "if redis.call('EXISTS', k) == 0 then return false end\n"
    "local v = redis.call('HMGET', tk, sh .. '|st', sh .. '|dlv', sh .. '|adone', sh .. "
    "'|atotal')\n"
    "if v[2] ~= ARGV[4] then return false end\n"
    "if v[1] == 'a' then return {v[3], v[4]} end\n"
    "if v[1] ~= 'f' then return false end\n"
    "redis.call('ZREM', P .. 'q:inflight', ARGV[2] .. '/' .. sh)\n"
    "local done = redis.call('HINCRBY', k, 'tasks_done', 1)\n"
    "local total = redis.call('HGET', k, 'tasks_total')\n"
    "redis.call('HSET', tk, sh .. '|st', 'a', sh .. '|adone', done, sh .. '|atotal', total)\n"
    "return {tostring(done), total}\n";

/* ARGV: P job_id shard delivery delay_ms -> 1 | 0 (not held) */
#define TASK_REQUEUE(count_attempt)                                                                \
    PRELUDE "local tk, sh = jk(ARGV[2]) .. ':tasks', ARGV[3]\n"                                    \
            "local tid = ARGV[2] .. '/' .. sh\n"                                                   \
            "local v = redis.call('HMGET', tk, sh .. '|st', sh .. '|dlv')\n"                       \
            "if v[1] ~= 'f' or v[2] ~= ARGV[4] then return 0 end\n"                                \
            "redis.call('ZREM', P .. 'q:inflight', tid)\n" count_attempt                           \
            "local delay = tonumber(ARGV[5])\n"                                                    \
            "if delay > 0 then\n"                                                                  \
            "  redis.call('HSET', tk, sh .. '|st', 'd')\n"                                         \
            "  redis.call('ZADD', P .. 'q:delayed', now_ms() + delay, tid)\n"                      \
            "else\n"                                                                               \
            "  redis.call('HSET', tk, sh .. '|st', 'q')\n"                                         \
            "  redis.call('LPUSH', P .. 'q', tid)\n"                                               \
            "  wake()\n"                                                                           \
            "end\n"                                                                                \
            "return 1\n"

static const char task_nack[] = TASK_REQUEUE("redis.call('HINCRBY', tk, sh .. '|att', 1)\n");

/* As task_nack, without counting an attempt. */
static const char task_release[] = TASK_REQUEUE("");

/* ARGV: P -> {queued, in_flight, delayed, jobs queued, running, succeeded, failed,
 * cancelled}. A finished job's record expires on its own; its index entries
 * go when a list or this script meets them (the oldest 256 of each). */
static const char stats[] =
    PRELUDE "local out = {redis.call('LLEN', P .. 'q'), redis.call('ZCARD', P .. 'q:inflight'),\n"
            "             redis.call('ZCARD', P .. 'q:delayed')}\n"
            "for _, st in ipairs({'queued', 'running', 'succeeded', 'failed', 'cancelled'}) do\n"
            "  local idx = P .. 'jobs:status:' .. st\n"
            "  if st ~= 'queued' and st ~= 'running' then\n"
            "    for _, j in ipairs(redis.call('ZRANGE', idx, 0, 255)) do\n"
            "      if redis.call('EXISTS', jk(j)) == 0 then redis.call('ZREM', idx, j) end\n"
            "    end\n"
            "  end\n"
            "  out[#out + 1] = redis.call('ZCARD', idx)\n"
            "end\n"
            "return out\n";

#define LEASE_KEYS                                                                                 \
    "local base = ARGV[2] .. ':' .. ARGV[3] .. ':' .. ARGV[4]\n"                                   \
    "local lk, fk = P .. 'lease:' .. base, P .. 'fence:' .. base\n"

/* ARGV: P pipeline stream shard owner ttl_ms min_token
 * -> {'ok', token} | {'held', owner, pttl} */
static const char lease_take[] =
    PRELUDE LEASE_KEYS "local cur = redis.call('GET', lk)\n"
                       "if cur then\n"
                       "  local sp = string.find(cur, ' ', 1, true)\n"
                       "  local own = string.sub(cur, sp + 1)\n"
                       "  if own ~= ARGV[5] then return {'held', own, redis.call('PTTL', lk)} end\n"
                       "  redis.call('PEXPIRE', lk, ARGV[6])\n"
                       "  return {'ok', string.sub(cur, 1, sp - 1)}\n"
                       "end\n"
                       "local t = redis.call('INCR', fk)\n"
                       "local floor = tonumber(ARGV[7])\n"
                       "if t <= floor then\n"
                       "  t = floor + 1\n"
                       "  redis.call('SET', fk, string.format('%d', t))\n"
                       "end\n"
                       "local tok = string.format('%d', t)\n"
                       "redis.call('SET', lk, tok .. ' ' .. ARGV[5], 'PX', ARGV[6])\n"
                       "return {'ok', tok}\n";

/* ARGV: P pipeline stream shard owner token ttl_ms -> 1 | 0 (lost) */
static const char lease_renew[] =
    PRELUDE LEASE_KEYS "local want = ARGV[6] .. ' ' .. ARGV[5]\n"
                       "local cur = redis.call('GET', lk)\n"
                       "if cur == want then redis.call('PEXPIRE', lk, ARGV[7]) return 1 end\n"
                       /* lapsed, and nobody took a newer token since */
                       "if not cur and redis.call('GET', fk) == ARGV[6] then\n"
                       "  redis.call('SET', lk, want, 'PX', ARGV[7])\n"
                       "  return 1\n"
                       "end\n"
                       "return 0\n";

/* ARGV: P pipeline stream shard owner token -> 1 | {owner-and-token of the holder} */
static const char lease_release[] = PRELUDE LEASE_KEYS
    "local cur = redis.call('GET', lk)\n"
    "if not cur then return 1 end\n"
    "if cur == ARGV[6] .. ' ' .. ARGV[5] then redis.call('DEL', lk) return 1 end\n"
    "return {cur}\n";

const char *const kl_redis_script_source[KL_RS_COUNT] = {
    [KL_RS_JOB_CREATE] = job_create,
    [KL_RS_JOB_LIST] = job_list,
    [KL_RS_JOB_ACTIVE] = job_active,
    [KL_RS_JOB_TRANSITION] = job_transition,
    [KL_RS_JOB_PROGRESS] = job_progress,
    [KL_RS_TASK_ENQUEUE] = task_enqueue,
    [KL_RS_TASK_TAKE] = task_take,
    [KL_RS_TASK_HEARTBEAT] = task_heartbeat,
    [KL_RS_TASK_ACK] = task_ack,
    [KL_RS_TASK_NACK] = task_nack,
    [KL_RS_TASK_RELEASE] = task_release,
    [KL_RS_STATS] = stats,
    [KL_RS_LEASE_TAKE] = lease_take,
    [KL_RS_LEASE_RENEW] = lease_renew,
    [KL_RS_LEASE_RELEASE] = lease_release,
    [KL_RS_BUDGET_RESERVE] = budget_reserve,
    [KL_RS_BUDGET_RELEASE] = budget_release,
};

const char *const kl_redis_script_name[KL_RS_COUNT] = {
    [KL_RS_JOB_CREATE] = "job_create",
    [KL_RS_JOB_LIST] = "job_list",
    [KL_RS_JOB_ACTIVE] = "job_active",
    [KL_RS_JOB_TRANSITION] = "job_transition",
    [KL_RS_JOB_PROGRESS] = "job_progress",
    [KL_RS_TASK_ENQUEUE] = "task_enqueue",
    [KL_RS_TASK_TAKE] = "task_take",
    [KL_RS_TASK_HEARTBEAT] = "task_heartbeat",
    [KL_RS_TASK_ACK] = "task_ack",
    [KL_RS_TASK_NACK] = "task_nack",
    [KL_RS_TASK_RELEASE] = "task_release",
    [KL_RS_STATS] = "stats",
    [KL_RS_LEASE_TAKE] = "lease_take",
    [KL_RS_LEASE_RENEW] = "lease_renew",
    [KL_RS_LEASE_RELEASE] = "lease_release",
    [KL_RS_BUDGET_RESERVE] = "budget_reserve",
    [KL_RS_BUDGET_RELEASE] = "budget_release",
};
