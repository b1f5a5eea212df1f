/*
 * The in-process state store: everything store.h promises, kept in this
 * process's memory behind one mutex. The default without REDIS_URL; state
 * dies with the process, which is fine because the destination's
 * checkpoints are the truth. Leases and task deadlines follow the injected
 * clock (options->clock), so tests move time by hand; a blocking take waits
 * in real time.
 */
#ifndef KL_STORE_MEMORY_H
#define KL_STORE_MEMORY_H

#include "core/store/store.h"

struct kl_err;

/* `o` may be NULL for the defaults; it is copied (the clock is borrowed and
 * must outlive the store). Free with kl_store_destroy. */
struct kl_store *kl_store_memory_create(const struct kl_store_options *o, struct kl_err *err);

#endif
