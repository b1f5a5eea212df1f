/*
 * Unit tests for core/util: bounded buffers, error detail, log lines, env tables.
 */
#include "tests/support/test_support.h"
#include "core/util/arena.h"
#include "core/util/buf.h"
#include "core/util/env.h"
#include "core/util/err.h"
#include "core/util/log.h"
#include "core/util/rand.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void buf_refuses_growth_past_its_maximum(void **state)
{
    struct kl_buf b;
    struct kl_err err = {0};
    (void)state;

    kl_buf_init(&b, 8);
    assert_int_equal(kl_buf_append_str(&b, "12345678", &err), KL_OK);
    assert_string_equal(b.data, "12345678");
    assert_int_equal(kl_buf_append(&b, "9", 1, &err), KL_ERR_LIMIT);
    assert_int_equal(err.code, KL_ERR_LIMIT);
    assert_int_equal(b.len, 8);
    kl_buf_free(&b);
}

static void secure_buf_grows_without_realloc(void **state)
{
    struct kl_buf b;
    (void)state;

    kl_buf_init(&b, 1 << 20);
    b.secure = true;
    for (int i = 0; i < 100; i++)
        assert_int_equal(kl_buf_append_str(&b, "secret-token-", NULL), KL_OK);
    assert_int_equal(b.len, 1300);
    assert_memory_equal(b.data + 1287, "secret-token-", 13);
    kl_buf_free_secure(&b);
    assert_null(b.data);
}

static void buf_printf_and_steal(void **state)
{
    struct kl_buf b;
    size_t len;
    char *s;
    (void)state;

    kl_buf_init(&b, 1 << 20);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(kl_buf_printf(&b, NULL, "%d,", i), KL_OK);
    s = kl_buf_steal(&b, &len);
    assert_int_equal(len, strlen(s));
    assert_memory_equal(s, "0,1,2,", 6);
    assert_null(b.data);
    free(s);
    s = kl_buf_steal(&b, &len);
    assert_string_equal(s, "");
    free(s);
}

static void err_set_prefix_and_names(void **state)
{
    struct kl_err err;
    (void)state;

    assert_int_equal(kl_err_set(&err, KL_ERR_UNAVAILABLE, "throttled %d", 3), KL_ERR_UNAVAILABLE);
    kl_err_prefix(&err, "GetRecords");
    assert_string_equal(err.msg, "GetRecords: throttled 3");
    assert_true(kl_err_retryable(KL_ERR_UNAVAILABLE));
    assert_false(kl_err_retryable(KL_ERR_AUTH));
    assert_string_equal(kl_err_code_name(KL_ERR_NOT_FOUND), "not_found");
    assert_int_equal(kl_err_set(NULL, KL_ERR_INVALID, "x"), KL_ERR_INVALID);
}

static void log_writes_one_json_line_with_context(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    struct kl_log_ctx ctx = {"job-1", "orders", "shardId-000000000001"};
    (void)state;

    assert_non_null(f);
    kl_log_set_sink(f);
    assert_int_equal(kl_log_set_level_name("warn"), 0);
    KL_INFO("test", &ctx, "hidden");
    KL_WARN("test", &ctx, "quote \" and\nnewline");
    fflush(f);
    kl_log_set_sink(NULL);
    assert_int_equal(kl_log_set_level_name("bogus"), -1);
    kl_log_set_level_name("info");
    fclose(f);
    assert_null(strstr(text, "hidden"));
    assert_non_null(strstr(text, "\"level\":\"warn\""));
    assert_non_null(strstr(text, "\"job_id\":\"job-1\",\"stream\":\"orders\","
                                 "\"shard\":\"shardId-000000000001\""));
    assert_non_null(strstr(text, "\"msg\":\"quote \\\" and\\nnewline\"}\n"));
    assert_int_equal(strchr(text, '\n') - text + 1, (long)len);
    free(text);
}

static void env_table_treats_empty_as_unset(void **state)
{
    static const char *const pairs[] = {"A", "1", "EMPTY", "", NULL};
    struct kl_env_table t;
    (void)state;

    kl_env_table_init(&t, pairs);
    assert_string_equal(kl_env_get(&t.env, "A"), "1");
    assert_null(kl_env_get(&t.env, "EMPTY"));
    assert_null(kl_env_get(&t.env, "MISSING"));
}

static void rand_below_stays_in_range(void **state)
{
    (void)state;
    for (int i = 0; i < 10000; i++)
        assert_true(kl_rand_below(7) < 7);
    assert_int_equal(kl_rand_below(0), 0);
}

static void arena_keeps_pointers_and_honours_its_cap(void **state)
{
    struct kl_arena a;
    char *first, *big, *s;
    (void)state;

    kl_arena_init(&a, 64, 4096);
    first = kl_arena_strndup(&a, "hello world", 5);
    assert_string_equal(first, "hello");
    for (int i = 0; i < 20; i++)
        assert_non_null(kl_arena_alloc(&a, 40));
    big = kl_arena_alloc(&a, 1000); /* larger than a block: a block of its own */
    assert_non_null(big);
    memset(big, 'x', 1000);
    assert_string_equal(first, "hello");
    assert_int_equal((uintptr_t)kl_arena_alloc(&a, 3) % 8, 0);
    assert_null(kl_arena_alloc(&a, 4096)); /* over the cap */
    kl_arena_reset(&a);
    assert_int_equal(kl_arena_used(&a), 0);
    s = kl_arena_strndup(&a, "again", 5);
    assert_string_equal(s, "again");
    kl_arena_free(&a);
}

/* The one escaper of log lines: quotes, backslashes, newlines, control
 * characters and DEL; what does not fit is cut at a character and said. */
static void log_escape_is_json_and_says_when_it_cut(void **state)
{
    char out[64];
    bool whole = false;
    size_t n;
    (void)state;

    n = kl_log_escape(out, 0, sizeof out, "a\"b\\c\nd\x01\x7f", &whole);
    out[n] = '\0';
    assert_true(whole);
    assert_string_equal(out, "a\\\"b\\\\c\\nd\\u0001\\u007f");
    n = kl_log_escape(out, 0, 12, "abcdefghijkl", &whole);
    assert_false(whole);
    assert_int_equal(n, 5); /* room for a 6-byte escape is kept */
    assert_int_equal(kl_log_escape(out, 3, sizeof out, "", NULL), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buf_refuses_growth_past_its_maximum),
        cmocka_unit_test(buf_printf_and_steal),
        cmocka_unit_test(secure_buf_grows_without_realloc),
        cmocka_unit_test(err_set_prefix_and_names),
        cmocka_unit_test(log_writes_one_json_line_with_context),
        cmocka_unit_test(env_table_treats_empty_as_unset),
        cmocka_unit_test(rand_below_stays_in_range),
        cmocka_unit_test(arena_keeps_pointers_and_honours_its_cap),
        cmocka_unit_test(log_escape_is_json_and_says_when_it_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
