/*
 * The lag registry: the last MillisBehindLatest each shard reported to this
 * process, for /metrics (kl_shard_millis_behind_latest). Bounded: at most
 * KL_LAGS_MAX shards, the least recently read one making room, and a shard
 * is forgotten KL_LAG_KEEP_MS after its last read. Thread-safe.
 */
#ifndef KL_LOAD_LAG_H
#define KL_LOAD_LAG_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "core/kinesis/client.h"
#include "core/load/params.h"

struct kl_clock;

#define KL_LAGS_MAX 4096      /* shards remembered at most (the least recent go) */
#define KL_LAG_KEEP_MS 900000 /* a shard is forgotten 15 min after its last read */

/* The last MillisBehindLatest a shard reported. */
struct kl_shard_lag {
    char pipeline[KL_PIPELINE_NAME_MAX];
    char stream[KL_STREAM_NAME_MAX];
    char shard_id[KL_SHARD_ID_MAX];
    int64_t millis_behind;
};

struct kl_lag_entry {
    struct kl_shard_lag l;
    int64_t seen_ms; /* monotonic */
};

struct kl_lag_registry {
    const struct kl_clock *clock; /* borrowed */
    pthread_mutex_t lock;
    struct kl_lag_entry *entries; /* grows up to KL_LAGS_MAX */
    size_t n, cap;
};

/* `clock` NULL: the system clock. */
void kl_lag_registry_init(struct kl_lag_registry *r, const struct kl_clock *clock);
void kl_lag_registry_destroy(struct kl_lag_registry *r);

/* Records a shard's lag; a negative lag (unknown) is ignored. Out of
 * memory, it records nothing. */
void kl_lag_note(struct kl_lag_registry *r, const char *pipeline, const char *stream,
                 const char *shard_id, int64_t millis_behind);

/* Copies the shards read within KL_LAG_KEEP_MS, ordered by pipeline, stream
 * and shard, into `*out` (malloc'ed; the caller frees it). Returns how many;
 * 0 with `*out` NULL when none (or out of memory). */
size_t kl_lag_snapshot(struct kl_lag_registry *r, struct kl_shard_lag **out);

#endif
