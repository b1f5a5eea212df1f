/*
 * The byte budget (see membudget.h): a counter under a mutex, and a
 * condition variable readers wait on until releases make room.
 */
#include "core/util/membudget.h"
#include "core/util/err.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CANCEL_CHECK_MS 100

struct waiter {
    struct waiter *next;
};

struct kl_membudget {
    pthread_mutex_t lock;
    pthread_cond_t freed;
    /* Reservations that wait are served in order, so a large one is not
     * passed over by smaller ones forever. */
    struct waiter *queue;
    struct kl_membudget_stats s;
};

struct kl_membudget *kl_membudget_create(size_t limit, struct kl_err *err)
{
    struct kl_membudget *b = calloc(1, sizeof *b);
    pthread_condattr_t attr;

    if (b == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "out of memory for the memory budget");
        return NULL;
    }
    if (pthread_mutex_init(&b->lock, NULL) != 0) {
        free(b);
        kl_err_set(err, KL_ERR_INTERNAL, "pthread_mutex_init failed");
        return NULL;
    }
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (pthread_cond_init(&b->freed, &attr) != 0) {
        pthread_condattr_destroy(&attr);
        pthread_mutex_destroy(&b->lock);
        free(b);
        kl_err_set(err, KL_ERR_INTERNAL, "pthread_cond_init failed");
        return NULL;
    }
    pthread_condattr_destroy(&attr);
    b->s.limit = limit;
    return b;
}

void kl_membudget_destroy(struct kl_membudget *b)
{
    if (b == NULL)
        return;
    pthread_cond_destroy(&b->freed);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Under the lock: holds `n` more bytes. */
static void hold(struct kl_membudget *b, size_t n)
{
    b->s.held += n;
    if (b->s.held > b->s.peak)
        b->s.peak = b->s.held;
}

static bool fits(const struct kl_membudget *b, size_t n)
{
    return b->s.limit == 0 || b->s.held == 0 ||
           (b->s.held <= b->s.limit && n <= b->s.limit - b->s.held);
}

/* Takes `w` out of the queue. */
static void unqueue(struct kl_membudget *b, struct waiter *w)
{
    for (struct waiter **p = &b->queue; *p != NULL; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            return;
        }
    }
}

int kl_membudget_reserve(struct kl_membudget *b, size_t n, const atomic_bool *cancel,
                         struct kl_err *err)
{
    struct waiter self = {NULL};
    struct waiter **tail;
    int64_t began;
    int rc = KL_OK;

    if (b == NULL || n == 0)
        return KL_OK;
    pthread_mutex_lock(&b->lock);
    if (b->queue == NULL && fits(b, n)) {
        hold(b, n);
        pthread_mutex_unlock(&b->lock);
        return KL_OK;
    }
    /* in line behind those already waiting */
    for (tail = &b->queue; *tail != NULL; tail = &(*tail)->next)
        ;
    *tail = &self;
    b->s.waits++;
    began = monotonic_ms();
    while (b->queue != &self || !fits(b, n)) {
        struct timespec until;
        if (cancel != NULL && atomic_load(cancel)) {
            rc = kl_err_set(err, KL_ERR_CANCELLED, "stopped while waiting for %zu bytes of memory",
                            n);
            break;
        }
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += (long)CANCEL_CHECK_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&b->freed, &b->lock, &until);
    }
    unqueue(b, &self);
    b->s.wait_ms += (uint64_t)(monotonic_ms() - began);
    if (rc == KL_OK)
        hold(b, n);
    /* the next in line may fit too */
    pthread_cond_broadcast(&b->freed);
    pthread_mutex_unlock(&b->lock);
    return rc;
}

void kl_membudget_charge(struct kl_membudget *b, size_t n)
{
    if (b == NULL || n == 0)
        return;
    pthread_mutex_lock(&b->lock);
    hold(b, n);
    b->s.over += n;
    pthread_mutex_unlock(&b->lock);
}

bool kl_membudget_try_charge(struct kl_membudget *b, size_t n)
{
    bool ok;
    if (b == NULL || n == 0)
        return true;
    pthread_mutex_lock(&b->lock);
    ok = b->s.limit == 0 || (b->s.held <= b->s.limit && n <= b->s.limit - b->s.held);
    if (ok) {
        hold(b, n);
        b->s.over += n;
    } else {
        b->s.refused++;
    }
    pthread_mutex_unlock(&b->lock);
    return ok;
}

void kl_membudget_release(struct kl_membudget *b, size_t n)
{
    if (b == NULL || n == 0)
        return;
    pthread_mutex_lock(&b->lock);
    b->s.held = n < b->s.held ? b->s.held - n : 0;
    pthread_cond_broadcast(&b->freed);
    pthread_mutex_unlock(&b->lock);
}

void kl_membudget_stats(struct kl_membudget *b, struct kl_membudget_stats *out)
{
    memset(out, 0, sizeof *out);
    if (b == NULL)
        return;
    pthread_mutex_lock(&b->lock);
    *out = b->s;
    pthread_mutex_unlock(&b->lock);
}
