/*
 * The GetRecords answer as a push parser (see page.h). Our own tokenizer
 * rather than cJSON's: cJSON needs the whole body as text and builds a tree
 * of it, which held a page three times over (text, tree, decoded bytes) and
 * took a fifth of a load's CPU time. Only the members a page has are kept:
 * Records[].{SequenceNumber, Data, PartitionKey, ApproximateArrivalTimestamp},
 * NextShardIterator, MillisBehindLatest and ChildShards[].{ShardId,
 * ParentShards}; any other member is skipped, whatever its value.
 */
#include "core/kinesis/page.h"
#include "core/util/base64.h"
#include "core/util/err.h"
#include "core/util/membudget.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_BYTES ((size_t)64 << 20)

/* What an open container is (ctx[]). */
enum { C_TOP, C_RECORDS, C_RECORD, C_CHILDREN, C_CHILD, C_PARENTS, C_SKIP };

/* What a value is for (field). */
enum {
    F_SKIP,
    F_RECORDS,
    F_NEXT,
    F_MILLIS,
    F_CHILDREN,
    F_RECORD,
    F_SEQ,
    F_DATA,
    F_PK,
    F_ARRIVAL,
    F_CHILD,
    F_CHILD_ID,
    F_PARENTS,
    F_PARENT
};

/* Where a string goes (target). */
enum { T_SKIP, T_KEY, T_BYTES, T_DATA, T_SCRATCH };

/* Tokenizer states. */
enum {
    S_VALUE,       /* a value is due */
    S_FIRST_VALUE, /* after '[': a value or ']' */
    S_FIRST_KEY,   /* after '{': a key or '}' */
    S_KEY,         /* after ',' in an object: a key */
    S_COLON,       /* after a key */
    S_AFTER,       /* after a value: ',' or the container's end */
    S_STRING,
    S_ESCAPE,
    S_HEX,
    S_NUMBER,
    S_LITERAL,
    S_END, /* the top object ended: only whitespace */
};

static int broken(struct kl_err *err, const char *what)
{
    return kl_err_set(err, KL_ERR_UNAVAILABLE, "GetRecords: the answer is not valid JSON (%s)",
                      what);
}

void kl_page_parser_init(struct kl_page_parser *p, struct kl_membudget *budget, size_t *charged,
                         size_t max_bytes)
{
    memset(p, 0, sizeof *p);
    p->budget = budget;
    p->charged = charged;
    p->max_bytes = max_bytes ? max_bytes : DEFAULT_MAX_BYTES;
    p->millis_behind = -1;
    p->state = S_VALUE;
}

void kl_page_parser_bound(struct kl_page_parser *p)
{
    p->bounded = true;
}

void kl_page_parser_restart(struct kl_page_parser *p)
{
    p->n_records = p->n_children = p->len = 0;
    p->has_next = false;
    p->millis_behind = -1;
    p->state = S_VALUE;
    p->depth = 0;
    p->field = F_SKIP;
}

void kl_page_parser_free(struct kl_page_parser *p)
{
    free(p->records);
    free(p->children);
    free(p->bytes);
    p->records = NULL;
    p->children = NULL;
    p->bytes = NULL;
    p->cap_records = p->cap_children = p->cap = 0;
}

/* ---- storage ---- */

static size_t held(const struct kl_page_parser *p)
{
    return p->cap + p->cap_records * sizeof *p->records + p->cap_children * sizeof *p->children;
}

/* Charges what the page will hold once an allocation adds `extra` bytes,
 * before it is made: bounded, only while that fits under the limit. */
static int charge(struct kl_page_parser *p, size_t extra, struct kl_err *err)
{
    size_t will = held(p) + extra;
    if (p->charged == NULL || will <= *p->charged)
        return KL_OK;
    if (!p->bounded) {
        kl_membudget_charge(p->budget, will - *p->charged);
    } else if (!kl_membudget_try_charge(p->budget, will - *p->charged)) {
        p->outgrown = true;
        return kl_err_set(err, KL_ERR_LIMIT,
                          "GetRecords: the page outgrew the %zu bytes of memory it was given",
                          *p->charged);
    }
    *p->charged = will;
    return KL_OK;
}

/* Room for `n` more bytes in the block. */
static int reserve_bytes(struct kl_page_parser *p, size_t n, struct kl_err *err)
{
    size_t cap;
    char *grown;

    if (n <= p->cap - p->len)
        return KL_OK;
    if (n > p->max_bytes - p->len || p->len > p->max_bytes)
        return kl_err_set(err, KL_ERR_LIMIT, "GetRecords: the page passed %zu bytes", p->max_bytes);
    cap = p->cap ? p->cap : (size_t)64 * 1024;
    while (cap - p->len < n)
        cap *= 2;
    if (cap > p->max_bytes)
        cap = p->max_bytes;
    if (charge(p, cap - p->cap, err) != KL_OK)
        return KL_ERR_LIMIT;
    grown = realloc(p->bytes, cap);
    if (grown == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "out of memory for a GetRecords page");
    p->bytes = grown;
    p->cap = cap;
    return KL_OK;
}

static int put_bytes(struct kl_page_parser *p, const char *s, size_t n, struct kl_err *err)
{
    int rc = reserve_bytes(p, n, err);
    if (rc == KL_OK) {
        memcpy(p->bytes + p->len, s, n);
        p->len += n;
    }
    return rc;
}

/* Makes room for one more element of an array of `size`-byte elements. */
static int grow_array(struct kl_page_parser *p, void **arr, size_t *cap, size_t n, size_t size,
                      struct kl_err *err)
{
    size_t want;
    void *grown;
    if (n < *cap)
        return KL_OK;
    want = *cap ? *cap * 2 : 256;
    if (charge(p, (want - *cap) * size, err) != KL_OK)
        return KL_ERR_LIMIT;
    grown = realloc(*arr, want * size);
    if (grown == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "out of memory for a GetRecords page");
    *arr = grown;
    *cap = want;
    return KL_OK;
}

/* ---- base64 Data, decoded as it comes ---- */

static int bad_data(const struct kl_page_parser *p, struct kl_err *err)
{
    const struct kl_page_record *r = &p->records[p->n_records - 1];
    return kl_err_set(err, KL_ERR_UPSTREAM, "GetRecords: record %s has invalid base64 Data",
                      r->has_sequence ? p->bytes + r->sequence : "(no SequenceNumber yet)");
}

static int decode_into(struct kl_page_parser *p, const char *s, size_t n, struct kl_err *err)
{
    size_t out;
    int rc = reserve_bytes(p, kl_base64_decoded_max(n), err);
    if (rc != KL_OK)
        return rc;
    if (kl_base64_decode(s, n, (unsigned char *)p->bytes + p->len, &out) != 0)
        return bad_data(p, err);
    p->len += out;
    return KL_OK;
}

/* A piece of a Data string (no quote or backslash in it). */
static int data_piece(struct kl_page_parser *p, const char *s, size_t n, struct kl_err *err)
{
    int rc;

    while (n > 0) {
        if (p->pads > 0 || *s == '=') {
            /* padding: only more of it may follow, two at most */
            if (*s != '=' || ++p->pads > 2)
                return bad_data(p, err);
            s++, n--;
            continue;
        }
        if (p->n_quad == 0 && n >= 4) {
            /* the fast way: every whole group of four up to a '=' at once */
            const char *eq = memchr(s, '=', n);
            size_t run = (eq != NULL ? (size_t)(eq - s) : n) / 4 * 4;
            if (run > 0) {
                rc = decode_into(p, s, run, err);
                if (rc != KL_OK)
                    return rc;
                s += run, n -= run;
                continue;
            }
        }
        p->quad[p->n_quad++] = *s++;
        n--;
        if (p->n_quad == 4) {
            rc = decode_into(p, p->quad, 4, err);
            if (rc != KL_OK)
                return rc;
            p->n_quad = 0;
        }
    }
    return KL_OK;
}

/* The Data string ended: its last group, then the NUL. */
static int data_end(struct kl_page_parser *p, struct kl_err *err)
{
    struct kl_page_record *r = &p->records[p->n_records - 1];
    int rc = KL_OK;

    if (p->n_quad == 1)
        return bad_data(p, err);
    if (p->n_quad > 0)
        rc = decode_into(p, p->quad, p->n_quad, err);
    if (rc == KL_OK)
        rc = reserve_bytes(p, 1, err);
    if (rc != KL_OK)
        return rc;
    r->data_len = p->len - r->data;
    p->bytes[p->len++] = '\0';
    r->has_data = true;
    return KL_OK;
}

/* ---- strings ---- */

/* Keys and shard ids: short strings kept whole; a longer one is marked
 * (it cannot be one we know). */
static void small_piece(struct kl_page_parser *p, char *dst, size_t cap, const char *s, size_t n)
{
    if (n > cap - 1 - p->scratch_len) {
        p->key_overflow = true;
        return;
    }
    memcpy(dst + p->scratch_len, s, n);
    p->scratch_len += n;
}

static int string_piece(struct kl_page_parser *p, const char *s, size_t n, struct kl_err *err)
{
    switch (p->target) {
    case T_KEY:
        small_piece(p, p->key, sizeof p->key, s, n);
        return KL_OK;
    case T_SCRATCH:
        small_piece(p, p->scratch, sizeof p->scratch, s, n);
        return KL_OK;
    case T_BYTES:
        return put_bytes(p, s, n, err);
    case T_DATA:
        return data_piece(p, s, n, err);
    default:
        return KL_OK;
    }
}

/* A code point of a \u escape, as UTF-8. */
static int string_code_point(struct kl_page_parser *p, unsigned cp, struct kl_err *err)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12);
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18);
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return string_piece(p, u, n, err);
}

/* A high surrogate not followed by a low one stands for U+FFFD. */
static int flush_surrogate(struct kl_page_parser *p, struct kl_err *err)
{
    if (p->high_surrogate == 0)
        return KL_OK;
    p->high_surrogate = 0;
    return string_code_point(p, 0xFFFD, err);
}

static int hex_done(struct kl_page_parser *p, struct kl_err *err)
{
    unsigned cp = p->hex;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        int rc = flush_surrogate(p, err);
        p->high_surrogate = cp;
        return rc;
    }
    if (cp >= 0xDC00 && cp <= 0xDFFF) {
        if (p->high_surrogate == 0)
            return string_code_point(p, 0xFFFD, err);
        cp = 0x10000 + ((p->high_surrogate - 0xD800) << 10) + (cp - 0xDC00);
        p->high_surrogate = 0;
        return string_code_point(p, cp, err);
    }
    int rc = flush_surrogate(p, err);
    return rc != KL_OK ? rc : string_code_point(p, cp, err);
}

static struct kl_page_record *current_record(struct kl_page_parser *p)
{
    return &p->records[p->n_records - 1];
}

/* Starts a string value or key. */
static void string_begin(struct kl_page_parser *p, int target)
{
    p->target = target;
    p->scratch_len = 0;
    p->key_overflow = false;
    p->high_surrogate = 0;
    p->data_start = p->len;
    if (target == T_DATA) {
        current_record(p)->data = p->len;
        p->n_quad = 0;
        p->pads = 0;
    }
}

static int copy_id(char *dst, size_t cap, const struct kl_page_parser *p, const char *what,
                   struct kl_err *err)
{
    if (p->key_overflow || p->scratch_len >= cap)
        return kl_err_set(err, KL_ERR_UPSTREAM, "GetRecords: %s is too long", what);
    memcpy(dst, p->scratch, p->scratch_len);
    dst[p->scratch_len] = '\0';
    return KL_OK;
}

/* ---- containers and values ---- */

#define OBJ 0x80 /* ctx[] flag: the container is an object */

static bool in_object(const struct kl_page_parser *p)
{
    return (p->ctx[p->depth - 1] & OBJ) != 0;
}

static int kind(const struct kl_page_parser *p)
{
    return p->ctx[p->depth - 1] & ~OBJ;
}

/* The field of the next element of the current array. */
static int element_field(const struct kl_page_parser *p)
{
    switch (kind(p)) {
    case C_RECORDS:
        return F_RECORD;
    case C_CHILDREN:
        return F_CHILD;
    case C_PARENTS:
        return F_PARENT;
    default:
        return F_SKIP;
    }
}

/* The field a member of the current object is, by its key. */
static int member_field(const struct kl_page_parser *p)
{
    static const struct {
        const char *key;
        int container;
        int field;
    } fields[] = {
        {"Records", C_TOP, F_RECORDS},
        {"NextShardIterator", C_TOP, F_NEXT},
        {"MillisBehindLatest", C_TOP, F_MILLIS},
        {"ChildShards", C_TOP, F_CHILDREN},
        {"SequenceNumber", C_RECORD, F_SEQ},
        {"Data", C_RECORD, F_DATA},
        {"PartitionKey", C_RECORD, F_PK},
        {"ApproximateArrivalTimestamp", C_RECORD, F_ARRIVAL},
        {"ShardId", C_CHILD, F_CHILD_ID},
        {"ParentShards", C_CHILD, F_PARENTS},
    };
    if (p->key_overflow)
        return F_SKIP;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (fields[i].container == kind(p) && strcmp(fields[i].key, p->key) == 0)
            return fields[i].field;
    return F_SKIP;
}

/* A value ended: what comes next. */
static void value_done(struct kl_page_parser *p)
{
    p->state = p->depth == 0 ? S_END : S_AFTER;
}

static int push(struct kl_page_parser *p, unsigned char what, struct kl_err *err)
{
    if (p->depth >= KL_PAGE_MAX_DEPTH)
        return kl_err_set(err, KL_ERR_UPSTREAM, "GetRecords: the answer nests deeper than %d",
                          KL_PAGE_MAX_DEPTH);
    p->ctx[p->depth++] = what;
    return KL_OK;
}

static int object_begin(struct kl_page_parser *p, struct kl_err *err)
{
    int rc;
    unsigned char what = C_SKIP;

    if (p->depth == 0) {
        what = C_TOP;
    } else if (p->field == F_RECORD) {
        rc = grow_array(p, (void **)&p->records, &p->cap_records, p->n_records, sizeof *p->records,
                        err);
        if (rc != KL_OK)
            return rc;
        memset(&p->records[p->n_records++], 0, sizeof *p->records);
        what = C_RECORD;
    } else if (p->field == F_CHILD) {
        rc = grow_array(p, (void **)&p->children, &p->cap_children, p->n_children,
                        sizeof *p->children, err);
        if (rc != KL_OK)
            return rc;
        memset(&p->children[p->n_children++], 0, sizeof *p->children);
        what = C_CHILD;
    }
    p->state = S_FIRST_KEY;
    return push(p, what | OBJ, err);
}

static int array_begin(struct kl_page_parser *p, struct kl_err *err)
{
    unsigned char what = C_SKIP;
    if (p->depth == 0)
        return broken(err, "an array, not an object");
    if (p->field == F_RECORDS)
        what = C_RECORDS;
    else if (p->field == F_CHILDREN)
        what = C_CHILDREN;
    else if (p->field == F_PARENTS)
        what = C_PARENTS;
    p->state = S_FIRST_VALUE;
    return push(p, what, err);
}

/* A record object ended: it must have had a sequence number and Data. */
static int record_end(struct kl_page_parser *p, struct kl_err *err)
{
    const struct kl_page_record *r = current_record(p);
    if (!r->has_sequence || !r->has_data)
        return kl_err_set(err, KL_ERR_UPSTREAM, "GetRecords: a record without %s",
                          !r->has_sequence ? "SequenceNumber" : "Data");
    return KL_OK;
}

static int container_end(struct kl_page_parser *p, char c, struct kl_err *err)
{
    int rc = KL_OK;
    if ((c == '}') != in_object(p))
        return broken(err, "mismatched brackets");
    if (kind(p) == C_RECORD)
        rc = record_end(p, err);
    p->depth--;
    value_done(p);
    return rc;
}

static int string_end(struct kl_page_parser *p, struct kl_err *err)
{
    int rc = flush_surrogate(p, err);
    struct kl_page_record *r;

    if (rc != KL_OK)
        return rc;
    if (p->target == T_KEY) {
        p->key[p->key_overflow ? 0 : p->scratch_len] = '\0';
        p->state = S_COLON;
        return KL_OK;
    }
    switch (p->target) {
    case T_DATA:
        rc = data_end(p, err);
        break;
    case T_BYTES:
        rc = put_bytes(p, "", 1, err);
        if (rc != KL_OK)
            break;
        if (p->field == F_NEXT) {
            p->next_iterator = p->data_start;
            p->has_next = true;
        } else {
            r = current_record(p);
            if (p->field == F_SEQ) {
                r->sequence = p->data_start;
                r->has_sequence = true;
            } else {
                r->partition_key = p->data_start + 1; /* 0 means none */
            }
        }
        break;
    case T_SCRATCH:
        if (p->field == F_CHILD_ID) {
            struct kl_child_shard *ch = &p->children[p->n_children - 1];
            rc = copy_id(ch->id, sizeof ch->id, p, "ChildShards.ShardId", err);
        } else if (p->field == F_PARENT && kind(p) == C_PARENTS) {
            struct kl_child_shard *ch = &p->children[p->n_children - 1];
            if (ch->n_parents < 2 && !p->key_overflow && p->scratch_len < sizeof ch->parents[0]) {
                memcpy(ch->parents[ch->n_parents], p->scratch, p->scratch_len);
                ch->parents[ch->n_parents++][p->scratch_len] = '\0';
            }
        }
        break;
    default:
        break;
    }
    value_done(p);
    return rc;
}

static int number_end(struct kl_page_parser *p, struct kl_err *err)
{
    char *end;
    double v;

    p->num[p->num_len] = '\0';
    v = strtod(p->num, &end);
    if (end == p->num || *end != '\0' || !isfinite(v))
        return broken(err, "a bad number");
    if (p->field == F_MILLIS)
        p->millis_behind = (int64_t)v;
    else if (p->field == F_ARRIVAL)
        current_record(p)->arrival_ms = llround(v * 1000.0);
    value_done(p);
    return KL_OK;
}

/* The first character of a value. */
static int value_begin(struct kl_page_parser *p, char c, struct kl_err *err)
{
    int target = T_SKIP;
    switch (c) {
    case '{':
        return object_begin(p, err);
    case '[':
        return array_begin(p, err);
    case '"':
        if (p->depth == 0)
            return broken(err, "a string, not an object");
        if (p->field == F_SEQ || p->field == F_PK || p->field == F_NEXT)
            target = T_BYTES;
        else if (p->field == F_DATA)
            target = T_DATA;
        else if (p->field == F_CHILD_ID || p->field == F_PARENT)
            target = T_SCRATCH;
        string_begin(p, target);
        p->state = S_STRING;
        return KL_OK;
    case 't':
    case 'f':
    case 'n':
        if (p->depth == 0)
            return broken(err, "a literal, not an object");
        p->literal = c == 't' ? "true" : c == 'f' ? "false" : "null";
        p->literal_pos = 1;
        p->state = S_LITERAL;
        return KL_OK;
    default:
        if (c != '-' && (c < '0' || c > '9'))
            return broken(err, "an unexpected character");
        if (p->depth == 0)
            return broken(err, "a number, not an object");
        p->num[0] = c;
        p->num_len = 1;
        p->state = S_NUMBER;
        return KL_OK;
    }
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_number_char(char c)
{
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

static int escape_char(struct kl_page_parser *p, char c, struct kl_err *err)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *at = c != '\0' ? strchr(from, c) : NULL;
    int rc;
    if (c == 'u') {
        p->hex = 0;
        p->hex_digits = 0;
        p->state = S_HEX;
        return KL_OK;
    }
    if (at == NULL)
        return broken(err, "a bad escape");
    rc = flush_surrogate(p, err);
    p->state = S_STRING;
    return rc != KL_OK ? rc : string_piece(p, &to[at - from], 1, err);
}

static int hex_char(struct kl_page_parser *p, char c, struct kl_err *err)
{
    unsigned d;
    if (c >= '0' && c <= '9')
        d = (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f')
        d = (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
        d = (unsigned)(c - 'A' + 10);
    else
        return broken(err, "a bad \\u escape");
    p->hex = p->hex << 4 | d;
    if (++p->hex_digits < 4)
        return KL_OK;
    p->state = S_STRING;
    return hex_done(p, err);
}

/* Inside a string: hands on the longest run of plain characters, and the
 * quote or backslash after it. Returns how many bytes of `s` were used;
 * `*rc` says whether that went well. */
static size_t string_run(struct kl_page_parser *p, const char *s, size_t n, int *rc,
                         struct kl_err *err)
{
    size_t j = 0;
    while (j < n && s[j] != '"' && s[j] != '\\' && (unsigned char)s[j] >= 0x20)
        j++;
    *rc = KL_OK;
    if (j > 0) {
        if (p->high_surrogate != 0)
            *rc = flush_surrogate(p, err);
        if (*rc == KL_OK)
            *rc = string_piece(p, s, j, err);
        if (*rc != KL_OK || j == n)
            return j;
    }
    if (s[j] == '"') {
        *rc = string_end(p, err);
    } else if (s[j] == '\\') {
        p->state = S_ESCAPE;
    } else {
        *rc = broken(err, "a control character in a string");
    }
    return j + 1;
}

int kl_page_parser_feed(struct kl_page_parser *p, const char *data, size_t n, struct kl_err *err)
{
    size_t i = 0;
    int rc = KL_OK;

    while (i < n && rc == KL_OK) {
        char c = data[i];
        switch (p->state) {
        case S_STRING:
            i += string_run(p, data + i, n - i, &rc, err);
            continue;
        case S_ESCAPE:
            rc = escape_char(p, c, err);
            break;
        case S_HEX:
            rc = hex_char(p, c, err);
            break;
        case S_NUMBER:
            if (is_number_char(c)) {
                if (p->num_len >= sizeof p->num - 1)
                    return broken(err, "a number too long");
                p->num[p->num_len++] = c;
                break;
            }
            rc = number_end(p, err);
            continue; /* c belongs to what follows */
        case S_LITERAL:
            if (c != p->literal[p->literal_pos])
                return broken(err, "a bad literal");
            if (p->literal[++p->literal_pos] == '\0')
                value_done(p);
            break;
        default:
            if (is_space(c))
                break;
            switch (p->state) {
            case S_VALUE:
                rc = value_begin(p, c, err);
                break;
            case S_FIRST_VALUE:
                if (c == ']') {
                    rc = container_end(p, c, err);
                    break;
                }
                p->field = element_field(p);
                rc = value_begin(p, c, err);
                break;
            case S_FIRST_KEY:
                if (c == '}') {
                    rc = container_end(p, c, err);
                    break;
                }
                /* fall through */
            case S_KEY:
                if (c != '"')
                    return broken(err, "a member without a key");
                string_begin(p, T_KEY);
                p->state = S_STRING;
                break;
            case S_COLON:
                if (c != ':')
                    return broken(err, "a key without ':'");
                p->field = member_field(p);
                p->state = S_VALUE;
                break;
            case S_AFTER:
                if (c == ',') {
                    if (in_object(p)) {
                        p->state = S_KEY;
                    } else {
                        p->field = element_field(p);
                        p->state = S_VALUE;
                    }
                } else if (c == '}' || c == ']') {
                    rc = container_end(p, c, err);
                } else {
                    return broken(err, "a missing ','");
                }
                break;
            default: /* S_END */
                return broken(err, "text after the answer");
            }
        }
        i++;
    }
    return rc;
}

int kl_page_parser_end(const struct kl_page_parser *p, struct kl_err *err)
{
    return p->state == S_END ? KL_OK : broken(err, "the answer ended early");
}

int kl_page_parser_finish(struct kl_page_parser *p, struct kl_record_batch *out, struct kl_err *err)
{
    struct kl_record_batch b;
    int rc = kl_page_parser_end(p, err);

    if (rc != KL_OK)
        return rc;
    kl_record_batch_init(&b);
    /* an empty string for every record without a partition key */
    rc = put_bytes(p, "", 1, err);
    if (rc != KL_OK)
        return rc;
    if (p->n_records > 0) {
        b.records = malloc(p->n_records * sizeof *b.records);
        if (b.records == NULL)
            return kl_err_set(err, KL_ERR_NOMEM, "out of memory for a GetRecords page");
    }
    /* give back what the block has to spare before pointers go into it */
    if (p->cap - p->len > (size_t)64 * 1024) {
        char *shrunk = realloc(p->bytes, p->len);
        if (shrunk != NULL) {
            p->bytes = shrunk;
            p->cap = p->len;
        }
    }
    for (size_t i = 0; i < p->n_records; i++) {
        const struct kl_page_record *r = &p->records[i];
        struct kl_record *o = &b.records[i];
        o->sequence = p->bytes + r->sequence;
        o->partition_key =
            r->partition_key > 0 ? p->bytes + r->partition_key - 1 : p->bytes + p->len - 1;
        o->data = (const unsigned char *)p->bytes + r->data;
        o->data_len = r->data_len;
        o->arrival_ms = r->arrival_ms;
        b.data_bytes += r->data_len;
    }
    b.n = p->n_records;
    b.next_iterator = p->has_next ? p->bytes + p->next_iterator : NULL;
    b.millis_behind = p->millis_behind;
    b.children = p->children;
    b.n_children = p->n_children;
    b.storage = b.records;
    b.bytes = p->bytes;
    b.held = p->cap + p->n_records * sizeof *b.records + p->cap_children * sizeof *p->children;
    p->children = NULL;
    p->bytes = NULL;
    p->cap_children = p->cap = p->len = 0;
    free(p->records);
    p->records = NULL;
    p->cap_records = p->n_records = 0;
    *out = b;
    return KL_OK;
}
