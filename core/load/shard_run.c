/*
 * One shard task in the engine: take the shard's lease, claim the shard in
 * the destination with its token, read where to resume, run the task
 * (task.h) with hooks over the store (budget, progress, cancel, lease
 * renewal, waiting), then ack, release or retry the delivery.
 */
#include "core/load/engine_internal.h"
#include "core/dest/dest.h"
#include "core/load/plan.h"
#include "core/load/task.h"
#include "core/util/clock.h"
#include "core/util/err.h"
#include "core/util/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define WAIT_SHOW_AFTER_MS 5000 /* a Kinesis call slower than this shows in the job */
#define BUDGET_WAIT_MS 100      /* budget held by other shards: ask again after this */
#define BUDGET_WAITS 100        /* ... this often at most (10 s, well within a lease) */

/* The job and shard one running task works for: the hooks' context. */
struct shard_run {
    struct kl_worker *w;
    const struct kl_store_task *task;
    struct kl_store_shard_key key;
    int64_t token;
    int64_t slice_start_ms; /* monotonic: when the task last took or kept its worker */
    bool committed;         /* a chunk was committed in this delivery */
    /* the job shows the shard waiting on a Kinesis call (set on the task's
     * fetch thread, cleared on its commit path) */
    atomic_bool waiting_shown;
    _Atomic int64_t waiting_shown_ms;
    bool yielded; /* stopped at a chunk boundary to let waiting tasks run */
};

/* ---- task hooks ---- */

static bool budgeted(const struct shard_run *r)
{
    return r->w->params.max_messages >= 0;
}

/* The job's budget, granted by the store atomically across every worker. */
static int hook_reserve(void *ctx, int want, int *granted, struct kl_err *err)
{
    struct shard_run *r = ctx;
    int64_t g = 0;
    int rc;

    *granted = want;
    if (!budgeted(r))
        return KL_OK;
    for (int tries = 0;; tries++) {
        struct kl_store_job job;
        bool spent;

        rc = kl_store_budget_reserve(kl_worker_store(r->w), r->task->job_id, r->task->shard_id,
                                     r->w->params.max_messages, want, &g, err);
        if (rc != KL_OK || g > 0 || tries >= BUDGET_WAITS || atomic_load(&r->w->e->stopping))
            break;
        /* nothing granted: spent, or held by pages of other shards that may
         * give part of it back (a short page); wait for those a while */
        kl_store_job_init(&job);
        rc = kl_store_job_get(kl_worker_store(r->w), r->task->job_id, &job, err);
        spent = rc != KL_OK || job.messages >= r->w->params.max_messages ||
                kl_store_job_status_final(job.status);
        kl_store_job_free(&job);
        if (spent)
            break;
        kl_clock_sleep_ms(kl_engine_clock(r->w->e), BUDGET_WAIT_MS);
    }
    *granted = rc == KL_OK ? (int)g : 0;
    return rc;
}

/* A page came with fewer messages than reserved (or was dropped): the rest
 * goes back at once. What it holds leaves with its commit (released). */
static void hook_settle(void *ctx, int granted, int used)
{
    struct shard_run *r = ctx;
    struct kl_log_ctx log = {r->task->job_id, r->key.stream, r->key.shard_id};
    struct kl_err err;

    if (!budgeted(r) || used >= granted)
        return;
    if (kl_store_budget_release(kl_worker_store(r->w), r->task->job_id, r->task->shard_id,
                                granted - used, &err) != KL_OK)
        KL_WARN("load", &log, "giving back %d messages of the budget: %s (the task's end does)",
                granted - used, err.msg);
}

/* Releases all the shard's reservation: at a delivery's start (what an
 * earlier delivery that died left) and at its end. */
static void release_budget(struct shard_run *r)
{
    if (budgeted(r))
        kl_store_budget_release(kl_worker_store(r->w), r->task->job_id, r->task->shard_id, -1,
                                NULL);
}

static int hook_committed(void *ctx, const struct kl_shard_position *pos, size_t messages,
                          int64_t last_arrival_ms, int64_t millis_behind,
                          const struct kl_row_batch *batch, const struct kl_chunk_result *res,
                          struct kl_err *err)
{
    struct shard_run *r = ctx;
    struct kl_store_table_rows rows[64];
    struct kl_store_progress p;
    size_t n = 0;

    atomic_fetch_add(&r->w->e->messages, (uint64_t)messages);
    atomic_fetch_add(&r->w->e->rows, (uint64_t)res->rows);
    atomic_fetch_add(&r->w->e->dead_letters, (uint64_t)res->dead_letters);
    atomic_fetch_add(&r->w->e->chunks, 1);
    r->committed = true;
    kl_lag_note(&r->w->e->lags, r->key.pipeline, r->key.stream, r->key.shard_id, millis_behind);
    for (size_t i = 0; batch != NULL && i < batch->n_tables && n < 64; i++, n++) {
        struct kl_store_table_rows *t = &rows[n];
        snprintf(t->table, sizeof t->table, "%s",
                 batch->schema->tables[batch->tables[i].table].name);
        t->rows = (int64_t)batch->tables[i].n_rows;
    }
    memset(&p, 0, sizeof p);
    if (atomic_exchange(&r->waiting_shown, false))
        p.waiting_on = ""; /* the call it waited on answered */
    p.shard_id = r->task->shard_id;
    p.sequence = pos->sequence;
    p.sub_sequence = pos->sub_sequence;
    p.millis_behind_latest = millis_behind;
    p.messages = (int64_t)messages;
    p.dead_letters = batch != NULL ? (int64_t)batch->n_dead_letters : 0;
    p.tables = rows;
    p.released = budgeted(r) ? (int64_t)messages : 0;
    p.n_tables = n;
    p.owner = r->w->e->owner;
    p.last_arrival_ms = last_arrival_ms;
    p.committed_at_ms = kl_clock_wall_ms(kl_engine_clock(r->w->e));
    return kl_store_job_progress(kl_worker_store(r->w), r->task->job_id, &p, NULL, err);
}

/* A Kinesis call of the shard is being retried, or passed its deadline.
 * Calls that answer within WAIT_SHOW_AFTER_MS (a throttled read, say) are
 * not worth a store write; a longer wait shows in the job's progress (at
 * most once per WAIT_SHOW_AFTER_MS) and in the log, with the operation. */
static void hook_waiting(void *ctx, const char *operation, int64_t since_ms, int64_t until_ms,
                         const struct kl_err *why)
{
    struct shard_run *r = ctx;
    struct kl_store_progress p;
    struct kl_log_ctx log = {r->task->job_id, r->key.stream, r->key.shard_id};
    int64_t now = kl_clock_wall_ms(kl_engine_clock(r->w->e));

    if (now - since_ms < WAIT_SHOW_AFTER_MS ||
        (atomic_load(&r->waiting_shown) &&
         now - atomic_load(&r->waiting_shown_ms) < WAIT_SHOW_AFTER_MS && now < until_ms))
        return;
    KL_WARN("load", &log,
            "%s still without an answer after %lld ms (gives up %lld ms from now): %s", operation,
            (long long)(now - since_ms), (long long)(until_ms > now ? until_ms - now : 0),
            why != NULL ? why->msg : "");
    memset(&p, 0, sizeof p);
    p.shard_id = r->task->shard_id;
    p.millis_behind_latest = -1;
    p.waiting_on = operation;
    p.waiting_since_ms = since_ms;
    p.waiting_until_ms = until_ms;
    p.waiting_why = why != NULL ? why->msg : "";
    if (kl_store_job_progress(kl_worker_store(r->w), r->task->job_id, &p, NULL, NULL) == KL_OK) {
        atomic_store(&r->waiting_shown_ms, now);
        atomic_store(&r->waiting_shown, true);
    }
}

/* After a slice of work, a task yields its worker when other tasks wait,
 * so one wide stream's open shards cannot hold every worker until they
 * reach the tip while other jobs wait. */
static bool time_to_yield(struct shard_run *r)
{
    const struct kl_engine_config *cfg = &r->w->e->cfg;
    int64_t now = kl_clock_monotonic_ms(kl_engine_clock(r->w->e));
    struct kl_store_stats st;
    struct kl_err err;

    /* a task that committed nothing yet keeps going: yielding then would
     * hand the worker around without progress */
    if (cfg->task_slice_ms < 0 || !r->committed || now - r->slice_start_ms < cfg->task_slice_ms)
        return false;
    r->slice_start_ms = now; /* nobody waits: look again after another slice */
    if (kl_store_stats(cfg->store, &st, &err) != KL_OK || st.queued == 0)
        return false;
    r->yielded = true;
    return true;
}

static bool hook_cancelled(void *ctx)
{
    struct shard_run *r = ctx;
    enum kl_store_job_status status;
    bool cancel = false;
    struct kl_err err;

    if (atomic_load(&r->w->e->stopping) || time_to_yield(r))
        return true;
    if (kl_store_job_status(kl_worker_store(r->w), r->task->job_id, &status, &cancel, &err) !=
        KL_OK)
        return false; /* the store is away: go on, the commit path will tell */
    return cancel || kl_store_job_status_final(status);
}

/* A continuous load's shard at its tip gives its worker back when other
 * tasks wait for one: its next poll is a task of its own, due after the
 * poll interval. So a replica follows more shards than it has workers. */
static bool hook_yield_at_tip(void *ctx)
{
    struct shard_run *r = ctx;
    struct kl_store_stats st;
    struct kl_err err;

    /* delayed tasks count: the other shards' next polls, which only a
     * worker asking for a task makes ready */
    if (kl_store_stats(r->w->e->cfg.store, &st, &err) != KL_OK || st.queued + st.delayed == 0)
        return false;
    r->yielded = true;
    return true;
}

/* A continuous load's shard enters load window `k`: recorded with the
 * job, then the windows every reading shard has left are closed (by
 * whichever worker sees that first; closing is idempotent). A shard that
 * is done no longer holds a window open; one that has not started yet
 * will write into a window of its start, never into an earlier one. */
static int hook_window(void *ctx, int64_t k, struct kl_err *err)
{
    struct shard_run *r = ctx;
    struct kl_store *store = kl_worker_store(r->w);
    struct kl_store_progress p;
    struct kl_store_job job;
    int64_t low = -1;
    int rc;

    memset(&p, 0, sizeof p);
    p.shard_id = r->task->shard_id;
    p.millis_behind_latest = -1;
    p.has_window = true;
    p.window = k;
    rc = kl_store_job_progress(store, r->task->job_id, &p, NULL, err);
    if (rc != KL_OK)
        return rc;
    kl_store_job_init(&job);
    rc = kl_store_job_get(store, r->task->job_id, &job, err);
    for (size_t i = 0; rc == KL_OK && i < job.n_shards; i++) {
        const struct kl_store_shard_progress *s = &job.shards[i];
        if (!s->done && s->window >= 0 && (low < 0 || s->window < low))
            low = s->window;
    }
    kl_store_job_free(&job);
    if (rc == KL_OK && low > r->w->windows_closed)
        rc = kl_job_close_windows(r->w, r->w->windows_closed, low, err);
    return rc;
}

static int hook_renew(void *ctx, struct kl_err *err)
{
    struct shard_run *r = ctx;
    const struct kl_engine_config *cfg = &r->w->e->cfg;
    int rc =
        kl_store_lease_renew(cfg->store, &r->key, r->w->owner, r->token, cfg->shard_lease_ms, err);
    if (rc == KL_OK)
        rc = kl_store_task_heartbeat(cfg->store, r->task, cfg->task_lease_ms, err);
    return rc;
}

/* The job shows where the shard resumed: our checkpoint, dlt's pipeline
 * state (and which load of it), or nothing stored. A report only: a store
 * that is away is not worth failing the task for. */
static void show_origin(struct shard_run *r, enum kl_state_origin origin, const char *dlt_load_id)
{
    struct kl_store_progress p;

    memset(&p, 0, sizeof p);
    p.shard_id = r->task->shard_id;
    p.millis_behind_latest = -1;
    p.resumed_from = kl_state_origin_name(origin);
    p.resumed_from_load_id = origin == KL_STATE_DLT ? dlt_load_id : "";
    p.owner = r->w->e->owner;
    kl_store_job_progress(kl_worker_store(r->w), r->task->job_id, &p, NULL, NULL);
}

/* ---- a shard task ---- */

void kl_shard_run(struct kl_worker *w, const struct kl_store_task *t)
{
    const struct kl_engine_config *cfg = &w->e->cfg;
    struct kl_dest_state state;
    struct kl_shard_position resume;
    struct kl_task_env env;
    struct kl_task_spec spec;
    struct kl_task_hooks hooks;
    struct kl_task_result result;
    struct kl_store_progress done;
    struct shard_run r;
    struct kl_shard_task_desc desc;
    bool have_resume = false, from_parent = false;
    enum kl_state_origin origin = KL_STATE_NONE;
    int64_t min_token = 0;
    struct kl_err err;
    int rc;

    kl_dest_state_init(&state);
    if (kl_shard_task_desc_parse(t->meta, &desc) != 0) {
        rc = kl_err_set(&err, KL_ERR_INTERNAL, "shard task %s has no description ('%.64s')",
                        t->shard_id, t->meta);
        goto failed;
    }
    /* Only the stored fencing token, so that the lease's token is above it
     * even when the store lost its counters. The position is read after the
     * claim below: read now, it could move before the lease is ours. */
    rc = kl_dest_read_state(w->dest, w->params.dataset_name, w->params.pipeline_name,
                            w->params.stream, &state, &err);
    if (rc != KL_OK)
        goto failed;
    for (size_t i = 0; i < state.n_checkpoints; i++)
        if (strcmp(state.checkpoints[i].position.shard_id, t->shard_id) == 0)
            min_token = state.checkpoints[i].fencing_token;
    kl_dest_state_free(&state);

    memset(&r, 0, sizeof r);
    r.w = w;
    r.task = t;
    r.key.pipeline = w->params.pipeline_name;
    r.key.stream = w->params.stream;
    r.key.shard_id = t->shard_id;
    r.slice_start_ms = kl_clock_monotonic_ms(kl_engine_clock(w->e));
    rc = kl_store_lease_take(cfg->store, &r.key, w->owner, cfg->shard_lease_ms, min_token, &r.token,
                             &err);
    if (rc == KL_ERR_CONFLICT) {
        /* a worker that vanished still holds it: try again after its lease */
        kl_store_task_release(cfg->store, t, cfg->shard_lease_ms, NULL);
        goto cleanup;
    }
    if (rc != KL_OK)
        goto failed;
    atomic_fetch_add(&w->e->leases_held, 1);

    /* Claim the shard in the destination with the lease's token before
     * reading where to resume: from then on a former owner (a stalled
     * worker, or one whose lease the store forgot) can commit nothing, so
     * nobody but us moves the position read next. A newer token stored
     * there (KL_ERR_CONFLICT) means a newer owner: as a lost lease, below. */
    rc = kl_dest_claim_shard(w->dest, w->params.dataset_name, w->params.pipeline_name,
                             w->params.stream, t->shard_id, r.token, &err);
    if (rc == KL_OK)
        rc = kl_dest_read_state(w->dest, w->params.dataset_name, w->params.pipeline_name,
                                w->params.stream, &state, &err);
    if (rc != KL_OK) {
        kl_store_lease_release(cfg->store, &r.key, w->owner, r.token, NULL);
        atomic_fetch_sub(&w->e->leases_held, 1);
        goto failed;
    }
    for (size_t i = 0; i < state.n_checkpoints; i++) {
        const struct kl_checkpoint *c = &state.checkpoints[i];
        /* a claimed shard that nobody committed to yet has no position */
        if (c->position.sequence[0] == '\0')
            continue;
        if (strcmp(c->position.shard_id, t->shard_id) == 0) {
            resume = c->position;
            have_resume = true;
            origin = state.origins != NULL ? state.origins[i] : KL_STATE_OURS;
        }
        from_parent = from_parent ||
                      (desc.parents[0][0] && strcmp(c->position.shard_id, desc.parents[0]) == 0) ||
                      (desc.parents[1][0] && strcmp(c->position.shard_id, desc.parents[1]) == 0);
    }

    if (!have_resume)
        origin = state.has_last_run ? state.last_run_origin : KL_STATE_NONE;
    show_origin(&r, origin, state.dlt_load_id);

    memset(&env, 0, sizeof env);
    env.client = cfg->client;
    env.dest = w->dest;
    env.normalizer = w->norm;
    env.clock = cfg->clock;
    env.min_call_interval_ms = cfg->min_call_interval_ms;
    env.max_bytes_per_s = cfg->max_bytes_per_s;
    env.memory = w->e->pages;
    env.rows_allowance = w->e->rows_target;
    env.commit_latency = &w->e->commit_latency;
    env.schema_version_written = &w->schema_written;
    memset(&spec, 0, sizeof spec);
    spec.params = &w->params;
    spec.job_id = t->job_id;
    spec.load_id = w->load_id;
    spec.job_created_ms = w->job_created_ms;
    spec.shard_id = t->shard_id;
    spec.shard_closed = desc.closed;
    spec.resume = have_resume ? &resume : NULL;
    spec.fencing_token = r.token;
    kl_choose_start(spec.resume, state.has_last_run ? state.last_run_ms : -1, from_parent,
                    &w->params.initial, &spec.start);
    /* A continuous load's task may end at the tip before its shard had a
     * record (hook_yield_at_tip): LATEST again on its next poll would skip
     * what arrived in between, so it reads from the job's creation on. */
    if (w->params.continuous && spec.start.type == KL_ITER_LATEST) {
        spec.start.type = KL_ITER_AT_TIMESTAMP;
        spec.start.timestamp_ms = w->job_created_ms;
    }
    memset(&hooks, 0, sizeof hooks);
    hooks.ctx = &r;
    hooks.reserve = hook_reserve;
    hooks.settle = hook_settle;
    hooks.committed = hook_committed;
    hooks.cancelled = hook_cancelled;
    hooks.yield_at_tip = hook_yield_at_tip;
    hooks.window = hook_window;
    hooks.renew = hook_renew;
    hooks.waiting = hook_waiting;

    release_budget(&r);
    rc = kl_task_run(&env, &spec, &hooks, &result, &err);
    release_budget(&r);
    kl_store_lease_release(cfg->store, &r.key, w->owner, r.token, NULL);
    atomic_fetch_sub(&w->e->leases_held, 1);
    if (rc != KL_OK)
        goto failed;
    if (result.end == KL_TASK_AT_TIP) {
        /* the shard's next poll: queued again, due after the poll interval */
        atomic_fetch_add(&w->e->task_yields, 1);
        kl_store_task_release(cfg->store, t, w->params.poll_interval_ms, NULL);
        goto cleanup;
    }
    if (result.end == KL_TASK_CANCELLED && (atomic_load(&w->e->stopping) || r.yielded)) {
        /* this replica is stopping, or the task yields: not the job. Queued
         * behind the waiting tasks, it continues from its checkpoint. */
        if (r.yielded)
            atomic_fetch_add(&w->e->task_yields, 1);
        kl_store_task_release(cfg->store, t, 0, NULL);
        goto cleanup;
    }
    kl_lag_note(&w->e->lags, r.key.pipeline, r.key.stream, r.key.shard_id, result.millis_behind);
    memset(&done, 0, sizeof done);
    done.shard_id = t->shard_id;
    done.millis_behind_latest = result.millis_behind;
    done.done = true;
    done.waiting_on = ""; /* whatever it waited on answered */
    if (result.has_gap)
        done.gap = &result.gap;
    rc = kl_store_job_progress(cfg->store, t->job_id, &done, NULL, &err);
    /* children are queued before the parent's ack, so the job cannot look finished between */
    if (rc == KL_OK && result.end == KL_TASK_DRAINED)
        rc = kl_plan_children(w, t, &err);
    if (rc != KL_OK)
        goto failed;
    kl_job_task_done(w, t);
    goto cleanup;

failed:
    if (rc == KL_ERR_CONFLICT) {
        /* the lease went to a newer owner: its delivery finishes the task */
        kl_store_task_release(cfg->store, t, cfg->shard_lease_ms, NULL);
    } else if (kl_err_retryable((enum kl_err_code)rc) || rc == KL_ERR_EXPIRED) {
        kl_job_task_retry(w, t, &err);
    } else {
        atomic_fetch_add(&w->e->task_failures, 1);
        kl_job_fail(w, t->job_id, t->shard_id, &err);
        kl_job_task_done(w, t);
    }
cleanup:
    kl_dest_state_free(&state);
}
