/*
 * Planning a job over the shard lineage (core/kinesis/lineage.h): the
 * planning task queues the shards whose parents are not listed; a drained
 * shard queues each child whose listed parents are all done. A shard task
 * carries its description (closed, parents) as the store's opaque task text.
 */
#include "core/load/plan.h"
#include "core/load/engine_internal.h"
#include "core/kinesis/lineage.h"
#include "core/store/store.h"
#include "core/util/err.h"

#include <stdio.h>
#include <string.h>

/* ---- the pure part (plan.h) ---- */

void kl_shard_task_desc_of(const struct kl_shard *s, struct kl_shard_task_desc *out)
{
    out->closed = kl_shard_is_closed(s);
    snprintf(out->parents[0], sizeof out->parents[0], "%s", s->parent_id);
    snprintf(out->parents[1], sizeof out->parents[1], "%s", s->adjacent_parent_id);
}

void kl_shard_task_desc_format(const struct kl_shard_task_desc *d, char *buf, size_t cap)
{
    snprintf(buf, cap, "%d|%s|%s", d->closed ? 1 : 0, d->parents[0], d->parents[1]);
}

/* Copies text up to `stop` (or the end) into a shard id; false when too long. */
static bool take_id(const char **p, char stop, char out[KL_SHARD_ID_MAX])
{
    size_t n = 0;
    while ((*p)[n] != '\0' && (*p)[n] != stop)
        n++;
    if (n >= KL_SHARD_ID_MAX)
        return false;
    memcpy(out, *p, n);
    out[n] = '\0';
    *p += n;
    return true;
}

int kl_shard_task_desc_parse(const char *text, struct kl_shard_task_desc *out)
{
    const char *p = text;

    memset(out, 0, sizeof *out);
    if (text == NULL || (p[0] != '0' && p[0] != '1') || p[1] != '|')
        return -1;
    out->closed = p[0] == '1';
    p += 2;
    if (!take_id(&p, '|', out->parents[0]) || *p++ != '|' || !take_id(&p, '\0', out->parents[1]))
        return -1;
    return strchr(out->parents[1], '|') == NULL ? 0 : -1;
}

bool kl_plan_is_first(const struct kl_shard_list *shards, const struct kl_shard *s)
{
    return !(s->parent_id[0] && kl_shard_index(shards, s->parent_id) >= 0) &&
           !(s->adjacent_parent_id[0] && kl_shard_index(shards, s->adjacent_parent_id) >= 0);
}

struct drained_ctx {
    const char *drained;
    const struct kl_store_job *job;
};

static bool is_drained(void *arg, const char *shard_id)
{
    const struct drained_ctx *c = arg;
    if (strcmp(shard_id, c->drained) == 0)
        return true;
    for (size_t k = 0; k < c->job->n_shards; k++)
        if (strcmp(c->job->shards[k].position.shard_id, shard_id) == 0)
            return c->job->shards[k].done;
    return false;
}

static bool is_the_drained(void *arg, const char *shard_id)
{
    return strcmp(shard_id, ((const struct drained_ctx *)arg)->drained) == 0;
}

bool kl_plan_child_ready(const struct kl_shard_list *shards, const struct kl_shard *s,
                         const char *drained, const struct kl_store_job *job)
{
    struct drained_ctx c = {drained, job};
    return kl_shard_any_parent(s, is_the_drained, &c) &&
           kl_shard_parents_drained(shards, s, is_drained, &c);
}

/* ---- the engine's tasks ---- */

/* Queues the task of shard `s` of the job. */
static int enqueue(struct kl_worker *w, const char *job_id, const struct kl_shard *s,
                   struct kl_err *err)
{
    struct kl_shard_task_desc d;
    char text[KL_SHARD_TASK_DESC_MAX];
    bool created;

    kl_shard_task_desc_of(s, &d);
    kl_shard_task_desc_format(&d, text, sizeof text);
    return kl_store_task_enqueue(kl_worker_store(w), job_id, s->id, text, 0, &created, err);
}

void kl_plan_job(struct kl_worker *w, const struct kl_store_task *t)
{
    struct kl_shard_list shards = {0};
    struct kl_err err;
    int rc;

    rc = kl_kinesis_list_shards(w->e->cfg.client, w->params.stream, &shards, &err);
    for (size_t i = 0; rc == KL_OK && i < shards.n; i++)
        if (kl_plan_is_first(&shards, &shards.shards[i]))
            rc = enqueue(w, t->job_id, &shards.shards[i], &err);
    kl_shard_list_free(&shards);
    if (rc == KL_OK)
        kl_job_task_done(w, t);
    else if (kl_err_retryable((enum kl_err_code)rc))
        kl_job_task_retry(w, t, &err);
    else {
        kl_job_fail(w, t->job_id, NULL, &err);
        kl_job_task_done(w, t);
    }
}

int kl_plan_children(struct kl_worker *w, const struct kl_store_task *t, struct kl_err *err)
{
    struct kl_shard_list shards = {0};
    struct kl_store_job job;
    int rc;

    kl_store_job_init(&job);
    rc = kl_kinesis_list_shards(w->e->cfg.client, w->params.stream, &shards, err);
    if (rc == KL_OK)
        rc = kl_store_job_get(kl_worker_store(w), t->job_id, &job, err);
    for (size_t i = 0; rc == KL_OK && i < shards.n; i++)
        if (kl_plan_child_ready(&shards, &shards.shards[i], t->shard_id, &job))
            rc = enqueue(w, t->job_id, &shards.shards[i], err);
    kl_store_job_free(&job);
    kl_shard_list_free(&shards);
    return rc;
}
