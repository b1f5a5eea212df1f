/*
 * Admission of load parameters (see check.h): the destination's name rules,
 * the normaliser's root table, the job's own reading of its parameters, run
 * before a job exists. Pure: no I/O, no clock.
 */
#include "core/load/check.h"
#include "core/dest/dest.h"
#include "core/normalize/naming.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void report(kl_load_problem_fn problem, void *arg, const char *field, const char *msg)
{
    if (problem != NULL)
        problem(arg, field, msg);
}

/* kl_load_params_validate and kl_load_params_from_json name the field
 * before a ':' ("chunk_size: 1 to 10000"); anything else is about the
 * parameters as a whole. */
static void report_err(kl_load_problem_fn problem, void *arg, const char *msg)
{
    char field[64], text[300];
    const char *colon = strchr(msg, ':');
    size_t n = colon != NULL ? (size_t)(colon - msg) : 0;

    if (n == 0 || n >= sizeof field || memchr(msg, ' ', n) != NULL) {
        report(problem, arg, "parameters", msg);
        return;
    }
    memcpy(field, msg, n);
    field[n] = '\0';
    msg = colon + 1 + (colon[1] == ' ');
    /* params.c words its rules as the value ("1 to 10000"); ours say "must" */
    snprintf(text, sizeof text, "%s%s", strncmp(msg, "must ", 5) == 0 ? "" : "must be ", msg);
    report(problem, arg, field, text);
}

int kl_load_dataset_normalize(const char *name, char *out, char *why, size_t why_cap)
{
    char norm[KL_NAME_CAP];
    size_t len = 0;
    struct kl_err err = {KL_OK, ""};
    int rc;

    if (why_cap > 0)
        why[0] = '\0';
    rc = kl_naming_normalize_identifier(name, strlen(name), KL_NAMING_MAX_LENGTH, norm, &len);
    if (rc == KL_ERR_NOMEM)
        return rc;
    if (rc != KL_OK || len == 0) {
        snprintf(why, why_cap, "must be a name that normalises to an identifier");
        return KL_ERR_INVALID;
    }
    if (len >= KL_IDENT_MAX || kl_dest_validate_dataset(norm, &err) != KL_OK) {
        snprintf(why, why_cap, "normalises to \"%.63s\", which the destination refuses: %s", norm,
                 len >= KL_IDENT_MAX ? "longer than 63 bytes" : err.msg);
        return KL_ERR_INVALID;
    }
    memcpy(out, norm, len + 1);
    return KL_OK;
}

/* The root table as the normaliser names it (root_context in normalizer.c,
 * and complete_job for replace). */
static int check_root_table(const struct kl_load_params *p, kl_load_problem_fn problem, void *arg)
{
    const char *name = p->table_name[0] != '\0' ? p->table_name : p->stream;
    char norm[KL_NAME_CAP], msg[600];
    size_t len = 0;
    struct kl_err err;
    int rc = kl_naming_normalize_identifier(name, strlen(name), KL_NAMING_MAX_LENGTH, norm, &len);

    if (rc == KL_ERR_NOMEM)
        return rc;
    if (rc != KL_OK || len == 0) {
        if (p->table_name[0] != '\0')
            snprintf(msg, sizeof msg, "normalises to no table name");
        else
            snprintf(msg, sizeof msg,
                     "is needed: the stream name \"%.128s\" normalises to no table name", name);
        report(problem, arg, "table_name", msg);
        return KL_ERR_INVALID;
    }
    if (len >= KL_IDENT_MAX || kl_dest_validate_table(norm, &err) != KL_OK) {
        snprintf(msg, sizeof msg,
                 "%s\"%.128s\" normalises to \"%.63s\", which the destination "
                 "refuses: %.255s",
                 p->table_name[0] != '\0' ? "" : "is needed: the stream name ", name, norm,
                 len >= KL_IDENT_MAX ? "longer than 63 bytes" : err.msg);
        report(problem, arg, "table_name", msg);
        return KL_ERR_INVALID;
    }
    return KL_OK;
}

/* The field where `a` and `b` differ, or NULL. */
static const char *first_difference(const struct kl_load_params *a, const struct kl_load_params *b)
{
    if (strcmp(a->pipeline_name, b->pipeline_name) != 0)
        return "pipeline_name";
    if (strcmp(a->dataset_name, b->dataset_name) != 0)
        return "dataset_name";
    if (strcmp(a->table_name, b->table_name) != 0)
        return "table_name";
    if (a->initial.kind != b->initial.kind || a->initial.at_ms != b->initial.at_ms ||
        (a->initial.kind == KL_INITIAL_AT_TIMESTAMP &&
         strcmp(a->initial_text, b->initial_text) != 0))
        return "initial_at_timestamp";
    if (a->max_messages != b->max_messages)
        return "max_number_of_messages";
    if (a->millis_behind_latest != b->millis_behind_latest)
        return "milliseconds_behind_latest";
    if (a->parse_json != b->parse_json)
        return "parse_json";
    if (a->chunk_size != b->chunk_size)
        return "chunk_size";
    if (a->write_disposition != b->write_disposition)
        return "write_disposition";
    return NULL;
}

/* What the job does first: read the stored parameters back. */
static int check_round_trip(const struct kl_load_params *p, kl_load_problem_fn problem, void *arg)
{
    struct kl_load_params back;
    struct kl_err err = {KL_OK, ""};
    cJSON *doc = kl_load_params_to_json(p);
    char *text = doc != NULL ? cJSON_PrintUnformatted(doc) : NULL;
    const char *field;
    int rc = KL_ERR_NOMEM;

    if (text == NULL)
        goto cleanup;
    memset(&back, 0, sizeof back);
    memcpy(back.stream, p->stream, sizeof back.stream);
    rc = kl_load_params_from_json(text, &back, &err);
    if (rc == KL_ERR_NOMEM)
        goto cleanup;
    if (rc != KL_OK) {
        report_err(problem, arg, err.msg);
        rc = KL_ERR_INVALID;
        goto cleanup;
    }
    field = first_difference(p, &back);
    if (field != NULL) {
        report(problem, arg, field,
               "cannot be stored as given: the job would read it back "
               "as another value");
        rc = KL_ERR_INVALID;
    }
cleanup:
    free(text);
    cJSON_Delete(doc);
    return rc;
}

int kl_load_params_check(struct kl_load_params *p, kl_load_problem_fn problem, void *arg)
{
    struct kl_err err = {KL_OK, ""};
    char why[200];
    int rc, bad = KL_OK;

    if (kl_load_params_validate(p, &err) != KL_OK) {
        report_err(problem, arg, err.msg);
        return KL_ERR_INVALID;
    }
    if (p->max_messages > KL_MAX_MESSAGES_MAX) {
        report(problem, arg, "max_number_of_messages", "must be null or from 1 to 999999999999999");
        return KL_ERR_INVALID;
    }
    rc = kl_load_dataset_normalize(p->dataset_name, p->dataset_name, why, sizeof why);
    if (rc == KL_ERR_NOMEM)
        return rc;
    if (rc != KL_OK) {
        report(problem, arg, "dataset_name", why);
        bad = KL_ERR_INVALID;
    }
    rc = check_root_table(p, problem, arg);
    if (rc == KL_ERR_NOMEM)
        return rc;
    if (rc != KL_OK)
        bad = KL_ERR_INVALID;
    if (p->initial.kind == KL_INITIAL_AT_TIMESTAMP && p->initial.at_ms <= 0) {
        report(problem, arg, "initial_at_timestamp",
               "must be after 1970-01-01T00:00:00Z (null starts at TRIM_HORIZON, 0 at LATEST)");
        bad = KL_ERR_INVALID;
    }
    if (bad != KL_OK)
        return bad;
    return check_round_trip(p, problem, arg);
}
