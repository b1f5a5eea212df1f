/*
 * Reading one shard, chunk by chunk: opens the iterator (checking that a
 * stored position still exists, else reporting a gap), re-acquires expired
 * iterators, paces calls to the shard's limits, de-aggregates KPL records,
 * and knows when the shard is done (caught up, or closed and drained).
 * Which shards to read, in which order and under which budget is the
 * reader's business (reader.h); committing positions is the caller's.
 */
#ifndef KL_KINESIS_CURSOR_H
#define KL_KINESIS_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/kinesis/client.h"
#include "core/kinesis/position.h"
#include "core/kinesis/message.h"
#include "core/kinesis/start.h"
#include "core/util/arena.h"

struct kl_clock;
struct kl_err;
struct kl_membudget;

struct kl_cursor_options {
    struct kl_kinesis *client; /* borrowed */
    const char *stream;        /* copied */
    const char *shard_id;      /* copied */
    /* Where to start when there is no stored position (see kl_choose_start). */
    struct kl_iterator_start start;
    /* The stored position, or NULL. When set, reading resumes right after it:
     * the stored record must still be in the shard, else a gap is reported
     * and reading continues from the oldest record still there. */
    const struct kl_shard_position *resume;
    const char *job_id; /* for log lines; may be NULL */
    /* When an open shard is done (the stop rule): at the first page that is
     * not full (fewer records than the limit asked for) and reports less
     * than `millis_behind_latest` (dlt's milliseconds_behind_latest), or
     * that is empty at the tip (MillisBehindLatest 0). A full page never
     * ends a shard. */
    int64_t millis_behind_latest;
    /* And in any case once the shard has delivered a record that arrived
     * (ApproximateArrivalTimestamp) at or after this epoch ms, the job's
     * start, so that a read ends while producers write faster than it reads.
     * <= 0: no such bound. */
    int64_t stop_at_arrival_ms;
    /* How long an AT_TIMESTAMP GetShardIterator may take on an endpoint that
     * is not AWS's before the cursor reads from TRIM_HORIZON instead and
     * skips the records that arrived before the timestamp (the emulators do
     * not answer AT_TIMESTAMP when no record is at or after it). 0: 5000. */
    int64_t at_timestamp_wait_ms;
    /* Told when a Kinesis call of this cursor is being retried (see
     * kl_kinesis_call.waiting); may be NULL. */
    void (*waiting)(void *ctx, const char *operation, int64_t since_ms, int64_t deadline_ms,
                    const struct kl_err *why);
    void *waiting_ctx;
    /* Pacing per shard: at least this long between GetRecords calls (Kinesis
     * allows 5 per second: 200), and no more than this many bytes per second
     * on average (Kinesis: 2 MiB). 0 disables either. */
    int64_t min_call_interval_ms;
    int64_t max_bytes_per_s;
    bool no_deaggregate; /* deliver KPL aggregated records as they are */
    /* The budget pages are held under (KL_MEMORY_MAX): before each
     * GetRecords the cursor reserves twice what the shard's last page held
     * and waits while that does not fit; the page grows past that only
     * while the budget has room, else it is read again with room for the
     * worst case (kl_cursor_page_reservation). Once the page is in, what it
     * really holds stays charged until its chunk is emptied or freed.
     * NULL: no budget. */
    struct kl_membudget *memory;
    /* A worker's normalised rows pass this by one message's rows at most,
     * about the message's size: the largest message's size is charged with
     * its page. 0: nothing more. */
    size_t rows_allowance;
    /* Ignore the stop rule and read until the shard ends: for shards known to
     * be closed, whose children must not start before they are drained, and
     * for continuous loads, which follow an open shard's tip. */
    bool read_to_end;
    /* After a page at the tip (short, MillisBehindLatest 0 or unknown), the
     * next GetRecords waits at least this long (a continuous load's
     * poll_interval_ms). 0: only the pacing above. */
    int64_t poll_interval_ms;
    const struct kl_clock *clock; /* NULL: the system clock */
};

/* One page of messages from one shard. */
struct kl_chunk {
    /* Field order: the character arrays and flags last, so little padding. */
    struct kl_message *messages;
    size_t n_messages;
    size_t n_records;  /* Kinesis records in the page (before de-aggregation) */
    size_t data_bytes; /* record Data bytes in the page */
    int64_t millis_behind;
    int64_t end_sub_sequence;        /* with end_sequence, below */
    struct kl_child_shard *children; /* ChildShards of a closed shard (if reported) */
    size_t n_children;
    /* storage */
    struct kl_record_batch batch;
    struct kl_arena arena;
    size_t cap_messages;
    struct kl_membudget *memory; /* what `charged` is charged to */
    size_t charged;              /* bytes of it the chunk holds */
    char shard_id[KL_SHARD_ID_MAX];
    /* The position after this chunk: its last message (unchanged from the
     * previous chunk when the page was empty; "" when nothing was read yet). */
    char end_sequence[KL_SEQ_MAX];
    bool shard_done;   /* no more pages will come from this shard in this read */
    bool shard_closed; /* the shard is closed and fully read */
};

void kl_chunk_init(struct kl_chunk *c);
/* Frees the chunk's storage; messages are no longer valid after the call. */
void kl_chunk_free(struct kl_chunk *c);
/* Empties the chunk, keeping its arrays for the next page but giving back
 * what its page held of the memory budget: call it once the chunk is
 * loaded, before waiting for another page. */
void kl_chunk_empty(struct kl_chunk *c);

/* The most memory a page of `limit` records takes in a chunk: 10 MiB of
 * data (GetRecords' most), each record's strings and bookkeeping, and the
 * rows of a message past `rows_allowance` (see kl_cursor_options; 0: none). */
size_t kl_cursor_page_reservation(int limit, size_t rows_allowance);

struct kl_cursor;

struct kl_cursor *kl_cursor_create(const struct kl_cursor_options *o, struct kl_err *err);
/* NULL is a no-op. Chunks already fetched stay valid. */
void kl_cursor_destroy(struct kl_cursor *c);

/* Fetches the next page of at most `limit` (1..10000) records into `out`
 * (previous contents are freed). Returns KL_OK with possibly zero messages;
 * check out->shard_done. Retryable errors were already retried by the client;
 * an error here leaves the cursor where it was, so fetching again is safe. */
int kl_cursor_fetch(struct kl_cursor *c, int limit, struct kl_chunk *out, struct kl_err *err);

bool kl_cursor_done(const struct kl_cursor *c);
const char *kl_cursor_shard_id(const struct kl_cursor *c);
/* The gap found when resuming, or NULL. */
const struct kl_gap *kl_cursor_gap(const struct kl_cursor *c);
/* Iterators re-acquired after ExpiredIteratorException. */
uint64_t kl_cursor_expired_count(const struct kl_cursor *c);
/* True when AT_TIMESTAMP was replaced by TRIM_HORIZON with the records
 * before the timestamp skipped (see at_timestamp_wait_ms). */
bool kl_cursor_timestamp_fallback(const struct kl_cursor *c);

#endif
