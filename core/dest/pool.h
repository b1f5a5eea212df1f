/*
 * A small bounded pool of destination connections over a factory, for code
 * that needs one now and then from any thread (API handlers, readiness
 * checks). Workers that write all the time keep their own connection from
 * the factory instead. Thread-safe.
 */
#ifndef KL_DEST_POOL_H
#define KL_DEST_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kl_err;
struct kl_dest;
struct kl_dest_factory;

struct kl_dest_pool;

/* At most `max` connections (>= 1), opened on demand. The factory is
 * borrowed and must outlive the pool. */
struct kl_dest_pool *kl_dest_pool_create(struct kl_dest_factory *factory, size_t max,
                                         struct kl_err *err);
/* Closes idle connections; every acquired one must have been released.
 * NULL is a no-op. */
void kl_dest_pool_destroy(struct kl_dest_pool *p);

/* Hands out an idle connection, opens one when below the maximum, or waits
 * up to timeout_ms for a release (KL_ERR_UNAVAILABLE when none comes). */
int kl_dest_pool_acquire(struct kl_dest_pool *p, int64_t timeout_ms, struct kl_dest **out,
                         struct kl_err *err);
/* Returns a connection. With `broken` true (the last call failed with
 * KL_ERR_UNAVAILABLE, say) it is closed instead of kept. */
void kl_dest_pool_release(struct kl_dest_pool *p, struct kl_dest *d, bool broken);

#endif
