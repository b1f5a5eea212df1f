/*
 * `kinesis-loader load STREAM`: runs one load job in the foreground, without
 * the HTTP server (for cron and Kubernetes Jobs), and prints the same job
 * document `GET /jobs/{id}` returns. With REDIS_URL it shares the state of
 * running services (and their active-job rule); without, state is
 * in-process and the destination's checkpoints carry it between runs.
 */
#include "server/backends.h"
#include "api/documents.h"
#include "server/cli.h"
#include "server/commands.h"
#include "server/config.h"
#include "core/dest/dest.h"
#include "core/load/check.h"
#include "core/load/engine.h"
#include "core/util/env.h"
#include "core/util/err.h"
#include "core/util/log.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static atomic_bool interrupted;

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&interrupted, true);
}

void kl_cmd_load_usage(FILE *out)
{
    fprintf(out,
            "usage: kinesis-loader load STREAM [options]\n"
            "\n"
            "Runs one load job in the foreground and prints its job document (as GET /jobs/{id}\n"
            "returns it). The options are dlt's kinesis_stream arguments, with its defaults:\n"
            "\n"
            "  --pipeline-name NAME           state namespace (default kinesis_pipeline)\n"
            "  --dataset-name NAME            schema that receives the tables (default kinesis)\n"
            "  --table-name NAME              root table (default: the stream name, normalised)\n"
            "  --initial-at-timestamp WHEN    first run only: null (TRIM_HORIZON), 0 (LATEST,\n"
            "                                 the default), epoch seconds or ISO-8601\n"
            "  --max-number-of-messages N     budget for the job (may pass by a chunk a worker)\n"
            "  --milliseconds-behind-latest MS  a short page below this ends a shard (default\n"
            "                                 1000; a full page never does, and a shard ends\n"
            "                                 once it delivered a record newer than the job)\n"
            "  --no-parse-json                store Data as bytes in column `data`\n"
            "  --chunk-size N                 GetRecords Limit and unit of commit (default 1000)\n"
            "  --write-disposition MODE       append (default), merge or replace\n"
            "  --follow                       a continuous load: follow every shard's tip until\n"
            "                                 SIGTERM or Ctrl-C (not with the two options above\n"
            "                                 that end a batch load)\n"
            "  --poll-interval-ms MS          --follow: between GetRecords of a shard at its tip\n"
            "                                 (default 1000, at least 200)\n"
            "  --max-commit-delay-ms MS       --follow: a record read is committed within this\n"
            "                                 (default 1000)\n"
            "  --load-window-s S              --follow: each S seconds of rows are one dlt load\n"
            "                                 (default 300, 10 to 86400)\n"
            "  --workers N                    shards loaded in parallel (default KL_WORKERS, 4)\n"
            "  --timeout S                    give up waiting after S seconds (default: none)\n"
            "\n"
            "Destination: DATABASE_URL (PostgreSQL, libpq syntax); without it the SQLite file\n"
            "KL_SQLITE_PATH (default ./kinesis-loader.db). State: REDIS_URL, shared with\n"
            "running services; without it, in-process. Every other KL_* setting of `serve`\n"
            "applies too (KL_LEASE_TTL_S, KL_TASK_SLICE_S, KL_KINESIS_PACING,\n"
            "KL_KINESIS_CALL_TIMEOUT_S, KL_JOB_RETENTION_HOURS, ...: kinesis-loader --help).\n"
            "AWS settings as for `read`.\n"
            "Ctrl-C cancels the job at the next chunk boundary (what is loaded stays loaded).\n"
            "Exit status: 0 succeeded (with --follow: stopped by a signal, everything read\n"
            "committed), 1 failed, cancelled or refused, 2 bad usage.\n");
}

/* A name flag into its field: never cut short, which could turn a name that
 * is too long into a valid shorter one. */
static int copy_name(const char *flag, const char *val, char *dst, size_t cap)
{
    size_t n = strlen(val);

    if (n >= cap) {
        fprintf(stderr, "kinesis-loader load: %s must be at most %zu characters (got %zu)\n", flag,
                cap - 1, n);
        return -1;
    }
    memcpy(dst, val, n + 1);
    return 0;
}

/* dlt's 0 (LATEST) as a flag: "latest", or a number that is zero ("0", "0.0"). */
static bool means_latest(const char *s)
{
    if (strcasecmp(s, "latest") == 0)
        return true;
    if (*s != '0')
        return false;
    while (*s == '0')
        s++;
    if (*s == '.')
        for (s++; *s == '0'; s++)
            ;
    return *s == '\0';
}

/* A problem kl_load_params_check found, named by the option that sets it. */
static void print_problem(void *arg, const char *field, const char *msg)
{
    char flag[64];
    const char *name = field;
    size_t i = 0;

    (void)arg;
    if (strcmp(field, "stream") == 0) {
        fprintf(stderr, "kinesis-loader load: STREAM %s\n", msg);
        return;
    }
    flag[i++] = '-';
    flag[i++] = '-';
    for (; *name != '\0' && i + 1 < sizeof flag; name++)
        flag[i++] = *name == '_' ? '-' : *name;
    flag[i] = '\0';
    fprintf(stderr, "kinesis-loader load: %s (%s) %s\n", flag, field, msg);
}

static int parse_args(int argc, char **argv, struct kl_load_params *p, int *workers,
                      int64_t *timeout_s)
{
    const char *stream = NULL, *batch_flag = NULL, *follow_flag = NULL;
    int64_t v;

    for (int i = 1; i < argc; i++)
        if (argv[i][0] != '-' && stream == NULL)
            stream = argv[i];
    kl_load_params_defaults(p, stream ? stream : "");
    *workers = 0; /* KL_WORKERS */
    *timeout_s = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        struct kl_err err;

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            kl_cmd_load_usage(stdout);
            exit(0);
        }
        if (arg[0] != '-') {
            if (arg != stream) {
                fprintf(stderr, "kinesis-loader load: one stream only ('%s' and '%s')\n", stream,
                        arg);
                return -1;
            }
            continue;
        }
        if (strcmp(arg, "--no-parse-json") == 0) {
            p->parse_json = false;
            continue;
        }
        if (strcmp(arg, "--follow") == 0) {
            p->continuous = true;
            continue;
        }
        if (val == NULL) {
            fprintf(stderr, "kinesis-loader load: %s needs a value\n", arg);
            return -1;
        }
        i++;
        if (strcmp(arg, "--pipeline-name") == 0) {
            if (copy_name(arg, val, p->pipeline_name, sizeof p->pipeline_name) != 0)
                return -1;
        } else if (strcmp(arg, "--dataset-name") == 0) {
            if (copy_name(arg, val, p->dataset_name, sizeof p->dataset_name) != 0)
                return -1;
        } else if (strcmp(arg, "--table-name") == 0) {
            if (val[0] == '\0') {
                fprintf(stderr, "kinesis-loader load: --table-name must not be empty (without "
                                "it the table is the stream name)\n");
                return -1;
            }
            if (copy_name(arg, val, p->table_name, sizeof p->table_name) != 0)
                return -1;
        } else if (strcmp(arg, "--initial-at-timestamp") == 0) {
            if (copy_name(arg, val, p->initial_text, sizeof p->initial_text) != 0)
                return -1;
            if (strcmp(val, "null") == 0) {
                p->initial.kind = KL_INITIAL_TRIM_HORIZON;
            } else if (kl_parse_initial_position(val, &p->initial, &err) != KL_OK) {
                fprintf(stderr, "kinesis-loader load: --initial-at-timestamp: %s\n", err.msg);
                return -1;
            } else if (p->initial.kind == KL_INITIAL_LATEST && !means_latest(val)) {
                /* a timestamp at the epoch is AT_TIMESTAMP 0 in dlt, not LATEST:
                 * left for the check to refuse, as POST does */
                p->initial.kind = KL_INITIAL_AT_TIMESTAMP;
            }
        } else if (strcmp(arg, "--max-number-of-messages") == 0) {
            if (kl_cli_parse_int("load", arg, val, 1, KL_MAX_MESSAGES_MAX, &p->max_messages) != 0)
                return -1;
            batch_flag = arg;
        } else if (strcmp(arg, "--milliseconds-behind-latest") == 0) {
            if (kl_cli_parse_int("load", arg, val, 0, 604800000, &p->millis_behind_latest) != 0)
                return -1;
            batch_flag = arg;
        } else if (strcmp(arg, "--poll-interval-ms") == 0) {
            if (kl_cli_parse_int("load", arg, val, KL_POLL_INTERVAL_MIN_MS, KL_POLL_INTERVAL_MAX_MS,
                                 &p->poll_interval_ms) != 0)
                return -1;
            follow_flag = arg;
        } else if (strcmp(arg, "--load-window-s") == 0) {
            if (kl_cli_parse_int("load", arg, val, KL_LOAD_WINDOW_MIN_S, KL_LOAD_WINDOW_MAX_S,
                                 &p->load_window_s) != 0)
                return -1;
            follow_flag = arg;
        } else if (strcmp(arg, "--max-commit-delay-ms") == 0) {
            if (kl_cli_parse_int("load", arg, val, 0, KL_COMMIT_DELAY_MAX_MS,
                                 &p->max_commit_delay_ms) != 0)
                return -1;
            follow_flag = arg;
        } else if (strcmp(arg, "--chunk-size") == 0) {
            if (kl_cli_parse_int("load", arg, val, 1, 10000, &v) != 0)
                return -1;
            p->chunk_size = (int)v;
        } else if (strcmp(arg, "--write-disposition") == 0) {
            if (kl_write_disposition_parse(val, &p->write_disposition) != 0) {
                fprintf(stderr,
                        "kinesis-loader load: --write-disposition is append, merge or "
                        "replace, not '%s'\n",
                        val);
                return -1;
            }
        } else if (strcmp(arg, "--workers") == 0) {
            if (kl_cli_parse_int("load", arg, val, 1, 256, &v) != 0)
                return -1;
            *workers = (int)v;
        } else if (strcmp(arg, "--timeout") == 0) {
            if (kl_cli_parse_int("load", arg, val, 1, 604800, timeout_s) != 0)
                return -1;
        } else {
            fprintf(stderr, "kinesis-loader load: unknown option %s\n", arg);
            return -1;
        }
    }
    if (stream == NULL) {
        fprintf(stderr, "kinesis-loader load: which stream? (kinesis-loader load STREAM)\n");
        return -1;
    }
    if (p->continuous && batch_flag != NULL) {
        fprintf(stderr,
                "kinesis-loader load: %s does not apply with --follow, which runs until "
                "stopped\n",
                batch_flag);
        return -1;
    }
    if (!p->continuous && follow_flag != NULL) {
        fprintf(stderr, "kinesis-loader load: %s applies with --follow only\n", follow_flag);
        return -1;
    }
    return 0;
}

static void print_job(const struct kl_store_job *job)
{
    cJSON *doc = kl_doc_job(job);
    char *text = doc != NULL ? cJSON_Print(doc) : NULL;
    if (text != NULL)
        printf("%s\n", text);
    free(text);
    cJSON_Delete(doc);
}

int kl_cmd_load(int argc, char **argv)
{
    struct kl_load_params p;
    struct kl_config cfg;
    struct kl_backends b;
    struct kl_engine *engine;
    struct kl_store *store;
    struct kl_store_job job;
    struct sigaction sa;
    struct kl_err err;
    char id[KL_STORE_JOB_ID_SIZE];
    const char *level = getenv("KL_LOG_LEVEL");
    bool config_loaded = false, existing = false, cancel_sent = false;
    int64_t timeout_s, waited_ms = 0;
    int workers, status = 1, rc;

    kl_store_job_init(&job);
    memset(&b, 0, sizeof b);
    if (parse_args(argc, argv, &p, &workers, &timeout_s) != 0) {
        fprintf(stderr, "(kinesis-loader load --help lists the options)\n");
        return 2;
    }
    /* What POST /streams/{stream}/loads refuses, refused here: the same check */
    rc = kl_load_params_check(&p, print_problem, NULL);
    if (rc != KL_OK) {
        if (rc == KL_ERR_NOMEM)
            fprintf(stderr, "kinesis-loader load: out of memory\n");
        fprintf(stderr, "(kinesis-loader load --help lists the options)\n");
        return rc == KL_ERR_NOMEM ? 1 : 2;
    }
    /* serve's configuration table; the flags override it */
    if (kl_config_load(&cfg, kl_env_system(), &err) != KL_OK) {
        fprintf(stderr, "kinesis-loader load: %s\n", err.msg);
        return 2;
    }
    config_loaded = true;
    /* one job here: the loads a service keeps running are the service's */
    free(cfg.continuous_loads);
    cfg.continuous_loads = NULL;
    cfg.n_continuous_loads = 0;
    if (workers > 0)
        cfg.workers = workers;
    /* quieter than serve unless asked: the job document is the output */
    if (kl_log_set_level_name(level != NULL && level[0] ? cfg.log_level : "warn") != 0) {
        fprintf(stderr, "kinesis-loader load: KL_LOG_LEVEL is debug, info, warn or error\n");
        status = 2;
        goto cleanup;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0) {
        fprintf(stderr, "kinesis-loader load: cannot install signal handlers\n");
        goto cleanup;
    }

    if (kl_backends_open(&b, &cfg, &err) != KL_OK) {
        fprintf(stderr, "kinesis-loader load: %s\n", err.msg);
        goto cleanup;
    }
    engine = b.engine;
    store = b.store;
    rc = kl_engine_submit(engine, &p, NULL, id, &existing, &err);
    if (rc == KL_ERR_CONFLICT) {
        fprintf(stderr,
                "kinesis-loader load: job %s of stream %s and pipeline %s is still "
                "active\n",
                id, p.stream, p.pipeline_name);
        goto cleanup;
    }
    if (rc != KL_OK) {
        fprintf(stderr, "kinesis-loader load: %s\n", err.msg);
        goto cleanup;
    }
    for (;;) {
        rc = kl_engine_wait(engine, id, 1000, &job, &err);
        if (rc == KL_OK)
            break;
        if (rc != KL_ERR_UNAVAILABLE) {
            fprintf(stderr, "kinesis-loader load: %s\n", err.msg);
            goto cleanup;
        }
        waited_ms += 1000;
        if (!cancel_sent &&
            (atomic_load(&interrupted) || (timeout_s > 0 && waited_ms >= timeout_s * 1000))) {
            fprintf(stderr, "kinesis-loader load: cancelling job %s at its next chunk\n", id);
            kl_store_job_cancel(store, id, NULL, NULL);
            cancel_sent = true;
        }
    }
    print_job(&job);
    status = job.status == KL_STORE_JOB_SUCCEEDED ||
                     (p.continuous && cancel_sent && job.status == KL_STORE_JOB_CANCELLED)
                 ? 0
                 : 1;

cleanup:
    kl_backends_close(&b);
    if (config_loaded)
        kl_config_free(&cfg);
    kl_store_job_free(&job);
    return status;
}
