/*
 * Error codes and the optional detail record every fallible function takes.
 * Codes separate retryable failures (KL_ERR_UNAVAILABLE) from final ones;
 * mapping codes to HTTP statuses belongs to api/, not here.
 */
#ifndef KL_UTIL_ERR_H
#define KL_UTIL_ERR_H

#include <stdbool.h>

enum kl_err_code {
    KL_OK = 0,
    KL_ERR_INVALID,     /* the caller's input is wrong (bad argument, bad config) */
    KL_ERR_NOT_FOUND,   /* the named thing does not exist (stream, shard, job) */
    KL_ERR_CONFLICT,    /* the thing exists or is busy (active job, stale fencing token) */
    KL_ERR_AUTH,        /* credentials missing, wrong, or refused (signature, access) */
    KL_ERR_UNAVAILABLE, /* retryable: throttling, 5xx, dropped connection, timeout */
    KL_ERR_EXPIRED,     /* a server-side handle expired (shard iterator); re-acquire */
    KL_ERR_LIMIT,       /* a size or count limit was exceeded */
    KL_ERR_UPSTREAM,    /* a final error reported by a remote service */
    KL_ERR_NOMEM,       /* allocation failed */
    KL_ERR_IO,          /* local I/O failed (file, socket set-up) */
    KL_ERR_CANCELLED,   /* the operation was cancelled by its owner */
    KL_ERR_INTERNAL,    /* a bug: an invariant did not hold */
};

struct kl_err {
    enum kl_err_code code;
    char msg[256];
};

/* Sets code and a printf-formatted message; `err` may be NULL. Returns `code`
 * so callers can write `return kl_err_set(err, KL_ERR_INVALID, "...")`. */
int kl_err_set(struct kl_err *err, enum kl_err_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the existing message with context ("ListShards: <old msg>"). */
void kl_err_prefix(struct kl_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void kl_err_clear(struct kl_err *err);

/* Stable lower-case name of a code ("unavailable"), for logs and problem types. */
const char *kl_err_code_name(enum kl_err_code code);

/* True for failures that may succeed when tried again later. */
bool kl_err_retryable(enum kl_err_code code);

#endif
