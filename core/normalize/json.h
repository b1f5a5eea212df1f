/*
 * The exact JSON parser for Kinesis message Data: integers keep all their
 * digits, strings keep U+0000 and their length, object keys keep their order
 * with Python dict semantics for duplicates. One parse fills one arena that
 * is reset at once. Not a general JSON library: no editing, no streaming.
 */
#ifndef KL_NORMALIZE_JSON_H
#define KL_NORMALIZE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util/arena.h"

struct kl_buf;
struct kl_err;

#define KL_JSON_MAX_DEPTH 1024                       /* nesting of arrays and objects, as orjson */
#define KL_JSON_MAX_INPUT ((size_t)64 * 1024 * 1024) /* bytes of Data accepted */

enum kl_json_type {
    KL_JSON_NULL = 0,
    KL_JSON_FALSE,
    KL_JSON_TRUE,
    KL_JSON_NUMBER,
    KL_JSON_STRING,
    KL_JSON_ARRAY,
    KL_JSON_OBJECT,
    /* Never produced by the parser: for callers that build synthetic trees
     * (the normaliser's `_kinesis` envelope). */
    KL_JSON_TIMESTAMP, /* `i` holds UTC microseconds since the epoch */
    KL_JSON_BYTES,     /* `u.s`/`len` hold raw bytes */
};

/* What a number is: its text is always kept. */
enum kl_json_num {
    KL_JSON_INT = 0, /* an integer that fits int64; the value is in `i` */
    KL_JSON_BIGINT,  /* an integer outside int64 */
    KL_JSON_FLOAT,   /* has a fraction or an exponent */
};

struct kl_json_member;

struct kl_json {
    uint8_t type;    /* enum kl_json_type */
    uint8_t num;     /* enum kl_json_num, for numbers */
    uint8_t has_nul; /* a string that contains U+0000 */
    uint8_t reserved;
    uint32_t len; /* bytes of a string or number text; items of an array or object */
    union {
        const char *s;                        /* STRING (UTF-8), NUMBER (text), BYTES */
        const struct kl_json *items;          /* ARRAY */
        const struct kl_json_member *members; /* OBJECT, in first-occurrence order */
    } u;
    int64_t i; /* NUMBER of kind KL_JSON_INT; TIMESTAMP */
};

struct kl_json_member {
    const char *key; /* UTF-8, may contain U+0000 */
    uint32_t key_len;
    uint32_t reserved;
    struct kl_json value;
};

/* A parse's storage: the arena holding the tree and the parser's scratch
 * stacks. Reused from parse to parse without new allocations once warm. */
struct kl_json_doc {
    struct kl_arena arena;
    struct kl_json root;
    struct kl_json *vals; /* scratch: array items under construction */
    size_t n_vals, cap_vals;
    struct kl_json_member *mems; /* scratch: object members under construction */
    size_t n_mems, cap_mems;
    char *sbuf; /* scratch: a string being unescaped */
    size_t cap_sbuf;
    uint32_t *hash; /* scratch: duplicate-key detection in large objects */
    size_t cap_hash;
};

void kl_json_doc_init(struct kl_json_doc *doc);
void kl_json_doc_free(struct kl_json_doc *doc);

/* Parses exactly one JSON value (RFC 8259; a UTF-8 BOM before it is skipped)
 * from `data`. The tree lives in `doc` until the next parse or
 * kl_json_doc_free; strings without escapes point into `data`, which must
 * outlive the tree. On KL_ERR_INVALID a short reason ("not valid JSON at
 * byte 12", "invalid UTF-8 at byte 3") is written to `reason` (may be NULL).
 * KL_ERR_NOMEM when memory runs out. */
int kl_json_parse(struct kl_json_doc *doc, const void *data, size_t len, char *reason,
                  size_t reason_cap);

/* The dead-letter rule for message Data: only a JSON object is a message.
 * As kl_json_parse, and a valid value that is not an object is
 * KL_ERR_INVALID too ("a JSON array, not an object"). On success `*out`
 * points to the object inside `doc`. */
int kl_json_parse_object(struct kl_json_doc *doc, const void *data, size_t len,
                         const struct kl_json **out, char *reason, size_t reason_cap);

/* The member named `key` of an object, or NULL. */
const struct kl_json *kl_json_get(const struct kl_json *obj, const char *key, size_t key_len);

/* A number's value as a double (correctly rounded). Sets `*in_range`
 * false when the text overflows to infinity or a non-zero value underflows
 * to zero; may be NULL. */
double kl_json_number_double(const struct kl_json *num, bool *in_range);

/* Appends compact JSON (orjson's spelling: no spaces, non-ASCII as UTF-8,
 * numbers as written) for `v` to `out`. BYTES are written as base64
 * strings, TIMESTAMP as ISO-8601 UTC strings. */
int kl_json_write(const struct kl_json *v, struct kl_buf *out, struct kl_err *err);
/* Appends `s` as a JSON string literal (quotes included). */
int kl_json_write_string(const char *s, size_t len, struct kl_buf *out, struct kl_err *err);

#endif
