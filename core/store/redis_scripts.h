/*
 * The Lua scripts of the Redis store: each operation that reads and writes
 * more than one value runs as one script, so it is atomic across replicas.
 * The key layout they share is described in redis_scripts.c. Only redis.c
 * uses this.
 */
#ifndef KL_STORE_REDIS_SCRIPTS_H
#define KL_STORE_REDIS_SCRIPTS_H

enum kl_redis_script {
    KL_RS_JOB_CREATE = 0,
    KL_RS_JOB_LIST,
    KL_RS_JOB_ACTIVE,
    KL_RS_JOB_TRANSITION,
    KL_RS_JOB_PROGRESS,
    KL_RS_TASK_ENQUEUE,
    KL_RS_TASK_TAKE,
    KL_RS_TASK_HEARTBEAT,
    KL_RS_TASK_ACK,
    KL_RS_TASK_NACK,
    KL_RS_TASK_RELEASE,
    KL_RS_STATS,
    KL_RS_LEASE_TAKE,
    KL_RS_LEASE_RENEW,
    KL_RS_LEASE_RELEASE,
    KL_RS_BUDGET_RESERVE,
    KL_RS_BUDGET_RELEASE,
    KL_RS_COUNT
};

/* The source of each script; static. */
extern const char *const kl_redis_script_source[KL_RS_COUNT];
/* A short name for error messages ("job_create"). */
extern const char *const kl_redis_script_name[KL_RS_COUNT];

#endif
