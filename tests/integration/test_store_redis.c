/*
 * Integration: the Redis state store against the local Redis
 * (KL_TEST_REDIS_URL from scripts/services.sh). The behaviour suite shared
 * with the in-process store runs first, each test under its own key prefix
 * "kltest:store-<pid>-<n>:" (removed at the end), then what only a real
 * server shows: a worker process killed mid-task, Redis unreachable,
 * restarted (its data gone: it runs without persistence) and flushed,
 * credentials kept secret, and throughput.
 */
#include "tests/unit/test_store_suite.h"
#include "core/store/redis.h"
#include "core/util/log.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

static char last_prefix[128];

static struct kl_store *redis_open_url(const char *url, struct kl_store_options *o)
{
    struct kl_err err = {0};
    struct kl_store *s;
    snprintf(last_prefix, sizeof last_prefix, "kltest:%s:", kl_test_unique("store"));
    o->key_prefix = last_prefix;
    s = kl_store_redis_create(url, o, &err);
    if (s == NULL)
        fail_msg("kl_store_redis_create: %s", err.msg);
    return s;
}

static struct kl_store *redis_open(struct kl_store_options *o)
{
    return redis_open_url(kl_test_require_env("KL_TEST_REDIS_URL"), o);
}

static void redis_advance(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static const struct store_backend BACKEND = {"redis", redis_open, redis_advance, 300};

static int64_t now_ms(void)
{
    return kl_clock_monotonic_ms(kl_clock_system());
}

/* A plain hiredis connection for looking behind the store's back. */
static redisContext *raw_connect(void)
{
    struct kl_redis_url u;
    struct kl_err err = {0};
    redisContext *c;
    memset(&u, 0, sizeof u);
    if (kl_redis_url_parse(kl_test_require_env("KL_TEST_REDIS_URL"), &u, &err) != KL_OK)
        fail_msg("%s", err.msg);
    c = redisConnect(u.host, u.port);
    kl_redis_url_free(&u);
    if (c == NULL || c->err != 0)
        fail_msg("cannot connect to Redis: %s", c != NULL ? c->errstr : "no memory");
    return c;
}

/* Deletes every key under a pattern; returns how many. */
static long long delete_keys(const char *pattern)
{
    redisContext *c = raw_connect();
    char cursor[32] = "0";
    long long n = 0;
    do {
        redisReply *r = redisCommand(c, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            freeReplyObject(r);
            redisFree(c);
            fail_msg("SCAN failed");
            return n;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            redisReply *d = redisCommand(c, "DEL %b", r->element[1]->element[i]->str,
                                         r->element[1]->element[i]->len);
            n += d != NULL && d->type == REDIS_REPLY_INTEGER ? d->integer : 0;
            freeReplyObject(d);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    redisFree(c);
    return n;
}

static int cleanup_all(void **state)
{
    char pattern[64];
    (void)state;
    snprintf(pattern, sizeof pattern, "kltest:store-%ld-*", (long)getpid());
    delete_keys(pattern);
    return 0;
}

/* ---- a worker process dies mid-task ---- */

static void test_redis_worker_killed(void **state)
{
    struct kl_store *s = open_store();
    struct kl_err err = {0};
    struct kl_store_task t;
    struct kl_store_task_ack ack;
    char id[JOB_ID_BUF], prefix[128], buf[8];
    int fds[2], status;
    bool got = false;
    pid_t pid;
    int64_t t0;
    (void)state;

    snprintf(prefix, sizeof prefix, "%s", last_prefix);
    new_job(s, "orders", "pipe", NULL, id);
    MUST(kl_store_task_enqueue(s, id, "shard-1", NULL, 0, NULL, &err));
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* the worker: its own store (never share connections across fork), one take */
        struct kl_store_options o;
        struct kl_store *c;
        kl_store_options_init(&o);
        o.key_prefix = prefix;
        c = kl_store_redis_create(kl_test_require_env("KL_TEST_REDIS_URL"), &o, &err);
        if (c == NULL || kl_store_task_take(c, "doomed", 500, 2000, &t, &got, &err) != KL_OK ||
            !got)
            _exit(2);
        if (write(fds[1], "x", 1) != 1)
            _exit(3);
        for (;;)
            pause();
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], buf, 1), 1);
    close(fds[0]);
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    /* another worker takes it over once the dead one's lease ran out */
    t0 = now_ms();
    MUST(kl_store_task_take(s, "rescuer", 60000, 5000, &t, &got, &err));
    assert_true(got);
    assert_string_equal(t.shard_id, "shard-1");
    assert_int_equal(t.attempt, 1);
    assert_int_equal(t.delivery, 2);
    printf("# takeover %lld ms after the kill (lease 500 ms)\n", (long long)(now_ms() - t0));
    assert_true(now_ms() - t0 < 2000);
    MUST(kl_store_task_ack(s, &t, &ack, &err));
    assert_true(ack.last);
    kl_store_destroy(s);
}

/* ---- Redis unreachable ---- */

static void test_redis_unreachable(void **state)
{
    struct kl_store_options o;
    struct kl_store *s;
    struct kl_err err = {0};
    struct kl_store_job j;
    int64_t t0;
    (void)state;

    kl_store_options_init(&o);
    o.connect_timeout_ms = 500;
    s = redis_open_url("redis://127.0.0.1:1", &o); /* nothing listens on port 1 */
    assert_int_equal(kl_store_ping(s, &err), KL_ERR_UNAVAILABLE);
    assert_true(kl_err_retryable(err.code));
    /* while it is down, calls fail fast instead of trying to connect each time */
    t0 = now_ms();
    kl_store_job_init(&j);
    for (int i = 0; i < 50; i++)
        assert_int_equal(kl_store_job_get(s, "0000000000000000000000000z", &j, &err),
                         KL_ERR_UNAVAILABLE);
    assert_non_null(strstr(err.msg, "unreachable"));
    assert_true(now_ms() - t0 < 500);
    kl_store_destroy(s);
}

/* ---- credentials ---- */

static void test_redis_secret_not_leaked(void **state)
{
    const char *secret = "S3cr3t-pa55";
    struct kl_store_options o;
    struct kl_redis_url u;
    struct kl_store *s;
    struct kl_err err = {0};
    char url[512], redacted[512], *logged = NULL;
    size_t logged_len = 0;
    FILE *sink;
    (void)state;

    memset(&u, 0, sizeof u);
    MUST(kl_redis_url_parse(kl_test_require_env("KL_TEST_REDIS_URL"), &u, &err));
    snprintf(url, sizeof url, "redis://kl:%s@%s:%d/0", secret, u.host, u.port);
    kl_redis_url_free(&u);
    sink = open_memstream(&logged, &logged_len);
    assert_non_null(sink);
    kl_log_set_sink(sink);
    kl_store_options_init(&o);
    s = redis_open_url(url, &o);
    /* the test server has no such user: AUTH is refused, and says so without the password */
    assert_int_equal(kl_store_ping(s, &err), KL_ERR_AUTH);
    assert_null(strstr(err.msg, secret));
    MUST(kl_redis_url_parse(url, &u, &err));
    kl_redis_url_redacted(&u, redacted, sizeof redacted);
    assert_null(strstr(redacted, secret));
    assert_non_null(strstr(redacted, ":***@"));
    kl_redis_url_free(&u);
    kl_store_destroy(s);
    kl_log_set_sink(stderr);
    fclose(sink);
    assert_null(strstr(logged != NULL ? logged : "", secret));
    free(logged);
}

/* ---- Redis restarted mid-job, and flushed ---- */

struct hammer {
    struct kl_store *s;
    const char *job_id;
    volatile int stop;
    long ok, unavailable, missing, other;
    char other_msg[320];
};

static void *hammer_run(void *arg)
{
    struct hammer *h = arg;
    while (!h->stop) {
        struct kl_err err = {0};
        enum kl_store_job_status st;
        bool cancel;
        int rc = kl_store_job_status(h->s, h->job_id, &st, &cancel, &err);
        if (rc == KL_OK)
            h->ok++;
        else if (rc == KL_ERR_UNAVAILABLE)
            h->unavailable++;
        else if (rc == KL_ERR_NOT_FOUND)
            h->missing++;
        else if (h->other++ == 0)
            snprintf(h->other_msg, sizeof h->other_msg, "%s: %s", kl_err_code_name(rc), err.msg);
        redis_advance(2);
    }
    return NULL;
}

static void wait_until_up(struct kl_store *s)
{
    struct kl_err err = {0};
    int64_t t0 = now_ms();
    while (kl_store_ping(s, &err) != KL_OK) {
        if (now_ms() - t0 > 20000)
            fail_msg("Redis did not come back: %s", err.msg);
        redis_advance(50);
    }
}

/* What is left after Redis lost everything: the store says so, and works on. */
static void assert_state_lost(struct kl_store *s, const char *id, const struct kl_store_task *t,
                              const struct kl_store_shard_key *k, int64_t token)
{
    struct kl_err err = {0};
    struct kl_store_job j;
    struct kl_store_task_ack ack;
    struct kl_store_progress p = {.shard_id = "shard-1", .messages = 1, .millis_behind_latest = -1};
    char id2[JOB_ID_BUF];
    int64_t token2 = 0;
    bool created;

    kl_store_job_init(&j);
    ASSERT_RC(kl_store_job_get(s, id, &j, &err), KL_ERR_NOT_FOUND);
    ASSERT_RC(kl_store_job_progress(s, id, &p, NULL, &err), KL_ERR_NOT_FOUND);
    ASSERT_RC(kl_store_task_heartbeat(s, t, 60000, &err), KL_ERR_CONFLICT);
    ASSERT_RC(kl_store_task_ack(s, t, &ack, &err), KL_ERR_CONFLICT);
    ASSERT_RC(kl_store_lease_renew(s, k, "worker-a", token, 60000, &err), KL_ERR_CONFLICT);
    assert_empty(s);
    /* and everything works again */
    new_job(s, "orders", "pipe", NULL, id2);
    MUST(kl_store_task_enqueue(s, id2, "shard-1", NULL, 0, &created, &err));
    assert_true(created);
    /* the destination's token is the floor: tokens keep rising though the counter was lost */
    MUST(kl_store_lease_take(s, k, "worker-b", 60000, token, &token2, &err));
    assert_true(token2 > token);
    kl_store_job_free(&j);
}

/* A job in progress: running, a task in flight, a lease, budget reserved. */
static void start_job(struct kl_store *s, char id[JOB_ID_BUF], struct kl_store_task *t,
                      const struct kl_store_shard_key *k, int64_t *token)
{
    struct kl_err err = {0};
    int64_t granted = 0;
    new_job(s, "orders", "pipe", NULL, id);
    set_status(s, id, KL_STORE_JOB_RUNNING);
    MUST(kl_store_task_enqueue(s, id, "shard-1", NULL, 0, NULL, &err));
    MUST(kl_store_task_enqueue(s, id, "shard-2", NULL, 0, NULL, &err));
    take(s, "worker-a", 60000, t);
    MUST(kl_store_lease_take(s, k, "worker-a", 60000, 6, token, &err));
    assert_int_equal(*token, 7);
    MUST(kl_store_budget_reserve(s, id, "shard-1", 100, 10, &granted, &err));
    assert_int_equal(granted, 10);
}

static void test_redis_restart(void **state)
{
    struct kl_store *s = open_store();
    struct kl_store_shard_key k = {"pipe", "orders", "shard-1"};
    struct kl_store_task t;
    struct hammer h;
    pthread_t th;
    char id[JOB_ID_BUF], *out = NULL;
    int64_t token = 0;
    int rc;
    (void)state;

    start_job(s, id, &t, &k, &token);
    memset(&h, 0, sizeof h);
    h.s = s;
    h.job_id = id;
    assert_int_equal(pthread_create(&th, NULL, hammer_run, &h), 0);
    redis_advance(50);
    rc = kl_test_run(&out, "'%s/scripts/services.sh' restart redis 2>&1", KL_SOURCE_DIR);
    if (rc != 0)
        fail_msg("services.sh restart redis failed (%d): %s", rc, out != NULL ? out : "");
    free(out);
    wait_until_up(s);
    redis_advance(200);
    h.stop = 1;
    assert_int_equal(pthread_join(th, NULL), 0);
    printf("# during the restart: %ld ok, %ld unavailable, %ld not found, %ld other\n", h.ok,
           h.unavailable, h.missing, h.other);
    if (h.other != 0)
        fail_msg("unexpected result while Redis restarted: %s", h.other_msg);
    assert_true(h.missing > 0); /* after the restart the job is gone, and that is what it says */
    assert_state_lost(s, id, &t, &k, token);
    kl_store_destroy(s);
}

static void test_redis_flushed(void **state)
{
    struct kl_store *s = open_store();
    struct kl_store_shard_key k = {"pipe", "orders", "shard-1"};
    struct kl_store_task t;
    char id[JOB_ID_BUF], pattern[160];
    int64_t token = 0;
    (void)state;

    start_job(s, id, &t, &k, &token);
    /* FLUSHALL, limited to this test's namespace so tests running beside it keep theirs */
    snprintf(pattern, sizeof pattern, "%s*", last_prefix);
    assert_true(delete_keys(pattern) > 5);
    assert_state_lost(s, id, &t, &k, token);
    kl_store_destroy(s);
}

/* ---- throughput ---- */

struct bench {
    struct kl_store *s;
    const char *job_id;
    int thread;
    int n;
    int failures;
};

static void *bench_progress(void *arg)
{
    struct bench *b = arg;
    char shard[32], seq[32];
    snprintf(shard, sizeof shard, "shard-%d", b->thread);
    for (int i = 1; i <= b->n; i++) {
        struct kl_err err = {0};
        struct kl_store_table_rows rows[] = {{"events", 3}};
        struct kl_store_progress p;
        snprintf(seq, sizeof seq, "%d", i);
        memset(&p, 0, sizeof p);
        p.shard_id = shard;
        p.sequence = seq;
        p.sub_sequence = -1;
        p.millis_behind_latest = 10;
        p.messages = 2;
        p.tables = rows;
        p.n_tables = 1;
        if (kl_store_job_progress(b->s, b->job_id, &p, NULL, &err) != KL_OK)
            b->failures++;
    }
    return NULL;
}

static void *bench_renew(void *arg)
{
    struct bench *b = arg;
    struct kl_err err = {0};
    char shard[32], owner[32];
    struct kl_store_shard_key k = {"pipe", "orders", shard};
    int64_t token;
    snprintf(shard, sizeof shard, "shard-%d", b->thread);
    snprintf(owner, sizeof owner, "worker-%d", b->thread);
    if (kl_store_lease_take(b->s, &k, owner, 30000, 0, &token, &err) != KL_OK) {
        b->failures = b->n;
        return NULL;
    }
    for (int i = 0; i < b->n; i++) {
        if (kl_store_lease_renew(b->s, &k, owner, token, 30000, &err) != KL_OK)
            b->failures++;
    }
    return NULL;
}

static double run_bench(struct kl_store *s, const char *id, void *(*fn)(void *), int threads, int n)
{
    struct bench b[16];
    pthread_t th[16];
    int64_t t0 = now_ms(), dt;
    for (int i = 0; i < threads; i++) {
        b[i] = (struct bench){s, id, i, n, 0};
        assert_int_equal(pthread_create(&th[i], NULL, fn, &b[i]), 0);
    }
    for (int i = 0; i < threads; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(b[i].failures, 0);
    }
    dt = now_ms() - t0;
    return (double)threads * n * 1000.0 / (double)(dt > 0 ? dt : 1);
}

static void test_redis_throughput(void **state)
{
    struct kl_store *s = open_store();
    struct kl_store_job j;
    char id[JOB_ID_BUF];
    const int n = 2000;
    double r1, r8, p1, p8;
    (void)state;

    new_job(s, "orders", "pipe", NULL, id);
    set_status(s, id, KL_STORE_JOB_RUNNING);
    r1 = run_bench(s, id, bench_renew, 1, n);
    r8 = run_bench(s, id, bench_renew, 8, n);
    p1 = run_bench(s, id, bench_progress, 1, n);
    /* the 8-thread run continues shard-0's sequence past p1's, so all of it counts */
    {
        struct bench b[8];
        pthread_t th[8];
        int64_t t0 = now_ms(), dt;
        for (int i = 0; i < 8; i++) {
            b[i] = (struct bench){s, id, i + 1, n, 0};
            assert_int_equal(pthread_create(&th[i], NULL, bench_progress, &b[i]), 0);
        }
        for (int i = 0; i < 8; i++) {
            assert_int_equal(pthread_join(th[i], NULL), 0);
            assert_int_equal(b[i].failures, 0);
        }
        dt = now_ms() - t0;
        p8 = 8.0 * n * 1000.0 / (double)(dt > 0 ? dt : 1);
    }
    kl_store_job_init(&j);
    get_job(s, id, &j);
    /* shard-0 by one thread, shard-1..8 by eight: every increment counted once */
    assert_int_equal(j.messages, 2LL * 9 * n);
    assert_int_equal(j.n_tables, 1);
    assert_int_equal(j.tables[0].rows, 3LL * 9 * n);
    assert_int_equal(j.n_shards, 9);
    kl_store_job_free(&j);
    {
        /* the queue: enqueue, then 8 workers take + heartbeat + ack */
        struct kl_err err = {0};
        struct conc c;
        pthread_t th[CONC_THREADS];
        char qid[JOB_ID_BUF];
        int64_t t0 = now_ms(), t1;
        memset(&c, 0, sizeof c);
        c.s = s;
        assert_int_equal(pthread_mutex_init(&c.mu, NULL), 0);
        new_job(s, "queue", "pipe", NULL, qid);
        for (int i = 0; i < CONC_TASKS; i++) {
            char shard[32];
            snprintf(shard, sizeof shard, "shard-%03d", i);
            MUST(kl_store_task_enqueue(s, qid, shard, NULL, 0, NULL, &err));
        }
        t1 = now_ms();
        for (int i = 0; i < CONC_THREADS; i++)
            assert_int_equal(pthread_create(&th[i], NULL, conc_worker, &c), 0);
        for (int i = 0; i < CONC_THREADS; i++)
            assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(c.errors, 0);
        assert_int_equal(c.lasts, 1);
        printf("# queue: %.0f enqueues/s; %.0f tasks/s through take + %d progress + %d "
               "heartbeats + ack (8 threads)\n",
               CONC_TASKS * 1000.0 / (double)(t1 - t0 > 0 ? t1 - t0 : 1),
               CONC_TASKS * 1000.0 / (double)(c.last_at_ms - t1 > 0 ? c.last_at_ms - t1 : 1),
               CONC_CHUNKS, CONC_CHUNKS);
        assert_int_equal(pthread_mutex_destroy(&c.mu), 0);
    }
    printf("# lease renew: %.0f ops/s (1 thread), %.0f ops/s (8 threads)\n", r1, r8);
    printf("# job progress (counters + shard + 1 table): %.0f ops/s (1 thread), "
           "%.0f ops/s (8 threads)\n",
           p1, p8);
    kl_store_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_SUITE_TESTS,
        cmocka_unit_test(test_redis_worker_killed),
        cmocka_unit_test(test_redis_unreachable),
        cmocka_unit_test(test_redis_secret_not_leaked),
        cmocka_unit_test(test_redis_flushed),
        cmocka_unit_test(test_redis_throughput),
        cmocka_unit_test(test_redis_restart),
    };
    kl_test_require_env("KL_TEST_REDIS_URL");
    return cmocka_run_group_tests(tests, NULL, cleanup_all);
}
