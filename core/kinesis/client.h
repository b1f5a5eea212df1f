/*
 * Kinesis Data Streams API client (JSON 1.1 protocol, SigV4). One call per
 * function; throttling, 5xx and network errors are retried with bounded
 * exponential backoff and full jitter; every other AWS error surfaces with
 * its __type and message. Thread-safe: one client serves every worker.
 * Not here: which shard to read next or where to start (see reader).
 */
#ifndef KL_KINESIS_CLIENT_H
#define KL_KINESIS_CLIENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/kinesis/position.h"

struct kl_err;
struct kl_http;
struct kl_clock;
struct kl_cred_provider;
struct kl_membudget;

#define KL_HASH_KEY_MAX 40                       /* 0 .. 2^128-1 in decimal */
#define KL_STREAM_NAME_MAX 129                   /* AWS: 1..128 of [a-zA-Z0-9_.-] */
#define KL_KINESIS_MAX_RECORD ((size_t)10 << 20) /* 10 MiB, Kinesis' record limit */
/* GetRecords returns at most 10 MiB of data (or one record, when larger). */
#define KL_KINESIS_MAX_PAGE_DATA ((size_t)10 << 20)

struct kl_kinesis_config {
    const char *endpoint;           /* e.g. https://kinesis.eu-west-1.amazonaws.com; copied */
    const char *region;             /* copied */
    struct kl_http *http;           /* borrowed; must outlive the client */
    struct kl_cred_provider *creds; /* borrowed; must outlive the client */
    const struct kl_clock *clock;   /* NULL: the system clock */
    int max_attempts;               /* per call, first try included; default 8 */
    int64_t backoff_base_ms;        /* default 100 */
    int64_t backoff_cap_ms;         /* default 5000 */
    long connect_timeout_ms;        /* default 3000 */
    long timeout_ms;                /* one HTTP attempt; default 30000 */
    /* One call, every retry and backoff included: past it the call fails
     * with KL_ERR_UNAVAILABLE naming the operation. Default 60000. */
    int64_t call_deadline_ms;
    /* When set and true, retry loops give up early with KL_ERR_CANCELLED. */
    const atomic_bool *cancel;
};

/* Counters since the client was created; read with kl_kinesis_stats. */
struct kl_kinesis_stats {
    uint64_t requests;  /* HTTP requests sent, retries included */
    uint64_t retries;   /* attempts after the first */
    uint64_t throttles; /* throttling answers (ProvisionedThroughputExceeded, LimitExceeded, ...) */
    uint64_t failures;  /* calls that returned an error to the caller */
};

struct kl_kinesis;

struct kl_kinesis *kl_kinesis_create(const struct kl_kinesis_config *cfg, struct kl_err *err);
/* NULL is a no-op. */
void kl_kinesis_destroy(struct kl_kinesis *k);
void kl_kinesis_stats(const struct kl_kinesis *k, struct kl_kinesis_stats *out);
/* The flag that cancels the client's retries (kl_kinesis_config.cancel), or NULL. */
const atomic_bool *kl_kinesis_cancel_flag(const struct kl_kinesis *k);

/* ---- streams ---- */

struct kl_string_list {
    char **items; /* each malloc'ed */
    size_t n;
};
void kl_string_list_free(struct kl_string_list *l);

/* All stream names of the account and region, following pagination. */
int kl_kinesis_list_streams(struct kl_kinesis *k, struct kl_string_list *out, struct kl_err *err);

struct kl_stream_summary {
    char name[KL_STREAM_NAME_MAX];
    char arn[256];
    char status[16]; /* CREATING, DELETING, ACTIVE, UPDATING */
    int retention_hours;
    int open_shard_count;
    int64_t created_ms;
    char mode[16]; /* PROVISIONED or ON_DEMAND; "" when not reported */
};

int kl_kinesis_describe_stream_summary(struct kl_kinesis *k, const char *stream,
                                       struct kl_stream_summary *out, struct kl_err *err);

/* Test and demo helpers; production reads never create or delete streams. */
int kl_kinesis_create_stream(struct kl_kinesis *k, const char *stream, int shard_count,
                             struct kl_err *err);
int kl_kinesis_delete_stream(struct kl_kinesis *k, const char *stream, struct kl_err *err);

/* ---- shards ---- */

struct kl_shard {
    char id[KL_SHARD_ID_MAX];
    char parent_id[KL_SHARD_ID_MAX];          /* "" when none */
    char adjacent_parent_id[KL_SHARD_ID_MAX]; /* "" when none */
    char starting_hash_key[KL_HASH_KEY_MAX];
    char ending_hash_key[KL_HASH_KEY_MAX];
    char starting_seq[KL_SEQ_MAX];
    char ending_seq[KL_SEQ_MAX]; /* "" while the shard is open */
};

struct kl_shard_list {
    struct kl_shard *shards; /* malloc'ed array */
    size_t n;
};
void kl_shard_list_free(struct kl_shard_list *l);

/* Every shard of the stream (open and closed, within retention), following
 * NextToken pagination. A NextToken-only request is sent only when the
 * previous page returned a token. */
int kl_kinesis_list_shards(struct kl_kinesis *k, const char *stream, struct kl_shard_list *out,
                           struct kl_err *err);

/* ---- reading ---- */

enum kl_iterator_type {
    KL_ITER_TRIM_HORIZON,
    KL_ITER_LATEST,
    KL_ITER_AT_SEQUENCE_NUMBER,
    KL_ITER_AFTER_SEQUENCE_NUMBER,
    KL_ITER_AT_TIMESTAMP,
};

const char *kl_iterator_type_name(enum kl_iterator_type t);

struct kl_iterator_start {
    enum kl_iterator_type type;
    const char *sequence; /* for AT_/AFTER_SEQUENCE_NUMBER */
    int64_t timestamp_ms; /* for AT_TIMESTAMP, epoch ms */
};

/* How one reading call may run, and who hears that it is slow. Every field
 * is optional; NULL for the whole struct means the client's defaults. */
struct kl_kinesis_call {
    /* The call's deadline, retries included; 0: the client's call_deadline_ms. */
    int64_t deadline_ms;
    /* Told once per failed attempt after which the call goes on (a retry is
     * due), and once more when the deadline ends the call, with the
     * operation, when the call began (epoch ms), when it gives up (epoch ms)
     * and the last error. Runs on the calling thread. */
    void (*waiting)(void *ctx, const char *operation, int64_t since_ms, int64_t deadline_ms,
                    const struct kl_err *why);
    void *ctx;
    /* Out: the call ended because its deadline passed. */
    bool timed_out;
    /* GetRecords: the budget a page's memory is charged to (NULL: none),
     * and what is charged to it for the page: what the caller reserved
     * before the call, grown by what the page took beyond that. With
     * `bounded`, the page may grow past the reservation only while that
     * fits under the budget's limit; one that does not ends the call with
     * KL_ERR_LIMIT and `outgrown` set (nothing of it is handed out). */
    struct kl_membudget *memory;
    size_t charged;
    bool bounded;
    bool outgrown;
};

/* True when the endpoint is an AWS one (*.amazonaws.com, *.amazonaws.com.cn,
 * *.api.aws), false for emulators and proxies. */
bool kl_kinesis_is_aws(const struct kl_kinesis *k);

/* Kinesis' read limits per shard: 5 GetRecords calls a second, 2 MiB a
 * second. */
#define KL_KINESIS_MIN_CALL_INTERVAL_MS 200
#define KL_KINESIS_MAX_BYTES_PER_S ((int64_t)2 << 20)

/* The pacing of each shard's reads for `mode`: "on" keeps Kinesis' limits,
 * "off" reads as fast as answered (0, 0), "auto" is "on" for AWS endpoints
 * and "off" for others (emulators). KL_ERR_INVALID for another mode. */
int kl_kinesis_pacing(const struct kl_kinesis *k, const char *mode, int64_t *min_call_interval_ms,
                      int64_t *max_bytes_per_s, struct kl_err *err);

/* On success `*iterator_out` is malloc'ed; the caller frees it. `call` may
 * be NULL. */
int kl_kinesis_get_shard_iterator(struct kl_kinesis *k, struct kl_kinesis_call *call,
                                  const char *stream, const char *shard_id,
                                  const struct kl_iterator_start *start, char **iterator_out,
                                  struct kl_err *err);

struct kl_record {
    const char *sequence;      /* points into the batch */
    const char *partition_key; /* points into the batch */
    const unsigned char *data; /* decoded bytes, NUL-terminated for convenience */
    size_t data_len;
    int64_t arrival_ms; /* ApproximateArrivalTimestamp, epoch ms */
};

struct kl_child_shard {
    char id[KL_SHARD_ID_MAX];
    char parents[2][KL_SHARD_ID_MAX];
    size_t n_parents;
};

struct kl_record_batch {
    struct kl_record *records;
    size_t n;
    size_t data_bytes;               /* sum of data_len */
    char *next_iterator;             /* NULL once a closed shard is drained */
    int64_t millis_behind;           /* MillisBehindLatest, -1 when not reported */
    struct kl_child_shard *children; /* malloc'ed */
    size_t n_children;
    void *storage; /* the records array */
    char *bytes;   /* the records' strings and data, one block */
    size_t held;   /* bytes the page's storage takes */
};

void kl_record_batch_init(struct kl_record_batch *b);
void kl_record_batch_free(struct kl_record_batch *b);

/* One GetRecords call. `limit` 1..10000. ExpiredIteratorException comes back
 * as KL_ERR_EXPIRED (not retried: the caller re-acquires an iterator).
 * `call` may be NULL. */
int kl_kinesis_get_records(struct kl_kinesis *k, struct kl_kinesis_call *call, const char *iterator,
                           int limit, struct kl_record_batch *out, struct kl_err *err);

/* ---- writing (tests, benchmarks, demo data) ---- */

struct kl_put_entry {
    const void *data;
    size_t data_len;
    const char *partition_key;
    const char *explicit_hash_key; /* NULL: derived from the partition key */
};

struct kl_put_result_entry {
    char sequence[KL_SEQ_MAX]; /* "" when the entry failed */
    char shard_id[KL_SHARD_ID_MAX];
    char error_code[64]; /* "" when the entry succeeded */
};

/* PutRecords for up to 500 entries. Entries that fail with a retryable code
 * are sent again (bounded); `results` (n entries, may be NULL) receives each
 * entry's outcome. Returns KL_OK only when every entry was stored. */
int kl_kinesis_put_records(struct kl_kinesis *k, const char *stream,
                           const struct kl_put_entry *entries, size_t n,
                           struct kl_put_result_entry *results, struct kl_err *err);

/* ---- helpers ---- */

/* True when `name` is a valid stream name (1..128 of [a-zA-Z0-9_.-]). */
bool kl_stream_name_valid(const char *name);

#endif
