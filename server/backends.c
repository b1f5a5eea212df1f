/*
 * Building the backends (see backends.h): the only file that includes the
 * concrete store and destination headers.
 */
#include "server/backends.h"
#include "server/config.h"
#include "core/dest/pg.h"
#include "core/dest/sqlite.h"
#include "core/load/engine.h"
#include "core/store/memory.h"
#include "core/store/redis.h"
#include "core/util/err.h"
#include "core/util/log.h"

#include <string.h>

int kl_backends_open(struct kl_backends *b, const struct kl_config *cfg, struct kl_err *err)
{
    struct kl_kinesis_conn_options co;
    struct kl_store_options so;
    struct kl_dest_options dopts;
    struct kl_engine_config ec;
    int rc;

    memset(b, 0, sizeof *b);
    memset(&co, 0, sizeof co);
    co.env = cfg->env;
    co.call_deadline_ms = (int64_t)cfg->kinesis_call_timeout_s * 1000;
    rc = kl_kinesis_conn_init(&b->conn, &co, err);
    if (rc != KL_OK)
        goto fail;
    b->conn_open = true;

    kl_store_options_init(&so);
    so.job_retention_ms = (int64_t)cfg->job_retention_hours * 3600 * 1000;
    b->store = cfg->redis_url[0] ? kl_store_redis_create(cfg->redis_url, &so, err)
                                 : kl_store_memory_create(&so, err);
    if (b->store == NULL) {
        kl_err_prefix(err, "state store");
        goto fail_code;
    }

    kl_dest_options_init(&dopts);
    b->dest_kind = cfg->database_url[0] ? "postgres" : "sqlite";
    b->dests = cfg->database_url[0] ? kl_dest_pg_factory_create(cfg->database_url, &dopts, err)
                                    : kl_dest_sqlite_factory_create(cfg->sqlite_path, &dopts, err);
    if (b->dests == NULL) {
        kl_err_prefix(err, "destination");
        goto fail_code;
    }

    memset(&ec, 0, sizeof ec);
    ec.store = b->store;
    ec.dests = b->dests;
    ec.client = b->conn.client;
    ec.workers = cfg->workers;
    ec.memory_max = cfg->memory_max;
    ec.shard_lease_ms = (int64_t)cfg->lease_ttl_s * 1000;
    ec.task_lease_ms = (int64_t)cfg->lease_ttl_s * 1000;
    ec.task_slice_ms = cfg->task_slice_s > 0 ? (int64_t)cfg->task_slice_s * 1000 : -1;
    ec.continuous_loads = cfg->continuous_loads;
    ec.n_continuous_loads = cfg->n_continuous_loads;
    rc = kl_kinesis_pacing(b->conn.client, cfg->kinesis_pacing, &ec.min_call_interval_ms,
                           &ec.max_bytes_per_s, err);
    if (rc != KL_OK)
        goto fail;
    b->engine = kl_engine_create(&ec, err);
    if (b->engine == NULL || kl_engine_start(b->engine, err) != KL_OK)
        goto fail_code;
    KL_INFO(
        "engine", NULL,
        "engine started: %d workers, memory %zu MiB, lease %d s, task slice %d s, pacing %s (%s), "
        "Kinesis call deadline %d s, job retention %d h, state %s, destination %s, "
        "Kinesis %s",
        ec.workers, cfg->memory_max >> 20, cfg->lease_ttl_s, cfg->task_slice_s, cfg->kinesis_pacing,
        ec.min_call_interval_ms > 0 ? "on" : "off", cfg->kinesis_call_timeout_s,
        cfg->job_retention_hours, kl_store_name(b->store), b->dest_kind, b->conn.endpoint);
    return KL_OK;

fail_code:
    rc = err != NULL && err->code != KL_OK ? (int)err->code : KL_ERR_INTERNAL;
fail:
    kl_backends_close(b);
    return rc;
}

void kl_backends_close(struct kl_backends *b)
{
    kl_engine_destroy(b->engine);
    kl_dest_factory_destroy(b->dests);
    kl_store_destroy(b->store);
    if (b->conn_open)
        kl_kinesis_conn_free(&b->conn);
    memset(b, 0, sizeof *b);
}
