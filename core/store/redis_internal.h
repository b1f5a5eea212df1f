/*
 * What the files of the Redis store share, and nothing else includes: the
 * store's state, argument lists, the command and script runner (redis.c),
 * reply parsing (redis_reply.c), and the operations of redis_jobs.c and
 * redis_tasks.c that redis.c's ops table names.
 */
#ifndef KL_STORE_REDIS_INTERNAL_H
#define KL_STORE_REDIS_INTERNAL_H

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/store/redis.h"
#include "core/store/redis_scripts.h"
#include "core/store/store.h"

struct kl_err;

#define BACKOFF_MIN_MS 100
#define LIST_SCAN_CAP 2000 /* index entries one list call looks at, at most */
#define HASH_PAIRS_MAX ((size_t)16 * KL_STORE_SHARDS_MAX)
#define KEY_BUF (KL_STORE_PREFIX_MAX + 32 + KL_STORE_NAME_MAX + KL_STREAM_NAME_MAX)

struct rstore {
    struct kl_redis_url url;
    char where[400]; /* the redacted URL, for messages */
    char prefix[KL_STORE_PREFIX_MAX];
    const struct kl_clock *clock;
    int64_t retention_ms, idem_ttl_ms;
    int64_t connect_timeout_ms, command_timeout_ms, poll_ms, backoff_max_ms;
    int pool_max;
    char sha[KL_RS_COUNT][41];

    pthread_mutex_t mu; /* guards the pool below */
    pthread_cond_t cv;  /* a connection came back */
    redisContext **idle;
    int n_idle;
    int n_open;       /* idle + lent out + being connected */
    int64_t retry_at; /* real monotonic ms: no connection attempt before this */
    int64_t backoff;  /* the current backoff step, 0 while Redis answers */
};

/* A command's arguments, built up one by one. */
struct args {
    size_t n, cap;
    const char **v;
    size_t *len;
    char (*num)[24];
};

/* ---- redis.c: connections, commands, scripts ---- */

int kl_rs_map_error_reply(const char *what, const char *msg, struct kl_err *err);
int kl_rs_transaction(struct rstore *r, const struct args *cmds, size_t n, redisReply **out,
                      struct kl_err *err);
int kl_rs_script_args(struct rstore *r, struct args *a, size_t n_argv, struct kl_err *err);
void kl_rs_args_free(struct args *a);
int kl_rs_args_init(struct args *a, size_t cap, struct kl_err *err);
void kl_rs_arg_str(struct args *a, const char *s);
int kl_rs_command(struct rstore *r, const struct args *a, int64_t block_ms, redisReply **out,
                  struct kl_err *err);
void kl_rs_arg_i64(struct args *a, int64_t v);
void kl_rs_arg_mem(struct args *a, const char *s, size_t n);
int64_t kl_rs_real_ms(void);
int kl_rs_script(struct rstore *r, enum kl_redis_script id, struct args *a, redisReply **out,
                 struct kl_err *err);

/* ---- redis_reply.c: replies ---- */

int kl_rs_parse_job(const redisReply *trio, struct kl_store_job *out, struct kl_err *err);
int kl_rs_bad_reply(const char *what, struct kl_err *err);
bool kl_rs_copy_n(char *dst, size_t size, const char *s, size_t n);
int64_t kl_rs_el_i64(const redisReply *r, size_t i, int64_t fallback);
const char *kl_rs_el_str(const redisReply *r, size_t i, size_t *len);
bool kl_rs_el_is(const redisReply *r, size_t i, const char *s);

/* ---- redis_jobs.c: jobs and the budget ---- */

int kl_rs_budget_reserve(void *impl, const char *job_id, const char *shard_id, int64_t max_messages,
                         int64_t want, int64_t *granted, struct kl_err *err);
int kl_rs_budget_release(void *impl, const char *job_id, const char *shard_id, int64_t n,
                         struct kl_err *err);
int kl_rs_job_transition(void *impl, const char *id, enum kl_store_job_status to,
                         const struct kl_store_job_error *e, enum kl_store_job_status *now,
                         struct kl_err *err);
int kl_rs_job_progress(void *impl, const char *id, const struct kl_store_progress *p, bool *applied,
                       struct kl_err *err);
int kl_rs_job_status(void *impl, const char *id, enum kl_store_job_status *status,
                     bool *cancel_requested, struct kl_err *err);
int kl_rs_job_active(void *impl, const char *pipeline, const char *stream,
                     char id_out[KL_STORE_JOB_ID_SIZE], bool *found, struct kl_err *err);
int kl_rs_job_cancel(void *impl, const char *id, enum kl_store_job_status *now, struct kl_err *err);
int kl_rs_job_create(void *impl, const struct kl_store_job_new *n,
                     char id_out[KL_STORE_JOB_ID_SIZE], bool *existing, struct kl_err *err);
int kl_rs_job_list(void *impl, const struct kl_store_job_filter *f, struct kl_store_job_page *out,
                   struct kl_err *err);
int kl_rs_job_get(void *impl, const char *id, struct kl_store_job *out, struct kl_err *err);
int kl_rs_ping(void *impl, struct kl_err *err);
const char *kl_rs_name(void *impl);

/* ---- redis_tasks.c: the task queue and leases ---- */

int kl_rs_task_heartbeat(void *impl, const struct kl_store_task *t, int64_t lease_ms,
                         struct kl_err *err);
int kl_rs_lease_release(void *impl, const struct kl_store_shard_key *k, const char *owner,
                        int64_t token, struct kl_err *err);
int kl_rs_task_enqueue(void *impl, const char *job_id, const char *shard_id, const char *meta,
                       int64_t delay_ms, bool *created, struct kl_err *err);
int kl_rs_task_release(void *impl, const struct kl_store_task *t, int64_t delay_ms,
                       struct kl_err *err);
int kl_rs_lease_renew(void *impl, const struct kl_store_shard_key *k, const char *owner,
                      int64_t token, int64_t ttl_ms, struct kl_err *err);
int kl_rs_lease_take(void *impl, const struct kl_store_shard_key *k, const char *owner,
                     int64_t ttl_ms, int64_t min_token, int64_t *token, struct kl_err *err);
int kl_rs_task_take(void *impl, const char *owner, int64_t lease_ms, int64_t timeout_ms,
                    struct kl_store_task *out, bool *got, struct kl_err *err);
int kl_rs_task_nack(void *impl, const struct kl_store_task *t, int64_t delay_ms,
                    struct kl_err *err);
int kl_rs_task_ack(void *impl, const struct kl_store_task *t, struct kl_store_task_ack *out,
                   struct kl_err *err);
int kl_rs_stats(void *impl, struct kl_store_stats *out, struct kl_err *err);

#endif
