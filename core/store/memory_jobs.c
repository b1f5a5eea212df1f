/*
 * The in-process store's jobs (create, read, list, transitions, progress)
 * and the message budget, under the store's one mutex.
 */
#include "core/store/memory_internal.h"
#include "core/store/internal.h"
#include "core/util/clock.h"
#include "core/util/err.h"

#include <stdlib.h>
#include <string.h>

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

int kl_ms_job_create(void *impl, const struct kl_store_job_new *n,
                     char id_out[KL_STORE_JOB_ID_SIZE], bool *existing, struct kl_err *err)
{
    struct memory *m = impl;
    struct mjob *j = NULL, *act;
    bool has_key = n->idempotency_key != NULL && n->idempotency_key[0] != '\0';
    int rc;

    if ((rc = kl_ms_lock(m, err)) != KL_OK)
        return rc;
    kl_ms_purge(m);
    if (has_key) {
        for (size_t i = 0; i < m->n_idem; i++) {
            if (strcmp(m->idem[i].key, n->idempotency_key) == 0 &&
                kl_ms_find_job(m, m->idem[i].id)) {
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
    if ((rc = kl_ms_grow((void **)&m->jobs, &m->cap_jobs, m->n_jobs, sizeof(struct mjob *), err)) !=
        KL_OK)
        goto cleanup;
    if (has_key && (rc = kl_ms_grow((void **)&m->idem, &m->cap_idem, m->n_idem, sizeof *m->idem,
                                    err)) != KL_OK)
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
    j->s.created_ms = kl_ms_wall(m);
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
    kl_ms_free_job(j);
    kl_ms_unlock(m);
    return rc;
}

int kl_ms_job_get(void *impl, const char *id, struct kl_store_job *out, struct kl_err *err)
{
    struct memory *m = impl;
    struct mjob *j;
    int rc;

    if ((rc = kl_ms_lock(m, err)) != KL_OK)
        return rc;
    kl_ms_purge(m);
    j = kl_ms_find_job(m, id);
    if (j == NULL)
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", id);
    else
        rc = kl_ms_copy_job(&j->s, out, err);
    if (rc == KL_OK)
        out->read_ms = kl_clock_wall_ms(m->clock);
    kl_ms_unlock(m);
    return rc;
}

static int cmp_job_desc(const void *a, const void *b)
{
    return -strcmp((*(struct mjob *const *)a)->s.id, (*(struct mjob *const *)b)->s.id);
}

int kl_ms_job_list(void *impl, const struct kl_store_job_filter *f, struct kl_store_job_page *out,
                   struct kl_err *err)
{
    struct memory *m = impl;
    struct kl_store_job_page page = {0};
    int rc;

    if ((rc = kl_ms_lock(m, err)) != KL_OK)
        return rc;
    kl_ms_purge(m);
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
        if ((rc = kl_ms_copy_job(j, &page.jobs[page.n_jobs], err)) != KL_OK)
            goto cleanup;
        page.jobs[page.n_jobs].read_ms = kl_clock_wall_ms(m->clock);
        page.n_jobs++;
    }
    kl_store_job_page_free(out);
    *out = page;
    memset(&page, 0, sizeof page);
cleanup:
    kl_store_job_page_free(&page);
    kl_ms_unlock(m);
    return rc;
}

int kl_ms_job_status(void *impl, const char *id, enum kl_store_job_status *status,
                     bool *cancel_requested, struct kl_err *err)
{
    struct memory *m = impl;
    struct mjob *j;
    int rc;

    if ((rc = kl_ms_lock(m, err)) != KL_OK)
        return rc;
    kl_ms_purge(m);
    j = kl_ms_find_job(m, id);
    if (j == NULL) {
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", id);
    } else {
        *status = j->s.status;
        *cancel_requested = j->s.cancel_requested;
    }
    kl_ms_unlock(m);
    return rc;
}

int kl_ms_job_active(void *impl, const char *pipeline, const char *stream,
                     char id_out[KL_STORE_JOB_ID_SIZE], bool *found, struct kl_err *err)
{
    struct memory *m = impl;
    struct mjob *j;
    int rc;

    if ((rc = kl_ms_lock(m, err)) != KL_OK)
        return rc;
    j = active_job(m, pipeline, stream);
    *found = j != NULL;
    if (j != NULL)
        memcpy(id_out, j->s.id, KL_STORE_JOB_ID_SIZE);
    kl_ms_unlock(m);
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
        j->s.started_ms = kl_ms_wall(m);
        return;
    }
    j->s.finished_ms = kl_ms_wall(m);
    if (to == KL_STORE_JOB_FAILED && e != NULL) {
        j->s.has_error = true;
        kl_store_copy(j->s.error_type, sizeof j->s.error_type,
                      e->type != NULL ? e->type : "internal");
        kl_store_copy(j->s.error_detail, sizeof j->s.error_detail, e->detail);
        kl_store_copy(j->s.error_shard, sizeof j->s.error_shard, e->shard_id);
    }
}

int kl_ms_job_transition(void *impl, const char *id, enum kl_store_job_status to,
                         const struct kl_store_job_error *e, enum kl_store_job_status *now,
                         struct kl_err *err)
{
    struct memory *m = impl;
    struct mjob *j;
    int rc;

    if ((rc = kl_ms_lock(m, err)) != KL_OK)
        return rc;
    kl_ms_purge(m);
    j = kl_ms_find_job(m, id);
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
    kl_ms_unlock(m);
    return rc;
}

int kl_ms_job_cancel(void *impl, const char *id, enum kl_store_job_status *now, struct kl_err *err)
{
    struct memory *m = impl;
    struct mjob *j;
    int rc;

    if ((rc = kl_ms_lock(m, err)) != KL_OK)
        return rc;
    kl_ms_purge(m);
    j = kl_ms_find_job(m, id);
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
    kl_ms_unlock(m);
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
    if ((*rc = kl_ms_grow((void **)&j->s.shards, &j->cap_shards, j->s.n_shards, sizeof *j->s.shards,
                          err)) != KL_OK)
        return NULL;
    sp = &j->s.shards[j->s.n_shards++];
    memset(sp, 0, sizeof *sp);
    kl_store_copy(sp->position.shard_id, sizeof sp->position.shard_id, shard_id);
    sp->position.sub_sequence = -1;
    sp->millis_behind_latest = -1;
    sp->window = -1;
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
    if ((rc = kl_ms_grow((void **)&j->s.tables, &j->cap_tables, j->s.n_tables, sizeof *j->s.tables,
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
    if ((*rc = kl_ms_grow((void **)&j->reserved, &j->cap_reserved, j->n_reserved,
                          sizeof *j->reserved, err)) != KL_OK)
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

int kl_ms_budget_reserve(void *impl, const char *job_id, const char *shard_id, int64_t max_messages,
                         int64_t want, int64_t *granted, struct kl_err *err)
{
    struct memory *m = impl;
    struct mreserve *r;
    struct mjob *j;
    int64_t left;
    int rc;

    if ((rc = kl_ms_lock(m, err)) != KL_OK)
        return rc;
    j = kl_ms_find_job(m, job_id);
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
    kl_ms_unlock(m);
    return rc;
}

int kl_ms_budget_release(void *impl, const char *job_id, const char *shard_id, int64_t n,
                         struct kl_err *err)
{
    struct memory *m = impl;
    struct mjob *j;
    int rc;

    if ((rc = kl_ms_lock(m, err)) != KL_OK)
        return rc;
    j = kl_ms_find_job(m, job_id);
    if (j == NULL)
        rc = KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no job %s", job_id);
    else
        release_reserve(j, shard_id, n);
    kl_ms_unlock(m);
    return rc;
}

int kl_ms_job_progress(void *impl, const char *id, const struct kl_store_progress *p, bool *applied,
                       struct kl_err *err)
{
    struct memory *m = impl;
    struct kl_store_shard_progress *sp;
    struct mjob *j;
    bool apply = true;
    int rc;

    if ((rc = kl_ms_lock(m, err)) != KL_OK)
        return rc;
    j = kl_ms_find_job(m, id);
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
        if (p->last_arrival_ms > sp->last_arrival_ms)
            sp->last_arrival_ms = p->last_arrival_ms;
        if (p->committed_at_ms > 0)
            kl_store_rate_add(&sp->messages_per_s, &sp->rate_at_ms, p->messages,
                              p->committed_at_ms);
    }
    if (p->owner != NULL)
        kl_store_copy(sp->owner, sizeof sp->owner, p->owner);
    if (p->has_window && p->window > sp->window)
        sp->window = p->window;
    if (p->done)
        sp->done = true;
    if (p->gap != NULL) {
        sp->has_gap = true;
        sp->gap = *p->gap;
    }
    if (p->resumed_from != NULL) {
        kl_store_copy(sp->resumed_from, sizeof sp->resumed_from, p->resumed_from);
        kl_store_copy(sp->resumed_from_load_id, sizeof sp->resumed_from_load_id,
                      p->resumed_from_load_id != NULL ? p->resumed_from_load_id : "");
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
    kl_ms_unlock(m);
    return rc;
}
