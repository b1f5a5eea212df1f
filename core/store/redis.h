/*
 * The Redis state store: everything store.h promises, shared by every
 * replica that names the same Redis and key prefix. Built on hiredis 0.14
 * (plain TCP, no TLS). Multi-key operations are Lua scripts
 * (redis_scripts.c lists the key layout); a standalone Redis >= 6.2 is
 * required (not a cluster).
 *
 * Connections: a pool, one connection per call in progress (up to
 * options->pool_max), so a thread blocked in kl_store_task_take does not
 * hold up other threads. A connection that fails is dropped together with
 * the idle ones (they most likely share its fate, e.g. a Redis restart);
 * new ones are made on demand, with connection attempts backed off
 * (100 ms doubling up to options->backoff_max_ms) while Redis is
 * unreachable. Meanwhile calls fail fast with KL_ERR_UNAVAILABLE. A call
 * that fails on a pooled connection (which may have died while idle) is
 * tried once more on a fresh one; every operation is safe to repeat.
 *
 * Process-wide effect: hiredis writes with write(2), so kl_store_redis_create
 * ignores SIGPIPE when its disposition is the default (a dropped connection
 * must be an error, not the end of the process).
 */
#ifndef KL_STORE_REDIS_H
#define KL_STORE_REDIS_H

#include <stddef.h>

#include "core/store/store.h"

struct kl_err;

/* A parsed REDIS_URL: redis://[[user]:password@]host[:port][/db].
 * `host` may be a name, an IPv4 address or a bracketed IPv6 address; user
 * and password are percent-decoded. Defaults: port 6379, db 0. */
struct kl_redis_url {
    char host[256];
    int port;
    int db;
    char user[128]; /* "" for the default user */
    char *password; /* malloc'ed, NULL when none; wiped by kl_redis_url_free */
};

/* Fills `out` (overwritten, not freed first). KL_ERR_INVALID for anything else (rediss://, query
 * strings, a user without a password, ...); the message never repeats the password. */
int kl_redis_url_parse(const char *url, struct kl_redis_url *out, struct kl_err *err);
void kl_redis_url_free(struct kl_redis_url *u);
/* "redis://user:***@host:port/db": safe to log. */
void kl_redis_url_redacted(const struct kl_redis_url *u, char *out, size_t size);

/* A store on the Redis at `url`. Connects lazily: a Redis that is down at
 * start makes calls fail with KL_ERR_UNAVAILABLE until it is up (check
 * kl_store_ping for readiness). `o` may be NULL; it is copied. */
struct kl_store *kl_store_redis_create(const char *url, const struct kl_store_options *o,
                                       struct kl_err *err);

#endif
