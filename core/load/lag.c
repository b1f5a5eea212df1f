/*
 * The lag registry (see lag.h).
 */
#include "core/load/lag.h"
#include "core/util/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kl_lag_registry_init(struct kl_lag_registry *r, const struct kl_clock *clock)
{
    memset(r, 0, sizeof *r);
    r->clock = clock != NULL ? clock : kl_clock_system();
    pthread_mutex_init(&r->lock, NULL);
}

void kl_lag_registry_destroy(struct kl_lag_registry *r)
{
    pthread_mutex_destroy(&r->lock);
    free(r->entries);
    r->entries = NULL;
    r->n = r->cap = 0;
}

/* Drops shards not read for KL_LAG_KEEP_MS (lock held). */
static void forget_old(struct kl_lag_registry *r, int64_t now)
{
    size_t w = 0;
    for (size_t i = 0; i < r->n; i++)
        if (now - r->entries[i].seen_ms < KL_LAG_KEEP_MS)
            r->entries[w++] = r->entries[i];
    r->n = w;
}

/* The entry of a shard not registered yet: a new one, or the least recently
 * read one when full. NULL when out of memory with nothing to reuse (lock held). */
static struct kl_lag_entry *make_room(struct kl_lag_registry *r, int64_t now)
{
    struct kl_lag_entry *oldest;

    forget_old(r, now);
    if (r->n == r->cap && r->cap < KL_LAGS_MAX) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct kl_lag_entry *more = realloc(r->entries, cap * sizeof *more);
        if (more != NULL) {
            r->entries = more;
            r->cap = cap;
        }
    }
    if (r->n < r->cap)
        return &r->entries[r->n++];
    if (r->n == 0)
        return NULL;
    oldest = &r->entries[0];
    for (size_t i = 1; i < r->n; i++)
        if (r->entries[i].seen_ms < oldest->seen_ms)
            oldest = &r->entries[i];
    return oldest;
}

void kl_lag_note(struct kl_lag_registry *r, const char *pipeline, const char *stream,
                 const char *shard_id, int64_t millis_behind)
{
    int64_t now = kl_clock_monotonic_ms(r->clock);
    struct kl_lag_entry *slot = NULL;

    if (millis_behind < 0)
        return;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->n && slot == NULL; i++) {
        const struct kl_shard_lag *l = &r->entries[i].l;
        if (strcmp(l->shard_id, shard_id) == 0 && strcmp(l->stream, stream) == 0 &&
            strcmp(l->pipeline, pipeline) == 0)
            slot = &r->entries[i];
    }
    if (slot == NULL && (slot = make_room(r, now)) != NULL) {
        snprintf(slot->l.pipeline, sizeof slot->l.pipeline, "%s", pipeline);
        snprintf(slot->l.stream, sizeof slot->l.stream, "%s", stream);
        snprintf(slot->l.shard_id, sizeof slot->l.shard_id, "%s", shard_id);
    }
    if (slot != NULL) {
        slot->l.millis_behind = millis_behind;
        slot->seen_ms = now;
    }
    pthread_mutex_unlock(&r->lock);
}

static int lag_cmp(const void *a, const void *b)
{
    const struct kl_shard_lag *x = a, *y = b;
    int c = strcmp(x->pipeline, y->pipeline);
    if (c == 0)
        c = strcmp(x->stream, y->stream);
    return c != 0 ? c : strcmp(x->shard_id, y->shard_id);
}

size_t kl_lag_snapshot(struct kl_lag_registry *r, struct kl_shard_lag **out)
{
    size_t n = 0;

    *out = NULL;
    pthread_mutex_lock(&r->lock);
    forget_old(r, kl_clock_monotonic_ms(r->clock));
    if (r->n > 0 && (*out = malloc(r->n * sizeof **out)) != NULL) {
        for (n = 0; n < r->n; n++)
            (*out)[n] = r->entries[n].l;
    }
    pthread_mutex_unlock(&r->lock);
    if (n > 1)
        qsort(*out, n, sizeof **out, lag_cmp);
    return n;
}
