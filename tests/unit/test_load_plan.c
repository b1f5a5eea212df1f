/*
 * The engine's plan without an emulator: which shards a planning task
 * queues, which children a drained shard queues (splits, merges, parents
 * past retention), and the task description's text form; and the lag
 * registry behind kl_shard_millis_behind_latest (bounds, expiry, order).
 */
#include "tests/support/test_support.h"
#include "core/load/lag.h"
#include "core/load/plan.h"
#include "core/store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A shard list from "id<parent<adjacent!" specs: '!' marks a closed shard. */
static void make_shards(struct kl_shard_list *l, const char *const *specs, size_t n)
{
    l->shards = calloc(n, sizeof *l->shards);
    assert_non_null(l->shards);
    l->n = n;
    for (size_t i = 0; i < n; i++) {
        struct kl_shard *s = &l->shards[i];
        char buf[256], *parent, *adjacent;
        size_t len;
        snprintf(buf, sizeof buf, "%s", specs[i]);
        len = strlen(buf);
        if (len > 0 && buf[len - 1] == '!') {
            buf[len - 1] = '\0';
            snprintf(s->ending_seq, sizeof s->ending_seq, "99");
        }
        parent = strchr(buf, '<');
        adjacent = parent != NULL ? strchr(parent + 1, '<') : NULL;
        if (adjacent != NULL)
            *adjacent++ = '\0';
        if (parent != NULL)
            *parent++ = '\0';
        /* Each id must fit (the checked return value also tells GCC's
         * -Wformat-truncation that truncation is handled). */
        assert_true((size_t)snprintf(s->id, sizeof s->id, "%s", buf) < sizeof s->id);
        assert_true((size_t)snprintf(s->parent_id, sizeof s->parent_id, "%s",
                                     parent != NULL ? parent : "") < sizeof s->parent_id);
        assert_true((size_t)snprintf(s->adjacent_parent_id, sizeof s->adjacent_parent_id, "%s",
                                     adjacent != NULL ? adjacent : "") <
                    sizeof s->adjacent_parent_id);
    }
}

/* A job whose progress lists `done` shards as done. */
static void make_job(struct kl_store_job *j, const char *const *done, size_t n)
{
    kl_store_job_init(j);
    j->shards = calloc(n > 0 ? n : 1, sizeof *j->shards);
    assert_non_null(j->shards);
    j->n_shards = n;
    for (size_t i = 0; i < n; i++) {
        kl_position_set(&j->shards[i].position, done[i], "", -1);
        j->shards[i].done = true;
    }
}

static void the_plan_starts_where_no_parent_is_listed(void **state)
{
    /* s2 was split into s3 and s4 (s2 listed); s0's parent is past retention;
     * s5 merges s3 and s4 */
    static const char *const specs[] = {"s0<gone", "s1", "s2!", "s3<s2!", "s4<s2!", "s5<s3<s4"};
    struct kl_shard_list l = {0};
    bool want[] = {true, true, true, false, false, false};
    (void)state;

    make_shards(&l, specs, 6);
    for (size_t i = 0; i < l.n; i++)
        if (kl_plan_is_first(&l, &l.shards[i]) != want[i])
            fail_msg("%s: first %d, expected %d", l.shards[i].id, !want[i], want[i]);
    kl_shard_list_free(&l);
}

static void children_start_once_every_listed_parent_is_drained(void **state)
{
    static const char *const specs[] = {"s2!", "s3<s2!", "s4<s2!", "s5<s3<s4", "s6<s4<gone"};
    static const char *const s3_done[] = {"s3"};
    struct kl_shard_list l = {0};
    struct kl_store_job none, s3;
    (void)state;

    make_shards(&l, specs, 5);
    make_job(&none, NULL, 0);
    make_job(&s3, s3_done, 1);
    /* a split: both children follow their parent */
    assert_true(kl_plan_child_ready(&l, &l.shards[1], "s2", &none));
    assert_true(kl_plan_child_ready(&l, &l.shards[2], "s2", &none));
    assert_false(kl_plan_child_ready(&l, &l.shards[3], "s2", &none)); /* not its child */
    assert_false(kl_plan_child_ready(&l, &l.shards[0], "s2", &none)); /* itself */
    /* a merge waits for its other parent */
    assert_false(kl_plan_child_ready(&l, &l.shards[3], "s4", &none));
    assert_true(kl_plan_child_ready(&l, &l.shards[3], "s4", &s3));
    assert_false(kl_plan_child_ready(&l, &l.shards[3], "s3", &s3)); /* s4 is not done */
    /* a parent no longer listed does not block */
    assert_true(kl_plan_child_ready(&l, &l.shards[4], "s4", &none));
    kl_store_job_free(&none);
    kl_store_job_free(&s3);
    kl_shard_list_free(&l);
}

static void a_task_description_round_trips_and_rejects_other_text(void **state)
{
    static const char *const specs[] = {"s5<s3<s4!", "s1"};
    static const char *const bad[] = {"", "x|a|b", "1", "1|", "1|a", "2|a|b", "1|a|b|c", "|a|b"};
    struct kl_shard_list l = {0};
    struct kl_shard_task_desc d, back;
    char text[KL_SHARD_TASK_DESC_MAX], longid[KL_SHARD_ID_MAX + 8];
    (void)state;

    make_shards(&l, specs, 2);
    kl_shard_task_desc_of(&l.shards[0], &d);
    kl_shard_task_desc_format(&d, text, sizeof text);
    assert_string_equal(text, "1|s3|s4"); /* the form tasks queued by earlier versions carry */
    assert_int_equal(kl_shard_task_desc_parse(text, &back), 0);
    assert_true(back.closed);
    assert_string_equal(back.parents[0], "s3");
    assert_string_equal(back.parents[1], "s4");
    kl_shard_task_desc_of(&l.shards[1], &d);
    kl_shard_task_desc_format(&d, text, sizeof text);
    assert_string_equal(text, "0||");
    assert_int_equal(kl_shard_task_desc_parse(text, &back), 0);
    assert_false(back.closed);
    assert_string_equal(back.parents[0], "");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (kl_shard_task_desc_parse(bad[i], &back) == 0)
            fail_msg("'%s' parsed", bad[i]);
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    snprintf(text, sizeof text, "0|%.140s|", longid);
    assert_int_equal(kl_shard_task_desc_parse(text, &back), -1);
    kl_shard_list_free(&l);
}

static void the_lag_registry_keeps_the_latest_per_shard_in_order(void **state)
{
    struct kl_fake_clock clock;
    struct kl_lag_registry r;
    struct kl_shard_lag *out = NULL;
    (void)state;

    kl_fake_clock_init(&clock, 1700000000000LL);
    kl_lag_registry_init(&r, &clock.clock);
    kl_lag_note(&r, "p", "orders", "s1", 500);
    kl_lag_note(&r, "p", "clicks", "s0", 7);
    kl_lag_note(&r, "p", "orders", "s0", 0);
    kl_lag_note(&r, "p", "orders", "s1", 20); /* replaces 500 */
    kl_lag_note(&r, "p", "orders", "s9", -1); /* unknown: ignored */
    assert_int_equal(kl_lag_snapshot(&r, &out), 3);
    assert_string_equal(out[0].stream, "clicks");
    assert_string_equal(out[1].shard_id, "s0");
    assert_string_equal(out[2].shard_id, "s1");
    assert_int_equal(out[2].millis_behind, 20);
    free(out);
    /* 15 minutes without a read: forgotten */
    clock.mono_ms += KL_LAG_KEEP_MS - 1;
    kl_lag_note(&r, "p", "orders", "s0", 1);
    clock.mono_ms += 1;
    assert_int_equal(kl_lag_snapshot(&r, &out), 1);
    assert_string_equal(out[0].shard_id, "s0");
    free(out);
    kl_lag_registry_destroy(&r);
}

static void the_lag_registry_is_bounded_and_drops_the_least_recent(void **state)
{
    struct kl_fake_clock clock;
    struct kl_lag_registry r;
    struct kl_shard_lag *out = NULL;
    char id[32];
    size_t n;
    bool first_kept = false, second_kept = false;
    (void)state;

    kl_fake_clock_init(&clock, 1700000000000LL);
    kl_lag_registry_init(&r, &clock.clock);
    for (int i = 0; i < KL_LAGS_MAX + 10; i++) {
        snprintf(id, sizeof id, "shard-%05d", i);
        clock.mono_ms++;
        kl_lag_note(&r, "p", "s", id, i);
        if (i == 0)
            kl_lag_note(&r, "p", "s", "shard-00000", 0); /* read again: still the oldest */
    }
    n = kl_lag_snapshot(&r, &out);
    assert_int_equal(n, KL_LAGS_MAX);
    for (size_t i = 0; i < n; i++) {
        first_kept |= strcmp(out[i].shard_id, "shard-00000") == 0;
        second_kept |= strcmp(out[i].shard_id, "shard-00010") == 0;
    }
    assert_false(first_kept);
    assert_true(second_kept);
    free(out);
    kl_lag_registry_destroy(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_plan_starts_where_no_parent_is_listed),
        cmocka_unit_test(children_start_once_every_listed_parent_is_drained),
        cmocka_unit_test(a_task_description_round_trips_and_rejects_other_text),
        cmocka_unit_test(the_lag_registry_keeps_the_latest_per_shard_in_order),
        cmocka_unit_test(the_lag_registry_is_bounded_and_drops_the_least_recent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
