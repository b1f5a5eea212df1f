/*
 * The destination connection pool (see pool.h): a mutex, a condition
 * variable and a stack of idle connections.
 */
#include "core/dest/pool.h"
#include "core/dest/dest.h"
#include "core/util/err.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct kl_dest_pool {
    struct kl_dest_factory *factory;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct kl_dest **idle;
    size_t n_idle;
    size_t open; /* idle + handed out */
    size_t max;
};

struct kl_dest_pool *kl_dest_pool_create(struct kl_dest_factory *factory, size_t max,
                                         struct kl_err *err)
{
    struct kl_dest_pool *p;
    pthread_condattr_t attr;

    if (factory == NULL || max == 0) {
        kl_err_set(err, KL_ERR_INVALID, "pool needs a factory and a maximum of at least 1");
        return NULL;
    }
    p = calloc(1, sizeof *p);
    if (p == NULL || (p->idle = calloc(max, sizeof(struct kl_dest *))) == NULL) {
        free(p);
        kl_err_set(err, KL_ERR_NOMEM, "destination pool");
        return NULL;
    }
    p->factory = factory;
    p->max = max;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p->idle);
        free(p);
        kl_err_set(err, KL_ERR_INTERNAL, "pthread_mutex_init failed");
        return NULL;
    }
    if (pthread_condattr_init(&attr) != 0 ||
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&p->cv, &attr) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p->idle);
        free(p);
        kl_err_set(err, KL_ERR_INTERNAL, "pthread_cond_init failed");
        return NULL;
    }
    pthread_condattr_destroy(&attr);
    return p;
}

void kl_dest_pool_destroy(struct kl_dest_pool *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n_idle; i++)
        kl_dest_destroy(p->idle[i]);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->idle);
    free(p);
}

int kl_dest_pool_acquire(struct kl_dest_pool *p, int64_t timeout_ms, struct kl_dest **out,
                         struct kl_err *err)
{
    struct timespec deadline;
    struct kl_dest *d = NULL;
    bool open_new = false;
    int rc = KL_OK;

    if (clock_gettime(CLOCK_MONOTONIC, &deadline) != 0)
        return kl_err_set(err, KL_ERR_INTERNAL, "clock_gettime failed");
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    if (pthread_mutex_lock(&p->mu) != 0)
        return kl_err_set(err, KL_ERR_INTERNAL, "pthread_mutex_lock failed");
    while (p->n_idle == 0 && p->open >= p->max) {
        int w = pthread_cond_timedwait(&p->cv, &p->mu, &deadline);
        if (w == ETIMEDOUT) {
            rc = kl_err_set(err, KL_ERR_UNAVAILABLE,
                            "no destination connection free within %lld ms", (long long)timeout_ms);
            break;
        }
        if (w != 0) {
            rc = kl_err_set(err, KL_ERR_INTERNAL, "pthread_cond_timedwait failed");
            break;
        }
    }
    if (rc == KL_OK) {
        if (p->n_idle > 0) {
            d = p->idle[--p->n_idle];
        } else {
            open_new = true;
            p->open++; /* reserve the slot while connecting unlocked */
        }
    }
    pthread_mutex_unlock(&p->mu);
    if (rc != KL_OK)
        return rc;
    if (open_new) {
        rc = kl_dest_factory_open(p->factory, &d, err);
        if (rc != KL_OK) {
            if (pthread_mutex_lock(&p->mu) == 0) {
                p->open--;
                pthread_cond_signal(&p->cv);
                pthread_mutex_unlock(&p->mu);
            }
            return rc;
        }
    }
    *out = d;
    return KL_OK;
}

void kl_dest_pool_release(struct kl_dest_pool *p, struct kl_dest *d, bool broken)
{
    if (d == NULL)
        return;
    if (pthread_mutex_lock(&p->mu) != 0) {
        kl_dest_destroy(d); /* cannot account for it: close it rather than leak */
        return;
    }
    if (broken || p->n_idle >= p->max) {
        p->open--;
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
        kl_dest_destroy(d);
        return;
    }
    p->idle[p->n_idle++] = d;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}
