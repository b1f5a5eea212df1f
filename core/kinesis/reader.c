/*
 * The whole-stream reader (see reader.h): fetch threads pull pages from
 * shard cursors into per-shard slots; the consumer takes them round-robin
 * and commits. One mutex guards all shared state; network calls happen
 * outside it.
 */
#include "core/kinesis/reader.h"
#include "core/kinesis/lineage.h"
#include "core/util/err.h"
#include "core/util/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONCURRENCY 64

enum shard_state {
    S_WAITING,  /* parents not drained yet */
    S_READY,    /* may be fetched */
    S_FETCHING, /* a fetch thread is reading a page */
    S_FULL,     /* a page waits for the consumer */
    S_TAKEN,    /* the consumer holds the page until it commits */
    S_DONE,     /* nothing more in this read */
};

struct rshard {
    struct kl_shard meta;
    enum shard_state state;
    struct kl_cursor *cursor;
    struct kl_chunk chunk;
    struct kl_shard_position position;
    uint64_t messages;
    int64_t millis_behind;
    bool drained;
};

struct kl_reader {
    struct kl_reader_options o;
    char stream[KL_STREAM_NAME_MAX];
    char only_shard[KL_SHARD_ID_MAX];
    struct kl_shard_position *stored; /* positions given at creation */
    size_t n_stored;
    struct kl_shard_list list; /* every shard known, for lineage */
    struct rshard **shards;
    size_t n_shards;
    pthread_mutex_t lock;
    pthread_cond_t fetch_cv;
    pthread_cond_t deliver_cv;
    pthread_t threads[MAX_CONCURRENCY];
    int n_threads;
    bool stopping;
    bool relist_needed;
    bool relisting;
    int error;
    struct kl_err err;
    int64_t remaining; /* budget left; INT64_MAX when unlimited */
    int64_t reserved;  /* budget promised to fetches in flight */
    int in_flight;     /* shards FETCHING, FULL or TAKEN */
    size_t fetch_rr;
    size_t deliver_rr;
    uint64_t messages;
};

static const struct kl_shard_position *stored_position(const struct kl_reader *r, const char *id)
{
    for (size_t i = 0; i < r->n_stored; i++) {
        if (strcmp(r->stored[i].shard_id, id) == 0)
            return &r->stored[i];
    }
    return NULL;
}

static struct rshard *find_shard(const struct kl_reader *r, const char *id)
{
    for (size_t i = 0; i < r->n_shards; i++) {
        if (strcmp(r->shards[i]->meta.id, id) == 0)
            return r->shards[i];
    }
    return NULL;
}

static bool is_drained(void *ctx, const char *id)
{
    const struct rshard *s = find_shard(ctx, id);
    return s == NULL || s->drained;
}

static bool has_position(void *ctx, const char *id)
{
    const struct rshard *s = find_shard(ctx, id);
    return s != NULL && s->position.sequence[0] != '\0';
}

static bool cancelled(const struct kl_reader *r)
{
    return r->o.cancel != NULL && atomic_load(r->o.cancel);
}

/* Adds a shard from the listing; its state depends on its stored position. */
static int add_shard(struct kl_reader *r, const struct kl_shard *meta, struct kl_err *err)
{
    const struct kl_shard_position *pos = stored_position(r, meta->id);
    struct rshard **grown, *s;

    grown = realloc(r->shards, (r->n_shards + 1) * sizeof(struct rshard *));
    if (grown == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "out of memory tracking shards");
    r->shards = grown;
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "out of memory tracking shards");
    s->meta = *meta;
    s->state = S_WAITING;
    s->millis_behind = -1;
    s->position.sub_sequence = -1;
    snprintf(s->position.shard_id, sizeof s->position.shard_id, "%s", meta->id);
    if (pos != NULL)
        s->position = *pos;
    kl_chunk_init(&s->chunk);
    /* A closed shard is always read to its end (NextShardIterator null), even
     * when its stored position looks like its EndingSequenceNumber: that field
     * is not always the last record's sequence (kinesis-mock reports
     * Long.MAX_VALUE), and two calls are a small price for not skipping data. */
    r->shards[r->n_shards++] = s;
    return KL_OK;
}

/* WAITING shards whose parents are drained get a cursor and become READY.
 * Called with the lock held; no I/O. */
static void promote(struct kl_reader *r)
{
    for (size_t i = 0; i < r->n_shards; i++) {
        struct rshard *s = r->shards[i];
        struct kl_cursor_options co;
        struct kl_err err;

        if (s->state != S_WAITING)
            continue;
        if (r->only_shard[0] == '\0' &&
            !kl_shard_parents_drained(&r->list, &s->meta, is_drained, r))
            continue;
        memset(&co, 0, sizeof co);
        co.client = r->o.client;
        co.stream = r->stream;
        co.shard_id = s->meta.id;
        co.resume = s->position.sequence[0] != '\0' ? &s->position : NULL;
        kl_choose_start(co.resume, r->o.last_run_ms,
                        r->only_shard[0] == '\0' && kl_shard_any_parent(&s->meta, has_position, r),
                        &r->o.initial, &co.start);
        co.millis_behind_latest = r->o.millis_behind_latest;
        co.stop_at_arrival_ms = r->o.stop_at_arrival_ms;
        co.min_call_interval_ms = r->o.min_call_interval_ms;
        co.max_bytes_per_s = r->o.max_bytes_per_s;
        co.no_deaggregate = r->o.no_deaggregate;
        co.read_to_end = kl_shard_is_closed(&s->meta);
        co.clock = r->o.clock;
        s->cursor = kl_cursor_create(&co, &err);
        if (s->cursor == NULL) {
            if (r->error == KL_OK) {
                r->error = err.code;
                r->err = err;
            }
            s->state = S_DONE;
            continue;
        }
        s->state = S_READY;
    }
}

static size_t count_state(const struct kl_reader *r, enum shard_state st)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n_shards; i++)
        n += r->shards[i]->state == st;
    return n;
}

static bool budget_spent(const struct kl_reader *r)
{
    return r->remaining - r->reserved <= 0;
}

/* Nothing is in flight and nothing more will be fetched. */
static bool finished(const struct kl_reader *r)
{
    if (r->in_flight > 0 || r->relisting)
        return false;
    return r->stopping || r->error != KL_OK || budget_spent(r) || count_state(r, S_READY) == 0;
}

/* The next READY shard in round-robin order, and its fair share of the budget. */
static struct rshard *pick_fetch(struct kl_reader *r, int *limit)
{
    size_t active = 0;
    int64_t left, share;

    if (r->stopping || r->error != KL_OK || budget_spent(r) || r->in_flight >= r->o.concurrency)
        return NULL;
    promote(r);
    for (size_t i = 0; i < r->n_shards; i++) {
        enum shard_state st = r->shards[i]->state;
        active += st == S_READY || st == S_FETCHING || st == S_FULL || st == S_TAKEN;
    }
    for (size_t k = 0; k < r->n_shards; k++) {
        size_t i = (r->fetch_rr + k) % r->n_shards;
        struct rshard *s = r->shards[i];
        if (s->state != S_READY)
            continue;
        r->fetch_rr = i + 1;
        left = r->remaining - r->reserved;
        if (active == 0)
            active = 1;
        /* ceil(left / active) without overflowing an unlimited budget */
        share = left / (int64_t)active + (left % (int64_t)active != 0);
        *limit = share < r->o.chunk_size ? (int)(share > 0 ? share : 1) : r->o.chunk_size;
        return s;
    }
    return NULL;
}

/* After a shard closed: new children may have appeared since the listing. */
static void relist(struct kl_reader *r)
{
    struct kl_shard_list fresh = {0};
    struct kl_log_ctx ctx = {NULL, r->stream, NULL};
    struct kl_err err;
    int rc;

    r->relisting = true;
    r->relist_needed = false;
    pthread_mutex_unlock(&r->lock);
    rc = kl_kinesis_list_shards(r->o.client, r->stream, &fresh, &err);
    pthread_mutex_lock(&r->lock);
    r->relisting = false;
    if (rc != KL_OK) {
        KL_WARN("reader", &ctx, "listing shards after a shard closed failed: %s", err.msg);
        return;
    }
    for (size_t i = 0; i < fresh.n; i++) {
        if (find_shard(r, fresh.shards[i].id) != NULL)
            continue;
        if (add_shard(r, &fresh.shards[i], &err) != KL_OK)
            break;
        KL_INFO("reader", &ctx, "new shard %s (parents %s %s)", fresh.shards[i].id,
                fresh.shards[i].parent_id, fresh.shards[i].adjacent_parent_id);
    }
    kl_shard_list_free(&r->list);
    r->list = fresh;
}

static void *fetch_main(void *arg)
{
    struct kl_reader *r = arg;

    pthread_mutex_lock(&r->lock);
    for (;;) {
        struct rshard *s;
        struct kl_err err;
        int limit = 0, rc;

        if (r->stopping)
            break;
        if (cancelled(r))
            r->stopping = true;
        if (r->relist_needed && !r->relisting) {
            relist(r);
            pthread_cond_broadcast(&r->fetch_cv);
            pthread_cond_broadcast(&r->deliver_cv);
            continue;
        }
        s = pick_fetch(r, &limit);
        if (s == NULL) {
            if (finished(r))
                pthread_cond_broadcast(&r->deliver_cv);
            pthread_cond_wait(&r->fetch_cv, &r->lock);
            continue;
        }
        s->state = S_FETCHING;
        r->in_flight++;
        r->reserved += limit;
        pthread_mutex_unlock(&r->lock);

        rc = kl_cursor_fetch(s->cursor, limit, &s->chunk, &err);

        pthread_mutex_lock(&r->lock);
        r->reserved -= limit;
        if (rc != KL_OK) {
            struct kl_log_ctx ctx = {NULL, r->stream, s->meta.id};
            KL_ERROR("reader", &ctx, "reading failed: %s", err.msg);
            if (r->error == KL_OK) {
                r->error = rc;
                r->err = err;
            }
            s->state = S_DONE;
            r->in_flight--;
        } else {
            r->remaining -= (int64_t)s->chunk.n_messages;
            s->state = S_FULL;
            if (s->chunk.shard_closed && r->only_shard[0] == '\0')
                r->relist_needed = true;
        }
        pthread_cond_broadcast(&r->deliver_cv);
        pthread_cond_broadcast(&r->fetch_cv);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

struct kl_reader *kl_reader_create(const struct kl_reader_options *o, struct kl_err *err)
{
    struct kl_reader *r = calloc(1, sizeof *r);

    if (r == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "out of memory creating the reader");
        return NULL;
    }
    r->o = *o;
    if (o->stream == NULL || !kl_stream_name_valid(o->stream)) {
        kl_err_set(err, KL_ERR_INVALID, "invalid stream name '%.140s'", o->stream ? o->stream : "");
        goto fail;
    }
    if (o->chunk_size < 1 || o->chunk_size > 10000) {
        kl_err_set(err, KL_ERR_INVALID, "chunk size must be 1..10000, not %d", o->chunk_size);
        goto fail;
    }
    if (o->concurrency < 1 || o->concurrency > MAX_CONCURRENCY) {
        kl_err_set(err, KL_ERR_INVALID, "concurrency must be 1..%d, not %d", MAX_CONCURRENCY,
                   o->concurrency);
        goto fail;
    }
    snprintf(r->stream, sizeof r->stream, "%s", o->stream);
    r->o.stream = r->stream;
    if (o->only_shard != NULL)
        snprintf(r->only_shard, sizeof r->only_shard, "%s", o->only_shard);
    r->o.only_shard = NULL;
    if (o->n_positions > 0) {
        r->stored = malloc(o->n_positions * sizeof *r->stored);
        if (r->stored == NULL) {
            kl_err_set(err, KL_ERR_NOMEM, "out of memory copying positions");
            goto fail;
        }
        memcpy(r->stored, o->positions, o->n_positions * sizeof *r->stored);
        r->n_stored = o->n_positions;
    }
    r->o.positions = NULL;
    r->remaining = o->max_messages >= 0 ? o->max_messages : INT64_MAX;

    if (kl_kinesis_list_shards(o->client, r->stream, &r->list, err) != KL_OK)
        goto fail;
    for (size_t i = 0; i < r->list.n; i++) {
        if (r->only_shard[0] != '\0' && strcmp(r->list.shards[i].id, r->only_shard) != 0)
            continue;
        if (add_shard(r, &r->list.shards[i], err) != KL_OK)
            goto fail;
    }
    if (r->only_shard[0] != '\0' && r->n_shards == 0) {
        kl_err_set(err, KL_ERR_NOT_FOUND, "stream %s has no shard %s", r->stream, r->only_shard);
        goto fail;
    }
    if (pthread_mutex_init(&r->lock, NULL) != 0 || pthread_cond_init(&r->fetch_cv, NULL) != 0 ||
        pthread_cond_init(&r->deliver_cv, NULL) != 0) {
        kl_err_set(err, KL_ERR_INTERNAL, "pthread init failed");
        goto fail;
    }
    pthread_mutex_lock(&r->lock);
    promote(r);
    pthread_mutex_unlock(&r->lock);
    for (int i = 0; i < o->concurrency; i++) {
        if (pthread_create(&r->threads[i], NULL, fetch_main, r) != 0) {
            kl_err_set(err, KL_ERR_INTERNAL, "cannot start reader thread %d", i);
            kl_reader_destroy(r);
            return NULL;
        }
        r->n_threads++;
    }
    return r;

fail:
    /* the locks and threads do not exist yet: free by hand */
    for (size_t i = 0; i < r->n_shards; i++)
        free(r->shards[i]);
    free(r->shards);
    free(r->stored);
    kl_shard_list_free(&r->list);
    free(r);
    return NULL;
}

void kl_reader_destroy(struct kl_reader *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    pthread_cond_broadcast(&r->fetch_cv);
    pthread_mutex_unlock(&r->lock);
    for (int i = 0; i < r->n_threads; i++)
        pthread_join(r->threads[i], NULL);
    for (size_t i = 0; i < r->n_shards; i++) {
        kl_cursor_destroy(r->shards[i]->cursor);
        kl_chunk_free(&r->shards[i]->chunk);
        free(r->shards[i]);
    }
    free(r->shards);
    free(r->stored);
    kl_shard_list_free(&r->list);
    pthread_cond_destroy(&r->fetch_cv);
    pthread_cond_destroy(&r->deliver_cv);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

int kl_reader_next(struct kl_reader *r, struct kl_chunk **out, struct kl_err *err)
{
    int rc = KL_OK;

    *out = NULL;
    pthread_mutex_lock(&r->lock);
    if (count_state(r, S_TAKEN) > 0) {
        rc = kl_err_set(err, KL_ERR_INTERNAL, "commit the previous chunk before taking the next");
        goto cleanup;
    }
    for (;;) {
        if (r->error != KL_OK) {
            if (err != NULL)
                *err = r->err;
            rc = r->error;
            goto cleanup;
        }
        if (cancelled(r)) {
            r->stopping = true;
            pthread_cond_broadcast(&r->fetch_cv);
            goto cleanup;
        }
        for (size_t k = 0; k < r->n_shards; k++) {
            size_t i = (r->deliver_rr + k) % r->n_shards;
            if (r->shards[i]->state == S_FULL) {
                r->shards[i]->state = S_TAKEN;
                r->deliver_rr = i + 1;
                *out = &r->shards[i]->chunk;
                goto cleanup;
            }
        }
        promote(r);
        if (finished(r))
            goto cleanup;
        pthread_cond_broadcast(&r->fetch_cv);
        pthread_cond_wait(&r->deliver_cv, &r->lock);
    }

cleanup:
    pthread_mutex_unlock(&r->lock);
    return rc;
}

void kl_reader_commit(struct kl_reader *r, struct kl_chunk *chunk)
{
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->n_shards; i++) {
        struct rshard *s = r->shards[i];
        if (&s->chunk != chunk || s->state != S_TAKEN)
            continue;
        if (chunk->end_sequence[0] != '\0') {
            snprintf(s->position.sequence, sizeof s->position.sequence, "%s", chunk->end_sequence);
            s->position.sub_sequence = chunk->end_sub_sequence;
        }
        s->messages += chunk->n_messages;
        r->messages += chunk->n_messages;
        s->millis_behind = chunk->millis_behind;
        if (chunk->shard_done) {
            s->state = S_DONE;
            s->drained = chunk->shard_closed;
        } else {
            s->state = S_READY;
        }
        r->in_flight--;
        break;
    }
    promote(r);
    pthread_cond_broadcast(&r->fetch_cv);
    pthread_cond_broadcast(&r->deliver_cv);
    pthread_mutex_unlock(&r->lock);
}

int kl_reader_shards(struct kl_reader *r, struct kl_reader_shard_info **out, size_t *n,
                     struct kl_err *err)
{
    struct kl_reader_shard_info *info;
    size_t count = 0, extra = 0;
    int rc = KL_OK;

    pthread_mutex_lock(&r->lock);
    /* stored positions of shards no longer listed are kept, too */
    for (size_t i = 0; i < r->n_stored; i++)
        extra += find_shard(r, r->stored[i].shard_id) == NULL;
    info = calloc(r->n_shards + extra + 1, sizeof *info);
    if (info == NULL) {
        rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < r->n_shards; i++) {
        const struct rshard *s = r->shards[i];
        const struct kl_gap *gap = s->cursor ? kl_cursor_gap(s->cursor) : NULL;
        struct kl_reader_shard_info *x = &info[count++];
        snprintf(x->shard_id, sizeof x->shard_id, "%s", s->meta.id);
        x->position = s->position;
        x->messages = s->messages;
        x->millis_behind = s->millis_behind;
        x->done = s->state == S_DONE;
        x->drained = s->drained;
        if (gap != NULL) {
            x->has_gap = true;
            x->gap = *gap;
        }
    }
    for (size_t i = 0; i < r->n_stored; i++) {
        struct kl_reader_shard_info *x;
        if (find_shard(r, r->stored[i].shard_id) != NULL)
            continue;
        x = &info[count++];
        snprintf(x->shard_id, sizeof x->shard_id, "%s", r->stored[i].shard_id);
        x->position = r->stored[i];
        x->millis_behind = -1;
        x->done = true;
    }
    *out = info;
    *n = count;

cleanup:
    pthread_mutex_unlock(&r->lock);
    return rc;
}

uint64_t kl_reader_messages(struct kl_reader *r)
{
    uint64_t n;
    pthread_mutex_lock(&r->lock);
    n = r->messages;
    pthread_mutex_unlock(&r->lock);
    return n;
}
