/*
 * The in-process state store (memory.h). One mutex guards everything; one
 * condition variable wakes blocked takers. Collections are plain arrays
 * searched linearly: one process runs a handful of jobs with at most a few
 * thousand shards, so clarity beats indexes here. The semantics mirror the
 * Redis backend's Lua scripts (redis_scripts.c) one for one.
 */
#include "core/store/memory.h"
#include "core/store/internal.h"
#include "core/util/clock.h"
#include "core/util/err.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* ---- small helpers ---- */

static int lock(struct memory *m, struct kl_err *err)
{
    if (pthread_mutex_lock(&m->mu) != 0)
        return KL_STORE_FAIL(err, KL_ERR_INTERNAL, "memory store: mutex lock failed");
    return KL_OK;
}

static void unlock(struct memory *m)
{
    /* Fails only for a mutex this thread does not hold: a bug we must not run past. */
    if (pthread_mutex_unlock(&m->mu) != 0)
        abort();
}

static int64_t wall(struct memory *m)
{
    return kl_clock_wall_ms(m->clock);
}

static int64_t mono(struct memory *m)
{
    return kl_clock_monotonic_ms(m->clock);
}

/* Grows an array so it holds one more element. */
static int grow(void **arr, size_t *cap, size_t n, size_t elem, struct kl_err *err)
{
    void *p;
    size_t c;
    if (n < *cap)
        return KL_OK;
    c = *cap != 0 ? *cap * 2 : 8;
    p = realloc(*arr, c * elem);
    if (p == NULL)
        return KL_STORE_FAIL(err, KL_ERR_NOMEM, "memory store: out of memory");
    *arr = p;
    *cap = c;
    return KL_OK;
}

static void join_key(char out[KEY_MAX], const char *a, const char *b, const char *c)
{
    snprintf(out, KEY_MAX, "%s:%s%s%s", a, b, c != NULL ? ":" : "", c != NULL ? c : "");
}

static struct mjob *find_job(struct memory *m, const char *id)
{
    for (size_t i = 0; i < m->n_jobs; i++) {
        if (strcmp(m->jobs[i]->s.id, id) == 0)
            return m->jobs[i];
    }
    return NULL;
}

static void free_job(struct mjob *j)
{
    if (j == NULL)
        return;
    kl_store_job_free(&j->s);
    free(j->tasks);
    free(j->reserved);
    free(j);
}

/* Forgets finished jobs past retention and expired Idempotency-Keys. */
static void purge(struct memory *m)
{
    int64_t now = wall(m);
    size_t w = 0;
    for (size_t i = 0; i < m->n_jobs; i++) {
        struct mjob *j = m->jobs[i];
        if (kl_store_job_status_final(j->s.status) && j->s.finished_ms + m->retention_ms <= now)
            free_job(j);
        else
            m->jobs[w++] = j;
    }
    m->n_jobs = w;
    w = 0;
    for (size_t i = 0; i < m->n_idem; i++) {
        if (m->idem[i].expires_ms > now)
            m->idem[w++] = m->idem[i];
    }
    m->n_idem = w;
}

static int copy_job(const struct kl_store_job *src, struct kl_store_job *dst, struct kl_err *err)
{
    struct kl_store_job j = *src;
    int rc = KL_OK;

    j.parameters = NULL;
    j.tables = NULL;
    j.shards = NULL;
    j.parameters = strdup(src->parameters != NULL ? src->parameters : "{}");
    if (src->n_tables > 0)
        j.tables = malloc(src->n_tables * sizeof *j.tables);
    if (src->n_shards > 0)
        j.shards = malloc(src->n_shards * sizeof *j.shards);
    if (j.parameters == NULL || (src->n_tables > 0 && j.tables == NULL) ||
        (src->n_shards > 0 && j.shards == NULL)) {
        rc = KL_STORE_FAIL(err, KL_ERR_NOMEM, "memory store: out of memory");
        goto cleanup;
    }
    if (src->n_tables > 0)
        memcpy(j.tables, src->tables, src->n_tables * sizeof *j.tables);
    if (src->n_shards > 0)
        memcpy(j.shards, src->shards, src->n_shards * sizeof *j.shards);
    kl_store_job_sort(&j);
    kl_store_job_free(dst);
    *dst = j;
    j.parameters = NULL;
    j.tables = NULL;
    j.shards = NULL;
cleanup:
    kl_store_job_free(&j);
    return rc;
}

static const char *impl_name(void *impl)
{
    (void)impl;
    return "memory";
}

static int impl_ping(void *impl, struct kl_err *err)
{
    (void)impl;
    (void)err;
    return KL_OK;
}

/* ---- jobs ---- */

static struct mjob *active_job(struct memory *m, const char *pipeline, const char *stream)
{
    for (size_t i = 0; i < m->n_jobs; i++) {
        struct mjob *j = m->jobs[i];
        if (!kl_store_job_status_final(j->s.status) && strcmp(j->s.stream, stream) == 0 &&
            strcmp(j->s.pipeline_name, pipeline) == 0)
            return j;
    }
    return NULL;
}

static int impl_job_create(void *impl, const struct kl_store_job_new *n,
                           char id_out[KL_STORE_JOB_ID_SIZE], bool *existing, struct kl_err *err)
{
    struct memory *m = impl;
    struct mjob *j = NULL, *act;
    bool has_key = n->idempotency_key != NULL && n->idempotency_key[0] != '\0';
    int rc;

    if ((rc = lock(m, err)) != KL_OK)
        return rc;
    purge(m);
    if (has_key) {
        for (size_t i = 0; i < m->n_idem; i++) {
            if (strcmp(m->idem[i].key, n->idempotency_key) == 0 && find_job(m, m->idem[i].id)) {
                memcpy(id_out, m->idem[i].id, KL_STORE_JOB_ID_SIZE);
                *existing = true;
                goto cleanup;
            }
        }
    }
    act = active_job(m, n->pipeline_name, n->stream);
    if (act != NULL) {
        memcpy(id_out, act->s.id, KL_STORE_JOB_ID_SIZE);
        rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "job %s of stream %s and pipeline %s is %s",
                           act->s.id, n->stream, n->pipeline_name,
                           kl_store_job_status_name(act->s.status));
        goto cleanup;
    }
    if ((rc = grow((void **)&m->jobs, &m->cap_jobs, m->n_jobs, sizeof(struct mjob *), err)) !=
        KL_OK)
        goto cleanup;
    if (has_key &&
        (rc = grow((void **)&m->idem, &m->cap_idem, m->n_idem, sizeof *m->idem, err)) != KL_OK)
        goto cleanup;
    j = calloc(1, sizeof *j);
    if (j == NULL) {
        rc = KL_STORE_FAIL(err, KL_ERR_NOMEM, "memory store: out of memory");
        goto cleanup;
    }
    kl_store_job_init(&j->s);
    j->s.parameters = strdup(n->parameters_json != NULL ? n->parameters_json : "{}");
    if (j->s.parameters == NULL) {
        rc = KL_STORE_FAIL(err, KL_ERR_NOMEM, "memory store: out of memory");
        goto cleanup;
    }
    j->s.created_ms = wall(m);
    if ((rc = kl_store_new_job_id(j->s.created_ms, j->s.id, err)) != KL_OK)
        goto cleanup;
    kl_store_copy(j->s.stream, sizeof j->s.stream, n->stream);
    kl_store_copy(j->s.pipeline_name, sizeof j->s.pipeline_name, n->pipeline_name);
    kl_store_copy(j->s.dataset_name, sizeof j->s.dataset_name, n->dataset_name);
    j->s.status = KL_STORE_JOB_QUEUED;
    if (has_key) {
        struct midem *e = &m->idem[m->n_idem++];
        kl_store_copy(e->key, sizeof e->key, n->idempotency_key);
        memcpy(e->id, j->s.id, sizeof e->id);
        e->expires_ms = j->s.created_ms + m->idem_ttl_ms;
    }
    m->jobs[m->n_jobs++] = j;
    memcpy(id_out, j->s.id, KL_STORE_JOB_ID_SIZE);
    *existing = false;
    j = NULL;
cleanup:
    free_job(j);
    unlock(m);
    return rc;
}

static int impl_job_get(void *impl, const char *id, struct kl_store_job *out, struct kl_err *err)
{
    struct memory *m = impl;
    struct mjob *j;
    int rc;

    if ((rc = lock(m, err)) != KL_OK)
        return rc;
    purge(m);
    j = find_job(m, id);
    if (j == NULL)
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", id);
    else
        rc = copy_job(&j->s, out, err);
    unlock(m);
    return rc;
}

static int cmp_job_desc(const void *a, const void *b)
{
    return -strcmp((*(struct mjob *const *)a)->s.id, (*(struct mjob *const *)b)->s.id);
}

static int impl_job_list(void *impl, const struct kl_store_job_filter *f,
                         struct kl_store_job_page *out, struct kl_err *err)
{
    struct memory *m = impl;
    struct kl_store_job_page page = {0};
    int rc;

    if ((rc = lock(m, err)) != KL_OK)
        return rc;
    purge(m);
    if (m->n_jobs > 1)
        qsort(m->jobs, m->n_jobs, sizeof(struct mjob *), cmp_job_desc);
    page.jobs = calloc((size_t)f->limit, sizeof *page.jobs);
    if (page.jobs == NULL) {
        rc = KL_STORE_FAIL(err, KL_ERR_NOMEM, "memory store: out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < m->n_jobs; i++) {
        const struct kl_store_job *j = &m->jobs[i]->s;
        if (f->cursor != NULL && strcmp(j->id, f->cursor) >= 0)
            continue;
        if (f->stream != NULL && strcmp(j->stream, f->stream) != 0)
            continue;
        if (f->has_status && j->status != f->status)
            continue;
        if (page.n_jobs == (size_t)f->limit) {
            /* one more exists: the page ends at the last one taken */
            memcpy(page.next_cursor, page.jobs[page.n_jobs - 1].id, KL_STORE_JOB_ID_SIZE);
            break;
        }
        kl_store_job_init(&page.jobs[page.n_jobs]);
        if ((rc = copy_job(j, &page.jobs[page.n_jobs], err)) != KL_OK)
            goto cleanup;
        page.n_jobs++;
    }
    kl_store_job_page_free(out);
    *out = page;
    memset(&page, 0, sizeof page);
cleanup:
    kl_store_job_page_free(&page);
    unlock(m);
    return rc;
}

static int impl_job_status(void *impl, const char *id, enum kl_store_job_status *status,
                           bool *cancel_requested, struct kl_err *err)
{
    struct memory *m = impl;
    struct mjob *j;
    int rc;

    if ((rc = lock(m, err)) != KL_OK)
        return rc;
    purge(m);
    j = find_job(m, id);
    if (j == NULL) {
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", id);
    } else {
        *status = j->s.status;
        *cancel_requested = j->s.cancel_requested;
    }
    unlock(m);
    return rc;
}

static int impl_job_active(void *impl, const char *pipeline, const char *stream,
                           char id_out[KL_STORE_JOB_ID_SIZE], bool *found, struct kl_err *err)
{
    struct memory *m = impl;
    struct mjob *j;
    int rc;

    if ((rc = lock(m, err)) != KL_OK)
        return rc;
    j = active_job(m, pipeline, stream);
    *found = j != NULL;
    if (j != NULL)
        memcpy(id_out, j->s.id, KL_STORE_JOB_ID_SIZE);
    unlock(m);
    return KL_OK;
}

static bool transition_allowed(enum kl_store_job_status from, enum kl_store_job_status to)
{
    switch (from) {
    case KL_STORE_JOB_QUEUED:
        return to == KL_STORE_JOB_RUNNING || to == KL_STORE_JOB_FAILED ||
               to == KL_STORE_JOB_CANCELLED;
    case KL_STORE_JOB_RUNNING:
        return to == KL_STORE_JOB_SUCCEEDED || to == KL_STORE_JOB_FAILED ||
               to == KL_STORE_JOB_CANCELLED;
    default:
        return false;
    }
}

/* Applies an allowed transition (called with the lock held). */
static void apply_transition(struct memory *m, struct mjob *j, enum kl_store_job_status to,
                             const struct kl_store_job_error *e)
{
    j->s.status = to;
    if (to == KL_STORE_JOB_RUNNING) {
        j->s.started_ms = wall(m);
        return;
    }
    j->s.finished_ms = wall(m);
    if (to == KL_STORE_JOB_FAILED && e != NULL) {
        j->s.has_error = true;
        kl_store_copy(j->s.error_type, sizeof j->s.error_type,
                      e->type != NULL ? e->type : "internal");
        kl_store_copy(j->s.error_detail, sizeof j->s.error_detail, e->detail);
        kl_store_copy(j->s.error_shard, sizeof j->s.error_shard, e->shard_id);
    }
}

static int impl_job_transition(void *impl, const char *id, enum kl_store_job_status to,
                               const struct kl_store_job_error *e, enum kl_store_job_status *now,
                               struct kl_err *err)
{
    struct memory *m = impl;
    struct mjob *j;
    int rc;

    if ((rc = lock(m, err)) != KL_OK)
        return rc;
    purge(m);
    j = find_job(m, id);
    if (j == NULL) {
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", id);
        goto cleanup;
    }
    if (j->s.status != to) {
        if (!transition_allowed(j->s.status, to)) {
            *now = j->s.status;
            rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "job %s is %s: it cannot become %s", id,
                               kl_store_job_status_name(j->s.status), kl_store_job_status_name(to));
            goto cleanup;
        }
        apply_transition(m, j, to, e);
    }
    *now = to;
cleanup:
    unlock(m);
    return rc;
}

static int impl_job_cancel(void *impl, const char *id, enum kl_store_job_status *now,
                           struct kl_err *err)
{
    struct memory *m = impl;
    struct mjob *j;
    int rc;

    if ((rc = lock(m, err)) != KL_OK)
        return rc;
    purge(m);
    j = find_job(m, id);
    if (j == NULL) {
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", id);
        goto cleanup;
    }
    switch (j->s.status) {
    case KL_STORE_JOB_QUEUED:
        j->s.cancel_requested = true;
        apply_transition(m, j, KL_STORE_JOB_CANCELLED, NULL);
        break;
    case KL_STORE_JOB_RUNNING:
        j->s.cancel_requested = true;
        break;
    case KL_STORE_JOB_CANCELLED:
        break;
    default:
        *now = j->s.status;
        rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "job %s already %s", id,
                           kl_store_job_status_name(j->s.status));
        goto cleanup;
    }
    *now = j->s.status;
cleanup:
    unlock(m);
    return rc;
}

static struct kl_store_shard_progress *find_shard(struct mjob *j, const char *shard_id, bool create,
                                                  struct kl_err *err, int *rc)
{
    struct kl_store_shard_progress *sp;
    for (size_t i = 0; i < j->s.n_shards; i++) {
        if (strcmp(j->s.shards[i].position.shard_id, shard_id) == 0)
            return &j->s.shards[i];
    }
    if (!create)
        return NULL;
    if (j->s.n_shards >= KL_STORE_SHARDS_MAX) {
        *rc = KL_STORE_FAIL(err, KL_ERR_LIMIT, "job %s has %d shards already", j->s.id,
                            KL_STORE_SHARDS_MAX);
        return NULL;
    }
    if ((*rc = grow((void **)&j->s.shards, &j->cap_shards, j->s.n_shards, sizeof *j->s.shards,
                    err)) != KL_OK)
        return NULL;
    sp = &j->s.shards[j->s.n_shards++];
    memset(sp, 0, sizeof *sp);
    kl_store_copy(sp->position.shard_id, sizeof sp->position.shard_id, shard_id);
    sp->position.sub_sequence = -1;
    sp->millis_behind_latest = -1;
    return sp;
}

static int add_rows(struct mjob *j, const struct kl_store_table_rows *t, struct kl_err *err)
{
    struct kl_store_table_rows *r;
    int rc;
    for (size_t i = 0; i < j->s.n_tables; i++) {
        if (strcmp(j->s.tables[i].table, t->table) == 0) {
            j->s.tables[i].rows += t->rows;
            return KL_OK;
        }
    }
    if (j->s.n_tables >= KL_STORE_SHARDS_MAX)
        return KL_STORE_FAIL(err, KL_ERR_LIMIT, "job %s has too many tables", j->s.id);
    if ((rc = grow((void **)&j->s.tables, &j->cap_tables, j->s.n_tables, sizeof *j->s.tables,
                   err)) != KL_OK)
        return rc;
    r = &j->s.tables[j->s.n_tables++];
    *r = *t;
    return KL_OK;
}

/* ---- the message budget ---- */

/* The shard's reservation in the job; created (0) when `create`. NULL when
 * absent, or out of memory (then `*rc` says so). */
static struct mreserve *find_reserve(struct mjob *j, const char *shard_id, bool create,
                                     struct kl_err *err, int *rc)
{
    struct mreserve *r;
    for (size_t i = 0; i < j->n_reserved; i++)
        if (strcmp(j->reserved[i].shard_id, shard_id) == 0)
            return &j->reserved[i];
    if (!create)
        return NULL;
    if ((*rc = grow((void **)&j->reserved, &j->cap_reserved, j->n_reserved, sizeof *j->reserved,
                    err)) != KL_OK)
        return NULL;
    r = &j->reserved[j->n_reserved++];
    kl_store_copy(r->shard_id, sizeof r->shard_id, shard_id);
    r->n = 0;
    return r;
}

/* Gives n (< 0: all) of a shard's reservation back, never below 0. */
static void release_reserve(struct mjob *j, const char *shard_id, int64_t n)
{
    struct mreserve *r = find_reserve(j, shard_id, false, NULL, NULL);
    if (r == NULL)
        return;
    if (n < 0 || n > r->n)
        n = r->n;
    r->n -= n;
    j->reserved_total -= n;
}

static int impl_budget_reserve(void *impl, const char *job_id, const char *shard_id,
                               int64_t max_messages, int64_t want, int64_t *granted,
                               struct kl_err *err)
{
    struct memory *m = impl;
    struct mreserve *r;
    struct mjob *j;
    int64_t left;
    int rc;

    if ((rc = lock(m, err)) != KL_OK)
        return rc;
    j = find_job(m, job_id);
    if (j == NULL) {
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", job_id);
        goto cleanup;
    }
    if (kl_store_job_status_final(j->s.status))
        goto cleanup;
    left = max_messages - j->s.messages - j->reserved_total;
    if (left <= 0 || want == 0)
        goto cleanup;
    r = find_reserve(j, shard_id, true, err, &rc);
    if (r == NULL)
        goto cleanup;
    *granted = want < left ? want : left;
    r->n += *granted;
    j->reserved_total += *granted;
cleanup:
    unlock(m);
    return rc;
}

static int impl_budget_release(void *impl, const char *job_id, const char *shard_id, int64_t n,
                               struct kl_err *err)
{
    struct memory *m = impl;
    struct mjob *j;
    int rc;

    if ((rc = lock(m, err)) != KL_OK)
        return rc;
    j = find_job(m, job_id);
    if (j == NULL)
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", job_id);
    else
        release_reserve(j, shard_id, n);
    unlock(m);
    return rc;
}

static int impl_job_progress(void *impl, const char *id, const struct kl_store_progress *p,
                             bool *applied, struct kl_err *err)
{
    struct memory *m = impl;
    struct kl_store_shard_progress *sp;
    struct mjob *j;
    bool apply = true;
    int rc;

    if ((rc = lock(m, err)) != KL_OK)
        return rc;
    j = find_job(m, id);
    if (j == NULL) {
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", id);
        goto cleanup;
    }
    /* Make room for every new table first, so the update below cannot fail half way. */
    for (size_t i = 0; i < p->n_tables; i++) {
        struct kl_store_table_rows zero = p->tables[i];
        zero.rows = 0;
        if ((rc = add_rows(j, &zero, err)) != KL_OK)
            goto cleanup;
    }
    sp = find_shard(j, p->shard_id, true, err, &rc);
    if (sp == NULL)
        goto cleanup;
    if (p->sequence != NULL)
        apply = kl_position_cmp(p->sequence, p->sub_sequence, sp->position.sequence,
                                sp->position.sub_sequence) > 0;
    if (apply) {
        if (p->sequence != NULL) {
            kl_store_copy(sp->position.sequence, sizeof sp->position.sequence, p->sequence);
            sp->position.sub_sequence = p->sub_sequence;
        }
        sp->messages += p->messages;
        j->s.messages += p->messages;
        j->s.dead_letters += p->dead_letters;
        for (size_t i = 0; i < p->n_tables; i++)
            add_rows(j, &p->tables[i], err); /* cannot fail: the table exists */
        if (p->millis_behind_latest >= 0)
            sp->millis_behind_latest = p->millis_behind_latest;
        if (p->released > 0)
            release_reserve(j, p->shard_id, p->released);
    }
    if (p->done)
        sp->done = true;
    if (p->gap != NULL) {
        sp->has_gap = true;
        sp->gap = *p->gap;
    }
    if (p->waiting_on != NULL) {
        kl_store_copy(sp->waiting_on, sizeof sp->waiting_on, p->waiting_on);
        sp->waiting_since_ms = p->waiting_on[0] ? p->waiting_since_ms : 0;
        sp->waiting_until_ms = p->waiting_on[0] ? p->waiting_until_ms : 0;
        kl_store_copy(sp->waiting_why, sizeof sp->waiting_why,
                      p->waiting_on[0] && p->waiting_why ? p->waiting_why : "");
    }
    *applied = apply;
cleanup:
    unlock(m);
    return rc;
}

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

static int impl_task_enqueue(void *impl, const char *job_id, const char *shard_id, const char *meta,
                             int64_t delay_ms, bool *created, struct kl_err *err)
{
    struct memory *m = impl;
    struct mtask *t;
    struct mjob *j;
    int rc;

    if ((rc = lock(m, err)) != KL_OK)
        return rc;
    j = find_job(m, job_id);
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
    if ((rc = grow((void **)&j->tasks, &j->cap_tasks, j->n_tasks, sizeof *j->tasks, err)) != KL_OK)
        goto cleanup;
    t = &j->tasks[j->n_tasks++];
    memset(t, 0, sizeof *t);
    kl_store_copy(t->shard_id, sizeof t->shard_id, shard_id);
    kl_store_copy(t->meta, sizeof t->meta, meta);
    if (delay_ms > 0) {
        t->state = TASK_DELAYED;
        t->due_ms = mono(m) + delay_ms;
    } else {
        t->state = TASK_QUEUED;
    }
    t->order = ++m->next_order;
    j->s.tasks_total++;
    *created = true;
    wake(m);
cleanup:
    unlock(m);
    return rc;
}

/* Readies due delayed tasks and requeues expired in-flight ones (lock held). */
static int64_t reap(struct memory *m, bool *pending)
{
    int64_t now = mono(m), requeued = 0;
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

static int impl_task_take(void *impl, const char *owner, int64_t lease_ms, int64_t timeout_ms,
                          struct kl_store_task *out, bool *got, struct kl_err *err)
{
    struct memory *m = impl;
    int64_t deadline = real_ms() + timeout_ms;
    struct mjob *j;
    struct mtask *t;
    bool pending;
    int rc;

    if ((rc = lock(m, err)) != KL_OK)
        return rc;
    for (;;) {
        int64_t left, wait_ms;
        struct timespec ts;
        int w;

        purge(m);
        reap(m, &pending);
        if (pick(m, &j, &t)) {
            t->state = TASK_IN_FLIGHT;
            t->delivery++;
            t->due_ms = mono(m) + lease_ms;
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
    unlock(m);
    return rc;
}

/* The in-flight task of this delivery, or NULL (lock held). */
static struct mtask *held(struct memory *m, const struct kl_store_task *t, struct mjob **job)
{
    struct mjob *j = find_job(m, t->job_id);
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

static int impl_task_heartbeat(void *impl, const struct kl_store_task *t, int64_t lease_ms,
                               struct kl_err *err)
{
    struct memory *m = impl;
    struct mtask *k;
    int rc;

    if ((rc = lock(m, err)) != KL_OK)
        return rc;
    k = held(m, t, NULL);
    if (k == NULL || k->state != TASK_IN_FLIGHT)
        rc = lost(err, t);
    else
        k->due_ms = mono(m) + lease_ms;
    unlock(m);
    return rc;
}

static int impl_task_ack(void *impl, const struct kl_store_task *t, struct kl_store_task_ack *out,
                         struct kl_err *err)
{
    struct memory *m = impl;
    struct mjob *j;
    struct mtask *k;
    int rc;

    if ((rc = lock(m, err)) != KL_OK)
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
    unlock(m);
    return rc;
}

/* nack and release: the task is queued again, its attempts counted or not. */
static int requeue(struct memory *m, const struct kl_store_task *t, int64_t delay_ms,
                   bool count_attempt, struct kl_err *err)
{
    struct mtask *k;
    int rc;

    if ((rc = lock(m, err)) != KL_OK)
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
        k->due_ms = mono(m) + delay_ms;
    } else {
        k->state = TASK_QUEUED;
    }
    wake(m);
cleanup:
    unlock(m);
    return rc;
}

static int impl_task_nack(void *impl, const struct kl_store_task *t, int64_t delay_ms,
                          struct kl_err *err)
{
    return requeue(impl, t, delay_ms, true, err);
}

static int impl_task_release(void *impl, const struct kl_store_task *t, int64_t delay_ms,
                             struct kl_err *err)
{
    return requeue(impl, t, delay_ms, false, err);
}

static int impl_stats(void *impl, struct kl_store_stats *out, struct kl_err *err)
{
    struct memory *m = impl;
    struct kl_store_stats st = {0};
    int rc;

    if ((rc = lock(m, err)) != KL_OK)
        return rc;
    purge(m);
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
    unlock(m);
    return KL_OK;
}

/* ---- leases ---- */

static struct mlease *find_lease(struct memory *m, const struct kl_store_shard_key *k, bool create,
                                 struct kl_err *err, int *rc)
{
    char key[KEY_MAX];
    struct mlease *l;
    join_key(key, k->pipeline, k->stream, k->shard_id);
    for (size_t i = 0; i < m->n_leases; i++) {
        if (strcmp(m->leases[i].key, key) == 0)
            return &m->leases[i];
    }
    if (!create)
        return NULL;
    if ((*rc = grow((void **)&m->leases, &m->cap_leases, m->n_leases, sizeof *m->leases, err)) !=
        KL_OK)
        return NULL;
    l = &m->leases[m->n_leases++];
    memset(l, 0, sizeof *l);
    memcpy(l->key, key, sizeof l->key);
    return l;
}

static bool live(struct memory *m, const struct mlease *l)
{
    return l->owner[0] != '\0' && l->expires_ms > mono(m);
}

static int impl_lease_take(void *impl, const struct kl_store_shard_key *k, const char *owner,
                           int64_t ttl_ms, int64_t min_token, int64_t *token, struct kl_err *err)
{
    struct memory *m = impl;
    struct mlease *l;
    int rc;

    if ((rc = lock(m, err)) != KL_OK)
        return rc;
    l = find_lease(m, k, true, err, &rc);
    if (l == NULL)
        goto cleanup;
    if (live(m, l)) {
        if (strcmp(l->owner, owner) != 0) {
            rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "shard %s is leased by %s for %lld ms more",
                               k->shard_id, l->owner, (long long)(l->expires_ms - mono(m)));
            goto cleanup;
        }
    } else {
        l->fence = l->fence + 1 > min_token ? l->fence + 1 : min_token + 1;
        l->token = l->fence;
        kl_store_copy(l->owner, sizeof l->owner, owner);
    }
    l->expires_ms = mono(m) + ttl_ms;
    *token = l->token;
cleanup:
    unlock(m);
    return rc;
}

static int impl_lease_renew(void *impl, const struct kl_store_shard_key *k, const char *owner,
                            int64_t token, int64_t ttl_ms, struct kl_err *err)
{
    struct memory *m = impl;
    struct mlease *l;
    bool ours;
    int rc;

    if ((rc = lock(m, err)) != KL_OK)
        return rc;
    l = find_lease(m, k, false, err, &rc);
    ours = l != NULL && l->token == token && strcmp(l->owner, owner) == 0;
    /* A lapsed lease may be re-established while its token is still the newest. */
    if (ours && (live(m, l) || l->fence == token))
        l->expires_ms = mono(m) + ttl_ms;
    else
        rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "lease of shard %s with token %lld is lost",
                           k->shard_id, (long long)token);
    unlock(m);
    return rc;
}

static int impl_lease_release(void *impl, const struct kl_store_shard_key *k, const char *owner,
                              int64_t token, struct kl_err *err)
{
    struct memory *m = impl;
    struct mlease *l;
    int rc;

    if ((rc = lock(m, err)) != KL_OK)
        return rc;
    l = find_lease(m, k, false, err, &rc);
    if (l != NULL && live(m, l)) {
        if (l->token == token && strcmp(l->owner, owner) == 0)
            l->owner[0] = '\0';
        else
            rc = KL_STORE_FAIL(err, KL_ERR_CONFLICT, "shard %s is leased by %s (token %lld)",
                               k->shard_id, l->owner, (long long)l->token);
    }
    unlock(m);
    return rc;
}

/* ---- lifecycle ---- */

static void impl_destroy(void *impl)
{
    struct memory *m = impl;
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n_jobs; i++)
        free_job(m->jobs[i]);
    free(m->jobs);
    free(m->idem);
    free(m->leases);
    /* Destroying an unlocked, unwaited mutex and condition cannot fail. */
    (void)pthread_cond_destroy(&m->cv);
    (void)pthread_mutex_destroy(&m->mu);
    free(m);
}

static const struct kl_store_ops memory_ops = {
    .name = impl_name,
    .ping = impl_ping,
    .job_create = impl_job_create,
    .job_get = impl_job_get,
    .job_list = impl_job_list,
    .job_status = impl_job_status,
    .job_active = impl_job_active,
    .job_transition = impl_job_transition,
    .job_cancel = impl_job_cancel,
    .job_progress = impl_job_progress,
    .budget_reserve = impl_budget_reserve,
    .budget_release = impl_budget_release,
    .task_enqueue = impl_task_enqueue,
    .task_take = impl_task_take,
    .task_heartbeat = impl_task_heartbeat,
    .task_ack = impl_task_ack,
    .task_nack = impl_task_nack,
    .task_release = impl_task_release,
    .stats = impl_stats,
    .lease_take = impl_lease_take,
    .lease_renew = impl_lease_renew,
    .lease_release = impl_lease_release,
    .destroy = impl_destroy,
};

struct kl_store *kl_store_memory_create(const struct kl_store_options *o, struct kl_err *err)
{
    struct kl_store_options defaults;
    struct kl_store *s = NULL;
    struct memory *m = NULL;
    pthread_condattr_t attr;
    bool mutex_ok = false, attr_ok = false;

    if (o == NULL) {
        kl_store_options_init(&defaults);
        o = &defaults;
    }
    if (o->job_retention_ms <= 0 || o->idempotency_ttl_ms <= 0) {
        kl_err_set(err, KL_ERR_INVALID, "memory store: retention and TTLs must be positive");
        goto fail;
    }
    s = calloc(1, sizeof *s);
    m = calloc(1, sizeof *m);
    if (s == NULL || m == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "memory store: out of memory");
        goto fail;
    }
    if (pthread_mutex_init(&m->mu, NULL) != 0) {
        kl_err_set(err, KL_ERR_INTERNAL, "memory store: mutex init failed");
        goto fail;
    }
    mutex_ok = true;
    if (pthread_condattr_init(&attr) != 0) {
        kl_err_set(err, KL_ERR_INTERNAL, "memory store: condattr init failed");
        goto fail;
    }
    attr_ok = true;
    if (pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&m->cv, &attr) != 0) {
        kl_err_set(err, KL_ERR_INTERNAL, "memory store: condition variable init failed");
        goto fail;
    }
    (void)pthread_condattr_destroy(&attr);
    m->clock = o->clock != NULL ? o->clock : kl_clock_system();
    m->retention_ms = o->job_retention_ms;
    m->idem_ttl_ms = o->idempotency_ttl_ms;
    s->ops = &memory_ops;
    s->impl = m;
    return s;
fail:
    if (attr_ok)
        (void)pthread_condattr_destroy(&attr);
    if (mutex_ok)
        (void)pthread_mutex_destroy(&m->mu);
    free(m);
    free(s);
    return NULL;
}
