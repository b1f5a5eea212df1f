/*
 * The plan of a job over its stream's shards, as pure functions (the engine
 * runs them in plan.c): which shards the planning task queues, which
 * children a drained shard queues, and the description a shard task carries
 * in the store's opaque task text.
 */
#ifndef KL_LOAD_PLAN_H
#define KL_LOAD_PLAN_H

#include <stdbool.h>
#include <stddef.h>

#include "core/kinesis/client.h"

struct kl_store_job;

/* What a shard task needs to know of its shard beyond the id. */
struct kl_shard_task_desc {
    bool closed;                      /* read to its end: children follow */
    char parents[2][KL_SHARD_ID_MAX]; /* parent and adjacent parent; "" when none */
};

/* The description of a listed shard. */
void kl_shard_task_desc_of(const struct kl_shard *s, struct kl_shard_task_desc *out);

/* As task text: "<0|1>|<parent>|<adjacent parent>" (the form queued tasks
 * already carry, so replicas of different versions understand each other).
 * `cap` >= KL_SHARD_TASK_DESC_MAX. */
#define KL_SHARD_TASK_DESC_MAX (2 * KL_SHARD_ID_MAX + 4)
void kl_shard_task_desc_format(const struct kl_shard_task_desc *d, char *buf, size_t cap);

/* Parses the task text; returns 0, or -1 for text that is not a description. */
int kl_shard_task_desc_parse(const char *text, struct kl_shard_task_desc *out);

/* True when the planning task queues `s`: none of its parents is listed
 * (they are past retention, or it has none). */
bool kl_plan_is_first(const struct kl_shard_list *shards, const struct kl_shard *s);

/* True when `s` is a child of the drained shard `drained` and each of its
 * listed parents is drained: `drained` itself, or a shard `job` marks done. */
bool kl_plan_child_ready(const struct kl_shard_list *shards, const struct kl_shard *s,
                         const char *drained, const struct kl_store_job *job);

#endif
