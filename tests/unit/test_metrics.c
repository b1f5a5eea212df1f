/*
 * The engine's metrics as /metrics prints them (server/metrics.c): every
 * figure under its name and labels, the commit latency histogram, label
 * values escaped, and the store's
 * part left out (kl_store_up 0) when the store did not answer.
 */
#include "tests/support/test_support.h"
#include "server/metrics.h"
#include "core/kinesis/client.h"
#include "core/load/engine.h"
#include "core/store/store.h"
#include "core/util/buf.h"
#include "core/util/err.h"
#include "core/util/histogram.h"

#include <stdio.h>
#include <string.h>

static char *render(const struct kl_engine_metrics *m, struct kl_buf *out)
{
    struct kl_err err = {0};
    kl_buf_init(out, 1 << 20);
    if (kl_engine_metrics_render(m, out, &err) != KL_OK)
        fail_msg("render: %s", err.msg);
    assert_int_equal(kl_buf_append(out, "", 1, &err), KL_OK);
    return out->data;
}

static void has_line(const char *text, const char *line)
{
    char want[512];
    snprintf(want, sizeof want, "\n%s\n", line);
    if (strstr(text, want) == NULL)
        fail_msg("no line '%s' in:\n%s", line, text);
}

static void every_figure_is_reported(void **state)
{
    struct kl_kinesis_stats ks = {.requests = 40, .retries = 3, .throttles = 2, .failures = 1};
    struct kl_store_stats ss = {
        .queued = 5, .in_flight = 2, .delayed = 1, .jobs = {1, 2, 30, 4, 0}};
    struct kl_engine_stats es = {.messages = 1000,
                                 .rows = 2500,
                                 .dead_letters = 7,
                                 .chunks = 12,
                                 .task_retries = 6,
                                 .task_failures = 1,
                                 .task_yields = 9};
    struct kl_shard_lag lags[2] = {
        {.pipeline = "p",
         .stream = "orders",
         .shard_id = "shardId-000000000000",
         .millis_behind = 0},
        {.pipeline = "p",
         .stream = "orders",
         .shard_id = "shardId-000000000001",
         .millis_behind = 86400000},
    };
    struct kl_engine_metrics m = {&ks, &ss, &es, lags, 2};
    struct kl_buf out;
    const char *text;
    (void)state;

    text = render(&m, &out);
    has_line(text, "kl_store_up 1");
    has_line(text, "# TYPE kl_jobs gauge");
    has_line(text, "kl_jobs{status=\"queued\"} 1");
    has_line(text, "kl_jobs{status=\"running\"} 2");
    has_line(text, "kl_jobs{status=\"succeeded\"} 30");
    has_line(text, "kl_jobs{status=\"failed\"} 4");
    has_line(text, "kl_jobs{status=\"cancelled\"} 0");
    has_line(text, "kl_tasks{state=\"queued\"} 5");
    has_line(text, "kl_tasks{state=\"in_flight\"} 2");
    has_line(text, "kl_tasks{state=\"delayed\"} 1");
    has_line(text, "# TYPE kl_messages_loaded_total counter");
    has_line(text, "kl_messages_loaded_total 1000");
    has_line(text, "kl_rows_loaded_total 2500");
    has_line(text, "kl_dead_letters_total 7");
    has_line(text, "kl_chunks_committed_total 12");
    has_line(text, "kl_task_retries_total 6");
    has_line(text, "kl_task_yields_total 9");
    has_line(text, "kl_task_failures_total 1");
    has_line(text, "# TYPE kl_shard_millis_behind_latest gauge");
    has_line(text, "kl_shard_millis_behind_latest{pipeline=\"p\",stream=\"orders\","
                   "shard=\"shardId-000000000000\"} 0");
    has_line(text, "kl_shard_millis_behind_latest{pipeline=\"p\",stream=\"orders\","
                   "shard=\"shardId-000000000001\"} 86400000");
    has_line(text, "kl_kinesis_requests_total 40");
    has_line(text, "kl_kinesis_retries_total 3");
    has_line(text, "kl_kinesis_throttles_total 2");
    has_line(text, "kl_kinesis_failures_total 1");
    has_line(text, "kl_shard_leases_held 0");
    kl_buf_free(&out);
}

/* Commit latency is a histogram in seconds with cumulative buckets, from
 * the engine's millisecond counts; the lease gauge says what is held. */
static void commit_latency_and_leases(void **state)
{
    static const int64_t bounds[] = {500, 1000, 60000};
    struct kl_histogram h;
    struct kl_kinesis_stats ks = {0};
    struct kl_store_stats ss = {0};
    struct kl_engine_stats es = {.leases_held = 3};
    struct kl_engine_metrics m = {&ks, &ss, &es, NULL, 0};
    struct kl_buf out;
    const char *text;
    (void)state;

    kl_histogram_init(&h, bounds, 3);
    kl_histogram_observe(&h, 200);
    kl_histogram_observe(&h, 500);
    kl_histogram_observe(&h, 900);
    kl_histogram_observe(&h, -5); /* clocks apart: counts as 0 */
    kl_histogram_observe(&h, 7200000);
    kl_histogram_snapshot(&h, &es.commit_latency);
    assert_int_equal(es.commit_latency.count, 5);
    text = render(&m, &out);
    has_line(text, "# TYPE kl_record_commit_latency_seconds histogram");
    has_line(text, "kl_record_commit_latency_seconds_bucket{le=\"0.5\"} 3");
    has_line(text, "kl_record_commit_latency_seconds_bucket{le=\"1\"} 4");
    has_line(text, "kl_record_commit_latency_seconds_bucket{le=\"60\"} 4");
    has_line(text, "kl_record_commit_latency_seconds_bucket{le=\"+Inf\"} 5");
    has_line(text, "kl_record_commit_latency_seconds_sum 7201.600");
    has_line(text, "kl_record_commit_latency_seconds_count 5");
    has_line(text, "kl_shard_leases_held 3");
    kl_buf_free(&out);
}

static void label_values_are_escaped(void **state)
{
    struct kl_kinesis_stats ks = {0};
    struct kl_store_stats ss = {0};
    struct kl_engine_stats es = {0};
    struct kl_shard_lag lag = {
        .pipeline = "a\"b\\c\nd", .stream = "s", .shard_id = "x", .millis_behind = 5};
    struct kl_engine_metrics m = {&ks, &ss, &es, &lag, 1};
    struct kl_buf out;
    (void)state;

    has_line(
        render(&m, &out),
        "kl_shard_millis_behind_latest{pipeline=\"a\\\"b\\\\c\\nd\",stream=\"s\",shard=\"x\"} 5");
    kl_buf_free(&out);
}

static void a_silent_store_leaves_its_part_out(void **state)
{
    struct kl_kinesis_stats ks = {0};
    struct kl_engine_stats es = {.messages = 3};
    struct kl_engine_metrics m = {&ks, NULL, &es, NULL, 0};
    struct kl_buf out;
    const char *text;
    (void)state;

    text = render(&m, &out);
    has_line(text, "kl_store_up 0");
    assert_null(strstr(text, "kl_jobs"));
    assert_null(strstr(text, "kl_tasks"));
    has_line(text, "kl_messages_loaded_total 3");
    /* no shard read yet: the family is announced without samples */
    has_line(text, "# TYPE kl_shard_millis_behind_latest gauge");
    kl_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_figure_is_reported),
        cmocka_unit_test(commit_latency_and_leases),
        cmocka_unit_test(label_values_are_escaped),
        cmocka_unit_test(a_silent_store_leaves_its_part_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
