/*
 * An iterative JSON parser: containers collect their children on scratch
 * stacks and are copied into the arena when they close, so the tree is a set
 * of contiguous arrays and a parse never calls malloc once the doc is warm.
 * Duplicate keys keep the first position and the last value, as a dict does.
 */
#include "core/normalize/json.h"
#include "core/normalize/internal.h"
#include "core/util/base64.h"
#include "core/util/buf.h"
#include "core/util/err.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SMALL_OBJECT 12 /* up to this many members, duplicates are found pairwise */

void kl_json_doc_init(struct kl_json_doc *doc)
{
    memset(doc, 0, sizeof *doc);
    kl_arena_init(&doc->arena, (size_t)16 * 1024, 0);
}

void kl_json_doc_free(struct kl_json_doc *doc)
{
    kl_arena_free(&doc->arena);
    free(doc->vals);
    free(doc->mems);
    free(doc->sbuf);
    free(doc->hash);
    memset(doc, 0, sizeof *doc);
}

/* Parser state for one call. */
struct parser {
    struct kl_json_doc *doc;
    const unsigned char *start, *p, *end;
    char *reason;
    size_t reason_cap;
    int rc;
};

static int fail(struct parser *ps, const char *what, const unsigned char *at)
{
    if (ps->reason != NULL && ps->reason_cap > 0)
        snprintf(ps->reason, ps->reason_cap, "%s at byte %zu", what, (size_t)(at - ps->start));
    ps->rc = KL_ERR_INVALID;
    return -1;
}

static int nomem(struct parser *ps)
{
    if (ps->reason != NULL && ps->reason_cap > 0)
        snprintf(ps->reason, ps->reason_cap, "out of memory");
    ps->rc = KL_ERR_NOMEM;
    return -1;
}

static inline void skip_ws(struct parser *ps)
{
    const unsigned char *p = ps->p, *end = ps->end;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    ps->p = p;
}

/* Validates one multi-byte UTF-8 sequence starting at `p` (first byte >= 0x80).
 * Returns its length, or 0 when it is invalid (overlong, surrogate, > U+10FFFF,
 * truncated). */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t avail = (size_t)(end - p);
    if (c >= 0xC2 && c <= 0xDF) {
        if (avail < 2 || (p[1] & 0xC0) != 0x80)
            return 0;
        return 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (avail < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if (c == 0xE0 && p[1] < 0xA0)
            return 0; /* overlong */
        if (c == 0xED && p[1] >= 0xA0)
            return 0; /* UTF-16 surrogate */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (avail < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90)
            return 0; /* overlong */
        if (c == 0xF4 && p[1] >= 0x90)
            return 0; /* past U+10FFFF */
        return 4;
    }
    return 0;
}

static int read_u4(const unsigned char *p, const unsigned char *end, unsigned *out)
{
    if (end - p < 4)
        return -1;
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        int h = kl_norm_hexval(p[k]);
        if (h < 0)
            return -1;
        v = (v << 4) | (unsigned)h;
    }
    *out = v;
    return 0;
}

/* True when any of the 8 bytes in `v` is '"', '\\', < 0x20 or >= 0x80. */
static inline int special8(uint64_t v)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t q = v ^ (ones * '"');
    uint64_t b = v ^ (ones * '\\');
    uint64_t has_q = (q - ones) & ~q;
    uint64_t has_b = (b - ones) & ~b;
    uint64_t lt20 = (v - ones * 0x20) & ~v;
    return ((has_q | has_b | lt20) & highs) != 0 || (v & highs) != 0;
}

/* Parses a string whose opening quote is at ps->p. */
static int parse_string(struct parser *ps, const char **out, uint32_t *out_len, uint8_t *has_nul)
{
    const unsigned char *p = ps->p + 1, *end = ps->end;
    const unsigned char *s = p;
    *has_nul = 0;
    /* fast path: no escapes */
    for (;;) {
        while (end - p >= 8) {
            uint64_t v;
            memcpy(&v, p, 8);
            if (special8(v))
                break;
            p += 8;
        }
        if (p >= end)
            return fail(ps, "unterminated string", ps->p);
        unsigned c = *p;
        if (c == '"') {
            if ((size_t)(p - s) > UINT32_MAX)
                return fail(ps, "string too long", s);
            *out = (const char *)s;
            *out_len = (uint32_t)(p - s);
            ps->p = p + 1;
            return 0;
        }
        if (c == '\\')
            break;
        if (c < 0x20)
            return fail(ps, "control character in string", p);
        if (c >= 0x80) {
            size_t n = utf8_seq(p, end);
            if (n == 0)
                return fail(ps, "invalid UTF-8", p);
            p += n;
        } else {
            p++;
        }
    }
    /* slow path: unescape into the scratch buffer, then copy to the arena */
    struct kl_json_doc *doc = ps->doc;
    size_t o = (size_t)(p - s);
    if (kl_norm_grow((void **)&doc->sbuf, &doc->cap_sbuf, o + 64, 1) != 0)
        return nomem(ps);
    memcpy(doc->sbuf, s, o);
    for (;;) {
        if (p >= end)
            return fail(ps, "unterminated string", ps->p);
        if (doc->cap_sbuf - o < 8 &&
            kl_norm_grow((void **)&doc->sbuf, &doc->cap_sbuf, o + 64, 1) != 0)
            return nomem(ps);
        unsigned c = *p;
        if (c == '"')
            break;
        if (c == '\\') {
            if (end - p < 2)
                return fail(ps, "unterminated string", ps->p);
            unsigned e = p[1];
            p += 2;
            switch (e) {
            case '"':
                doc->sbuf[o++] = '"';
                break;
            case '\\':
                doc->sbuf[o++] = '\\';
                break;
            case '/':
                doc->sbuf[o++] = '/';
                break;
            case 'b':
                doc->sbuf[o++] = '\b';
                break;
            case 'f':
                doc->sbuf[o++] = '\f';
                break;
            case 'n':
                doc->sbuf[o++] = '\n';
                break;
            case 'r':
                doc->sbuf[o++] = '\r';
                break;
            case 't':
                doc->sbuf[o++] = '\t';
                break;
            case 'u': {
                unsigned cp, lo;
                if (read_u4(p, end, &cp) != 0)
                    return fail(ps, "invalid \\u escape", p - 2);
                p += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
                        read_u4(p + 2, end, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                        return fail(ps, "lone UTF-16 surrogate", p - 6);
                    p += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    return fail(ps, "lone UTF-16 surrogate", p - 6);
                }
                if (cp == 0)
                    *has_nul = 1;
                char *w = doc->sbuf + o;
                if (cp < 0x80) {
                    w[0] = (char)cp;
                    o += 1;
                } else if (cp < 0x800) {
                    w[0] = (char)(0xC0 | (cp >> 6));
                    w[1] = (char)(0x80 | (cp & 0x3F));
                    o += 2;
                } else if (cp < 0x10000) {
                    w[0] = (char)(0xE0 | (cp >> 12));
                    w[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
                    w[2] = (char)(0x80 | (cp & 0x3F));
                    o += 3;
                } else {
                    w[0] = (char)(0xF0 | (cp >> 18));
                    w[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
                    w[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
                    w[3] = (char)(0x80 | (cp & 0x3F));
                    o += 4;
                }
                break;
            }
            default:
                return fail(ps, "invalid escape", p - 2);
            }
            continue;
        }
        if (c < 0x20)
            return fail(ps, "control character in string", p);
        if (c >= 0x80) {
            size_t n = utf8_seq(p, end);
            if (n == 0)
                return fail(ps, "invalid UTF-8", p);
            memcpy(doc->sbuf + o, p, n);
            o += n;
            p += n;
        } else {
            doc->sbuf[o++] = (char)c;
            p++;
        }
    }
    if (o > UINT32_MAX)
        return fail(ps, "string too long", s);
    char *copy = kl_arena_alloc(&doc->arena, o + 1);
    if (copy == NULL)
        return nomem(ps);
    memcpy(copy, doc->sbuf, o);
    copy[o] = '\0';
    *out = copy;
    *out_len = (uint32_t)o;
    ps->p = p + 1;
    return 0;
}

static int parse_number(struct parser *ps, struct kl_json *v)
{
    const unsigned char *p = ps->p, *end = ps->end, *s = p;
    int neg = 0, overflow = 0, is_float = 0;
    uint64_t mag = 0;

    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (p >= end || *p < '0' || *p > '9')
        return fail(ps, "not valid JSON", p);
    if (*p == '0') {
        p++;
        if (p < end && *p >= '0' && *p <= '9')
            return fail(ps, "not valid JSON (leading zero)", p);
    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            unsigned d = (unsigned)(*p - '0');
            if (!overflow) {
                if (mag > (UINT64_MAX - d) / 10)
                    overflow = 1;
                else
                    mag = mag * 10 + d;
            }
            p++;
        }
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return fail(ps, "not valid JSON", p);
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        is_float = 1;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || *p < '0' || *p > '9')
            return fail(ps, "not valid JSON", p);
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        is_float = 1;
    }
    v->type = KL_JSON_NUMBER;
    v->has_nul = 0;
    v->reserved = 0;
    v->len = (uint32_t)(p - s);
    v->u.s = (const char *)s;
    v->i = 0;
    if (is_float) {
        v->num = KL_JSON_FLOAT;
    } else if (!overflow && (neg ? mag <= (uint64_t)INT64_MAX + 1 : mag <= (uint64_t)INT64_MAX)) {
        v->num = KL_JSON_INT;
        v->i = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    } else {
        v->num = KL_JSON_BIGINT;
    }
    ps->p = p;
    return 0;
}

static int parse_literal(struct parser *ps, struct kl_json *v)
{
    const unsigned char *p = ps->p;
    size_t avail = (size_t)(ps->end - p);
    memset(v, 0, sizeof *v);
    if (avail >= 4 && memcmp(p, "true", 4) == 0) {
        v->type = KL_JSON_TRUE;
        ps->p += 4;
    } else if (avail >= 5 && memcmp(p, "false", 5) == 0) {
        v->type = KL_JSON_FALSE;
        ps->p += 5;
    } else if (avail >= 4 && memcmp(p, "null", 4) == 0) {
        v->type = KL_JSON_NULL;
        ps->p += 4;
    } else {
        return fail(ps, "not valid JSON", p);
    }
    return 0;
}

static uint32_t key_hash(const char *k, uint32_t n)
{
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)k[i]) * 16777619u;
    return h;
}

static int same_key(const struct kl_json_member *a, const struct kl_json_member *b)
{
    return a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0;
}

/* Collapses duplicate keys in mems[base, n) in place: a later duplicate
 * replaces the value of the first occurrence and is dropped. Returns the
 * new count. */
static int dedupe(struct parser *ps, size_t base, size_t *count)
{
    struct kl_json_doc *doc = ps->doc;
    struct kl_json_member *m = doc->mems + base;
    size_t n = *count, kept = 0;

    if (n <= SMALL_OBJECT) {
        for (size_t j = 0; j < n; j++) {
            size_t i;
            for (i = 0; i < kept; i++) {
                if (same_key(&m[i], &m[j]))
                    break;
            }
            if (i < kept)
                m[i].value = m[j].value;
            else
                m[kept++] = m[j];
        }
        *count = kept;
        return 0;
    }
    size_t cap = 16;
    while (cap < n * 2)
        cap *= 2;
    if (kl_norm_grow((void **)&doc->hash, &doc->cap_hash, cap, sizeof *doc->hash) != 0)
        return nomem(ps);
    uint32_t *slots = doc->hash;
    for (size_t i = 0; i < cap; i++)
        slots[i] = UINT32_MAX;
    for (size_t j = 0; j < n; j++) {
        size_t h = key_hash(m[j].key, m[j].key_len) & (cap - 1);
        for (;;) {
            uint32_t s = slots[h];
            if (s == UINT32_MAX) {
                slots[h] = (uint32_t)kept;
                m[kept++] = m[j];
                break;
            }
            if (same_key(&m[s], &m[j])) {
                m[s].value = m[j].value;
                break;
            }
            h = (h + 1) & (cap - 1);
        }
    }
    *count = kept;
    return 0;
}

struct frame {
    uint32_t base; /* first child on the scratch stack */
    uint8_t is_obj;
};

static int parse_root(struct parser *ps)
{
    struct kl_json_doc *doc = ps->doc;
    struct frame frames[KL_JSON_MAX_DEPTH];
    size_t depth = 0;
    struct kl_json v;

    doc->n_vals = 0;
    doc->n_mems = 0;

value:
    skip_ws(ps);
    if (ps->p >= ps->end)
        return fail(ps, ps->p == ps->start ? "empty input" : "not valid JSON (unexpected end)",
                    ps->p);
    switch (*ps->p) {
    case '{':
    case '[': {
        int is_obj = *ps->p == '{';
        if (depth >= KL_JSON_MAX_DEPTH)
            return fail(ps, "nesting deeper than 1024", ps->p);
        frames[depth].base = (uint32_t)(is_obj ? doc->n_mems : doc->n_vals);
        frames[depth].is_obj = (uint8_t)is_obj;
        depth++;
        ps->p++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == (is_obj ? '}' : ']')) {
            ps->p++;
            goto close;
        }
        if (is_obj)
            goto key;
        goto value;
    }
    case '"':
        memset(&v, 0, sizeof v);
        v.type = KL_JSON_STRING;
        if (parse_string(ps, &v.u.s, &v.len, &v.has_nul) != 0)
            return -1;
        goto done;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        if (parse_number(ps, &v) != 0)
            return -1;
        goto done;
    default:
        if (parse_literal(ps, &v) != 0)
            return -1;
        goto done;
    }

key:
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != '"')
        return fail(ps, "not valid JSON (expected a key)", ps->p);
    {
        struct kl_json_member *m;
        uint8_t nul;
        if (kl_norm_grow((void **)&doc->mems, &doc->cap_mems, doc->n_mems + 1, sizeof *doc->mems) !=
            0)
            return nomem(ps);
        m = &doc->mems[doc->n_mems];
        if (parse_string(ps, &m->key, &m->key_len, &nul) != 0)
            return -1;
        m->reserved = 0;
        doc->n_mems++;
    }
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != ':')
        return fail(ps, "not valid JSON (expected ':')", ps->p);
    ps->p++;
    goto value;

close : {
    /* the innermost container ends: copy its children to the arena */
    struct frame *f = &frames[depth - 1];
    memset(&v, 0, sizeof v);
    if (f->is_obj) {
        size_t n = doc->n_mems - f->base;
        if (n > 1 && dedupe(ps, f->base, &n) != 0)
            return -1;
        v.type = KL_JSON_OBJECT;
        v.len = (uint32_t)n;
        if (n) {
            struct kl_json_member *dst = kl_arena_alloc(&doc->arena, n * sizeof *dst);
            if (dst == NULL)
                return nomem(ps);
            memcpy(dst, doc->mems + f->base, n * sizeof *dst);
            v.u.members = dst;
        }
        doc->n_mems = f->base;
    } else {
        size_t n = doc->n_vals - f->base;
        v.type = KL_JSON_ARRAY;
        v.len = (uint32_t)n;
        if (n) {
            struct kl_json *dst = kl_arena_alloc(&doc->arena, n * sizeof *dst);
            if (dst == NULL)
                return nomem(ps);
            memcpy(dst, doc->vals + f->base, n * sizeof *dst);
            v.u.items = dst;
        }
        doc->n_vals = f->base;
    }
    depth--;
}

done:
    if (depth == 0) {
        doc->root = v;
        skip_ws(ps);
        if (ps->p != ps->end)
            return fail(ps, "trailing data after the JSON value", ps->p);
        return 0;
    }
    skip_ws(ps);
    if (frames[depth - 1].is_obj) {
        doc->mems[doc->n_mems - 1].value = v;
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            goto key;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            goto close;
        }
        return fail(ps, "not valid JSON (expected ',' or '}')", ps->p);
    }
    if (kl_norm_grow((void **)&doc->vals, &doc->cap_vals, doc->n_vals + 1, sizeof *doc->vals) != 0)
        return nomem(ps);
    doc->vals[doc->n_vals++] = v;
    if (ps->p < ps->end && *ps->p == ',') {
        ps->p++;
        goto value;
    }
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        goto close;
    }
    return fail(ps, "not valid JSON (expected ',' or ']')", ps->p);
}

int kl_json_parse(struct kl_json_doc *doc, const void *data, size_t len, char *reason,
                  size_t reason_cap)
{
    struct parser ps;

    kl_arena_reset(&doc->arena);
    memset(&doc->root, 0, sizeof doc->root);
    ps.doc = doc;
    ps.start = data;
    ps.p = data;
    ps.end = ps.start + len;
    ps.reason = reason;
    ps.reason_cap = reason_cap;
    ps.rc = KL_OK;
    if (reason != NULL && reason_cap > 0)
        reason[0] = '\0';
    if (len > KL_JSON_MAX_INPUT) {
        if (reason != NULL && reason_cap > 0)
            snprintf(reason, reason_cap, "larger than %u bytes", (unsigned)KL_JSON_MAX_INPUT);
        return KL_ERR_INVALID;
    }
    if (len >= 3 && ps.p[0] == 0xEF && ps.p[1] == 0xBB && ps.p[2] == 0xBF)
        ps.p += 3;
    if (parse_root(&ps) != 0)
        return ps.rc;
    return KL_OK;
}

int kl_json_parse_object(struct kl_json_doc *doc, const void *data, size_t len,
                         const struct kl_json **out, char *reason, size_t reason_cap)
{
    static const char *const names[] = {
        [KL_JSON_NULL] = "JSON null",       [KL_JSON_FALSE] = "a JSON boolean",
        [KL_JSON_TRUE] = "a JSON boolean",  [KL_JSON_NUMBER] = "a JSON number",
        [KL_JSON_STRING] = "a JSON string", [KL_JSON_ARRAY] = "a JSON array",
    };
    int rc = kl_json_parse(doc, data, len, reason, reason_cap);
    if (rc != KL_OK)
        return rc;
    if (doc->root.type != KL_JSON_OBJECT) {
        if (reason != NULL && reason_cap > 0)
            snprintf(reason, reason_cap, "%s, not an object", names[doc->root.type]);
        return KL_ERR_INVALID;
    }
    *out = &doc->root;
    return KL_OK;
}

const struct kl_json *kl_json_get(const struct kl_json *obj, const char *key, size_t key_len)
{
    if (obj == NULL || obj->type != KL_JSON_OBJECT)
        return NULL;
    for (uint32_t i = 0; i < obj->len; i++) {
        const struct kl_json_member *m = &obj->u.members[i];
        if (m->key_len == key_len && memcmp(m->key, key, key_len) == 0)
            return &m->value;
    }
    return NULL;
}

static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* strtod in the C locale whatever the process locale is. */
static double c_strtod(const char *s)
{
    static locale_t c_loc;
    if (c_loc == (locale_t)0)
        c_loc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    locale_t old = c_loc ? uselocale(c_loc) : (locale_t)0;
    double d = strtod(s, NULL);
    if (c_loc)
        uselocale(old);
    return d;
}

double kl_json_number_double(const struct kl_json *num, bool *in_range)
{
    const char *s = num->u.s, *end = s + num->len, *p = s;
    int neg = 0, exp10 = 0, nonzero = 0;
    uint64_t mant = 0;
    int digits = 0;

    if (in_range != NULL)
        *in_range = true;
    if (num->num == KL_JSON_INT)
        return (double)num->i;
    /* Clinger's fast path: <= 15 significant digits and a small exponent
     * give the correctly rounded result with one exact operation. */
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (mant == 0 && *p == '0')
            continue;
        nonzero = 1;
        if (digits < 19)
            mant = mant * 10 + (uint64_t)(*p - '0');
        else
            exp10++;
        digits++;
    }
    if (p < end && *p == '.') {
        for (p++; p < end && *p >= '0' && *p <= '9'; p++) {
            if (mant == 0 && *p == '0') {
                exp10--;
                continue;
            }
            nonzero = 1;
            if (digits < 19) {
                mant = mant * 10 + (uint64_t)(*p - '0');
                exp10--;
            }
            digits++;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        int eneg = 0, e = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            if (e < 100000)
                e = e * 10 + (*p - '0');
        }
        exp10 += eneg ? -e : e;
    }
    if (!nonzero)
        return neg ? -0.0 : 0.0;
    if (digits <= 15 && mant < (1ull << 53) && exp10 >= -22 && exp10 <= 22) {
        double d = (double)mant;
        d = exp10 < 0 ? d / pow10_exact[-exp10] : d * pow10_exact[exp10];
        return neg ? -d : d;
    }
    char small[64];
    char *tmp = num->len < sizeof small ? small : malloc((size_t)num->len + 1);
    double d;
    if (tmp == NULL)
        return NAN;
    memcpy(tmp, s, num->len);
    tmp[num->len] = '\0';
    d = c_strtod(tmp);
    if (tmp != small)
        free(tmp);
    if (in_range != NULL && (isinf(d) || d == 0.0))
        *in_range = false;
    return d;
}

int kl_json_write_string(const char *s, size_t len, struct kl_buf *out, struct kl_err *err)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;
    int rc = kl_buf_append(out, "\"", 1, err);
    if (rc != KL_OK)
        return rc;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t n = 0;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            n = 2;
        } else if (c < 0x20) {
            esc[0] = '\\';
            switch (c) {
            case '\n':
                esc[1] = 'n';
                n = 2;
                break;
            case '\r':
                esc[1] = 'r';
                n = 2;
                break;
            case '\t':
                esc[1] = 't';
                n = 2;
                break;
            case '\b':
                esc[1] = 'b';
                n = 2;
                break;
            case '\f':
                esc[1] = 'f';
                n = 2;
                break;
            default:
                esc[1] = 'u';
                esc[2] = '0';
                esc[3] = '0';
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                n = 6;
            }
        } else {
            run++;
            continue;
        }
        if (run && (rc = kl_buf_append(out, s + i - run, run, err)) != KL_OK)
            return rc;
        run = 0;
        if ((rc = kl_buf_append(out, esc, n, err)) != KL_OK)
            return rc;
    }
    if (run && (rc = kl_buf_append(out, s + len - run, run, err)) != KL_OK)
        return rc;
    return kl_buf_append(out, "\"", 1, err);
}

static int write_value(const struct kl_json *v, struct kl_buf *out, struct kl_err *err, int depth)
{
    int rc = KL_OK;
    if (depth > KL_JSON_MAX_DEPTH + 8)
        return kl_err_set(err, KL_ERR_LIMIT, "JSON nesting too deep to write");
    switch (v->type) {
    case KL_JSON_NULL:
        return kl_buf_append(out, "null", 4, err);
    case KL_JSON_FALSE:
        return kl_buf_append(out, "false", 5, err);
    case KL_JSON_TRUE:
        return kl_buf_append(out, "true", 4, err);
    case KL_JSON_NUMBER:
        return kl_buf_append(out, v->u.s, v->len, err);
    case KL_JSON_STRING:
        return kl_json_write_string(v->u.s, v->len, out, err);
    case KL_JSON_BYTES: {
        size_t cap = kl_base64_encoded_size(v->len);
        if ((rc = kl_buf_reserve(out, cap + 2, err)) != KL_OK)
            return rc;
        out->data[out->len++] = '"';
        out->len += kl_base64_encode(v->u.s, v->len, out->data + out->len, true);
        out->data[out->len++] = '"';
        out->data[out->len] = '\0';
        return KL_OK;
    }
    case KL_JSON_TIMESTAMP: {
        char ts[48];
        int64_t us = v->i, secs = us / 1000000, frac = us % 1000000;
        if (frac < 0) {
            frac += 1000000;
            secs--;
        }
        time_t t = (time_t)secs;
        struct tm tm;
        if (gmtime_r(&t, &tm) == NULL)
            return kl_err_set(err, KL_ERR_INVALID, "timestamp out of range");
        int n =
            snprintf(ts, sizeof ts, "\"%04d-%02d-%02dT%02d:%02d:%02d.%06dZ\"", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
        return kl_buf_append(out, ts, (size_t)n, err);
    }
    case KL_JSON_ARRAY:
        if ((rc = kl_buf_append(out, "[", 1, err)) != KL_OK)
            return rc;
        for (uint32_t i = 0; i < v->len; i++) {
            if (i && (rc = kl_buf_append(out, ",", 1, err)) != KL_OK)
                return rc;
            if ((rc = write_value(&v->u.items[i], out, err, depth + 1)) != KL_OK)
                return rc;
        }
        return kl_buf_append(out, "]", 1, err);
    case KL_JSON_OBJECT:
        if ((rc = kl_buf_append(out, "{", 1, err)) != KL_OK)
            return rc;
        for (uint32_t i = 0; i < v->len; i++) {
            const struct kl_json_member *m = &v->u.members[i];
            if (i && (rc = kl_buf_append(out, ",", 1, err)) != KL_OK)
                return rc;
            if ((rc = kl_json_write_string(m->key, m->key_len, out, err)) != KL_OK)
                return rc;
            if ((rc = kl_buf_append(out, ":", 1, err)) != KL_OK)
                return rc;
            if ((rc = write_value(&m->value, out, err, depth + 1)) != KL_OK)
                return rc;
        }
        return kl_buf_append(out, "}", 1, err);
    default:
        return kl_err_set(err, KL_ERR_INTERNAL, "unknown JSON node type %d", v->type);
    }
}

int kl_json_write(const struct kl_json *v, struct kl_buf *out, struct kl_err *err)
{
    return write_value(v, out, err, 0);
}
