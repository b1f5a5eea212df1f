/*
 * The in-process state store against the shared behaviour suite
 * (test_store_suite.h), with a fake clock so leases, task deadlines and
 * retention expire without waiting.
 */
#include "tests/unit/test_store_suite.h"
#include "core/store/memory.h"

static struct kl_fake_clock fake;

static struct kl_store *memory_open(struct kl_store_options *o)
{
    struct kl_err err = {0};
    struct kl_store *s;
    o->clock = &fake.clock;
    s = kl_store_memory_create(o, &err);
    if (s == NULL)
        fail_msg("kl_store_memory_create: %s", err.msg);
    return s;
}

static void memory_advance(int64_t ms)
{
    fake.wall_ms += ms;
    fake.mono_ms += ms;
}

static const struct store_backend BACKEND = {"memory", memory_open, memory_advance, 1000};

static void test_memory_options(void **state)
{
    struct kl_store_options o;
    struct kl_err err = {0};
    struct kl_store *s;
    (void)state;

    kl_store_options_init(&o);
    o.job_retention_ms = 0;
    assert_null(kl_store_memory_create(&o, &err));
    assert_int_equal(err.code, KL_ERR_INVALID);
    s = kl_store_memory_create(NULL, &err);
    assert_non_null(s);
    assert_string_equal(kl_store_name(s), "memory");
    assert_int_equal(kl_store_ping(s, &err), KL_OK);
    kl_store_destroy(s);
    kl_store_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_SUITE_TESTS,
        cmocka_unit_test(test_memory_options),
    };
    kl_fake_clock_init(&fake, 1700000000000);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
