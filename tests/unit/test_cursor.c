/*
 * One shard's reading against a scripted transport: the stop rule (full,
 * short and empty pages, with and without lag; records that arrived after
 * the job started), AT_TIMESTAMP on an endpoint that does not answer it,
 * a call that passes its deadline, resuming
 * right after a stored position, gaps when that position is gone, expired
 * iterators, closed shards and their children, pacing, and the memory a
 * page is given.
 */
#include "tests/support/test_support.h"
#include "core/aws/creds.h"
#include "core/kinesis/cursor.h"
#include "core/util/err.h"
#include "core/util/membudget.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fixture {
    struct kl_fake_http http;
    struct kl_fake_clock clock;
    struct kl_kinesis *k;
    struct kl_chunk chunk;
};

/* (Re)creates the fixture's client for `endpoint`; 0 timeouts: defaults. */
static void open_client(struct fixture *f, const char *endpoint, long timeout_ms,
                        int64_t deadline_ms)
{
    struct kl_kinesis_config cfg = {0};
    struct kl_err err;

    kl_kinesis_destroy(f->k);
    cfg.endpoint = endpoint;
    cfg.region = "us-east-1";
    cfg.http = &f->http.http;
    cfg.creds = kl_test_fixed_creds();
    cfg.clock = &f->clock.clock;
    cfg.timeout_ms = timeout_ms;
    cfg.call_deadline_ms = deadline_ms;
    f->k = kl_kinesis_create(&cfg, &err);
    assert_non_null(f->k);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);

    assert_non_null(f);
    kl_fake_http_init(&f->http);
    kl_fake_clock_init(&f->clock, 1700000000000LL);
    open_client(f, "http://127.0.0.1:1", 0, 0);
    kl_chunk_init(&f->chunk);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kl_chunk_free(&f->chunk);
    kl_kinesis_destroy(f->k);
    kl_fake_http_free(&f->http);
    free(f);
    return 0;
}

static struct kl_cursor *open_cursor_with(struct fixture *f, struct kl_cursor_options *o)
{
    struct kl_err err;
    struct kl_cursor *c;

    o->client = f->k;
    o->stream = "orders";
    o->shard_id = "shardId-000000000001";
    o->clock = &f->clock.clock;
    c = kl_cursor_create(o, &err);
    assert_non_null(c);
    return c;
}

static struct kl_cursor *open_cursor(struct fixture *f, const struct kl_shard_position *resume,
                                     int64_t mbl, bool read_to_end, int64_t interval)
{
    struct kl_cursor_options o;
    struct kl_err err;
    struct kl_cursor *c;

    memset(&o, 0, sizeof o);
    o.client = f->k;
    o.stream = "orders";
    o.shard_id = "shardId-000000000001";
    o.start.type = KL_ITER_TRIM_HORIZON;
    o.resume = resume;
    o.millis_behind_latest = mbl;
    o.read_to_end = read_to_end;
    o.min_call_interval_ms = interval;
    o.clock = &f->clock.clock;
    c = kl_cursor_create(&o, &err);
    assert_non_null(c);
    return c;
}

/* "{"id":N}" base64-encoded, for record Data. */
static const char *const ids_b64[] = {
    "eyJpZCI6MH0=", "eyJpZCI6MX0=", "eyJpZCI6Mn0=", "eyJpZCI6M30=", "eyJpZCI6NH0="};

/* A page whose records arrived at `arrival_s` (epoch seconds). */
static char *page_at(const char *seqs, const char *next, long mbl, double arrival_s)
{
    static char buf[4096];
    char recs[3000] = "";
    size_t pos = 0;
    int idx = 0;
    const char *p = seqs;
    while (p != NULL && *p) {
        const char *comma = strchr(p, ',');
        int len = comma ? (int)(comma - p) : (int)strlen(p);
        pos += (size_t)snprintf(recs + pos, sizeof recs - pos,
                                "%s{\"SequenceNumber\":\"%.*s\",\"ApproximateArrivalTimestamp\":"
                                "%.3f,\"Data\":\"%s\",\"PartitionKey\":\"pk\"}",
                                idx ? "," : "", len, p, arrival_s, ids_b64[idx % 5]);
        idx++;
        p = comma ? comma + 1 : NULL;
    }
    if (next != NULL)
        snprintf(buf, sizeof buf,
                 "{\"Records\":[%s],\"NextShardIterator\":\"%s\",\"MillisBehindLatest\":%ld}", recs,
                 next, mbl);
    else
        snprintf(buf, sizeof buf,
                 "{\"Records\":[%s],\"NextShardIterator\":null,\"MillisBehindLatest\":%ld,"
                 "\"ChildShards\":[{\"ShardId\":\"shardId-000000000003\",\"ParentShards\":"
                 "[\"shardId-000000000001\"],\"HashKeyRange\":{\"StartingHashKey\":\"0\","
                 "\"EndingHashKey\":\"9\"}}]}",
                 recs, mbl);
    return strdup(buf);
}

static char *page(const char *seqs, const char *next, long mbl)
{
    return page_at(seqs, next, mbl, 1700000000.5);
}

static void reads_until_behind_less_than_the_threshold(void **state)
{
    struct fixture *f = *state;
    struct kl_cursor *c = open_cursor(f, NULL, 1000, false, 0);
    char *p1 = page("100,101", "it-2", 5000), *p2 = page("102", "it-3", 999);
    struct kl_err err;

    kl_fake_http_push(&f->http, 200, "{\"ShardIterator\":\"it-1\"}");
    kl_fake_http_push(&f->http, 200, p1);
    kl_fake_http_push(&f->http, 200, p2);
    assert_int_equal(kl_cursor_fetch(c, 100, &f->chunk, &err), KL_OK);
    assert_int_equal(f->chunk.n_messages, 2);
    assert_false(f->chunk.shard_done);
    assert_string_equal(f->chunk.messages[0].stream_name, "orders");
    assert_string_equal(f->chunk.messages[0].shard_id, "shardId-000000000001");
    assert_string_equal(f->chunk.messages[1].sequence, "101");
    assert_int_equal(f->chunk.messages[1].sub_sequence, -1);
    assert_int_equal(f->chunk.messages[1].arrival_ms, 1700000000500LL);
    assert_string_equal((const char *)f->chunk.messages[1].data, "{\"id\":1}");
    assert_int_equal(strlen(f->chunk.messages[1].msg_id), KL_MSG_ID_LEN);
    assert_string_equal(f->chunk.end_sequence, "101");
    assert_non_null(strstr(f->http.sent[0].body, "\"ShardIteratorType\":\"TRIM_HORIZON\""));
    /* dlt: stop once MillisBehindLatest < milliseconds_behind_latest */
    assert_int_equal(kl_cursor_fetch(c, 100, &f->chunk, &err), KL_OK);
    assert_int_equal(f->chunk.n_messages, 1);
    assert_true(f->chunk.shard_done);
    assert_false(f->chunk.shard_closed);
    assert_true(kl_cursor_done(c));
    /* a done cursor makes no more calls */
    assert_int_equal(kl_cursor_fetch(c, 100, &f->chunk, &err), KL_OK);
    assert_int_equal(f->chunk.n_messages, 0);
    assert_string_equal(f->chunk.end_sequence, "102");
    assert_int_equal(f->http.n_sent, 3);
    free(p1);
    free(p2);
    kl_cursor_destroy(c);
}

static void an_empty_page_at_the_tip_ends_a_zero_threshold_read(void **state)
{
    struct fixture *f = *state;
    struct kl_cursor *c = open_cursor(f, NULL, 0, false, 0);
    char *p1 = page("100", "it-2", 0), *p2 = page("", "it-3", 0);
    struct kl_err err;

    kl_fake_http_push(&f->http, 200, "{\"ShardIterator\":\"it-1\"}");
    kl_fake_http_push(&f->http, 200, p1);
    kl_fake_http_push(&f->http, 200, p2);
    assert_int_equal(kl_cursor_fetch(c, 10, &f->chunk, &err), KL_OK);
    assert_false(f->chunk.shard_done);
    assert_int_equal(kl_cursor_fetch(c, 10, &f->chunk, &err), KL_OK);
    assert_true(f->chunk.shard_done);
    free(p1);
    free(p2);
    kl_cursor_destroy(c);
}

static void resumes_right_after_the_stored_record(void **state)
{
    struct fixture *f = *state;
    struct kl_shard_position stored = {"shardId-000000000001", "101", -1};
    struct kl_cursor *c = open_cursor(f, &stored, 1000, false, 0);
    char *p1 = page("101,102,103", "it-2", 0);
    struct kl_err err;

    kl_fake_http_push(&f->http, 200, "{\"ShardIterator\":\"it-1\"}");
    kl_fake_http_push(&f->http, 200, p1);
    assert_int_equal(kl_cursor_fetch(c, 100, &f->chunk, &err), KL_OK);
    assert_non_null(strstr(f->http.sent[0].body, "\"ShardIteratorType\":\"AT_SEQUENCE_NUMBER\""));
    assert_non_null(strstr(f->http.sent[0].body, "\"StartingSequenceNumber\":\"101\""));
    /* 101 was delivered in an earlier run: not again */
    assert_int_equal(f->chunk.n_messages, 2);
    assert_string_equal(f->chunk.messages[0].sequence, "102");
    assert_null(kl_cursor_gap(c));
    free(p1);
    kl_cursor_destroy(c);
}

static void a_trimmed_position_is_reported_as_a_gap(void **state)
{
    struct fixture *f = *state;
    struct kl_shard_position stored = {"shardId-000000000001", "90", -1};
    struct kl_cursor *c = open_cursor(f, &stored, 1000, false, 0);
    char *p1 = page("150,151", "it-2", 0);
    const struct kl_gap *gap;
    struct kl_err err;

    kl_fake_http_push(&f->http, 200, "{\"ShardIterator\":\"it-1\"}");
    kl_fake_http_push(&f->http, 200, p1);
    assert_int_equal(kl_cursor_fetch(c, 100, &f->chunk, &err), KL_OK);
    assert_int_equal(f->chunk.n_messages, 2);
    gap = kl_cursor_gap(c);
    assert_non_null(gap);
    assert_string_equal(gap->from_sequence, "90");
    assert_string_equal(gap->to_sequence, "150");
    free(p1);
    kl_cursor_destroy(c);
}

static void a_rejected_position_is_a_gap_and_reading_goes_on_from_the_oldest(void **state)
{
    struct fixture *f = *state;
    struct kl_shard_position stored = {"shardId-000000000001", "90", -1};
    struct kl_cursor *c = open_cursor(f, &stored, 1000, false, 0);
    char *p1 = page("150", "it-2", 0);
    const struct kl_gap *gap;
    struct kl_err err;

    kl_fake_http_push(
        &f->http, 400,
        "{\"__type\":\"InvalidArgumentException\",\"message\":\"StartingSequenceNumber "
        "90 used in GetShardIterator on shard shardId-000000000001 is invalid.\"}");
    kl_fake_http_push(&f->http, 200, "{\"ShardIterator\":\"it-1\"}");
    kl_fake_http_push(&f->http, 200, p1);
    assert_int_equal(kl_cursor_fetch(c, 100, &f->chunk, &err), KL_OK);
    assert_non_null(strstr(f->http.sent[1].body, "\"ShardIteratorType\":\"TRIM_HORIZON\""));
    assert_int_equal(f->chunk.n_messages, 1);
    gap = kl_cursor_gap(c);
    assert_non_null(gap);
    assert_string_equal(gap->from_sequence, "90");
    assert_string_equal(gap->to_sequence, "150");
    assert_non_null(strstr(gap->reason, "InvalidArgumentException"));
    free(p1);
    kl_cursor_destroy(c);
}

static void an_expired_iterator_continues_after_the_last_record(void **state)
{
    struct fixture *f = *state;
    struct kl_cursor *c = open_cursor(f, NULL, 1000, false, 0);
    char *p1 = page("100,101", "it-2", 5000), *p2 = page("102", "it-4", 0);
    struct kl_err err;

    kl_fake_http_push(&f->http, 200, "{\"ShardIterator\":\"it-1\"}");
    kl_fake_http_push(&f->http, 200, p1);
    kl_fake_http_push(&f->http, 400, "{\"__type\":\"ExpiredIteratorException\",\"message\":\"x\"}");
    kl_fake_http_push(&f->http, 200, "{\"ShardIterator\":\"it-3\"}");
    kl_fake_http_push(&f->http, 200, p2);
    assert_int_equal(kl_cursor_fetch(c, 100, &f->chunk, &err), KL_OK);
    assert_int_equal(kl_cursor_fetch(c, 100, &f->chunk, &err), KL_OK);
    assert_non_null(strstr(f->http.sent[3].body, "\"AFTER_SEQUENCE_NUMBER\""));
    assert_non_null(strstr(f->http.sent[3].body, "\"StartingSequenceNumber\":\"101\""));
    assert_int_equal(f->chunk.n_messages, 1);
    assert_string_equal(f->chunk.messages[0].sequence, "102");
    assert_int_equal(kl_cursor_expired_count(c), 1);
    free(p1);
    free(p2);
    kl_cursor_destroy(c);
}

static void a_closed_shard_is_read_to_its_end_and_names_its_children(void **state)
{
    struct fixture *f = *state;
    struct kl_cursor *c = open_cursor(f, NULL, 1000, true, 0);
    char *p1 = page("100", "it-2", 0), *p2 = page("101", NULL, 0);
    struct kl_err err;

    kl_fake_http_push(&f->http, 200, "{\"ShardIterator\":\"it-1\"}");
    kl_fake_http_push(&f->http, 200, p1);
    kl_fake_http_push(&f->http, 200, p2);
    /* MillisBehindLatest 0 would stop an open shard; a closed one goes on */
    assert_int_equal(kl_cursor_fetch(c, 100, &f->chunk, &err), KL_OK);
    assert_false(f->chunk.shard_done);
    assert_int_equal(kl_cursor_fetch(c, 100, &f->chunk, &err), KL_OK);
    assert_true(f->chunk.shard_done);
    assert_true(f->chunk.shard_closed);
    assert_int_equal(f->chunk.n_children, 1);
    assert_string_equal(f->chunk.children[0].id, "shardId-000000000003");
    free(p1);
    free(p2);
    kl_cursor_destroy(c);
}

static void calls_are_paced(void **state)
{
    struct fixture *f = *state;
    struct kl_cursor *c = open_cursor(f, NULL, 1000, false, 200);
    char *p1 = page("100", "it-2", 5000), *p2 = page("101", "it-3", 5000);
    struct kl_err err;

    kl_fake_http_push(&f->http, 200, "{\"ShardIterator\":\"it-1\"}");
    kl_fake_http_push(&f->http, 200, p1);
    kl_fake_http_push(&f->http, 200, p2);
    assert_int_equal(kl_cursor_fetch(c, 100, &f->chunk, &err), KL_OK);
    assert_int_equal(f->clock.slept_ms, 0);
    assert_int_equal(kl_cursor_fetch(c, 100, &f->chunk, &err), KL_OK);
    assert_int_equal(f->clock.slept_ms, 200);
    free(p1);
    free(p2);
    kl_cursor_destroy(c);
}

/* The stop rule, one row a page: how many records it brings against the
 * limit, its MillisBehindLatest, and whether it ends the shard. */
static void the_stop_rule_for_full_short_and_empty_pages(void **state)
{
    static const struct {
        const char *what;
        const char *seqs; /* the limit is 2 */
        long mbl;
        int64_t threshold;
        bool done;
    } rows[] = {
        {"a full page at the tip: more to read (kinesalite says 0 on every page)", "1,2", 0, 1000,
         false},
        {"a full page behind: more to read", "1,2", 5000, 1000, false},
        {"a short page under the threshold: caught up", "1", 999, 1000, true},
        {"a short page at the tip: caught up", "1", 0, 1000, true},
        {"a short page over the threshold: more to read", "1", 1000, 1000, false},
        {"an empty page at the tip: caught up", "", 0, 1000, true},
        {"an empty page at the tip with threshold 0: caught up", "", 0, 0, true},
        {"an empty page under the threshold: caught up", "", 500, 1000, true},
        {"an empty page behind: more to read (a sparse stretch of the shard)", "", 5000, 1000,
         false},
        {"a short page with threshold 0 and lag 0: not under 0, but more to read", "1", 0, 0,
         false},
    };
    struct fixture *f = *state;

    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct kl_cursor *c = open_cursor(f, NULL, rows[i].threshold, false, 0);
        char *p = page(rows[i].seqs, "it-2", rows[i].mbl);
        struct kl_err err;

        kl_fake_http_free(&f->http);
        kl_fake_http_init(&f->http);
        kl_fake_http_push(&f->http, 200, "{\"ShardIterator\":\"it-1\"}");
        kl_fake_http_push(&f->http, 200, p);
        assert_int_equal(kl_cursor_fetch(c, 2, &f->chunk, &err), KL_OK);
        if (f->chunk.shard_done != rows[i].done)
            fail_msg("%s: shard_done is %d", rows[i].what, f->chunk.shard_done);
        free(p);
        kl_cursor_destroy(c);
    }
}

static void full_pages_at_the_tip_read_the_whole_backlog(void **state)
{
    struct fixture *f = *state;
    struct kl_cursor *c = open_cursor(f, NULL, 1000, false, 0);
    char *p1 = page("100,101", "it-2", 0), *p2 = page("102,103", "it-3", 0),
         *p3 = page("104", "it-4", 0);
    struct kl_err err;
    size_t total = 0;

    kl_fake_http_push(&f->http, 200, "{\"ShardIterator\":\"it-1\"}");
    kl_fake_http_push(&f->http, 200, p1);
    kl_fake_http_push(&f->http, 200, p2);
    kl_fake_http_push(&f->http, 200, p3);
    while (!kl_cursor_done(c)) {
        assert_int_equal(kl_cursor_fetch(c, 2, &f->chunk, &err), KL_OK);
        total += f->chunk.n_messages;
    }
    assert_int_equal(total, 5);
    assert_int_equal(f->http.n_sent, 4);
    free(p1);
    free(p2);
    free(p3);
    kl_cursor_destroy(c);
}

static void a_record_that_arrived_after_the_job_started_ends_the_shard(void **state)
{
    struct fixture *f = *state;
    struct kl_cursor_options o;
    struct kl_cursor *c;
    /* full pages far behind: only the arrival bound can end this read */
    char *p1 = page_at("100,101", "it-2", 90000, 1699999990.0),
         *p2 = page_at("102,103", "it-3", 90000, 1700000000.0);
    struct kl_err err;

    memset(&o, 0, sizeof o);
    o.start.type = KL_ITER_TRIM_HORIZON;
    o.millis_behind_latest = 1000;
    o.stop_at_arrival_ms = 1700000000000LL;
    c = open_cursor_with(f, &o);
    kl_fake_http_push(&f->http, 200, "{\"ShardIterator\":\"it-1\"}");
    kl_fake_http_push(&f->http, 200, p1);
    kl_fake_http_push(&f->http, 200, p2);
    assert_int_equal(kl_cursor_fetch(c, 2, &f->chunk, &err), KL_OK);
    assert_false(f->chunk.shard_done);
    /* arrived exactly at the job's start: delivered, and the shard is done */
    assert_int_equal(kl_cursor_fetch(c, 2, &f->chunk, &err), KL_OK);
    assert_int_equal(f->chunk.n_messages, 2);
    assert_true(f->chunk.shard_done);
    assert_false(f->chunk.shard_closed);
    free(p1);
    free(p2);
    kl_cursor_destroy(c);
}

struct waits {
    int calls;
    char operation[32];
    int64_t since_ms, deadline_ms;
};

static void note_wait(void *ctx, const char *operation, int64_t since_ms, int64_t deadline_ms,
                      const struct kl_err *why)
{
    struct waits *w = ctx;
    (void)why;
    w->calls++;
    snprintf(w->operation, sizeof w->operation, "%s", operation);
    w->since_ms = since_ms;
    w->deadline_ms = deadline_ms;
}

static void an_unanswered_at_timestamp_reads_from_trim_horizon_and_skips_older_records(void **state)
{
    struct fixture *f = *state;
    struct kl_cursor_options o;
    struct kl_cursor *c;
    /* 100 arrived before the timestamp, 101 at it, 102 after it */
    char *p1 = strdup("{\"Records\":[{\"SequenceNumber\":\"100\",\"ApproximateArrivalTimestamp\":"
                      "1699999000.0,\"Data\":\"eyJpZCI6MH0=\",\"PartitionKey\":\"pk\"},"
                      "{\"SequenceNumber\":\"101\",\"ApproximateArrivalTimestamp\":1699999500.0,"
                      "\"Data\":\"eyJpZCI6MX0=\",\"PartitionKey\":\"pk\"},"
                      "{\"SequenceNumber\":\"102\",\"ApproximateArrivalTimestamp\":1699999600.0,"
                      "\"Data\":\"eyJpZCI6Mn0=\",\"PartitionKey\":\"pk\"}],"
                      "\"NextShardIterator\":\"it-2\",\"MillisBehindLatest\":0}");
    struct kl_err err;

    f->http.clock = &f->clock;
    memset(&o, 0, sizeof o);
    o.start.type = KL_ITER_AT_TIMESTAMP;
    o.start.timestamp_ms = 1699999500000LL;
    o.millis_behind_latest = 1000;
    o.at_timestamp_wait_ms = 2000;
    c = open_cursor_with(f, &o);
    kl_fake_http_push_no_answer(&f->http);
    kl_fake_http_push(&f->http, 200, "{\"ShardIterator\":\"it-1\"}");
    kl_fake_http_push(&f->http, 200, p1);
    assert_int_equal(kl_cursor_fetch(c, 100, &f->chunk, &err), KL_OK);
    assert_non_null(strstr(f->http.sent[0].body, "\"ShardIteratorType\":\"AT_TIMESTAMP\""));
    assert_true(f->http.sent[0].timeout_ms <= 2000);
    assert_non_null(strstr(f->http.sent[1].body, "\"ShardIteratorType\":\"TRIM_HORIZON\""));
    assert_true(kl_cursor_timestamp_fallback(c));
    assert_int_equal(f->chunk.n_messages, 2);
    assert_string_equal(f->chunk.messages[0].sequence, "101");
    assert_string_equal(f->chunk.messages[1].sequence, "102");
    assert_true(f->chunk.shard_done);
    free(p1);
    kl_cursor_destroy(c);
}

static void a_quiet_shard_behind_an_unanswered_at_timestamp_ends_empty(void **state)
{
    struct fixture *f = *state;
    struct kl_cursor_options o;
    struct kl_cursor *c;
    char *p1 = page_at("100", "it-2", 0, 1699990000.0);
    struct kl_err err;

    f->http.clock = &f->clock;
    memset(&o, 0, sizeof o);
    o.start.type = KL_ITER_AT_TIMESTAMP;
    o.start.timestamp_ms = 1699999500000LL;
    o.millis_behind_latest = 1000;
    c = open_cursor_with(f, &o);
    kl_fake_http_push_no_answer(&f->http);
    kl_fake_http_push(&f->http, 200, "{\"ShardIterator\":\"it-1\"}");
    kl_fake_http_push(&f->http, 200, p1);
    assert_int_equal(kl_cursor_fetch(c, 100, &f->chunk, &err), KL_OK);
    /* the default wait is a few seconds, not the call's deadline */
    assert_true(f->http.sent[0].timeout_ms <= 5000);
    assert_int_equal(f->chunk.n_messages, 0);
    assert_true(f->chunk.shard_done);
    free(p1);
    kl_cursor_destroy(c);
}

static void at_timestamp_on_aws_waits_for_its_answer(void **state)
{
    struct fixture *f = *state;
    struct kl_cursor_options o;
    struct kl_cursor *c;
    struct kl_err err;

    open_client(f, "https://kinesis.eu-west-1.amazonaws.com", 0, 0);
    assert_true(kl_kinesis_is_aws(f->k));
    memset(&o, 0, sizeof o);
    o.start.type = KL_ITER_AT_TIMESTAMP;
    o.start.timestamp_ms = 1699999500000LL;
    o.millis_behind_latest = 1000;
    c = open_cursor_with(f, &o);
    kl_fake_http_push(&f->http, 200, "{\"ShardIterator\":\"it-1\"}");
    kl_fake_http_push(&f->http, 200,
                      "{\"Records\":[],\"NextShardIterator\":\"it-2\","
                      "\"MillisBehindLatest\":0}");
    assert_int_equal(kl_cursor_fetch(c, 100, &f->chunk, &err), KL_OK);
    assert_true(f->http.sent[0].timeout_ms > 5000);
    assert_false(kl_cursor_timestamp_fallback(c));
    kl_cursor_destroy(c);
}

static void a_call_past_its_deadline_fails_and_says_what_it_waited_on(void **state)
{
    struct fixture *f = *state;
    struct kl_cursor_options o;
    struct kl_cursor *c;
    struct waits w = {0};
    struct kl_err err;

    open_client(f, "http://127.0.0.1:1", 4000, 10000);
    f->http.clock = &f->clock;
    memset(&o, 0, sizeof o);
    o.start.type = KL_ITER_TRIM_HORIZON;
    o.millis_behind_latest = 1000;
    o.waiting = note_wait;
    o.waiting_ctx = &w;
    c = open_cursor_with(f, &o);
    kl_fake_http_push(&f->http, 200, "{\"ShardIterator\":\"it-1\"}");
    for (int i = 0; i < 8; i++)
        kl_fake_http_push_no_answer(&f->http);
    assert_int_equal(kl_cursor_fetch(c, 100, &f->chunk, &err), KL_ERR_UNAVAILABLE);
    assert_non_null(strstr(err.msg, "GetRecords"));
    assert_non_null(strstr(err.msg, "deadline"));
    /* 4 s, 4 s and what is left of the 10 s: three attempts, not eight */
    assert_true(f->http.n_sent <= 4);
    assert_true(w.calls >= 1);
    assert_string_equal(w.operation, "GetRecords");
    assert_int_equal(w.deadline_ms - w.since_ms, 10000);
    kl_cursor_destroy(c);
}

/* Under a memory budget a page is first given twice what the shard's last
 * page held (readers of small pages go side by side); one that outgrows
 * that and the budget is dropped and read again with the same iterator,
 * with room for the worst case, and loads whole. */
static void a_page_larger_than_foreseen_is_read_again_with_room_for_it(void **state)
{
    struct fixture *f = *state;
    struct kl_membudget *b = kl_membudget_create((size_t)2 << 20, NULL);
    struct kl_cursor_options o;
    struct kl_membudget_stats st;
    struct kl_cursor *c;
    struct kl_err err;
    size_t data_b64 = (size_t)4 << 20; /* 3 MiB of Data */
    char *small = page("100,101", "it-2", 5000);
    char *big = malloc(data_b64 + 256);
    size_t n;

    assert_non_null(b);
    assert_non_null(big);
    n = (size_t)sprintf(big, "{\"Records\":[{\"SequenceNumber\":\"102\",\"PartitionKey\":\"pk\","
                             "\"ApproximateArrivalTimestamp\":1700000000.5,\"Data\":\"");
    for (size_t i = 0; i < data_b64; i += 4)
        memcpy(big + n + i, "YWJj", 4);
    n += data_b64;
    sprintf(big + n, "\"}],\"NextShardIterator\":\"it-3\",\"MillisBehindLatest\":0}");

    memset(&o, 0, sizeof o);
    o.start.type = KL_ITER_TRIM_HORIZON;
    o.millis_behind_latest = 0;
    o.memory = b;
    c = open_cursor_with(f, &o);
    kl_fake_http_push(&f->http, 200, "{\"ShardIterator\":\"it-1\"}");
    kl_fake_http_push(&f->http, 200, small);
    kl_fake_http_push(&f->http, 200, big);
    kl_fake_http_push(&f->http, 200, big);

    assert_int_equal(kl_cursor_fetch(c, 100, &f->chunk, &err), KL_OK);
    assert_int_equal(f->chunk.n_messages, 2);
    kl_membudget_stats(b, &st);
    /* the small page was given about 1 MiB, not the worst case (20 MiB) */
    assert_true(st.peak <= (size_t)1 << 20);
    assert_int_equal(st.refused, 0);

    assert_int_equal(kl_cursor_fetch(c, 100, &f->chunk, &err), KL_OK);
    assert_int_equal(f->chunk.n_messages, 1);
    assert_string_equal(f->chunk.messages[0].sequence, "102");
    assert_int_equal(f->chunk.messages[0].data_len, (size_t)3 << 20);
    assert_int_equal(f->http.n_sent, 4);
    assert_non_null(strstr(f->http.sent[2].body, "\"it-2\""));
    assert_non_null(strstr(f->http.sent[3].body, "\"it-2\""));
    kl_membudget_stats(b, &st);
    assert_true(st.refused >= 1);
    assert_true(st.held >= (size_t)3 << 20); /* the page is held, past the limit, alone */

    kl_chunk_empty(&f->chunk);
    kl_membudget_stats(b, &st);
    assert_int_equal(st.held, 0);
    kl_cursor_destroy(c);
    kl_membudget_destroy(b);
    free(small);
    free(big);
}

/* Following the tip (a continuous load): the stop rule does not apply, a
 * page at the tip (short, 0 ms behind) makes the next read wait the poll
 * interval, a full page or one behind the tip does not. */
static void a_followed_shard_polls_at_its_tip(void **state)
{
    struct fixture *f = *state;
    struct kl_cursor_options o;
    struct kl_cursor *c;
    struct kl_err err;
    char *tip = page("100", "it-2", 0), *empty = page("", "it-3", 0);
    char *full = page("101,102", "it-4", 0), *behind = page("103", "it-5", 9000);
    char *last = page("104", "it-6", 0);

    memset(&o, 0, sizeof o);
    o.start.type = KL_ITER_TRIM_HORIZON;
    o.millis_behind_latest = 1000;
    o.read_to_end = true;
    o.poll_interval_ms = 700;
    c = open_cursor_with(f, &o);
    kl_fake_http_push(&f->http, 200, "{\"ShardIterator\":\"it-1\"}");
    kl_fake_http_push(&f->http, 200, tip);
    kl_fake_http_push(&f->http, 200, empty);
    kl_fake_http_push(&f->http, 200, full);
    kl_fake_http_push(&f->http, 200, behind);
    kl_fake_http_push(&f->http, 200, last);

    assert_int_equal(kl_cursor_fetch(c, 2, &f->chunk, &err), KL_OK);
    assert_false(f->chunk.shard_done);
    assert_int_equal(f->clock.slept_ms, 0);
    assert_int_equal(kl_cursor_fetch(c, 2, &f->chunk, &err), KL_OK); /* empty at the tip */
    assert_false(f->chunk.shard_done);
    assert_int_equal(f->clock.slept_ms, 700);
    assert_int_equal(kl_cursor_fetch(c, 2, &f->chunk, &err), KL_OK); /* full */
    assert_int_equal(f->clock.slept_ms, 1400);
    assert_int_equal(kl_cursor_fetch(c, 2, &f->chunk, &err), KL_OK); /* behind: no wait */
    assert_int_equal(f->clock.slept_ms, 1400);
    assert_int_equal(kl_cursor_fetch(c, 2, &f->chunk, &err), KL_OK);
    assert_int_equal(f->clock.slept_ms, 1400);
    assert_false(f->chunk.shard_done);
    assert_string_equal(f->chunk.messages[0].sequence, "104");
    free(tip);
    free(empty);
    free(full);
    free(behind);
    free(last);
    kl_cursor_destroy(c);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(reads_until_behind_less_than_the_threshold),
        T(an_empty_page_at_the_tip_ends_a_zero_threshold_read),
        T(resumes_right_after_the_stored_record),
        T(a_trimmed_position_is_reported_as_a_gap),
        T(a_rejected_position_is_a_gap_and_reading_goes_on_from_the_oldest),
        T(an_expired_iterator_continues_after_the_last_record),
        T(a_closed_shard_is_read_to_its_end_and_names_its_children),
        T(calls_are_paced),
        T(the_stop_rule_for_full_short_and_empty_pages),
        T(full_pages_at_the_tip_read_the_whole_backlog),
        T(a_record_that_arrived_after_the_job_started_ends_the_shard),
        T(an_unanswered_at_timestamp_reads_from_trim_horizon_and_skips_older_records),
        T(a_quiet_shard_behind_an_unanswered_at_timestamp_ends_empty),
        T(at_timestamp_on_aws_waits_for_its_answer),
        T(a_call_past_its_deadline_fails_and_says_what_it_waited_on),
        T(a_page_larger_than_foreseen_is_read_again_with_room_for_it),
        T(a_followed_shard_polls_at_its_tip),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
