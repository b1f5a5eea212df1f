/*
 * The web identity, container and IMDS credential providers over real HTTP:
 * the libcurl transport against fake STS, container and metadata endpoints
 * that this test starts on loopback (tests/support/fake_server.h). Needs no
 * external service. Checks what arrives on the wire (form fields, tokens,
 * headers), retries, rotation of token files, and that an absent IMDS is
 * "nothing here" within the short timeouts.
 */
#include "tests/support/test_support.h"
#include "tests/support/fake_server.h"
#include "core/aws/creds.h"
#include "core/aws/http.h"
#include "core/util/clock.h"
#include "core/util/env.h"
#include "core/util/err.h"
#include "core/util/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ROLE_ARN "arn:aws:iam::123456789012:role/integration"
#define IMDS_TOKEN "AQAEAIntegrationImdsToken=="
#define IMDS_ROLE "integration-role"

/* What one request brought, copied out of the handler. */
struct seen {
    char method[8];
    char path[256];
    char content_type[128];
    char authorization[256];
    char imds_ttl[16];
    char imds_token[128];
    char action[64];
    char role_arn[128];
    char session_name[128];
    char web_identity_token[256];
};

/* Shared by a test and its handler (read under kl_fake_server_lock). */
struct endpoint {
    struct kl_fake_server *server;
    struct seen seen[8];
    unsigned n;
    int fail_first;   /* answer 500 to the first request */
    int drop_first;   /* close the first connection without an answer */
    long delay_ms;    /* before every answer */
    int status;       /* for STS and the container; 0: 200 */
    const char *body; /* for STS and the container */
};

static void copy_header(const struct kl_fake_request *req, const char *name, char *out, size_t cap)
{
    const char *v = kl_fake_request_header(req, name);
    snprintf(out, cap, "%s", v != NULL ? v : "");
}

static struct seen *record(struct endpoint *e, const struct kl_fake_request *req)
{
    struct seen *s = &e->seen[e->n < 8 ? e->n : 7];
    memset(s, 0, sizeof *s);
    snprintf(s->method, sizeof s->method, "%s", req->method);
    snprintf(s->path, sizeof s->path, "%s", req->path);
    copy_header(req, "Content-Type", s->content_type, sizeof s->content_type);
    copy_header(req, "Authorization", s->authorization, sizeof s->authorization);
    copy_header(req, "X-aws-ec2-metadata-token-ttl-seconds", s->imds_ttl, sizeof s->imds_ttl);
    copy_header(req, "X-aws-ec2-metadata-token", s->imds_token, sizeof s->imds_token);
    kl_fake_form_value(req->body, req->body_len, "Action", s->action, sizeof s->action);
    kl_fake_form_value(req->body, req->body_len, "RoleArn", s->role_arn, sizeof s->role_arn);
    kl_fake_form_value(req->body, req->body_len, "RoleSessionName", s->session_name,
                       sizeof s->session_name);
    kl_fake_form_value(req->body, req->body_len, "WebIdentityToken", s->web_identity_token,
                       sizeof s->web_identity_token);
    e->n++;
    return s;
}

/* Common faults; returns 1 when the request was answered by one. */
static int fault(struct endpoint *e, const struct kl_fake_request *req,
                 struct kl_fake_response *resp)
{
    resp->delay_ms = e->delay_ms;
    if (req->index == 0 && e->drop_first) {
        resp->drop = true;
        return 1;
    }
    if (req->index == 0 && e->fail_first) {
        resp->status = 500;
        kl_fake_response_body(resp, "application/json", "{\"message\":\"try again\"}");
        return 1;
    }
    return 0;
}

static void canned_handler(void *user, const struct kl_fake_request *req,
                           struct kl_fake_response *resp)
{
    struct endpoint *e = user;
    record(e, req);
    if (fault(e, req, resp))
        return;
    resp->status = e->status != 0 ? e->status : 200;
    kl_fake_response_body(resp, strstr(e->body, "<") == e->body ? "text/xml" : "application/json",
                          e->body);
}

/* IMDSv2 as EC2 serves it: a token first, and nothing without it. */
static void imds_handler(void *user, const struct kl_fake_request *req,
                         struct kl_fake_response *resp)
{
    struct endpoint *e = user;
    struct seen *s = record(e, req);
    int has_token = strcmp(s->imds_token, IMDS_TOKEN) == 0;

    if (fault(e, req, resp))
        return;
    if (strcmp(req->path, "/latest/api/token") == 0) {
        if (strcmp(req->method, "PUT") != 0 || s->imds_ttl[0] == '\0') {
            resp->status = 400;
            return;
        }
        kl_fake_response_body(resp, NULL, IMDS_TOKEN);
    } else if (!has_token) {
        resp->status = 401;
    } else if (strcmp(req->path, "/latest/meta-data/iam/security-credentials/") == 0) {
        kl_fake_response_body(resp, NULL, IMDS_ROLE);
    } else if (strcmp(req->path, "/latest/meta-data/iam/security-credentials/" IMDS_ROLE) == 0) {
        kl_fake_response_body(resp, "text/plain", e->body);
    } else {
        resp->status = 404;
    }
}

/* An expiration an hour from now, as AWS writes it. */
static void in_an_hour(char *out, size_t cap)
{
    time_t t = time(NULL) + 3600;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *creds_json(char *out, size_t cap, const char *key)
{
    char exp[32];
    in_an_hour(exp, sizeof exp);
    snprintf(out, cap,
             "{\"Code\":\"Success\",\"Type\":\"AWS-HMAC\",\"AccessKeyId\":\"%s\","
             "\"SecretAccessKey\":\"secret/%s\",\"Token\":\"token+%s\",\"Expiration\":\"%s\"}",
             key, key, key, exp);
    return out;
}

static void write_file(const char *path, const char *content)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(content, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

static void temp_path(char *out, size_t cap, const char *leaf)
{
    const char *dir = getenv("TMPDIR");
    snprintf(out, cap, "%s/kl-creds-it-%ld-%s", dir != NULL ? dir : "/tmp", (long)getpid(), leaf);
}

/* A provider of one kind on a real transport and the system clock. */
struct rig {
    struct kl_env_table env;
    struct kl_http *http;
    struct kl_cred_chain_config cfg;
    struct kl_cred_provider *p;
    struct kl_aws_creds out;
    struct kl_err err;
};

static void rig_init(struct rig *r, const char *const *pairs,
                     struct kl_cred_provider *(*create)(const struct kl_cred_chain_config *,
                                                        struct kl_err *),
                     const char *sts, const char *imds)
{
    memset(r, 0, sizeof *r);
    kl_env_table_init(&r->env, pairs);
    r->http = kl_http_curl_create(NULL, &r->err);
    assert_non_null(r->http);
    r->cfg.env = &r->env.env;
    r->cfg.clock = kl_clock_system();
    r->cfg.http = r->http;
    r->cfg.sts_endpoint = sts;
    r->cfg.imds_endpoint = imds;
    r->p = create != NULL ? create(&r->cfg, &r->err) : kl_cred_chain_create(&r->cfg, &r->err);
    assert_non_null(r->p);
    kl_aws_creds_init(&r->out);
}

static int rig_resolve(struct rig *r)
{
    kl_aws_creds_free(&r->out);
    return kl_cred_provider_resolve(r->p, &r->out, &r->err);
}

static void rig_free(struct rig *r)
{
    kl_aws_creds_free(&r->out);
    kl_cred_provider_destroy(r->p);
    kl_http_destroy(r->http);
}

static int64_t now_ms(void)
{
    return kl_clock_monotonic_ms(kl_clock_system());
}

/* ---- web identity ---- */

static void web_identity_over_http_with_token_rotation(void **state)
{
    char token_file[512];
    const char *pairs[] = {"AWS_ROLE_ARN",
                           ROLE_ARN,
                           "AWS_WEB_IDENTITY_TOKEN_FILE",
                           token_file,
                           "AWS_ROLE_SESSION_NAME",
                           "it-session",
                           NULL};
    struct endpoint e;
    struct rig r;
    (void)state;

    memset(&e, 0, sizeof e);
    e.body = kl_test_read_fixture("creds/sts_web_identity_ok.xml", NULL);
    e.server = kl_fake_server_start(canned_handler, &e);
    temp_path(token_file, sizeof token_file, "webid");
    write_file(token_file, "oidc-token-1\n");

    rig_init(&r, pairs, kl_cred_web_identity_create, kl_fake_server_url(e.server), NULL);
    assert_int_equal(rig_resolve(&r), KL_OK);
    assert_string_equal(r.out.access_key_id, "AKIAIOSFODNN7EXAMPLE");
    assert_string_equal(r.out.session_token, "AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE");
    assert_int_equal(r.out.expires_at_ms, 1414191623000LL);
    write_file(token_file, "oidc-token-2\n"); /* rotated, as on EKS */
    assert_int_equal(rig_resolve(&r), KL_OK);

    kl_fake_server_lock(e.server);
    assert_int_equal(e.n, 2);
    assert_string_equal(e.seen[0].method, "POST");
    assert_string_equal(e.seen[0].path, "/");
    assert_non_null(strstr(e.seen[0].content_type, "application/x-www-form-urlencoded"));
    assert_string_equal(e.seen[0].authorization, ""); /* the call is not signed */
    assert_string_equal(e.seen[0].action, "AssumeRoleWithWebIdentity");
    assert_string_equal(e.seen[0].role_arn, ROLE_ARN);
    assert_string_equal(e.seen[0].session_name, "it-session");
    assert_string_equal(e.seen[0].web_identity_token, "oidc-token-1");
    assert_string_equal(e.seen[1].web_identity_token, "oidc-token-2");
    kl_fake_server_unlock(e.server);

    rig_free(&r);
    kl_fake_server_stop(e.server);
    unlink(token_file);
    free((char *)e.body);
}

static void web_identity_error_over_http(void **state)
{
    char token_file[512];
    const char *pairs[] = {"AWS_ROLE_ARN", ROLE_ARN, "AWS_WEB_IDENTITY_TOKEN_FILE", token_file,
                           NULL};
    struct endpoint e;
    struct rig r;
    (void)state;

    memset(&e, 0, sizeof e);
    e.status = 400;
    e.body = kl_test_read_fixture("creds/sts_web_identity_error.xml", NULL);
    e.server = kl_fake_server_start(canned_handler, &e);
    temp_path(token_file, sizeof token_file, "webid-err");
    write_file(token_file, "expired-oidc-token");

    rig_init(&r, pairs, kl_cred_web_identity_create, kl_fake_server_url(e.server), NULL);
    assert_int_equal(rig_resolve(&r), KL_ERR_AUTH);
    assert_non_null(strstr(r.err.msg, "InvalidIdentityToken"));
    assert_null(strstr(r.err.msg, "expired-oidc-token"));
    assert_int_equal(kl_fake_server_requests(e.server), 1); /* a refusal is not retried */

    rig_free(&r);
    kl_fake_server_stop(e.server);
    unlink(token_file);
    free((char *)e.body);
}

/* ---- container ---- */

static void container_over_http_with_token_rotation(void **state)
{
    char token_file[512], uri[128], body[512];
    const char *pairs[] = {"AWS_CONTAINER_CREDENTIALS_FULL_URI", uri,
                           "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file, NULL};
    struct endpoint e;
    struct rig r;
    (void)state;

    memset(&e, 0, sizeof e);
    e.body = creds_json(body, sizeof body, "ASIAPODIDENTITY");
    e.server = kl_fake_server_start(canned_handler, &e);
    snprintf(uri, sizeof uri, "%s/v1/credentials", kl_fake_server_url(e.server));
    temp_path(token_file, sizeof token_file, "pod-token");
    write_file(token_file, "pod-token-1");

    rig_init(&r, pairs, kl_cred_container_create, NULL, NULL);
    assert_int_equal(rig_resolve(&r), KL_OK);
    assert_string_equal(r.out.access_key_id, "ASIAPODIDENTITY");
    assert_string_equal(r.out.secret_access_key, "secret/ASIAPODIDENTITY");
    assert_string_equal(r.out.session_token, "token+ASIAPODIDENTITY");
    assert_true(r.out.expires_at_ms > kl_clock_wall_ms(kl_clock_system()));
    write_file(token_file, "pod-token-2\n");
    assert_int_equal(rig_resolve(&r), KL_OK);

    kl_fake_server_lock(e.server);
    assert_int_equal(e.n, 2);
    assert_string_equal(e.seen[0].method, "GET");
    assert_string_equal(e.seen[0].path, "/v1/credentials");
    assert_string_equal(e.seen[0].authorization, "pod-token-1");
    assert_string_equal(e.seen[1].authorization, "pod-token-2");
    kl_fake_server_unlock(e.server);

    rig_free(&r);
    kl_fake_server_stop(e.server);
    unlink(token_file);
}

static void container_retries_once(void **state)
{
    char uri[128], body[512];
    const char *pairs[] = {"AWS_CONTAINER_CREDENTIALS_FULL_URI", uri,
                           "AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer static", NULL};
    struct endpoint e;
    struct rig r;
    (void)state;

    memset(&e, 0, sizeof e);
    e.fail_first = 1;
    e.body = creds_json(body, sizeof body, "ASIARETRIED");
    e.server = kl_fake_server_start(canned_handler, &e);
    snprintf(uri, sizeof uri, "http://localhost:%u/creds", kl_fake_server_port(e.server));

    rig_init(&r, pairs, kl_cred_container_create, NULL, NULL);
    assert_int_equal(rig_resolve(&r), KL_OK);
    assert_string_equal(r.out.access_key_id, "ASIARETRIED");
    kl_fake_server_lock(e.server);
    assert_int_equal(e.n, 2);
    assert_string_equal(e.seen[1].authorization, "Bearer static");
    kl_fake_server_unlock(e.server);

    rig_free(&r);
    kl_fake_server_stop(e.server);
}

/* ---- IMDS ---- */

static void imds_over_http(void **state)
{
    static const char *const pairs[] = {NULL};
    char body[512];
    struct endpoint e;
    struct rig r;
    (void)state;

    memset(&e, 0, sizeof e);
    e.body = creds_json(body, sizeof body, "ASIAINSTANCE");
    e.server = kl_fake_server_start(imds_handler, &e);
    rig_init(&r, pairs, kl_cred_imds_create, NULL, kl_fake_server_url(e.server));
    assert_int_equal(rig_resolve(&r), KL_OK);
    assert_string_equal(r.out.access_key_id, "ASIAINSTANCE");
    assert_string_equal(r.out.source, "imds:" IMDS_ROLE);

    kl_fake_server_lock(e.server);
    assert_int_equal(e.n, 3);
    assert_string_equal(e.seen[0].method, "PUT");
    assert_string_equal(e.seen[0].path, "/latest/api/token");
    assert_string_equal(e.seen[0].imds_ttl, "21600");
    assert_string_equal(e.seen[1].path, "/latest/meta-data/iam/security-credentials/");
    assert_string_equal(e.seen[1].imds_token, IMDS_TOKEN);
    assert_string_equal(e.seen[2].path, "/latest/meta-data/iam/security-credentials/" IMDS_ROLE);
    assert_string_equal(e.seen[2].imds_token, IMDS_TOKEN);
    kl_fake_server_unlock(e.server);

    rig_free(&r);
    kl_fake_server_stop(e.server);
}

static void imds_dropped_connection_is_retried(void **state)
{
    static const char *const pairs[] = {NULL};
    char body[512];
    struct endpoint e;
    struct rig r;
    (void)state;

    memset(&e, 0, sizeof e);
    e.drop_first = 1;
    e.body = creds_json(body, sizeof body, "ASIAAFTERDROP");
    e.server = kl_fake_server_start(imds_handler, &e);
    rig_init(&r, pairs, kl_cred_imds_create, NULL, kl_fake_server_url(e.server));
    assert_int_equal(rig_resolve(&r), KL_OK);
    assert_string_equal(r.out.access_key_id, "ASIAAFTERDROP");
    assert_int_equal(kl_fake_server_requests(e.server), 4);
    rig_free(&r);
    kl_fake_server_stop(e.server);
}

static void imds_absent_is_nothing_here_quickly(void **state)
{
    static const char *const pairs[] = {NULL};
    char url[64];
    struct rig r;
    int64_t t0, elapsed;
    (void)state;

    snprintf(url, sizeof url, "http://127.0.0.1:%u", kl_fake_unused_port());
    rig_init(&r, pairs, kl_cred_imds_create, NULL, url);
    t0 = now_ms();
    assert_int_equal(rig_resolve(&r), KL_ERR_NOT_FOUND);
    elapsed = now_ms() - t0;
    assert_non_null(strstr(r.err.msg, "IMDS not reachable"));
    if (elapsed > 1500)
        fail_msg("a refused connection took %lld ms", (long long)elapsed);
    rig_free(&r);
}

static void imds_that_hangs_is_nothing_here_after_the_timeouts(void **state)
{
    static const char *const pairs[] = {NULL};
    struct endpoint e;
    struct rig r;
    int64_t t0, elapsed;
    (void)state;

    memset(&e, 0, sizeof e);
    e.delay_ms = 2600; /* longer than the 2 s a metadata request may take */
    e.body = "{}";
    e.server = kl_fake_server_start(imds_handler, &e);
    rig_init(&r, pairs, kl_cred_imds_create, NULL, kl_fake_server_url(e.server));
    t0 = now_ms();
    assert_int_equal(rig_resolve(&r), KL_ERR_NOT_FOUND);
    elapsed = now_ms() - t0;
    if (elapsed < 3900 || elapsed > 6000) /* two attempts of 2 s, 100 ms apart */
        fail_msg("giving up took %lld ms", (long long)elapsed);
    rig_free(&r);
    kl_fake_server_stop(e.server);
}

/* ---- the whole chain ---- */

static void chain_over_http_caches(void **state)
{
    char uri[128], body[512];
    const char *pairs[] = {"AWS_CONTAINER_CREDENTIALS_FULL_URI", uri, NULL};
    struct endpoint e;
    struct rig r;
    (void)state;

    memset(&e, 0, sizeof e);
    e.body = creds_json(body, sizeof body, "ASIACHAIN");
    e.server = kl_fake_server_start(canned_handler, &e);
    snprintf(uri, sizeof uri, "%s/creds", kl_fake_server_url(e.server));
    rig_init(&r, pairs, NULL, NULL, NULL);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rig_resolve(&r), KL_OK);
        assert_string_equal(r.out.access_key_id, "ASIACHAIN");
        assert_string_equal(r.out.source, "container");
    }
    assert_int_equal(kl_fake_server_requests(e.server), 1);
    rig_free(&r);
    kl_fake_server_stop(e.server);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(web_identity_over_http_with_token_rotation),
        cmocka_unit_test(web_identity_error_over_http),
        cmocka_unit_test(container_over_http_with_token_rotation),
        cmocka_unit_test(container_retries_once),
        cmocka_unit_test(imds_over_http),
        cmocka_unit_test(imds_dropped_connection_is_retried),
        cmocka_unit_test(imds_absent_is_nothing_here_quickly),
        cmocka_unit_test(imds_that_hangs_is_nothing_here_after_the_timeouts),
        cmocka_unit_test(chain_over_http_caches),
    };
    kl_log_set_level_name("off");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
