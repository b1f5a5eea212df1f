/*
 * KPL de-aggregation: the magic and MD5 trailer, and a small strict protobuf
 * wire decoder for exactly the three messages of the format (AggregatedRecord,
 * Record, Tag). Nothing here copies user data or knows about shards.
 *
 * The protobuf is walked three times: once to validate it completely and
 * count, once to collect the key tables (fields may come in any order, so a
 * record can precede the keys it refers to), once to emit the records. The
 * second and third walks only re-read what the first has proved valid.
 */
#include "core/kinesis/kpl.h"
#include "core/util/err.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char kpl_magic[KL_KPL_MAGIC_LEN] = {0xF3, 0x89, 0x9A, 0xC2};

enum wire_type {
    WIRE_VARINT = 0,
    WIRE_FIXED64 = 1,
    WIRE_LEN = 2,
    WIRE_GROUP_START = 3,
    WIRE_GROUP_END = 4,
    WIRE_FIXED32 = 5,
};

/* Field numbers of the format (aggregation-format.md). */
enum {
    AGG_PARTITION_KEY_TABLE = 1,
    AGG_EXPLICIT_HASH_KEY_TABLE = 2,
    AGG_RECORDS = 3,
    REC_PARTITION_KEY_INDEX = 1,
    REC_EXPLICIT_HASH_KEY_INDEX = 2,
    REC_DATA = 3,
    REC_TAGS = 4,
    TAG_KEY = 1,
    TAG_VALUE = 2,
};

/* A bounded view of the input. */
struct span {
    const unsigned char *p;
    const unsigned char *end;
};

/* Decoding state shared by the walks: where the protobuf starts (for byte
 * offsets in messages) and the first failure. */
struct dec {
    const unsigned char *base;
    int code; /* KL_ERR_INVALID or KL_ERR_LIMIT once failed */
    const char *why;
    size_t at;
};

struct key {
    const char *p;
    size_t len;
};

struct key_table {
    struct key *keys; /* NULL during the checking walk */
    size_t n;
};

/* One Record message as read from the wire. */
struct rec {
    uint64_t pk_index;
    uint64_t ehk_index;
    bool has_pk_index;
    bool has_ehk_index;
    bool has_data;
    const unsigned char *data;
    size_t data_len;
};

enum walk_pass { PASS_CHECK, PASS_TABLES, PASS_RECORDS };

struct walk {
    enum walk_pass pass;
    struct key_table pk;
    struct key_table ehk;
    size_t n_records;
    /* PASS_CHECK: the largest indexes used, checked against the tables at the end */
    uint64_t max_pk_index;
    uint64_t max_ehk_index;
    bool any_ehk_index;
    /* PASS_RECORDS */
    struct kl_kpl_record *out;
};

static bool fail(struct dec *d, int code, const unsigned char *at, const char *why)
{
    if (d->why == NULL) {
        d->code = code;
        d->why = why;
        d->at = (size_t)(at - d->base);
    }
    return false;
}

static bool invalid(struct dec *d, const unsigned char *at, const char *why)
{
    return fail(d, KL_ERR_INVALID, at, why);
}

/* Base-128 varint of at most 64 bits. Non-minimal encodings are accepted, as
 * every protobuf parser does; a tenth byte above 1 would overflow. */
static bool read_varint(struct dec *d, struct span *s, uint64_t *out)
{
    const unsigned char *start = s->p;
    uint64_t v = 0;

    *out = 0; /* defined even on failure: keeps static analysers sure of it */
    for (unsigned shift = 0; shift <= 63; shift += 7) {
        unsigned char c;
        if (s->p == s->end)
            return invalid(d, start, "truncated varint");
        c = *s->p++;
        if (shift == 63 && c > 1)
            return invalid(d, start, "varint longer than 64 bits");
        v |= (uint64_t)(c & 0x7F) << shift;
        if ((c & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    return invalid(d, start, "varint longer than 64 bits"); /* not reached */
}

static bool read_tag(struct dec *d, struct span *s, uint32_t *field, unsigned *wire)
{
    const unsigned char *start = s->p;
    uint64_t key;

    if (!read_varint(d, s, &key))
        return false;
    if (key > UINT32_MAX)
        return invalid(d, start, "field key longer than 32 bits");
    if ((key >> 3) == 0)
        return invalid(d, start, "field number 0");
    *field = (uint32_t)(key >> 3);
    *wire = (unsigned)(key & 7);
    return true;
}

/* A length-delimited payload: its length, then that many bytes, all inside `s`. */
static bool read_len(struct dec *d, struct span *s, struct span *out)
{
    const unsigned char *start = s->p;
    uint64_t n;

    out->p = out->end = s->p;
    if (!read_varint(d, s, &n))
        return false;
    if (n > (uint64_t)(s->end - s->p))
        return invalid(d, start, "length beyond the end of its message");
    out->p = s->p;
    out->end = s->p + n;
    s->p += n;
    return true;
}

static bool skip_bytes(struct dec *d, struct span *s, size_t n, const unsigned char *field_at)
{
    if ((size_t)(s->end - s->p) < n)
        return invalid(d, field_at, "fixed-size field beyond the end of its message");
    s->p += n;
    return true;
}

/* Skips the value of an unknown field. Groups (deprecated, never written by
 * any KPL) and the undefined wire types 6 and 7 are refused. */
static bool skip_field(struct dec *d, struct span *s, unsigned wire, const unsigned char *field_at)
{
    uint64_t ignored;
    struct span payload;

    switch (wire) {
    case WIRE_VARINT:
        return read_varint(d, s, &ignored);
    case WIRE_FIXED64:
        return skip_bytes(d, s, 8, field_at);
    case WIRE_LEN:
        return read_len(d, s, &payload);
    case WIRE_FIXED32:
        return skip_bytes(d, s, 4, field_at);
    case WIRE_GROUP_START:
    case WIRE_GROUP_END:
        return invalid(d, field_at, "group fields are not supported");
    default:
        return invalid(d, field_at, "undefined wire type");
    }
}

static bool expect_wire(struct dec *d, unsigned wire, unsigned want, const unsigned char *field_at)
{
    if (wire != want)
        return invalid(d, field_at, "known field with the wrong wire type");
    return true;
}

/* Well-formed UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        uint32_t cp, min;

        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

/* message Tag { required string key = 1; optional string value = 2; } */
static bool check_tag(struct dec *d, struct span s, const unsigned char *tag_at)
{
    bool has_key = false;

    while (s.p < s.end) {
        const unsigned char *field_at = s.p;
        struct span payload;
        uint32_t field;
        unsigned wire;

        if (!read_tag(d, &s, &field, &wire))
            return false;
        if (field != TAG_KEY && field != TAG_VALUE) {
            if (!skip_field(d, &s, wire, field_at))
                return false;
            continue;
        }
        if (!expect_wire(d, wire, WIRE_LEN, field_at) || !read_len(d, &s, &payload))
            return false;
        has_key = has_key || field == TAG_KEY;
    }
    if (!has_key)
        return invalid(d, tag_at, "Tag without its required key");
    return true;
}

/* message Record { required uint64 partition_key_index = 1;
 *   optional uint64 explicit_hash_key_index = 2; required bytes data = 3;
 *   repeated Tag tags = 4; } */
static bool read_record(struct dec *d, struct span s, struct rec *r)
{
    const unsigned char *record_at = s.p;

    memset(r, 0, sizeof *r);
    while (s.p < s.end) {
        const unsigned char *field_at = s.p;
        struct span payload;
        uint32_t field;
        unsigned wire;

        if (!read_tag(d, &s, &field, &wire))
            return false;
        switch (field) {
        case REC_PARTITION_KEY_INDEX:
            if (!expect_wire(d, wire, WIRE_VARINT, field_at) || !read_varint(d, &s, &r->pk_index))
                return false;
            r->has_pk_index = true;
            break;
        case REC_EXPLICIT_HASH_KEY_INDEX:
            if (!expect_wire(d, wire, WIRE_VARINT, field_at) || !read_varint(d, &s, &r->ehk_index))
                return false;
            r->has_ehk_index = true;
            break;
        case REC_DATA:
            if (!expect_wire(d, wire, WIRE_LEN, field_at) || !read_len(d, &s, &payload))
                return false;
            r->data = payload.p;
            r->data_len = (size_t)(payload.end - payload.p);
            r->has_data = true;
            break;
        case REC_TAGS:
            if (!expect_wire(d, wire, WIRE_LEN, field_at) || !read_len(d, &s, &payload) ||
                !check_tag(d, payload, field_at))
                return false;
            break;
        default:
            if (!skip_field(d, &s, wire, field_at))
                return false;
        }
    }
    if (!r->has_pk_index)
        return invalid(d, record_at, "Record without its required partition_key_index");
    if (!r->has_data)
        return invalid(d, record_at, "Record without its required data");
    return true;
}

static bool take_key(struct dec *d, struct walk *w, struct key_table *t, struct span s,
                     const unsigned char *field_at)
{
    size_t len = (size_t)(s.end - s.p);

    if (w->pass == PASS_CHECK) {
        if (!utf8_valid(s.p, len))
            return invalid(d, field_at, "key table entry is not valid UTF-8");
        if (t->n == KL_KPL_MAX_KEYS)
            return fail(d, KL_ERR_LIMIT, field_at, "more key table entries than KL_KPL_MAX_KEYS");
    } else if (w->pass == PASS_TABLES) {
        t->keys[t->n].p = (const char *)s.p;
        t->keys[t->n].len = len;
    }
    t->n++;
    return true;
}

static bool take_record(struct dec *d, struct walk *w, struct span s, const unsigned char *field_at)
{
    struct rec r;
    struct kl_kpl_record *o;

    if (!read_record(d, s, &r))
        return false;
    if (w->pass == PASS_CHECK) {
        if (w->n_records == KL_KPL_MAX_RECORDS)
            return fail(d, KL_ERR_LIMIT, field_at, "more user records than KL_KPL_MAX_RECORDS");
        if (r.pk_index > w->max_pk_index)
            w->max_pk_index = r.pk_index;
        if (r.has_ehk_index && (!w->any_ehk_index || r.ehk_index > w->max_ehk_index))
            w->max_ehk_index = r.ehk_index;
        w->any_ehk_index = w->any_ehk_index || r.has_ehk_index;
        w->n_records++;
        return true;
    }
    /* PASS_RECORDS: the checking walk proved both indexes in range. */
    o = &w->out[w->n_records++];
    o->data = r.data;
    o->data_len = r.data_len;
    o->partition_key = w->pk.keys[r.pk_index].p;
    o->partition_key_len = w->pk.keys[r.pk_index].len;
    o->explicit_hash_key = r.has_ehk_index ? w->ehk.keys[r.ehk_index].p : NULL;
    o->explicit_hash_key_len = r.has_ehk_index ? w->ehk.keys[r.ehk_index].len : 0;
    return true;
}

/* message AggregatedRecord { repeated string partition_key_table = 1;
 *   repeated string explicit_hash_key_table = 2; repeated Record records = 3; } */
static bool walk_aggregated(struct dec *d, struct span s, struct walk *w)
{
    w->pk.n = 0;
    w->ehk.n = 0;
    w->n_records = 0;
    while (s.p < s.end) {
        const unsigned char *field_at = s.p;
        struct span payload;
        uint32_t field;
        unsigned wire;
        bool ok = true;

        if (!read_tag(d, &s, &field, &wire))
            return false;
        if (field != AGG_PARTITION_KEY_TABLE && field != AGG_EXPLICIT_HASH_KEY_TABLE &&
            field != AGG_RECORDS) {
            if (!skip_field(d, &s, wire, field_at))
                return false;
            continue;
        }
        if (!expect_wire(d, wire, WIRE_LEN, field_at) || !read_len(d, &s, &payload))
            return false;
        if (field == AGG_PARTITION_KEY_TABLE)
            ok = w->pass == PASS_RECORDS || take_key(d, w, &w->pk, payload, field_at);
        else if (field == AGG_EXPLICIT_HASH_KEY_TABLE)
            ok = w->pass == PASS_RECORDS || take_key(d, w, &w->ehk, payload, field_at);
        else
            ok = w->pass == PASS_TABLES || take_record(d, w, payload, field_at);
        if (!ok)
            return false;
    }
    return true;
}

/* After the checking walk: every index refers to an existing table entry. */
static bool check_indexes(struct dec *d, const struct walk *w)
{
    if (w->n_records == 0)
        return invalid(d, d->base, "no user records");
    if (w->max_pk_index >= w->pk.n)
        return invalid(d, d->base, "partition_key_index outside the partition key table");
    if (w->any_ehk_index && w->max_ehk_index >= w->ehk.n)
        return invalid(d, d->base, "explicit_hash_key_index outside the explicit hash key table");
    return true;
}

/* MD5 is fetched once: an implicit fetch on every EVP_Digest call would cost
 * more than hashing a small record. */
static pthread_once_t md5_once = PTHREAD_ONCE_INIT;
static EVP_MD *md5_md;

static void fetch_md5(void)
{
    md5_md = EVP_MD_fetch(NULL, "MD5", NULL);
}

static int digest_matches(const unsigned char *msg, size_t len, const unsigned char *digest,
                          bool *matches, struct kl_err *err)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;

    if (pthread_once(&md5_once, fetch_md5) != 0 || md5_md == NULL)
        return kl_err_set(err, KL_ERR_INTERNAL, "KPL: MD5 is not available in OpenSSL");
    if (EVP_Digest(msg, len, md, &md_len, md5_md, NULL) != 1 || md_len != KL_KPL_DIGEST_LEN)
        return kl_err_set(err, KL_ERR_INTERNAL, "KPL: EVP_Digest(MD5) failed");
    *matches = memcmp(md, digest, KL_KPL_DIGEST_LEN) == 0;
    return KL_OK;
}

void kl_kpl_records_init(struct kl_kpl_records *r)
{
    memset(r, 0, sizeof *r);
}

void kl_kpl_records_free(struct kl_kpl_records *r)
{
    if (r == NULL)
        return;
    free(r->storage);
    memset(r, 0, sizeof *r);
}

bool kl_kpl_is_aggregated(const unsigned char *data, size_t len)
{
    return data != NULL && len > KL_KPL_MAGIC_LEN + KL_KPL_DIGEST_LEN &&
           memcmp(data, kpl_magic, KL_KPL_MAGIC_LEN) == 0;
}

int kl_kpl_decode(const unsigned char *data, size_t len, struct kl_kpl_records *out,
                  struct kl_err *err)
{
    struct dec d = {0};
    struct walk w = {0};
    struct span msg;
    size_t need, n_records, n_keys;
    struct kl_kpl_record *items;
    bool matches = false;
    int rc;

    if (!kl_kpl_is_aggregated(data, len)) {
        rc = kl_err_set(err, KL_ERR_INVALID, "KPL: no magic, or too short for a digest");
        goto cleanup;
    }
    msg.p = data + KL_KPL_MAGIC_LEN;
    msg.end = data + len - KL_KPL_DIGEST_LEN;
    d.base = msg.p;
    rc = digest_matches(msg.p, (size_t)(msg.end - msg.p), msg.end, &matches, err);
    if (rc != KL_OK)
        goto cleanup;
    if (!matches) {
        rc = kl_err_set(err, KL_ERR_INVALID, "KPL: MD5 digest does not match");
        goto cleanup;
    }

    w.pass = PASS_CHECK;
    if (!walk_aggregated(&d, msg, &w) || !check_indexes(&d, &w)) {
        rc = kl_err_set(err, d.code, "KPL: protobuf: %s (byte %zu of %zu)", d.why, d.at,
                        (size_t)(msg.end - msg.p));
        goto cleanup;
    }

    /* Nothing below can fail but the allocation, so `out` changes only on success. */
    n_records = w.n_records;
    n_keys = w.pk.n + w.ehk.n; /* each below 2^18: no overflow */
    need = n_records * sizeof(struct kl_kpl_record) + n_keys * sizeof(struct key);
    if (need > out->storage_size) {
        void *grown = realloc(out->storage, need);
        if (grown == NULL) {
            rc = kl_err_set(err, KL_ERR_NOMEM, "KPL: cannot allocate %zu bytes", need);
            goto cleanup;
        }
        out->storage = grown;
        out->storage_size = need;
    }
    items = out->storage;
    w.pk.keys = (struct key *)(items + n_records);
    w.ehk.keys = w.pk.keys + w.pk.n;
    w.out = items;

    w.pass = PASS_TABLES;
    if (walk_aggregated(&d, msg, &w)) {
        w.pass = PASS_RECORDS;
        walk_aggregated(&d, msg, &w);
    }
    if (d.why != NULL || w.n_records != n_records) {
        out->items = items; /* the storage may have moved */
        out->n = 0;
        rc = kl_err_set(err, KL_ERR_INTERNAL, "KPL: second walk disagrees with the first");
        goto cleanup;
    }
    out->items = items;
    out->n = n_records;
    rc = KL_OK;

cleanup:
    return rc;
}
