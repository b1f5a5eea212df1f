/*
 * The shard task loop (see task.h). The order inside a chunk is what makes a
 * load exactly-once: fetch, normalise, then one destination transaction with
 * the rows and the checkpoint of the chunk's last message; only after the
 * commit do counters move. The next page is fetched while a chunk is being
 * written (one page in flight per shard, on a thread of the task's own), so
 * Kinesis and the destination work at the same time; a page fetched ahead
 * is only ever loaded after the chunk before it committed, and is dropped
 * (its budget given back) when the task stops first.
 */
#include "core/load/task.h"
#include "core/normalize/normalizer.h"
#include "core/normalize/schema.h"
#include "core/util/buf.h"
#include "core/util/clock.h"
#include "core/util/err.h"
#include "core/util/histogram.h"
#include "core/util/log.h"
#include "core/util/rand.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHEMA_RELOADS 3
#define SCHEMA_JSON_MAX ((size_t)64 << 20)

struct run {
    const struct kl_task_env *env;
    const struct kl_task_spec *spec;
    const struct kl_task_hooks *hooks;
    struct kl_task_result *result;
    const struct kl_clock *clock;
    struct kl_log_ctx log;
    int64_t window; /* a continuous load's load window; -1 before the first */
};

/* Normalises messages [from, to) into a fresh chunk of the normaliser. */
static int normalise(struct run *r, const struct kl_chunk *c, size_t from, size_t to,
                     struct kl_err *err)
{
    kl_normalizer_reset(r->env->normalizer, false);
    for (size_t i = from; i < to; i++) {
        int rc = kl_normalizer_add(r->env->normalizer, &c->messages[i], err);
        if (rc != KL_OK)
            return rc;
    }
    return KL_OK;
}

/* The destination holds a newer schema (another worker added a column with
 * another type): continue from it. */
static int reload_schema(struct run *r, struct kl_err *err)
{
    const struct kl_schema *live = kl_normalizer_schema(r->env->normalizer);
    struct kl_schema *fresh = NULL;
    char *json = NULL;
    int64_t version = 0;
    int rc;

    rc = kl_dest_load_schema(r->env->dest, r->spec->params->dataset_name, live->name, &json,
                             &version, err);
    if (rc != KL_OK)
        goto cleanup;
    if (json == NULL) {
        rc = kl_err_set(err, KL_ERR_INTERNAL,
                        "the destination called the schema stale but has "
                        "none stored");
        goto cleanup;
    }
    rc = kl_schema_from_json(json, strlen(json), &fresh, err);
    if (rc != KL_OK)
        goto cleanup;
    rc = kl_normalizer_replace_schema(r->env->normalizer, fresh, err);
    fresh = NULL; /* taken over, even on failure */
    if (rc == KL_OK && r->env->schema_version_written != NULL)
        *r->env->schema_version_written = version;
    KL_INFO("load", &r->log, "reloaded schema version %lld from the destination",
            (long long)version);

cleanup:
    kl_schema_destroy(fresh);
    free(json);
    return rc;
}

/* True when the destination's checkpoint of the shard already covers `cp`. */
static bool committed_anyway(struct run *r, const struct kl_checkpoint *cp)
{
    const struct kl_load_params *p = r->spec->params;
    struct kl_dest_state state;
    struct kl_err err;
    bool covered = false;

    kl_dest_state_init(&state);
    if (kl_dest_read_state(r->env->dest, p->dataset_name, p->pipeline_name, p->stream, &state,
                           &err) == KL_OK) {
        for (size_t i = 0; i < state.n_checkpoints; i++) {
            const struct kl_checkpoint *s = &state.checkpoints[i];
            if (strcmp(s->position.shard_id, cp->position.shard_id) == 0)
                covered = kl_position_cmp(s->position.sequence, s->position.sub_sequence,
                                          cp->position.sequence, cp->position.sub_sequence) >= 0;
        }
    }
    kl_dest_state_free(&state);
    return covered;
}

/* Writes the closed chunk with the checkpoint of message `last`, retrying
 * what may pass. */
static int write_batch(struct run *r, const struct kl_row_batch *batch,
                       const struct kl_message *last, struct kl_chunk_result *res,
                       struct kl_err *err)
{
    const struct kl_schema *schema = kl_normalizer_schema(r->env->normalizer);
    const struct kl_load_params *p = r->spec->params;
    struct kl_checkpoint cp;
    struct kl_chunk_write w;
    struct kl_buf json;
    int attempts = r->env->write_attempts > 0 ? r->env->write_attempts : 5;
    int rc = KL_OK;

    kl_buf_init(&json, SCHEMA_JSON_MAX);
    memset(&cp, 0, sizeof cp);
    kl_position_set(&cp.position, r->spec->shard_id, last->sequence, last->sub_sequence);
    cp.fencing_token = r->spec->fencing_token;

    memset(&w, 0, sizeof w);
    w.load_id = r->spec->load_id;
    w.pipeline_name = p->pipeline_name;
    w.stream_name = p->stream;
    w.disposition = p->write_disposition;
    w.batch = batch;
    w.checkpoints = &cp;
    w.n_checkpoints = 1;
    if (r->env->schema_version_written == NULL ||
        *r->env->schema_version_written != schema->version) {
        rc = kl_schema_to_json(schema, &json, err);
        if (rc != KL_OK)
            goto cleanup;
        w.schema_json = json.data;
        w.schema_hash = schema->version_hash;
    }
    for (int n = 1;; n++) {
        memset(res, 0, sizeof *res);
        rc = kl_dest_write_chunk(r->env->dest, p->dataset_name, &w, res, err);
        if (rc != KL_ERR_UNAVAILABLE || n >= attempts)
            break;
        /* The connection broke: the commit may have happened anyway. Only
         * the destination's checkpoint can tell, and a chunk is never
         * written twice. */
        if (committed_anyway(r, &cp)) {
            KL_INFO("load", &r->log,
                    "the chunk up to %s was committed before the connection "
                    "broke",
                    cp.position.sequence);
            res->rows = 0;
            for (size_t t = 0; batch != NULL && t < batch->n_tables; t++)
                res->rows += batch->tables[t].n_rows;
            res->dead_letters = batch != NULL ? batch->n_dead_letters : 0;
            rc = KL_OK;
            break;
        }
        KL_WARN("load", &r->log, "writing a chunk failed (try %d of %d), retrying: %s", n, attempts,
                err ? err->msg : "");
        /* jittered backoff: 100 ms, 200 ms, ... up to 3.2 s */
        kl_clock_sleep_ms(r->clock, (int64_t)kl_rand_below((uint64_t)100 << (n < 6 ? n : 5)));
    }
    if (rc == KL_OK && r->env->schema_version_written != NULL)
        *r->env->schema_version_written = schema->version;

cleanup:
    kl_buf_free(&json);
    return rc;
}

/* Loads messages [from, to) of the chunk: normalise (unless `normalised`:
 * the normaliser already holds exactly them), write, count. */
static int load_range(struct run *r, const struct kl_chunk *c, size_t from, size_t to,
                      bool normalised, struct kl_err *err)
{
    struct kl_row_batch batch;
    struct kl_chunk_result res;
    int64_t last_arrival = 0;
    int rc = KL_OK;

    for (int reload = 0;; reload++) {
        rc = normalised && reload == 0 ? KL_OK : normalise(r, c, from, to, err);
        if (rc == KL_OK)
            rc = kl_normalizer_close(r->env->normalizer, &batch, err);
        if (rc == KL_OK)
            rc = write_batch(r, &batch, &c->messages[to - 1], &res, err);
        if (rc != KL_ERR_EXPIRED || reload >= SCHEMA_RELOADS)
            break;
        rc = reload_schema(r, err);
        if (rc != KL_OK)
            break;
    }
    if (rc != KL_OK) {
        kl_normalizer_reset(r->env->normalizer, false);
        return rc;
    }
    for (size_t i = from; i < to; i++)
        if (c->messages[i].arrival_ms > last_arrival)
            last_arrival = c->messages[i].arrival_ms;
    if (r->env->commit_latency != NULL) {
        int64_t now = kl_clock_wall_ms(r->clock);
        for (size_t i = from; i < to; i++)
            if (c->messages[i].arrival_ms > 0)
                kl_histogram_observe(r->env->commit_latency, now - c->messages[i].arrival_ms);
    }
    r->result->messages += to - from;
    r->result->chunks++;
    snprintf(r->result->position.sequence, sizeof r->result->position.sequence, "%s",
             c->messages[to - 1].sequence);
    r->result->position.sub_sequence = c->messages[to - 1].sub_sequence;
    if (r->hooks->committed != NULL)
        rc = r->hooks->committed(r->hooks->ctx, &r->result->position, to - from, last_arrival,
                                 c->millis_behind, &batch, &res, err);
    kl_normalizer_reset(r->env->normalizer, true);
    return rc;
}

/* Loads a fetched chunk, in parts where the normaliser's rows pass their
 * target (each part ends with the message that passed it) or its hard cap
 * (KL_ERR_LIMIT mid-message: that message starts the next part). */
static int load_chunk(struct run *r, const struct kl_chunk *c, struct kl_err *err)
{
    size_t from = 0;

    while (from < c->n_messages) {
        size_t to = from;
        int rc = KL_OK;

        kl_normalizer_reset(r->env->normalizer, false);
        while (to < c->n_messages) {
            rc = kl_normalizer_add(r->env->normalizer, &c->messages[to], err);
            if (rc != KL_OK)
                break;
            to++;
            if (kl_normalizer_full(r->env->normalizer))
                break;
        }
        if (rc == KL_ERR_LIMIT && to == from)
            return kl_err_set(err, KL_ERR_LIMIT, "message %s of shard %s is too large to normalise",
                              c->messages[from].sequence, c->shard_id);
        if (rc != KL_OK && rc != KL_ERR_LIMIT)
            return rc;
        /* after KL_ERR_LIMIT the normaliser holds part of message `to`: redo */
        rc = load_range(r, c, from, to, rc == KL_OK, err);
        if (rc != KL_OK)
            return rc;
        from = to;
    }
    return KL_OK;
}

/* ---- the page fetched ahead ----
 * One thread per task fetches the next page while the task writes the
 * current one. Only that thread touches the cursor while a fetch is out. */
struct prefetch {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    bool started;
    struct kl_cursor *cursor;
    /* the request, and its answer */
    bool asked, answered, quit;
    int limit;
    struct kl_chunk *out;
    int rc;
    struct kl_err err;
};

static void *prefetch_main(void *arg)
{
    struct prefetch *f = arg;

    pthread_mutex_lock(&f->lock);
    for (;;) {
        while (!f->asked && !f->quit)
            pthread_cond_wait(&f->cv, &f->lock);
        if (f->quit)
            break;
        pthread_mutex_unlock(&f->lock);
        f->rc = kl_cursor_fetch(f->cursor, f->limit, f->out, &f->err);
        pthread_mutex_lock(&f->lock);
        f->asked = false;
        f->answered = true;
        pthread_cond_broadcast(&f->cv);
    }
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

static int prefetch_init(struct prefetch *f, struct kl_cursor *cursor, struct kl_err *err)
{
    memset(f, 0, sizeof *f);
    f->cursor = cursor;
    if (pthread_mutex_init(&f->lock, NULL) != 0)
        return kl_err_set(err, KL_ERR_INTERNAL, "pthread_mutex_init failed");
    if (pthread_cond_init(&f->cv, NULL) != 0) {
        pthread_mutex_destroy(&f->lock);
        return kl_err_set(err, KL_ERR_INTERNAL, "pthread_cond_init failed");
    }
    if (pthread_create(&f->thread, NULL, prefetch_main, f) != 0) {
        pthread_cond_destroy(&f->cv);
        pthread_mutex_destroy(&f->lock);
        return kl_err_set(err, KL_ERR_NOMEM, "cannot start a shard's fetch thread");
    }
    f->started = true;
    return KL_OK;
}

/* Asks for the next page of at most `limit` records into `out`. */
static void prefetch_ask(struct prefetch *f, int limit, struct kl_chunk *out)
{
    pthread_mutex_lock(&f->lock);
    f->limit = limit;
    f->out = out;
    f->answered = false;
    f->asked = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->lock);
}

/* Waits for the page asked for; its kl_cursor_fetch result. */
static int prefetch_wait(struct prefetch *f, struct kl_err *err)
{
    int rc;
    pthread_mutex_lock(&f->lock);
    while (!f->answered)
        pthread_cond_wait(&f->cv, &f->lock);
    f->answered = false;
    rc = f->rc;
    if (rc != KL_OK && err != NULL)
        *err = f->err;
    pthread_mutex_unlock(&f->lock);
    return rc;
}

/* Waits for a fetch still out, then ends the thread. */
static void prefetch_free(struct prefetch *f)
{
    if (!f->started)
        return;
    pthread_mutex_lock(&f->lock);
    while (f->asked)
        pthread_cond_wait(&f->cv, &f->lock);
    f->quit = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->lock);
    pthread_join(f->thread, NULL);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->lock);
    f->started = false;
}

/* Asks for the page after the current one, budget permitting: `*granted`
 * is what was reserved for it, 0 when the budget is spent. */
static int ask_next(struct run *r, struct prefetch *f, struct kl_chunk *into, int *granted,
                    struct kl_err *err)
{
    int rc;
    *granted = r->spec->params->chunk_size;
    if (r->hooks->reserve != NULL) {
        rc = r->hooks->reserve(r->hooks->ctx, r->spec->params->chunk_size, granted, err);
        if (rc != KL_OK) {
            *granted = 0;
            return rc;
        }
        if (*granted <= 0) {
            *granted = 0;
            return KL_OK;
        }
    }
    prefetch_ask(f, *granted, into);
    return KL_OK;
}

/* A continuous load: the load window of now, told to the job when it
 * changed, and its load id given to the normaliser for the next chunk. */
static int enter_window(struct run *r, struct kl_err *err)
{
    const struct kl_load_params *p = r->spec->params;
    int64_t k = kl_load_window_at(p, r->spec->job_created_ms, kl_clock_wall_ms(r->clock));
    char id[KL_LOAD_ID_MAX];
    int rc;

    if (k == r->window)
        return KL_OK;
    if (r->hooks->window != NULL) {
        rc = r->hooks->window(r->hooks->ctx, k, err);
        if (rc != KL_OK)
            return rc;
    }
    kl_load_window_id(p, r->spec->job_created_ms, k, id);
    rc = kl_normalizer_set_load_id(r->env->normalizer, id, err);
    if (rc == KL_OK)
        r->window = k;
    return rc;
}

/* A page at its shard's tip: not full, and no MillisBehindLatest above 0
 * (the cursor's rule for the poll interval). */
static bool at_tip(const struct kl_chunk *c, int limit)
{
    return c->n_records < (size_t)limit && c->millis_behind <= 0;
}

int kl_task_run(const struct kl_task_env *env, const struct kl_task_spec *spec,
                const struct kl_task_hooks *hooks, struct kl_task_result *result,
                struct kl_err *err)
{
    static const struct kl_task_hooks no_hooks = {0};
    struct kl_cursor_options co;
    struct kl_cursor *cursor = NULL;
    struct kl_chunk chunks[2];
    struct prefetch pf;
    struct run r;
    int pending = 0; /* budget reserved for the page asked for and not yet taken */
    int rc = KL_OK;

    memset(&pf, 0, sizeof pf);
    memset(result, 0, sizeof *result);
    result->millis_behind = -1;
    result->position.sub_sequence = -1;
    snprintf(result->position.shard_id, sizeof result->position.shard_id, "%s", spec->shard_id);
    if (spec->resume != NULL)
        result->position = *spec->resume;
    r.env = env;
    r.spec = spec;
    r.hooks = hooks != NULL ? hooks : &no_hooks;
    r.result = result;
    r.clock = env->clock != NULL ? env->clock : kl_clock_system();
    r.log.job_id = spec->job_id != NULL ? spec->job_id : spec->load_id;
    r.log.stream = spec->params->stream;
    r.log.shard = spec->shard_id;
    r.window = -1;
    kl_chunk_init(&chunks[0]);
    kl_chunk_init(&chunks[1]);

    memset(&co, 0, sizeof co);
    co.client = env->client;
    co.stream = spec->params->stream;
    co.shard_id = spec->shard_id;
    co.start = spec->start;
    co.resume = spec->resume;
    co.job_id = r.log.job_id;
    co.millis_behind_latest = spec->params->millis_behind_latest;
    /* a continuous load follows the tip: only a closed shard ends */
    co.stop_at_arrival_ms = spec->params->continuous ? 0 : spec->job_created_ms;
    co.poll_interval_ms = spec->params->continuous ? spec->params->poll_interval_ms : 0;
    co.waiting = r.hooks->waiting;
    co.waiting_ctx = r.hooks->ctx;
    co.min_call_interval_ms = env->min_call_interval_ms;
    co.max_bytes_per_s = env->max_bytes_per_s;
    co.memory = env->memory;
    co.rows_allowance = env->rows_allowance;
    co.read_to_end = spec->shard_closed || spec->params->continuous;
    co.clock = r.clock;
    cursor = kl_cursor_create(&co, err);
    if (cursor == NULL) {
        rc = err != NULL ? (int)err->code : KL_ERR_INTERNAL;
        goto cleanup;
    }

    rc = prefetch_init(&pf, cursor, err);
    if (rc != KL_OK)
        goto cleanup;
    if (r.hooks->cancelled != NULL && r.hooks->cancelled(r.hooks->ctx)) {
        result->end = KL_TASK_CANCELLED;
        goto done;
    }
    rc = ask_next(&r, &pf, &chunks[0], &pending, err);
    if (rc != KL_OK)
        goto cleanup;
    if (pending == 0) {
        result->end = KL_TASK_BUDGET;
        goto done;
    }
    for (int cur = 0;; cur = 1 - cur) {
        struct kl_chunk *c = &chunks[cur];
        int granted = pending;
        bool stop = false;
        enum kl_task_end stop_end = KL_TASK_CANCELLED;

        pending = 0;
        rc = prefetch_wait(&pf, err);
        if (r.hooks->settle != NULL)
            r.hooks->settle(r.hooks->ctx, granted, rc == KL_OK ? (int)c->n_messages : 0);
        if (rc != KL_OK)
            goto cleanup;
        /* the fetch thread is idle now: the cursor may be read */
        if (kl_cursor_gap(cursor) != NULL) {
            result->has_gap = true;
            result->gap = *kl_cursor_gap(cursor);
        }
        /* the next page comes while this one is written */
        if (!c->shard_done) {
            if (r.hooks->cancelled != NULL && r.hooks->cancelled(r.hooks->ctx)) {
                stop = true;
            } else if (spec->params->continuous && at_tip(c, spec->params->chunk_size) &&
                       r.hooks->yield_at_tip != NULL && r.hooks->yield_at_tip(r.hooks->ctx)) {
                stop = true;
                stop_end = KL_TASK_AT_TIP;
            } else {
                rc = ask_next(&r, &pf, &chunks[1 - cur], &pending, err);
                if (rc != KL_OK)
                    goto cleanup;
                if (pending == 0) {
                    stop = true;
                    stop_end = KL_TASK_BUDGET;
                }
            }
        }
        if (spec->params->continuous) {
            rc = enter_window(&r, err);
            if (rc != KL_OK)
                goto cleanup;
        }
        if (c->n_messages > 0) {
            rc = load_chunk(&r, c, err);
            if (rc != KL_OK)
                goto cleanup;
        }
        result->millis_behind = c->millis_behind;
        if (c->shard_done) {
            result->end = c->shard_closed ? KL_TASK_DRAINED : KL_TASK_CAUGHT_UP;
            break;
        }
        /* loaded: its memory goes back before the wait for the next page,
         * which may be waiting for exactly that (KL_MEMORY_MAX) */
        kl_chunk_empty(c);
        if (stop) {
            result->end = stop_end;
            break;
        }
        if (r.hooks->renew != NULL) {
            rc = r.hooks->renew(r.hooks->ctx, err);
            if (rc != KL_OK)
                goto cleanup;
        }
    }
done:
    rc = KL_OK;

cleanup:
    if (pending > 0) {
        /* a page fetched ahead that will not be loaded: its budget goes back */
        prefetch_wait(&pf, NULL);
        if (r.hooks->settle != NULL)
            r.hooks->settle(r.hooks->ctx, pending, 0);
    }
    prefetch_free(&pf);
    if (rc != KL_OK && err != NULL)
        KL_WARN("load", &r.log, "shard task stopped: %s", err->msg);
    kl_chunk_free(&chunks[0]);
    kl_chunk_free(&chunks[1]);
    kl_cursor_destroy(cursor);
    return rc;
}
