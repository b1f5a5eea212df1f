/*
 * LoadRequest JSON -> struct kl_load_params. One row per field in
 * load_fields[]; each parser checks the JSON type and the range openapi.yaml
 * gives and reports into the field errors instead of stopping, so a client
 * learns every mistake at once.
 */
#include "api/load_codec.h"
#include "api/problem.h"
#include "core/load/check.h"
#include "core/normalize/json.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_RULE "1 to 64 characters of a-z, A-Z, 0-9, '_', '.', '-'"
#define SQL_NAME_RULE "1 to 63 characters of a-z, A-Z, 0-9, '_', not starting with a digit"
#define LOAD_FIELD_NAMES                                                                           \
    "pipeline_name, dataset_name, table_name, initial_at_timestamp, max_number_of_messages, "      \
    "milliseconds_behind_latest, parse_json, chunk_size, write_disposition, continuous, "          \
    "poll_interval_ms, max_commit_delay_ms, load_window_s"

static const char *type_name(const cJSON *v)
{
    if (cJSON_IsNull(v))
        return "null";
    if (cJSON_IsBool(v))
        return "a boolean";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsArray(v))
        return "an array";
    return "an object";
}

void kl_json_number_text(double d, char *out, size_t cap)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, d);
        if (strtod(out, NULL) == d)
            return;
    }
}

/* An integer in [min, max]; JSON Schema's idea of an integer (1.0 and 1e3 are). */
static int get_int(const cJSON *v, const char *name, long long min, long long max, long long *out,
                   struct kl_field_errors *fe)
{
    char text[32];
    double d;

    if (!cJSON_IsNumber(v)) {
        kl_field_errors_add(fe, name, "must be an integer from %lld to %lld, not %s", min, max,
                            type_name(v));
        return KL_ERR_INVALID;
    }
    d = v->valuedouble;
    kl_json_number_text(d, text, sizeof text);
    if (!isfinite(d) || d != floor(d)) {
        kl_field_errors_add(fe, name, "must be an integer, not %s", text);
        return KL_ERR_INVALID;
    }
    if (d < (double)min || d > (double)max) {
        kl_field_errors_add(fe, name, "must be from %lld to %lld, not %s", min, max, text);
        return KL_ERR_INVALID;
    }
    *out = (long long)d;
    return KL_OK;
}

/* A string no longer than cap - 1 bytes, copied into `dst`. */
static int get_string(const cJSON *v, const char *name, const char *rule, char *dst, size_t cap,
                      struct kl_field_errors *fe)
{
    size_t len;

    if (!cJSON_IsString(v) || v->valuestring == NULL) {
        kl_field_errors_add(fe, name, "must be a string of %s, not %s", rule, type_name(v));
        return KL_ERR_INVALID;
    }
    len = strlen(v->valuestring);
    if (len >= cap) {
        kl_field_errors_add(fe, name, "must be %s (got %zu characters)", rule, len);
        return KL_ERR_INVALID;
    }
    memcpy(dst, v->valuestring, len + 1);
    return KL_OK;
}

static void parse_pipeline_name(const cJSON *v, const char *name, struct kl_load_params *p,
                                struct kl_field_errors *fe)
{
    char s[KL_PIPELINE_NAME_MAX];
    if (get_string(v, name, NAME_RULE, s, sizeof s, fe) != KL_OK)
        return;
    if (!kl_pipeline_name_valid(s)) {
        kl_field_errors_add(fe, name, "must be %s", NAME_RULE);
        return;
    }
    memcpy(p->pipeline_name, s, sizeof s);
}

static void parse_sql_name(const cJSON *v, const char *name, char *dst, struct kl_field_errors *fe)
{
    char s[KL_IDENT_MAX];
    if (get_string(v, name, SQL_NAME_RULE, s, sizeof s, fe) != KL_OK)
        return;
    if (!kl_sql_name_valid(s)) {
        kl_field_errors_add(fe, name, "must be %s", SQL_NAME_RULE);
        return;
    }
    memcpy(dst, s, sizeof s);
}

static void parse_dataset_name(const cJSON *v, const char *name, struct kl_load_params *p,
                               struct kl_field_errors *fe)
{
    parse_sql_name(v, name, p->dataset_name, fe);
}

static void parse_table_name(const cJSON *v, const char *name, struct kl_load_params *p,
                             struct kl_field_errors *fe)
{
    parse_sql_name(v, name, p->table_name, fe);
}

/* dlt: null -> TRIM_HORIZON, 0 -> LATEST, else AT_TIMESTAMP (epoch s or ISO-8601). */
static void parse_initial(const cJSON *v, const char *name, struct kl_load_params *p,
                          struct kl_field_errors *fe)
{
    struct kl_err err;
    char text[32];
    int64_t ms;

    if (cJSON_IsNull(v)) {
        p->initial.kind = KL_INITIAL_TRIM_HORIZON;
        p->initial.at_ms = 0;
        snprintf(p->initial_text, sizeof p->initial_text, "null");
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (!isfinite(d) || d < 0 || d > KL_EPOCH_S_MAX) {
            kl_field_errors_add(fe, name,
                                "must be null, 0 or epoch seconds from 0 to %.0f (9999-12-31)",
                                KL_EPOCH_S_MAX);
            return;
        }
        if (d == 0) {
            p->initial.kind = KL_INITIAL_LATEST;
            p->initial.at_ms = 0;
            snprintf(p->initial_text, sizeof p->initial_text, "0");
            return;
        }
        /* The job reads the stored text back (kl_parse_timestamp: whole
         * milliseconds, no exponent), so the milliseconds come from the
         * same text; below 0.001 s that text has an exponent or reads as 0. */
        kl_json_number_text(d, text, sizeof text);
        if (kl_parse_timestamp(text, &ms, &err) != KL_OK || ms <= 0) {
            kl_field_errors_add(
                fe, name, "must be 0 (LATEST) or epoch seconds of at least 0.001, not %s", text);
            return;
        }
        p->initial.kind = KL_INITIAL_AT_TIMESTAMP;
        p->initial.at_ms = ms;
        memcpy(p->initial_text, text, strlen(text) + 1);
    } else if (cJSON_IsString(v) && v->valuestring != NULL) {
        size_t len = strlen(v->valuestring);
        if (len == 0 || len > KL_TIMESTAMP_TEXT_MAX) {
            kl_field_errors_add(fe, name, "must be a timestamp of 1 to %d characters",
                                KL_TIMESTAMP_TEXT_MAX);
            return;
        }
        if (kl_parse_timestamp(v->valuestring, &ms, &err) != KL_OK) {
            kl_field_errors_add(fe, name,
                                "must be epoch seconds or an ISO-8601 timestamp such as "
                                "2024-05-01T12:00:00Z");
            return;
        }
        p->initial.kind = KL_INITIAL_AT_TIMESTAMP;
        p->initial.at_ms = ms;
        memcpy(p->initial_text, v->valuestring, len + 1);
    } else {
        kl_field_errors_add(fe, name,
                            "must be null, a number of epoch seconds or an ISO-8601 string, "
                            "not %s",
                            type_name(v));
    }
}

static void parse_max_messages(const cJSON *v, const char *name, struct kl_load_params *p,
                               struct kl_field_errors *fe)
{
    long long n;

    if (cJSON_IsNull(v)) {
        p->max_messages = -1;
        return;
    }
    if (get_int(v, name, 1, KL_MAX_MESSAGES_MAX, &n, fe) == KL_OK)
        p->max_messages = n;
}

static void parse_millis_behind(const cJSON *v, const char *name, struct kl_load_params *p,
                                struct kl_field_errors *fe)
{
    long long n;
    if (get_int(v, name, 0, 604800000, &n, fe) == KL_OK)
        p->millis_behind_latest = n;
}

static void parse_parse_json(const cJSON *v, const char *name, struct kl_load_params *p,
                             struct kl_field_errors *fe)
{
    if (!cJSON_IsBool(v)) {
        kl_field_errors_add(fe, name, "must be true or false, not %s", type_name(v));
        return;
    }
    p->parse_json = cJSON_IsTrue(v);
}

static void parse_chunk_size(const cJSON *v, const char *name, struct kl_load_params *p,
                             struct kl_field_errors *fe)
{
    long long n;
    if (get_int(v, name, 1, 10000, &n, fe) == KL_OK)
        p->chunk_size = (int)n;
}

static void parse_write_disposition(const cJSON *v, const char *name, struct kl_load_params *p,
                                    struct kl_field_errors *fe)
{
    if (cJSON_IsString(v) && kl_write_disposition_parse(v->valuestring, &p->write_disposition) == 0)
        return;
    kl_field_errors_add(fe, name, "must be \"append\", \"merge\" or \"replace\"");
}

static void parse_continuous(const cJSON *v, const char *name, struct kl_load_params *p,
                             struct kl_field_errors *fe)
{
    if (!cJSON_IsBool(v)) {
        kl_field_errors_add(fe, name, "must be true or false, not %s", type_name(v));
        return;
    }
    p->continuous = cJSON_IsTrue(v);
}

static void parse_poll_interval(const cJSON *v, const char *name, struct kl_load_params *p,
                                struct kl_field_errors *fe)
{
    long long n;
    if (get_int(v, name, KL_POLL_INTERVAL_MIN_MS, KL_POLL_INTERVAL_MAX_MS, &n, fe) == KL_OK)
        p->poll_interval_ms = n;
}

static void parse_commit_delay(const cJSON *v, const char *name, struct kl_load_params *p,
                               struct kl_field_errors *fe)
{
    long long n;
    if (get_int(v, name, 0, KL_COMMIT_DELAY_MAX_MS, &n, fe) == KL_OK)
        p->max_commit_delay_ms = n;
}

static void parse_load_window(const cJSON *v, const char *name, struct kl_load_params *p,
                              struct kl_field_errors *fe)
{
    long long n;
    if (get_int(v, name, KL_LOAD_WINDOW_MIN_S, KL_LOAD_WINDOW_MAX_S, &n, fe) == KL_OK)
        p->load_window_s = n;
}

static const struct load_field {
    const char *name;
    void (*parse)(const cJSON *v, const char *name, struct kl_load_params *p,
                  struct kl_field_errors *fe);
} load_fields[] = {
    {"pipeline_name", parse_pipeline_name},
    {"dataset_name", parse_dataset_name},
    {"table_name", parse_table_name},
    {"initial_at_timestamp", parse_initial},
    {"max_number_of_messages", parse_max_messages},
    {"milliseconds_behind_latest", parse_millis_behind},
    {"parse_json", parse_parse_json},
    {"chunk_size", parse_chunk_size},
    {"write_disposition", parse_write_disposition},
    {"continuous", parse_continuous},
    {"poll_interval_ms", parse_poll_interval},
    {"max_commit_delay_ms", parse_commit_delay},
    {"load_window_s", parse_load_window},
};

#define N_LOAD_FIELDS (sizeof load_fields / sizeof load_fields[0])

static const struct load_field *find_field(const char *name)
{
    for (size_t i = 0; i < N_LOAD_FIELDS; i++) {
        if (strcmp(load_fields[i].name, name) == 0)
            return &load_fields[i];
    }
    return NULL;
}

static bool was_given(const bool *seen, const char *name)
{
    const struct load_field *f = find_field(name);
    return f != NULL && seen[f - load_fields];
}

/* What a continuous load refuses, and what applies to it alone. */
static void check_continuous(const struct kl_load_params *p, const bool *seen,
                             struct kl_field_errors *fe)
{
    static const char *const batch_only[] = {"max_number_of_messages",
                                             "milliseconds_behind_latest"};
    static const char *const continuous_only[] = {"poll_interval_ms", "max_commit_delay_ms",
                                                  "load_window_s"};

    for (size_t i = 0; p->continuous && i < sizeof batch_only / sizeof batch_only[0]; i++)
        if (was_given(seen, batch_only[i]))
            kl_field_errors_add(fe, batch_only[i],
                                "does not apply to a continuous load, which follows the stream "
                                "until cancelled");
    for (size_t i = 0; !p->continuous && i < sizeof continuous_only / sizeof continuous_only[0];
         i++)
        if (was_given(seen, continuous_only[i]))
            kl_field_errors_add(fe, continuous_only[i],
                                "applies to continuous loads only (\"continuous\": true)");
}

/* RFC 8259 or nothing: cJSON alone takes NUL and control characters as
 * whitespace, leading zeros, "5." and invalid UTF-8, and a NUL inside a
 * string or key (raw or as \u0000) cuts it short without anyone noticing.
 * The normaliser's exact parser decides what is JSON; cJSON then only reads
 * what passed. LoadRequest is flat, so only the top level can smuggle a
 * NUL into a value that is used (a nested value is refused by its type). */
static int strict_json(const char *body, size_t len, char *detail, size_t detail_cap)
{
    struct kl_json_doc doc;
    char reason[96];
    int rc;

    if (len >= 3 && memcmp(body, "\xEF\xBB\xBF", 3) == 0) {
        snprintf(detail, detail_cap, "the body must not start with a byte order mark");
        return KL_ERR_INVALID;
    }
    kl_json_doc_init(&doc);
    rc = kl_json_parse(&doc, body, len, reason, sizeof reason);
    if (rc == KL_ERR_NOMEM) {
        snprintf(detail, detail_cap, "out of memory reading the body");
        goto cleanup;
    }
    if (rc != KL_OK) {
        snprintf(detail, detail_cap, "the body is not valid JSON (RFC 8259): %s", reason);
        goto cleanup;
    }
    if (doc.root.type == KL_JSON_OBJECT) {
        for (uint32_t i = 0; i < doc.root.len; i++) {
            const struct kl_json_member *m = &doc.root.u.members[i];
            if (memchr(m->key, '\0', m->key_len) != NULL ||
                (m->value.type == KL_JSON_STRING && m->value.has_nul)) {
                snprintf(detail, detail_cap,
                         "names and strings in the body must not contain U+0000");
                rc = KL_ERR_INVALID;
                goto cleanup;
            }
        }
    }
cleanup:
    kl_json_doc_free(&doc);
    return rc;
}

static void add_problem(void *arg, const char *field, const char *msg)
{
    kl_field_errors_add(arg, field, "%s", msg);
}

int kl_load_request_parse(const char *stream, const char *body, size_t len,
                          struct kl_load_params *out, struct kl_field_errors *fe, char *detail,
                          size_t detail_cap)
{
    struct kl_load_params p;
    cJSON *doc = NULL;
    const char *end = NULL;
    bool seen[N_LOAD_FIELDS] = {false};
    int rc = KL_ERR_INVALID;

    kl_field_errors_init(fe);
    if (detail_cap > 0)
        detail[0] = '\0';
    if (!kl_stream_name_valid(stream)) {
        kl_field_errors_add(fe, "stream",
                            "must be 1 to 128 characters of a-z, A-Z, 0-9, '_', "
                            "'.', '-'");
        goto cleanup;
    }
    kl_load_params_defaults(&p, stream);
    if (len > 0) {
        rc = strict_json(body, len, detail, detail_cap);
        if (rc != KL_OK)
            goto cleanup;
        rc = KL_ERR_INVALID;
        /* Trailing bytes are checked here: cJSON's own check wants a NUL
         * inside `len`, which would also hide bytes after an embedded NUL. */
        doc = cJSON_ParseWithLengthOpts(body, len, &end, false);
        if (doc != NULL && end != NULL && end >= body && end <= body + len) {
            while (end < body + len &&
                   (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
                end++;
            if (end != body + len) {
                cJSON_Delete(doc);
                doc = NULL;
            }
        }
        if (doc == NULL) {
            size_t at = end != NULL && end >= body && end <= body + len ? (size_t)(end - body) : 0;
            snprintf(detail, detail_cap, "the body is not valid JSON (error near byte %zu)", at);
            goto cleanup;
        }
        if (!cJSON_IsObject(doc)) {
            snprintf(detail, detail_cap, "the body must be a JSON object, not %s", type_name(doc));
            goto cleanup;
        }
        for (const cJSON *it = doc->child; it != NULL; it = it->next) {
            const struct load_field *f = find_field(it->string != NULL ? it->string : "");
            if (f == NULL) {
                kl_field_errors_add(fe, it->string != NULL ? it->string : "",
                                    "unknown field (LoadRequest has " LOAD_FIELD_NAMES ")");
                continue;
            }
            if (seen[f - load_fields]) {
                kl_field_errors_add(fe, f->name, "is given more than once");
                continue;
            }
            seen[f - load_fields] = true;
            f->parse(it, f->name, &p, fe);
        }
    }
    check_continuous(&p, seen, fe);
    if (fe->n > 0 || fe->dropped > 0)
        goto cleanup;
    rc = kl_load_params_check(&p, add_problem, fe);
    if (rc != KL_OK) {
        if (rc == KL_ERR_NOMEM)
            snprintf(detail, detail_cap, "out of memory checking the parameters");
        goto cleanup;
    }
    *out = p;
    rc = KL_OK;
cleanup:
    cJSON_Delete(doc);
    return rc;
}

/* One entry of KL_CONTINUOUS_LOADS into `out` (its index `i` for messages). */
static int parse_list_entry(const cJSON *entry, size_t i, struct kl_load_params *out, char *detail,
                            size_t detail_cap)
{
    struct kl_field_errors fe;
    const cJSON *stream = cJSON_GetObjectItemCaseSensitive(entry, "stream");
    const cJSON *continuous = cJSON_GetObjectItemCaseSensitive(entry, "continuous");
    cJSON *body = NULL;
    char *text = NULL, inner[256];
    int rc = KL_ERR_INVALID;

    if (!cJSON_IsObject(entry)) {
        snprintf(detail, detail_cap, "entry %zu: must be an object (a LoadRequest with \"stream\")",
                 i);
        return KL_ERR_INVALID;
    }
    if (!cJSON_IsString(stream) || stream->valuestring == NULL) {
        snprintf(detail, detail_cap, "entry %zu: \"stream\" must be the stream's name", i);
        return KL_ERR_INVALID;
    }
    if (continuous != NULL && !cJSON_IsTrue(continuous)) {
        snprintf(detail, detail_cap,
                 "entry %zu (stream %.128s): \"continuous\" must be true (or left out)", i,
                 stream->valuestring);
        return KL_ERR_INVALID;
    }
    body = cJSON_Duplicate(entry, true);
    if (body == NULL)
        goto nomem;
    cJSON_DeleteItemFromObjectCaseSensitive(body, "stream");
    if (continuous == NULL && cJSON_AddTrueToObject(body, "continuous") == NULL)
        goto nomem;
    text = cJSON_PrintUnformatted(body);
    if (text == NULL)
        goto nomem;
    rc = kl_load_request_parse(stream->valuestring, text, strlen(text), out, &fe, inner,
                               sizeof inner);
    if (rc == KL_ERR_INVALID)
        snprintf(detail, detail_cap, "entry %zu (stream %.128s): %s%s%s", i, stream->valuestring,
                 fe.n > 0 ? fe.e[0].field : inner, fe.n > 0 ? " " : "",
                 fe.n > 0 ? fe.e[0].message : "");
    else if (rc == KL_ERR_NOMEM)
        snprintf(detail, detail_cap, "out of memory");
    cJSON_free(text);
    cJSON_Delete(body);
    return rc;
nomem:
    cJSON_Delete(body);
    snprintf(detail, detail_cap, "out of memory");
    return KL_ERR_NOMEM;
}

int kl_load_requests_parse_list(const char *json, size_t len, struct kl_load_params **out,
                                size_t *n, char *detail, size_t detail_cap)
{
    struct kl_load_params *loads = NULL;
    cJSON *doc = NULL;
    size_t count = 0, i = 0;
    int rc;

    *out = NULL;
    *n = 0;
    rc = strict_json(json, len, detail, detail_cap);
    if (rc != KL_OK)
        return rc;
    doc = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsArray(doc)) {
        snprintf(detail, detail_cap, "must be a JSON array of load requests");
        cJSON_Delete(doc);
        return KL_ERR_INVALID;
    }
    count = (size_t)cJSON_GetArraySize(doc);
    if (count == 0) {
        cJSON_Delete(doc);
        return KL_OK;
    }
    loads = calloc(count, sizeof *loads);
    if (loads == NULL) {
        cJSON_Delete(doc);
        snprintf(detail, detail_cap, "out of memory");
        return KL_ERR_NOMEM;
    }
    for (const cJSON *it = doc->child; it != NULL && i < count && rc == KL_OK; it = it->next, i++) {
        rc = parse_list_entry(it, i, &loads[i], detail, detail_cap);
        for (size_t j = 0; rc == KL_OK && j < i; j++)
            if (strcmp(loads[j].stream, loads[i].stream) == 0 &&
                strcmp(loads[j].pipeline_name, loads[i].pipeline_name) == 0) {
                snprintf(detail, detail_cap,
                         "entries %zu and %zu: both follow stream %.128s for pipeline %s (one "
                         "job of a stream and pipeline is active at a time)",
                         j, i, loads[i].stream, loads[i].pipeline_name);
                rc = KL_ERR_INVALID;
            }
    }
    cJSON_Delete(doc);
    if (rc != KL_OK) {
        free(loads);
        return rc;
    }
    *out = loads;
    *n = count;
    return KL_OK;
}
