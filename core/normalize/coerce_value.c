/*
 * dlt's coerce_value on a parsed JSON value: the type Python would see for
 * it, and the value as a cell of a given column type, or a refusal that
 * sends it to a variant column. Cell text goes to the chunk's arena. The
 * conversions of text and numbers are coerce.c's; which column a value goes
 * to is evolve.c's.
 */
#include "core/normalize/coerce.h"
#include "core/normalize/internal.h"
#include "core/normalize/json.h"
#include "core/util/base64.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* The dlt type of a value as Python would see it after orjson. */
int kl_norm_py_type(const struct kl_json *v)
{
    switch (v->type) {
    case KL_JSON_STRING:
        return v->has_nul ? PY_NUL_STRING : KL_TYPE_TEXT;
    case KL_JSON_NUMBER:
        if (v->num == KL_JSON_INT)
            return KL_TYPE_BIGINT;
        if (v->num == KL_JSON_BIGINT)
            return KL_TYPE_DECIMAL;
        {
            bool in_range;
            kl_json_number_double(v, &in_range);
            return in_range ? KL_TYPE_DOUBLE : KL_TYPE_DECIMAL;
        }
    case KL_JSON_TRUE:
    case KL_JSON_FALSE:
        return KL_TYPE_BOOL;
    case KL_JSON_TIMESTAMP:
        return KL_TYPE_TIMESTAMP;
    case KL_JSON_BYTES:
        return KL_TYPE_BINARY;
    case KL_JSON_OBJECT:
    case KL_JSON_ARRAY:
        return KL_TYPE_JSON;
    default:
        return KL_TYPE_NULL;
    }
}

static int set_text(struct kl_normalizer *n, struct kl_value *out, enum kl_data_type t,
                    const char *s, size_t len)
{
    char *p = kl_arena_alloc(&n->batch, len ? len : 1);
    if (p == NULL)
        return -2;
    memcpy(p, s, len);
    out->type = t;
    out->v.s.ptr = p;
    out->v.s.len = len;
    return 0;
}

/* Serialized JSON of a value, into the batch. */
static int set_json(struct kl_normalizer *n, struct kl_value *out, const struct kl_json *v)
{
    kl_buf_reset(&n->scratch);
    if (kl_json_write(v, &n->scratch, NULL) != KL_OK)
        return -2;
    return set_text(n, out, KL_TYPE_JSON, n->scratch.data, n->scratch.len);
}

/* A JSON integer outside int64 (dlt sees a Python int) rather than a float
 * a double cannot hold. */
static bool is_big_int(const struct kl_json *v)
{
    return v->type == KL_JSON_NUMBER && v->num == KL_JSON_BIGINT;
}

/* int.to_bytes((bit_length + 7) // 8, "little") of a non-negative decimal
 * integer, into the batch. Python raises for a negative one. */
static int int_text_to_bytes(struct kl_normalizer *n, const char *s, size_t len,
                             struct kl_value *out)
{
    unsigned char digits[4400], *bytes;
    size_t nd = 0, o = 0;
    if (len == 0 || s[0] == '-' || len > sizeof digits)
        return -1;
    for (size_t i = 0; i < len; i++)
        digits[nd++] = (unsigned char)(s[i] - '0');
    /* a decimal digit is under 3.33 bits: len / 2 + 1 bytes are enough */
    bytes = kl_arena_alloc(&n->batch, len / 2 + 1);
    if (bytes == NULL)
        return -2;
    size_t start = 0;
    while (start < nd && digits[start] == 0)
        start++;
    while (start < nd) {
        unsigned rem = 0;
        for (size_t i = start; i < nd; i++) {
            unsigned cur = rem * 10 + digits[i];
            digits[i] = (unsigned char)(cur / 256);
            rem = cur % 256;
        }
        bytes[o++] = (unsigned char)rem;
        while (start < nd && digits[start] == 0)
            start++;
    }
    out->type = KL_TYPE_BINARY;
    out->v.s.ptr = (const char *)bytes;
    out->v.s.len = o;
    return 0;
}

/* bytes.fromhex(s) of the text after "0x": pairs of hex digits, ASCII
 * whitespace allowed before each pair. */
static int hex_to_bytes(struct kl_normalizer *n, const char *s, size_t sl, struct kl_value *out)
{
    unsigned char *p = kl_arena_alloc(&n->batch, sl / 2 + 1);
    size_t o = 0, i = 0;
    if (p == NULL)
        return -2;
    while (i < sl) {
        if (s[i] == ' ' || (s[i] >= '\t' && s[i] <= '\r')) {
            i++;
            continue;
        }
        int hi, lo;
        if (i + 1 >= sl)
            return -1;
        hi = kl_norm_hexval((unsigned char)s[i]);
        lo = kl_norm_hexval((unsigned char)s[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        p[o++] = (unsigned char)(hi << 4 | lo);
        i += 2;
    }
    out->type = KL_TYPE_BINARY;
    out->v.s.ptr = (const char *)p;
    out->v.s.len = o;
    return 0;
}

/* base64.b64decode(s, validate=True) as Python 3.11 runs it (strict mode):
 * only the alphabet, then padding; 4k data characters take any padding
 * (none when empty), 4k+2 exactly two "=", 4k+3 exactly one. */
static int b64_to_bytes(struct kl_normalizer *n, const char *s, size_t sl, struct kl_value *out)
{
    size_t d = 0, pads;
    while (d < sl && ((s[d] >= 'A' && s[d] <= 'Z') || (s[d] >= 'a' && s[d] <= 'z') ||
                      (s[d] >= '0' && s[d] <= '9') || s[d] == '+' || s[d] == '/'))
        d++;
    for (pads = 0; d + pads < sl && s[d + pads] == '='; pads++)
        ;
    if (d + pads != sl)
        return -1;
    if (!(d % 4 == 0 ? (d > 0 || pads == 0) : d % 4 == 2 ? pads == 2 : d % 4 == 3 && pads == 1))
        return -1;
    unsigned char *p = kl_arena_alloc(&n->batch, kl_base64_decoded_max(d) + 1);
    size_t o;
    if (p == NULL)
        return -2;
    if (kl_base64_decode(s, d, p, &o) != 0)
        return -1;
    out->type = KL_TYPE_BINARY;
    out->v.s.ptr = (const char *)p;
    out->v.s.len = o;
    return 0;
}

/* dlt's coerce_value(to, py, v) (dlt/common/data_types/type_helpers.py),
 * with ensure_pendulum_datetime for timestamps. Where dlt raises ValueError
 * the value goes to a variant; where dlt crashes (TypeError, OverflowError)
 * or writes what the database refuses, the value goes to a variant too. 0:
 * coerced (a KL_TYPE_NULL cell for JSON text "null"); -1: cannot coerce;
 * -2: out of memory. */
int kl_norm_coerce(struct kl_normalizer *n, enum kl_data_type to, int py, const struct kl_json *v,
                   struct kl_value *out)
{
    char buf[KL_DOUBLE_DECIMAL_CAP];
    size_t len;
    memset(out, 0, sizeof *out);
    if (py == PY_NUL_STRING) {
        /* a NUL cannot be stored in PostgreSQL text: keep the UTF-8 bytes */
        if (to != KL_TYPE_BINARY)
            return -1;
        return set_text(n, out, KL_TYPE_BINARY, v->u.s, v->len);
    }
    switch (to) {
    case KL_TYPE_TEXT:
        /* str(custom_encode(v)) or str(v); json.dumps for complex */
        switch (py) {
        case KL_TYPE_TEXT:
            return set_text(n, out, KL_TYPE_TEXT, v->u.s, v->len);
        case KL_TYPE_BIGINT:
            len = (size_t)snprintf(buf, sizeof buf, "%" PRId64, v->i);
            return set_text(n, out, KL_TYPE_TEXT, buf, len);
        case KL_TYPE_DOUBLE:
            len = kl_double_repr(kl_json_number_double(v, NULL), buf);
            return set_text(n, out, KL_TYPE_TEXT, buf, len);
        case KL_TYPE_DECIMAL:
            return set_text(n, out, KL_TYPE_TEXT, v->u.s, v->len);
        case KL_TYPE_BOOL:
            return v->type == KL_JSON_TRUE ? set_text(n, out, KL_TYPE_TEXT, "True", 4)
                                           : set_text(n, out, KL_TYPE_TEXT, "False", 5);
        case KL_TYPE_TIMESTAMP:
            len = kl_timestamp_iso(v->i, buf);
            return set_text(n, out, KL_TYPE_TEXT, buf, len);
        case KL_TYPE_BINARY: {
            char *p = kl_arena_alloc(&n->batch, kl_base64_encoded_size(v->len));
            if (p == NULL)
                return -2;
            len = kl_base64_encode(v->u.s, v->len, p, true);
            out->type = KL_TYPE_TEXT;
            out->v.s.ptr = p;
            out->v.s.len = len;
            return 0;
        }
        case KL_TYPE_JSON: {
            int rc = set_json(n, out, v);
            out->type = KL_TYPE_TEXT;
            return rc;
        }
        default:
            return -1;
        }
    case KL_TYPE_BIGINT:
        out->type = KL_TYPE_BIGINT;
        if (py == KL_TYPE_BIGINT) {
            out->v.i = v->i;
            return 0;
        }
        if (py == KL_TYPE_TEXT)
            return kl_text_to_int64(v->u.s, v->len, &out->v.i) ? 0 : -1;
        if (py == KL_TYPE_DOUBLE) {
            /* value % 1 != 0 raises; int(value) beyond int64 fails dlt's load */
            double d = kl_json_number_double(v, NULL);
            if (d != floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0)
                return -1;
            out->v.i = (int64_t)d;
            return 0;
        }
        /* bool, timestamp, binary raise; an int beyond int64 fails dlt's load */
        return -1;
    case KL_TYPE_DOUBLE:
        out->type = KL_TYPE_DOUBLE;
        if (py == KL_TYPE_DOUBLE) {
            out->v.d = kl_json_number_double(v, NULL);
            return 0;
        }
        if (py == KL_TYPE_BIGINT) {
            out->v.d = (double)v->i; /* float(value): nearest, ties to even */
            return 0;
        }
        if (py == KL_TYPE_DECIMAL) {
            /* float(int) of an integer beyond int64; Python raises
             * OverflowError past the largest double */
            double d = kl_json_number_double(v, NULL);
            if (!is_big_int(v) || !isfinite(d))
                return -1;
            out->v.d = d;
            return 0;
        }
        if (py == KL_TYPE_TEXT)
            return kl_text_to_double(v->u.s, v->len, &out->v.d) ? 0 : -1;
        return -1;
    case KL_TYPE_BOOL:
        out->type = KL_TYPE_BOOL;
        switch (py) {
        case KL_TYPE_BOOL:
            out->v.b = v->type == KL_JSON_TRUE;
            return 0;
        case KL_TYPE_TEXT:
            return kl_text_to_bool(v->u.s, v->len, &out->v.b) ? 0 : -1;
        case KL_TYPE_BIGINT: /* bool(value): any non-zero number is true */
            out->v.b = v->i != 0;
            return 0;
        case KL_TYPE_DOUBLE:
            out->v.b = kl_json_number_double(v, NULL) != 0.0;
            return 0;
        case KL_TYPE_DECIMAL:
            if (!is_big_int(v))
                return -1;
            out->v.b = true; /* never zero outside int64 */
            return 0;
        default: /* complex, binary and timestamp are refused */
            return -1;
        }
    case KL_TYPE_TIMESTAMP:
        out->type = KL_TYPE_TIMESTAMP;
        switch (py) {
        case KL_TYPE_TIMESTAMP:
            out->v.us = v->i;
            return 0;
        case KL_TYPE_TEXT:
            return kl_text_to_timestamp(v->u.s, v->len, &out->v.us) ? 0 : -1;
        case KL_TYPE_BIGINT: /* pendulum.from_timestamp, years 1..9999 */
            return kl_int_seconds_to_us(v->i, &out->v.us) ? 0 : -1;
        case KL_TYPE_DOUBLE:
            return kl_seconds_to_us(kl_json_number_double(v, NULL), &out->v.us) ? 0 : -1;
        case KL_TYPE_BOOL: /* a bool is an int: from_timestamp(True) is 1 s */
            out->v.us = v->type == KL_JSON_TRUE ? 1000000 : 0;
            return 0;
        default: /* dlt: OverflowError (big ints) or TypeError (bytes, complex) */
            return -1;
        }
    case KL_TYPE_BINARY:
        if (py == KL_TYPE_BINARY)
            return set_text(n, out, KL_TYPE_BINARY, v->u.s, v->len);
        if (py == KL_TYPE_TEXT) {
            /* value.startswith("0x") is tested on the text as it is */
            if (v->len >= 2 && v->u.s[0] == '0' && v->u.s[1] == 'x')
                return hex_to_bytes(n, v->u.s + 2, v->len - 2, out);
            return b64_to_bytes(n, v->u.s, v->len, out);
        }
        if (py == KL_TYPE_BIGINT || (py == KL_TYPE_DECIMAL && is_big_int(v))) {
            if (py == KL_TYPE_BIGINT)
                len = (size_t)snprintf(buf, sizeof buf, "%" PRId64, v->i);
            else if (v->len < sizeof buf)
                len = (size_t)snprintf(buf, sizeof buf, "%.*s", (int)v->len, v->u.s);
            else
                return -1;
            return int_text_to_bytes(n, buf, len, out);
        }
        return -1;
    case KL_TYPE_DECIMAL:
        if (py == KL_TYPE_DECIMAL)
            return set_text(n, out, KL_TYPE_DECIMAL, v->u.s, v->len);
        if (py == KL_TYPE_DOUBLE) {
            len = kl_double_to_decimal(kl_json_number_double(v, NULL), buf);
            return set_text(n, out, KL_TYPE_DECIMAL, buf, len);
        }
        if (py == KL_TYPE_BIGINT) {
            len = (size_t)snprintf(buf, sizeof buf, "%" PRId64, v->i);
            return set_text(n, out, KL_TYPE_DECIMAL, buf, len);
        }
        if (py == KL_TYPE_TEXT) {
            char *p = kl_arena_alloc(&n->batch, (size_t)v->len + 40);
            if (p == NULL)
                return -2;
            if (!kl_text_to_decimal(v->u.s, v->len, p, &len))
                return -1;
            out->type = KL_TYPE_DECIMAL;
            out->v.s.ptr = p;
            out->v.s.len = len;
            return 0;
        }
        return -1;
    case KL_TYPE_JSON:
        if (py == KL_TYPE_JSON)
            return set_json(n, out, v);
        if (py == KL_TYPE_TEXT) {
            /* json.loads(value); "null" loads as None: a NULL cell */
            if (kl_json_parse(&n->scratch_doc, v->u.s, v->len, NULL, 0) != KL_OK)
                return -1;
            if (n->scratch_doc.root.type == KL_JSON_NULL)
                return 0;
            return set_json(n, out, &n->scratch_doc.root);
        }
        return -1;
    default:
        return -1;
    }
}
