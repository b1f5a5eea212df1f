/*
 * Implementation of the shared test helpers (see test_support.h).
 */
#include "tests/support/test_support.h"
#include "core/util/err.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdarg.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

char *kl_test_read_fixture(const char *rel, size_t *len_out)
{
    char path[1024];
    FILE *f;
    long n;
    char *data;

    snprintf(path, sizeof path, "%s/tests/fixtures/%s", KL_SOURCE_DIR, rel);
    f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("fixture %s cannot be opened", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    data = malloc((size_t)n + 1);
    assert_non_null(data);
    if (n > 0 && fread(data, 1, (size_t)n, f) != (size_t)n)
        fail_msg("fixture %s cannot be read", path);
    data[n] = '\0';
    fclose(f);
    if (len_out != NULL)
        *len_out = (size_t)n;
    return data;
}

const char *kl_test_require_env(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0')
        fail_msg("%s is not set: integration tests need the local services "
                 "(run `make test`, or `scripts/services.sh start` and source "
                 ".run/services.env)",
                 name);
    return v;
}

int kl_test_run(char **out, const char *fmt, ...)
{
    char cmd[8192];
    char chunk[65536];
    size_t len = 0, n;
    char *text = NULL;
    va_list ap;
    FILE *p;
    int status;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0) {
        if (out == NULL || len + n > ((size_t)8 << 20))
            continue;
        text = realloc(text, len + n + 1);
        assert_non_null(text);
        memcpy(text + len, chunk, n);
        len += n;
        text[len] = '\0';
    }
    status = pclose(p);
    if (out != NULL)
        *out = text != NULL ? text : strdup("");
    else
        free(text);
    if (status == -1 || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

const char *kl_test_unique(const char *prefix)
{
    static char name[128];
    static int counter;
    snprintf(name, sizeof name, "%s-%ld-%d", prefix, (long)getpid(), ++counter);
    return name;
}

static int fixed_resolve(void *impl, struct kl_aws_creds *out, struct kl_err *err)
{
    (void)impl;
    (void)err;
    out->access_key_id = strdup("AKIDTEST");
    out->secret_access_key = strdup("secret");
    assert_non_null(out->access_key_id);
    assert_non_null(out->secret_access_key);
    snprintf(out->source, sizeof out->source, "test");
    return KL_OK;
}

static void fixed_destroy(void *impl)
{
    (void)impl;
}

static const struct kl_cred_provider_ops fixed_ops = {fixed_resolve, fixed_destroy};
static struct kl_cred_provider fixed_provider = {&fixed_ops, NULL};

struct kl_cred_provider *kl_test_fixed_creds(void)
{
    return &fixed_provider;
}

void kl_test_kinesis_open(struct kl_test_kinesis *s, const char *url_env, const char *secret,
                          const char *session_token)
{
    kl_test_kinesis_open_deadline(s, url_env, secret, session_token, 0);
}

void kl_test_kinesis_open_deadline(struct kl_test_kinesis *s, const char *url_env,
                                   const char *secret, const char *session_token,
                                   int64_t call_deadline_ms)
{
    struct kl_kinesis_conn_options o;
    struct kl_err err;
    size_t i = 0;

    memset(s, 0, sizeof *s);
    snprintf(s->url, sizeof s->url, "%s", kl_test_require_env(url_env));
    snprintf(s->access_key, sizeof s->access_key, "%s", kl_test_unique("AKIDTEST"));
    snprintf(s->secret, sizeof s->secret, "%s",
             secret ? secret : kl_test_require_env("KL_TEST_PROXY_SECRET"));
    s->pairs[i++] = "AWS_ACCESS_KEY_ID";
    s->pairs[i++] = s->access_key;
    s->pairs[i++] = "AWS_SECRET_ACCESS_KEY";
    s->pairs[i++] = s->secret;
    s->pairs[i++] = "AWS_ENDPOINT_URL_KINESIS";
    s->pairs[i++] = s->url;
    s->pairs[i++] = "AWS_REGION";
    s->pairs[i++] = "us-east-1"; /* the Node tools' region: kinesis-mock keeps streams per region */
    if (session_token != NULL) {
        snprintf(s->token, sizeof s->token, "%s", session_token);
        s->pairs[i++] = "AWS_SESSION_TOKEN";
        s->pairs[i++] = s->token;
    }
    s->pairs[i] = NULL;
    kl_env_table_init(&s->env, s->pairs);
    memset(&o, 0, sizeof o);
    o.env = &s->env.env;
    o.max_attempts = 12;
    o.timeout_ms = 10000;
    o.call_deadline_ms = call_deadline_ms;
    if (kl_kinesis_conn_init(&s->conn, &o, &err) != KL_OK)
        fail_msg("Kinesis connection to %s: %s", s->url, err.msg);
}

void kl_test_kinesis_close(struct kl_test_kinesis *s)
{
    kl_kinesis_conn_free(&s->conn);
}

static int64_t fake_wall_ms(void *impl)
{
    return ((struct kl_fake_clock *)impl)->wall_ms;
}

static int64_t fake_monotonic_ms(void *impl)
{
    return ((struct kl_fake_clock *)impl)->mono_ms;
}

static void fake_sleep_ms(void *impl, int64_t ms)
{
    struct kl_fake_clock *c = impl;
    if (ms <= 0)
        return;
    c->wall_ms += ms;
    c->mono_ms += ms;
    c->slept_ms += ms;
}

static const struct kl_clock_ops fake_clock_ops = {fake_wall_ms, fake_monotonic_ms, fake_sleep_ms};

void kl_fake_clock_init(struct kl_fake_clock *c, int64_t wall_ms)
{
    c->clock.ops = &fake_clock_ops;
    c->clock.impl = c;
    c->wall_ms = wall_ms;
    c->mono_ms = 1000000;
    c->slept_ms = 0;
}

static int fake_send(void *impl, const struct kl_http_request *req, struct kl_http_response *resp,
                     struct kl_err *err)
{
    struct kl_fake_http *f = impl;
    struct kl_fake_http_sent *s;
    const struct kl_fake_http_reply *r;
    size_t pos = 0;

    if (f->n_sent < KL_FAKE_HTTP_MAX) {
        s = &f->sent[f->n_sent++];
        snprintf(s->method, sizeof s->method, "%s", req->method);
        snprintf(s->url, sizeof s->url, "%s", req->url);
        s->body = malloc(req->body_len + 1);
        assert_non_null(s->body);
        if (req->body_len > 0)
            memcpy(s->body, req->body, req->body_len);
        s->body[req->body_len] = '\0';
        s->body_len = req->body_len;
        s->timeout_ms = req->timeout_ms;
        s->headers[0] = '\0';
        for (size_t i = 0; i < req->n_headers && pos < sizeof s->headers; i++) {
            int n = snprintf(s->headers + pos, sizeof s->headers - pos, "%s: %s\n",
                             req->headers[i].name, req->headers[i].value);
            if (n > 0)
                pos += (size_t)n;
        }
    }
    if (f->next >= f->n_replies)
        fail_msg("fake HTTP: unexpected request %s %s", req->method, req->url);
    r = &f->replies[f->next++];
    if (r->no_answer) {
        if (f->clock != NULL) {
            f->clock->wall_ms += req->timeout_ms;
            f->clock->mono_ms += req->timeout_ms;
        }
        return kl_err_set(err, KL_ERR_UNAVAILABLE, "fake transport: no answer within %ld ms",
                          req->timeout_ms);
    }
    if (r->status == 0)
        return kl_err_set(err, (enum kl_err_code)r->fail_code, "fake transport failure");
    kl_http_response_init(resp);
    resp->status = r->status;
    resp->body_len = r->body ? strlen(r->body) : 0;
    resp->body = malloc(resp->body_len + 1);
    assert_non_null(resp->body);
    if (resp->body_len > 0)
        memcpy(resp->body, r->body, resp->body_len);
    resp->body[resp->body_len] = '\0';
    snprintf(resp->content_type, sizeof resp->content_type, "application/x-amz-json-1.1");
    return KL_OK;
}

static void fake_destroy(void *impl)
{
    (void)impl;
}

static const struct kl_http_ops fake_http_ops = {fake_send, fake_destroy};

void kl_fake_http_init(struct kl_fake_http *f)
{
    memset(f, 0, sizeof *f);
    f->http.ops = &fake_http_ops;
    f->http.impl = f;
}

void kl_fake_http_free(struct kl_fake_http *f)
{
    for (size_t i = 0; i < f->n_sent; i++)
        free(f->sent[i].body);
    f->n_sent = 0;
}

void kl_fake_http_push(struct kl_fake_http *f, long status, const char *body)
{
    assert_true(f->n_replies < KL_FAKE_HTTP_MAX);
    f->replies[f->n_replies].status = status;
    f->replies[f->n_replies].body = body;
    f->n_replies++;
}

void kl_fake_http_push_failure(struct kl_fake_http *f, int code)
{
    assert_true(f->n_replies < KL_FAKE_HTTP_MAX);
    f->replies[f->n_replies].status = 0;
    f->replies[f->n_replies].fail_code = code;
    f->n_replies++;
}

void kl_fake_http_push_no_answer(struct kl_fake_http *f)
{
    assert_true(f->n_replies < KL_FAKE_HTTP_MAX);
    memset(&f->replies[f->n_replies], 0, sizeof f->replies[f->n_replies]);
    f->replies[f->n_replies].no_answer = true;
    f->n_replies++;
}

const char *kl_fake_http_sent_header(const struct kl_fake_http_sent *s, const char *name)
{
    static char value[2048];
    size_t nl = strlen(name);
    const char *line = s->headers;

    while (line != NULL && *line != '\0') {
        const char *end = strchr(line, '\n');
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            size_t n = (size_t)((end ? end : line + strlen(line)) - (line + nl + 2));
            if (n >= sizeof value)
                n = sizeof value - 1;
            memcpy(value, line + nl + 2, n);
            value[n] = '\0';
            return value;
        }
        line = end ? end + 1 : NULL;
    }
    return NULL;
}

long long kl_test_pg_scalar(const char *fmt, ...)
{
    char sql[1024];
    va_list ap;
    PGconn *c = PQconnectdb(kl_test_require_env("KL_TEST_PG_URL"));
    PGresult *res;
    long long n;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("postgres: %s", PQerrorMessage(c));
    res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) < 1)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    n = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(c);
    return n;
}

long long kl_test_sqlite_scalar(const char *path, const char *fmt, ...)
{
    char sql[1024];
    va_list ap;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long n;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        fail_msg("sqlite %s: %s", path, sqlite3_errmsg(db));
    sqlite3_busy_timeout(db, 10000);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    if (sqlite3_step(st) != SQLITE_ROW)
        fail_msg("%s: no row", sql);
    n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}
