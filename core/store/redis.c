/*
 * The Redis state store (redis.h): a connection pool, the command and
 * script runner (EVALSHA, EVAL when Redis answers NOSCRIPT) and the store's
 * life cycle and ops table. The operations are in redis_jobs.c and
 * redis_tasks.c, reply parsing in redis_reply.c; the rules themselves live
 * in the scripts (redis_scripts.c). Not here: URL parsing (redis_url.c).
 */
#include "core/store/redis.h"
#include "core/store/redis_internal.h"
#include "core/store/internal.h"
#include "core/util/clock.h"
#include "core/util/err.h"
#include "core/util/log.h"
#include "core/util/rand.h"

#include <errno.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- time ---- */

int64_t kl_rs_real_ms(void)
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

int kl_rs_map_error_reply(const char *what, const char *msg, struct kl_err *err)
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
        rc = kl_rs_map_error_reply(what, reply->str, err);
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
    int64_t give_up = kl_rs_real_ms() + r->command_timeout_ms;
    redisContext *c = NULL;
    int rc;

    pool_lock(r);
    for (;;) {
        int64_t now = kl_rs_real_ms();
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
            r->retry_at = kl_rs_real_ms() + r->backoff * 3 / 4 +
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

int kl_rs_args_init(struct args *a, size_t cap, struct kl_err *err)
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

void kl_rs_args_free(struct args *a)
{
    free(a->v);
    free(a->len);
    free(a->num);
    memset(a, 0, sizeof *a);
}

void kl_rs_arg_mem(struct args *a, const char *s, size_t n)
{
    if (a->n >= a->cap)
        abort(); /* the caller sized the array: a bug */
    a->v[a->n] = s;
    a->len[a->n++] = n;
}

void kl_rs_arg_str(struct args *a, const char *s)
{
    kl_rs_arg_mem(a, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

void kl_rs_arg_i64(struct args *a, int64_t v)
{
    int n;
    if (a->n >= a->cap)
        abort();
    n = snprintf(a->num[a->n], sizeof a->num[0], "%lld", (long long)v);
    kl_rs_arg_mem(a, a->num[a->n], (size_t)n);
}

/* Runs a command. On KL_OK `*out` is the reply (never NULL; it may be an
 * error reply, which the caller maps). `block_ms` > 0: the command may
 * legitimately block that long (BLPOP). A failure on a connection that sat
 * idle in the pool is retried once on a fresh connection. */
int kl_rs_command(struct rstore *r, const struct args *a, int64_t block_ms, redisReply **out,
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

/* Runs `n` commands as one MULTI/EXEC, sent together: one round trip. On
 * KL_OK `*out` is EXEC's reply, an array of the n replies. A failure on a
 * connection that sat idle in the pool is retried once on a fresh one. */
int kl_rs_transaction(struct rstore *r, const struct args *cmds, size_t n, redisReply **out,
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
            rc = kl_rs_map_error_reply("transaction", reply->str, err);
            freeReplyObject(reply);
            return rc != KL_OK ? rc : KL_ERR_INTERNAL;
        }
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != n) {
            freeReplyObject(reply);
            return kl_rs_bad_reply("transaction", err);
        }
        *out = reply;
        return KL_OK;
    }
}

/* Starts a script call's arguments: the reserved EVALSHA head and ARGV[1] = prefix. */
int kl_rs_script_args(struct rstore *r, struct args *a, size_t n_argv, struct kl_err *err)
{
    int rc = kl_rs_args_init(a, 4 + n_argv, err);
    if (rc != KL_OK)
        return rc;
    kl_rs_arg_str(a, "EVALSHA");
    kl_rs_arg_str(a, "");
    kl_rs_arg_str(a, "0");
    kl_rs_arg_str(a, r->prefix);
    return KL_OK;
}

static bool is_noscript(const redisReply *reply)
{
    return reply != NULL && reply->type == REDIS_REPLY_ERROR &&
           strncmp(reply->str, "NOSCRIPT", 8) == 0;
}

/* Runs a script; on KL_OK `*out` is its (non-error) reply. */
int kl_rs_script(struct rstore *r, enum kl_redis_script id, struct args *a, redisReply **out,
                 struct kl_err *err)
{
    redisReply *reply = NULL;
    int rc;

    a->v[0] = "EVALSHA";
    a->len[0] = 7;
    a->v[1] = r->sha[id];
    a->len[1] = 40;
    rc = kl_rs_command(r, a, 0, &reply, err);
    if (rc == KL_OK && is_noscript(reply)) {
        /* Redis does not know the script yet (first use, or it restarted): send it whole. */
        freeReplyObject(reply);
        reply = NULL;
        a->v[0] = "EVAL";
        a->len[0] = 4;
        a->v[1] = kl_redis_script_source[id];
        a->len[1] = strlen(kl_redis_script_source[id]);
        rc = kl_rs_command(r, a, 0, &reply, err);
    }
    if (rc != KL_OK)
        goto cleanup;
    if (reply == NULL) {
        rc = KL_STORE_FAIL(err, KL_ERR_INTERNAL, "redis %s: no reply", kl_redis_script_name[id]);
        goto cleanup;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        rc = kl_rs_map_error_reply(kl_redis_script_name[id], reply->str, err);
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
    .name = kl_rs_name,
    .ping = kl_rs_ping,
    .job_create = kl_rs_job_create,
    .job_get = kl_rs_job_get,
    .job_list = kl_rs_job_list,
    .job_status = kl_rs_job_status,
    .job_active = kl_rs_job_active,
    .job_transition = kl_rs_job_transition,
    .job_cancel = kl_rs_job_cancel,
    .job_progress = kl_rs_job_progress,
    .budget_reserve = kl_rs_budget_reserve,
    .budget_release = kl_rs_budget_release,
    .task_enqueue = kl_rs_task_enqueue,
    .task_take = kl_rs_task_take,
    .task_heartbeat = kl_rs_task_heartbeat,
    .task_ack = kl_rs_task_ack,
    .task_nack = kl_rs_task_nack,
    .task_release = kl_rs_task_release,
    .stats = kl_rs_stats,
    .lease_take = kl_rs_lease_take,
    .lease_renew = kl_rs_lease_renew,
    .lease_release = kl_rs_lease_release,
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
