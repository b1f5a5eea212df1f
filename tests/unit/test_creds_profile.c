/*
 * Unit tests for the shared files: the INI dialect (cases follow the
 * profile-file parser suite the AWS SDKs share), merging a profile from both
 * files, and the profile credentials provider on the fixtures in
 * tests/fixtures/creds/home/.aws.
 */
#include "tests/support/test_support.h"
#include "tests/support/fake_server.h"
#include "core/aws/aws_config.h"
#include "core/aws/creds.h"
#include "core/util/env.h"
#include "core/util/err.h"
#include "core/util/log.h"

#include <stdio.h>
#include <string.h>

#define FIXTURES KL_SOURCE_DIR "/tests/fixtures/creds"
#define HOME_DIR FIXTURES "/home"
#define T0 1700000000000LL

enum { CONFIG = KL_AWS_FILE_CONFIG, CREDS = KL_AWS_FILE_CREDENTIALS };

struct ini_case {
    const char *name;
    int file;
    const char *text;
    const char *profile;
    int rc;           /* of parsing */
    int found;        /* the profile's section was seen */
    const char *key;  /* NULL: no property checked */
    const char *want; /* NULL: the property must be absent */
    const char *msg;  /* part of the error message */
};

static const struct ini_case ini_cases[] = {
    {"empty file", CONFIG, "", "foo", KL_OK, 0, NULL, NULL, NULL},
    {"empty profile", CONFIG, "[profile foo]", "foo", KL_OK, 1, "name", NULL, NULL},
    {"profile name characters", CONFIG, "[profile some-thing:long/the_one%only.foo@bar+]\nk = v",
     "some-thing:long/the_one%only.foo@bar+", KL_OK, 1, "k", "v", NULL},
    {"invalid profile name is ignored", CONFIG, "[profile foo!bar]\nk = v", "foo!bar", KL_OK, 0,
     NULL, NULL, NULL},
    {"header must end with ]", CONFIG, "[profile foo", "foo", KL_ERR_INVALID, 0, NULL, NULL,
     ":1: a section header must end with ']'"},
    {"profile name trimmed", CONFIG, "[profile \tfoo \t]\nk = v", "foo", KL_OK, 1, "k", "v", NULL},
    {"tab after the prefix", CONFIG, "[profile\tfoo]\nk = v", "foo", KL_OK, 1, "k", "v", NULL},
    {"whitespace around the whole header", CONFIG, "[   profile foo    ]\nk = v", "foo", KL_OK, 1,
     "k", "v", NULL},
    {"property outside a profile", CONFIG, "name = value", "foo", KL_ERR_INVALID, 0, NULL, NULL,
     ":1: expected a [section]"},
    {"property", CONFIG, "[profile foo]\nname = value", "foo", KL_OK, 1, "name", "value", NULL},
    {"CRLF line ends", CONFIG, "[profile foo]\r\nname = value\r\n", "foo", KL_OK, 1, "name",
     "value", NULL},
    {"= inside a value", CONFIG, "[profile foo]\nname = val=ue", "foo", KL_OK, 1, "name", "val=ue",
     NULL},
    {"UTF-8 value", CONFIG, "[profile foo]\nname = \xf0\x9f\x98\x82", "foo", KL_OK, 1, "name",
     "\xf0\x9f\x98\x82", NULL},
    {"names and values trimmed", CONFIG, "[profile foo]\nname \t=  \tvalue \t", "foo", KL_OK, 1,
     "name", "value", NULL},
    {"empty value", CONFIG, "[profile foo]\nname =", "foo", KL_OK, 1, "name", "", NULL},
    {"property without a name", CONFIG, "[profile foo]\n= value", "foo", KL_ERR_INVALID, 0, NULL,
     NULL, ":2: property without a name"},
    {"property without =", CONFIG, "[profile foo]\nkey : value", "foo", KL_ERR_INVALID, 0, NULL,
     NULL, ":2: expected an '=' sign defining a property"},
    {"properties stay in their profile", CONFIG,
     "[profile foo]\nname = value\n[profile bar]\nname2 = value2", "bar", KL_OK, 1, "name", NULL,
     NULL},
    {"blank lines", CONFIG, "\t \n[profile foo]\n\t\n \nname = value\n\t \n[profile bar]\n \t",
     "foo", KL_OK, 1, "name", "value", NULL},
    {"# comments", CONFIG, "# Comment\n[profile foo] # Comment\nname = value # Comment with # sign",
     "foo", KL_OK, 1, "name", "value", NULL},
    {"; comments", CONFIG, "; Comment\n[profile foo] ; Comment\nname = value ; Comment with ; sign",
     "foo", KL_OK, 1, "name", "value", NULL},
    {"empty comments", CONFIG, ";\n[profile foo];\nname = value ;\n", "foo", KL_OK, 1, "name",
     "value", NULL},
    {"comment adjacent to a header", CONFIG, "[profile foo]; Adjacent\nname = v", "foo", KL_OK, 1,
     "name", "v", NULL},
    {"comment adjacent to a value is the value", CONFIG,
     "[profile foo]\nname = value; Adjacent semicolons", "foo", KL_OK, 1, "name",
     "value; Adjacent semicolons", NULL},
    {"# adjacent to a value is the value", CONFIG, "[profile foo]\nname2 = value# Adjacent", "foo",
     KL_OK, 1, "name2", "value# Adjacent", NULL},
    {"continuation", CONFIG, "[profile foo]\nname = value\n -continued", "foo", KL_OK, 1, "name",
     "value\n-continued", NULL},
    {"several continuations", CONFIG, "[profile foo]\nname = value\n -continued\n -and-continued",
     "foo", KL_OK, 1, "name", "value\n-continued\n-and-continued", NULL},
    {"continuations trimmed", CONFIG, "[profile foo]\nname = value\n \t -continued \t ", "foo",
     KL_OK, 1, "name", "value\n-continued", NULL},
    {"continuations keep comments", CONFIG, "[profile foo]\nname = value\n -continued # Comment",
     "foo", KL_OK, 1, "name", "value\n-continued # Comment", NULL},
    {"continuation outside a profile", CONFIG, " -continued", "foo", KL_ERR_INVALID, 0, NULL, NULL,
     ":1: expected a [section]"},
    {"continuation without a property", CONFIG, "[profile foo]\n -continued", "foo", KL_ERR_INVALID,
     0, NULL, NULL, ":2: expected a property definition, found a continuation"},
    {"a header ends the property", CONFIG,
     "[profile foo]\nname = value\n[profile foo]\n -continued", "foo", KL_ERR_INVALID, 0, NULL,
     NULL, ":4: expected a property definition"},
    {"duplicate profiles merge", CONFIG,
     "[profile foo]\nname = value\n[profile foo]\nname2 = value2", "foo", KL_OK, 1, "name", "value",
     NULL},
    {"duplicate properties: the last wins", CONFIG, "[profile foo]\nname = value\nname = value2",
     "foo", KL_OK, 1, "name", "value2", NULL},
    {"duplicates across sections: the last wins", CONFIG,
     "[profile foo]\nname = value\n[profile foo]\nname = value2", "foo", KL_OK, 1, "name", "value2",
     NULL},
    {"property names ignore case", CONFIG, "[profile foo]\nName = value\n[profile foo]\nname = v2",
     "foo", KL_OK, 1, "name", "v2", NULL},
    {"[profile default] beats [default] (first)", CONFIG,
     "[profile default]\nname = value\n[default]\nname2 = value2", "default", KL_OK, 1, "name2",
     NULL, NULL},
    {"[profile default] beats [default] (last)", CONFIG,
     "[default]\nname2 = value2\n[profile default]\nname = value", "default", KL_OK, 1, "name",
     "value", NULL},
    {"[default] alone", CONFIG, "[default]\nname = value", "default", KL_OK, 1, "name", "value",
     NULL},
    {"invalid profile name", CONFIG, "[profile in valid]\nname = value", "in valid", KL_OK, 0, NULL,
     NULL, NULL},
    {"invalid property name is ignored", CONFIG, "[profile foo]\nin valid = value", "foo", KL_OK, 1,
     "in valid", NULL, NULL},
    {"property name characters", CONFIG, "[profile foo]\nABCxyz0123456789-_ = value", "foo", KL_OK,
     1, "abcxyz0123456789-_", "value", NULL},
    {"sub-properties", CONFIG, "[profile foo]\ns3 =\n name = value", "foo", KL_OK, 1, "s3",
     "\nname = value", NULL},
    {"sub-property without =", CONFIG, "[profile foo]\ns3 =\n invalid", "foo", KL_ERR_INVALID, 0,
     NULL, NULL, ":3: expected an '=' sign defining a sub-property"},
    {"sub-property with an empty value", CONFIG, "[profile foo]\ns3 =\n name =", "foo", KL_OK, 1,
     "s3", "\nname =", NULL},
    {"sub-property without a name", CONFIG, "[profile foo]\ns3 =\n = value", "foo", KL_ERR_INVALID,
     0, NULL, NULL, ":3: sub-property without a name"},
    {"sub-properties skip blank lines", CONFIG,
     "[profile foo]\ns3 =\n name = value\n\t \n name2 = value2", "foo", KL_OK, 1, "s3",
     "\nname = value\nname2 = value2", NULL},
    {"config sections need the prefix", CONFIG, "[foo]\nname = value", "foo", KL_OK, 0, NULL, NULL,
     NULL},
    {"sneaky [profilefoo]", CONFIG, "[profilefoo]\nname = value\n[profile bar]", "foo", KL_OK, 0,
     NULL, NULL, NULL},
    {"sso-session is not a profile", CONFIG, "[sso-session foo]\nname = value", "foo", KL_OK, 0,
     NULL, NULL, NULL},
    {"credentials: [name]", CREDS, "[foo]\nname = value", "foo", KL_OK, 1, "name", "value", NULL},
    {"credentials: [profile name] is ignored", CREDS, "[profile foo]\nname = value", "foo", KL_OK,
     0, NULL, NULL, NULL},
    {"credentials: header whitespace", CREDS, "[   foo    ]\nname = value", "foo", KL_OK, 1, "name",
     "value", NULL},
    {"credentials: [default]", CREDS, "[default]\nk = v", "default", KL_OK, 1, "k", "v", NULL},
};

static void ini_dialect_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof ini_cases / sizeof ini_cases[0]; i++) {
        const struct ini_case *c = &ini_cases[i];
        struct kl_aws_profile p;
        struct kl_err err = {0};
        int rc;

        kl_aws_profile_init(&p);
        rc = kl_aws_profile_parse(c->text, strlen(c->text), (enum kl_aws_file)c->file, "test",
                                  c->profile, &p, &err);
        if (rc != c->rc)
            fail_msg("%s: rc %d (%s), want %d", c->name, rc, err.msg, c->rc);
        if (rc != KL_OK) {
            if (c->msg != NULL && strstr(err.msg, c->msg) == NULL)
                fail_msg("%s: message \"%s\" lacks \"%s\"", c->name, err.msg, c->msg);
        } else {
            int found = p.in_config || p.in_credentials;
            if (found != c->found)
                fail_msg("%s: found %d, want %d", c->name, found, c->found);
            if (c->key != NULL) {
                const char *v = kl_aws_profile_get(&p, c->key);
                if (c->want == NULL && v != NULL)
                    fail_msg("%s: %s = \"%s\", want absent", c->name, c->key, v);
                if (c->want != NULL && (v == NULL || strcmp(v, c->want) != 0))
                    fail_msg("%s: %s = \"%s\", want \"%s\"", c->name, c->key,
                             v != NULL ? v : "(absent)", c->want);
            }
        }
        kl_aws_profile_free(&p);
    }
}

static void profiles_merge_across_files(void **state)
{
    static const char config[] = "[profile default]\nname = value\n[default]\nname2 = value2\n"
                                 "[profile default]\nname3 = value3\n[profile foo]\nshared = cfg";
    static const char credentials[] = "[default]\nsecret = foo\n[foo]\nshared = creds";
    struct kl_aws_profile p;
    struct kl_err err = {0};
    (void)state;

    kl_aws_profile_init(&p);
    assert_int_equal(kl_aws_profile_parse(config, strlen(config), KL_AWS_FILE_CONFIG, "config",
                                          "default", &p, &err),
                     KL_OK);
    assert_int_equal(kl_aws_profile_parse(credentials, strlen(credentials), KL_AWS_FILE_CREDENTIALS,
                                          "credentials", "default", &p, &err),
                     KL_OK);
    assert_string_equal(kl_aws_profile_get(&p, "name"), "value");
    assert_string_equal(kl_aws_profile_get(&p, "name3"), "value3");
    assert_string_equal(kl_aws_profile_get(&p, "secret"), "foo");
    assert_null(kl_aws_profile_get(&p, "name2")); /* [default] yields to [profile default] */
    assert_true(p.in_config && p.in_credentials);
    kl_aws_profile_free(&p);

    /* The credentials file wins whatever the order of loading. */
    kl_aws_profile_init(&p);
    assert_int_equal(kl_aws_profile_parse(credentials, strlen(credentials), KL_AWS_FILE_CREDENTIALS,
                                          "credentials", "foo", &p, &err),
                     KL_OK);
    assert_int_equal(
        kl_aws_profile_parse(config, strlen(config), KL_AWS_FILE_CONFIG, "config", "foo", &p, &err),
        KL_OK);
    assert_string_equal(kl_aws_profile_get(&p, "shared"), "creds");
    kl_aws_profile_free(&p);
}

/* ---- the provider on the fixture files ---- */

struct profile_case {
    const char *name;
    const char *env[10];
    const char *cfg_profile;
    int rc;
    const char *key;
    const char *secret;
    const char *token;
    const char *source;
    const char *msg;
};

static const struct profile_case profile_cases[] = {
    {"default profile",
     {"HOME", HOME_DIR, NULL},
     NULL,
     KL_OK,
     "AKIDDEFAULT",
     "SECRETDEFAULT",
     NULL,
     "profile:default",
     NULL},
    {"spaces and comments",
     {"HOME", HOME_DIR, "AWS_PROFILE", "dev", NULL},
     NULL,
     KL_OK,
     "AKIDDEV",
     "SECRET/DEV+x=",
     "TOKENDEV",
     "profile:dev",
     NULL},
    {"config argument beats AWS_PROFILE",
     {"HOME", HOME_DIR, "AWS_PROFILE", "dev", NULL},
     "upper",
     KL_OK,
     "AKIDUPPER",
     "SECRETUPPER",
     NULL,
     "profile:upper",
     NULL},
    {"key in config, secret in credentials",
     {"HOME", HOME_DIR, NULL},
     "split",
     KL_OK,
     "AKIDSPLIT",
     "SECRETSPLIT",
     NULL,
     "profile:split",
     NULL},
    {"credentials file wins",
     {"HOME", HOME_DIR, NULL},
     "override",
     KL_OK,
     "AKIDFROMCREDS",
     "SECRETFROMCREDS",
     NULL,
     "profile:override",
     NULL},
    {"keys in the config file",
     {"HOME", HOME_DIR, NULL},
     "configonly",
     KL_OK,
     "AKIDCONFIGONLY",
     "SECRETCONFIGONLY",
     NULL,
     "profile:configonly",
     NULL},
    {"# and ; inside values",
     {"HOME", HOME_DIR, NULL},
     "hashes",
     KL_OK,
     "AKID#HASH",
     "pass;word",
     NULL,
     "profile:hashes",
     NULL},
    {"explicit file variables",
     {"AWS_SHARED_CREDENTIALS_FILE", HOME_DIR "/.aws/credentials", "AWS_CONFIG_FILE",
      HOME_DIR "/.aws/config", NULL},
     "dev",
     KL_OK,
     "AKIDDEV",
     "SECRET/DEV+x=",
     "TOKENDEV",
     "profile:dev",
     NULL},
    {"~ in a file variable",
     {"HOME", HOME_DIR, "AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials", "AWS_CONFIG_FILE",
      "~/nothing-here", NULL},
     "split",
     KL_ERR_INVALID,
     NULL,
     NULL,
     NULL,
     NULL,
     "profile split has aws_secret_access_key but no aws_access_key_id"},
    {"key without secret",
     {"HOME", HOME_DIR, NULL},
     "keyonly",
     KL_ERR_INVALID,
     NULL,
     NULL,
     NULL,
     NULL,
     "profile keyonly has aws_access_key_id but no aws_secret_access_key"},
    {"empty profile",
     {"HOME", HOME_DIR, NULL},
     "empty",
     KL_ERR_NOT_FOUND,
     NULL,
     NULL,
     NULL,
     NULL,
     "profile empty has no credentials"},
    {"region-only profile",
     {"HOME", HOME_DIR, NULL},
     "regiononly",
     KL_ERR_NOT_FOUND,
     NULL,
     NULL,
     NULL,
     NULL,
     "has no credentials"},
    {"[profile x] in the credentials file",
     {"HOME", HOME_DIR, NULL},
     "ignored",
     KL_ERR_INVALID,
     NULL,
     NULL,
     NULL,
     NULL,
     "profile ignored is in neither"},
    {"named profile missing",
     {"HOME", HOME_DIR, "AWS_PROFILE", "nosuch", NULL},
     NULL,
     KL_ERR_INVALID,
     NULL,
     NULL,
     NULL,
     NULL,
     "profile nosuch is in neither"},
    {"no files at all",
     {"HOME", FIXTURES "/no-such-home", NULL},
     NULL,
     KL_ERR_NOT_FOUND,
     NULL,
     NULL,
     NULL,
     NULL,
     "profile default is in neither"},
    {"no HOME", {NULL}, NULL, KL_ERR_NOT_FOUND, NULL, NULL, NULL, NULL, "(no HOME)"},
    {"credential_process",
     {"HOME", HOME_DIR, NULL},
     "process",
     KL_ERR_INVALID,
     NULL,
     NULL,
     NULL,
     NULL,
     "profile process uses credential_process, which kinesis-loader does not support"},
    {"SSO",
     {"HOME", HOME_DIR, NULL},
     "sso",
     KL_ERR_INVALID,
     NULL,
     NULL,
     NULL,
     NULL,
     "uses IAM Identity Center (SSO)"},
    {"role chaining",
     {"HOME", HOME_DIR, NULL},
     "chained",
     KL_ERR_INVALID,
     NULL,
     NULL,
     NULL,
     NULL,
     "role_arn with source_profile"},
    {"role without a token file",
     {"HOME", HOME_DIR, NULL},
     "roleonly",
     KL_ERR_INVALID,
     NULL,
     NULL,
     NULL,
     NULL,
     "has role_arn but no web_identity_token_file"},
    {"broken config file",
     {"AWS_CONFIG_FILE", FIXTURES "/broken_config", NULL},
     "broken",
     KL_ERR_INVALID,
     NULL,
     NULL,
     NULL,
     NULL,
     "broken_config:3:"},
};

static void profile_provider_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof profile_cases / sizeof profile_cases[0]; i++) {
        const struct profile_case *c = &profile_cases[i];
        struct kl_env_table env;
        struct kl_cred_chain_config cfg;
        struct kl_cred_provider *p;
        struct kl_aws_creds out;
        struct kl_err err = {0};
        int rc;

        kl_env_table_init(&env, c->env);
        memset(&cfg, 0, sizeof cfg);
        cfg.env = &env.env;
        cfg.profile = c->cfg_profile;
        p = kl_cred_profile_create(&cfg, &err);
        assert_non_null(p);
        kl_aws_creds_init(&out);
        rc = kl_cred_provider_resolve(p, &out, &err);
        if (rc != c->rc)
            fail_msg("%s: rc %d (%s), want %d", c->name, rc, err.msg, c->rc);
        if (rc == KL_OK) {
            assert_string_equal(out.access_key_id, c->key);
            assert_string_equal(out.secret_access_key, c->secret);
            if (c->token == NULL)
                assert_null(out.session_token);
            else
                assert_string_equal(out.session_token, c->token);
            assert_int_equal(out.expires_at_ms, 0);
            assert_string_equal(out.source, c->source);
        } else {
            if (c->msg != NULL && strstr(err.msg, c->msg) == NULL)
                fail_msg("%s: message \"%s\" lacks \"%s\"", c->name, err.msg, c->msg);
            assert_null(strstr(err.msg, "SECRET")); /* no secret in any message */
        }
        kl_aws_creds_free(&out);
        kl_cred_provider_destroy(p);
    }
}

static void profile_with_web_identity_assumes_the_role(void **state)
{
    static const char sts_ok[] =
        "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
        "<AccessKeyId>ASIAPROFILE</AccessKeyId><SecretAccessKey>s</SecretAccessKey>"
        "<SessionToken>t</SessionToken><Expiration>2023-11-15T00:00:00Z</Expiration>"
        "</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
    static const char *const pairs[] = {"HOME", HOME_DIR, "AWS_PROFILE", "webid", NULL};
    struct kl_env_table env;
    struct kl_fake_clock clock;
    struct kl_fake_http http;
    struct kl_cred_chain_config cfg;
    struct kl_cred_provider *p;
    struct kl_aws_creds out;
    struct kl_err err = {0};
    char v[256];
    const struct kl_fake_http_sent *s;
    (void)state;

    kl_env_table_init(&env, pairs);
    kl_fake_clock_init(&clock, T0);
    kl_fake_http_init(&http);
    kl_fake_http_push(&http, 200, sts_ok);
    memset(&cfg, 0, sizeof cfg);
    cfg.env = &env.env;
    cfg.clock = &clock.clock;
    cfg.http = &http.http;
    p = kl_cred_profile_create(&cfg, &err);
    assert_non_null(p);
    kl_aws_creds_init(&out);
    assert_int_equal(kl_cred_provider_resolve(p, &out, &err), KL_OK);
    assert_string_equal(out.access_key_id, "ASIAPROFILE");
    assert_string_equal(out.source, "profile:webid");
    assert_int_equal(out.expires_at_ms, 1700006400000LL);

    assert_int_equal(http.n_sent, 1);
    s = &http.sent[0];
    assert_string_equal(s->method, "POST");
    /* The region comes from the profile. */
    assert_string_equal(s->url, "https://sts.us-east-2.amazonaws.com/");
    assert_true(kl_fake_form_value(s->body, s->body_len, "RoleArn", v, sizeof v));
    assert_string_equal(v, "arn:aws:iam::123456789012:role/webid");
    assert_true(kl_fake_form_value(s->body, s->body_len, "RoleSessionName", v, sizeof v));
    assert_string_equal(v, "fixture-session");
    assert_true(kl_fake_form_value(s->body, s->body_len, "WebIdentityToken", v, sizeof v));
    assert_string_equal(v, "eyJhbGciOiJSUzI1NiJ9.fixture-web-identity-token.sig");
    kl_aws_creds_free(&out);
    kl_cred_provider_destroy(p);
    kl_fake_http_free(&http);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ini_dialect_table),
        cmocka_unit_test(profiles_merge_across_files),
        cmocka_unit_test(profile_provider_table),
        cmocka_unit_test(profile_with_web_identity_assumes_the_role),
    };
    kl_log_set_level_name("off");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
