/*
 * REDIS_URL parsing (core/store/redis.h), table-driven: what users write
 * (redis-cli, redis-py and Kubernetes secrets spell it this way), what is
 * refused, and that the password never shows in messages or redactions.
 */
#include "tests/support/test_support.h"
#include "core/store/redis.h"
#include "core/util/err.h"

#include <string.h>

static const struct {
    const char *url;
    int rc;
    const char *host;
    int port, db;
    const char *user, *password; /* NULL: none */
    const char *redacted;
} cases[] = {
    {"redis://127.0.0.1:56379", KL_OK, "127.0.0.1", 56379, 0, "", NULL,
     "redis://127.0.0.1:56379/0"},
    {"redis://localhost", KL_OK, "localhost", 6379, 0, "", NULL, "redis://localhost:6379/0"},
    {"REDIS://cache.internal:6380/3", KL_OK, "cache.internal", 6380, 3, "", NULL,
     "redis://cache.internal:6380/3"},
    {"redis://redis/", KL_OK, "redis", 6379, 0, "", NULL, "redis://redis:6379/0"},
    {"redis://:s3cret@redis:6379/1", KL_OK, "redis", 6379, 1, "", "s3cret",
     "redis://:***@redis:6379/1"},
    {"redis://loader:p%40ss%3Aw0rd@10.0.0.5", KL_OK, "10.0.0.5", 6379, 0, "loader", "p@ss:w0rd",
     "redis://loader:***@10.0.0.5:6379/0"},
    {"redis://a:b@c@host:1", KL_OK, "host", 1, 0, "a", "b@c", "redis://a:***@host:1/0"},
    {"redis://[::1]:7000/2", KL_OK, "::1", 7000, 2, "", NULL, "redis://[::1]:7000/2"},
    {"redis://[::1]", KL_OK, "::1", 6379, 0, "", NULL, "redis://[::1]:6379/0"},
    {"rediss://redis:6380", KL_ERR_INVALID, NULL, 0, 0, NULL, NULL, NULL},
    {"http://redis", KL_ERR_INVALID, NULL, 0, 0, NULL, NULL, NULL},
    {"redis://", KL_ERR_INVALID, NULL, 0, 0, NULL, NULL, NULL},
    {"redis://redis:0", KL_ERR_INVALID, NULL, 0, 0, NULL, NULL, NULL},
    {"redis://redis:65536", KL_ERR_INVALID, NULL, 0, 0, NULL, NULL, NULL},
    {"redis://redis:12ab", KL_ERR_INVALID, NULL, 0, 0, NULL, NULL, NULL},
    {"redis://redis/db1", KL_ERR_INVALID, NULL, 0, 0, NULL, NULL, NULL},
    {"redis://redis/-1", KL_ERR_INVALID, NULL, 0, 0, NULL, NULL, NULL},
    {"redis://redis?db=1", KL_ERR_INVALID, NULL, 0, 0, NULL, NULL, NULL},
    {"redis://onlySECRET@redis", KL_ERR_INVALID, NULL, 0, 0, NULL, NULL, NULL},
    {"redis://user:@redis", KL_ERR_INVALID, NULL, 0, 0, NULL, NULL, NULL},
    {"redis://:badSECRET%zz@redis", KL_ERR_INVALID, NULL, 0, 0, NULL, NULL, NULL},
    {"redis://:nulSECRET%00@redis", KL_ERR_INVALID, NULL, 0, 0, NULL, NULL, NULL},
    {"redis://[::1:7000", KL_ERR_INVALID, NULL, 0, 0, NULL, NULL, NULL},
    {"redis://:pw@", KL_ERR_INVALID, NULL, 0, 0, NULL, NULL, NULL},
    {NULL, KL_ERR_INVALID, NULL, 0, 0, NULL, NULL, NULL},
};

static void test_parse(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct kl_redis_url u;
        struct kl_err err = {0};
        char redacted[512];
        int rc;
        memset(&u, 0, sizeof u);
        rc = kl_redis_url_parse(cases[i].url, &u, &err);
        if (rc != cases[i].rc)
            fail_msg("%s: got %s (%s)", cases[i].url ? cases[i].url : "(null)",
                     kl_err_code_name(rc), err.msg);
        if (rc != KL_OK) {
            /* messages describe, they never quote the URL (it may hold a password) */
            assert_null(strstr(err.msg, "SECRET"));
            continue;
        }
        assert_string_equal(u.host, cases[i].host);
        assert_int_equal(u.port, cases[i].port);
        assert_int_equal(u.db, cases[i].db);
        assert_string_equal(u.user, cases[i].user);
        if (cases[i].password == NULL)
            assert_null(u.password);
        else
            assert_string_equal(u.password, cases[i].password);
        kl_redis_url_redacted(&u, redacted, sizeof redacted);
        assert_string_equal(redacted, cases[i].redacted);
        kl_redis_url_free(&u);
        assert_null(u.password);
        kl_redis_url_free(NULL);
    }
}

static void test_create_checks_url_and_options(void **state)
{
    struct kl_store_options o;
    struct kl_err err = {0};
    struct kl_store *s;
    (void)state;

    assert_null(kl_store_redis_create("rediss://x", NULL, &err));
    assert_int_equal(err.code, KL_ERR_INVALID);
    kl_store_options_init(&o);
    o.key_prefix = "";
    assert_null(kl_store_redis_create("redis://x", &o, &err));
    assert_int_equal(err.code, KL_ERR_INVALID);
    /* no connection is made at creation: a Redis that is down does not stop start-up */
    s = kl_store_redis_create("redis://:pw@127.0.0.1:1", NULL, &err);
    assert_non_null(s);
    assert_string_equal(kl_store_name(s), "redis");
    kl_store_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_create_checks_url_and_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
