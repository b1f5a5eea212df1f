/*
 * COPY text encoding (see copy.h). The loops copy runs of ordinary bytes
 * with memcpy and only stop at the five bytes that need attention.
 */
#include "core/dest/copy.h"
#include "core/dest/format.h"
#include "core/normalize/rows.h"
#include "core/util/err.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* 1 for bytes COPY text must escape, 2 for NUL, which it cannot carry. */
static const unsigned char SPECIAL[256] = {
    [0] = 2, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1, ['\\'] = 1,
};

int kl_copy_buf_init(struct kl_copy_buf *b, size_t cap, struct kl_err *err)
{
    memset(b, 0, sizeof *b);
    if (cap < 4096)
        cap = 4096;
    b->data = malloc(cap);
    if (b->data == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "COPY buffer of %zu bytes", cap);
    b->cap = cap;
    return KL_OK;
}

void kl_copy_buf_free(struct kl_copy_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

int kl_copy_flush(struct kl_copy_buf *b, struct kl_err *err)
{
    int rc;

    if (b->len == 0)
        return KL_OK;
    if (b->sink.write == NULL)
        return kl_err_set(err, KL_ERR_INTERNAL, "COPY buffer has no sink");
    rc = b->sink.write(b->sink.ctx, b->data, b->len, err);
    if (rc != KL_OK)
        return rc;
    b->sent += b->len;
    b->len = 0;
    return KL_OK;
}

/* Makes `n` bytes (n <= cap) free at the end of the buffer. */
static inline int room(struct kl_copy_buf *b, size_t n, struct kl_err *err)
{
    if (b->cap - b->len >= n)
        return KL_OK;
    return kl_copy_flush(b, err);
}

int kl_copy_append_raw(struct kl_copy_buf *b, const char *s, size_t n, struct kl_err *err)
{
    while (n > 0) {
        size_t take;
        int rc = room(b, 1, err);
        if (rc != KL_OK)
            return rc;
        take = b->cap - b->len;
        if (take > n)
            take = n;
        memcpy(b->data + b->len, s, take);
        b->len += take;
        s += take;
        n -= take;
    }
    return KL_OK;
}

int kl_copy_append_text(struct kl_copy_buf *b, const char *s, size_t n, struct kl_err *err)
{
    size_t i = 0;

    while (i < n) {
        size_t run = i;
        unsigned char c;
        int rc;

        while (run < n && SPECIAL[(unsigned char)s[run]] == 0)
            run++;
        if (run > i) {
            rc = kl_copy_append_raw(b, s + i, run - i, err);
            if (rc != KL_OK)
                return rc;
        }
        if (run == n)
            break;
        c = (unsigned char)s[run];
        if (SPECIAL[c] == 2)
            return kl_err_set(err, KL_ERR_INVALID,
                              "text holds a NUL byte at offset %zu, which Postgres text cannot "
                              "store",
                              run);
        rc = room(b, 2, err);
        if (rc != KL_OK)
            return rc;
        b->data[b->len++] = '\\';
        b->data[b->len++] = c == '\t' ? 't' : c == '\n' ? 'n' : c == '\r' ? 'r' : '\\';
        i = run + 1;
    }
    return KL_OK;
}

int kl_copy_append_bytea(struct kl_copy_buf *b, const unsigned char *p, size_t n,
                         struct kl_err *err)
{
    int rc = kl_copy_append_raw(b, "\\\\x", 3, err);

    while (rc == KL_OK && n > 0) {
        size_t take;
        rc = room(b, 2, err);
        if (rc != KL_OK)
            break;
        take = (b->cap - b->len) / 2;
        if (take > n)
            take = n;
        kl_fmt_hex(b->data + b->len, p, take);
        b->len += 2 * take;
        p += take;
        n -= take;
    }
    return rc;
}

int kl_copy_json_has_nul_escape(const char *s, size_t n)
{
    const char *p = s, *end = s + n;

    while ((p = memchr(p, '\\', (size_t)(end - p))) != NULL) {
        if (end - p >= 6 && p[1] == 'u' && memcmp(p + 2, "0000", 4) == 0)
            return 1;
        p += 2; /* the escaped character is never the start of another escape */
        if (p >= end)
            break;
    }
    return 0;
}

int kl_copy_append_row(struct kl_copy_buf *b, const struct kl_value *cells, size_t n,
                       struct kl_err *err)
{
    for (size_t c = 0; c < n; c++) {
        const struct kl_value *v = &cells[c];
        int rc = room(b, KL_FMT_MAX + 1, err);
        char *p;

        if (rc != KL_OK)
            return rc;
        p = b->data + b->len;
        if (c > 0)
            *p++ = '\t';
        switch (v->type) {
        case KL_TYPE_NULL:
            *p++ = '\\';
            *p++ = 'N';
            break;
        case KL_TYPE_BIGINT:
            p += kl_fmt_i64(p, v->v.i);
            break;
        case KL_TYPE_DOUBLE:
            p += kl_fmt_double(p, v->v.d);
            break;
        case KL_TYPE_BOOL:
            *p++ = v->v.b ? 't' : 'f';
            break;
        case KL_TYPE_TIMESTAMP:
            p += kl_fmt_timestamp(p, v->v.us, KL_TS_PG);
            break;
        case KL_TYPE_TEXT:
        case KL_TYPE_DECIMAL:
        case KL_TYPE_JSON:
            b->len = (size_t)(p - b->data);
            if (v->type == KL_TYPE_JSON && kl_copy_json_has_nul_escape(v->v.s.ptr, v->v.s.len))
                return kl_err_set(err, KL_ERR_INVALID,
                                  "column %zu: JSON holds \\u0000, which jsonb cannot store", c);
            rc = kl_copy_append_text(b, v->v.s.ptr, v->v.s.len, err);
            if (rc != KL_OK) {
                kl_err_prefix(err, "column %zu", c);
                return rc;
            }
            continue;
        case KL_TYPE_BINARY:
            b->len = (size_t)(p - b->data);
            rc = kl_copy_append_bytea(b, (const unsigned char *)v->v.s.ptr, v->v.s.len, err);
            if (rc != KL_OK)
                return rc;
            continue;
        default:
            return kl_err_set(err, KL_ERR_INTERNAL, "column %zu: unknown cell type %d", c,
                              (int)v->type);
        }
        b->len = (size_t)(p - b->data);
    }
    {
        int rc = room(b, 1, err);
        if (rc != KL_OK)
            return rc;
        b->data[b->len++] = '\n';
    }
    return KL_OK;
}
