/*
 * The in-process store's task queue: enqueue, the blocking take (expired
 * leases go back in front), heartbeat, ack, nack, release and stats.
 */
#include "core/store/memory_internal.h"
#include "core/store/internal.h"
#include "core/util/err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- tasks ---- */

static void wake(struct memory *m)
{
    /* Fails only for an invalid condition variable. */
    if (pthread_cond_broadcast(&m->cv) != 0)
        abort();
}

static struct mtask *find_task(struct mjob *j, const char *shard_id)
{
    for (size_t i = 0; i < j->n_tasks; i++) {
        if (strcmp(j->tasks[i].shard_id, shard_id) == 0)
            return &j->tasks[i];
    }
    return NULL;
}

int kl_ms_task_enqueue(void *impl, const char *job_id, const char *shard_id, const char *meta,
                       int64_t delay_ms, bool *created, struct kl_err *err)
{
    struct memory *m = impl;
    struct mtask *t;
    struct mjob *j;
    int rc;

    if ((rc = kl_ms_lock(m, err)) != KL_OK)
        return rc;
    j = kl_ms_find_job(m, job_id);
    if (j == NULL) {
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", job_id);
        goto cleanup;
    }
    if (kl_store_job_status_final(j->s.status)) {
        rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "job %s is %s: no new tasks", job_id,
                           kl_store_job_status_name(j->s.status));
        goto cleanup;
    }
    if (find_task(j, shard_id) != NULL) {
        *created = false;
        goto cleanup;
    }
    if ((rc = kl_ms_grow((void **)&j->tasks, &j->cap_tasks, j->n_tasks, sizeof *j->tasks, err)) !=
        KL_OK)
        goto cleanup;
    t = &j->tasks[j->n_tasks++];
    memset(t, 0, sizeof *t);
    kl_store_copy(t->shard_id, sizeof t->shard_id, shard_id);
    kl_store_copy(t->meta, sizeof t->meta, meta);
    if (delay_ms > 0) {
        t->state = TASK_DELAYED;
        t->due_ms = kl_ms_mono(m) + delay_ms;
    } else {
        t->state = TASK_QUEUED;
    }
    t->order = ++m->next_order;
    j->s.tasks_total++;
    *created = true;
    wake(m);
cleanup:
    kl_ms_unlock(m);
    return rc;
}

/* Readies due delayed tasks and requeues expired in-flight ones (lock held). */
static int64_t reap(struct memory *m, bool *pending)
{
    int64_t now = kl_ms_mono(m), requeued = 0;
    *pending = false;
    for (size_t i = 0; i < m->n_jobs; i++) {
        struct mjob *j = m->jobs[i];
        for (size_t k = 0; k < j->n_tasks; k++) {
            struct mtask *t = &j->tasks[k];
            if (t->state == TASK_DELAYED && t->due_ms <= now) {
                t->state = TASK_QUEUED;
                t->order = ++m->next_order;
            } else if (t->state == TASK_IN_FLIGHT && t->due_ms <= now) {
                t->state = TASK_QUEUED;
                t->attempt++;
                t->order = --m->front_order;
                requeued++;
            }
            if (t->state == TASK_DELAYED || t->state == TASK_IN_FLIGHT)
                *pending = true;
        }
    }
    return requeued;
}

static bool pick(struct memory *m, struct mjob **job_out, struct mtask **task_out)
{
    struct mtask *best = NULL;
    struct mjob *best_job = NULL;
    for (size_t i = 0; i < m->n_jobs; i++) {
        struct mjob *j = m->jobs[i];
        for (size_t k = 0; k < j->n_tasks; k++) {
            struct mtask *t = &j->tasks[k];
            if (t->state == TASK_QUEUED && (best == NULL || t->order < best->order)) {
                best = t;
                best_job = j;
            }
        }
    }
    *job_out = best_job;
    *task_out = best;
    return best != NULL;
}

static int64_t real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int kl_ms_task_take(void *impl, const char *owner, int64_t lease_ms, int64_t timeout_ms,
                    struct kl_store_task *out, bool *got, struct kl_err *err)
{
    struct memory *m = impl;
    int64_t deadline = real_ms() + timeout_ms;
    struct mjob *j;
    struct mtask *t;
    bool pending;
    int rc;

    if ((rc = kl_ms_lock(m, err)) != KL_OK)
        return rc;
    for (;;) {
        int64_t left, wait_ms;
        struct timespec ts;
        int w;

        kl_ms_purge(m);
        reap(m, &pending);
        if (pick(m, &j, &t)) {
            t->state = TASK_IN_FLIGHT;
            t->delivery++;
            t->due_ms = kl_ms_mono(m) + lease_ms;
            kl_store_copy(t->owner, sizeof t->owner, owner);
            memset(out, 0, sizeof *out);
            memcpy(out->job_id, j->s.id, sizeof out->job_id);
            kl_store_copy(out->shard_id, sizeof out->shard_id, t->shard_id);
            kl_store_copy(out->meta, sizeof out->meta, t->meta);
            out->attempt = t->attempt;
            out->delivery = t->delivery;
            *got = true;
            break;
        }
        left = deadline - real_ms();
        if (left <= 0) {
            *got = false;
            break;
        }
        wait_ms = pending && left > WAIT_SLICE_MS ? WAIT_SLICE_MS : left;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += wait_ms / 1000;
        ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        w = pthread_cond_timedwait(&m->cv, &m->mu, &ts);
        if (w != 0 && w != ETIMEDOUT) {
            rc = KL_STORE_FAIL(err, KL_ERR_INTERNAL, "memory store: wait failed (%d)", w);
            break;
        }
    }
    kl_ms_unlock(m);
    return rc;
}

/* The in-flight task of this delivery, or NULL (lock held). */
static struct mtask *held(struct memory *m, const struct kl_store_task *t, struct mjob **job)
{
    struct mjob *j = kl_ms_find_job(m, t->job_id);
    struct mtask *k = j != NULL ? find_task(j, t->shard_id) : NULL;
    if (job != NULL)
        *job = j;
    if (k == NULL || k->delivery != t->delivery)
        return NULL;
    return k;
}

static int lost(struct kl_err *err, const struct kl_store_task *t)
{
    return KL_STORE_FAIL(err, KL_ERR_CONFLICT,
                         "task %s/%s delivery %lld is no longer held (taken over or finished)",
                         t->job_id, t->shard_id, (long long)t->delivery);
}

int kl_ms_task_heartbeat(void *impl, const struct kl_store_task *t, int64_t lease_ms,
                         struct kl_err *err)
{
    struct memory *m = impl;
    struct mtask *k;
    int rc;

    if ((rc = kl_ms_lock(m, err)) != KL_OK)
        return rc;
    k = held(m, t, NULL);
    if (k == NULL || k->state != TASK_IN_FLIGHT)
        rc = lost(err, t);
    else
        k->due_ms = kl_ms_mono(m) + lease_ms;
    kl_ms_unlock(m);
    return rc;
}

int kl_ms_task_ack(void *impl, const struct kl_store_task *t, struct kl_store_task_ack *out,
                   struct kl_err *err)
{
    struct memory *m = impl;
    struct mjob *j;
    struct mtask *k;
    int rc;

    if ((rc = kl_ms_lock(m, err)) != KL_OK)
        return rc;
    k = held(m, t, &j);
    if (k == NULL || (k->state != TASK_IN_FLIGHT && k->state != TASK_ACKED)) {
        rc = lost(err, t);
        goto cleanup;
    }
    if (k->state == TASK_IN_FLIGHT) {
        k->state = TASK_ACKED;
        j->s.tasks_done++;
        k->ack_done = j->s.tasks_done;
        k->ack_total = j->s.tasks_total;
    }
    out->tasks_done = k->ack_done;
    out->tasks_total = k->ack_total;
    out->last = k->ack_done == k->ack_total;
cleanup:
    kl_ms_unlock(m);
    return rc;
}

/* nack and release: the task is queued again, its attempts counted or not. */
static int requeue(struct memory *m, const struct kl_store_task *t, int64_t delay_ms,
                   bool count_attempt, struct kl_err *err)
{
    struct mtask *k;
    int rc;

    if ((rc = kl_ms_lock(m, err)) != KL_OK)
        return rc;
    k = held(m, t, NULL);
    if (k == NULL || k->state != TASK_IN_FLIGHT) {
        rc = lost(err, t);
        goto cleanup;
    }
    if (count_attempt)
        k->attempt++;
    k->order = ++m->next_order;
    if (delay_ms > 0) {
        k->state = TASK_DELAYED;
        k->due_ms = kl_ms_mono(m) + delay_ms;
    } else {
        k->state = TASK_QUEUED;
    }
    wake(m);
cleanup:
    kl_ms_unlock(m);
    return rc;
}

int kl_ms_task_nack(void *impl, const struct kl_store_task *t, int64_t delay_ms, struct kl_err *err)
{
    return requeue(impl, t, delay_ms, true, err);
}

int kl_ms_task_release(void *impl, const struct kl_store_task *t, int64_t delay_ms,
                       struct kl_err *err)
{
    return requeue(impl, t, delay_ms, false, err);
}

int kl_ms_stats(void *impl, struct kl_store_stats *out, struct kl_err *err)
{
    struct memory *m = impl;
    struct kl_store_stats st = {0};
    int rc;

    if ((rc = kl_ms_lock(m, err)) != KL_OK)
        return rc;
    kl_ms_purge(m);
    for (size_t i = 0; i < m->n_jobs; i++) {
        st.jobs[m->jobs[i]->s.status]++;
        for (size_t k = 0; k < m->jobs[i]->n_tasks; k++) {
            switch (m->jobs[i]->tasks[k].state) {
            case TASK_QUEUED:
                st.queued++;
                break;
            case TASK_IN_FLIGHT:
                st.in_flight++;
                break;
            case TASK_DELAYED:
                st.delayed++;
                break;
            case TASK_ACKED:
                break;
            }
        }
    }
    *out = st;
    kl_ms_unlock(m);
    return KL_OK;
}
