/*
 * The LoadRequest codec (api/load_codec.c), table-driven: bodies that parse
 * (and what they parse to) and every kind of malformed body, each with the
 * field it must name.
 */
#include "tests/support/test_support.h"
#include "api/load_codec.h"
#include "api/problem.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse(const char *stream, const char *body, struct kl_load_params *p,
                 struct kl_field_errors *fe, char *detail, size_t cap)
{
    return kl_load_request_parse(stream, body, body != NULL ? strlen(body) : 0, p, fe, detail, cap);
}

static void empty_bodies_take_dlts_defaults(void **state)
{
    static const char *const bodies[] = {NULL, "{}", " { } \n", "\t{}\r\n"};
    struct kl_load_params p;
    struct kl_field_errors fe;
    char detail[160];
    (void)state;

    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        memset(&p, 0x55, sizeof p);
        assert_int_equal(parse("orders", bodies[i], &p, &fe, detail, sizeof detail), KL_OK);
        assert_string_equal(p.stream, "orders");
        assert_string_equal(p.pipeline_name, "kinesis_pipeline");
        assert_string_equal(p.dataset_name, "kinesis");
        assert_string_equal(p.table_name, "");
        assert_int_equal(p.initial.kind, KL_INITIAL_LATEST);
        assert_string_equal(p.initial_text, "0");
        assert_int_equal(p.max_messages, -1);
        assert_int_equal(p.millis_behind_latest, 1000);
        assert_true(p.parse_json);
        assert_int_equal(p.chunk_size, 1000);
        assert_int_equal(p.write_disposition, KL_WRITE_APPEND);
        assert_false(p.continuous);
        assert_int_equal(p.poll_interval_ms, 1000);
        assert_int_equal(p.max_commit_delay_ms, 1000);
        assert_int_equal(fe.n, 0);
    }
}

static void a_continuous_load_parses(void **state)
{
    static const char body[] =
        "{\"continuous\":true,\"poll_interval_ms\":200,\"max_commit_delay_ms\":0,"
        "\"initial_at_timestamp\":null}";
    struct kl_load_params p;
    struct kl_field_errors fe;
    char detail[160];
    (void)state;

    assert_int_equal(parse("orders", body, &p, &fe, detail, sizeof detail), KL_OK);
    assert_true(p.continuous);
    assert_int_equal(p.poll_interval_ms, 200);
    assert_int_equal(p.max_commit_delay_ms, 0);
    assert_int_equal(p.max_messages, -1);
    assert_int_equal(parse("orders", "{\"continuous\":true}", &p, &fe, detail, sizeof detail),
                     KL_OK);
    assert_int_equal(p.poll_interval_ms, 1000);
    assert_int_equal(p.max_commit_delay_ms, 1000);
    assert_int_equal(p.load_window_s, 300);
    assert_int_equal(parse("orders", "{\"continuous\":true,\"load_window_s\":60}", &p, &fe, detail,
                           sizeof detail),
                     KL_OK);
    assert_int_equal(p.load_window_s, 60);
}

/* Load windows: load_window_s apart from the job's creation, each named as
 * dlt names a load (seconds with microseconds), window 0 the job's own. */
static void load_windows_are_counted_from_the_job(void **state)
{
    struct kl_load_params p;
    char id[KL_LOAD_ID_MAX];
    const int64_t created = 1700000000123LL;
    (void)state;

    kl_load_params_defaults(&p, "s");
    p.continuous = true;
    p.load_window_s = 60;
    assert_int_equal(kl_load_window_at(&p, created, created - 5), 0);
    assert_int_equal(kl_load_window_at(&p, created, created), 0);
    assert_int_equal(kl_load_window_at(&p, created, created + 59999), 0);
    assert_int_equal(kl_load_window_at(&p, created, created + 60000), 1);
    assert_int_equal(kl_load_window_at(&p, created, created + 3600000), 60);
    kl_load_window_id(&p, created, 0, id);
    assert_string_equal(id, "1700000000.123000");
    kl_load_window_id(&p, created, 2, id);
    assert_string_equal(id, "1700000120.123000");
}

static void every_field_parses(void **state)
{
    static const char body[] =
        "{\"pipeline_name\":\"orders.pipe-1\",\"dataset_name\":\"raw_2\",\"table_name\":\"Orders\","
        "\"initial_at_timestamp\":\"2024-05-01T12:00:00Z\",\"max_number_of_messages\":1000000,"
        "\"milliseconds_behind_latest\":0,\"parse_json\":false,\"chunk_size\":10000,"
        "\"write_disposition\":\"merge\"}";
    struct kl_load_params p;
    struct kl_field_errors fe;
    char detail[160];
    (void)state;

    assert_int_equal(parse("orders", body, &p, &fe, detail, sizeof detail), KL_OK);
    assert_string_equal(p.pipeline_name, "orders.pipe-1");
    assert_string_equal(p.dataset_name, "raw_2");
    assert_string_equal(p.table_name, "Orders");
    assert_int_equal(p.initial.kind, KL_INITIAL_AT_TIMESTAMP);
    assert_int_equal(p.initial.at_ms, 1714564800000LL);
    assert_string_equal(p.initial_text, "2024-05-01T12:00:00Z");
    assert_int_equal(p.max_messages, 1000000);
    assert_int_equal(p.millis_behind_latest, 0);
    assert_false(p.parse_json);
    assert_int_equal(p.chunk_size, 10000);
    assert_int_equal(p.write_disposition, KL_WRITE_MERGE);
}

static void initial_at_timestamp_follows_dlt(void **state)
{
    static const struct {
        const char *body;
        enum kl_initial_kind kind;
        long long ms;
        const char *text;
    } cases[] = {
        {"{\"initial_at_timestamp\":null}", KL_INITIAL_TRIM_HORIZON, 0, "null"},
        {"{\"initial_at_timestamp\":0}", KL_INITIAL_LATEST, 0, "0"},
        {"{\"initial_at_timestamp\":0.0}", KL_INITIAL_LATEST, 0, "0"},
        {"{\"initial_at_timestamp\":1700000000}", KL_INITIAL_AT_TIMESTAMP, 1700000000000LL,
         "1700000000"},
        {"{\"initial_at_timestamp\":1700000000.25}", KL_INITIAL_AT_TIMESTAMP, 1700000000250LL,
         "1700000000.25"},
        {"{\"initial_at_timestamp\":1.7e9}", KL_INITIAL_AT_TIMESTAMP, 1700000000000LL,
         "1700000000"},
        {"{\"initial_at_timestamp\":\"1700000000\"}", KL_INITIAL_AT_TIMESTAMP, 1700000000000LL,
         "1700000000"},
        {"{\"initial_at_timestamp\":\"2024-05-01\"}", KL_INITIAL_AT_TIMESTAMP, 1714521600000LL,
         "2024-05-01"},
        {"{\"initial_at_timestamp\":\"2024-05-01T14:00:00.5+02:00\"}", KL_INITIAL_AT_TIMESTAMP,
         1714564800500LL, "2024-05-01T14:00:00.5+02:00"},
    };
    struct kl_load_params p;
    struct kl_field_errors fe;
    char detail[160];
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (parse("s", cases[i].body, &p, &fe, detail, sizeof detail) != KL_OK)
            fail_msg("%s: %s %s", cases[i].body, fe.n ? fe.e[0].message : "", detail);
        assert_int_equal(p.initial.kind, cases[i].kind);
        if (cases[i].kind == KL_INITIAL_AT_TIMESTAMP)
            assert_int_equal(p.initial.at_ms, cases[i].ms);
        assert_string_equal(p.initial_text, cases[i].text);
    }
}

/* One malformed request: the body, and the field (or detail) it must name. */
struct bad_case {
    const char *stream;
    const char *body;
    const char *field;  /* NULL: a whole-body problem, named in detail */
    const char *needle; /* in the field's message, or in detail */
};

static const struct bad_case bad_cases[] = {
    /* not JSON, or not an object */
    {"s", "{", NULL, "not valid JSON"},
    {"s", "{\"chunk_size\":1,}", NULL, "not valid JSON"},
    {"s", "{} {}", NULL, "not valid JSON"},
    {"s", "{}x", NULL, "not valid JSON"},
    {"s", "nul", NULL, "not valid JSON"},
    {"s", "{\"a\":\"\\ud800", NULL, "not valid JSON"},
    {"s", "[]", NULL, "must be a JSON object, not an array"},
    {"s", "null", NULL, "must be a JSON object, not null"},
    {"s", "\"{}\"", NULL, "must be a JSON object, not a string"},
    {"s", "42", NULL, "must be a JSON object, not a number"},
    /* a number of 73 digits */
    {"s",
     "{\"chunk_size\":1000000000000000000000000000000000000000000000000000000000000000000000000}",
     "chunk_size", "from 1 to 10000"},
    /* unknown and repeated fields */
    {"s", "{\"chunksize\":10}", "chunksize", "unknown field"},
    {"s", "{\"Chunk_Size\":10}", "Chunk_Size", "unknown field"},
    {"s", "{\"\":1}", "", "unknown field"},
    {"s", "{\"chunk_size\":10,\"chunk_size\":20}", "chunk_size", "more than once"},
    /* wrong types */
    {"s", "{\"chunk_size\":\"10\"}", "chunk_size", "not a string"},
    {"s", "{\"chunk_size\":true}", "chunk_size", "not a boolean"},
    {"s", "{\"chunk_size\":null}", "chunk_size", "not null"},
    {"s", "{\"chunk_size\":[1]}", "chunk_size", "not an array"},
    {"s", "{\"chunk_size\":{}}", "chunk_size", "not an object"},
    {"s", "{\"chunk_size\":10.5}", "chunk_size", "must be an integer, not 10.5"},
    {"s", "{\"parse_json\":\"true\"}", "parse_json", "true or false"},
    {"s", "{\"parse_json\":1}", "parse_json", "true or false"},
    {"s", "{\"pipeline_name\":5}", "pipeline_name", "not a number"},
    {"s", "{\"dataset_name\":null}", "dataset_name", "not null"},
    {"s", "{\"table_name\":[]}", "table_name", "not an array"},
    {"s", "{\"write_disposition\":1}", "write_disposition", "append"},
    {"s", "{\"initial_at_timestamp\":true}", "initial_at_timestamp", "not a boolean"},
    {"s", "{\"initial_at_timestamp\":{}}", "initial_at_timestamp", "not an object"},
    {"s", "{\"max_number_of_messages\":\"5\"}", "max_number_of_messages", "not a string"},
    {"s", "{\"milliseconds_behind_latest\":false}", "milliseconds_behind_latest", "boolean"},
    /* ranges */
    {"s", "{\"chunk_size\":0}", "chunk_size", "from 1 to 10000, not 0"},
    {"s", "{\"chunk_size\":10001}", "chunk_size", "from 1 to 10000, not 10001"},
    {"s", "{\"chunk_size\":-1}", "chunk_size", "from 1 to 10000"},
    {"s", "{\"chunk_size\":1e300}", "chunk_size", "from 1 to 10000"},
    {"s", "{\"chunk_size\":1e999}", "chunk_size", "must be an integer"},
    {"s", "{\"max_number_of_messages\":0}", "max_number_of_messages", "from 1 to"},
    {"s", "{\"max_number_of_messages\":-5}", "max_number_of_messages", "from 1 to"},
    {"s", "{\"max_number_of_messages\":1000000000000000}", "max_number_of_messages",
     "from 1 to 999999999999999"},
    /* stored with 15 digits, this would run as 9007199254740990 */
    {"s", "{\"max_number_of_messages\":9007199254740991}", "max_number_of_messages",
     "from 1 to 999999999999999"},
    {"s", "{\"max_number_of_messages\":99999999999999999999}", "max_number_of_messages",
     "from 1 to"},
    {"s", "{\"milliseconds_behind_latest\":-1}", "milliseconds_behind_latest",
     "from 0 to 604800000"},
    {"s", "{\"milliseconds_behind_latest\":604800001}", "milliseconds_behind_latest",
     "from 0 to 604800000"},
    {"s", "{\"initial_at_timestamp\":-1}", "initial_at_timestamp", "epoch seconds"},
    {"s", "{\"initial_at_timestamp\":1e20}", "initial_at_timestamp", "epoch seconds"},
    {"s", "{\"write_disposition\":\"upsert\"}", "write_disposition", "\"merge\""},
    {"s", "{\"write_disposition\":\"APPEND\"}", "write_disposition", "\"append\""},
    /* continuous loads */
    {"s", "{\"continuous\":1}", "continuous", "true or false"},
    {"s", "{\"continuous\":true,\"poll_interval_ms\":199}", "poll_interval_ms",
     "from 200 to 60000"},
    {"s", "{\"continuous\":true,\"poll_interval_ms\":60001}", "poll_interval_ms",
     "from 200 to 60000"},
    {"s", "{\"continuous\":true,\"max_commit_delay_ms\":-1}", "max_commit_delay_ms",
     "from 0 to 60000"},
    {"s", "{\"continuous\":true,\"max_number_of_messages\":10}", "max_number_of_messages",
     "does not apply to a continuous load"},
    {"s", "{\"continuous\":true,\"max_number_of_messages\":null}", "max_number_of_messages",
     "does not apply to a continuous load"},
    {"s", "{\"milliseconds_behind_latest\":0,\"continuous\":true}", "milliseconds_behind_latest",
     "does not apply to a continuous load"},
    {"s", "{\"poll_interval_ms\":500}", "poll_interval_ms", "continuous loads only"},
    {"s", "{\"load_window_s\":60}", "load_window_s", "continuous loads only"},
    {"s", "{\"continuous\":true,\"load_window_s\":9}", "load_window_s", "from 10 to 86400"},
    {"s", "{\"continuous\":true,\"load_window_s\":86401}", "load_window_s", "from 10 to 86400"},
    {"s", "{\"continuous\":true,\"write_disposition\":\"replace\"}", "write_disposition",
     "append or merge for a continuous load"},
    {"s", "{\"continuous\":false,\"max_commit_delay_ms\":500}", "max_commit_delay_ms",
     "continuous loads only"},
    /* names */
    {"s", "{\"pipeline_name\":\"\"}", "pipeline_name", "1 to 64 characters"},
    {"s", "{\"pipeline_name\":\"a b\"}", "pipeline_name", "1 to 64 characters"},
    {"s",
     "{\"pipeline_name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
     "pipeline_name", "got 65 characters"},
    {"s", "{\"pipeline_name\":\"p\\u0000x\"}", NULL, "must not contain U+0000"},
    {"s", "{\"dataset_name\":\"1raw\"}", "dataset_name", "not starting with a digit"},
    {"s", "{\"dataset_name\":\"raw-data\"}", "dataset_name", "1 to 63 characters"},
    {"s", "{\"dataset_name\":\"r\\u00e9sum\\u00e9\"}", "dataset_name", "1 to 63 characters"},
    {"s", "{\"table_name\":\"\"}", "table_name", "1 to 63 characters"},
    {"s", "{\"table_name\":\"t;drop table x\"}", "table_name", "1 to 63 characters"},
    {"s", "{\"table_name\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
     "table_name", "got 64 characters"},
    /* timestamps */
    {"s", "{\"initial_at_timestamp\":\"yesterday\"}", "initial_at_timestamp", "ISO-8601"},
    {"s", "{\"initial_at_timestamp\":\"2024-13-01\"}", "initial_at_timestamp", "ISO-8601"},
    {"s", "{\"initial_at_timestamp\":\"2023-02-29T00:00:00Z\"}", "initial_at_timestamp",
     "ISO-8601"},
    {"s", "{\"initial_at_timestamp\":\"\"}", "initial_at_timestamp", "1 to 64 characters"},
    {"s", "{\"initial_at_timestamp\":\"-5\"}", "initial_at_timestamp", "ISO-8601"},
    {"s",
     "{\"initial_at_timestamp\":\"2024-05-01T00:00:"
     "00Zxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}", /* 65 characters */
     "initial_at_timestamp", "1 to 64 characters"},
    /* the stream of the path */
    {"", "{}", "stream", "1 to 128 characters"},
    {"a/b", "{}", "stream", "1 to 128 characters"},
    {"str eam", "{}", "stream", "1 to 128 characters"},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
     "{}", "stream", "1 to 128 characters"},
};

static void malformed_requests_name_the_field(void **state)
{
    (void)state;

    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *c = &bad_cases[i];
        struct kl_load_params p;
        struct kl_field_errors fe;
        char detail[160];
        int rc;

        memset(&p, 0x5a, sizeof p);
        rc = parse(c->stream, c->body, &p, &fe, detail, sizeof detail);
        if (rc != KL_ERR_INVALID)
            fail_msg("case %zu %s: accepted", i, c->body);
        if (c->field == NULL) {
            if (fe.n != 0 || strstr(detail, c->needle) == NULL)
                fail_msg("case %zu %s: detail '%s', %zu field errors", i, c->body, detail, fe.n);
        } else {
            const struct kl_field_error *e = kl_field_errors_find(&fe, c->field);
            if (e == NULL)
                fail_msg("case %zu %s: no error for '%s' (%zu errors, first '%s': %s)", i, c->body,
                         c->field, fe.n, fe.n ? fe.e[0].field : "", fe.n ? fe.e[0].message : "");
            if (strstr(e->message, c->needle) == NULL)
                fail_msg("case %zu %s: '%s' lacks '%s'", i, c->body, e->message, c->needle);
        }
    }
}

static void every_bad_field_is_reported_at_once(void **state)
{
    static const char body[] = "{\"chunk_size\":0,\"parse_json\":\"no\",\"extra\":1,"
                               "\"write_disposition\":\"x\",\"pipeline_name\":\"ok\"}";
    struct kl_load_params p;
    struct kl_field_errors fe;
    char detail[160];
    (void)state;

    assert_int_equal(parse("s", body, &p, &fe, detail, sizeof detail), KL_ERR_INVALID);
    assert_int_equal(fe.n, 4);
    assert_string_equal(fe.e[0].field, "chunk_size");
    assert_string_equal(fe.e[1].field, "parse_json");
    assert_string_equal(fe.e[2].field, "extra");
    assert_string_equal(fe.e[3].field, "write_disposition");
}

static void unknown_field_names_are_cut_and_made_printable(void **state)
{
    char body[512];
    struct kl_load_params p;
    struct kl_field_errors fe;
    char detail[160];
    (void)state;

    snprintf(body, sizeof body, "{\"%s\":1,\"a\\u0001\\n\":2}",
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    assert_int_equal(parse("s", body, &p, &fe, detail, sizeof detail), KL_ERR_INVALID);
    assert_int_equal(fe.n, 2);
    assert_int_equal(strlen(fe.e[0].field), sizeof fe.e[0].field - 1);
    assert_string_equal(fe.e[1].field, "a??");
}

static void many_errors_are_bounded(void **state)
{
    char body[4096];
    size_t pos = 0;
    struct kl_load_params p;
    struct kl_field_errors fe;
    char detail[160];
    (void)state;

    body[pos++] = '{';
    for (int i = 0; i < 40; i++)
        pos += (size_t)snprintf(body + pos, sizeof body - pos, "%s\"f%d\":%d", i ? "," : "", i, i);
    body[pos++] = '}';
    body[pos] = '\0';
    assert_int_equal(parse("s", body, &p, &fe, detail, sizeof detail), KL_ERR_INVALID);
    assert_int_equal(fe.n, KL_FIELD_ERRORS_MAX);
    assert_int_equal(fe.dropped, 40 - KL_FIELD_ERRORS_MAX);
}

static void bodies_are_read_by_length_not_by_nul(void **state)
{
    static const char body[] = "{}\0{\"x\":1}";
    struct kl_load_params p;
    struct kl_field_errors fe;
    char detail[160];
    (void)state;

    /* an embedded NUL is not the end of the body */
    assert_int_equal(
        kl_load_request_parse("s", body, sizeof body - 1, &p, &fe, detail, sizeof detail),
        KL_ERR_INVALID);
    /* and the body need not be NUL-terminated */
    assert_int_equal(kl_load_request_parse("s", "{}xyz", 2, &p, &fe, detail, sizeof detail), KL_OK);
}

static void number_text_is_the_shortest_round_trip(void **state)
{
    static const struct {
        double d;
        const char *text;
    } cases[] = {{1700000000.25, "1700000000.25"},
                 {0.1, "0.1"},
                 {1e21, "1e+21"},
                 {1700000000.123, "1700000000.123"},
                 {3, "3"}};
    char out[32];
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kl_json_number_text(cases[i].d, out, sizeof out);
        assert_string_equal(out, cases[i].text);
    }
}

/* dlt normalises dataset_name with its snake_case naming
 * (normalize_table_identifier) before the destination sees it; so do we,
 * at POST, so the job and its document use the name the tables live in. */
static void dataset_names_are_normalised_like_dlt(void **state)
{
    static const struct {
        const char *given, *normalised;
    } cases[] = {
        {"Sales", "sales"},           {"SALES", "sales"}, {"MySales", "my_sales"},
        {"mySalesV2", "my_sales_v2"}, {"raw_", "rawx"},   {"a__b", "a_b"},
        {"kinesis", "kinesis"},       {"_raw", "_raw"},   {"Raw_2024", "raw_2024"},
    };
    struct kl_load_params p;
    struct kl_field_errors fe;
    char body[128], detail[160];
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(body, sizeof body, "{\"dataset_name\":\"%s\"}", cases[i].given);
        if (parse("s", body, &p, &fe, detail, sizeof detail) != KL_OK)
            fail_msg("%s: %s", body, fe.n ? fe.e[0].message : detail);
        assert_string_equal(p.dataset_name, cases[i].normalised);
    }
}

/* What a job would fail on at its first worker is refused at POST, with
 * the field named: the destination's name rules after normalisation, the
 * root table, and start positions the job would read back differently. */
static const struct bad_case job_failures[] = {
    /* the destination refuses these datasets (after normalisation) */
    {"s", "{\"dataset_name\":\"pg_temp\"}", "dataset_name", "reserved"},
    {"s", "{\"dataset_name\":\"PG_Catalog\"}", "dataset_name", "\"pg_catalog\""},
    {"s", "{\"dataset_name\":\"information_schema\"}", "dataset_name", "reserved"},
    {"s", "{\"dataset_name\":\"sqlite_x\"}", "dataset_name", "reserved"},
    /* root tables that would be system tables */
    {"s", "{\"table_name\":\"_dlt_loads\"}", "table_name", "reserved"},
    {"s", "{\"table_name\":\"_DLT_Version\"}", "table_name", "\"_dlt_version\""},
    {"s", "{\"table_name\":\"_kinesis_dead_letters\"}", "table_name", "reserved"},
    {"_dlt_pipeline_state", "{}", "table_name", "the stream name"},
    /* AT_TIMESTAMP at or before the epoch: stored as 0 the job reads LATEST,
     * and Kinesis refuses negative timestamps */
    {"s", "{\"initial_at_timestamp\":\"0\"}", "initial_at_timestamp", "after 1970"},
    {"s", "{\"initial_at_timestamp\":\"0.0004\"}", "initial_at_timestamp", "after 1970"},
    {"s", "{\"initial_at_timestamp\":\"1970-01-01T00:00:00Z\"}", "initial_at_timestamp",
     "after 1970"},
    {"s", "{\"initial_at_timestamp\":\"1969-12-31T23:59:59Z\"}", "initial_at_timestamp",
     "after 1970"},
    {"s", "{\"initial_at_timestamp\":\"1970-01-01T00:30:00+01:00\"}", "initial_at_timestamp",
     "after 1970"},
    /* numbers whose stored text the job cannot read back the same */
    {"s", "{\"initial_at_timestamp\":0.0001}", "initial_at_timestamp", "at least 0.001"},
    {"s", "{\"initial_at_timestamp\":1e-7}", "initial_at_timestamp", "at least 0.001"},
    {"s", "{\"initial_at_timestamp\":5e-324}", "initial_at_timestamp", "at least 0.001"},
};

static void what_a_job_would_fail_on_is_refused(void **state)
{
    (void)state;

    for (size_t i = 0; i < sizeof job_failures / sizeof job_failures[0]; i++) {
        const struct bad_case *c = &job_failures[i];
        struct kl_load_params p;
        struct kl_field_errors fe;
        const struct kl_field_error *e;
        char detail[160];

        if (parse(c->stream, c->body, &p, &fe, detail, sizeof detail) != KL_ERR_INVALID)
            fail_msg("case %zu %s %s: accepted", i, c->stream, c->body);
        e = kl_field_errors_find(&fe, c->field);
        if (e == NULL)
            fail_msg("case %zu %s: no error for '%s' (%zu errors, first '%s': %s; %s)", i, c->body,
                     c->field, fe.n, fe.n ? fe.e[0].field : "", fe.n ? fe.e[0].message : "",
                     detail);
        if (strstr(e->message, c->needle) == NULL)
            fail_msg("case %zu %s: '%s' lacks '%s'", i, c->body, e->message, c->needle);
    }
}

/* The job reads its parameters back from the stored document: whatever POST
 * accepted reads back as the same parameters. (0.0015 s used to be
 * accepted as 2 ms and run as 1 ms.) */
static void accepted_parameters_read_back_unchanged(void **state)
{
    static const char *const bodies[] = {
        "{}",
        "{\"initial_at_timestamp\":null}",
        "{\"initial_at_timestamp\":0.0015}",
        "{\"initial_at_timestamp\":0.001}",
        "{\"initial_at_timestamp\":1.005}",
        "{\"initial_at_timestamp\":1700000000.0005}",
        "{\"initial_at_timestamp\":253402300799}",
        "{\"initial_at_timestamp\":\"2024-05-01T14:00:00.123456+02:00\"}",
        "{\"initial_at_timestamp\":\"1700000000.9999\"}",
        "{\"max_number_of_messages\":999999999999999,\"chunk_size\":1}",
        "{\"dataset_name\":\"MySales\",\"table_name\":\"Orders\",\"write_disposition\":"
        "\"replace\"}",
        "{\"pipeline_name\":\"a.b-c_D\",\"parse_json\":false,\"write_disposition\":\"merge\"}",
    };
    struct kl_load_params p, back;
    struct kl_field_errors fe;
    struct kl_err err;
    char detail[160];
    (void)state;

    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        cJSON *doc;
        char *text;

        if (parse("orders", bodies[i], &p, &fe, detail, sizeof detail) != KL_OK)
            fail_msg("%s: %s", bodies[i], fe.n ? fe.e[0].message : detail);
        doc = kl_load_params_to_json(&p);
        text = cJSON_PrintUnformatted(doc);
        memset(&back, 0, sizeof back);
        snprintf(back.stream, sizeof back.stream, "orders");
        if (kl_load_params_from_json(text, &back, &err) != KL_OK)
            fail_msg("%s: %s", text, err.msg);
        assert_int_equal(back.initial.kind, p.initial.kind);
        assert_int_equal(back.initial.at_ms, p.initial.at_ms);
        assert_string_equal(back.dataset_name, p.dataset_name);
        assert_string_equal(back.table_name, p.table_name);
        assert_int_equal(back.max_messages, p.max_messages);
        assert_int_equal(back.chunk_size, p.chunk_size);
        assert_int_equal(back.write_disposition, p.write_disposition);
        free(text);
        cJSON_Delete(doc);
    }
    assert_int_equal(
        parse("s", "{\"initial_at_timestamp\":0.0015}", &p, &fe, detail, sizeof detail), KL_OK);
    assert_int_equal(p.initial.at_ms, 1);
    assert_string_equal(p.initial_text, "0.0015");
}

/* Request bodies are RFC 8259 JSON or 400. cJSON alone takes all of these;
 * a raw NUL inside a string or key used to cut it short ("ab\0cd" -> "ab"). */
static void bodies_are_strict_rfc8259(void **state)
{
    static const struct {
        const char *body;
        size_t len; /* 0: strlen */
    } cases[] = {
        {"{\"pipeline_name\": \"ab\0cd\", \"table_name\": \"t\0x\"}", 48},
        {"{\"chunk_size\0x\": 5}", 19},
        {"{\"pipeline_name\":\"p\\u0000\"}", 0},
        {"{\"p\\u0000ipeline_name\":\"p\"}", 0},
        {"{\0}", 3},
        {"\0{}", 3},
        {"{}\0", 3},
        {"{\"chunk_size\":\0 5}", 18},
        {"{\v}", 0},
        {"{\f}", 0},
        {"{\"chunk_size\":05}", 0},
        {"{\"chunk_size\":5.}", 0},
        {"{\"chunk_size\":.5}", 0},
        {"{\"chunk_size\":+5}", 0},
        {"{\"chunk_size\":5.e1}", 0},
        {"{\"chunk_size\":0x10}", 0},
        {"{\"chunk_size\":-}", 0},
        {"{\"chunk_size\":Infinity}", 0},
        {"{\"pipeline_name\":\"a\tb\"}", 0},
        {"{\"pipeline_name\":\"a\nb\"}", 0},
        {"{\"pipeline_name\":\"\xff\"}", 0},
        {"{\"pipeline_name\":\"\xc0\xaf\"}", 0},
        {"{\"\xed\xa0\x80\":1}", 0},
        {"{\"pipeline_name\":'p'}", 0},
        {"{pipeline_name:\"p\"}", 0},
        {"\xef\xbb\xbf{}", 0},
        {"{\"chunk_size\":5 /* five */}", 0},
    };
    struct kl_load_params p;
    struct kl_field_errors fe;
    char detail[160];
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].body);
        if (kl_load_request_parse("s", cases[i].body, len, &p, &fe, detail, sizeof detail) !=
            KL_ERR_INVALID)
            fail_msg("case %zu: accepted", i);
        if (detail[0] == '\0')
            fail_msg("case %zu: refused without a detail (%zu field errors)", i, fe.n);
    }
    /* and what RFC 8259 allows still parses */
    assert_int_equal(parse("s", "{\"chunk_size\":5e1,\"pipeline_name\":\"\\u0070\"}", &p, &fe,
                           detail, sizeof detail),
                     KL_OK);
    assert_int_equal(p.chunk_size, 50);
    assert_string_equal(p.pipeline_name, "p");
}

/* KL_CONTINUOUS_LOADS: an array of load requests with their stream, each a
 * continuous load; what is wrong names its entry. */
static void continuous_load_lists(void **state)
{
    static const struct {
        const char *json;
        const char *needle; /* NULL: parses */
    } cases[] = {
        {"[]", NULL},
        {"[{\"stream\":\"orders\"},{\"stream\":\"orders\",\"pipeline_name\":\"p2\","
         "\"continuous\":true,\"poll_interval_ms\":500}]",
         NULL},
        {"{}", "JSON array"},
        {"[1]", "entry 0: must be an object"},
        {"[{\"dataset_name\":\"x\"}]", "entry 0: \"stream\""},
        {"[{\"stream\":\"a\",\"continuous\":false}]", "\"continuous\" must be true"},
        {"[{\"stream\":\"a\"},{\"stream\":\"b\",\"chunk_size\":0}]",
         "entry 1 (stream b): chunk_size must be from 1 to 10000, not 0"},
        {"[{\"stream\":\"a\",\"max_number_of_messages\":5}]", "does not apply"},
        {"[{\"stream\":\"a b\"}]", "entry 0 (stream a b): stream"},
        {"[{\"stream\":\"a\"},{\"stream\":\"a\"}]", "entries 0 and 1"},
        {"[{\"stream\":\"a\",}]", "not valid JSON"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct kl_load_params *loads = NULL;
        size_t n = 99;
        char detail[512] = "";
        int rc = kl_load_requests_parse_list(cases[i].json, strlen(cases[i].json), &loads, &n,
                                             detail, sizeof detail);
        if (cases[i].needle == NULL) {
            if (rc != KL_OK)
                fail_msg("%s: %s", cases[i].json, detail);
        } else {
            assert_int_equal(rc, KL_ERR_INVALID);
            if (strstr(detail, cases[i].needle) == NULL)
                fail_msg("%s: '%s' does not say '%s'", cases[i].json, detail, cases[i].needle);
            assert_null(loads);
            assert_int_equal(n, 0);
        }
        if (i == 1) {
            assert_int_equal(n, 2);
            assert_true(loads[0].continuous && loads[1].continuous);
            assert_string_equal(loads[0].stream, "orders");
            assert_string_equal(loads[1].pipeline_name, "p2");
            assert_int_equal(loads[1].poll_interval_ms, 500);
        }
        free(loads);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_bodies_take_dlts_defaults),
        cmocka_unit_test(every_field_parses),
        cmocka_unit_test(a_continuous_load_parses),
        cmocka_unit_test(continuous_load_lists),
        cmocka_unit_test(load_windows_are_counted_from_the_job),
        cmocka_unit_test(initial_at_timestamp_follows_dlt),
        cmocka_unit_test(malformed_requests_name_the_field),
        cmocka_unit_test(every_bad_field_is_reported_at_once),
        cmocka_unit_test(unknown_field_names_are_cut_and_made_printable),
        cmocka_unit_test(many_errors_are_bounded),
        cmocka_unit_test(bodies_are_read_by_length_not_by_nul),
        cmocka_unit_test(number_text_is_the_shortest_round_trip),
        cmocka_unit_test(dataset_names_are_normalised_like_dlt),
        cmocka_unit_test(what_a_job_would_fail_on_is_refused),
        cmocka_unit_test(accepted_parameters_read_back_unchanged),
        cmocka_unit_test(bodies_are_strict_rfc8259),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
