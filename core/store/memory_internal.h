/*
 * What the files of the in-process store share, and nothing else includes:
 * its state (one mutex guards it all), the helpers of memory.c, and the
 * operations of memory_jobs.c and memory_tasks.c that memory.c's ops table
 * names.
 */
#ifndef KL_STORE_MEMORY_INTERNAL_H
#define KL_STORE_MEMORY_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/kinesis/position.h"
#include "core/store/store.h"

struct kl_err;
struct kl_clock;

#define KEY_MAX (KL_STORE_NAME_MAX + KL_STREAM_NAME_MAX + KL_SHARD_ID_MAX + 2)
#define WAIT_SLICE_MS 50 /* a blocked take re-checks deadlines of the injected clock this often */

enum task_state { TASK_QUEUED, TASK_IN_FLIGHT, TASK_DELAYED, TASK_ACKED };

struct mtask {
    char shard_id[KL_SHARD_ID_MAX];
    char meta[KL_STORE_TASK_META_MAX];
    char owner[KL_STORE_OWNER_MAX];
    enum task_state state;
    int attempt;
    int64_t delivery;
    int64_t order;  /* queue position while queued: smaller is taken first */
    int64_t due_ms; /* in flight: lease deadline; delayed: ready time (monotonic) */
    int64_t ack_done, ack_total;
};

/* A shard's part of its job's message budget, reserved and not yet committed. */
struct mreserve {
    char shard_id[KL_SHARD_ID_MAX];
    int64_t n;
};

struct mjob {
    struct kl_store_job s; /* the record itself, in snapshot form */
    size_t cap_tables, cap_shards;
    struct mtask *tasks;
    size_t n_tasks, cap_tasks;
    struct mreserve *reserved; /* shards with budget reserved */
    size_t n_reserved, cap_reserved;
    int64_t reserved_total;
};

struct midem {
    char key[KL_STORE_IDEMPOTENCY_MAX];
    char id[KL_STORE_JOB_ID_SIZE];
    int64_t expires_ms; /* wall */
};

struct mlease {
    char key[KEY_MAX];
    char owner[KL_STORE_OWNER_MAX]; /* "" when nobody holds it */
    int64_t token;                  /* of the holder */
    int64_t expires_ms;             /* monotonic */
    int64_t fence;                  /* the highest token handed out */
};

struct memory {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    const struct kl_clock *clock;
    int64_t retention_ms;
    int64_t idem_ttl_ms;
    int64_t next_order;  /* for enqueue and nack: the back of the queue */
    int64_t front_order; /* for expired tasks: the front */

    struct mjob **jobs;
    size_t n_jobs, cap_jobs;
    struct midem *idem;
    size_t n_idem, cap_idem;
    struct mlease *leases;
    size_t n_leases, cap_leases;
};

/* ---- memory.c: helpers, leases ---- */

void kl_ms_free_job(struct mjob *j);
struct mjob *kl_ms_find_job(struct memory *m, const char *id);
int kl_ms_copy_job(const struct kl_store_job *src, struct kl_store_job *dst, struct kl_err *err);
void kl_ms_unlock(struct memory *m);
void kl_ms_purge(struct memory *m);
int64_t kl_ms_mono(struct memory *m);
int kl_ms_grow(void **arr, size_t *cap, size_t n, size_t elem, struct kl_err *err);
int kl_ms_lock(struct memory *m, struct kl_err *err);
int64_t kl_ms_wall(struct memory *m);

/* ---- memory_jobs.c: jobs and the budget ---- */

int kl_ms_budget_release(void *impl, const char *job_id, const char *shard_id, int64_t n,
                         struct kl_err *err);
int kl_ms_budget_reserve(void *impl, const char *job_id, const char *shard_id, int64_t max_messages,
                         int64_t want, int64_t *granted, struct kl_err *err);
int kl_ms_job_transition(void *impl, const char *id, enum kl_store_job_status to,
                         const struct kl_store_job_error *e, enum kl_store_job_status *now,
                         struct kl_err *err);
int kl_ms_job_progress(void *impl, const char *id, const struct kl_store_progress *p, bool *applied,
                       struct kl_err *err);
int kl_ms_job_cancel(void *impl, const char *id, enum kl_store_job_status *now, struct kl_err *err);
int kl_ms_job_status(void *impl, const char *id, enum kl_store_job_status *status,
                     bool *cancel_requested, struct kl_err *err);
int kl_ms_job_create(void *impl, const struct kl_store_job_new *n,
                     char id_out[KL_STORE_JOB_ID_SIZE], bool *existing, struct kl_err *err);
int kl_ms_job_active(void *impl, const char *pipeline, const char *stream,
                     char id_out[KL_STORE_JOB_ID_SIZE], bool *found, struct kl_err *err);
int kl_ms_job_list(void *impl, const struct kl_store_job_filter *f, struct kl_store_job_page *out,
                   struct kl_err *err);
int kl_ms_job_get(void *impl, const char *id, struct kl_store_job *out, struct kl_err *err);

/* ---- memory_tasks.c: the task queue ---- */

int kl_ms_task_heartbeat(void *impl, const struct kl_store_task *t, int64_t lease_ms,
                         struct kl_err *err);
int kl_ms_task_release(void *impl, const struct kl_store_task *t, int64_t delay_ms,
                       struct kl_err *err);
int kl_ms_task_enqueue(void *impl, const char *job_id, const char *shard_id, const char *meta,
                       int64_t delay_ms, bool *created, struct kl_err *err);
int kl_ms_task_take(void *impl, const char *owner, int64_t lease_ms, int64_t timeout_ms,
                    struct kl_store_task *out, bool *got, struct kl_err *err);
int kl_ms_task_nack(void *impl, const struct kl_store_task *t, int64_t delay_ms,
                    struct kl_err *err);
int kl_ms_task_ack(void *impl, const struct kl_store_task *t, struct kl_store_task_ack *out,
                   struct kl_err *err);
int kl_ms_stats(void *impl, struct kl_store_stats *out, struct kl_err *err);

#endif
