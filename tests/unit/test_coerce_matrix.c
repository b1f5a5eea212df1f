/*
 * Every pair of (existing column type, value type) through the normaliser,
 * against what dlt 0.5.4 does with it: coerce_value
 * (dlt/common/data_types/type_helpers.py) into the column, or a variant
 * `<col>__v_<type>` where coerce_value raises ValueError (schema.py's
 * _coerce_non_null_value). Expected values were worked out from dlt's code
 * and checked with Python 3.11 (str(), float(), Decimal, base64, datetime).
 * Where dlt itself crashes or writes what the database refuses, the row
 * says so and the value goes to a variant.
 */
#include "tests/support/test_support.h"
#include "core/kinesis/message.h"
#include "core/kinesis/msgid.h"
#include "core/normalize/coerce.h"
#include "core/normalize/normalizer.h"
#include "core/normalize/schema.h"
#include "core/util/err.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where the value comes from: the payload's key "c" (JSON), the envelope's
 * `_kinesis__ts` (a datetime in dlt) or, with parse_json off, `data` (bytes). */
enum source { SRC_JSON, SRC_TS, SRC_BYTES };

struct pair_case {
    const char *rule;
    enum kl_data_type column; /* the type of the column that exists */
    enum source src;
    const char *value; /* JSON text; SRC_TS: arrival ms; SRC_BYTES: the bytes */
    const char *lands; /* "col" or "col:type" of a variant it creates; NULL: no cell at all */
    const char *cell;  /* the cell as cell_text writes it */
};

#define T KL_TYPE_TEXT
#define I KL_TYPE_BIGINT
#define D KL_TYPE_DOUBLE
#define B KL_TYPE_BOOL
#define TS KL_TYPE_TIMESTAMP
#define BIN KL_TYPE_BINARY
#define DEC KL_TYPE_DECIMAL
#define J KL_TYPE_JSON

static const struct pair_case cases[] = {
    /* ---- into text: str(custom_encode(v)) or str(v) ---- */
    {"text -> text: unchanged", T, SRC_JSON, "\"abc\"", "c", "abc"},
    {"bigint -> text: str(12)", T, SRC_JSON, "12", "c", "12"},
    {"double -> text: str(1e16) is repr", T, SRC_JSON, "1e16", "c", "1e+16"},
    {"double -> text: str(-0.0)", T, SRC_JSON, "-0.0", "c", "-0.0"},
    {"bool -> text: str(True)", T, SRC_JSON, "true", "c", "True"},
    {"bool -> text: str(False)", T, SRC_JSON, "false", "c", "False"},
    {"timestamp -> text: pendulum isoformat", T, SRC_TS, "1700000000123", "_kinesis__ts",
     "2023-11-14T22:13:20.123000+00:00"},
    {"binary -> text: custom_encode base64", T, SRC_BYTES, "ab", "data", "YWI="},
    {"big int -> text: str(int)", T, SRC_JSON, "123456789012345678901234567890", "c",
     "123456789012345678901234567890"},

    /* ---- into bigint ---- */
    {"text -> bigint: int(strip) of hex after 0x", I, SRC_JSON, "\" 0x1F \"", "c", "31"},
    {"text -> bigint: int() takes a sign and underscores", I, SRC_JSON, "\"+1_000\"", "c", "1000"},
    {"text -> bigint: int('1.0') raises", I, SRC_JSON, "\"1.0\"", "c__v_text:text", "1.0"},
    {"text -> bigint: int('12a') raises", I, SRC_JSON, "\"12a\"", "c__v_text:text", "12a"},
    {"double -> bigint: 2.0 % 1 == 0, int(2.0)", I, SRC_JSON, "2.0", "c", "2"},
    {"double -> bigint: int(-0.0) is 0", I, SRC_JSON, "-0.0", "c", "0"},
    {"double -> bigint: 1.5 % 1 != 0 raises", I, SRC_JSON, "1.5", "c__v_double:double", "1.5"},
    {"double -> bigint: int(1e19) is beyond bigint (dlt's load fails)", I, SRC_JSON, "1e19",
     "c__v_double:double", "1e+19"},
    {"bool -> bigint: not coerced (py type bool)", I, SRC_JSON, "true", "c__v_bool:bool", "True"},
    {"timestamp -> bigint: not coerced", I, SRC_TS, "1700000000000",
     "_kinesis__ts__v_timestamp:timestamp", "2023-11-14T22:13:20+00:00"},
    {"binary -> bigint: not coerced", I, SRC_BYTES, "ab", "data__v_binary:binary", "0x6162"},
    {"big int -> bigint: beyond int64 (dlt's load fails)", I, SRC_JSON,
     "123456789012345678901234567890", "c__v_decimal:decimal", "123456789012345678901234567890"},

    /* ---- into double ---- */
    {"bigint -> double: float(3)", D, SRC_JSON, "3", "c", "3.0"},
    {"bigint -> double: float() rounds to nearest", D, SRC_JSON, "9007199254740993", "c",
     "9007199254740992.0"},
    {"text -> double: float(strip) with underscores", D, SRC_JSON, "\"1_000.5\"", "c", "1000.5"},
    {"text -> double: float(' nan ')", D, SRC_JSON, "\" nan \"", "c", "nan"},
    {"text -> double: float('-inf')", D, SRC_JSON, "\"-inf\"", "c", "-inf"},
    {"text -> double: float('1e400') is inf", D, SRC_JSON, "\"1e400\"", "c", "inf"},
    {"text -> double: float('1e-400') is 0.0", D, SRC_JSON, "\"1e-400\"", "c", "0.0"},
    {"text -> double: float(int('10', 16)) after 0x", D, SRC_JSON, "\"0x10\"", "c", "16.0"},
    {"text -> double: float('abc') raises", D, SRC_JSON, "\"abc\"", "c__v_text:text", "abc"},
    {"bool -> double: not coerced", D, SRC_JSON, "false", "c__v_bool:bool", "False"},
    {"timestamp -> double: not coerced", D, SRC_TS, "0", "_kinesis__ts__v_timestamp:timestamp",
     "1970-01-01T00:00:00+00:00"},
    {"binary -> double: not coerced", D, SRC_BYTES, "a", "data__v_binary:binary", "0x61"},
    {"big int -> double: float(int)", D, SRC_JSON, "123456789012345678901234567890", "c",
     "1.2345678901234568e+29"},
    {"float beyond a double -> double: orjson fails; kept exact", D, SRC_JSON, "1e400",
     "c__v_decimal:decimal", "1e400"},

    /* ---- into bool: str2bool for text, bool(v) for numbers ---- */
    {"double -> bool: bool(1.5)", B, SRC_JSON, "1.5", "c", "True"},
    {"double -> bool: bool(0.0)", B, SRC_JSON, "0.0", "c", "False"},
    {"double -> bool: bool(-0.0)", B, SRC_JSON, "-0.0", "c", "False"},
    {"bigint -> bool: bool(5)", B, SRC_JSON, "5", "c", "True"},
    {"bigint -> bool: bool(-1)", B, SRC_JSON, "-1", "c", "True"},
    {"bigint -> bool: bool(0)", B, SRC_JSON, "0", "c", "False"},
    {"text -> bool: str2bool('Yes')", B, SRC_JSON, "\"Yes\"", "c", "True"},
    {"text -> bool: str2bool('F')", B, SRC_JSON, "\"F\"", "c", "False"},
    {"text -> bool: str2bool does not strip", B, SRC_JSON, "\" true\"", "c__v_text:text", " true"},
    {"text -> bool: str2bool('2') raises", B, SRC_JSON, "\"2\"", "c__v_text:text", "2"},
    {"timestamp -> bool: refused", B, SRC_TS, "0", "_kinesis__ts__v_timestamp:timestamp",
     "1970-01-01T00:00:00+00:00"},
    {"binary -> bool: refused", B, SRC_BYTES, "a", "data__v_binary:binary", "0x61"},
    {"big int -> bool: bool(int)", B, SRC_JSON, "18446744073709551616", "c", "True"},

    /* ---- into timestamp: ensure_pendulum_datetime ---- */
    {"bool -> timestamp: a bool is an int, from_timestamp(True)", TS, SRC_JSON, "true", "c",
     "1970-01-01T00:00:01+00:00"},
    {"bool -> timestamp: from_timestamp(False)", TS, SRC_JSON, "false", "c",
     "1970-01-01T00:00:00+00:00"},
    {"bigint -> timestamp: from_timestamp(seconds)", TS, SRC_JSON, "1700000000", "c",
     "2023-11-14T22:13:20+00:00"},
    {"bigint -> timestamp: beyond year 9999 raises", TS, SRC_JSON, "1000000000000",
     "c__v_bigint:bigint", "1000000000000"},
    {"double -> timestamp: microseconds round half to even", TS, SRC_JSON, "1700000000.5", "c",
     "2023-11-14T22:13:20.500000+00:00"},
    {"double -> timestamp: 0.5 us rounds to even", TS, SRC_JSON, "5e-7", "c",
     "1970-01-01T00:00:00+00:00"},
    {"text -> timestamp: an ISO date is midnight UTC", TS, SRC_JSON, "\"2024-01-02\"", "c",
     "2024-01-02T00:00:00+00:00"},
    {"text -> timestamp: an ISO date-time shifts to UTC", TS, SRC_JSON,
     "\"2024-01-02T03:04:05+02:00\"", "c", "2024-01-02T01:04:05+00:00"},
    {"text -> timestamp: not ISO, float(value) seconds", TS, SRC_JSON, "\"1700000000\"", "c",
     "2023-11-14T22:13:20+00:00"},
    {"text -> timestamp: float(' 12.5 ')", TS, SRC_JSON, "\" 12.5 \"", "c",
     "1970-01-01T00:00:12.500000+00:00"},
    {"text -> timestamp: a time of day raises", TS, SRC_JSON, "\"12:30\"", "c__v_text:text",
     "12:30"},
    {"text -> timestamp: float('nan') cannot be a time", TS, SRC_JSON, "\"nan\"", "c__v_text:text",
     "nan"},
    {"text -> timestamp: neither ISO nor a number", TS, SRC_JSON, "\"yesterday\"", "c__v_text:text",
     "yesterday"},
    {"timestamp -> timestamp: unchanged", TS, SRC_TS, "1700000000123", "_kinesis__ts",
     "2023-11-14T22:13:20.123000+00:00"},
    {"binary -> timestamp: TypeError (dlt crashes)", TS, SRC_BYTES, "a", "data__v_binary:binary",
     "0x61"},
    {"big int -> timestamp: OverflowError", TS, SRC_JSON, "123456789012345678901234567890",
     "c__v_decimal:decimal", "123456789012345678901234567890"},

    /* ---- into binary ---- */
    {"text -> binary: bytes.fromhex after 0x", BIN, SRC_JSON, "\"0x00ff\"", "c", "0x00ff"},
    {"text -> binary: fromhex skips whitespace between pairs", BIN, SRC_JSON, "\"0x 0a 0b\"", "c",
     "0x0a0b"},
    {"text -> binary: fromhex refuses a split pair", BIN, SRC_JSON, "\"0x0 1\"", "c__v_text:text",
     "0x0 1"},
    {"text -> binary: b64decode(validate=True)", BIN, SRC_JSON, "\"YWI=\"", "c", "0x6162"},
    {"text -> binary: padding after a full quantum is accepted", BIN, SRC_JSON, "\"YWJj==\"", "c",
     "0x616263"},
    {"text -> binary: incorrect padding raises", BIN, SRC_JSON, "\"YQ=\"", "c__v_text:text", "YQ="},
    {"text -> binary: '0X01' is base64, not hex", BIN, SRC_JSON, "\"0X01\"", "c", "0xd17d35"},
    {"text -> binary: empty text is empty bytes", BIN, SRC_JSON, "\"\"", "c", "0x"},
    {"bigint -> binary: to_bytes little-endian", BIN, SRC_JSON, "258", "c", "0x0201"},
    {"bigint -> binary: 0 is empty bytes", BIN, SRC_JSON, "0", "c", "0x"},
    {"bigint -> binary: negative raises OverflowError (dlt crashes)", BIN, SRC_JSON, "-1",
     "c__v_bigint:bigint", "-1"},
    {"big int -> binary: to_bytes of 2**64", BIN, SRC_JSON, "18446744073709551616", "c",
     "0x000000000000000001"},
    {"double -> binary: not coerced", BIN, SRC_JSON, "1.5", "c__v_double:double", "1.5"},
    {"bool -> binary: not coerced", BIN, SRC_JSON, "true", "c__v_bool:bool", "True"},
    {"timestamp -> binary: not coerced", BIN, SRC_TS, "0", "_kinesis__ts__v_timestamp:timestamp",
     "1970-01-01T00:00:00+00:00"},
    {"binary -> binary: unchanged", BIN, SRC_BYTES, "ab", "data", "0x6162"},

    /* ---- into decimal: Decimal(v), str() of it ---- */
    {"text -> decimal: str(Decimal(strip)) keeps the exponent", DEC, SRC_JSON, "\" 1.50 \"", "c",
     "1.50"},
    {"text -> decimal: Decimal('1e5') is 1E+5", DEC, SRC_JSON, "\"1e5\"", "c", "1E+5"},
    {"text -> decimal: small values in scientific form", DEC, SRC_JSON, "\"0.0000001\"", "c",
     "1E-7"},
    {"text -> decimal: Decimal('1500e-2')", DEC, SRC_JSON, "\"1500e-2\"", "c", "15.00"},
    {"text -> decimal: underscores", DEC, SRC_JSON, "\"1_000\"", "c", "1000"},
    {"text -> decimal: Decimal('-0')", DEC, SRC_JSON, "\"-0\"", "c", "-0"},
    {"text -> decimal: Decimal('nan')", DEC, SRC_JSON, "\"nan\"", "c", "NaN"},
    {"text -> decimal: Decimal('-Infinity')", DEC, SRC_JSON, "\"-Infinity\"", "c", "-Infinity"},
    {"text -> decimal: sNaN (PostgreSQL refuses it: dlt's load fails)", DEC, SRC_JSON, "\"snan\"",
     "c__v_text:text", "snan"},
    {"text -> decimal: InvalidOperation", DEC, SRC_JSON, "\"abc\"", "c__v_text:text", "abc"},
    {"text -> decimal: Decimal(int(hex)) after 0x", DEC, SRC_JSON, "\"0x1f\"", "c", "31"},
    {"bigint -> decimal: Decimal(12)", DEC, SRC_JSON, "12", "c", "12"},
    {"double -> decimal: Decimal(0.1) is the double's exact value", DEC, SRC_JSON, "0.1", "c",
     "0.1000000000000000055511151231257827021181583404541015625"},
    {"double -> decimal: Decimal(1e22)", DEC, SRC_JSON, "1e22", "c", "10000000000000000000000"},
    {"double -> decimal: Decimal(1e-7)", DEC, SRC_JSON, "1e-7", "c",
     "9.99999999999999954748111825886258685613938723690807819366455078125E-8"},
    {"bool -> decimal: not coerced", DEC, SRC_JSON, "true", "c__v_bool:bool", "True"},
    {"timestamp -> decimal: not coerced", DEC, SRC_TS, "0", "_kinesis__ts__v_timestamp:timestamp",
     "1970-01-01T00:00:00+00:00"},
    {"binary -> decimal: not coerced", DEC, SRC_BYTES, "a", "data__v_binary:binary", "0x61"},
    {"big int -> decimal: Decimal(int)", DEC, SRC_JSON, "123456789012345678901234567890", "c",
     "123456789012345678901234567890"},

    /* ---- into json (complex) ---- */
    {"text -> complex: json.loads", J, SRC_JSON, "\"{\\\"a\\\": 1}\"", "c", "{\"a\":1}"},
    {"text -> complex: json.loads takes surrounding whitespace", J, SRC_JSON, "\" [1, 2] \"", "c",
     "[1,2]"},
    {"text -> complex: json.loads('null') is None, a NULL", J, SRC_JSON, "\"null\"", NULL, ""},
    {"text -> complex: not JSON raises", J, SRC_JSON, "\"not json\"", "c__v_text:text", "not json"},
    {"complex -> complex: an object stays whole in a complex column", J, SRC_JSON,
     "{\"a\":{\"b\":1}}", "c", "{\"a\":{\"b\":1}}"},
    {"bigint -> complex: not coerced", J, SRC_JSON, "1", "c__v_bigint:bigint", "1"},
    {"double -> complex: not coerced", J, SRC_JSON, "1.5", "c__v_double:double", "1.5"},
    {"bool -> complex: not coerced", J, SRC_JSON, "false", "c__v_bool:bool", "False"},
    {"timestamp -> complex: not coerced", J, SRC_TS, "0", "_kinesis__ts__v_timestamp:timestamp",
     "1970-01-01T00:00:00+00:00"},
    {"binary -> complex: not coerced", J, SRC_BYTES, "a", "data__v_binary:binary", "0x61"},
};

static void cell_text(const struct kl_value *v, char *out, size_t cap)
{
    switch (v->type) {
    case KL_TYPE_NULL:
        out[0] = '\0';
        break;
    case KL_TYPE_BIGINT:
        snprintf(out, cap, "%" PRId64, v->v.i);
        break;
    case KL_TYPE_DOUBLE: {
        char r[32];
        kl_double_repr(v->v.d, r);
        snprintf(out, cap, "%s", r);
        break;
    }
    case KL_TYPE_BOOL:
        snprintf(out, cap, "%s", v->v.b ? "True" : "False");
        break;
    case KL_TYPE_TIMESTAMP: {
        char iso[40];
        kl_timestamp_iso(v->v.us, iso);
        snprintf(out, cap, "%s", iso);
        break;
    }
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

/* A stored schema with table orders_stream holding the column under test. */
static struct kl_schema *schema_with(const char *col, enum kl_data_type type)
{
    struct kl_schema *s = kl_schema_create("kinesis");
    struct kl_column c;
    size_t ti;
    struct kl_err err;
    assert_non_null(s);
    assert_int_equal(kl_schema_add_table(s, "orders_stream", "", KL_WRITE_APPEND, &ti, &err),
                     KL_OK);
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "%s", col);
    c.type = type;
    c.nullable = true;
    assert_int_equal(kl_schema_add_column(s, ti, &c, NULL, &err), KL_OK);
    return s;
}

static void run_case(const struct pair_case *pc)
{
    const char *col = pc->src == SRC_TS ? "_kinesis__ts" : pc->src == SRC_BYTES ? "data" : "c";
    struct kl_normalizer_options o;
    struct kl_normalizer *n;
    struct kl_message m;
    struct kl_row_batch b;
    struct kl_err err;
    char data[256], where[80], got[512];
    const char *want_type = NULL;

    memset(&o, 0, sizeof o);
    o.stream_name = "Orders-Stream";
    o.parse_json = pc->src != SRC_BYTES;
    o.load_id = "1700000000.5";
    n = kl_normalizer_create(&o, schema_with(col, pc->column), &err);
    assert_non_null(n);
    memset(&m, 0, sizeof m);
    m.stream_name = "Orders-Stream";
    m.shard_id = "shardId-000000000001";
    m.sequence = "49590001";
    m.sub_sequence = -1;
    m.partition_key = "pk-1";
    m.arrival_ms = pc->src == SRC_TS ? strtoll(pc->value, NULL, 10) : 1700000000123LL;
    if (pc->src == SRC_JSON)
        snprintf(data, sizeof data, "{\"c\":%s}", pc->value);
    else
        snprintf(data, sizeof data, "%s", pc->src == SRC_BYTES ? pc->value : "{}");
    m.data = (const unsigned char *)data;
    m.data_len = strlen(data);
    assert_int_equal(kl_msg_id(m.shard_id, m.sequence, -1, m.msg_id, NULL), KL_OK);
    if (kl_normalizer_add(n, &m, &err) != KL_OK || kl_normalizer_close(n, &b, &err) != KL_OK)
        fail_msg("%s: %s", pc->rule, err.msg);

    const struct kl_table *t = &b.schema->tables[0];
    const struct kl_table_rows *tr = NULL;
    for (size_t i = 0; i < b.n_tables; i++)
        if (b.tables[i].table == 0)
            tr = &b.tables[i];
    assert_non_null(tr);
    assert_int_equal(tr->n_rows, 1);
    /* the existing column keeps its type */
    assert_int_equal(t->columns[0].type, pc->column);
    if (pc->lands == NULL) {
        if (tr->cells[0].type != KL_TYPE_NULL)
            fail_msg("%s: want a NULL cell", pc->rule);
    } else {
        const char *colon = strchr(pc->lands, ':');
        size_t ci;
        snprintf(where, sizeof where, "%.*s",
                 (int)(colon ? (size_t)(colon - pc->lands) : strlen(pc->lands)), pc->lands);
        want_type = colon ? colon + 1 : kl_data_type_name(pc->column);
        if (!kl_schema_find_column(t, where, &ci))
            fail_msg("%s: no column %s", pc->rule, where);
        if (strcmp(kl_data_type_name(t->columns[ci].type), want_type) != 0)
            fail_msg("%s: %s is %s, want %s", pc->rule, where,
                     kl_data_type_name(t->columns[ci].type), want_type);
        cell_text(&tr->cells[ci], got, sizeof got);
        if (strcmp(got, pc->cell) != 0)
            fail_msg("%s: %s is \"%s\", want \"%s\"", pc->rule, where, got, pc->cell);
        /* coerced: no variant was made; a variant: the column got nothing */
        if (colon == NULL) {
            for (size_t k = 0; k < t->n_columns; k++)
                if (t->columns[k].variant)
                    fail_msg("%s: unexpected variant %s", pc->rule, t->columns[k].name);
        } else if (tr->cells[0].type != KL_TYPE_NULL) {
            fail_msg("%s: the %s column got a value too", pc->rule, col);
        }
    }
    kl_normalizer_reset(n, true);
    kl_normalizer_destroy(n);
}

static void every_pair_as_dlt(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i]);
}

/* Every column type meets every value type at least once. */
static void the_matrix_is_complete(void **state)
{
    (void)state;
    static const enum kl_data_type cols[] = {T, I, D, B, TS, BIN, DEC, J};
    for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++) {
        bool seen_ts = false, seen_bytes = false, seen_json = false;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            if (cases[i].column != cols[c])
                continue;
            seen_ts = seen_ts || cases[i].src == SRC_TS;
            seen_bytes = seen_bytes || cases[i].src == SRC_BYTES;
            seen_json = seen_json || cases[i].src == SRC_JSON;
        }
        if (!seen_json || (cols[c] != J && (!seen_ts || !seen_bytes)))
            fail_msg("column type %s misses a value type", kl_data_type_name(cols[c]));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_pair_as_dlt),
        cmocka_unit_test(the_matrix_is_complete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
