/*
 * The COPY text format encoder of the Postgres destination: typed cells to
 * tab-separated lines in a fixed-size buffer that is handed to a sink (libpq's
 * PQputCopyData, or a test buffer) whenever it fills. Rows may be split
 * across sink calls, as COPY allows; no allocation per row or cell.
 * Not for SQL text: values never appear in statements.
 */
#ifndef KL_DEST_COPY_H
#define KL_DEST_COPY_H

#include <stddef.h>
#include <stdint.h>

struct kl_err;
struct kl_value;

/* Receives encoded bytes; returns 0 or an error code (then the COPY fails). */
struct kl_copy_sink {
    int (*write)(void *ctx, const char *data, size_t len, struct kl_err *err);
    void *ctx;
};

struct kl_copy_buf {
    char *data; /* owned; `cap` bytes */
    size_t len;
    size_t cap;
    struct kl_copy_sink sink;
    uint64_t sent; /* bytes handed to the sink since init */
};

/* `cap` is clamped to at least 4 KiB. Returns 0 or KL_ERR_NOMEM. */
int kl_copy_buf_init(struct kl_copy_buf *b, size_t cap, struct kl_err *err);
void kl_copy_buf_free(struct kl_copy_buf *b);

/* Appends one row: cells separated by tabs, NULL as \N, a newline at the end.
 * Text is escaped (backslash, tab, newline, carriage return); a NUL byte in
 * text, or a \u0000 escape in JSON (jsonb cannot hold it), fails with
 * KL_ERR_INVALID naming the column index. After any failure part of the row
 * may already be with the sink: the caller abandons the COPY. */
int kl_copy_append_row(struct kl_copy_buf *b, const struct kl_value *cells, size_t n,
                       struct kl_err *err);

/* Appends one escaped text field (no separator). For unit tests and dead letters. */
int kl_copy_append_text(struct kl_copy_buf *b, const char *s, size_t n, struct kl_err *err);
/* Appends raw bytes (separators, \N, pre-formatted numbers). */
int kl_copy_append_raw(struct kl_copy_buf *b, const char *s, size_t n, struct kl_err *err);
/* Appends bytes as a bytea hex literal escaped for COPY text (\\x0a0b...). */
int kl_copy_append_bytea(struct kl_copy_buf *b, const unsigned char *p, size_t n,
                         struct kl_err *err);

/* Hands what is buffered to the sink. */
int kl_copy_flush(struct kl_copy_buf *b, struct kl_err *err);

/* True when JSON text holds a \u0000 escape (outside of an escaped backslash). */
int kl_copy_json_has_nul_escape(const char *s, size_t n);

#endif
