/*
 * Unit tests for the providers that ask a server: web identity (STS XML),
 * container endpoint (JSON, authorization token) and EC2 IMDSv2, each on the
 * scripted transport of test_support.h, so every request can be checked.
 */
#include "tests/support/test_support.h"
#include "tests/support/fake_server.h"
#include "core/aws/creds.h"
#include "core/aws/creds_internal.h"
#include "core/util/env.h"
#include "core/util/err.h"
#include "core/util/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIXTURES KL_SOURCE_DIR "/tests/fixtures/creds"
#define TOKEN_FILE FIXTURES "/home/web-identity-token"
#define FIXTURE_TOKEN "eyJhbGciOiJSUzI1NiJ9.fixture-web-identity-token.sig"
#define T0 1700000000000LL
#define ROLE "arn:aws:iam::123456789012:role/FederatedWebIdentityRole"

/* A provider of one kind on an env table, a fake clock and a scripted transport. */
struct rig {
    struct kl_env_table env;
    struct kl_fake_clock clock;
    struct kl_fake_http http;
    struct kl_cred_chain_config cfg;
    struct kl_cred_provider *p;
    struct kl_aws_creds out;
    struct kl_err err;
};

static void rig_init(struct rig *r, const char *const *pairs,
                     struct kl_cred_provider *(*create)(const struct kl_cred_chain_config *,
                                                        struct kl_err *),
                     const char *sts_endpoint, const char *imds_endpoint)
{
    memset(r, 0, sizeof *r);
    kl_env_table_init(&r->env, pairs);
    kl_fake_clock_init(&r->clock, T0);
    kl_fake_http_init(&r->http);
    r->cfg.env = &r->env.env;
    r->cfg.clock = &r->clock.clock;
    r->cfg.http = &r->http.http;
    r->cfg.sts_endpoint = sts_endpoint;
    r->cfg.imds_endpoint = imds_endpoint;
    r->p = create(&r->cfg, &r->err);
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
    kl_fake_http_free(&r->http);
}

static void assert_msg(const struct kl_err *err, const char *part)
{
    if (strstr(err->msg, part) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err->msg, part);
}

/* A temporary file the test rewrites to simulate token rotation. */
static void write_file(const char *path, const char *content)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(content, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void temp_path(char *out, size_t cap, const char *leaf)
{
    const char *dir = getenv("TMPDIR");
    snprintf(out, cap, "%s/kl-creds-%ld-%s", dir != NULL ? dir : "/tmp", (long)getpid(), leaf);
}

/* ---- web identity ---- */

static void sts_documented_response(void **state)
{
    char *xml = kl_test_read_fixture("creds/sts_web_identity_ok.xml", NULL);
    struct kl_aws_creds c;
    struct kl_err err = {0};
    (void)state;

    kl_aws_creds_init(&c);
    assert_int_equal(kl_creds_sts_parse(200, xml, strlen(xml), "web-identity", &c, &err), KL_OK);
    assert_string_equal(c.access_key_id, "AKIAIOSFODNN7EXAMPLE");
    assert_string_equal(c.secret_access_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY");
    assert_string_equal(c.session_token, "AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE");
    assert_int_equal(c.expires_at_ms, 1414191623000LL);
    kl_aws_creds_free(&c);
    free(xml);
}

static void web_identity_request_and_response(void **state)
{
    static const char *const pairs[] = {"AWS_ROLE_ARN", ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE",
                                        TOKEN_FILE, NULL};
    char *xml = kl_test_read_fixture("creds/sts_web_identity_ok.xml", NULL);
    const struct kl_fake_http_sent *s;
    struct rig r;
    char v[256];
    (void)state;

    rig_init(&r, pairs, kl_cred_web_identity_create, "https://sts.example.test/", NULL);
    kl_fake_http_push(&r.http, 200, xml);
    assert_int_equal(rig_resolve(&r), KL_OK);
    assert_string_equal(r.out.access_key_id, "AKIAIOSFODNN7EXAMPLE");
    assert_string_equal(r.out.source, "web-identity");
    assert_int_equal(r.out.expires_at_ms, 1414191623000LL);

    assert_int_equal(r.http.n_sent, 1);
    s = &r.http.sent[0];
    assert_string_equal(s->method, "POST");
    assert_string_equal(s->url, "https://sts.example.test/");
    assert_string_equal(kl_fake_http_sent_header(s, "Content-Type"),
                        "application/x-www-form-urlencoded; charset=utf-8");
    assert_null(kl_fake_http_sent_header(s, "Authorization")); /* unsigned */
    assert_true(kl_fake_form_value(s->body, s->body_len, "Action", v, sizeof v));
    assert_string_equal(v, "AssumeRoleWithWebIdentity");
    assert_true(kl_fake_form_value(s->body, s->body_len, "Version", v, sizeof v));
    assert_string_equal(v, "2011-06-15");
    assert_true(kl_fake_form_value(s->body, s->body_len, "RoleArn", v, sizeof v));
    assert_string_equal(v, ROLE);
    assert_true(kl_fake_form_value(s->body, s->body_len, "RoleSessionName", v, sizeof v));
    assert_string_equal(v, "kinesis-loader-1700000000");
    assert_true(kl_fake_form_value(s->body, s->body_len, "WebIdentityToken", v, sizeof v));
    assert_string_equal(v, FIXTURE_TOKEN); /* the trailing newline of the file is gone */
    /* Percent-encoded on the wire: ':' and '/' of the ARN. */
    assert_non_null(strstr(s->body, "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2F"));
    rig_free(&r);
    free(xml);
}

struct sts_url_case {
    const char *name;
    const char *env[12];
    const char *url;
};

static void web_identity_endpoint_table(void **state)
{
    static const struct sts_url_case cases[] = {
        {"regional", {"AWS_REGION", "eu-west-1", NULL}, "https://sts.eu-west-1.amazonaws.com/"},
        {"china", {"AWS_REGION", "cn-north-1", NULL}, "https://sts.cn-north-1.amazonaws.com.cn/"},
        {"no region: global", {NULL}, "https://sts.amazonaws.com/"},
        {"AWS_ENDPOINT_URL_STS",
         {"AWS_REGION", "eu-west-1", "AWS_ENDPOINT_URL_STS", "http://localhost:4566/", NULL},
         "http://localhost:4566/"},
        {"AWS_ENDPOINT_URL",
         {"AWS_ENDPOINT_URL", "http://localhost:4566", NULL},
         "http://localhost:4566/"},
        {"region from the default profile",
         {"HOME", FIXTURES "/home", NULL},
         "https://sts.eu-west-1.amazonaws.com/"},
    };
    char *xml = kl_test_read_fixture("creds/sts_web_identity_ok.xml", NULL);
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *pairs[20];
        size_t n = 0;
        struct rig r;

        for (size_t k = 0; cases[i].env[k] != NULL; k++)
            pairs[n++] = cases[i].env[k];
        pairs[n++] = "AWS_ROLE_ARN";
        pairs[n++] = ROLE;
        pairs[n++] = "AWS_WEB_IDENTITY_TOKEN_FILE";
        pairs[n++] = TOKEN_FILE;
        pairs[n] = NULL;
        rig_init(&r, pairs, kl_cred_web_identity_create, NULL, NULL);
        kl_fake_http_push(&r.http, 200, xml);
        if (rig_resolve(&r) != KL_OK)
            fail_msg("%s: %s", cases[i].name, r.err.msg);
        if (strcmp(r.http.sent[0].url, cases[i].url) != 0)
            fail_msg("%s: sent to %s, want %s", cases[i].name, r.http.sent[0].url, cases[i].url);
        rig_free(&r);
    }
    free(xml);
}

struct sts_error_case {
    const char *name;
    long status[2]; /* one or two answers (a retryable failure is tried twice) */
    const char *body;
    int rc;
    const char *msg;
};

static void web_identity_error_table(void **state)
{
    static const struct sts_error_case cases[] = {
        {"invalid token (documented error document)",
         {400, 0},
         NULL,
         KL_ERR_AUTH,
         "HTTP 400 InvalidIdentityToken: Incorrect token audience & issuer"},
        {"expired token",
         {400, 0},
         "<ErrorResponse><Error><Code>ExpiredTokenException</Code><Message>Token expired"
         "</Message></Error></ErrorResponse>",
         KL_ERR_AUTH,
         "ExpiredTokenException: Token expired"},
        {"access denied",
         {403, 0},
         "<ErrorResponse><Error><Code>AccessDenied</Code><Message>Not authorized to perform "
         "sts:AssumeRoleWithWebIdentity</Message></Error></ErrorResponse>",
         KL_ERR_AUTH,
         "AccessDenied"},
        {"IdP unreachable is retried",
         {400, 400},
         "<ErrorResponse><Error><Code>IDPCommunicationError</Code><Message>timeout</Message>"
         "</Error></ErrorResponse>",
         KL_ERR_UNAVAILABLE,
         "IDPCommunicationError"},
        {"throttled is retried",
         {400, 400},
         "<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error>"
         "</ErrorResponse>",
         KL_ERR_UNAVAILABLE,
         "Throttling: Rate exceeded"},
        {"5xx without XML is retried",
         {503, 503},
         "<html>bad gateway</html>",
         KL_ERR_UNAVAILABLE,
         "HTTP 503 without an STS error document"},
        {"validation error is final",
         {400, 0},
         "<ErrorResponse><Error><Code>ValidationError</Code><Message>1 validation error</Message>"
         "</Error></ErrorResponse>",
         KL_ERR_UPSTREAM,
         "ValidationError"},
        {"200 without credentials",
         {200, 0},
         "<AssumeRoleWithWebIdentityResponse></AssumeRoleWithWebIdentityResponse>",
         KL_ERR_UPSTREAM,
         "without <Credentials>"},
        {"200 with a bad expiration",
         {200, 0},
         "<AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>A</AccessKeyId>"
         "<SecretAccessKey>S</SecretAccessKey><SessionToken>T</SessionToken>"
         "<Expiration>soon</Expiration></Credentials></AssumeRoleWithWebIdentityResult>",
         KL_ERR_UPSTREAM,
         "<Expiration> soon"},
        {"200 without a session token",
         {200, 0},
         "<AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>A</AccessKeyId>"
         "<SecretAccessKey>S</SecretAccessKey><Expiration>2030-01-01T00:00:00Z</Expiration>"
         "</Credentials></AssumeRoleWithWebIdentityResult>",
         KL_ERR_UPSTREAM,
         "lack <SessionToken>"},
    };
    static const char *const pairs[] = {"AWS_ROLE_ARN", ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE",
                                        TOKEN_FILE, NULL};
    char *error_xml = kl_test_read_fixture("creds/sts_web_identity_error.xml", NULL);
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct sts_error_case *c = &cases[i];
        const char *body = c->body != NULL ? c->body : error_xml;
        size_t want_sent = c->status[1] != 0 ? 2 : 1;
        struct rig r;
        int rc;

        rig_init(&r, pairs, kl_cred_web_identity_create, "https://sts.example.test", NULL);
        for (size_t k = 0; k < want_sent; k++)
            kl_fake_http_push(&r.http, c->status[k], body);
        rc = rig_resolve(&r);
        if (rc != c->rc)
            fail_msg("%s: rc %d (%s), want %d", c->name, rc, r.err.msg, c->rc);
        if (strstr(r.err.msg, c->msg) == NULL)
            fail_msg("%s: message \"%s\" lacks \"%s\"", c->name, r.err.msg, c->msg);
        assert_non_null(strstr(r.err.msg, "AssumeRoleWithWebIdentity for " ROLE));
        assert_null(strstr(r.err.msg, FIXTURE_TOKEN));
        if (r.http.n_sent != want_sent)
            fail_msg("%s: %zu requests, want %zu", c->name, r.http.n_sent, want_sent);
        assert_null(r.out.access_key_id);
        rig_free(&r);
    }
    free(error_xml);
}

static void web_identity_transport_failure_is_retried_once(void **state)
{
    static const char *const pairs[] = {"AWS_ROLE_ARN", ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE",
                                        TOKEN_FILE, NULL};
    char *xml = kl_test_read_fixture("creds/sts_web_identity_ok.xml", NULL);
    struct rig r;
    (void)state;

    rig_init(&r, pairs, kl_cred_web_identity_create, "https://sts.example.test", NULL);
    kl_fake_http_push_failure(&r.http, KL_ERR_UNAVAILABLE);
    kl_fake_http_push(&r.http, 200, xml);
    assert_int_equal(rig_resolve(&r), KL_OK);
    assert_int_equal(r.http.n_sent, 2);
    assert_true(r.clock.slept_ms > 0); /* waited (on the injected clock) before the retry */
    rig_free(&r);
    free(xml);
}

static void web_identity_configuration_errors(void **state)
{
    static const char *const only_file[] = {"AWS_WEB_IDENTITY_TOKEN_FILE", TOKEN_FILE, NULL};
    static const char *const only_role[] = {"AWS_ROLE_ARN", ROLE, NULL};
    static const char *const missing_file[] = {"AWS_ROLE_ARN", ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE",
                                               FIXTURES "/no-such-token", NULL};
    static const char *const session[] = {
        "AWS_ROLE_ARN", ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE", TOKEN_FILE, "AWS_ROLE_SESSION_NAME",
        "my session",   NULL};
    char *xml = kl_test_read_fixture("creds/sts_web_identity_ok.xml", NULL);
    struct rig r;
    char v[64];
    (void)state;

    rig_init(&r, only_file, kl_cred_web_identity_create, "https://sts.example.test", NULL);
    assert_int_equal(rig_resolve(&r), KL_ERR_INVALID);
    assert_msg(&r.err, "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not");
    rig_free(&r);

    rig_init(&r, only_role, kl_cred_web_identity_create, "https://sts.example.test", NULL);
    assert_int_equal(rig_resolve(&r), KL_ERR_NOT_FOUND);
    rig_free(&r);

    rig_init(&r, missing_file, kl_cred_web_identity_create, "https://sts.example.test", NULL);
    assert_int_equal(rig_resolve(&r), KL_ERR_IO);
    assert_msg(&r.err, "web identity token file");
    assert_msg(&r.err, "no-such-token");
    assert_int_equal(r.http.n_sent, 0);
    rig_free(&r);

    rig_init(&r, session, kl_cred_web_identity_create, "https://sts.example.test", NULL);
    kl_fake_http_push(&r.http, 200, xml);
    assert_int_equal(rig_resolve(&r), KL_OK);
    assert_true(kl_fake_form_value(r.http.sent[0].body, r.http.sent[0].body_len, "RoleSessionName",
                                   v, sizeof v));
    assert_string_equal(v, "my session");
    assert_non_null(strstr(r.http.sent[0].body, "RoleSessionName=my%20session"));
    rig_free(&r);
    free(xml);
}

static void web_identity_token_file_is_read_every_time(void **state)
{
    char path[512];
    const char *pairs[] = {"AWS_ROLE_ARN", ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE", path, NULL};
    char *xml = kl_test_read_fixture("creds/sts_web_identity_ok.xml", NULL);
    struct rig r;
    char v[64];
    (void)state;

    temp_path(path, sizeof path, "webid-token");
    write_file(path, "token-one\n");
    rig_init(&r, pairs, kl_cred_web_identity_create, "https://sts.example.test", NULL);
    kl_fake_http_push(&r.http, 200, xml);
    kl_fake_http_push(&r.http, 200, xml);
    assert_int_equal(rig_resolve(&r), KL_OK);
    write_file(path, "token-two"); /* what the kubelet does on rotation */
    assert_int_equal(rig_resolve(&r), KL_OK);
    assert_true(kl_fake_form_value(r.http.sent[0].body, r.http.sent[0].body_len, "WebIdentityToken",
                                   v, sizeof v));
    assert_string_equal(v, "token-one");
    assert_true(kl_fake_form_value(r.http.sent[1].body, r.http.sent[1].body_len, "WebIdentityToken",
                                   v, sizeof v));
    assert_string_equal(v, "token-two");

    write_file(path, "\n  \n");
    assert_int_equal(rig_resolve(&r), KL_ERR_INVALID);
    assert_msg(&r.err, "is empty");
    write_file(path, "two\nlines");
    assert_int_equal(rig_resolve(&r), KL_ERR_INVALID);
    assert_msg(&r.err, "control characters");
    assert_int_equal(r.http.n_sent, 2);
    rig_free(&r);
    unlink(path);
    free(xml);
}

/* ---- container ---- */

static void container_relative_uri(void **state)
{
    static const char *const pairs[] = {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                                        "/v2/credentials/5e0a3c1b", NULL};
    char *json = kl_test_read_fixture("creds/container_credentials.json", NULL);
    struct rig r;
    (void)state;

    rig_init(&r, pairs, kl_cred_container_create, NULL, NULL);
    kl_fake_http_push(&r.http, 200, json);
    assert_int_equal(rig_resolve(&r), KL_OK);
    assert_string_equal(r.out.access_key_id, "ASIACONTAINER");
    assert_string_equal(r.out.secret_access_key, "container/secret+key");
    assert_string_equal(r.out.session_token, "Q29udGFpbmVyVG9rZW4=");
    assert_int_equal(r.out.expires_at_ms, 1456380211000LL);
    assert_string_equal(r.out.source, "container");
    assert_string_equal(r.http.sent[0].method, "GET");
    assert_string_equal(r.http.sent[0].url, "http://169.254.170.2/v2/credentials/5e0a3c1b");
    assert_null(kl_fake_http_sent_header(&r.http.sent[0], "Authorization"));
    rig_free(&r);
    free(json);
}

static void container_authorization(void **state)
{
    static const char *const token_var[] = {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:51679/creds",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN", "Basic abc123", NULL};
    static const char *const both[] = {"AWS_CONTAINER_CREDENTIALS_FULL_URI",
                                       "http://169.254.170.23/v1/credentials",
                                       "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                                       "ignored",
                                       "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                                       FIXTURES "/container_auth_token",
                                       NULL};
    static const char *const bad_var[] = {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1/creds",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN", "abc\r\nX-Injected: 1", NULL};
    static const char *const missing_file[] = {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1/creds",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", FIXTURES "/no-such-token", NULL};
    char *json = kl_test_read_fixture("creds/container_credentials.json", NULL);
    struct rig r;
    (void)state;

    rig_init(&r, token_var, kl_cred_container_create, NULL, NULL);
    kl_fake_http_push(&r.http, 200, json);
    assert_int_equal(rig_resolve(&r), KL_OK);
    assert_string_equal(r.http.sent[0].url, "http://127.0.0.1:51679/creds");
    assert_string_equal(kl_fake_http_sent_header(&r.http.sent[0], "Authorization"), "Basic abc123");
    rig_free(&r);

    /* EKS Pod Identity: the file wins over the variable, trailing newline trimmed. */
    rig_init(&r, both, kl_cred_container_create, NULL, NULL);
    kl_fake_http_push(&r.http, 200, json);
    assert_int_equal(rig_resolve(&r), KL_OK);
    assert_string_equal(kl_fake_http_sent_header(&r.http.sent[0], "Authorization"),
                        "pod-identity-token-1");
    rig_free(&r);

    rig_init(&r, bad_var, kl_cred_container_create, NULL, NULL);
    assert_int_equal(rig_resolve(&r), KL_ERR_INVALID);
    assert_msg(&r.err, "control characters");
    assert_int_equal(r.http.n_sent, 0);
    rig_free(&r);

    rig_init(&r, missing_file, kl_cred_container_create, NULL, NULL);
    assert_int_equal(rig_resolve(&r), KL_ERR_IO);
    assert_int_equal(r.http.n_sent, 0);
    rig_free(&r);
    free(json);
}

static void container_token_file_is_read_every_time(void **state)
{
    char path[512];
    const char *pairs[] = {"AWS_CONTAINER_CREDENTIALS_FULL_URI",
                           "http://169.254.170.23/v1/credentials",
                           "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", path, NULL};
    char *json = kl_test_read_fixture("creds/container_credentials.json", NULL);
    struct rig r;
    (void)state;

    temp_path(path, sizeof path, "pod-token");
    write_file(path, "first");
    rig_init(&r, pairs, kl_cred_container_create, NULL, NULL);
    kl_fake_http_push(&r.http, 200, json);
    kl_fake_http_push(&r.http, 200, json);
    assert_int_equal(rig_resolve(&r), KL_OK);
    write_file(path, "second\n");
    assert_int_equal(rig_resolve(&r), KL_OK);
    assert_string_equal(kl_fake_http_sent_header(&r.http.sent[0], "Authorization"), "first");
    assert_string_equal(kl_fake_http_sent_header(&r.http.sent[1], "Authorization"), "second");
    rig_free(&r);
    unlink(path);
    free(json);
}

static void container_full_uri_hosts(void **state)
{
    static const struct {
        const char *uri;
        int allowed;
    } cases[] = {
        {"http://127.0.0.1:8080/creds", 1},
        {"http://127.1.2.3/creds", 1},
        {"http://localhost/creds", 1},
        {"http://LOCALHOST:1234", 1},
        {"http://[::1]:8080/creds", 1},
        {"http://[::ffff:127.0.0.1]/creds", 1},
        {"http://169.254.170.2/v2/credentials", 1},
        {"http://169.254.170.23/v1/credentials", 1},
        {"http://[fd00:ec2::23]/v1/credentials", 1},
        {"https://creds.example.com/creds", 1},
        {"http://creds.example.com/creds", 0},
        {"http://169.254.169.254/latest", 0},
        {"http://10.0.0.1/creds", 0},
        {"http://[fd00:ec2::24]/creds", 0},
        {"http://127.0.0.1.nip.io/creds", 0},
        {"http://user@127.0.0.1/creds", 0},
        {"http://evil.example@127.0.0.1/", 0},
        {"ftp://127.0.0.1/creds", 0},
        {"http://[::1/creds", 0},
        {"127.0.0.1/creds", 0},
    };
    char *json = kl_test_read_fixture("creds/container_credentials.json", NULL);
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *pairs[] = {"AWS_CONTAINER_CREDENTIALS_FULL_URI", cases[i].uri, NULL};
        struct rig r;
        int rc;

        rig_init(&r, pairs, kl_cred_container_create, NULL, NULL);
        kl_fake_http_push(&r.http, 200, json);
        rc = rig_resolve(&r);
        if (cases[i].allowed && rc != KL_OK)
            fail_msg("%s refused: %s", cases[i].uri, r.err.msg);
        if (!cases[i].allowed && (rc != KL_ERR_INVALID || r.http.n_sent != 0))
            fail_msg("%s: rc %d, %zu requests; want it refused before sending", cases[i].uri, rc,
                     r.http.n_sent);
        rig_free(&r);
    }
    free(json);
}

static void container_relative_uri_wins(void **state)
{
    static const char *const pairs[] = {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1/full",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/relative", NULL};
    static const char *const bad[] = {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "relative", NULL};
    char *json = kl_test_read_fixture("creds/container_credentials.json", NULL);
    struct rig r;
    (void)state;

    rig_init(&r, pairs, kl_cred_container_create, NULL, NULL);
    kl_fake_http_push(&r.http, 200, json);
    assert_int_equal(rig_resolve(&r), KL_OK);
    assert_string_equal(r.http.sent[0].url, "http://169.254.170.2/relative");
    rig_free(&r);

    rig_init(&r, bad, kl_cred_container_create, NULL, NULL);
    assert_int_equal(rig_resolve(&r), KL_ERR_INVALID);
    rig_free(&r);
    free(json);
}

struct container_error_case {
    const char *name;
    long status[2];
    const char *body;
    int rc;
    size_t sent;
    const char *msg;
};

static void container_error_table(void **state)
{
    static const struct container_error_case cases[] = {
        {"403 with an error document",
         {403, 0},
         "{\"code\":\"AccessDenied\",\"message\":\"token rejected\"}",
         KL_ERR_AUTH,
         1,
         "HTTP 403 AccessDenied: token rejected"},
        {"500 twice", {500, 500}, "{}", KL_ERR_UNAVAILABLE, 2, "HTTP 500"},
        {"500 then success", {500, 200}, NULL, KL_OK, 2, NULL},
        {"404", {404, 0}, "not found", KL_ERR_UPSTREAM, 1, "HTTP 404"},
        {"not JSON", {200, 0}, "<html/>", KL_ERR_UPSTREAM, 1, "not a JSON object"},
        {"no secret",
         {200, 0},
         "{\"AccessKeyId\":\"A\"}",
         KL_ERR_UPSTREAM,
         1,
         "lacks AccessKeyId or SecretAccessKey"},
        {"bad expiration",
         {200, 0},
         "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\",\"Expiration\":\"later\"}",
         KL_ERR_UPSTREAM,
         1,
         "Expiration later"},
        {"no expiration is allowed",
         {200, 0},
         "{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\"}",
         KL_OK,
         1,
         NULL},
    };
    static const char *const pairs[] = {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                                        "/v2/credentials/secret-id", NULL};
    char *json = kl_test_read_fixture("creds/container_credentials.json", NULL);
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct container_error_case *c = &cases[i];
        struct rig r;
        int rc;

        rig_init(&r, pairs, kl_cred_container_create, NULL, NULL);
        for (size_t k = 0; k < 2 && c->status[k] != 0; k++)
            kl_fake_http_push(&r.http, c->status[k],
                              c->status[k] == 200 && c->body == NULL ? json : c->body);
        rc = rig_resolve(&r);
        if (rc != c->rc)
            fail_msg("%s: rc %d (%s), want %d", c->name, rc, r.err.msg, c->rc);
        if (r.http.n_sent != c->sent)
            fail_msg("%s: %zu requests, want %zu", c->name, r.http.n_sent, c->sent);
        if (c->msg != NULL && strstr(r.err.msg, c->msg) == NULL)
            fail_msg("%s: message \"%s\" lacks \"%s\"", c->name, r.err.msg, c->msg);
        if (rc != KL_OK) /* the credential id in the ECS path stays out of messages */
            assert_null(strstr(r.err.msg, "secret-id"));
        rig_free(&r);
    }
    free(json);
}

/* ---- IMDSv2 ---- */

static void imds_flow(void **state)
{
    static const char *const pairs[] = {NULL};
    char *json = kl_test_read_fixture("creds/imds_credentials.json", NULL);
    const struct kl_fake_http_sent *s;
    struct rig r;
    (void)state;

    rig_init(&r, pairs, kl_cred_imds_create, NULL, NULL);
    kl_fake_http_push(&r.http, 200, "AQAEAFakeImdsToken==");
    kl_fake_http_push(&r.http, 200, "my-instance-role\n");
    kl_fake_http_push(&r.http, 200, json);
    assert_int_equal(rig_resolve(&r), KL_OK);
    assert_string_equal(r.out.access_key_id, "ASIARTEST");
    assert_string_equal(r.out.secret_access_key, "xjtest");
    assert_string_equal(r.out.session_token, "IQote///test");
    assert_int_equal(r.out.expires_at_ms, 1631935916000LL);
    assert_string_equal(r.out.source, "imds:my-instance-role");

    assert_int_equal(r.http.n_sent, 3);
    s = &r.http.sent[0];
    assert_string_equal(s->method, "PUT");
    assert_string_equal(s->url, "http://169.254.169.254/latest/api/token");
    assert_string_equal(kl_fake_http_sent_header(s, "X-aws-ec2-metadata-token-ttl-seconds"),
                        "21600");
    s = &r.http.sent[1];
    assert_string_equal(s->method, "GET");
    assert_string_equal(s->url,
                        "http://169.254.169.254/latest/meta-data/iam/security-credentials/");
    assert_string_equal(kl_fake_http_sent_header(s, "X-aws-ec2-metadata-token"),
                        "AQAEAFakeImdsToken==");
    s = &r.http.sent[2];
    assert_string_equal(s->url, "http://169.254.169.254/latest/meta-data/iam/security-"
                                "credentials/my-instance-role");
    assert_string_equal(kl_fake_http_sent_header(s, "X-aws-ec2-metadata-token"),
                        "AQAEAFakeImdsToken==");
    rig_free(&r);
    free(json);
}

struct imds_endpoint_case {
    const char *name;
    const char *env[6];
    const char *cfg_endpoint;
    int rc;
    const char *url;
};

static void imds_endpoint_table(void **state)
{
    static const struct imds_endpoint_case cases[] = {
        {"config",
         {"AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://env:1", NULL},
         "http://127.0.0.1:9999/",
         KL_OK,
         "http://127.0.0.1:9999/latest/api/token"},
        {"variable",
         {"AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://[fd00:ec2::254]/", NULL},
         NULL,
         KL_OK,
         "http://[fd00:ec2::254]/latest/api/token"},
        {"IPv6 mode",
         {"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6", NULL},
         NULL,
         KL_OK,
         "http://[fd00:ec2::254]/latest/api/token"},
        {"IPv4 mode",
         {"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "ipv4", NULL},
         NULL,
         KL_OK,
         "http://169.254.169.254/latest/api/token"},
        {"bad mode",
         {"AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "dual", NULL},
         NULL,
         KL_ERR_INVALID,
         NULL},
        {"not a URL",
         {"AWS_EC2_METADATA_SERVICE_ENDPOINT", "169.254.169.254", NULL},
         NULL,
         KL_ERR_INVALID,
         NULL},
    };
    char *json = kl_test_read_fixture("creds/imds_credentials.json", NULL);
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct rig r;
        int rc;

        rig_init(&r, cases[i].env, kl_cred_imds_create, NULL, cases[i].cfg_endpoint);
        kl_fake_http_push(&r.http, 200, "tok");
        kl_fake_http_push(&r.http, 200, "role");
        kl_fake_http_push(&r.http, 200, json);
        rc = rig_resolve(&r);
        if (rc != cases[i].rc)
            fail_msg("%s: rc %d (%s)", cases[i].name, rc, r.err.msg);
        if (cases[i].url != NULL)
            assert_string_equal(r.http.sent[0].url, cases[i].url);
        rig_free(&r);
    }
    free(json);
}

struct imds_case {
    const char *name;
    const char *env[4];
    long status[6]; /* -1: transport failure; 0 ends */
    const char *body[6];
    int rc;
    size_t sent;
    const char *msg;
};

static void imds_outcome_table(void **state)
{
    static const char creds[] = "{\"Code\":\"Success\",\"AccessKeyId\":\"A\",\"SecretAccessKey\":"
                                "\"S\",\"Token\":\"T\",\"Expiration\":\"2030-01-01T00:00:00Z\"}";
    static const struct imds_case cases[] = {
        {"disabled",
         {"AWS_EC2_METADATA_DISABLED", "TRUE", NULL},
         {0},
         {NULL},
         KL_ERR_NOT_FOUND,
         0,
         "AWS_EC2_METADATA_DISABLED"},
        {"disabled=false is not disabled",
         {"AWS_EC2_METADATA_DISABLED", "false", NULL},
         {200, 200, 200},
         {"t", "r", creds},
         KL_OK,
         3,
         NULL},
        {"nobody answers", {NULL}, {-1, -1}, {NULL}, KL_ERR_NOT_FOUND, 2, "IMDS not reachable"},
        {"answers on the retry",
         {NULL},
         {-1, 200, 200, 200},
         {NULL, "t", "r", creds},
         KL_OK,
         4,
         NULL},
        {"token 404: not IMDS", {NULL}, {404}, {"nope"}, KL_ERR_NOT_FOUND, 1, "HTTP 404"},
        {"token 403: IMDS off", {NULL}, {403}, {""}, KL_ERR_AUTH, 1, "refused a session token"},
        {"token 405", {NULL}, {405}, {""}, KL_ERR_UPSTREAM, 1, "IMDSv1 is not supported"},
        {"token 503 twice", {NULL}, {503, 503}, {"", ""}, KL_ERR_UNAVAILABLE, 2, "HTTP 503"},
        {"empty token", {NULL}, {200}, {"\n"}, KL_ERR_UPSTREAM, 1, "unusable session token"},
        {"no role attached",
         {NULL},
         {200, 404},
         {"t", ""},
         KL_ERR_NOT_FOUND,
         2,
         "no IAM role is attached"},
        {"token rejected", {NULL}, {200, 401}, {"t", ""}, KL_ERR_AUTH, 2, "HTTP 401"},
        {"odd role name",
         {NULL},
         {200, 200},
         {"t", "../../user-data"},
         KL_ERR_UPSTREAM,
         2,
         "unusable role name"},
        {"role unauthorized",
         {NULL},
         {200, 200, 200},
         {"t", "r",
          "{\"Code\":\"AssumeRoleUnauthorizedAccess\",\"Message\":\"EC2 cannot assume the role\"}"},
         KL_ERR_AUTH,
         3,
         "AssumeRoleUnauthorizedAccess: EC2 cannot assume the role"},
        {"no expiration",
         {NULL},
         {200, 200, 200},
         {"t", "r", "{\"Code\":\"Success\",\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"S\"}"},
         KL_ERR_UPSTREAM,
         3,
         "lacks Expiration"},
        {"credentials 500 twice",
         {NULL},
         {200, 200, 500, 500},
         {"t", "r", "", ""},
         KL_ERR_UNAVAILABLE,
         4,
         "HTTP 500"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct imds_case *c = &cases[i];
        struct rig r;
        int rc;

        rig_init(&r, c->env, kl_cred_imds_create, NULL, NULL);
        for (size_t k = 0; k < 6 && c->status[k] != 0; k++) {
            if (c->status[k] < 0)
                kl_fake_http_push_failure(&r.http, KL_ERR_UNAVAILABLE);
            else
                kl_fake_http_push(&r.http, c->status[k], c->body[k]);
        }
        rc = rig_resolve(&r);
        if (rc != c->rc)
            fail_msg("%s: rc %d (%s), want %d", c->name, rc, r.err.msg, c->rc);
        if (r.http.n_sent != c->sent)
            fail_msg("%s: %zu requests, want %zu", c->name, r.http.n_sent, c->sent);
        if (c->msg != NULL && strstr(r.err.msg, c->msg) == NULL)
            fail_msg("%s: message \"%s\" lacks \"%s\"", c->name, r.err.msg, c->msg);
        rig_free(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sts_documented_response),
        cmocka_unit_test(web_identity_request_and_response),
        cmocka_unit_test(web_identity_endpoint_table),
        cmocka_unit_test(web_identity_error_table),
        cmocka_unit_test(web_identity_transport_failure_is_retried_once),
        cmocka_unit_test(web_identity_configuration_errors),
        cmocka_unit_test(web_identity_token_file_is_read_every_time),
        cmocka_unit_test(container_relative_uri),
        cmocka_unit_test(container_authorization),
        cmocka_unit_test(container_token_file_is_read_every_time),
        cmocka_unit_test(container_full_uri_hosts),
        cmocka_unit_test(container_relative_uri_wins),
        cmocka_unit_test(container_error_table),
        cmocka_unit_test(imds_flow),
        cmocka_unit_test(imds_endpoint_table),
        cmocka_unit_test(imds_outcome_table),
    };
    kl_log_set_level_name("off");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
