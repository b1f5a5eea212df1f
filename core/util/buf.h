/*
 * A growable byte buffer with a hard maximum, for anything filled from the
 * network or a file. Always NUL-terminated past `len` so text can be read
 * in place. Not thread-safe; not for secrets (see kl_buf_free_secure).
 */
#ifndef KL_UTIL_BUF_H
#define KL_UTIL_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct kl_err;

struct kl_buf {
    char *data; /* NULL until the first append; owned by the buffer */
    size_t len;
    size_t cap;
    size_t max;  /* appends that would pass this fail with KL_ERR_LIMIT */
    bool secure; /* holds secrets: growth wipes the old block before freeing it */
};

void kl_buf_init(struct kl_buf *b, size_t max);
void kl_buf_free(struct kl_buf *b);
/* Wipes the contents before freeing: use for buffers that held secrets. */
void kl_buf_free_secure(struct kl_buf *b);
/* Empties the buffer, keeping its memory. */
void kl_buf_reset(struct kl_buf *b);

int kl_buf_append(struct kl_buf *b, const void *data, size_t n, struct kl_err *err);
int kl_buf_append_str(struct kl_buf *b, const char *s, struct kl_err *err);
int kl_buf_printf(struct kl_buf *b, struct kl_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Makes room for `n` more bytes; `b->data + b->len` is then writable. */
int kl_buf_reserve(struct kl_buf *b, size_t n, struct kl_err *err);

/* Hands the data to the caller (who frees it with free()) and empties `b`.
 * Returns an empty string, not NULL, when nothing was appended. */
char *kl_buf_steal(struct kl_buf *b, size_t *len_out);

#endif
