/*
 * The Redis state store (redis.h): a connection pool, the script runner
 * (EVALSHA, EVAL when Redis answers NOSCRIPT) and the translation between
 * store.h's structs and the scripts' arguments and replies. The rules
 * themselves live in the scripts (redis_scripts.c). Not here: URL parsing
 * (redis_url.c).
 */
#include "core/store/redis.h"
#include "core/store/internal.h"
#include "core/store/redis_scripts.h"
#include "core/util/clock.h"
#include "core/util/err.h"
#include "core/util/log.h"
#include "core/util/rand.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define BACKOFF_MIN_MS 100
#define LIST_SCAN_CAP 2000 /* index entries one list call looks at, at most */
#define HASH_PAIRS_MAX ((size_t)16 * KL_STORE_SHARDS_MAX)
#define KEY_BUF (KL_STORE_PREFIX_MAX + 32 + KL_STORE_NAME_MAX + KL_STREAM_NAME_MAX)

struct rstore {
    struct kl_redis_url url;
    char where[400]; /* the redacted URL, for messages */
    char prefix[KL_STORE_PREFIX_MAX];
    const struct kl_clock *clock;
    int64_t retention_ms, idem_ttl_ms;
    int64_t connect_timeout_ms, command_timeout_ms, poll_ms, backoff_max_ms;
    int pool_max;
    char sha[KL_RS_COUNT][41];

    pthread_mutex_t mu; /* guards the pool below */
    pthread_cond_t cv;  /* a connection came back */
    redisContext **idle;
    int n_idle;
    int n_open;       /* idle + lent out + being connected */
    int64_t retry_at; /* real monotonic ms: no connection attempt before this */
    int64_t backoff;  /* the current backoff step, 0 while Redis answers */
};

/* ---- time ---- */

static int64_t real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timeval tv_of(int64_t ms)
{
    struct timeval tv;
    tv.tv_sec = (time_t)(ms / 1000);
    tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
    return tv;
}

/* ---- the pool ---- */

static void pool_lock(struct rstore *r)
{
    /* Fails only for a corrupted mutex: a bug we must not run past. */
    if (pthread_mutex_lock(&r->mu) != 0)
        abort();
}

static void pool_unlock(struct rstore *r)
{
    if (pthread_mutex_unlock(&r->mu) != 0)
        abort();
}

static int map_error_reply(const char *what, const char *msg, struct kl_err *err)
{
    static const char *const retryable[] = {"LOADING",  "BUSY", "MASTERDOWN", "TRYAGAIN",
                                            "READONLY", "OOM",  "CLUSTERDOWN"};
    static const char *const auth[] = {"NOAUTH", "WRONGPASS", "NOPERM"};
    for (size_t i = 0; i < sizeof retryable / sizeof retryable[0]; i++) {
        if (strncmp(msg, retryable[i], strlen(retryable[i])) == 0)
            return KL_STORE_FAIL(err, KL_ERR_UNAVAILABLE, "redis %s: %.200s", what, msg);
    }
    for (size_t i = 0; i < sizeof auth / sizeof auth[0]; i++) {
        if (strncmp(msg, auth[i], strlen(auth[i])) == 0)
            return KL_STORE_FAIL(err, KL_ERR_AUTH, "redis %s: %.200s", what, msg);
    }
    return KL_STORE_FAIL(err, KL_ERR_INTERNAL, "redis %s: %.200s", what, msg);
}

/* Sends a set-up command on a fresh connection; the reply must not be an error. */
static int setup_command(redisContext *c, int argc, const char **argv, const size_t *lens,
                         const char *what, struct kl_err *err)
{
    redisReply *reply = redisCommandArgv(c, argc, argv, lens);
    int rc = KL_OK;
    if (reply == NULL)
        rc = KL_STORE_FAIL(err, KL_ERR_UNAVAILABLE, "redis %s: %s", what, c->errstr);
    else if (reply->type == REDIS_REPLY_ERROR && strcmp(what, "AUTH") == 0)
        /* Redis's answers never repeat the password. */
        rc = KL_STORE_FAIL(err, KL_ERR_AUTH, "redis AUTH refused: %.200s", reply->str);
    else if (reply->type == REDIS_REPLY_ERROR)
        rc = map_error_reply(what, reply->str, err);
    freeReplyObject(reply);
    return rc;
}

static int connect_one(struct rstore *r, redisContext **out, struct kl_err *err)
{
    redisContext *c;
    int rc = KL_OK;

    c = redisConnectWithTimeout(r->url.host, r->url.port, tv_of(r->connect_timeout_ms));
    if (c == NULL) {
        rc = KL_STORE_FAIL(err, KL_ERR_NOMEM, "redis: out of memory");
        goto cleanup;
    }
    if (c->err != 0) {
        rc = KL_STORE_FAIL(err, KL_ERR_UNAVAILABLE, "redis %s: %s", r->where, c->errstr);
        goto cleanup;
    }
    if (redisSetTimeout(c, tv_of(r->command_timeout_ms)) != REDIS_OK ||
        redisEnableKeepAlive(c) != REDIS_OK) {
        rc = KL_STORE_FAIL(err, KL_ERR_UNAVAILABLE, "redis %s: socket options: %s", r->where,
                           c->errstr);
        goto cleanup;
    }
    if (r->url.password != NULL) {
        const char *argv[3];
        size_t lens[3];
        int n = 0;
        argv[n] = "AUTH";
        lens[n++] = 4;
        if (r->url.user[0] != '\0') {
            argv[n] = r->url.user;
            lens[n++] = strlen(r->url.user);
        }
        argv[n] = r->url.password;
        lens[n++] = strlen(r->url.password);
        if ((rc = setup_command(c, n, argv, lens, "AUTH", err)) != KL_OK)
            goto cleanup;
    }
    if (r->url.db != 0) {
        char db[16];
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, 0};
        lens[1] = (size_t)snprintf(db, sizeof db, "%d", r->url.db);
        if ((rc = setup_command(c, 2, argv, lens, "SELECT", err)) != KL_OK)
            goto cleanup;
    }
    *out = c;
    c = NULL;
cleanup:
    if (c != NULL)
        redisFree(c);
    return rc;
}

/* Lends a connection: an idle one (`*reused` true), else a new one while
 * the pool has room, else waits for one to come back. */
static int borrow(struct rstore *r, redisContext **out, bool *reused, struct kl_err *err)
{
    int64_t give_up = real_ms() + r->command_timeout_ms;
    redisContext *c = NULL;
    int rc;

    pool_lock(r);
    for (;;) {
        int64_t now = real_ms();
        if (r->n_idle > 0) {
            *out = r->idle[--r->n_idle];
            *reused = true;
            pool_unlock(r);
            return KL_OK;
        }
        if (r->n_open < r->pool_max) {
            if (now < r->retry_at) {
                int64_t wait = r->retry_at - now;
                pool_unlock(r);
                return KL_STORE_FAIL(err, KL_ERR_UNAVAILABLE,
                                     "redis %s is unreachable (next attempt in %lld ms)", r->where,
                                     (long long)wait);
            }
            r->n_open++;
            break;
        }
        if (now >= give_up) {
            pool_unlock(r);
            return KL_STORE_FAIL(err, KL_ERR_UNAVAILABLE, "redis: all %d connections are busy",
                                 r->pool_max);
        }
        {
            struct timespec ts;
            int64_t wait = give_up - now, w;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += wait / 1000;
            ts.tv_nsec += (long)(wait % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            w = pthread_cond_timedwait(&r->cv, &r->mu, &ts);
            if (w != 0 && w != ETIMEDOUT)
                abort(); /* an invalid condition variable or mutex: a bug */
        }
    }
    pool_unlock(r);

    rc = connect_one(r, &c, err);
    pool_lock(r);
    if (rc != KL_OK) {
        r->n_open--;
        if (rc == KL_ERR_UNAVAILABLE) {
            bool first = r->backoff == 0;
            r->backoff = first ? BACKOFF_MIN_MS : r->backoff * 2;
            if (r->backoff > r->backoff_max_ms)
                r->backoff = r->backoff_max_ms;
            /* +-25 % jitter, so replicas do not reconnect in step */
            r->retry_at = real_ms() + r->backoff * 3 / 4 +
                          (int64_t)kl_rand_below((uint64_t)r->backoff / 2 + 1);
            if (first)
                KL_WARN("store", NULL, "redis unreachable: %s", err != NULL ? err->msg : "");
        }
        if (pthread_cond_signal(&r->cv) != 0)
            abort();
        pool_unlock(r);
        return rc;
    }
    if (r->backoff != 0)
        KL_INFO("store", NULL, "redis %s reachable again", r->where);
    r->backoff = 0;
    r->retry_at = 0;
    pool_unlock(r);
    *out = c;
    *reused = false;
    return KL_OK;
}

/* Returns a connection. A broken one is closed together with every idle
 * one: whatever broke it (a restart, a network cut) most likely broke them. */
static void give_back(struct rstore *r, redisContext *c, bool broken)
{
    pool_lock(r);
    if (!broken && c->err == 0) {
        r->idle[r->n_idle++] = c;
    } else {
        /* closing is quick (close(2) and free), so it is done under the lock */
        redisFree(c);
        r->n_open--;
        for (int i = 0; i < r->n_idle; i++)
            redisFree(r->idle[i]);
        r->n_open -= r->n_idle;
        r->n_idle = 0;
    }
    if (pthread_cond_broadcast(&r->cv) != 0)
        abort();
    pool_unlock(r);
}

/* ---- commands ---- */

struct args {
    size_t n, cap;
    const char **v;
    size_t *len;
    char (*num)[24];
};

static int args_init(struct args *a, size_t cap, struct kl_err *err)
{
    memset(a, 0, sizeof *a);
    a->cap = cap;
    a->v = calloc(cap, sizeof *a->v);
    a->len = calloc(cap, sizeof *a->len);
    a->num = calloc(cap, sizeof *a->num);
    if (a->v == NULL || a->len == NULL || a->num == NULL)
        return KL_STORE_FAIL(err, KL_ERR_NOMEM, "redis: out of memory");
    return KL_OK;
}

static void args_free(struct args *a)
{
    free(a->v);
    free(a->len);
    free(a->num);
    memset(a, 0, sizeof *a);
}

static void arg_mem(struct args *a, const char *s, size_t n)
{
    if (a->n >= a->cap)
        abort(); /* the caller sized the array: a bug */
    a->v[a->n] = s;
    a->len[a->n++] = n;
}

static void arg_str(struct args *a, const char *s)
{
    arg_mem(a, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

static void arg_i64(struct args *a, int64_t v)
{
    int n;
    if (a->n >= a->cap)
        abort();
    n = snprintf(a->num[a->n], sizeof a->num[0], "%lld", (long long)v);
    arg_mem(a, a->num[a->n], (size_t)n);
}

/* Runs a command. On KL_OK `*out` is the reply (never NULL; it may be an
 * error reply, which the caller maps). `block_ms` > 0: the command may
 * legitimately block that long (BLPOP). A failure on a connection that sat
 * idle in the pool is retried once on a fresh connection. */
static int command(struct rstore *r, const struct args *a, int64_t block_ms, redisReply **out,
                   struct kl_err *err)
{
    for (int attempt = 0;; attempt++) {
        redisContext *c;
        redisReply *reply;
        bool reused;
        int rc = borrow(r, &c, &reused, err);
        if (rc != KL_OK)
            return rc;
        if (block_ms > 0 &&
            redisSetTimeout(c, tv_of(block_ms + r->command_timeout_ms)) != REDIS_OK) {
            give_back(r, c, true);
            return KL_STORE_FAIL(err, KL_ERR_UNAVAILABLE, "redis: cannot set a timeout");
        }
        reply = redisCommandArgv(c, (int)a->n, a->v, a->len);
        if (reply == NULL) {
            char why[128];
            kl_store_copy(why, sizeof why, c->errstr);
            give_back(r, c, true);
            if (reused && attempt == 0)
                continue;
            return KL_STORE_FAIL(err, KL_ERR_UNAVAILABLE, "redis %s: %s", r->where,
                                 why[0] != '\0' ? why : "connection lost");
        }
        if (block_ms > 0 && redisSetTimeout(c, tv_of(r->command_timeout_ms)) != REDIS_OK) {
            give_back(r, c, true);
        } else {
            give_back(r, c, false);
        }
        *out = reply;
        return KL_OK;
    }
}

static int bad_reply(const char *what, struct kl_err *err);

/* Runs `n` commands as one MULTI/EXEC, sent together: one round trip. On
 * KL_OK `*out` is EXEC's reply, an array of the n replies. A failure on a
 * connection that sat idle in the pool is retried once on a fresh one. */
static int transaction(struct rstore *r, const struct args *cmds, size_t n, redisReply **out,
                       struct kl_err *err)
{
    for (int attempt = 0;; attempt++) {
        redisContext *c;
        redisReply *reply = NULL;
        bool reused, ok;
        int rc = borrow(r, &c, &reused, err);
        if (rc != KL_OK)
            return rc;
        ok = redisAppendCommand(c, "MULTI") == REDIS_OK;
        for (size_t i = 0; ok && i < n; i++)
            ok = redisAppendCommandArgv(c, (int)cmds[i].n, cmds[i].v, cmds[i].len) == REDIS_OK;
        ok = ok && redisAppendCommand(c, "EXEC") == REDIS_OK;
        /* MULTI's +OK and a +QUEUED per command, then EXEC's array */
        for (size_t i = 0; ok && i <= n; i++) {
            void *queued = NULL;
            ok = redisGetReply(c, &queued) == REDIS_OK && queued != NULL;
            freeReplyObject(queued);
        }
        ok = ok && redisGetReply(c, (void **)&reply) == REDIS_OK && reply != NULL;
        if (!ok) {
            char why[128];
            kl_store_copy(why, sizeof why, c->errstr);
            freeReplyObject(reply);
            give_back(r, c, true);
            if (reused && attempt == 0)
                continue;
            return KL_STORE_FAIL(err, KL_ERR_UNAVAILABLE, "redis %s: %s", r->where,
                                 why[0] != '\0' ? why : "connection lost");
        }
        give_back(r, c, false);
        if (reply->type == REDIS_REPLY_ERROR) {
            rc = map_error_reply("transaction", reply->str, err);
            freeReplyObject(reply);
            return rc != KL_OK ? rc : KL_ERR_INTERNAL;
        }
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != n) {
            freeReplyObject(reply);
            return bad_reply("transaction", err);
        }
        *out = reply;
        return KL_OK;
    }
}

/* Starts a script call's arguments: the reserved EVALSHA head and ARGV[1] = prefix. */
static int script_args(struct rstore *r, struct args *a, size_t n_argv, struct kl_err *err)
{
    int rc = args_init(a, 4 + n_argv, err);
    if (rc != KL_OK)
        return rc;
    arg_str(a, "EVALSHA");
    arg_str(a, "");
    arg_str(a, "0");
    arg_str(a, r->prefix);
    return KL_OK;
}

static bool is_noscript(const redisReply *reply)
{
    return reply != NULL && reply->type == REDIS_REPLY_ERROR &&
           strncmp(reply->str, "NOSCRIPT", 8) == 0;
}

/* Runs a script; on KL_OK `*out` is its (non-error) reply. */
static int script(struct rstore *r, enum kl_redis_script id, struct args *a, redisReply **out,
                  struct kl_err *err)
{
    redisReply *reply = NULL;
    int rc;

    a->v[0] = "EVALSHA";
    a->len[0] = 7;
    a->v[1] = r->sha[id];
    a->len[1] = 40;
    rc = command(r, a, 0, &reply, err);
    if (rc == KL_OK && is_noscript(reply)) {
        /* Redis does not know the script yet (first use, or it restarted): send it whole. */
        freeReplyObject(reply);
        reply = NULL;
        a->v[0] = "EVAL";
        a->len[0] = 4;
        a->v[1] = kl_redis_script_source[id];
        a->len[1] = strlen(kl_redis_script_source[id]);
        rc = command(r, a, 0, &reply, err);
    }
    if (rc != KL_OK)
        goto cleanup;
    if (reply == NULL) {
        rc = KL_STORE_FAIL(err, KL_ERR_INTERNAL, "redis %s: no reply", kl_redis_script_name[id]);
        goto cleanup;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        rc = map_error_reply(kl_redis_script_name[id], reply->str, err);
        if (rc == KL_OK) /* cannot happen; spelled out for the static analyzer */
            rc = KL_ERR_INTERNAL;
        goto cleanup;
    }
    *out = reply;
    reply = NULL;
cleanup:
    freeReplyObject(reply);
    return rc;
}

/* ---- reply helpers ---- */

static const char *el_str(const redisReply *r, size_t i, size_t *len)
{
    const redisReply *e;
    if (len != NULL)
        *len = 0;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || i >= r->elements)
        return NULL;
    e = r->element[i];
    if (e->type != REDIS_REPLY_STRING && e->type != REDIS_REPLY_STATUS)
        return NULL;
    if (len != NULL)
        *len = e->len;
    return e->str;
}

static bool el_is(const redisReply *r, size_t i, const char *s)
{
    size_t n;
    const char *v = el_str(r, i, &n);
    return v != NULL && n == strlen(s) && memcmp(v, s, n) == 0;
}

static int64_t el_i64(const redisReply *r, size_t i, int64_t fallback)
{
    size_t n;
    const char *s;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || i >= r->elements)
        return fallback;
    if (r->element[i]->type == REDIS_REPLY_INTEGER)
        return r->element[i]->integer;
    s = el_str(r, i, &n);
    return kl_store_parse_i64(s, n, fallback);
}

/* Copies a reply string into a fixed buffer; false when it does not fit. */
static bool copy_n(char *dst, size_t size, const char *s, size_t n)
{
    if (s == NULL || n >= size)
        return false;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return true;
}

static int bad_reply(const char *what, struct kl_err *err)
{
    return KL_STORE_FAIL(err, KL_ERR_INTERNAL, "redis %s: unexpected reply", what);
}

/* One "<key>|<name>" field of a hash, for grouping by key. */
struct field {
    const char *key;
    size_t key_len;
    const char *name; /* after the '|' */
    size_t name_len;
    const char *val;
    size_t val_len;
};

static int cmp_field(const void *a, const void *b)
{
    const struct field *x = a, *y = b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    if (c != 0)
        return c;
    return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/* Splits an HGETALL reply's "<key>|<name>" fields, sorted by key; fields
 * without '|' are left out. `*out` is malloc'ed. */
static int group_fields(const redisReply *h, struct field **out, size_t *n_out, struct kl_err *err)
{
    struct field *f = NULL;
    size_t n = 0;

    if (h == NULL || h->type != REDIS_REPLY_ARRAY || h->elements % 2 != 0)
        return bad_reply("hash", err);
    if (h->elements / 2 > HASH_PAIRS_MAX)
        return KL_STORE_FAIL(err, KL_ERR_LIMIT, "redis: a hash of %zu fields is too large",
                             h->elements / 2);
    if (h->elements > 0) {
        f = malloc(h->elements / 2 * sizeof *f);
        if (f == NULL)
            return KL_STORE_FAIL(err, KL_ERR_NOMEM, "redis: out of memory");
    }
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        size_t kl, vl;
        const char *k = el_str(h, i, &kl), *v = el_str(h, i + 1, &vl), *bar = NULL;
        if (k == NULL || v == NULL)
            continue;
        for (size_t j = kl; j > 0; j--) {
            if (k[j - 1] == '|') {
                bar = k + j - 1;
                break;
            }
        }
        if (bar == NULL)
            continue;
        f[n].key = k;
        f[n].key_len = (size_t)(bar - k);
        f[n].name = bar + 1;
        f[n].name_len = kl - f[n].key_len - 1;
        f[n].val = v;
        f[n].val_len = vl;
        n++;
    }
    if (n > 1)
        qsort(f, n, sizeof *f, cmp_field);
    *out = f;
    *n_out = n;
    return KL_OK;
}

static bool name_is(const struct field *f, const char *s)
{
    return f->name_len == strlen(s) && memcmp(f->name, s, f->name_len) == 0;
}

static size_t count_groups(const struct field *f, size_t n)
{
    size_t groups = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || cmp_field(&f[i - 1], &f[i]) != 0)
            groups++;
    }
    return groups;
}

static int parse_shards(const redisReply *h, struct kl_store_job *j, struct kl_err *err)
{
    struct field *f = NULL;
    size_t n = 0, groups;
    int rc = group_fields(h, &f, &n, err);
    if (rc != KL_OK)
        return rc;
    groups = count_groups(f, n);
    if (groups > 0) {
        j->shards = calloc(groups, sizeof *j->shards);
        if (j->shards == NULL) {
            rc = KL_STORE_FAIL(err, KL_ERR_NOMEM, "redis: out of memory");
            goto cleanup;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct kl_store_shard_progress *s;
        if (i == 0 || cmp_field(&f[i - 1], &f[i]) != 0) {
            s = &j->shards[j->n_shards++];
            s->position.sub_sequence = -1;
            s->millis_behind_latest = -1;
            if (!copy_n(s->position.shard_id, sizeof s->position.shard_id, f[i].key,
                        f[i].key_len)) {
                rc = bad_reply("shard id", err);
                goto cleanup;
            }
        }
        s = &j->shards[j->n_shards - 1];
        if (name_is(&f[i], "seq"))
            copy_n(s->position.sequence, sizeof s->position.sequence, f[i].val, f[i].val_len);
        else if (name_is(&f[i], "sub"))
            s->position.sub_sequence = kl_store_parse_i64(f[i].val, f[i].val_len, -1);
        else if (name_is(&f[i], "mbl"))
            s->millis_behind_latest = kl_store_parse_i64(f[i].val, f[i].val_len, -1);
        else if (name_is(&f[i], "msgs"))
            s->messages = kl_store_parse_i64(f[i].val, f[i].val_len, 0);
        else if (name_is(&f[i], "done"))
            s->done = f[i].val_len == 1 && f[i].val[0] == '1';
        else if (name_is(&f[i], "gfrom"))
            s->has_gap =
                copy_n(s->gap.from_sequence, sizeof s->gap.from_sequence, f[i].val, f[i].val_len);
        else if (name_is(&f[i], "gto"))
            copy_n(s->gap.to_sequence, sizeof s->gap.to_sequence, f[i].val, f[i].val_len);
        else if (name_is(&f[i], "greason"))
            copy_n(s->gap.reason, sizeof s->gap.reason, f[i].val,
                   f[i].val_len < sizeof s->gap.reason ? f[i].val_len : sizeof s->gap.reason - 1);
        else if (name_is(&f[i], "wop"))
            copy_n(s->waiting_on, sizeof s->waiting_on, f[i].val,
                   f[i].val_len < sizeof s->waiting_on ? f[i].val_len : sizeof s->waiting_on - 1);
        else if (name_is(&f[i], "wsince"))
            s->waiting_since_ms = kl_store_parse_i64(f[i].val, f[i].val_len, 0);
        else if (name_is(&f[i], "wuntil"))
            s->waiting_until_ms = kl_store_parse_i64(f[i].val, f[i].val_len, 0);
        else if (name_is(&f[i], "wwhy"))
            copy_n(s->waiting_why, sizeof s->waiting_why, f[i].val,
                   f[i].val_len < sizeof s->waiting_why ? f[i].val_len : sizeof s->waiting_why - 1);
    }
cleanup:
    free(f);
    return rc;
}

static int parse_tables(const redisReply *h, struct kl_store_job *j, struct kl_err *err)
{
    if (h == NULL || h->type != REDIS_REPLY_ARRAY || h->elements % 2 != 0)
        return bad_reply("rows", err);
    if (h->elements / 2 > KL_STORE_SHARDS_MAX)
        return KL_STORE_FAIL(err, KL_ERR_LIMIT, "redis: too many tables in a job");
    if (h->elements == 0)
        return KL_OK;
    j->tables = calloc(h->elements / 2, sizeof *j->tables);
    if (j->tables == NULL)
        return KL_STORE_FAIL(err, KL_ERR_NOMEM, "redis: out of memory");
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        size_t n;
        const char *t = el_str(h, i, &n);
        struct kl_store_table_rows *row = &j->tables[j->n_tables];
        if (!copy_n(row->table, sizeof row->table, t, n))
            continue;
        row->rows = el_i64(h, i + 1, 0);
        j->n_tables++;
    }
    return KL_OK;
}

/* Fills a snapshot from {job hash, rows hash, shards hash}. */
static int parse_job(const redisReply *trio, struct kl_store_job *out, struct kl_err *err)
{
    struct kl_store_job j;
    const redisReply *h;
    int rc = KL_OK;

    kl_store_job_init(&j);
    if (trio == NULL || trio->type != REDIS_REPLY_ARRAY || trio->elements != 3) {
        rc = bad_reply("job", err);
        goto cleanup;
    }
    h = trio->element[0];
    if (h->type != REDIS_REPLY_ARRAY || h->elements % 2 != 0 || h->elements > 128) {
        rc = bad_reply("job hash", err);
        goto cleanup;
    }
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        size_t kn, vn;
        const char *k = el_str(h, i, &kn), *v = el_str(h, i + 1, &vn);
        char name[16];
        if (k == NULL || v == NULL || !copy_n(name, sizeof name, k, kn))
            continue;
        if (strcmp(name, "id") == 0) {
            copy_n(j.id, sizeof j.id, v, vn);
        } else if (strcmp(name, "stream") == 0) {
            copy_n(j.stream, sizeof j.stream, v, vn);
        } else if (strcmp(name, "pipeline") == 0) {
            copy_n(j.pipeline_name, sizeof j.pipeline_name, v, vn);
        } else if (strcmp(name, "dataset") == 0) {
            copy_n(j.dataset_name, sizeof j.dataset_name, v, vn);
        } else if (strcmp(name, "params") == 0) {
            free(j.parameters);
            j.parameters = malloc(vn + 1);
            if (j.parameters == NULL) {
                rc = KL_STORE_FAIL(err, KL_ERR_NOMEM, "redis: out of memory");
                goto cleanup;
            }
            memcpy(j.parameters, v, vn);
            j.parameters[vn] = '\0';
        } else if (strcmp(name, "status") == 0) {
            char st[16];
            if (!copy_n(st, sizeof st, v, vn) || kl_store_job_status_parse(st, &j.status) != 0) {
                rc = bad_reply("job status", err);
                goto cleanup;
            }
        } else if (strcmp(name, "cancel") == 0) {
            j.cancel_requested = vn == 1 && v[0] == '1';
        } else if (strcmp(name, "created") == 0) {
            j.created_ms = kl_store_parse_i64(v, vn, 0);
        } else if (strcmp(name, "started") == 0) {
            j.started_ms = kl_store_parse_i64(v, vn, -1);
        } else if (strcmp(name, "finished") == 0) {
            j.finished_ms = kl_store_parse_i64(v, vn, -1);
        } else if (strcmp(name, "err_type") == 0) {
            j.has_error = copy_n(j.error_type, sizeof j.error_type, v, vn);
        } else if (strcmp(name, "err_detail") == 0) {
            copy_n(j.error_detail, sizeof j.error_detail, v,
                   vn < sizeof j.error_detail ? vn : sizeof j.error_detail - 1);
        } else if (strcmp(name, "err_shard") == 0) {
            copy_n(j.error_shard, sizeof j.error_shard, v, vn);
        } else if (strcmp(name, "messages") == 0) {
            j.messages = kl_store_parse_i64(v, vn, 0);
        } else if (strcmp(name, "dead_letters") == 0) {
            j.dead_letters = kl_store_parse_i64(v, vn, 0);
        } else if (strcmp(name, "tasks_total") == 0) {
            j.tasks_total = kl_store_parse_i64(v, vn, 0);
        } else if (strcmp(name, "tasks_done") == 0) {
            j.tasks_done = kl_store_parse_i64(v, vn, 0);
        }
    }
    if (!kl_store_job_id_valid(j.id)) {
        rc = bad_reply("job id", err);
        goto cleanup;
    }
    if (j.parameters == NULL && (j.parameters = strdup("{}")) == NULL) {
        rc = KL_STORE_FAIL(err, KL_ERR_NOMEM, "redis: out of memory");
        goto cleanup;
    }
    if ((rc = parse_tables(trio->element[1], &j, err)) != KL_OK ||
        (rc = parse_shards(trio->element[2], &j, err)) != KL_OK)
        goto cleanup;
    kl_store_job_sort(&j);
    kl_store_job_free(out);
    *out = j;
    kl_store_job_init(&j);
cleanup:
    kl_store_job_free(&j);
    return rc;
}

/* ---- operations ---- */

static int64_t wall(struct rstore *r)
{
    return kl_clock_wall_ms(r->clock);
}

static const char *impl_name(void *impl)
{
    (void)impl;
    return "redis";
}

static int impl_ping(void *impl, struct kl_err *err)
{
    struct rstore *r = impl;
    struct args a;
    redisReply *reply = NULL;
    int rc = args_init(&a, 1, err);
    if (rc != KL_OK)
        goto cleanup;
    arg_str(&a, "PING");
    if ((rc = command(r, &a, 0, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type == REDIS_REPLY_ERROR)
        rc = map_error_reply("PING", reply->str, err);
    else if (reply->type != REDIS_REPLY_STATUS)
        rc = bad_reply("PING", err);
cleanup:
    freeReplyObject(reply);
    args_free(&a);
    return rc;
}

static int impl_job_create(void *impl, const struct kl_store_job_new *n,
                           char id_out[KL_STORE_JOB_ID_SIZE], bool *existing, struct kl_err *err)
{
    struct rstore *r = impl;
    char id[KL_STORE_JOB_ID_SIZE];
    int64_t now = wall(r);
    redisReply *reply = NULL;
    struct args a;
    size_t len;
    const char *got;
    int rc;

    if ((rc = script_args(r, &a, 8, err)) != KL_OK)
        goto cleanup;
    if ((rc = kl_store_new_job_id(now, id, err)) != KL_OK)
        goto cleanup;
    arg_str(&a, id);
    arg_str(&a, n->stream);
    arg_str(&a, n->pipeline_name);
    arg_str(&a, n->dataset_name);
    arg_str(&a, n->parameters_json != NULL ? n->parameters_json : "{}");
    arg_i64(&a, now);
    arg_str(&a, n->idempotency_key);
    arg_i64(&a, r->idem_ttl_ms);
    if ((rc = script(r, KL_RS_JOB_CREATE, &a, &reply, err)) != KL_OK)
        goto cleanup;
    got = el_str(reply, 1, &len);
    if (got == NULL || len != KL_STORE_JOB_ID_LEN) {
        rc = bad_reply("job_create", err);
        goto cleanup;
    }
    memcpy(id_out, got, len);
    id_out[len] = '\0';
    if (el_is(reply, 0, "conflict")) {
        size_t sl;
        const char *st = el_str(reply, 2, &sl);
        rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "job %s of stream %s and pipeline %s is %.*s",
                           id_out, n->stream, n->pipeline_name, st != NULL ? (int)sl : 6,
                           st != NULL ? st : "active");
        goto cleanup;
    }
    *existing = el_is(reply, 0, "existing");
cleanup:
    freeReplyObject(reply);
    args_free(&a);
    return rc;
}

/* GET /jobs/{id} is the hottest read: three HGETALLs in one MULTI/EXEC,
 * atomic like a script but without running Lua, which costs Redis more than
 * the reads themselves. */
static int impl_job_get(void *impl, const char *id, struct kl_store_job *out, struct kl_err *err)
{
    struct rstore *r = impl;
    static const char *const suffix[3] = {"", ":rows", ":shards"};
    char keys[3][KL_STORE_PREFIX_MAX + KL_STORE_JOB_ID_SIZE + 16];
    const char *argv[3][2];
    size_t len[3][2];
    struct args cmds[3];
    redisReply *reply = NULL;
    int rc;

    for (size_t i = 0; i < 3; i++) {
        int n = snprintf(keys[i], sizeof keys[i], "%sjob:%s%s", r->prefix, id, suffix[i]);
        argv[i][0] = "HGETALL";
        argv[i][1] = keys[i];
        len[i][0] = 7;
        len[i][1] = (size_t)n;
        cmds[i] = (struct args){.n = 2, .cap = 2, .v = argv[i], .len = len[i]};
    }
    rc = transaction(r, cmds, 3, &reply, err);
    if (rc != KL_OK)
        return rc;
    if (reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements == 0)
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", id);
    else
        rc = parse_job(reply, out, err);
    freeReplyObject(reply);
    return rc;
}

static int impl_job_list(void *impl, const struct kl_store_job_filter *f,
                         struct kl_store_job_page *out, struct kl_err *err)
{
    struct rstore *r = impl;
    struct kl_store_job_page page = {0};
    redisReply *reply = NULL;
    struct args a;
    size_t len;
    const char *next;
    int rc;

    if ((rc = script_args(r, &a, 5, err)) != KL_OK)
        goto cleanup;
    arg_str(&a, f->stream);
    arg_str(&a, f->has_status ? kl_store_job_status_name(f->status) : "");
    arg_str(&a, f->cursor);
    arg_i64(&a, f->limit);
    arg_i64(&a, LIST_SCAN_CAP);
    if ((rc = script(r, KL_RS_JOB_LIST, &a, &reply, err)) != KL_OK)
        goto cleanup;
    next = el_str(reply, 0, &len);
    if (next == NULL || reply->elements - 1 > (size_t)f->limit ||
        !copy_n(page.next_cursor, sizeof page.next_cursor, next, len)) {
        rc = bad_reply("job_list", err);
        goto cleanup;
    }
    if (reply->elements > 1) {
        page.jobs = calloc(reply->elements - 1, sizeof *page.jobs);
        if (page.jobs == NULL) {
            rc = KL_STORE_FAIL(err, KL_ERR_NOMEM, "redis: out of memory");
            goto cleanup;
        }
    }
    for (size_t i = 1; i < reply->elements; i++) {
        kl_store_job_init(&page.jobs[page.n_jobs]);
        if ((rc = parse_job(reply->element[i], &page.jobs[page.n_jobs], err)) != KL_OK)
            goto cleanup;
        page.n_jobs++;
    }
    kl_store_job_page_free(out);
    *out = page;
    memset(&page, 0, sizeof page);
cleanup:
    kl_store_job_page_free(&page);
    freeReplyObject(reply);
    args_free(&a);
    return rc;
}

static int impl_job_status(void *impl, const char *id, enum kl_store_job_status *status,
                           bool *cancel_requested, struct kl_err *err)
{
    struct rstore *r = impl;
    char key[KEY_BUF], st[16];
    redisReply *reply = NULL;
    struct args a;
    size_t len;
    const char *v;
    int rc;

    if ((rc = args_init(&a, 4, err)) != KL_OK)
        goto cleanup;
    snprintf(key, sizeof key, "%sjob:%s", r->prefix, id);
    arg_str(&a, "HMGET");
    arg_str(&a, key);
    arg_str(&a, "status");
    arg_str(&a, "cancel");
    if ((rc = command(r, &a, 0, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type == REDIS_REPLY_ERROR) {
        rc = map_error_reply("HMGET", reply->str, err);
        goto cleanup;
    }
    v = el_str(reply, 0, &len);
    if (v == NULL) {
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", id);
        goto cleanup;
    }
    if (!copy_n(st, sizeof st, v, len) || kl_store_job_status_parse(st, status) != 0) {
        rc = bad_reply("job status", err);
        goto cleanup;
    }
    *cancel_requested = el_is(reply, 1, "1");
cleanup:
    freeReplyObject(reply);
    args_free(&a);
    return rc;
}

static int impl_job_active(void *impl, const char *pipeline, const char *stream,
                           char id_out[KL_STORE_JOB_ID_SIZE], bool *found, struct kl_err *err)
{
    struct rstore *r = impl;
    redisReply *reply = NULL;
    struct args a;
    int rc;

    if ((rc = script_args(r, &a, 2, err)) != KL_OK)
        goto cleanup;
    arg_str(&a, pipeline);
    arg_str(&a, stream);
    if ((rc = script(r, KL_RS_JOB_ACTIVE, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type == REDIS_REPLY_NIL) {
        *found = false;
    } else if (reply->type == REDIS_REPLY_STRING && reply->len == KL_STORE_JOB_ID_LEN) {
        memcpy(id_out, reply->str, reply->len);
        id_out[reply->len] = '\0';
        *found = true;
    } else {
        rc = bad_reply("job_active", err);
    }
cleanup:
    freeReplyObject(reply);
    args_free(&a);
    return rc;
}

/* A transition or, with to = NULL, a cancel. */
static int transition(struct rstore *r, const char *id, const char *to,
                      const struct kl_store_job_error *e, enum kl_store_job_status *now,
                      struct kl_err *err)
{
    redisReply *reply = NULL;
    struct args a;
    char st[16];
    size_t len;
    const char *v;
    enum kl_store_job_status status;
    int rc;

    if ((rc = script_args(r, &a, 7, err)) != KL_OK)
        goto cleanup;
    arg_str(&a, id);
    arg_str(&a, to != NULL ? to : "cancel");
    arg_i64(&a, wall(r));
    arg_i64(&a, r->retention_ms);
    if (e != NULL) {
        size_t dn = e->detail != NULL ? strnlen(e->detail, KL_STORE_ERROR_MAX - 1) : 0;
        arg_str(&a, e->type != NULL ? e->type : "internal");
        arg_mem(&a, e->detail != NULL ? e->detail : "", dn);
        arg_str(&a, e->shard_id);
    } else {
        arg_str(&a, "");
        arg_str(&a, "");
        arg_str(&a, "");
    }
    if ((rc = script(r, KL_RS_JOB_TRANSITION, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (el_is(reply, 0, "missing")) {
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", id);
        goto cleanup;
    }
    v = el_str(reply, 1, &len);
    if (v == NULL || !copy_n(st, sizeof st, v, len) ||
        kl_store_job_status_parse(st, &status) != 0) {
        rc = bad_reply("job_transition", err);
        goto cleanup;
    }
    *now = status;
    if (el_is(reply, 0, "conflict")) {
        if (to != NULL)
            rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "job %s is %s: it cannot become %s", id, st,
                               to);
        else
            rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "job %s already %s", id, st);
    }
cleanup:
    freeReplyObject(reply);
    args_free(&a);
    return rc;
}

static int impl_job_transition(void *impl, const char *id, enum kl_store_job_status to,
                               const struct kl_store_job_error *e, enum kl_store_job_status *now,
                               struct kl_err *err)
{
    return transition(impl, id, kl_store_job_status_name(to), e, now, err);
}

static int impl_job_cancel(void *impl, const char *id, enum kl_store_job_status *now,
                           struct kl_err *err)
{
    return transition(impl, id, NULL, NULL, now, err);
}

static int impl_job_progress(void *impl, const char *id, const struct kl_store_progress *p,
                             bool *applied, struct kl_err *err)
{
    struct rstore *r = impl;
    redisReply *reply = NULL;
    struct args a;
    int rc;

    if ((rc = script_args(r, &a, 16 + 2 * p->n_tables, err)) != KL_OK)
        goto cleanup;
    arg_str(&a, id);
    arg_str(&a, p->shard_id);
    arg_str(&a, p->sequence);
    arg_i64(&a, p->sequence != NULL ? p->sub_sequence : -1);
    arg_i64(&a, p->millis_behind_latest >= 0 ? p->millis_behind_latest : -1);
    arg_i64(&a, p->messages);
    arg_i64(&a, p->dead_letters);
    arg_str(&a, p->done ? "1" : "0");
    if (p->gap != NULL) {
        arg_str(&a, p->gap->from_sequence);
        arg_str(&a, p->gap->to_sequence);
        arg_mem(&a, p->gap->reason, strnlen(p->gap->reason, sizeof p->gap->reason));
    } else {
        arg_str(&a, "");
        arg_str(&a, "");
        arg_str(&a, "");
    }
    /* waiting: "" unchanged, "-" cleared, else the operation */
    arg_str(&a, p->waiting_on == NULL ? "" : p->waiting_on[0] ? p->waiting_on : "-");
    arg_i64(&a, p->waiting_since_ms);
    arg_i64(&a, p->waiting_until_ms);
    arg_mem(&a, p->waiting_why ? p->waiting_why : "",
            p->waiting_why ? strnlen(p->waiting_why, KL_STORE_WAIT_WHY_MAX - 1) : 0);
    arg_i64(&a, p->released);
    for (size_t i = 0; i < p->n_tables; i++) {
        arg_str(&a, p->tables[i].table);
        arg_i64(&a, p->tables[i].rows);
    }
    if ((rc = script(r, KL_RS_JOB_PROGRESS, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type != REDIS_REPLY_INTEGER)
        rc = bad_reply("job_progress", err);
    else if (reply->integer < 0)
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", id);
    else
        *applied = reply->integer == 1;
cleanup:
    freeReplyObject(reply);
    args_free(&a);
    return rc;
}

/* ---- the message budget ---- */

static int impl_budget_reserve(void *impl, const char *job_id, const char *shard_id,
                               int64_t max_messages, int64_t want, int64_t *granted,
                               struct kl_err *err)
{
    struct rstore *r = impl;
    redisReply *reply = NULL;
    struct args a;
    int rc;

    if ((rc = script_args(r, &a, 4, err)) != KL_OK)
        goto cleanup;
    arg_str(&a, job_id);
    arg_str(&a, shard_id);
    arg_i64(&a, max_messages);
    arg_i64(&a, want);
    if ((rc = script(r, KL_RS_BUDGET_RESERVE, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type != REDIS_REPLY_INTEGER)
        rc = bad_reply("budget_reserve", err);
    else if (reply->integer < 0)
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", job_id);
    else
        *granted = reply->integer;
cleanup:
    freeReplyObject(reply);
    args_free(&a);
    return rc;
}

static int impl_budget_release(void *impl, const char *job_id, const char *shard_id, int64_t n,
                               struct kl_err *err)
{
    struct rstore *r = impl;
    redisReply *reply = NULL;
    struct args a;
    int rc;

    if ((rc = script_args(r, &a, 3, err)) != KL_OK)
        goto cleanup;
    arg_str(&a, job_id);
    arg_str(&a, shard_id);
    arg_i64(&a, n);
    if ((rc = script(r, KL_RS_BUDGET_RELEASE, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type != REDIS_REPLY_INTEGER)
        rc = bad_reply("budget_release", err);
    else if (reply->integer < 0)
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", job_id);
cleanup:
    freeReplyObject(reply);
    args_free(&a);
    return rc;
}

/* ---- tasks ---- */

static int impl_task_enqueue(void *impl, const char *job_id, const char *shard_id, const char *meta,
                             int64_t delay_ms, bool *created, struct kl_err *err)
{
    struct rstore *r = impl;
    redisReply *reply = NULL;
    struct args a;
    int rc;

    if ((rc = script_args(r, &a, 4, err)) != KL_OK)
        goto cleanup;
    arg_str(&a, job_id);
    arg_str(&a, shard_id);
    arg_str(&a, meta);
    arg_i64(&a, delay_ms);
    if ((rc = script(r, KL_RS_TASK_ENQUEUE, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_STATUS)
        rc = bad_reply("task_enqueue", err);
    else if (strcmp(reply->str, "missing") == 0)
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", job_id);
    else if (strcmp(reply->str, "final") == 0)
        rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "job %s is finished: no new tasks", job_id);
    else
        *created = strcmp(reply->str, "created") == 0;
cleanup:
    freeReplyObject(reply);
    args_free(&a);
    return rc;
}

/* One non-blocking take (pop = true) or reap (pop = false). */
static int take_once(struct rstore *r, const char *owner, int64_t lease_ms, bool pop,
                     struct kl_store_task *out, bool *got, int64_t *requeued, struct kl_err *err)
{
    redisReply *reply = NULL;
    struct kl_store_task t;
    struct args a;
    size_t n;
    const char *s;
    int rc;

    if ((rc = script_args(r, &a, 3, err)) != KL_OK)
        goto cleanup;
    arg_str(&a, owner);
    arg_i64(&a, lease_ms);
    arg_str(&a, pop ? "1" : "0");
    if ((rc = script(r, KL_RS_TASK_TAKE, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (!pop) {
        if (reply->type != REDIS_REPLY_INTEGER)
            rc = bad_reply("task_take", err);
        else
            *requeued = reply->integer;
        goto cleanup;
    }
    if (reply->type == REDIS_REPLY_NIL) {
        *got = false;
        goto cleanup;
    }
    memset(&t, 0, sizeof t);
    s = el_str(reply, 0, &n);
    if (!copy_n(t.job_id, sizeof t.job_id, s, n)) {
        rc = bad_reply("task_take", err);
        goto cleanup;
    }
    s = el_str(reply, 1, &n);
    if (!copy_n(t.shard_id, sizeof t.shard_id, s, n)) {
        rc = bad_reply("task_take", err);
        goto cleanup;
    }
    t.attempt = (int)el_i64(reply, 2, 0);
    t.delivery = el_i64(reply, 3, 0);
    s = el_str(reply, 4, &n);
    copy_n(t.meta, sizeof t.meta, s != NULL ? s : "", s != NULL ? n : 0);
    *out = t;
    *got = true;
cleanup:
    freeReplyObject(reply);
    args_free(&a);
    return rc;
}

/* Waits up to ms for an enqueue's wake-up token. */
static int wait_wake(struct rstore *r, int64_t ms, struct kl_err *err)
{
    char key[KEY_BUF], secs[32];
    redisReply *reply = NULL;
    struct args a;
    int rc;

    if ((rc = args_init(&a, 3, err)) != KL_OK)
        goto cleanup;
    snprintf(key, sizeof key, "%sq:wake", r->prefix);
    snprintf(secs, sizeof secs, "%lld.%03lld", (long long)(ms / 1000), (long long)(ms % 1000));
    arg_str(&a, "BLPOP");
    arg_str(&a, key);
    arg_str(&a, secs);
    if ((rc = command(r, &a, ms, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type == REDIS_REPLY_ERROR)
        rc = map_error_reply("BLPOP", reply->str, err);
cleanup:
    freeReplyObject(reply);
    args_free(&a);
    return rc;
}

static int impl_task_take(void *impl, const char *owner, int64_t lease_ms, int64_t timeout_ms,
                          struct kl_store_task *out, bool *got, struct kl_err *err)
{
    struct rstore *r = impl;
    int64_t deadline = real_ms() + timeout_ms;
    int rc;

    for (;;) {
        int64_t left;
        bool taken = false;
        int64_t none = 0;
        rc = take_once(r, owner, lease_ms, true, out, &taken, &none, err);
        if (rc != KL_OK || taken) {
            *got = taken;
            return rc;
        }
        left = deadline - real_ms();
        if (left <= 0) {
            *got = false;
            return KL_OK;
        }
        if ((rc = wait_wake(r, left < r->poll_ms ? left : r->poll_ms, err)) != KL_OK)
            return rc;
    }
}

/* Runs a task script that answers 1 (done) or 0 (this delivery is not held). */
static int task_call(struct rstore *r, enum kl_redis_script id, const struct kl_store_task *t,
                     int64_t ms, struct kl_err *err)
{
    redisReply *reply = NULL;
    struct args a;
    int rc;

    if ((rc = script_args(r, &a, 4, err)) != KL_OK)
        goto cleanup;
    arg_str(&a, t->job_id);
    arg_str(&a, t->shard_id);
    arg_i64(&a, t->delivery);
    arg_i64(&a, ms);
    if ((rc = script(r, id, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type != REDIS_REPLY_INTEGER)
        rc = bad_reply(kl_redis_script_name[id], err);
    else if (reply->integer != 1)
        rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT,
                           "task %s/%s delivery %lld is no longer held (taken over or finished)",
                           t->job_id, t->shard_id, (long long)t->delivery);
cleanup:
    freeReplyObject(reply);
    args_free(&a);
    return rc;
}

static int impl_task_heartbeat(void *impl, const struct kl_store_task *t, int64_t lease_ms,
                               struct kl_err *err)
{
    return task_call(impl, KL_RS_TASK_HEARTBEAT, t, lease_ms, err);
}

static int impl_task_release(void *impl, const struct kl_store_task *t, int64_t delay_ms,
                             struct kl_err *err)
{
    return task_call(impl, KL_RS_TASK_RELEASE, t, delay_ms, err);
}

static int impl_task_nack(void *impl, const struct kl_store_task *t, int64_t delay_ms,
                          struct kl_err *err)
{
    return task_call(impl, KL_RS_TASK_NACK, t, delay_ms, err);
}

static int impl_task_ack(void *impl, const struct kl_store_task *t, struct kl_store_task_ack *out,
                         struct kl_err *err)
{
    struct rstore *r = impl;
    redisReply *reply = NULL;
    struct args a;
    int rc;

    if ((rc = script_args(r, &a, 3, err)) != KL_OK)
        goto cleanup;
    arg_str(&a, t->job_id);
    arg_str(&a, t->shard_id);
    arg_i64(&a, t->delivery);
    if ((rc = script(r, KL_RS_TASK_ACK, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type == REDIS_REPLY_NIL) {
        rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT,
                           "task %s/%s delivery %lld is no longer held (taken over or lost)",
                           t->job_id, t->shard_id, (long long)t->delivery);
        goto cleanup;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        rc = bad_reply("task_ack", err);
        goto cleanup;
    }
    out->tasks_done = el_i64(reply, 0, 0);
    out->tasks_total = el_i64(reply, 1, 0);
    out->last = out->tasks_done == out->tasks_total;
cleanup:
    freeReplyObject(reply);
    args_free(&a);
    return rc;
}

static int impl_stats(void *impl, struct kl_store_stats *out, struct kl_err *err)
{
    struct rstore *r = impl;
    redisReply *reply = NULL;
    struct args a;
    int rc;

    if ((rc = script_args(r, &a, 0, err)) != KL_OK)
        goto cleanup;
    if ((rc = script(r, KL_RS_STATS, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 + KL_STORE_JOB_STATUSES) {
        rc = bad_reply("stats", err);
        goto cleanup;
    }
    out->queued = el_i64(reply, 0, 0);
    out->in_flight = el_i64(reply, 1, 0);
    out->delayed = el_i64(reply, 2, 0);
    for (int s = 0; s < KL_STORE_JOB_STATUSES; s++)
        out->jobs[s] = el_i64(reply, (size_t)(3 + s), 0);
cleanup:
    freeReplyObject(reply);
    args_free(&a);
    return rc;
}

/* ---- leases ---- */

static int lease_args(struct rstore *r, struct args *a, const struct kl_store_shard_key *k,
                      size_t extra, struct kl_err *err)
{
    int rc = script_args(r, a, 3 + extra, err);
    if (rc != KL_OK)
        return rc;
    arg_str(a, k->pipeline);
    arg_str(a, k->stream);
    arg_str(a, k->shard_id);
    return KL_OK;
}

static int impl_lease_take(void *impl, const struct kl_store_shard_key *k, const char *owner,
                           int64_t ttl_ms, int64_t min_token, int64_t *token, struct kl_err *err)
{
    struct rstore *r = impl;
    redisReply *reply = NULL;
    struct args a;
    int64_t t;
    int rc;

    if ((rc = lease_args(r, &a, k, 3, err)) != KL_OK)
        goto cleanup;
    arg_str(&a, owner);
    arg_i64(&a, ttl_ms);
    arg_i64(&a, min_token);
    if ((rc = script(r, KL_RS_LEASE_TAKE, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (el_is(reply, 0, "held")) {
        size_t n;
        const char *who = el_str(reply, 1, &n);
        rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "shard %s is leased by %.*s for %lld ms more",
                           k->shard_id, who != NULL ? (int)(n > 128 ? 128 : n) : 1,
                           who != NULL ? who : "?", (long long)el_i64(reply, 2, 0));
        goto cleanup;
    }
    t = el_i64(reply, 1, -1);
    if (!el_is(reply, 0, "ok") || t < 1) {
        rc = bad_reply("lease_take", err);
        goto cleanup;
    }
    *token = t;
cleanup:
    freeReplyObject(reply);
    args_free(&a);
    return rc;
}

static int impl_lease_renew(void *impl, const struct kl_store_shard_key *k, const char *owner,
                            int64_t token, int64_t ttl_ms, struct kl_err *err)
{
    struct rstore *r = impl;
    redisReply *reply = NULL;
    struct args a;
    int rc;

    if ((rc = lease_args(r, &a, k, 3, err)) != KL_OK)
        goto cleanup;
    arg_str(&a, owner);
    arg_i64(&a, token);
    arg_i64(&a, ttl_ms);
    if ((rc = script(r, KL_RS_LEASE_RENEW, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type != REDIS_REPLY_INTEGER)
        rc = bad_reply("lease_renew", err);
    else if (reply->integer != 1)
        rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "lease of shard %s with token %lld is lost",
                           k->shard_id, (long long)token);
cleanup:
    freeReplyObject(reply);
    args_free(&a);
    return rc;
}

static int impl_lease_release(void *impl, const struct kl_store_shard_key *k, const char *owner,
                              int64_t token, struct kl_err *err)
{
    struct rstore *r = impl;
    redisReply *reply = NULL;
    struct args a;
    int rc;

    if ((rc = lease_args(r, &a, k, 2, err)) != KL_OK)
        goto cleanup;
    arg_str(&a, owner);
    arg_i64(&a, token);
    if ((rc = script(r, KL_RS_LEASE_RELEASE, &a, &reply, err)) != KL_OK)
        goto cleanup;
    if (reply->type == REDIS_REPLY_ARRAY) {
        size_t n;
        const char *holder = el_str(reply, 0, &n);
        rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "shard %s is leased by %.*s (token owner)",
                           k->shard_id, holder != NULL ? (int)(n > 160 ? 160 : n) : 1,
                           holder != NULL ? holder : "?");
    } else if (reply->type != REDIS_REPLY_INTEGER) {
        rc = bad_reply("lease_release", err);
    }
cleanup:
    freeReplyObject(reply);
    args_free(&a);
    return rc;
}

/* ---- lifecycle ---- */

static void impl_destroy(void *impl)
{
    struct rstore *r = impl;
    if (r == NULL)
        return;
    for (int i = 0; i < r->n_idle; i++)
        redisFree(r->idle[i]);
    free(r->idle);
    kl_redis_url_free(&r->url);
    /* Nothing waits on them any more: destroying cannot fail. */
    (void)pthread_cond_destroy(&r->cv);
    (void)pthread_mutex_destroy(&r->mu);
    free(r);
}

static const struct kl_store_ops redis_ops = {
    .name = impl_name,
    .ping = impl_ping,
    .job_create = impl_job_create,
    .job_get = impl_job_get,
    .job_list = impl_job_list,
    .job_status = impl_job_status,
    .job_active = impl_job_active,
    .job_transition = impl_job_transition,
    .job_cancel = impl_job_cancel,
    .job_progress = impl_job_progress,
    .budget_reserve = impl_budget_reserve,
    .budget_release = impl_budget_release,
    .task_enqueue = impl_task_enqueue,
    .task_take = impl_task_take,
    .task_heartbeat = impl_task_heartbeat,
    .task_ack = impl_task_ack,
    .task_nack = impl_task_nack,
    .task_release = impl_task_release,
    .stats = impl_stats,
    .lease_take = impl_lease_take,
    .lease_renew = impl_lease_renew,
    .lease_release = impl_lease_release,
    .destroy = impl_destroy,
};

static int sha1_hex(const char *text, char out[41], struct kl_err *err)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(text, strlen(text), md, &n, EVP_sha1(), NULL) != 1 || n != 20)
        return KL_STORE_FAIL(err, KL_ERR_INTERNAL, "redis: SHA-1 of a script failed");
    for (unsigned int i = 0; i < n; i++)
        snprintf(out + (size_t)2 * i, 3, "%02x", md[i]);
    return KL_OK;
}

static int ignore_sigpipe(struct kl_err *err)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) != 0)
        return KL_STORE_FAIL(err, KL_ERR_INTERNAL, "redis: cannot read the SIGPIPE disposition");
    if (sa.sa_handler != SIG_DFL || (sa.sa_flags & SA_SIGINFO) != 0)
        return KL_OK;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    if (sigemptyset(&sa.sa_mask) != 0 || sigaction(SIGPIPE, &sa, NULL) != 0)
        return KL_STORE_FAIL(err, KL_ERR_INTERNAL, "redis: cannot ignore SIGPIPE");
    return KL_OK;
}

struct kl_store *kl_store_redis_create(const char *url, const struct kl_store_options *o,
                                       struct kl_err *err)
{
    struct kl_store_options defaults;
    struct kl_store *s = NULL;
    struct rstore *r = NULL;
    pthread_condattr_t attr;
    bool mutex_ok = false, cond_ok = false;

    if (o == NULL) {
        kl_store_options_init(&defaults);
        o = &defaults;
    }
    if (o->key_prefix == NULL || o->key_prefix[0] == '\0' ||
        strlen(o->key_prefix) >= KL_STORE_PREFIX_MAX || o->job_retention_ms <= 0 ||
        o->idempotency_ttl_ms <= 0 || o->connect_timeout_ms <= 0 || o->command_timeout_ms <= 0 ||
        o->pool_max < 1 || o->pool_max > 4096 || o->poll_ms <= 0 ||
        o->backoff_max_ms < BACKOFF_MIN_MS) {
        kl_err_set(err, KL_ERR_INVALID,
                   "redis store: invalid options (prefix 1..%d bytes, "
                   "positive timeouts, pool 1..4096, backoff >= %d ms)",
                   KL_STORE_PREFIX_MAX - 1, BACKOFF_MIN_MS);
        goto fail;
    }
    s = calloc(1, sizeof *s);
    r = calloc(1, sizeof *r);
    if (s == NULL || r == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "redis store: out of memory");
        goto fail;
    }
    if (kl_redis_url_parse(url, &r->url, err) != KL_OK)
        goto fail;
    kl_redis_url_redacted(&r->url, r->where, sizeof r->where);
    if (ignore_sigpipe(err) != KL_OK)
        goto fail;
    for (int i = 0; i < KL_RS_COUNT; i++) {
        if (sha1_hex(kl_redis_script_source[i], r->sha[i], err) != KL_OK)
            goto fail;
    }
    r->idle = calloc((size_t)o->pool_max, sizeof(redisContext *));
    if (r->idle == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "redis store: out of memory");
        goto fail;
    }
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        kl_err_set(err, KL_ERR_INTERNAL, "redis store: mutex init failed");
        goto fail;
    }
    mutex_ok = true;
    if (pthread_condattr_init(&attr) != 0) {
        kl_err_set(err, KL_ERR_INTERNAL, "redis store: condattr init failed");
        goto fail;
    }
    if (pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 &&
        pthread_cond_init(&r->cv, &attr) == 0)
        cond_ok = true;
    (void)pthread_condattr_destroy(&attr);
    if (!cond_ok) {
        kl_err_set(err, KL_ERR_INTERNAL, "redis store: condition variable init failed");
        goto fail;
    }
    kl_store_copy(r->prefix, sizeof r->prefix, o->key_prefix);
    r->clock = o->clock != NULL ? o->clock : kl_clock_system();
    r->retention_ms = o->job_retention_ms;
    r->idem_ttl_ms = o->idempotency_ttl_ms;
    r->connect_timeout_ms = o->connect_timeout_ms;
    r->command_timeout_ms = o->command_timeout_ms;
    r->poll_ms = o->poll_ms;
    r->backoff_max_ms = o->backoff_max_ms;
    r->pool_max = o->pool_max;
    s->ops = &redis_ops;
    s->impl = r;
    return s;
fail:
    if (r != NULL) {
        if (mutex_ok)
            (void)pthread_mutex_destroy(&r->mu);
        free(r->idle);
        kl_redis_url_free(&r->url);
    }
    free(r);
    free(s);
    return NULL;
}
