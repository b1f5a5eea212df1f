/*
 * A load engine on real services for integration tests: the in-process
 * store (or Redis, with a second replica's engine on it), a pool of workers, an emulator
 * (kinesalite unless told otherwise) and a real destination (SQLite or PostgreSQL), with the
 * helpers the tests share: putting records, running a job to its end, counting rows. Not for unit
 * tests: it needs the services of scripts/services.sh.
 */
#ifndef KL_TEST_ENGINE_RIG_H
#define KL_TEST_ENGINE_RIG_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/dest/dest.h"
#include "core/load/engine.h"
#include "core/store/store.h"
#include "tests/support/test_support.h"

struct kl_test_rig_options {
    bool postgres; /* else SQLite at sqlite_path */
    const char *sqlite_path;
    const char *kinesis_env;   /* the emulator's URL variable; NULL: KL_TEST_KINESALITE_URL */
    int64_t call_deadline_ms;  /* each Kinesis call's; 0: the client's */
    int workers;               /* 0: 3 */
    int64_t task_slice_ms;     /* 0: the engine's default */
    int64_t sweep_interval_ms; /* 0: the engine's default */
    bool no_start;             /* the test starts the engine itself */
    /* Non-NULL: the store is Redis (KL_TEST_REDIS_URL) under this key prefix,
     * and a second engine, as another replica would run it, works on it too
     * through its own connection (started with the first). */
    const char *redis_prefix;
    /* Wraps the destination factory (and takes `real` over); NULL: none. */
    struct kl_dest_factory *(*wrap_dests)(struct kl_dest_factory *real, void *ctx);
    void *wrap_ctx;
};

struct kl_test_rig {
    struct kl_test_kinesis k;
    struct kl_store *store;
    struct kl_dest_factory *dests;
    struct kl_engine *engine;
    struct kl_store *store2;   /* the second replica's, with redis_prefix */
    struct kl_engine *engine2; /* the second replica's, with redis_prefix */
    bool postgres;
    char sqlite_path[256];
};

void kl_test_rig_open(struct kl_test_rig *r, const struct kl_test_rig_options *o);
void kl_test_rig_close(struct kl_test_rig *r);

/* Puts records start..start+count-1 (put-records.js bodies) into `stream`;
 * `partition_keys` 0: one key per record, else that many keys. */
void kl_test_rig_put(struct kl_test_rig *r, const char *stream, int start, int count,
                     int partition_keys);

/* A new stream of `shards` shards with `count` records, its root table name
 * (the stream name in dlt's snake_case) and load parameters reading it from
 * TRIM_HORIZON into `dataset`, with milliseconds_behind_latest 0. */
void kl_test_rig_new_stream(struct kl_test_rig *r, const char *prefix, int shards, int count,
                            const char *dataset, int chunk_size, char stream[96], char table[96],
                            struct kl_load_params *p);

/* Runs one job to its end (failing the test after `timeout_ms`, 0: 120 s, or
 * when it ends other than `expect_status`) and returns its document. */
cJSON *kl_test_rig_run_job(struct kl_test_rig *r, const struct kl_load_params *p,
                           const char *expect_status, int64_t timeout_ms);

/* A job document's row count of `table` and its messages; -1 when absent. */
long long kl_test_job_rows(const cJSON *doc, const char *table);
long long kl_test_job_messages(const cJSON *doc);

/* Rows of `table` in the dataset: all of them, or distinct `_dlt_id`s. */
long long kl_test_rig_stored_rows(const struct kl_test_rig *r, const char *dataset,
                                  const char *table, bool distinct);

#endif
