/*
 * Defaults and validation of load parameters (see params.h).
 */
#include "core/load/params.h"
#include "core/util/err.h"

#include <stdio.h>
#include <string.h>

void kl_load_params_defaults(struct kl_load_params *p, const char *stream)
{
    memset(p, 0, sizeof *p);
    snprintf(p->stream, sizeof p->stream, "%s", stream ? stream : "");
    snprintf(p->pipeline_name, sizeof p->pipeline_name, "kinesis_pipeline");
    snprintf(p->dataset_name, sizeof p->dataset_name, "kinesis");
    p->initial.kind = KL_INITIAL_LATEST; /* dlt: initial_at_timestamp = 0 */
    p->initial.at_ms = 0;
    snprintf(p->initial_text, sizeof p->initial_text, "0");
    p->max_messages = -1;
    p->millis_behind_latest = 1000;
    p->parse_json = true;
    p->chunk_size = 1000;
    p->write_disposition = KL_WRITE_APPEND;
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
    return KL_OK;
}
