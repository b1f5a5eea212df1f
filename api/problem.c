/*
 * The error table and problem+json bodies. Decisions worth knowing:
 *  - KL_ERR_AUTH is the engine's AWS credentials being refused, not the
 *    client's: 502 upstream (the client's missing token is the HTTP-only 401).
 *  - KL_ERR_LIMIT is a size the client sent (body, field): 413. The engine
 *    reports its own limits as INTERNAL or UNAVAILABLE.
 *  - EXPIRED and CANCELLED (a call cut short by shutdown) are retryable: 503.
 *  - 5xx details that may carry internals (IO, NOMEM, INTERNAL) are logged
 *    with the request id, not sent.
 */
#include "api/problem.h"
#include "api/api.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* clang-format off */
static const struct kl_problem_def problem_table[] = {
    /* kind                           code                status type                                 title                        retry detail */
    {KL_PROBLEM_INVALID,              KL_ERR_INVALID,     400, "/problems/invalid-request",        "Invalid request",             0, 1},
    {KL_PROBLEM_NOT_FOUND,            KL_ERR_NOT_FOUND,   404, "/problems/not-found",              "Not found",                   0, 1},
    {KL_PROBLEM_CONFLICT,             KL_ERR_CONFLICT,    409, "/problems/conflict",               "Conflict",                    0, 1},
    {KL_PROBLEM_TOO_LARGE,            KL_ERR_LIMIT,       413, "/problems/payload-too-large",      "Payload too large",           0, 1},
    {KL_PROBLEM_UPSTREAM,             KL_ERR_AUTH,        502, "/problems/upstream",               "AWS refused the credentials", 0, 1},
    {KL_PROBLEM_UPSTREAM,             KL_ERR_UPSTREAM,    502, "/problems/upstream",               "Upstream error",              0, 1},
    {KL_PROBLEM_UNAVAILABLE,          KL_ERR_UNAVAILABLE, 503, "/problems/unavailable",            "Service unavailable",         5, 1},
    {KL_PROBLEM_UNAVAILABLE,          KL_ERR_EXPIRED,     503, "/problems/unavailable",            "Service unavailable",         1, 1},
    {KL_PROBLEM_UNAVAILABLE,          KL_ERR_CANCELLED,   503, "/problems/unavailable",            "Service unavailable",         5, 1},
    {KL_PROBLEM_INTERNAL,             KL_ERR_INTERNAL,    500, "/problems/internal",               "Internal error",              0, 0},
    {KL_PROBLEM_INTERNAL,             KL_ERR_NOMEM,       500, "/problems/internal",               "Internal error",              0, 0},
    {KL_PROBLEM_INTERNAL,             KL_ERR_IO,          500, "/problems/internal",               "Internal error",              0, 0},
    /* HTTP-only: no engine code leads here */
    {KL_PROBLEM_UNAUTHORIZED,         KL_OK,              401, "/problems/unauthorized",           "Unauthorized",                0, 1},
    {KL_PROBLEM_METHOD_NOT_ALLOWED,   KL_OK,              405, "/problems/method-not-allowed",     "Method not allowed",          0, 1},
    {KL_PROBLEM_UNSUPPORTED_MEDIA_TYPE, KL_OK,            415, "/problems/unsupported-media-type", "Unsupported media type",      0, 1},
};
/* clang-format on */

#define PROBLEM_ROWS (sizeof problem_table / sizeof problem_table[0])

/* The answer for codes without a row: the row of KL_ERR_INTERNAL. */
static const struct kl_problem_def *internal_row(void)
{
    for (size_t i = 0; i < PROBLEM_ROWS; i++) {
        if (problem_table[i].code == KL_ERR_INTERNAL)
            return &problem_table[i];
    }
    return &problem_table[0]; /* unreachable: the table has the row (tested) */
}

const struct kl_problem_def *kl_problem_table(size_t *n)
{
    *n = PROBLEM_ROWS;
    return problem_table;
}

const struct kl_problem_def *kl_problem_for_code(enum kl_err_code code)
{
    for (size_t i = 0; code != KL_OK && i < PROBLEM_ROWS; i++) {
        if (problem_table[i].code == code)
            return &problem_table[i];
    }
    return internal_row();
}

const struct kl_problem_def *kl_problem_for_kind(enum kl_problem_kind kind)
{
    for (size_t i = 0; i < PROBLEM_ROWS; i++) {
        if (problem_table[i].kind == kind)
            return &problem_table[i];
    }
    return internal_row();
}

void kl_field_errors_init(struct kl_field_errors *fe)
{
    fe->n = 0;
    fe->dropped = 0;
}

/* Client text goes into JSON and logs: printable ASCII only. */
static void copy_printable(char *dst, size_t cap, const char *src)
{
    size_t i = 0;
    for (; src[i] != '\0' && i + 1 < cap; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    dst[i] = '\0';
}

void kl_field_errors_add(struct kl_field_errors *fe, const char *field, const char *fmt, ...)
{
    struct kl_field_error *e;
    char msg[sizeof e->message];
    va_list ap;

    if (fe->n >= KL_FIELD_ERRORS_MAX) {
        fe->dropped++;
        return;
    }
    e = &fe->e[fe->n++];
    copy_printable(e->field, sizeof e->field, field);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    copy_printable(e->message, sizeof e->message, msg);
}

const struct kl_field_error *kl_field_errors_find(const struct kl_field_errors *fe,
                                                  const char *field)
{
    for (size_t i = 0; i < fe->n; i++) {
        if (strcmp(fe->e[i].field, field) == 0)
            return &fe->e[i];
    }
    return NULL;
}

static cJSON *build_problem(const struct kl_api_req *req, const struct kl_problem_def *def,
                            const char *detail, const struct kl_field_errors *fe,
                            const struct cJSON *job)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *errors;
    int ok = doc != NULL;

    ok = ok && cJSON_AddStringToObject(doc, "type", def->type) != NULL;
    ok = ok && cJSON_AddStringToObject(doc, "title", def->title) != NULL;
    ok = ok && cJSON_AddNumberToObject(doc, "status", def->status) != NULL;
    if (ok && detail != NULL && detail[0] != '\0')
        ok = cJSON_AddStringToObject(doc, "detail", detail) != NULL;
    if (ok && req != NULL && req->path != NULL) {
        char instance[256]; /* the client's path: cut, printable ASCII */
        copy_printable(instance, sizeof instance, req->path);
        ok = cJSON_AddStringToObject(doc, "instance", instance) != NULL;
    }
    if (ok && req != NULL && req->request_id != NULL)
        ok = cJSON_AddStringToObject(doc, "request_id", req->request_id) != NULL;
    if (ok && fe != NULL && fe->n > 0) {
        errors = cJSON_AddArrayToObject(doc, "errors");
        ok = errors != NULL;
        for (size_t i = 0; ok && i < fe->n; i++) {
            cJSON *e = cJSON_CreateObject();
            ok = e != NULL && cJSON_AddItemToArray(errors, e);
            ok = ok && cJSON_AddStringToObject(e, "field", fe->e[i].field) != NULL;
            ok = ok && cJSON_AddStringToObject(e, "message", fe->e[i].message) != NULL;
        }
    }
    /* A reference: the caller keeps the job and frees it after serialising. */
    if (ok && job != NULL)
        ok = cJSON_AddItemReferenceToObject(doc, "job", (cJSON *)job);
    if (!ok) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

void kl_problem_respond(struct kl_api_resp *resp, const struct kl_api_req *req,
                        const struct kl_problem_def *def, const char *detail,
                        const struct kl_field_errors *fe, const struct cJSON *job)
{
    cJSON *doc = build_problem(req, def, detail, fe, job);
    char retry[16];

    if (doc == NULL) {
        kl_api_resp_internal(resp, "out of memory building a problem document");
        return;
    }
    kl_api_resp_json(resp, def->status, doc);
    cJSON_Delete(doc);
    if (resp->status != def->status)
        return; /* serialising failed: kl_api_resp_json made it a 500 */
    resp->content_type = "application/problem+json";
    if (def->retry_after_s > 0) {
        snprintf(retry, sizeof retry, "%d", def->retry_after_s);
        (void)kl_api_resp_header(resp, "Retry-After", retry);
    }
}

void kl_problem_from_err(struct kl_api_resp *resp, const struct kl_api_req *req,
                         const struct kl_err *err, const struct cJSON *job)
{
    const struct kl_problem_def *def = kl_problem_for_code(err->code);
    char detail[sizeof err->msg];
    char logged[sizeof resp->error];

    copy_printable(detail, sizeof detail, err->msg);
    snprintf(logged, sizeof logged, "%s: %.220s", kl_err_code_name(err->code), detail);
    if (def->expose_detail) {
        kl_problem_respond(resp, req, def, detail, NULL, job);
    } else {
        snprintf(detail, sizeof detail, "see the service log for request %s",
                 req != NULL && req->request_id != NULL ? req->request_id : "(unknown)");
        kl_problem_respond(resp, req, def, detail, NULL, job);
    }
    if (resp->status >= 500)
        memcpy(resp->error, logged, sizeof resp->error);
}

void kl_problem_invalid(struct kl_api_resp *resp, const struct kl_api_req *req, const char *detail,
                        const struct kl_field_errors *fe)
{
    char summary[320]; /* a field (63) and its message (191) */
    size_t n = fe != NULL ? fe->n + fe->dropped : 0;

    if (detail == NULL && fe != NULL && n == 1) {
        snprintf(summary, sizeof summary, "%s: %s", fe->e[0].field, fe->e[0].message);
        detail = summary;
    } else if (detail == NULL) {
        snprintf(summary, sizeof summary, "%zu invalid fields", n);
        detail = summary;
    }
    kl_problem_respond(resp, req, kl_problem_for_kind(KL_PROBLEM_INVALID), detail, fe, NULL);
}
