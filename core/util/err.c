/*
 * Error detail formatting. Nothing here allocates: messages are truncated
 * to the fixed buffer of struct kl_err.
 */
#include "core/util/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int kl_err_set(struct kl_err *err, enum kl_err_code code, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return (int)code;
}

void kl_err_prefix(struct kl_err *err, const char *fmt, ...)
{
    char prefix[128];
    char old[sizeof err->msg];
    va_list ap;

    if (err == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* Built by hand: the message is meant to be cut at the buffer's end. */
    {
        size_t pl = strlen(prefix), ol = strnlen(old, sizeof old - 1), cap = sizeof err->msg - 1;
        size_t pos = 0;
        memcpy(err->msg, prefix, pl < cap ? pl : cap);
        pos = pl < cap ? pl : cap;
        if (pos + 2 <= cap) {
            memcpy(err->msg + pos, ": ", 2);
            pos += 2;
        }
        if (ol > cap - pos)
            ol = cap - pos;
        memcpy(err->msg + pos, old, ol);
        err->msg[pos + ol] = '\0';
    }
}

void kl_err_clear(struct kl_err *err)
{
    if (err != NULL) {
        err->code = KL_OK;
        err->msg[0] = '\0';
    }
}

const char *kl_err_code_name(enum kl_err_code code)
{
    switch (code) {
    case KL_OK:
        return "ok";
    case KL_ERR_INVALID:
        return "invalid";
    case KL_ERR_NOT_FOUND:
        return "not_found";
    case KL_ERR_CONFLICT:
        return "conflict";
    case KL_ERR_AUTH:
        return "auth";
    case KL_ERR_UNAVAILABLE:
        return "unavailable";
    case KL_ERR_EXPIRED:
        return "expired";
    case KL_ERR_LIMIT:
        return "limit";
    case KL_ERR_UPSTREAM:
        return "upstream";
    case KL_ERR_NOMEM:
        return "nomem";
    case KL_ERR_IO:
        return "io";
    case KL_ERR_CANCELLED:
        return "cancelled";
    case KL_ERR_INTERNAL:
        return "internal";
    }
    return "unknown";
}

bool kl_err_retryable(enum kl_err_code code)
{
    return code == KL_ERR_UNAVAILABLE;
}
