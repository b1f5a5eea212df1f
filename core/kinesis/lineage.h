/*
 * Shard lineage: which shards descend from which, and when a child may be
 * read (all of its parents that are still within retention are drained).
 * Pure functions over a shard list; who tracks "drained" is the caller.
 */
#ifndef KL_KINESIS_LINEAGE_H
#define KL_KINESIS_LINEAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/kinesis/client.h"

/* Index of the shard with this id, or -1. */
long kl_shard_index(const struct kl_shard_list *shards, const char *id);

/* A closed shard has an ending sequence number. */
bool kl_shard_is_closed(const struct kl_shard *s);

/* True when every parent of `s` that is in `shards` is drained according to
 * `is_drained`. Parents no longer listed (past retention) do not block. */
bool kl_shard_parents_drained(const struct kl_shard_list *shards, const struct kl_shard *s,
                              bool (*is_drained)(void *ctx, const char *shard_id), void *ctx);

/* True when some parent of `s` satisfies `pred` (e.g. "has a stored position"). */
bool kl_shard_any_parent(const struct kl_shard *s, bool (*pred)(void *ctx, const char *shard_id),
                         void *ctx);

#endif
