/*
 * Helpers shared by the test programs: a scripted fake HTTP transport,
 * a fake clock, and access to fixtures and the services started by
 * scripts/services.sh. Test code only.
 */
#ifndef KL_TEST_SUPPORT_H
#define KL_TEST_SUPPORT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/aws/creds.h"
#include "core/aws/http.h"
#include "core/kinesis/conn.h"
#include "core/util/clock.h"
#include "core/util/env.h"

/* Reads tests/fixtures/<rel> into a malloc'ed NUL-terminated buffer; fails the test if absent. */
char *kl_test_read_fixture(const char *rel, size_t *len_out);

/* An environment variable the integration tests need (set by `make test`
 * from the services file). Fails the test with a hint when it is unset. */
const char *kl_test_require_env(const char *name);

/* Runs a shell command (printf-style), collecting at most 8 MiB of its
 * stdout into a malloc'ed string (`*out`, may be NULL to discard). Returns the
 * exit status, or -1 when it could not run. */
int kl_test_run(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The first column of the first row of a query, as an integer (a count):
 * on the PostgreSQL of KL_TEST_PG_URL, or in the SQLite file `path`. A
 * failing query fails the test. */
long long kl_test_pg_scalar(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
long long kl_test_sqlite_scalar(const char *path, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A name unique to this process and call, for streams and keys: "<prefix>-<pid>-<n>". */
const char *kl_test_unique(const char *prefix);

/* A credential provider that always answers the same long-term keys
 * (AKIDTEST / secret). Static; never destroyed. */
struct kl_cred_provider *kl_test_fixed_creds(void);

/* A Kinesis connection configured the way a user would: AWS_* variables
 * (through an env table) naming the endpoint in `url_env` (a KL_TEST_* URL),
 * a fresh access key per session (the proxy scopes faults by key), and the
 * proxy's secret unless `secret` is given. */
struct kl_test_kinesis {
    char url[256];
    char access_key[160];
    char secret[128];
    char token[256];
    const char *pairs[11];
    struct kl_env_table env;
    struct kl_kinesis_conn conn;
};
void kl_test_kinesis_open(struct kl_test_kinesis *s, const char *url_env, const char *secret,
                          const char *session_token);
/* The same with a deadline for each Kinesis call (0: the client's). */
void kl_test_kinesis_open_deadline(struct kl_test_kinesis *s, const char *url_env,
                                   const char *secret, const char *session_token,
                                   int64_t call_deadline_ms);
void kl_test_kinesis_close(struct kl_test_kinesis *s);

/* A clock whose time only moves when the test says so; sleeping advances it. */
struct kl_fake_clock {
    struct kl_clock clock;
    int64_t wall_ms;
    int64_t mono_ms;
    int64_t slept_ms; /* total of all sleeps */
};
void kl_fake_clock_init(struct kl_fake_clock *c, int64_t wall_ms);

/* A scripted HTTP transport: answers requests from a queue of canned
 * responses and records what was sent. */
#define KL_FAKE_HTTP_MAX 64
struct kl_fake_http_reply {
    long status;      /* 0: fail the send with `fail_code` instead */
    int fail_code;    /* enum kl_err_code used when status is 0 */
    bool no_answer;   /* the server never answers: the request's timeout passes */
    const char *body; /* copied when replayed */
};
struct kl_fake_http_sent {
    char method[8];
    char url[512];
    char *body; /* malloc'ed copy */
    size_t body_len;
    char headers[4096]; /* "name: value\n" lines */
    long timeout_ms;    /* the request's */
};
struct kl_fake_http {
    struct kl_http http;
    struct kl_fake_http_reply replies[KL_FAKE_HTTP_MAX];
    size_t n_replies;
    size_t next;
    struct kl_fake_http_sent sent[KL_FAKE_HTTP_MAX];
    size_t n_sent;
    struct kl_fake_clock *clock; /* optional: advanced by requests that get no answer */
};
void kl_fake_http_init(struct kl_fake_http *f);
void kl_fake_http_free(struct kl_fake_http *f);
void kl_fake_http_push(struct kl_fake_http *f, long status, const char *body);
void kl_fake_http_push_failure(struct kl_fake_http *f, int code);
/* A request that gets no answer: the fake clock (f->clock) moves on by the
 * request's timeout, and the send fails as a timeout (KL_ERR_UNAVAILABLE). */
void kl_fake_http_push_no_answer(struct kl_fake_http *f);
/* Value of a header in a sent request (case-insensitive), or NULL. Static buffer. */
const char *kl_fake_http_sent_header(const struct kl_fake_http_sent *s, const char *name);

#endif
