/*
 * Reading a whole stream: every shard in parallel (up to a concurrency),
 * children only after their parents are drained, the message budget handed
 * out fairly chunk by chunk, and at most `concurrency` unconsumed chunks in
 * memory. A pull API: take a chunk, store it, commit it; positions advance
 * only on commit. Used by `kinesis-loader read`; load jobs drive cursors
 * themselves through the task queue.
 */
#ifndef KL_KINESIS_READER_H
#define KL_KINESIS_READER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/kinesis/cursor.h"
#include "core/kinesis/start.h"

struct kl_err;
struct kl_clock;

struct kl_reader_options {
    struct kl_kinesis *client; /* borrowed */
    const char *stream;
    struct kl_initial_position initial; /* first run: where shards without a position start */
    int64_t last_run_ms;                /* previous run time minus 1 s, -1 for none */
    const struct kl_shard_position *positions; /* stored state; copied */
    size_t n_positions;
    const char *only_shard; /* read just this shard; NULL: all */
    int chunk_size;         /* GetRecords Limit, 1..10000 */
    int64_t max_messages;   /* budget for the whole read; < 0: none */
    int64_t millis_behind_latest;
    int64_t stop_at_arrival_ms; /* the read's start, epoch ms: see kl_cursor_options */
    int concurrency;            /* shard reads in flight; 1..64 */
    int64_t min_call_interval_ms;
    int64_t max_bytes_per_s;
    bool no_deaggregate;
    const struct kl_clock *clock; /* NULL: system */
    const atomic_bool *cancel;    /* optional: stops the read at the next chunk */
};

struct kl_reader_shard_info {
    char shard_id[KL_SHARD_ID_MAX];
    struct kl_shard_position position; /* committed (or stored) position; sequence "" if none */
    uint64_t messages;                 /* committed in this read */
    int64_t millis_behind;             /* last page's MillisBehindLatest, -1 unknown */
    bool done;
    bool drained; /* closed and read to its end */
    bool has_gap;
    struct kl_gap gap;
};

struct kl_reader;

/* Lists the shards and starts the fetch threads. */
struct kl_reader *kl_reader_create(const struct kl_reader_options *o, struct kl_err *err);
/* Stops the threads and frees everything; NULL is a no-op. Chunks taken and
 * not committed are freed too. */
void kl_reader_destroy(struct kl_reader *r);

/* Waits for the next chunk, round-robin over shards. `*out` stays owned by
 * the reader and is valid until kl_reader_commit. When everything is read
 * (or the budget is spent, or cancelled) returns KL_OK with *out == NULL.
 * A chunk may have zero messages (a shard that ended on an empty page). */
int kl_reader_next(struct kl_reader *r, struct kl_chunk **out, struct kl_err *err);

/* The caller has stored the chunk's messages: its shard's position moves to
 * the chunk's end, and the shard may be fetched again. */
void kl_reader_commit(struct kl_reader *r, struct kl_chunk *chunk);

/* A snapshot of every shard's state, committed positions included (shards
 * with a stored position that were not read keep it). `*out` is malloc'ed. */
int kl_reader_shards(struct kl_reader *r, struct kl_reader_shard_info **out, size_t *n,
                     struct kl_err *err);

/* Messages committed so far. */
uint64_t kl_reader_messages(struct kl_reader *r);

#endif
