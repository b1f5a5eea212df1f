/*
 * The state store: what every replica of the service shares — job records,
 * the shard task queue, shard leases with fencing tokens, and each job's
 * message budget. Backends: Redis (core/store/redis.h) for several
 * replicas, in-process (core/store/memory.h) for one. Not here: the data
 * itself or the truth about positions (the destination holds both, see
 * the README's "exactly once"), nor how a job is planned or run (core/load).
 *
 * Threads: a `struct kl_store` is thread-safe; workers and HTTP handlers
 * share one. A blocking kl_store_task_take does not hold up other threads.
 *
 * Errors, for every call: KL_ERR_UNAVAILABLE is retryable (Redis down,
 * connection lost, command timed out); every call may be retried with the
 * same arguments, and all of them are written so that a retry of a call
 * that did take effect does no harm (see each call). KL_ERR_INVALID: an
 * argument breaks the limits below. KL_ERR_NOT_FOUND: the job does not
 * exist (never created, expired, or lost with a flushed Redis).
 * KL_ERR_CONFLICT: the call lost a race or names something no longer held.
 *
 * Names (stream, pipeline, dataset, shard ids, owners) are 1..max bytes of
 * printable ASCII without ':', '|' or '/' (AWS and dlt names never contain
 * them), so they can be parts of keys.
 */
#ifndef KL_STORE_STORE_H
#define KL_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/kinesis/client.h"
#include "core/kinesis/start.h"

struct kl_err;
struct kl_clock;

/* Job ids are 26 characters of lower-case Crockford base32 (0-9, a-z without
 * i, l, o, u): 48 bits of creation time in ms, then 80 random bits, as a
 * ULID. They sort by creation time, so lists page by id. */
#define KL_STORE_JOB_ID_LEN 26
#define KL_STORE_JOB_ID_SIZE (KL_STORE_JOB_ID_LEN + 1)
#define KL_STORE_NAME_MAX 128        /* pipeline and dataset, with the NUL */
#define KL_STORE_TABLE_MAX 128       /* a table name in row counts, with the NUL */
#define KL_STORE_OWNER_MAX 128       /* a worker's identity, with the NUL */
#define KL_STORE_IDEMPOTENCY_MAX 256 /* an Idempotency-Key, with the NUL */
#define KL_STORE_ERROR_MAX 1024      /* a job's error detail (longer is truncated) */
#define KL_STORE_OPERATION_MAX 32    /* a Kinesis operation's name, e.g. "GetShardIterator" */
#define KL_STORE_WAIT_WHY_MAX 256    /* why a shard waits (longer is truncated) */
#define KL_STORE_TASK_META_MAX 1024  /* a task's opaque text, with the NUL */
#define KL_STORE_PARAMS_MAX 65536    /* a job's parameters JSON */
#define KL_STORE_PREFIX_MAX 64       /* the key prefix, with the NUL */
#define KL_STORE_LIST_MAX 500        /* jobs per page */
#define KL_STORE_SHARDS_MAX 100000   /* shards and tables per job in a snapshot */

/* ---- jobs ---- */

enum kl_store_job_status {
    KL_STORE_JOB_QUEUED = 0,
    KL_STORE_JOB_RUNNING,
    KL_STORE_JOB_SUCCEEDED,
    KL_STORE_JOB_FAILED,
    KL_STORE_JOB_CANCELLED,
};

/* "queued", "running", "succeeded", "failed", "cancelled". */
const char *kl_store_job_status_name(enum kl_store_job_status s);
/* Returns 0, or -1 for an unknown name. */
int kl_store_job_status_parse(const char *name, enum kl_store_job_status *out);
/* succeeded, failed and cancelled are final: no transition leaves them. */
bool kl_store_job_status_final(enum kl_store_job_status s);

/* A new job. Strings are copied. */
struct kl_store_job_new {
    const char *stream;
    const char *pipeline_name;
    const char *dataset_name;
    const char *parameters_json; /* a JSON document, stored as given; NULL: "{}" */
    const char *idempotency_key; /* NULL or "": none; else 1..255 printable ASCII */
};

/* Rows one table received (a delta in kl_store_job_progress, a total in a snapshot). */
struct kl_store_table_rows {
    char table[KL_STORE_TABLE_MAX];
    int64_t rows;
};

/* A shard's progress within a job. */
struct kl_store_shard_progress {
    struct kl_shard_position position; /* the highest committed; "" before the first commit */
    int64_t millis_behind_latest;      /* -1 until known */
    int64_t messages;
    bool done;
    bool has_gap;
    struct kl_gap gap;
    /* A Kinesis call of the shard that is being retried or passed its
     * deadline: the operation ("" when the shard waits on nothing), since
     * when and until when at most (epoch ms), and the last error. */
    char waiting_on[KL_STORE_OPERATION_MAX];
    int64_t waiting_since_ms;
    int64_t waiting_until_ms;
    char waiting_why[KL_STORE_WAIT_WHY_MAX];
    /* Where the shard's reading resumed: "" not known yet, "none" (no
     * stored position: initial_at_timestamp), "kinesis-loader" (our
     * checkpoint), "dlt" (dlt's pipeline state, of load `resumed_from_load_id`). */
    char resumed_from[KL_STORE_OPERATION_MAX];
    char resumed_from_load_id[KL_STORE_NAME_MAX];
    /* The replica whose worker last read the shard ("" unknown), the
     * ApproximateArrivalTimestamp of its newest committed record (epoch
     * ms, 0 none), and its committed messages per second, exponentially
     * weighted over about a minute (KL_STORE_RATE_WINDOW_MS) as of the
     * snapshot. */
    char owner[KL_STORE_OWNER_MAX];
    int64_t last_arrival_ms;
    double messages_per_s; /* as of rate_at_ms (kl_store_rate_at gives it later) */
    int64_t rate_at_ms;
    int64_t window; /* the load window it writes into (continuous loads); -1 unknown */
};

/* The time constant of kl_store_shard_progress.messages_per_s. */
#define KL_STORE_RATE_WINDOW_MS 60000

/* The shard's rate decayed from rate_at_ms to `now_ms`. */
double kl_store_rate_at(const struct kl_store_shard_progress *s, int64_t now_ms);
/* Adds `n` messages committed at `at_ms` to a rate of `*rate` as of
 * `*rate_at` (both updated). */
void kl_store_rate_add(double *rate, int64_t *rate_at, int64_t n, int64_t at_ms);

/* A snapshot of a job: kl_store_job_init before use, kl_store_job_free after. */
struct kl_store_job {
    char id[KL_STORE_JOB_ID_SIZE];
    char stream[KL_STREAM_NAME_MAX];
    char pipeline_name[KL_STORE_NAME_MAX];
    char dataset_name[KL_STORE_NAME_MAX];
    char *parameters; /* malloc'ed JSON text; owned by the snapshot */
    enum kl_store_job_status status;
    bool cancel_requested;
    int64_t created_ms;  /* epoch ms */
    int64_t started_ms;  /* -1 until running */
    int64_t finished_ms; /* -1 until final */
    bool has_error;
    char error_type[32]; /* kl_err_code_name of the failure, e.g. "unavailable" */
    char error_detail[KL_STORE_ERROR_MAX];
    char error_shard[KL_SHARD_ID_MAX]; /* "" when not about one shard */
    int64_t messages;
    int64_t dead_letters;
    int64_t tasks_total;
    int64_t tasks_done;
    struct kl_store_table_rows *tables; /* malloc'ed, ordered by table name */
    size_t n_tables;
    struct kl_store_shard_progress *shards; /* malloc'ed, ordered by shard id */
    size_t n_shards;
    int64_t read_ms; /* the store's clock when the snapshot was taken (epoch ms) */
};

void kl_store_job_init(struct kl_store_job *j);
void kl_store_job_free(struct kl_store_job *j);

/* Why a job failed (kl_store_job_transition to failed). */
struct kl_store_job_error {
    const char *type;     /* a kl_err_code_name; NULL: "internal" */
    const char *detail;   /* truncated to KL_STORE_ERROR_MAX - 1 bytes */
    const char *shard_id; /* NULL when not about one shard */
};

/* One committed chunk of one shard, reported by the worker that wrote it.
 * Deltas are added to the job's counters in one atomic step. */
struct kl_store_progress {
    const char *shard_id;
    /* The chunk's checkpoint; NULL for an update without a position (e.g.
     * registering a shard, or marking it done). With a position, the whole
     * update is applied only when the position is past the shard's stored
     * one (sequence numerically, then sub_sequence), so a retried or
     * re-delivered report is counted once. */
    const char *sequence;
    int64_t sub_sequence;
    int64_t millis_behind_latest;             /* < 0: unchanged */
    int64_t messages;                         /* >= 0 */
    int64_t dead_letters;                     /* >= 0 */
    const struct kl_store_table_rows *tables; /* row deltas per table; may be NULL */
    size_t n_tables;                          /* at most 1024 */
    bool done;                                /* sets the shard's done flag (never clears it) */
    /* Budget the chunk used: released from the shard's reservation (see
     * kl_store_budget_reserve) together with the counts, so the committed
     * and the reserved never both count it nor both miss it. >= 0; only
     * applied when the update is. */
    int64_t released;
    /* NULL: unchanged; else where the shard resumed (see
     * kl_store_shard_progress) and, for "dlt", the load id (may be NULL).
     * Applied whether or not the position part is. */
    const char *resumed_from;
    const char *resumed_from_load_id;
    const struct kl_gap *gap; /* NULL: none; else replaces the shard's gap */
    /* NULL: the shard's waiting state is unchanged; "": it waits on nothing
     * (cleared); else the Kinesis operation it waits on, with since, until
     * (epoch ms) and why (truncated to KL_STORE_WAIT_WHY_MAX - 1 bytes).
     * Applied whether or not the position part is. */
    const char *waiting_on;
    int64_t waiting_since_ms;
    int64_t waiting_until_ms;
    const char *waiting_why;
    /* NULL: unchanged; else the replica reading the shard now. Applied
     * whether or not the position part is. */
    const char *owner;
    /* With a position: the ApproximateArrivalTimestamp of the chunk's
     * newest record (epoch ms; 0: none), and when the chunk was committed
     * (epoch ms; 0: not counted in the shard's rate). Applied with it. */
    int64_t last_arrival_ms;
    int64_t committed_at_ms;
    /* With has_window: the load window the shard writes into from now on (a
     * continuous load's; it only rises). Applied whether or not the
     * position part is. */
    bool has_window;
    int64_t window;
};

struct kl_store_job_filter {
    const char *stream; /* NULL: any */
    bool has_status;
    enum kl_store_job_status status;
    int limit;          /* 1..KL_STORE_LIST_MAX; 0 means 50 */
    const char *cursor; /* NULL or "": from the newest; else a page's next_cursor */
};

/* A page of jobs, newest first: kl_store_job_page_free after use. */
struct kl_store_job_page {
    struct kl_store_job *jobs; /* malloc'ed */
    size_t n_jobs;
    char next_cursor[KL_STORE_JOB_ID_SIZE]; /* "" on the last page */
};

void kl_store_job_page_free(struct kl_store_job_page *p);

/* ---- tasks ---- */

/* A delivered task. `delivery` names this delivery: heartbeat, ack and nack
 * succeed only for the current delivery, so a worker whose task was taken
 * over learns it (KL_ERR_CONFLICT). */
struct kl_store_task {
    char job_id[KL_STORE_JOB_ID_SIZE];
    char shard_id[KL_SHARD_ID_MAX];
    int attempt;      /* earlier deliveries that ended without an ack (nack or expiry) */
    int64_t delivery; /* 1 for the first delivery, +1 for each one after */
    char meta[KL_STORE_TASK_META_MAX]; /* the opaque text given to enqueue */
};

struct kl_store_task_ack {
    int64_t tasks_total; /* the job's counts right after this ack */
    int64_t tasks_done;
    bool last; /* this ack finished the job's last task: finalise the job */
};

#define KL_STORE_JOB_STATUSES 5 /* the values of enum kl_store_job_status */

/* What the store holds, for metrics. */
struct kl_store_stats {
    int64_t queued;    /* tasks ready to be taken */
    int64_t in_flight; /* tasks taken, not acked */
    int64_t delayed;   /* tasks nacked with a delay, not ready yet */
    /* jobs by status, indexed by enum kl_store_job_status; finished jobs
     * count while they are kept (job_retention_ms) */
    int64_t jobs[KL_STORE_JOB_STATUSES];
};

/* ---- leases ---- */

/* Which shard: the lease and its fencing counter are per key. */
struct kl_store_shard_key {
    const char *pipeline;
    const char *stream;
    const char *shard_id;
};

/* ---- the store ---- */

struct kl_store_options {
    const char *key_prefix;       /* namespace of every key; default "kl:" (< 64 bytes) */
    const struct kl_clock *clock; /* job timestamps and ids; in-process: also leases and
                                     task deadlines. NULL: system. Redis measures TTLs
                                     and deadlines with its own clock. */
    int64_t job_retention_ms;     /* finished jobs are kept this long; default 7 days */
    int64_t idempotency_ttl_ms;   /* an Idempotency-Key maps to its job this long; 24 h */
    /* Redis only */
    int64_t connect_timeout_ms; /* default 2000 */
    int64_t command_timeout_ms; /* default 5000 */
    int pool_max;               /* connections at most; default 64 */
    int64_t poll_ms;            /* a blocking take re-checks delayed and expired tasks
                                   at least this often; default 500 */
    int64_t backoff_max_ms;     /* reconnect attempts back off up to this; default 2000 */
};

/* Fills the defaults above. */
void kl_store_options_init(struct kl_store_options *o);

struct kl_store_ops {
    const char *(*name)(void *impl);
    int (*ping)(void *impl, struct kl_err *err);

    int (*job_create)(void *impl, const struct kl_store_job_new *j,
                      char id_out[KL_STORE_JOB_ID_SIZE], bool *existing, struct kl_err *err);
    int (*job_get)(void *impl, const char *id, struct kl_store_job *out, struct kl_err *err);
    int (*job_list)(void *impl, const struct kl_store_job_filter *f, struct kl_store_job_page *out,
                    struct kl_err *err);
    int (*job_status)(void *impl, const char *id, enum kl_store_job_status *status,
                      bool *cancel_requested, struct kl_err *err);
    int (*job_active)(void *impl, const char *pipeline, const char *stream,
                      char id_out[KL_STORE_JOB_ID_SIZE], bool *found, struct kl_err *err);
    int (*job_transition)(void *impl, const char *id, enum kl_store_job_status to,
                          const struct kl_store_job_error *e, enum kl_store_job_status *now,
                          struct kl_err *err);
    int (*job_cancel)(void *impl, const char *id, enum kl_store_job_status *now,
                      struct kl_err *err);
    int (*job_progress)(void *impl, const char *id, const struct kl_store_progress *p,
                        bool *applied, struct kl_err *err);
    int (*budget_reserve)(void *impl, const char *job_id, const char *shard_id,
                          int64_t max_messages, int64_t want, int64_t *granted, struct kl_err *err);
    int (*budget_release)(void *impl, const char *job_id, const char *shard_id, int64_t n,
                          struct kl_err *err);

    int (*task_enqueue)(void *impl, const char *job_id, const char *shard_id, const char *meta,
                        int64_t delay_ms, bool *created, struct kl_err *err);
    int (*task_take)(void *impl, const char *owner, int64_t lease_ms, int64_t timeout_ms,
                     struct kl_store_task *out, bool *got, struct kl_err *err);
    int (*task_heartbeat)(void *impl, const struct kl_store_task *t, int64_t lease_ms,
                          struct kl_err *err);
    int (*task_ack)(void *impl, const struct kl_store_task *t, struct kl_store_task_ack *out,
                    struct kl_err *err);
    int (*task_nack)(void *impl, const struct kl_store_task *t, int64_t delay_ms,
                     struct kl_err *err);
    int (*task_release)(void *impl, const struct kl_store_task *t, int64_t delay_ms,
                        struct kl_err *err);
    int (*stats)(void *impl, struct kl_store_stats *out, struct kl_err *err);

    int (*lease_take)(void *impl, const struct kl_store_shard_key *k, const char *owner,
                      int64_t ttl_ms, int64_t min_token, int64_t *token, struct kl_err *err);
    int (*lease_renew)(void *impl, const struct kl_store_shard_key *k, const char *owner,
                       int64_t token, int64_t ttl_ms, struct kl_err *err);
    int (*lease_release)(void *impl, const struct kl_store_shard_key *k, const char *owner,
                         int64_t token, struct kl_err *err);
    void (*destroy)(void *impl);
};

/* The public functions below check their arguments, then call the backend,
 * whose ops see only valid input. */
struct kl_store {
    const struct kl_store_ops *ops;
    void *impl;
};

/* Closes connections and frees the store; NULL is a no-op. */
void kl_store_destroy(struct kl_store *s);

/* "redis" or "memory". */
const char *kl_store_name(struct kl_store *s);

/* Checks that the store answers (for /readyz). */
int kl_store_ping(struct kl_store *s, struct kl_err *err);

/* ---- jobs ---- */

/* Creates a queued job, atomically only if no job of the same stream and
 * pipeline is queued or running. `*existing` tells whether the id is of an
 * earlier job created with the same Idempotency-Key (kept for
 * idempotency_ttl_ms; that job is returned whatever its state, and no new
 * job is made). KL_ERR_CONFLICT: another job is active; `id_out` is then
 * that job's id (the one out-parameter written on failure). KL_ERR_INVALID:
 * bad names, parameters not JSON, or larger than KL_STORE_PARAMS_MAX.
 * A retry after KL_ERR_UNAVAILABLE may meet the job this call did create as
 * the active job: pass an Idempotency-Key to make creation retry-safe. */
int kl_store_job_create(struct kl_store *s, const struct kl_store_job_new *j,
                        char id_out[KL_STORE_JOB_ID_SIZE], bool *existing, struct kl_err *err);

/* Reads a job. `out` must be initialised; it is replaced (freed first) on success. */
int kl_store_job_get(struct kl_store *s, const char *id, struct kl_store_job *out,
                     struct kl_err *err);

/* Lists jobs newest first. A page may hold fewer than `limit` jobs while
 * next_cursor is set (a filtered scan stops after a bounded amount of work);
 * follow next_cursor until it is "". KL_ERR_INVALID for a malformed cursor. */
int kl_store_job_list(struct kl_store *s, const struct kl_store_job_filter *f,
                      struct kl_store_job_page *out, struct kl_err *err);

/* The cheap poll a worker does between chunks. */
int kl_store_job_status(struct kl_store *s, const char *id, enum kl_store_job_status *status,
                        bool *cancel_requested, struct kl_err *err);

/* The queued or running job of a stream and pipeline, if any. */
int kl_store_job_active(struct kl_store *s, const char *pipeline, const char *stream,
                        char id_out[KL_STORE_JOB_ID_SIZE], bool *found, struct kl_err *err);

/* Moves a job to `to`: queued -> running | failed | cancelled; running ->
 * succeeded | failed | cancelled. A move to the status the job already has
 * is a no-op and succeeds (many workers start the same job; a retry). Any
 * other move is KL_ERR_CONFLICT and `*now` (may be NULL) is the job's status;
 * on success `*now` is `to`. Entering running records started_ms; a final
 * status records finished_ms, frees the stream and pipeline for a new job,
 * and starts the retention clock. `e` (may be NULL) is recorded with failed. */
int kl_store_job_transition(struct kl_store *s, const char *id, enum kl_store_job_status to,
                            const struct kl_store_job_error *e, enum kl_store_job_status *now,
                            struct kl_err *err);

/* Cancels a job: a queued job becomes cancelled at once; a running one gets
 * cancel_requested (workers stop at their next chunk and then move it to
 * cancelled); a cancelled one is left alone. KL_ERR_CONFLICT for a job that
 * succeeded or failed. `*now` (may be NULL) is the status afterwards. */
int kl_store_job_cancel(struct kl_store *s, const char *id, enum kl_store_job_status *now,
                        struct kl_err *err);

/* Adds a committed chunk's counts and position to the job, atomically.
 * `*applied` (may be NULL) is false when the position was not past the
 * stored one, so nothing was counted (a duplicate). */
int kl_store_job_progress(struct kl_store *s, const char *id, const struct kl_store_progress *p,
                          bool *applied, struct kl_err *err);

/* ---- the message budget ----
 * A job's max_number_of_messages, shared by every worker of every replica:
 * a worker reserves budget for a page before it asks Kinesis for it, and
 * gives back what the page did not use; what it committed leaves the
 * reservation with the commit's progress (kl_store_progress.released).
 * Reservations are per shard of the job, so a delivery of a shard task
 * first releases what an earlier delivery of it left (a worker that died). */

/* Grants `*granted` = min(want, max_messages - committed - reserved),
 * at least 0, atomically, and adds it to the shard's reservation. 0 means
 * the budget is spent (or the job is final). KL_ERR_NOT_FOUND: no such job.
 * A retry after KL_ERR_UNAVAILABLE may reserve twice: the surplus is given
 * back by the shard's next release. */
int kl_store_budget_reserve(struct kl_store *s, const char *job_id, const char *shard_id,
                            int64_t max_messages, int64_t want, int64_t *granted,
                            struct kl_err *err);

/* Gives `n` of the shard's reservation back (never below 0); n < 0: all of
 * it. KL_ERR_NOT_FOUND: no such job. */
int kl_store_budget_release(struct kl_store *s, const char *job_id, const char *shard_id, int64_t n,
                            struct kl_err *err);

/* ---- the task queue ----
 * One queue for all jobs, first in first out. A task is one shard of one
 * job: enqueueing a shard the job already has is a no-op (`*created`
 * false), so retries and the two parents of a merged shard enqueue it once.
 * A task is never lost: a taken task is in flight until acked or nacked; if
 * its worker stops heartbeating, the next take by any replica puts it
 * back in front of the queue after its lease.
 * So a task may be delivered twice; the shard lease and the destination's
 * fenced checkpoint keep the data exactly once. */

/* Queues a task of a queued or running job and counts it in tasks_total.
 * `meta` (may be NULL) is opaque text handed back with the task. With
 * delay_ms > 0 the task becomes ready later. KL_ERR_NOT_FOUND: no such
 * job; KL_ERR_CONFLICT: the job is final. */
int kl_store_task_enqueue(struct kl_store *s, const char *job_id, const char *shard_id,
                          const char *meta, int64_t delay_ms, bool *created, struct kl_err *err);

/* Takes the oldest ready task, waiting up to timeout_ms (0: do not wait).
 * The task is in flight for lease_ms; extend it with heartbeats. `*got` is
 * false when nothing came in time. `owner` names the worker (for operators). */
int kl_store_task_take(struct kl_store *s, const char *owner, int64_t lease_ms, int64_t timeout_ms,
                       struct kl_store_task *out, bool *got, struct kl_err *err);

/* Extends the in-flight lease of this delivery to lease_ms from now.
 * KL_ERR_CONFLICT: the task was taken over (or acked): stop working on it. */
int kl_store_task_heartbeat(struct kl_store *s, const struct kl_store_task *t, int64_t lease_ms,
                            struct kl_err *err);

/* Finishes the task and counts it in the job's tasks_done. Queue the
 * children of a shard BEFORE acking the parent, so the job cannot look
 * finished in between. Exactly one ack of a job sees `last`. Repeating the
 * ack of the same delivery returns the first answer. KL_ERR_CONFLICT: this
 * delivery is no longer the task's (it was taken over): do not finalise. */
int kl_store_task_ack(struct kl_store *s, const struct kl_store_task *t,
                      struct kl_store_task_ack *out, struct kl_err *err);

/* Gives the task back with attempt + 1: ready again at once, or after
 * delay_ms. KL_ERR_CONFLICT as for ack. */
int kl_store_task_nack(struct kl_store *s, const struct kl_store_task *t, int64_t delay_ms,
                       struct kl_err *err);

/* Gives the task back without counting an attempt, for a task that did not
 * fail: its replica is stopping, it yields its worker to other work, or its
 * shard is still leased to a worker that vanished. Queued behind what waits
 * now (or after delay_ms). KL_ERR_CONFLICT as for ack. */
int kl_store_task_release(struct kl_store *s, const struct kl_store_task *t, int64_t delay_ms,
                          struct kl_err *err);

int kl_store_stats(struct kl_store *s, struct kl_store_stats *out, struct kl_err *err);

/* ---- shard leases ----
 * One owner per shard at a time. The fencing token rises with every new
 * owner; it is written with each checkpoint so a stalled former owner's
 * write is refused by the destination. */

/* Takes the lease for ttl_ms and returns its token. The token is above
 * `min_token` (pass the highest token the destination's checkpoint holds, so
 * tokens keep rising even after Redis lost its counters; 0 when none). The
 * same owner taking its own live lease again extends it and keeps the token.
 * KL_ERR_CONFLICT: another owner holds a live lease. */
int kl_store_lease_take(struct kl_store *s, const struct kl_store_shard_key *k, const char *owner,
                        int64_t ttl_ms, int64_t min_token, int64_t *token, struct kl_err *err);

/* Extends the lease to ttl_ms from now, only if (owner, token) still holds
 * it — or it lapsed and nobody took it since (the token is still the
 * newest, so re-establishing it is safe). KL_ERR_CONFLICT otherwise: the
 * lease is lost; stop writing. */
int kl_store_lease_renew(struct kl_store *s, const struct kl_store_shard_key *k, const char *owner,
                         int64_t token, int64_t ttl_ms, struct kl_err *err);

/* Gives the lease up. KL_OK when it is released or was not held by anyone;
 * KL_ERR_CONFLICT when another owner or token holds it (left untouched). */
int kl_store_lease_release(struct kl_store *s, const struct kl_store_shard_key *k,
                           const char *owner, int64_t token, struct kl_err *err);

#endif
