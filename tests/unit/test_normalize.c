/*
 * The relational normaliser against dlt's rules (relational.py, the jsonl
 * items normaliser, type_helpers.coerce_value, the kinesis source's message
 * shape). Each case feeds messages and checks tables, column types and
 * cells; the comment on each case says which dlt behaviour it checks, or
 * which documented lossless choice where dlt fails or loses data.
 */
#include "tests/support/test_support.h"
#include "core/kinesis/message.h"
#include "core/kinesis/msgid.h"
#include "core/normalize/coerce.h"
#include "core/normalize/normalizer.h"
#include "core/normalize/schema.h"
#include "core/util/buf.h"
#include "core/util/digest.h"
#include "core/util/err.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MSGS 8
#define MAX_CHECKS 24

struct norm_case {
    const char *what;
    enum kl_write_disposition wd;
    bool raw; /* parse_json off */
    const char *msgs[MAX_MSGS];
    /* "table.col:type" column exists with the type; "!table.col" does not
     * exist; "table#row.col=value" a cell ("table#row.col=" for NULL);
     * "table#rows=N" the row count */
    const char *checks[MAX_CHECKS];
};

/* Shape of the test stream: stream "Orders-Stream" -> table orders_stream. */
static const struct norm_case norm_cases[] = {
    {"nested objects flatten into the parent row with __ (relational._flatten)",
     KL_WRITE_APPEND,
     false,
     {"{\"user\":{\"name\":\"Ann\",\"address\":{\"city\":\"Oslo\"}},\"id\":7}"},
     {"orders_stream.user__name:text", "orders_stream.user__address__city:text",
      "orders_stream.id:bigint", "orders_stream#0.user__address__city=Oslo",
      "!orders_stream.user"}},
    {"the kinesis envelope comes first, then _kinesis_msg_id, payload, _dlt_load_id, _dlt_id",
     KL_WRITE_APPEND,
     false,
     {"{\"a\":1}"},
     {"orders_stream.col0=_kinesis__shard_id", "orders_stream.col1=_kinesis__seq_no",
      "orders_stream.col2=_kinesis__ts", "orders_stream.col3=_kinesis__partition",
      "orders_stream.col4=_kinesis__stream_name", "orders_stream.col5=_kinesis_msg_id",
      "orders_stream.col6=a", "orders_stream.col7=_dlt_load_id", "orders_stream.col8=_dlt_id",
      "orders_stream._kinesis__ts:timestamp",
      "orders_stream#0._kinesis__ts=2023-11-14T22:13:20.123000+00:00",
      "orders_stream#0._kinesis__stream_name=Orders-Stream",
      "orders_stream#0._dlt_load_id=1700000000.5"}},
    {"lists of objects become child tables linked by _dlt_parent_id/_dlt_list_idx",
     KL_WRITE_APPEND,
     false,
     {"{\"items\":[{\"sku\":\"a\",\"qty\":1},{\"sku\":\"b\",\"qty\":2}]}"},
     {"orders_stream__items#rows=2", "orders_stream__items.sku:text",
      "orders_stream__items.qty:bigint", "orders_stream__items._dlt_parent_id:text",
      "orders_stream__items._dlt_list_idx:bigint", "orders_stream__items#1._dlt_list_idx=2?",
      "!orders_stream.items", "orders_stream__items#1.sku=b"}},
    {"lists of scalars use the column `value`",
     KL_WRITE_APPEND,
     false,
     {"{\"tags\":[\"x\",\"y\",null]}"},
     {"orders_stream__tags#rows=3", "orders_stream__tags.value:text",
      "orders_stream__tags#2.value=", "orders_stream__tags#2._dlt_list_idx=2"}},
    {"lists of lists: an intermediate row per inner list, values in <table>__list",
     KL_WRITE_APPEND,
     false,
     {"{\"m\":[[1,2],[3]]}"},
     {"orders_stream__m#rows=2", "orders_stream__m__list#rows=3", "!orders_stream__m.value",
      "orders_stream__m__list.value:bigint", "orders_stream__m__list#2.value=3",
      "orders_stream__m__list#2._dlt_list_idx=0"}},
    {"empty objects and lists make no columns, tables or rows",
     KL_WRITE_APPEND,
     false,
     {"{\"e\":{},\"l\":[],\"k\":1}"},
     {"!orders_stream.e", "!orders_stream__l.value", "orders_stream.k:bigint"}},
    {"lists inside child rows become grandchild tables",
     KL_WRITE_APPEND,
     false,
     {"{\"items\":[{\"sku\":\"a\",\"opts\":[\"red\",\"big\"]}]}"},
     {"orders_stream__items__opts#rows=2", "orders_stream__items__opts#1.value=big"}},
    {"types: text, bigint, double, bool; all-null columns are not created",
     KL_WRITE_APPEND,
     false,
     {"{\"s\":\"x\",\"i\":-5,\"f\":2.5,\"b\":true,\"n\":null}"},
     {"orders_stream.s:text", "orders_stream.i:bigint", "orders_stream.f:double",
      "orders_stream.b:bool", "!orders_stream.n", "orders_stream#0.b=true",
      "orders_stream#0.i=-5"}},
    {"iso_timestamp detection: ISO-8601 date-times are timestamps, dates and times are text",
     KL_WRITE_APPEND,
     false,
     {"{\"t1\":\"2024-01-02T03:04:05Z\",\"t2\":\"2024-01-02 03:04:05.5+02:00\","
      "\"t3\":\"20240102T030405\",\"d\":\"2024-01-02\",\"h\":\"12:30\",\"x\":\"2024-13-01T00:00:"
      "00\"}"},
     {"orders_stream.t1:timestamp", "orders_stream.t2:timestamp", "orders_stream.t3:timestamp",
      "orders_stream.d:text", "orders_stream.h:text", "orders_stream.x:text",
      "orders_stream#0.t2=2024-01-02T01:04:05.500000+00:00"}},
    {"detection happens only when a column is first seen (dlt's _infer_column_type)",
     KL_WRITE_APPEND,
     false,
     {"{\"t\":\"hello\"}", "{\"t\":\"2024-01-02T03:04:05Z\"}"},
     {"orders_stream.t:text", "orders_stream#1.t=2024-01-02T03:04:05Z",
      "!orders_stream.t__v_timestamp"}},
    {"a float into a bigint column cannot coerce (1.5 % 1 != 0): variant __v_double",
     KL_WRITE_APPEND,
     false,
     {"{\"q\":1}", "{\"q\":1.5}", "{\"q\":2.0}"},
     {"orders_stream.q:bigint", "orders_stream.q__v_double:double",
      "orders_stream#1.q__v_double=1.5", "orders_stream#1.q=", "orders_stream#2.q=2"}},
    {"an int into a double column is coerced (float(value))",
     KL_WRITE_APPEND,
     false,
     {"{\"p\":1.5}", "{\"p\":3}"},
     {"orders_stream.p:double", "!orders_stream.p__v_bigint", "orders_stream#1.p=3"}},
    {"anything into a text column becomes its str(): ints, floats as repr, bools as True",
     KL_WRITE_APPEND,
     false,
     {"{\"v\":\"a\"}", "{\"v\":12}", "{\"v\":1e16}", "{\"v\":0.00001}", "{\"v\":false}"},
     {"orders_stream.v:text", "orders_stream#1.v=12", "orders_stream#2.v=1e+16",
      "orders_stream#3.v=1e-05", "orders_stream#4.v=False"}},
    {"text into bigint/bool/double columns is parsed when Python would parse it",
     KL_WRITE_APPEND,
     false,
     {"{\"i\":1,\"b\":true,\"d\":0.5}", "{\"i\":\" 0x1F \",\"b\":\"No\",\"d\":\"1_000.5\"}",
      "{\"i\":\"12a\",\"b\":\"maybe\",\"d\":\"n/a\"}"},
     {"orders_stream#1.i=31", "orders_stream#1.b=false", "orders_stream#1.d=1000.5",
      "orders_stream#2.i__v_text=12a", "orders_stream#2.b__v_text=maybe",
      "orders_stream#2.d__v_text=n/a"}},
    {"a variant column is typed by autodetection (an ISO string into a bigint column)",
     KL_WRITE_APPEND,
     false,
     {"{\"c\":5}", "{\"c\":\"2024-01-02T00:00:00Z\"}"},
     {"orders_stream.c__v_text:timestamp"}},
    {"lossless: where dlt raises CannotCoerceColumnException, a second variant keeps the value",
     KL_WRITE_APPEND,
     false,
     {"{\"c\":5}", "{\"c\":\"2024-01-02T00:00:00Z\"}", "{\"c\":\"not a time\"}"},
     {"orders_stream.c__v_text__v_text:text", "orders_stream#2.c__v_text__v_text=not a time"}},
    {"lossless: integers beyond int64 are decimal (exact digits), never bigint or double",
     KL_WRITE_APPEND,
     false,
     {"{\"big\":123456789012345678901234567890,\"u\":18446744073709551615}", "{\"big\":5}",
      "{\"n\":1}", "{\"n\":99999999999999999999}"},
     {"orders_stream.big:decimal", "orders_stream.u:decimal",
      "orders_stream#0.big=123456789012345678901234567890", "orders_stream#1.big=5",
      "orders_stream.n__v_decimal:decimal", "orders_stream#3.n__v_decimal=99999999999999999999"}},
    {"lossless: floats that overflow a double are decimal text (dlt's orjson fails the run)",
     KL_WRITE_APPEND,
     false,
     {"{\"x\":1e400,\"y\":-2.5E-999}"},
     {"orders_stream.x:decimal", "orders_stream#0.x=1e400", "orders_stream.y:decimal"}},
    {"an int into a double column is float(value), the nearest double (coerce_value)",
     KL_WRITE_APPEND,
     false,
     {"{\"p\":0.5}", "{\"p\":9007199254740993}"},
     {"!orders_stream.p__v_bigint", "orders_stream#1.p=9007199254740992"}},
    {"lossless: strings with U+0000 (PostgreSQL text cannot hold them) go to __v_binary",
     KL_WRITE_APPEND,
     false,
     {"{\"s\":\"ok\"}", "{\"s\":\"a\\u0000b\"}", "{\"z\":\"\\u0000\"}"},
     {"orders_stream.s:text", "orders_stream.s__v_binary:binary",
      "orders_stream#1.s__v_binary=0x610062", "!orders_stream.z",
      "orders_stream.z__v_binary:binary"}},
    {"numbers into a bool column are bool(value): any non-zero is true (coerce_value)",
     KL_WRITE_APPEND,
     false,
     {"{\"f\":true}", "{\"f\":1}", "{\"f\":5}", "{\"f\":0.0}"},
     {"orders_stream#1.f=true", "orders_stream#2.f=true", "orders_stream#3.f=false",
      "!orders_stream.f__v_bigint", "!orders_stream.f__v_double"}},
    {"snake_case names: camelCase, leading digits, collapsing, trailing underscores",
     KL_WRITE_APPEND,
     false,
     {"{\"userId\":1,\"HTTPCode\":2,\"1st\":3,\"a--b\":4,\"end_\":5,\"e@mail\":6}"},
     {"orders_stream.user_id:bigint", "orders_stream.http_code:bigint", "orders_stream._1st:bigint",
      "orders_stream.a_b:bigint", "orders_stream.endx:bigint", "orders_stream.eamail:bigint"}},
    {"keys normalising to one name behave as one dict key: first place, last value",
     KL_WRITE_APPEND,
     false,
     {"{\"Name\":\"first\",\"x\":0,\"name\":\"second\"}"},
     {"orders_stream.col6=name", "orders_stream#0.name=second"}},
    {"empty and blank keys are `_empty` (relational._flatten); \"__\" is snake_case's \"xx\"",
     KL_WRITE_APPEND,
     false,
     {"{\"\":1,\" \":{\"x\":2},\"__\":3}"},
     {"orders_stream._empty:bigint", "orders_stream._empty__x:bigint", "orders_stream#0._empty=1",
      "orders_stream#0.xx=3"}},
    {"a payload key _kinesis replaces the envelope in place (message.update)",
     KL_WRITE_APPEND,
     false,
     {"{\"_kinesis\":{\"mine\":1},\"v\":1}"},
     {"orders_stream._kinesis__mine:bigint", "!orders_stream._kinesis__shard_id",
      "orders_stream.col0=_kinesis__mine"}},
    {"parse_json off: the bytes go to column data (binary)",
     KL_WRITE_APPEND,
     true,
     {"not json at all"},
     {"orders_stream.data:binary", "orders_stream#0.data=0x6e6f74206a736f6e20617420616c6c"}},
    {"merge: _kinesis_msg_id is the root's primary key; child rows carry _dlt_root_id",
     KL_WRITE_MERGE,
     false,
     {"{\"items\":[{\"a\":1}]}"},
     {"orders_stream._kinesis_msg_id:text", "orders_stream.pk=_kinesis_msg_id",
      "orders_stream__items._dlt_root_id:text", "orders_stream__items.notnull=_dlt_root_id",
      "orders_stream__items#0._dlt_root_id=@root0"}},
    {"append: _kinesis_msg_id is still the (non-null) primary key hint; no root key",
     KL_WRITE_APPEND,
     false,
     {"{\"items\":[{\"a\":1}]}"},
     {"!orders_stream__items._dlt_root_id", "orders_stream.pk=_kinesis_msg_id",
      "orders_stream__items.nopk=_dlt_id"}},
    {"a payload _dlt_id is kept as the row id and children link to it (relational._normalize_row)",
     KL_WRITE_APPEND,
     false,
     {"{\"_dlt_id\":\"mine\",\"l\":[1]}"},
     {"orders_stream#0._dlt_id=mine", "orders_stream__l#0._dlt_parent_id=mine"}},
    {"snake_case per key, then __ joins (relational._flatten): doubled, leading, trailing _",
     KL_WRITE_APPEND,
     false,
     {"{\"a__b\":1,\"__lead\":2,\"trail__\":3,\"o\":{\"__in__\":4},\"__\":5}"},
     {"orders_stream.a_b:bigint", "orders_stream._lead:bigint", "orders_stream.trailxx:bigint",
      "orders_stream.o___inxx:bigint", "orders_stream.xx:bigint", "!orders_stream.a__b",
      "!orders_stream.lead", "!orders_stream.o__in"}},
    {"keys colliding after snake_case are one dict key: first place, last value (even null)",
     KL_WRITE_APPEND,
     false,
     {"{\"a_b\":1,\"z\":0,\"a__b\":2}", "{\"a__b\":3,\"A_B\":null}",
      "{\"q\":1,\"Q_\":2,\"q_\":null}"},
     {"orders_stream.col6=a_b", "orders_stream#0.a_b=2", "orders_stream#1.a_b=",
      "orders_stream.q:bigint", "!orders_stream.qx", "orders_stream#2.q=1"}},
    {"a later null of a colliding key means the column is never created (all-null)",
     KL_WRITE_APPEND,
     false,
     {"{\"a_b\":1,\"z\":0,\"A__B\":null}"},
     {"!orders_stream.a_b", "orders_stream.col6=z"}},
    {"list keys are normalised the same way before the table path is joined",
     KL_WRITE_APPEND,
     false,
     {"{\"trail_\":[1],\"__l\":[{\"x\":1}],\"a__b\":[true]}"},
     {"orders_stream__trailx#rows=1", "orders_stream___l#rows=1", "orders_stream__a_b#rows=1",
      "orders_stream___l.x:bigint"}},
    {"lists of scalars: value, _dlt_id, _dlt_parent_id, _dlt_list_idx (_normalize_list)",
     KL_WRITE_APPEND,
     false,
     {"{\"tags\":[\"x\"],\"items\":[{\"a\":1}]}"},
     {"orders_stream__tags.col0=value", "orders_stream__tags.col1=_dlt_id",
      "orders_stream__tags.col2=_dlt_parent_id", "orders_stream__tags.col3=_dlt_list_idx",
      "orders_stream__items.col0=a", "orders_stream__items.col1=_dlt_parent_id",
      "orders_stream__items.col2=_dlt_list_idx", "orders_stream__items.col3=_dlt_id",
      "orders_stream__tags.notnull=_dlt_id", "orders_stream__tags.notnull=_dlt_list_idx"}},
    {"merge: the propagated _dlt_root_id follows the link columns of a scalar row, the data of "
     "an object row",
     KL_WRITE_MERGE,
     false,
     {"{\"tags\":[\"x\"],\"items\":[{\"a\":1}]}"},
     {"orders_stream__tags.col4=_dlt_root_id", "orders_stream__tags.col1=_dlt_id",
      "orders_stream__items.col1=_dlt_root_id", "orders_stream__items.col4=_dlt_id"}},
    {"parse_json off: _kinesis_msg_id is the non-null primary key hint too",
     KL_WRITE_APPEND,
     true,
     {"raw"},
     {"orders_stream.pk=_kinesis_msg_id", "orders_stream.notnull=_kinesis_msg_id"}},
    {"non-objects are dead letters, not rows",
     KL_WRITE_APPEND,
     false,
     {"[1,2]", "{\"ok\":1}", "{bad", "null"},
     {"orders_stream#rows=1", "dead=3"}},
};

static struct kl_message make_msg(const char *data, int i, char seq[32])
{
    struct kl_message m;
    memset(&m, 0, sizeof m);
    m.stream_name = "Orders-Stream";
    m.shard_id = "shardId-000000000001";
    snprintf(seq, 32, "4959%04d", i);
    m.sequence = seq;
    m.sub_sequence = -1;
    m.partition_key = "pk-1";
    m.arrival_ms = 1700000000123LL;
    m.data = (const unsigned char *)data;
    m.data_len = strlen(data);
    kl_msg_id(m.shard_id, m.sequence, -1, m.msg_id, NULL);
    return m;
}

static const struct kl_table_rows *rows_of(const struct kl_row_batch *b, const char *table)
{
    for (size_t i = 0; i < b->n_tables; i++) {
        if (strcmp(b->schema->tables[b->tables[i].table].name, table) == 0)
            return &b->tables[i];
    }
    return NULL;
}

static void cell_text(const struct kl_value *v, char *out, size_t cap)
{
    switch (v->type) {
    case KL_TYPE_NULL:
        out[0] = '\0';
        break;
    case KL_TYPE_BIGINT:
        snprintf(out, cap, "%" PRId64, v->v.i);
        break;
    case KL_TYPE_DOUBLE:
        snprintf(out, cap, "%.17g", v->v.d);
        break;
    case KL_TYPE_BOOL:
        snprintf(out, cap, "%s", v->v.b ? "true" : "false");
        break;
    case KL_TYPE_TIMESTAMP:
        kl_timestamp_iso(v->v.us, out);
        break;
    case KL_TYPE_BINARY: {
        size_t o = (size_t)snprintf(out, cap, "0x");
        for (size_t i = 0; i < v->v.s.len && o + 3 < cap; i++)
            o += (size_t)snprintf(out + o, cap - o, "%02x", (unsigned char)v->v.s.ptr[i]);
        break;
    }
    default:
        snprintf(out, cap, "%.*s", (int)v->v.s.len, v->v.s.ptr);
    }
}

static void check(const struct norm_case *c, const struct kl_row_batch *b, const char *chk,
                  const char *root_id0)
{
    const struct kl_schema *s = b->schema;
    char table[80], col[80], want[200], got[400];
    size_t ti, ci;
    if (strncmp(chk, "dead=", 5) == 0) {
        if (b->n_dead_letters != (size_t)atoi(chk + 5))
            fail_msg("%s: %zu dead letters, want %s", c->what, b->n_dead_letters, chk + 5);
        return;
    }
    if (chk[0] == '!') {
        sscanf(chk + 1, "%79[^.].%79s", table, col);
        if (kl_schema_find_table(s, table, &ti) && kl_schema_find_column(&s->tables[ti], col, NULL))
            fail_msg("%s: %s.%s exists", c->what, table, col);
        return;
    }
    const char *hash = strchr(chk, '#');
    if (hash == NULL) {
        /* table.col:type, table.colN=name, table.pk=col, table.notnull=col, table.nopk=col */
        const char *eq = strchr(chk, '=');
        sscanf(chk, "%79[^.].%79[^:=]", table, col);
        if (!kl_schema_find_table(s, table, &ti))
            fail_msg("%s: no table %s", c->what, table);
        const struct kl_table *t = &s->tables[ti];
        if (eq != NULL) {
            if (strncmp(col, "col", 3) == 0 && col[3] >= '0' && col[3] <= '9') {
                size_t k = (size_t)atoi(col + 3);
                if (k >= t->n_columns || strcmp(t->columns[k].name, eq + 1) != 0)
                    fail_msg("%s: column %zu is %s, want %s", c->what, k,
                             k < t->n_columns ? t->columns[k].name : "(none)", eq + 1);
                return;
            }
            if (!kl_schema_find_column(t, eq + 1, &ci))
                fail_msg("%s: no column %s", c->what, eq + 1);
            if (strcmp(col, "pk") == 0 && !(t->columns[ci].primary_key && !t->columns[ci].nullable))
                fail_msg("%s: %s is not a non-null primary key", c->what, eq + 1);
            if (strcmp(col, "nopk") == 0 && t->columns[ci].primary_key)
                fail_msg("%s: %s is a primary key", c->what, eq + 1);
            if (strcmp(col, "notnull") == 0 && t->columns[ci].nullable)
                fail_msg("%s: %s is nullable", c->what, eq + 1);
            return;
        }
        const char *type = strchr(chk, ':') + 1;
        if (!kl_schema_find_column(t, col, &ci))
            fail_msg("%s: no column %s.%s", c->what, table, col);
        if (strcmp(kl_data_type_name(t->columns[ci].type), type) != 0)
            fail_msg("%s: %s.%s is %s, want %s", c->what, table, col,
                     kl_data_type_name(t->columns[ci].type), type);
        return;
    }
    snprintf(table, sizeof table, "%.*s", (int)(hash - chk), chk);
    const struct kl_table_rows *tr = rows_of(b, table);
    if (strncmp(hash + 1, "rows=", 5) == 0) {
        size_t want_rows = (size_t)atoi(hash + 6);
        if ((tr ? tr->n_rows : 0) != want_rows)
            fail_msg("%s: %s has %zu rows, want %zu", c->what, table, tr ? tr->n_rows : 0,
                     want_rows);
        return;
    }
    int row = atoi(hash + 1);
    const char *dot = strchr(hash, '.');
    const char *eq = strchr(dot, '=');
    snprintf(col, sizeof col, "%.*s", (int)(eq - dot - 1), dot + 1);
    snprintf(want, sizeof want, "%s", eq + 1);
    if (want[0] && want[strlen(want) - 1] == '?')
        return; /* informational */
    if (strcmp(want, "@root0") == 0)
        snprintf(want, sizeof want, "%s", root_id0);
    if (tr == NULL || (size_t)row >= tr->n_rows)
        fail_msg("%s: no row %d in %s", c->what, row, table);
    if (!kl_schema_find_column(&s->tables[tr->table], col, &ci))
        fail_msg("%s: no column %s.%s", c->what, table, col);
    if (ci >= tr->n_columns)
        fail_msg("%s: column %s not in the batch", c->what, col);
    cell_text(&tr->cells[(size_t)row * tr->n_columns + ci], got, sizeof got);
    if (strcmp(got, want) != 0)
        fail_msg("%s: %s#%d.%s is '%s', want '%s'", c->what, table, row, col, got, want);
}

static void follows_dlt_rules(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof norm_cases / sizeof norm_cases[0]; i++) {
        const struct norm_case *c = &norm_cases[i];
        struct kl_normalizer_options o = {.stream_name = "Orders-Stream",
                                          .parse_json = !c->raw,
                                          .load_id = "1700000000.5",
                                          .write_disposition = c->wd};
        struct kl_err err;
        struct kl_normalizer *n = kl_normalizer_create(&o, NULL, &err);
        struct kl_row_batch b;
        char seq[32], root0[KL_DLT_ID_LEN + 1] = "";
        assert_non_null(n);
        for (int k = 0; k < MAX_MSGS && c->msgs[k]; k++) {
            struct kl_message m = make_msg(c->msgs[k], k, seq);
            if (k == 0)
                kl_digest_b64(m.msg_id, strlen(m.msg_id), KL_DLT_ID_BYTES, root0);
            if (kl_normalizer_add(n, &m, &err) != KL_OK)
                fail_msg("%s: %s", c->what, err.msg);
        }
        assert_int_equal(kl_normalizer_close(n, &b, &err), KL_OK);
        for (int k = 0; k < MAX_CHECKS && c->checks[k]; k++)
            check(c, &b, c->checks[k], root0);
        kl_normalizer_destroy(n);
    }
}

/* _dlt_id: the root's is digest128(_kinesis_msg_id, 10 bytes) (the project's rule);
 * a child's is digest128(f"{parent_id}_{table}_{idx}", 10) as dlt's
 * get_nested_row_hash; values computed with Python's hashlib.shake_128. */
static void row_ids_are_deterministic(void **state)
{
    struct kl_normalizer_options o = {
        .stream_name = "My-Stream", .parse_json = true, .load_id = "1"};
    struct kl_err err;
    struct kl_normalizer *n = kl_normalizer_create(&o, NULL, &err);
    struct kl_message m;
    struct kl_row_batch b;
    (void)state;
    memset(&m, 0, sizeof m);
    m.shard_id = "shardId-000000000000";
    m.sequence = "1000";
    m.sub_sequence = -1;
    m.partition_key = "pk";
    /* twelve tags: a list index of two digits too */
    m.data = (const unsigned char *)"{\"tags\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\","
                                    "\"i\",\"j\",\"k\",\"l\"]}";
    m.data_len = strlen((const char *)m.data);
    assert_int_equal(kl_msg_id(m.shard_id, m.sequence, -1, m.msg_id, NULL), KL_OK);
    assert_string_equal(m.msg_id, "dadID5Rb3SBPLsEq3H/9");
    assert_int_equal(kl_normalizer_add(n, &m, &err), KL_OK);
    assert_int_equal(kl_normalizer_close(n, &b, &err), KL_OK);
    const struct kl_table_rows *root = rows_of(&b, "my_stream");
    const struct kl_table_rows *tags = rows_of(&b, "my_stream__tags");
    size_t ci;
    char got[64];
    assert_true(kl_schema_find_column(&b.schema->tables[root->table], "_dlt_id", &ci));
    cell_text(&root->cells[ci], got, sizeof got);
    assert_string_equal(got, "UvGZlILxpH+4fA");
    assert_true(kl_schema_find_column(&b.schema->tables[tags->table], "_dlt_id", &ci));
    cell_text(&tags->cells[ci], got, sizeof got);
    assert_string_equal(got, "+f8RkcV3t3GarQ"); /* "UvGZlILxpH+4fA_my_stream__tags_0" */
    assert_int_equal(tags->n_rows, 12);
    cell_text(&tags->cells[11 * tags->n_columns + ci], got, sizeof got);
    assert_string_equal(got, "7yVCE8NxKhizEw"); /* "UvGZlILxpH+4fA_my_stream__tags_11" */
    kl_normalizer_destroy(n);
}

/* The version hash of a known schema, in the engine-9 document (the
 * members of every object hashed in sorted key order; test_dlt_schema
 * checks the same rules against dlt's own hash of the fixture schema). */
static void version_hash_is_stable(void **state)
{
    struct kl_normalizer_options o = {.stream_name = "s", .parse_json = true, .load_id = "1"};
    struct kl_err err;
    struct kl_normalizer *n = kl_normalizer_create(&o, kl_schema_create("kinesis"), &err);
    struct kl_row_batch b;
    char seq[32], hash[KL_SCHEMA_HASH_CAP];
    (void)state;
    struct kl_message m = make_msg(
        "{\"zeta\":1,\"alpha\":\"x\",\"mid\":true,\"l\":[{\"z\":1.5,\"b\":\"y\",\"a\":2}]}", 0,
        seq);
    assert_int_equal(kl_normalizer_add(n, &m, &err), KL_OK);
    assert_int_equal(kl_normalizer_close(n, &b, &err), KL_OK);
    assert_int_equal(kl_schema_version_hash(b.schema, hash, &err), KL_OK);
    assert_string_equal(hash, "9ACKeNFeZrmcFomdo0bIk0alkSjao/5+z52I7FsSte4=");
    kl_normalizer_destroy(n);
}

/* The schema survives its stored JSON; the version moves once per changed chunk. */
static void schema_versions_and_round_trip(void **state)
{
    struct kl_normalizer_options o = {.stream_name = "s",
                                      .parse_json = true,
                                      .load_id = "1",
                                      .write_disposition = KL_WRITE_MERGE};
    struct kl_err err;
    struct kl_normalizer *n = kl_normalizer_create(&o, kl_schema_create("kinesis"), &err);
    struct kl_row_batch b;
    char seq[32];
    struct kl_buf js;
    (void)state;
    kl_buf_init(&js, 1 << 20);
    assert_int_equal(kl_normalizer_schema(n)->version, 1);
    struct kl_message m = make_msg("{\"a\":1,\"l\":[{\"x\":1.5}]}", 0, seq);
    assert_int_equal(kl_normalizer_add(n, &m, &err), KL_OK);
    assert_int_equal(kl_normalizer_close(n, &b, &err), KL_OK);
    assert_int_equal(b.schema->version, 2);
    char h2[KL_SCHEMA_HASH_CAP];
    strcpy(h2, b.schema->version_hash);
    kl_normalizer_reset(n, true);
    m = make_msg("{\"a\":2}", 1, seq);
    assert_int_equal(kl_normalizer_add(n, &m, &err), KL_OK);
    assert_int_equal(kl_normalizer_close(n, &b, &err), KL_OK);
    assert_int_equal(b.schema->version, 2); /* nothing new */
    assert_string_equal(b.schema->version_hash, h2);
    kl_normalizer_reset(n, true);

    assert_int_equal(kl_schema_to_json(kl_normalizer_schema(n), &js, &err), KL_OK);
    struct kl_schema *back = NULL;
    assert_int_equal(kl_schema_from_json(js.data, js.len, &back, &err), KL_OK);
    assert_int_equal(back->version, 2);
    assert_string_equal(back->version_hash, h2);
    assert_int_equal(back->n_tables, 2);
    char again[KL_SCHEMA_HASH_CAP];
    assert_int_equal(kl_schema_version_hash(back, again, &err), KL_OK);
    assert_string_equal(again, h2);
    size_t ti, ci;
    assert_true(kl_schema_find_table(back, "s__l", &ti));
    assert_string_equal(back->tables[ti].parent, "s");
    assert_true(kl_schema_find_column(&back->tables[ti], "_dlt_root_id", &ci));
    assert_false(back->tables[ti].columns[ci].nullable);
    assert_true(kl_schema_find_table(back, "s", &ti));
    assert_int_equal(back->tables[ti].write_disposition, KL_WRITE_MERGE);
    assert_true(kl_schema_find_column(&back->tables[ti], "_kinesis_msg_id", &ci));
    assert_true(back->tables[ti].columns[ci].primary_key);

    /* a replica continues from the stored schema: the same columns, no new version */
    assert_int_equal(kl_normalizer_replace_schema(n, back, &err), KL_OK);
    m = make_msg("{\"a\":3,\"l\":[{\"x\":2}]}", 2, seq);
    assert_int_equal(kl_normalizer_add(n, &m, &err), KL_OK);
    assert_int_equal(kl_normalizer_close(n, &b, &err), KL_OK);
    assert_int_equal(b.schema->version, 2);
    kl_normalizer_reset(n, true);

    const char *const *names;
    const uint64_t *rows;
    size_t nc = kl_normalizer_row_counts(n, &names, &rows);
    assert_int_equal(nc, 2);
    assert_string_equal(names[0], "s");
    assert_true(rows[0] == 3);
    assert_string_equal(names[1], "s__l");
    assert_true(rows[1] == 2);
    kl_buf_free(&js);
    kl_normalizer_destroy(n);
}

/* A reset that is not committed drops the chunk's counts. */
static void uncommitted_chunks_do_not_count(void **state)
{
    struct kl_normalizer_options o = {.stream_name = "s", .parse_json = true, .load_id = "1"};
    struct kl_err err;
    struct kl_normalizer *n = kl_normalizer_create(&o, NULL, &err);
    struct kl_row_batch b;
    char seq[32];
    const char *const *names;
    const uint64_t *rows;
    (void)state;
    struct kl_message m = make_msg("{\"a\":1}", 0, seq);
    assert_int_equal(kl_normalizer_add(n, &m, &err), KL_OK);
    assert_int_equal(kl_normalizer_close(n, &b, &err), KL_OK);
    kl_normalizer_reset(n, false);
    assert_int_equal(kl_normalizer_row_counts(n, &names, &rows), 0);
    kl_normalizer_destroy(n);
}

/* pendulum's parsers as dlt calls them (parse_iso8601, then _parse_common). */
static void iso_parsing_as_pendulum(void **state)
{
    static const struct {
        const char *s;
        int kind;
        const char *utc; /* for DATE and DATETIME */
    } cases[] = {
        {"2024-01-02T03:04:05Z", KL_ISO_DATETIME, "2024-01-02T03:04:05+00:00"},
        {"2024-01-02T03:04:05.123456789+01:30", KL_ISO_DATETIME,
         "2024-01-02T01:34:05.123456+00:00"},
        {"2024-01-02 03:04", KL_ISO_DATETIME, "2024-01-02T03:04:00+00:00"},
        {"20240102T0304", KL_ISO_DATETIME, "2024-01-02T03:04:00+00:00"},
        {"2024-W01-1T10:00:00", KL_ISO_DATETIME, "2024-01-01T10:00:00+00:00"},
        {"2024-032T00:00:00", KL_ISO_DATETIME, "2024-02-01T00:00:00+00:00"},
        {"2024/01/02 03:04:05", KL_ISO_DATETIME, "2024-01-02T03:04:05+00:00"}, /* _parse_common */
        {"20240102 03:04:05", KL_ISO_DATETIME, "2024-01-02T03:04:05+00:00"},   /* _parse_common */
        {"2024-01-02", KL_ISO_DATE, "2024-01-02T00:00:00+00:00"},
        {"2024-01", KL_ISO_DATE, "2024-01-01T00:00:00+00:00"},
        {"12:30", KL_ISO_TIME, NULL},
        {"T12:30:00", KL_ISO_NONE, NULL}, /* pendulum: "basic" date with extended time */
        {"2024-01-02T24:00:00", KL_ISO_NONE, NULL},
        {"2024-02-30T00:00:00", KL_ISO_NONE, NULL},
        {"2024-01-02T03:04:05+25:00", KL_ISO_NONE, NULL},
        {"20240102T03:04:05", KL_ISO_NONE, NULL}, /* basic date, extended time */
        {"P1D", KL_ISO_NONE, NULL},
        {"2024-01-02/2024-02-01", KL_ISO_NONE, NULL},
        {"hello", KL_ISO_NONE, NULL},
        {"4954346307654800757710509270303", KL_ISO_NONE, NULL},
        {"0001234", KL_ISO_DATE, "0001-08-22T00:00:00+00:00"}, /* ordinal date 234 of year 1 */
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t us = 0;
        char iso[40];
        int k = kl_iso_parse(cases[i].s, strlen(cases[i].s), &us);
        if (k != cases[i].kind)
            fail_msg("%s: kind %d, want %d", cases[i].s, k, cases[i].kind);
        if (cases[i].utc) {
            kl_timestamp_iso(us, iso);
            if (strcmp(iso, cases[i].utc) != 0)
                fail_msg("%s: %s, want %s", cases[i].s, iso, cases[i].utc);
        }
    }
}

/* Python's repr of floats (what str() of a float into a text column gives). */
/* The root table is normalize_table_identifier of the table or stream
 * name (the extractor's _get_static_table_name), not a path: "__" inside
 * collapses, trailing "_" become "x". */
static void root_table_is_normalize_table_identifier(void **state)
{
    static const struct {
        const char *name, *table;
    } cases[] = {
        {"My__Table", "my_table"},
        {"orders_", "ordersx"},
        {"__x", "_x"},
        {"Orders-Stream", "orders_stream"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct kl_normalizer_options o = {
            .stream_name = "s", .table_name = cases[i].name, .parse_json = true, .load_id = "1.5"};
        struct kl_err err;
        struct kl_normalizer *n = kl_normalizer_create(&o, NULL, &err);
        char seq[32];
        struct kl_message m = make_msg("{\"a\":1}", 1, seq);
        struct kl_row_batch b;
        assert_non_null(n);
        assert_int_equal(kl_normalizer_add(n, &m, &err), KL_OK);
        assert_int_equal(kl_normalizer_close(n, &b, &err), KL_OK);
        assert_string_equal(b.schema->tables[b.tables[0].table].name, cases[i].table);
        kl_normalizer_destroy(n);
    }
}

static void float_repr_as_python(void **state)
{
    static const struct {
        double d;
        const char *s;
    } cases[] = {
        {1.5, "1.5"},
        {0.1, "0.1"},
        {100.0, "100.0"},
        {1e16, "1e+16"},
        {1e15, "1000000000000000.0"},
        {0.0001, "0.0001"},
        {0.00001, "1e-05"},
        {-2.5e-7, "-2.5e-07"},
        {123456789.125, "123456789.125"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {5e-324, "5e-324"},
        {-0.0, "-0.0"},
    };
    char out[32];
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kl_double_repr(cases[i].d, out);
        assert_string_equal(out, cases[i].s);
    }
}

/* With a rows target the chunk says it is full once a message passed it,
 * that message included (nothing is normalised twice), and not before; a
 * new chunk starts empty. */
static void a_chunk_is_full_once_a_message_passed_its_target(void **state)
{
    struct kl_normalizer_options o = {.stream_name = "Orders-Stream",
                                      .parse_json = true,
                                      .load_id = "1",
                                      .chunk_bytes_target = 16 * 1024};
    struct kl_err err;
    struct kl_normalizer *n = kl_normalizer_create(&o, NULL, &err);
    const char *body = "{\"id\":1,\"name\":\"a name of some length\",\"tags\":[\"a\",\"b\"]}";
    struct kl_row_batch b;
    char seq[32];
    int added = 0;

    (void)state;
    assert_non_null(n);
    assert_false(kl_normalizer_full(n));
    while (!kl_normalizer_full(n)) {
        struct kl_message m = make_msg(body, added, seq);
        assert_int_equal(kl_normalizer_add(n, &m, &err), KL_OK);
        added++;
        assert_true(added < 10000);
    }
    assert_true(added > 1);
    assert_int_equal(kl_normalizer_close(n, &b, &err), KL_OK);
    assert_int_equal(rows_of(&b, "orders_stream")->n_rows, (size_t)added);
    kl_normalizer_reset(n, true);
    assert_false(kl_normalizer_full(n));
    kl_normalizer_destroy(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(follows_dlt_rules),
        cmocka_unit_test(row_ids_are_deterministic),
        cmocka_unit_test(a_chunk_is_full_once_a_message_passed_its_target),
        cmocka_unit_test(schema_versions_and_round_trip),
        cmocka_unit_test(version_hash_is_stable),
        cmocka_unit_test(uncommitted_chunks_do_not_count),
        cmocka_unit_test(iso_parsing_as_pendulum),
        cmocka_unit_test(float_repr_as_python),
        cmocka_unit_test(root_table_is_normalize_table_identifier),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
