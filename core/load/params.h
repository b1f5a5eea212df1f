/*
 * A load job's parameters: dlt's `kinesis_stream` arguments plus the
 * destination names, validated, with dlt's defaults. Shared by the REST API
 * (which parses them from JSON) and the `load` command (from flags). How a
 * job runs is in job.h.
 */
#ifndef KL_LOAD_PARAMS_H
#define KL_LOAD_PARAMS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/kinesis/client.h"
#include "core/kinesis/start.h"
#include "core/normalize/rows.h"

#define KL_PIPELINE_NAME_MAX 65  /* 1..64 of [a-zA-Z0-9_.-] */
#define KL_TIMESTAMP_TEXT_MAX 64 /* initial_at_timestamp as a string (openapi.yaml) */

/* dlt's defaults for the kinesis source (openapi.yaml's LoadRequest) */
#define KL_DEFAULT_PIPELINE_NAME "kinesis_pipeline"
#define KL_DEFAULT_DATASET_NAME "kinesis"

struct kl_err;

struct kl_load_params {
    char stream[KL_STREAM_NAME_MAX];
    char pipeline_name[KL_PIPELINE_NAME_MAX]; /* KL_DEFAULT_PIPELINE_NAME */
    char dataset_name[KL_IDENT_MAX];          /* KL_DEFAULT_DATASET_NAME */
    char table_name[KL_IDENT_MAX];            /* "" = the stream name, normalised */
    /* initial_at_timestamp: kind TRIM_HORIZON for null, LATEST for 0 (the
     * default), AT_TIMESTAMP otherwise; the text as given, for the job document */
    struct kl_initial_position initial;
    char initial_text[KL_TIMESTAMP_TEXT_MAX + 1]; /* "null", "0", or the value given */
    int64_t max_messages;                         /* -1 = no budget (null) */
    int64_t millis_behind_latest;                 /* default 1000 */
    bool parse_json;                              /* default true */
    int chunk_size;                               /* 1..10000, default 1000 */
    enum kl_write_disposition write_disposition;  /* default append */
    /* A continuous load follows the stream's tip until cancelled; the two
     * below apply to it alone. */
    bool continuous;
    int64_t poll_interval_ms;    /* between GetRecords calls of a shard at its tip */
    int64_t max_commit_delay_ms; /* a record read is committed within this */
    int64_t load_window_s;       /* each window's rows are one dlt load */
};

/* The continuous parameters' defaults and ranges (openapi.yaml) */
#define KL_POLL_INTERVAL_DEFAULT_MS 1000
#define KL_POLL_INTERVAL_MIN_MS 200 /* Kinesis: 5 reads a second per shard, all consumers */
#define KL_POLL_INTERVAL_MAX_MS 60000
#define KL_COMMIT_DELAY_DEFAULT_MS 1000
#define KL_COMMIT_DELAY_MAX_MS 60000
#define KL_LOAD_WINDOW_DEFAULT_S 300
#define KL_LOAD_WINDOW_MIN_S 10
#define KL_LOAD_WINDOW_MAX_S 86400

/* A continuous load's window `k` (its rows' _dlt_load_id): windows are
 * load_window_s apart from the job's creation; window 0's id is the job's
 * own load id. `out` holds at least KL_LOAD_ID_MAX bytes. */
#define KL_LOAD_ID_MAX 40
int64_t kl_load_window_at(const struct kl_load_params *p, int64_t created_ms, int64_t now_ms);
void kl_load_window_id(const struct kl_load_params *p, int64_t created_ms, int64_t k, char *out);

/* Fills every field with dlt's default for `stream` (not validated here). */
void kl_load_params_defaults(struct kl_load_params *p, const char *stream);

/* Checks names and ranges; the message names the first bad field. */
int kl_load_params_validate(const struct kl_load_params *p, struct kl_err *err);

struct cJSON;

/* The parameters as the job document shows them (every default filled in):
 * a cJSON object the caller deletes, or NULL when out of memory. */
struct cJSON *kl_load_params_to_json(const struct kl_load_params *p);
/* Reads what kl_load_params_to_json wrote (a stored job's parameters). */
int kl_load_params_from_json(const char *json, struct kl_load_params *p, struct kl_err *err);

/* Name rules, for the codecs: pipeline 1..64 of [a-zA-Z0-9_.-]; dataset and
 * table 1..63 of [a-zA-Z0-9_] not starting with a digit. */
bool kl_pipeline_name_valid(const char *s);
bool kl_sql_name_valid(const char *s);

#endif
