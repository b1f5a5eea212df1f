/*
 * Bounded growable buffer. Growth doubles up to the maximum; nothing here
 * knows what the bytes mean.
 */
#include "core/util/buf.h"
#include "core/util/err.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kl_buf_init(struct kl_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
    b->secure = false;
}

void kl_buf_free(struct kl_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void kl_buf_free_secure(struct kl_buf *b)
{
    if (b->data != NULL)
        OPENSSL_cleanse(b->data, b->cap);
    kl_buf_free(b);
}

void kl_buf_reset(struct kl_buf *b)
{
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

int kl_buf_reserve(struct kl_buf *b, size_t n, struct kl_err *err)
{
    size_t need, cap;
    char *p;

    if (n > b->max || b->len > b->max - n)
        return kl_err_set(err, KL_ERR_LIMIT, "buffer limit of %zu bytes exceeded", b->max);
    need = b->len + n + 1; /* room for the terminating NUL */
    if (need <= b->cap)
        return KL_OK;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    if (b->secure) {
        /* no realloc: the old block must be wiped, not left behind */
        p = malloc(cap);
        if (p != NULL && b->data != NULL) {
            memcpy(p, b->data, b->len + 1);
            OPENSSL_cleanse(b->data, b->cap);
            free(b->data);
        }
    } else {
        p = realloc(b->data, cap);
    }
    if (p == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "out of memory growing a buffer to %zu bytes", cap);
    b->data = p;
    b->cap = cap;
    return KL_OK;
}

int kl_buf_append(struct kl_buf *b, const void *data, size_t n, struct kl_err *err)
{
    int rc = kl_buf_reserve(b, n, err);
    if (rc != KL_OK)
        return rc;
    if (n > 0)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return KL_OK;
}

int kl_buf_append_str(struct kl_buf *b, const char *s, struct kl_err *err)
{
    return kl_buf_append(b, s, strlen(s), err);
}

int kl_buf_printf(struct kl_buf *b, struct kl_err *err, const char *fmt, ...)
{
    va_list ap;
    int n, rc;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return kl_err_set(err, KL_ERR_INTERNAL, "bad format string");
    rc = kl_buf_reserve(b, (size_t)n, err);
    if (rc != KL_OK)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return KL_OK;
}

char *kl_buf_steal(struct kl_buf *b, size_t *len_out)
{
    char *p = b->data;
    size_t len = b->len;

    if (p == NULL) {
        p = calloc(1, 1);
        len = 0;
    }
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    if (len_out != NULL)
        *len_out = len;
    return p;
}
