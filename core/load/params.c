/*
 * Defaults and validation of load parameters (see params.h).
 */
#include "core/load/params.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kl_load_params_defaults(struct kl_load_params *p, const char *stream)
{
    memset(p, 0, sizeof *p);
    snprintf(p->stream, sizeof p->stream, "%s", stream ? stream : "");
    snprintf(p->pipeline_name, sizeof p->pipeline_name, "%s", KL_DEFAULT_PIPELINE_NAME);
    snprintf(p->dataset_name, sizeof p->dataset_name, "%s", KL_DEFAULT_DATASET_NAME);
    p->initial.kind = KL_INITIAL_LATEST; /* dlt: initial_at_timestamp = 0 */
    p->initial.at_ms = 0;
    snprintf(p->initial_text, sizeof p->initial_text, "0");
    p->max_messages = -1;
    p->millis_behind_latest = 1000;
    p->parse_json = true;
    p->chunk_size = 1000;
    p->write_disposition = KL_WRITE_APPEND;
    p->continuous = false;
    p->poll_interval_ms = KL_POLL_INTERVAL_DEFAULT_MS;
    p->max_commit_delay_ms = KL_COMMIT_DELAY_DEFAULT_MS;
    p->load_window_s = KL_LOAD_WINDOW_DEFAULT_S;
}

int64_t kl_load_window_at(const struct kl_load_params *p, int64_t created_ms, int64_t now_ms)
{
    int64_t w = p->load_window_s > 0 ? p->load_window_s * 1000 : 1;
    return now_ms > created_ms ? (now_ms - created_ms) / w : 0;
}

void kl_load_window_id(const struct kl_load_params *p, int64_t created_ms, int64_t k, char *out)
{
    /* dlt's load id: seconds with microseconds */
    int64_t ms = created_ms + k * (p->load_window_s > 0 ? p->load_window_s : 0) * 1000;
    snprintf(out, KL_LOAD_ID_MAX, "%lld.%06lld", (long long)(ms / 1000),
             (long long)(ms % 1000) * 1000);
}

bool kl_pipeline_name_valid(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return n >= 1 && n < KL_PIPELINE_NAME_MAX;
}

bool kl_sql_name_valid(const char *s)
{
    size_t n = 0;
    if (s[0] >= '0' && s[0] <= '9')
        return false;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return n >= 1 && n < KL_IDENT_MAX;
}

int kl_load_params_validate(const struct kl_load_params *p, struct kl_err *err)
{
    if (!kl_stream_name_valid(p->stream))
        return kl_err_set(err, KL_ERR_INVALID,
                          "stream: 1 to 128 characters of a-z, A-Z, 0-9, '_', '.', '-'");
    if (!kl_pipeline_name_valid(p->pipeline_name))
        return kl_err_set(err, KL_ERR_INVALID,
                          "pipeline_name: 1 to 64 characters of a-z, A-Z, 0-9, '_', '.', '-'");
    if (!kl_sql_name_valid(p->dataset_name))
        return kl_err_set(err, KL_ERR_INVALID,
                          "dataset_name: 1 to 63 characters of a-z, A-Z, 0-9, '_', not starting "
                          "with a digit");
    if (p->table_name[0] != '\0' && !kl_sql_name_valid(p->table_name))
        return kl_err_set(err, KL_ERR_INVALID,
                          "table_name: 1 to 63 characters of a-z, A-Z, 0-9, '_', not starting "
                          "with a digit");
    if (p->max_messages == 0 || p->max_messages < -1)
        return kl_err_set(err, KL_ERR_INVALID, "max_number_of_messages: null or at least 1");
    if (p->millis_behind_latest < 0 || p->millis_behind_latest > 604800000)
        return kl_err_set(err, KL_ERR_INVALID,
                          "milliseconds_behind_latest: 0 to 604800000 (7 days)");
    if (p->chunk_size < 1 || p->chunk_size > 10000)
        return kl_err_set(err, KL_ERR_INVALID, "chunk_size: 1 to 10000");
    if (p->write_disposition != KL_WRITE_APPEND && p->write_disposition != KL_WRITE_MERGE &&
        p->write_disposition != KL_WRITE_REPLACE)
        return kl_err_set(err, KL_ERR_INVALID, "write_disposition: append, merge or replace");
    if (p->poll_interval_ms < KL_POLL_INTERVAL_MIN_MS ||
        p->poll_interval_ms > KL_POLL_INTERVAL_MAX_MS)
        return kl_err_set(err, KL_ERR_INVALID, "poll_interval_ms: %d to %d",
                          KL_POLL_INTERVAL_MIN_MS, KL_POLL_INTERVAL_MAX_MS);
    if (p->max_commit_delay_ms < 0 || p->max_commit_delay_ms > KL_COMMIT_DELAY_MAX_MS)
        return kl_err_set(err, KL_ERR_INVALID, "max_commit_delay_ms: 0 to %d",
                          KL_COMMIT_DELAY_MAX_MS);
    if (p->load_window_s < KL_LOAD_WINDOW_MIN_S || p->load_window_s > KL_LOAD_WINDOW_MAX_S)
        return kl_err_set(err, KL_ERR_INVALID, "load_window_s: %d to %d", KL_LOAD_WINDOW_MIN_S,
                          KL_LOAD_WINDOW_MAX_S);
    if (p->continuous && p->write_disposition == KL_WRITE_REPLACE)
        return kl_err_set(err, KL_ERR_INVALID,
                          "write_disposition: append or merge for a continuous load (replace "
                          "would empty the tables at every load window)");
    if (p->continuous && p->max_messages != -1)
        return kl_err_set(err, KL_ERR_INVALID,
                          "max_number_of_messages: must be null for a continuous load, which "
                          "runs until cancelled");
    return KL_OK;
}

cJSON *kl_load_params_to_json(const struct kl_load_params *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *initial;
    bool ok;

    if (o == NULL)
        return NULL;
    if (p->initial.kind == KL_INITIAL_TRIM_HORIZON)
        initial = cJSON_CreateNull();
    else if (p->initial.kind == KL_INITIAL_LATEST)
        initial = cJSON_CreateNumber(0);
    else
        initial = cJSON_CreateString(p->initial_text);
    ok = initial != NULL && cJSON_AddItemToObject(o, "initial_at_timestamp", initial);
    if (!ok)
        cJSON_Delete(initial);
    ok = ok && cJSON_AddStringToObject(o, "pipeline_name", p->pipeline_name) != NULL &&
         cJSON_AddStringToObject(o, "dataset_name", p->dataset_name) != NULL &&
         cJSON_AddStringToObject(o, "table_name", p->table_name) != NULL &&
         (p->max_messages < 0 ? cJSON_AddNullToObject(o, "max_number_of_messages") != NULL
                              : cJSON_AddNumberToObject(o, "max_number_of_messages",
                                                        (double)p->max_messages) != NULL) &&
         cJSON_AddNumberToObject(o, "milliseconds_behind_latest",
                                 (double)p->millis_behind_latest) != NULL &&
         cJSON_AddBoolToObject(o, "parse_json", p->parse_json) != NULL &&
         cJSON_AddNumberToObject(o, "chunk_size", p->chunk_size) != NULL &&
         cJSON_AddStringToObject(o, "write_disposition",
                                 kl_write_disposition_name(p->write_disposition)) != NULL &&
         cJSON_AddBoolToObject(o, "continuous", p->continuous) != NULL;
    /* what applies to a continuous load alone shows with it alone */
    if (ok && p->continuous)
        ok = cJSON_AddNumberToObject(o, "poll_interval_ms", (double)p->poll_interval_ms) != NULL &&
             cJSON_AddNumberToObject(o, "max_commit_delay_ms", (double)p->max_commit_delay_ms) !=
                 NULL &&
             cJSON_AddNumberToObject(o, "load_window_s", (double)p->load_window_s) != NULL;
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static int copy_str(char *dst, size_t cap, const cJSON *v, const char *field, struct kl_err *err)
{
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap)
        return kl_err_set(err, KL_ERR_INVALID, "stored parameters: bad %s", field);
    memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
    return KL_OK;
}

int kl_load_params_from_json(const char *json, struct kl_load_params *p, struct kl_err *err)
{
    cJSON *o = cJSON_Parse(json);
    const cJSON *v;
    int rc = KL_OK;
    char stream[KL_STREAM_NAME_MAX];

    snprintf(stream, sizeof stream, "%s", p->stream);
    kl_load_params_defaults(p, stream);
    if (!cJSON_IsObject(o)) {
        rc = kl_err_set(err, KL_ERR_INVALID, "stored parameters are not a JSON object");
        goto cleanup;
    }
    if ((rc = copy_str(p->pipeline_name, sizeof p->pipeline_name,
                       cJSON_GetObjectItemCaseSensitive(o, "pipeline_name"), "pipeline_name",
                       err)) ||
        (rc = copy_str(p->dataset_name, sizeof p->dataset_name,
                       cJSON_GetObjectItemCaseSensitive(o, "dataset_name"), "dataset_name", err)) ||
        (rc = copy_str(p->table_name, sizeof p->table_name,
                       cJSON_GetObjectItemCaseSensitive(o, "table_name"), "table_name", err)))
        goto cleanup;
    v = cJSON_GetObjectItemCaseSensitive(o, "initial_at_timestamp");
    if (cJSON_IsNull(v)) {
        p->initial.kind = KL_INITIAL_TRIM_HORIZON;
        snprintf(p->initial_text, sizeof p->initial_text, "null");
    } else if (cJSON_IsNumber(v) && v->valuedouble == 0) {
        p->initial.kind = KL_INITIAL_LATEST;
        snprintf(p->initial_text, sizeof p->initial_text, "0");
    } else if (cJSON_IsString(v)) {
        snprintf(p->initial_text, sizeof p->initial_text, "%s", v->valuestring);
        rc = kl_parse_initial_position(v->valuestring, &p->initial, err);
        if (rc != KL_OK)
            goto cleanup;
    } else {
        rc = kl_err_set(err, KL_ERR_INVALID, "stored parameters: bad initial_at_timestamp");
        goto cleanup;
    }
    v = cJSON_GetObjectItemCaseSensitive(o, "max_number_of_messages");
    p->max_messages = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
    v = cJSON_GetObjectItemCaseSensitive(o, "milliseconds_behind_latest");
    if (cJSON_IsNumber(v))
        p->millis_behind_latest = (int64_t)v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(o, "parse_json");
    if (cJSON_IsBool(v))
        p->parse_json = cJSON_IsTrue(v);
    v = cJSON_GetObjectItemCaseSensitive(o, "chunk_size");
    if (cJSON_IsNumber(v))
        p->chunk_size = (int)v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(o, "write_disposition");
    if (cJSON_IsString(v))
        kl_write_disposition_parse(v->valuestring, &p->write_disposition);
    v = cJSON_GetObjectItemCaseSensitive(o, "continuous");
    if (cJSON_IsBool(v))
        p->continuous = cJSON_IsTrue(v);
    v = cJSON_GetObjectItemCaseSensitive(o, "poll_interval_ms");
    if (cJSON_IsNumber(v))
        p->poll_interval_ms = (int64_t)v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(o, "max_commit_delay_ms");
    if (cJSON_IsNumber(v))
        p->max_commit_delay_ms = (int64_t)v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(o, "load_window_s");
    if (cJSON_IsNumber(v))
        p->load_window_s = (int64_t)v->valuedouble;
    rc = kl_load_params_validate(p, err);

cleanup:
    cJSON_Delete(o);
    return rc;
}
