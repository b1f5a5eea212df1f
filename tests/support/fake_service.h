/*
 * An in-memory struct kl_service (api/service.h) for the REST tests: jobs
 * with the active-job and Idempotency-Key rules, two streams, state, a
 * scriptable failure, readiness flag and delay, and waits for a job that
 * another thread finishes (kl_fake_service_set_status). It returns typed
 * results as the real service does, so the handlers' documents
 * (api/documents.c) are the real ones. Thread-safe (one lock). Test code
 * only.
 */
#ifndef KL_TEST_FAKE_SERVICE_H
#define KL_TEST_FAKE_SERVICE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "api/service.h"
#include "core/load/params.h"
#include "core/store/store.h"

#define KL_FAKE_SERVICE_MAX_JOBS 1024

struct kl_fake_job {
    char id[KL_STORE_JOB_ID_SIZE];
    struct kl_load_params params;
    char key[256];
    enum kl_store_job_status status;
    bool cancel_requested;
    long long created_ms;
};

struct kl_fake_service {
    struct kl_service svc;
    pthread_mutex_t lock;
    struct kl_fake_job *jobs; /* KL_FAKE_SERVICE_MAX_JOBS, oldest first */
    size_t n_jobs;
    unsigned next_id;
    /* scripted (set before the requests, or under the lock) */
    int fail_code; /* != KL_OK: every operation but readiness and metrics fails */
    char fail_msg[128];
    bool metrics_fail;
    bool ready;    /* default true */
    long delay_ms; /* every operation sleeps first */
    /* observed */
    unsigned started; /* operations begun (counted before the delay) */
    unsigned calls;
    unsigned waits;         /* wait_job calls */
    long long last_wait_ms; /* the timeout of the last one */
    bool have_last;
    struct kl_load_params last_params;
    char last_key[256];
    char last_pipeline[80];
    char last_dataset[80];
    int last_limit;
    char last_cursor[300];
};

void kl_fake_service_init(struct kl_fake_service *f);
void kl_fake_service_free(struct kl_fake_service *f);

/* Adds a job as if created earlier, with default parameters for `stream`;
 * returns its id (valid until free). */
const char *kl_fake_service_add(struct kl_fake_service *f, const char *stream,
                                enum kl_store_job_status status);

/* Sets a job's status (from any thread: a waiting request sees it).
 * Returns false for an unknown id. */
bool kl_fake_service_set_status(struct kl_fake_service *f, const char *id,
                                enum kl_store_job_status status);

#endif
