/*
 * Unit tests for core/aws/creds.c and aws_config.c: the credentials record,
 * AWS timestamps, the env and explicit providers, region and endpoint
 * resolution, and the order of the default chain (with a scripted transport).
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

#define FIXTURES KL_SOURCE_DIR "/tests/fixtures/creds"
#define HOME_DIR FIXTURES "/home"
#define T0 1700000000000LL /* 2023-11-14T22:13:20Z */

static void creds_copy_is_deep_and_free_resets(void **state)
{
    struct kl_aws_creds a, b;
    struct kl_err err = {0};
    (void)state;

    kl_aws_creds_init(&a);
    kl_aws_creds_init(&b);
    assert_int_equal(kl_creds_fill(&a, "AKID", "SECRET", "TOKEN", 1234, "test", &err), KL_OK);
    assert_int_equal(kl_aws_creds_copy(&b, &a, &err), KL_OK);
    assert_ptr_not_equal(a.access_key_id, b.access_key_id);
    assert_ptr_not_equal(a.session_token, b.session_token);
    assert_string_equal(b.secret_access_key, "SECRET");
    assert_string_equal(b.session_token, "TOKEN");
    assert_int_equal(b.expires_at_ms, 1234);
    assert_string_equal(b.source, "test");
    kl_aws_creds_free(&a);
    assert_null(a.access_key_id);
    assert_null(a.secret_access_key);
    assert_string_equal(b.access_key_id, "AKID"); /* the copy outlives the original */
    /* An empty session token means long-term keys. */
    assert_int_equal(kl_creds_fill(&a, "AKID2", "SECRET2", "", 0, "x", &err), KL_OK);
    assert_null(a.session_token);
    /* Copying over initialised credentials replaces them. */
    assert_int_equal(kl_aws_creds_copy(&b, &a, &err), KL_OK);
    assert_string_equal(b.access_key_id, "AKID2");
    assert_null(b.session_token);
    kl_aws_creds_free(&a);
    kl_aws_creds_free(&b);
    kl_aws_creds_free(&b); /* freeing twice is harmless */
}

static void iso8601_known_answers(void **state)
{
    static const struct {
        const char *in;
        int ok;
        int64_t ms;
    } cases[] = {
        /* From the STS API reference and the Rust SDK's IMDS tests. */
        {"2014-10-24T23:00:23Z", 1, 1414191623000LL},
        {"2021-09-18T03:31:56Z", 1, 1631935916000LL},
        {"2016-02-25T06:03:31Z", 1, 1456380211000LL},
        {"1970-01-01T00:00:00Z", 1, 0},
        {"2000-02-29T12:00:00Z", 1, 951825600000LL},
        {"2038-01-19T03:14:08Z", 1, 2147483648000LL},
        {"2019-11-20T20:34:49.123+02:00", 1, 1574274889123LL},
        {"2019-11-20T18:34:49.1234567z", 1, 1574274889123LL},
        {"2019-11-20t18:34:49-0130", 1, 1574280289000LL},
        {"2021-02-29T00:00:00Z", 0, 0},
        {"2021-13-01T00:00:00Z", 0, 0},
        {"2021-09-18T24:00:00Z", 0, 0},
        {"2021-09-18T03:31:56", 0, 0}, /* no zone */
        {"2021-09-18", 0, 0},
        {"2021-09-18T03:31:56Zjunk", 0, 0},
        {"2021-09-18T03:31:56.Z", 0, 0},
        {"", 0, 0},
    };
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t ms = -1;
        int rc = kl_creds_parse_time(cases[i].in, &ms);
        if (cases[i].ok) {
            if (rc != 0 || ms != cases[i].ms)
                fail_msg("%s: got rc %d, %lld ms", cases[i].in, rc, (long long)ms);
        } else if (rc == 0) {
            fail_msg("%s: accepted as %lld", cases[i].in, (long long)ms);
        }
    }
}

struct env_case {
    const char *name;
    const char *env[12];
    int rc;
    const char *key;
    const char *token;
    int64_t expires;
    const char *msg;
};

static void env_provider_table(void **state)
{
    static const struct env_case cases[] = {
        {"nothing set", {NULL}, KL_ERR_NOT_FOUND, NULL, NULL, 0, "AWS_ACCESS_KEY_ID is not set"},
        {"empty values are unset",
         {"AWS_ACCESS_KEY_ID", "", "AWS_SECRET_ACCESS_KEY", "", NULL},
         KL_ERR_NOT_FOUND,
         NULL,
         NULL,
         0,
         NULL},
        {"long-term keys",
         {"AWS_ACCESS_KEY_ID", "AKIDENV", "AWS_SECRET_ACCESS_KEY", "S", NULL},
         KL_OK,
         "AKIDENV",
         NULL,
         0,
         NULL},
        {"session token",
         {"AWS_ACCESS_KEY_ID", "ASIAENV", "AWS_SECRET_ACCESS_KEY", "S", "AWS_SESSION_TOKEN", "T",
          NULL},
         KL_OK,
         "ASIAENV",
         "T",
         0,
         NULL},
        {"expiration",
         {"AWS_ACCESS_KEY_ID", "ASIAENV", "AWS_SECRET_ACCESS_KEY", "S", "AWS_SESSION_TOKEN", "T",
          "AWS_CREDENTIAL_EXPIRATION", "2014-10-24T23:00:23Z", NULL},
         KL_OK,
         "ASIAENV",
         "T",
         1414191623000LL,
         NULL},
        {"bad expiration",
         {"AWS_ACCESS_KEY_ID", "A", "AWS_SECRET_ACCESS_KEY", "S", "AWS_CREDENTIAL_EXPIRATION",
          "tomorrow", NULL},
         KL_ERR_INVALID,
         NULL,
         NULL,
         0,
         "AWS_CREDENTIAL_EXPIRATION=tomorrow"},
        {"key without secret",
         {"AWS_ACCESS_KEY_ID", "AKIDENV", NULL},
         KL_ERR_INVALID,
         NULL,
         NULL,
         0,
         "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"},
        {"secret without key",
         {"AWS_SECRET_ACCESS_KEY", "S", NULL},
         KL_ERR_INVALID,
         NULL,
         NULL,
         0,
         "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct env_case *c = &cases[i];
        struct kl_env_table env;
        struct kl_cred_chain_config cfg;
        struct kl_cred_provider *p;
        struct kl_aws_creds out;
        struct kl_err err = {0};
        int rc;

        kl_env_table_init(&env, c->env);
        memset(&cfg, 0, sizeof cfg);
        cfg.env = &env.env;
        p = kl_cred_env_create(&cfg, &err);
        assert_non_null(p);
        kl_aws_creds_init(&out);
        rc = kl_cred_provider_resolve(p, &out, &err);
        if (rc != c->rc)
            fail_msg("%s: rc %d (%s), want %d", c->name, rc, err.msg, c->rc);
        if (rc == KL_OK) {
            assert_string_equal(out.access_key_id, c->key);
            assert_string_equal(out.secret_access_key, "S");
            if (c->token == NULL)
                assert_null(out.session_token);
            else
                assert_string_equal(out.session_token, c->token);
            assert_int_equal(out.expires_at_ms, c->expires);
            assert_string_equal(out.source, "env");
        } else {
            assert_null(out.access_key_id); /* untouched on failure */
            if (c->msg != NULL && strstr(err.msg, c->msg) == NULL)
                fail_msg("%s: message \"%s\" lacks \"%s\"", c->name, err.msg, c->msg);
        }
        kl_aws_creds_free(&out);
        kl_cred_provider_destroy(p);
    }
}

static void static_provider_refuses_half_a_key(void **state)
{
    struct kl_err err = {0};
    struct kl_cred_provider *p;
    struct kl_aws_creds out;
    (void)state;

    assert_null(kl_cred_static_create("AKID", NULL, NULL, "explicit", &err));
    assert_int_equal(err.code, KL_ERR_INVALID);
    assert_non_null(strstr(err.msg, "secret access key is not"));
    assert_null(kl_cred_static_create(NULL, "SECRET", NULL, "explicit", &err));
    assert_int_equal(err.code, KL_ERR_INVALID);

    p = kl_cred_static_create(NULL, NULL, NULL, "explicit", &err);
    assert_non_null(p);
    kl_aws_creds_init(&out);
    assert_int_equal(kl_cred_provider_resolve(p, &out, &err), KL_ERR_NOT_FOUND);
    kl_cred_provider_destroy(p);
    kl_cred_provider_destroy(NULL);
}

struct region_case {
    const char *name;
    const char *env[10];
    const char *profile;
    int rc;
    const char *region;
    const char *msg;
};

static void region_resolution_table(void **state)
{
    static const struct region_case cases[] = {
        {"AWS_REGION", {"AWS_REGION", "eu-central-1", NULL}, NULL, KL_OK, "eu-central-1", NULL},
        {"AWS_DEFAULT_REGION",
         {"AWS_DEFAULT_REGION", "sa-east-1", NULL},
         NULL,
         KL_OK,
         "sa-east-1",
         NULL},
        {"AWS_REGION wins",
         {"AWS_REGION", "eu-north-1", "AWS_DEFAULT_REGION", "sa-east-1", "HOME", HOME_DIR, NULL},
         NULL,
         KL_OK,
         "eu-north-1",
         NULL},
        {"default profile", {"HOME", HOME_DIR, NULL}, NULL, KL_OK, "eu-west-1", NULL},
        {"AWS_PROFILE",
         {"HOME", HOME_DIR, "AWS_PROFILE", "dev", NULL},
         NULL,
         KL_OK,
         "us-west-2",
         NULL},
        {"argument beats AWS_PROFILE",
         {"HOME", HOME_DIR, "AWS_PROFILE", "dev", NULL},
         "override",
         KL_OK,
         "cn-north-1",
         NULL},
        {"prefixed section only",
         {"HOME", HOME_DIR, NULL},
         "regiononly",
         KL_OK,
         "ap-south-1",
         NULL},
        {"AWS_CONFIG_FILE",
         {"AWS_CONFIG_FILE", HOME_DIR "/.aws/config", NULL},
         "dev",
         KL_OK,
         "us-west-2",
         NULL},
        {"profile without region",
         {"HOME", HOME_DIR, NULL},
         "configonly",
         KL_ERR_NOT_FOUND,
         NULL,
         "no AWS region"},
        {"unknown profile", {"HOME", HOME_DIR, NULL}, "nosuch", KL_ERR_NOT_FOUND, NULL, NULL},
        {"nothing at all", {NULL}, NULL, KL_ERR_NOT_FOUND, NULL, "set AWS_REGION"},
        {"bad env value",
         {"AWS_REGION", "us east 1", NULL},
         NULL,
         KL_ERR_INVALID,
         NULL,
         "AWS_REGION: \"us east 1\" is not a region name"},
        {"bad profile value",
         {"HOME", HOME_DIR, NULL},
         "badregion",
         KL_ERR_INVALID,
         NULL,
         "region of profile badregion"},
        {"broken config file",
         {"AWS_CONFIG_FILE", FIXTURES "/broken_config", NULL},
         "broken",
         KL_ERR_INVALID,
         NULL,
         "broken_config:3: expected an '=' sign"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct region_case *c = &cases[i];
        struct kl_env_table env;
        struct kl_err err = {0};
        char out[32] = "untouched";
        int rc;

        kl_env_table_init(&env, c->env);
        rc = kl_aws_region_resolve(&env.env, c->profile, out, sizeof out, &err);
        if (rc != c->rc)
            fail_msg("%s: rc %d (%s), want %d", c->name, rc, err.msg, c->rc);
        if (rc == KL_OK)
            assert_string_equal(out, c->region);
        else
            assert_string_equal(out, "untouched");
        if (rc != KL_OK && c->msg != NULL && strstr(err.msg, c->msg) == NULL)
            fail_msg("%s: message \"%s\" lacks \"%s\"", c->name, err.msg, c->msg);
    }
}

struct endpoint_case {
    const char *name;
    const char *env[8];
    const char *service_env;
    const char *service;
    const char *region;
    size_t cap;
    int rc;
    const char *url;
};

static void endpoint_resolution_table(void **state)
{
    static const struct endpoint_case cases[] = {
        {"standard",
         {NULL},
         "KINESIS",
         "kinesis",
         "us-east-1",
         256,
         KL_OK,
         "https://kinesis.us-east-1.amazonaws.com"},
        {"china",
         {NULL},
         "KINESIS",
         "kinesis",
         "cn-north-1",
         256,
         KL_OK,
         "https://kinesis.cn-north-1.amazonaws.com.cn"},
        {"china northwest",
         {NULL},
         "STS",
         "sts",
         "cn-northwest-1",
         256,
         KL_OK,
         "https://sts.cn-northwest-1.amazonaws.com.cn"},
        {"iso",
         {NULL},
         "KINESIS",
         "kinesis",
         "us-iso-east-1",
         256,
         KL_OK,
         "https://kinesis.us-iso-east-1.c2s.ic.gov"},
        {"isob",
         {NULL},
         "KINESIS",
         "kinesis",
         "us-isob-east-1",
         256,
         KL_OK,
         "https://kinesis.us-isob-east-1.sc2s.sgov.gov"},
        {"GovCloud uses amazonaws.com",
         {NULL},
         "KINESIS",
         "kinesis",
         "us-gov-west-1",
         256,
         KL_OK,
         "https://kinesis.us-gov-west-1.amazonaws.com"},
        {"service override, slash trimmed",
         {"AWS_ENDPOINT_URL_KINESIS", "http://localhost:4567/", NULL},
         "KINESIS",
         "kinesis",
         "us-east-1",
         256,
         KL_OK,
         "http://localhost:4567"},
        {"global override, slashes trimmed",
         {"AWS_ENDPOINT_URL", "http://localhost:4566//", NULL},
         "KINESIS",
         "kinesis",
         "us-east-1",
         256,
         KL_OK,
         "http://localhost:4566"},
        {"service override beats global",
         {"AWS_ENDPOINT_URL", "http://global:1", "AWS_ENDPOINT_URL_KINESIS", "http://kin:2", NULL},
         "KINESIS",
         "kinesis",
         "us-east-1",
         256,
         KL_OK,
         "http://kin:2"},
        {"another service's override does not apply",
         {"AWS_ENDPOINT_URL_STS", "http://sts:1", NULL},
         "KINESIS",
         "kinesis",
         "eu-west-1",
         256,
         KL_OK,
         "https://kinesis.eu-west-1.amazonaws.com"},
        {"path is kept",
         {"AWS_ENDPOINT_URL", "https://proxy.example.com/aws/", NULL},
         NULL,
         "kinesis",
         "eu-west-1",
         256,
         KL_OK,
         "https://proxy.example.com/aws"},
        {"overrides ignored on request",
         {"AWS_ENDPOINT_URL_KINESIS", "http://kin:2", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "TRUE",
          NULL},
         "KINESIS",
         "kinesis",
         "eu-west-1",
         256,
         KL_OK,
         "https://kinesis.eu-west-1.amazonaws.com"},
        {"override needs no region",
         {"AWS_ENDPOINT_URL_KINESIS", "https://k.example", NULL},
         "KINESIS",
         "kinesis",
         NULL,
         256,
         KL_OK,
         "https://k.example"},
        {"no override, no region", {NULL}, "KINESIS", "kinesis", NULL, 256, KL_ERR_NOT_FOUND, NULL},
        {"override without a scheme",
         {"AWS_ENDPOINT_URL_KINESIS", "localhost:4567", NULL},
         "KINESIS",
         "kinesis",
         "us-east-1",
         256,
         KL_ERR_INVALID,
         NULL},
        {"bad region", {NULL}, "KINESIS", "kinesis", "US-EAST-1", 256, KL_ERR_INVALID, NULL},
        {"bad service variable",
         {NULL},
         "kinesis",
         "kinesis",
         "us-east-1",
         256,
         KL_ERR_INVALID,
         NULL},
        {"does not fit", {NULL}, "KINESIS", "kinesis", "us-east-1", 20, KL_ERR_LIMIT, NULL},
    };
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct endpoint_case *c = &cases[i];
        struct kl_env_table env;
        struct kl_err err = {0};
        char out[256] = "untouched";
        int rc;

        kl_env_table_init(&env, c->env);
        rc = kl_aws_endpoint_resolve(&env.env, c->service_env, c->service, c->region, out, c->cap,
                                     &err);
        if (rc != c->rc)
            fail_msg("%s: rc %d (%s), want %d", c->name, rc, err.msg, c->rc);
        if (rc == KL_OK)
            assert_string_equal(out, c->url);
        else
            assert_string_equal(out, "untouched");
    }
}

/* ---- the order of the default chain ---- */

struct reply {
    long status; /* FAIL: transport failure; {0, NULL} ends the list */
    const char *body;
};
#define FAIL (-1)

struct chain_case {
    const char *name;
    const char *env[24];
    const char *explicit_key;
    struct reply replies[4];
    int rc;
    const char *key;
    const char *source;
    const char *first_url; /* of the first request, when one is expected */
    size_t n_sent;
    const char *msg;
};

#define STS_OK_XML                                                                                 \
    "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"            \
    "<AccessKeyId>ASIAWEBID</AccessKeyId><SecretAccessKey>s</SecretAccessKey>"                     \
    "<SessionToken>t</SessionToken><Expiration>2030-01-01T00:00:00Z</Expiration>"                  \
    "</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
#define CONTAINER_JSON                                                                             \
    "{\"AccessKeyId\":\"ASIACONTAINER\",\"SecretAccessKey\":\"s\",\"Token\":\"t\","                \
    "\"Expiration\":\"2030-01-01T00:00:00Z\"}"
#define IMDS_JSON                                                                                  \
    "{\"Code\":\"Success\",\"Type\":\"AWS-HMAC\",\"AccessKeyId\":\"ASIAIMDS\","                    \
    "\"SecretAccessKey\":\"s\",\"Token\":\"t\",\"Expiration\":\"2030-01-01T00:00:00Z\"}"
#define WEBID_ENV                                                                                  \
    "AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/r", "AWS_WEB_IDENTITY_TOKEN_FILE",             \
        HOME_DIR "/web-identity-token"
#define CONTAINER_ENV "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/task"
#define ENV_KEYS "AWS_ACCESS_KEY_ID", "AKIDENV", "AWS_SECRET_ACCESS_KEY", "SENV"

static const struct chain_case chain_cases[] = {
    {"explicit beats everything",
     {ENV_KEYS, "HOME", HOME_DIR, WEBID_ENV, CONTAINER_ENV, NULL},
     "AKIDEXPLICIT",
     {{0, NULL}},
     KL_OK,
     "AKIDEXPLICIT",
     "explicit",
     NULL,
     0,
     NULL},
    {"env beats the profile",
     {ENV_KEYS, "HOME", HOME_DIR, WEBID_ENV, CONTAINER_ENV, NULL},
     NULL,
     {{0, NULL}},
     KL_OK,
     "AKIDENV",
     "env",
     NULL,
     0,
     NULL},
    {"profile beats web identity",
     {"HOME", HOME_DIR, WEBID_ENV, CONTAINER_ENV, NULL},
     NULL,
     {{0, NULL}},
     KL_OK,
     "AKIDDEFAULT",
     "profile:default",
     NULL,
     0,
     NULL},
    {"web identity beats the container",
     {"AWS_REGION", "eu-west-1", WEBID_ENV, CONTAINER_ENV, NULL},
     NULL,
     {{200, STS_OK_XML}},
     KL_OK,
     "ASIAWEBID",
     "web-identity",
     "https://sts.eu-west-1.amazonaws.com/",
     1,
     NULL},
    {"container beats IMDS",
     {CONTAINER_ENV, NULL},
     NULL,
     {{200, CONTAINER_JSON}},
     KL_OK,
     "ASIACONTAINER",
     "container",
     "http://169.254.170.2/v2/credentials/task",
     1,
     NULL},
    {"IMDS last",
     {NULL},
     NULL,
     {{200, "imds-token"}, {200, "my-role\n"}, {200, IMDS_JSON}},
     KL_OK,
     "ASIAIMDS",
     "imds:my-role",
     "http://169.254.169.254/latest/api/token",
     3,
     NULL},
    {"nothing anywhere",
     {NULL},
     NULL,
     {{FAIL, NULL}, {FAIL, NULL}},
     KL_ERR_NOT_FOUND,
     NULL,
     NULL,
     "http://169.254.169.254/latest/api/token",
     2,
     "no AWS credentials found; tried: explicit, env, profile, web identity, container, IMDS"},
    {"IMDS disabled: nothing is sent",
     {"AWS_EC2_METADATA_DISABLED", "true", NULL},
     NULL,
     {{0, NULL}},
     KL_ERR_NOT_FOUND,
     NULL,
     NULL,
     NULL,
     0,
     "AWS_EC2_METADATA_DISABLED"},
    {"half a key pair in env stops the chain",
     {"AWS_ACCESS_KEY_ID", "AKIDENV", "HOME", HOME_DIR, NULL},
     NULL,
     {{0, NULL}},
     KL_ERR_INVALID,
     NULL,
     NULL,
     NULL,
     0,
     "env credentials: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"},
    {"a named profile must exist",
     {"HOME", HOME_DIR, "AWS_PROFILE", "nosuch", CONTAINER_ENV, NULL},
     NULL,
     {{0, NULL}},
     KL_ERR_INVALID,
     NULL,
     NULL,
     NULL,
     0,
     "profile credentials: profile nosuch is in neither"},
    {"no default profile is not an error",
     {"HOME", FIXTURES "/no-such-home", CONTAINER_ENV, NULL},
     NULL,
     {{200, CONTAINER_JSON}},
     KL_OK,
     "ASIACONTAINER",
     "container",
     NULL,
     1,
     NULL},
    {"a broken container endpoint is final",
     {CONTAINER_ENV, NULL},
     NULL,
     {{403, "{\"code\":\"AccessDenied\",\"message\":\"no\"}"}},
     KL_ERR_AUTH,
     NULL,
     NULL,
     NULL,
     1,
     "container credentials: container endpoint http://169.254.170.2: HTTP 403"},
};

static void chain_order_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof chain_cases / sizeof chain_cases[0]; i++) {
        const struct chain_case *c = &chain_cases[i];
        struct kl_env_table env;
        struct kl_fake_clock clock;
        struct kl_fake_http http;
        struct kl_cred_chain_config cfg;
        struct kl_cred_provider *chain;
        struct kl_aws_creds out;
        struct kl_err err = {0};
        int rc;

        kl_env_table_init(&env, c->env);
        kl_fake_clock_init(&clock, T0);
        kl_fake_http_init(&http);
        for (size_t r = 0; r < 4 && c->replies[r].status != 0; r++) {
            if (c->replies[r].status == FAIL)
                kl_fake_http_push_failure(&http, KL_ERR_UNAVAILABLE);
            else
                kl_fake_http_push(&http, c->replies[r].status, c->replies[r].body);
        }
        memset(&cfg, 0, sizeof cfg);
        cfg.env = &env.env;
        cfg.clock = &clock.clock;
        cfg.http = &http.http;
        if (c->explicit_key != NULL) {
            cfg.access_key_id = c->explicit_key;
            cfg.secret_access_key = "SEXPLICIT";
        }
        chain = kl_cred_chain_create(&cfg, &err);
        assert_non_null(chain);
        kl_aws_creds_init(&out);
        rc = kl_cred_provider_resolve(chain, &out, &err);
        if (rc != c->rc)
            fail_msg("%s: rc %d (%s), want %d", c->name, rc, err.msg, c->rc);
        if (rc == KL_OK) {
            assert_string_equal(out.access_key_id, c->key);
            assert_string_equal(out.source, c->source);
        } else if (c->msg != NULL && strstr(err.msg, c->msg) == NULL) {
            fail_msg("%s: message \"%s\" lacks \"%s\"", c->name, err.msg, c->msg);
        }
        if (http.n_sent != c->n_sent)
            fail_msg("%s: %zu requests sent, want %zu", c->name, http.n_sent, c->n_sent);
        if (c->first_url != NULL)
            assert_string_equal(http.sent[0].url, c->first_url);
        kl_aws_creds_free(&out);
        kl_cred_provider_destroy(chain);
        kl_fake_http_free(&http);
    }
}

static void chain_refuses_bad_config(void **state)
{
    static const char *const pairs[] = {NULL};
    struct kl_env_table env;
    struct kl_fake_clock clock;
    struct kl_fake_http http;
    struct kl_cred_chain_config cfg;
    struct kl_err err = {0};
    (void)state;

    kl_env_table_init(&env, pairs);
    kl_fake_clock_init(&clock, T0);
    kl_fake_http_init(&http);
    memset(&cfg, 0, sizeof cfg);
    cfg.env = &env.env;
    cfg.clock = &clock.clock;
    assert_null(kl_cred_chain_create(&cfg, &err)); /* no transport */
    assert_int_equal(err.code, KL_ERR_INVALID);
    cfg.http = &http.http;
    cfg.secret_access_key = "SECRET";
    assert_null(kl_cred_chain_create(&cfg, &err));
    assert_int_equal(err.code, KL_ERR_INVALID);
    assert_null(strstr(err.msg, "SECRET")); /* never echo a secret */
    cfg.access_key_id = "AKID";
    cfg.secret_access_key = NULL;
    assert_null(kl_cred_chain_create(&cfg, &err));
    assert_int_equal(err.code, KL_ERR_INVALID);
    kl_fake_http_free(&http);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(creds_copy_is_deep_and_free_resets),
        cmocka_unit_test(iso8601_known_answers),
        cmocka_unit_test(env_provider_table),
        cmocka_unit_test(static_provider_refuses_half_a_key),
        cmocka_unit_test(region_resolution_table),
        cmocka_unit_test(endpoint_resolution_table),
        cmocka_unit_test(chain_order_table),
        cmocka_unit_test(chain_refuses_bad_config),
    };
    kl_log_set_level_name("off");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
