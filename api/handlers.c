/*
 * The handlers of handlers.h. Each: check what the client sent (400 with the
 * field named), call one facade operation, answer the document it returns or
 * the problem for its error code (problem.c). Documents from the facade are
 * owned here once returned and freed after serialising.
 */
#include "api/handlers.h"
#include "api/documents.h"
#include "api/load_codec.h"
#include "api/openapi_doc.h"
#include "api/problem.h"
#include "api/service.h"
#include "core/load/check.h"
#include "core/util/buf.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define STREAM_RULE "must be 1 to 128 characters of a-z, A-Z, 0-9, '_', '.', '-'"
#define JOB_ID_RULE "must be 26 characters of a-z and 0-9"
#define METRICS_MAX ((size_t)16 << 20)
#define LIST_LIMIT_DEFAULT 50
#define LIST_LIMIT_MAX 500
#define CURSOR_MAX 256
#define WAIT_MAX_S 60 /* GET /jobs/{id}?wait= */

static const char healthz_body[] = "{\"status\":\"ok\"}\n";
static const char metrics_type[] = "text/plain; version=0.0.4; charset=utf-8";

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

bool kl_api_media_type_is_json(const char *ct)
{
    static const char json[] = "application/json";
    const char *p;

    if (ct == NULL)
        return false;
    while (is_space(*ct))
        ct++;
    if (strncasecmp(ct, json, sizeof json - 1) != 0)
        return false;
    p = ct + sizeof json - 1;
    while (is_space(*p))
        p++;
    while (*p == ';') {
        const char *name, *value;
        size_t name_len, value_len;
        p++;
        while (is_space(*p))
            p++;
        /* RFC 9110 §5.6.6: parameters = *( OWS ";" OWS [ parameter ] ) */
        if (*p == ';' || *p == '\0')
            continue;
        name = p;
        while (*p != '\0' && *p != '=' && *p != ';' && !is_space(*p))
            p++;
        name_len = (size_t)(p - name);
        while (is_space(*p))
            p++;
        if (name_len == 0 || *p != '=')
            return false;
        p++;
        while (is_space(*p))
            p++;
        if (*p == '"')
            p++;
        value = p;
        while (*p != '\0' && *p != ';' && *p != '"' && !is_space(*p))
            p++;
        value_len = (size_t)(p - value);
        if (*p == '"')
            p++;
        while (is_space(*p))
            p++;
        if (name_len == 7 && strncasecmp(name, "charset", 7) == 0 &&
            !((value_len == 5 && strncasecmp(value, "utf-8", 5) == 0) ||
              (value_len == 4 && strncasecmp(value, "utf8", 4) == 0)))
            return false;
    }
    return *p == '\0';
}

bool kl_api_idempotency_key_valid(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        if ((unsigned char)s[n] < 0x20 || (unsigned char)s[n] > 0x7e || n >= 255)
            return false;
    }
    return n >= 1;
}

/* Answers a document from the facade and frees it. */
static void answer_doc(struct kl_api_resp *resp, int status, cJSON *doc, const char *what)
{
    if (doc == NULL) {
        char why[128];
        snprintf(why, sizeof why, "the service returned no %s document", what);
        kl_api_resp_internal(resp, why);
        return;
    }
    kl_api_resp_json(resp, status, doc);
    cJSON_Delete(doc);
}

/* The facade failed: its code decides the problem; a job it read (the
 * active job of a conflict; id "" when none) goes along. */
static void answer_err(struct kl_api_resp *resp, const struct kl_api_req *req, int rc,
                       struct kl_err *err, const struct kl_store_job *job)
{
    cJSON *doc = job != NULL && job->id[0] != '\0' ? kl_doc_job(job) : NULL;

    if ((int)err->code != rc) {
        /* an implementation that returned a code without filling `err` */
        err->code = (enum kl_err_code)rc;
        err->msg[0] = '\0';
    }
    kl_problem_from_err(resp, req, err, doc);
    cJSON_Delete(doc);
}

static void invalid_field(struct kl_api_resp *resp, const struct kl_api_req *req, const char *field,
                          const char *message)
{
    struct kl_field_errors fe;
    kl_field_errors_init(&fe);
    kl_field_errors_add(&fe, field, "%s", message);
    kl_problem_invalid(resp, req, NULL, &fe);
}

static const char *param(const struct kl_api_req *req, size_t i)
{
    return i < req->n_params && req->params[i] != NULL ? req->params[i] : "";
}

void kl_api_create_load(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                        struct kl_api_resp *resp)
{
    struct kl_load_params p;
    struct kl_field_errors fe;
    struct kl_err err = {KL_OK, ""};
    char detail[160];
    char location[64];
    const char *key = kl_api_req_header(req, "Idempotency-Key");
    struct kl_store_job job;
    bool existing = false;
    int rc;

    if (req->body_len > 0 && !kl_api_media_type_is_json(kl_api_req_header(req, "Content-Type"))) {
        kl_problem_respond(resp, req, kl_problem_for_kind(KL_PROBLEM_UNSUPPORTED_MEDIA_TYPE),
                           "the request body must be application/json", NULL, NULL);
        return;
    }
    rc = kl_load_request_parse(param(req, 0), req->body, req->body_len, &p, &fe, detail,
                               sizeof detail);
    if (rc == KL_ERR_NOMEM) {
        kl_api_resp_internal(resp, detail);
        return;
    }
    if (key != NULL && !kl_api_idempotency_key_valid(key))
        kl_field_errors_add(&fe, "Idempotency-Key", "must be 1 to 255 printable ASCII characters");
    if (rc != KL_OK || fe.n > 0) {
        kl_problem_invalid(resp, req, detail[0] != '\0' ? detail : NULL, &fe);
        return;
    }
    kl_store_job_init(&job);
    rc = ctx->svc->ops->create_load(ctx->svc->impl, &p, key, &job, &existing, &err);
    if (rc != KL_OK) {
        answer_err(resp, req, rc, &err, &job);
    } else if (!kl_api_job_id_valid(job.id)) {
        kl_api_resp_internal(resp, "the service returned a job without a valid id");
    } else if (existing && (strcmp(job.stream, p.stream) != 0 ||
                            strcmp(job.pipeline_name, p.pipeline_name) != 0 ||
                            strcmp(job.dataset_name, p.dataset_name) != 0)) {
        /* the key names a load of something else: answering with that job
         * would pass its rows off as this request's */
        kl_err_set(&err, KL_ERR_CONFLICT,
                   "Idempotency-Key '%.100s' was used for job %s of stream %s, pipeline %s and "
                   "dataset %s: use a key of its own for each load",
                   key, job.id, job.stream, job.pipeline_name, job.dataset_name);
        answer_err(resp, req, KL_ERR_CONFLICT, &err, &job);
    } else {
        snprintf(location, sizeof location, "/jobs/%s", job.id);
        answer_doc(resp, existing ? 200 : 202, kl_doc_job(&job), "job");
        if (resp->status == 200 || resp->status == 202)
            (void)kl_api_resp_header(resp, "Location", location);
    }
    kl_store_job_free(&job);
}

/* A decimal integer in [min, max] without sign, spaces or leading zeros. */
static bool parse_bounded_int(const char *s, long min, long max, long *out)
{
    long v = 0;
    size_t n = 0;

    if (s[0] == '0' && s[1] != '\0')
        return false;
    for (; s[n] != '\0'; n++) {
        if (s[n] < '0' || s[n] > '9' || n >= 9)
            return false;
        v = v * 10 + (s[n] - '0');
    }
    if (n == 0 || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* A wait slot (api.h: waits, max_waits), or false when every slot is
 * taken or the service is stopping: the request is then answered at once. */
static bool wait_slot_take(const struct kl_api_ctx *ctx)
{
    if (ctx->waits == NULL || (ctx->stopping != NULL && atomic_load(ctx->stopping)))
        return false;
    if (atomic_fetch_add(ctx->waits, 1) < ctx->max_waits)
        return true;
    atomic_fetch_sub(ctx->waits, 1);
    return false;
}

void kl_api_get_job(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                    struct kl_api_resp *resp)
{
    struct kl_field_errors fe;
    struct kl_err err = {KL_OK, ""};
    const char *wait_s = kl_api_req_query(req, "wait");
    struct kl_store_job job;
    long wait = 0;
    int rc;

    kl_field_errors_init(&fe);
    if (!kl_api_job_id_valid(param(req, 0)))
        kl_field_errors_add(&fe, "id", JOB_ID_RULE);
    if (wait_s != NULL && !parse_bounded_int(wait_s, 0, WAIT_MAX_S, &wait))
        kl_field_errors_add(&fe, "wait", "must be an integer from 0 to %d (seconds)", WAIT_MAX_S);
    if (fe.n > 0) {
        kl_problem_invalid(resp, req, NULL, &fe);
        return;
    }
    kl_store_job_init(&job);
    if (wait > 0 && wait_slot_take(ctx)) {
        rc = ctx->svc->ops->wait_job(ctx->svc->impl, param(req, 0), (int64_t)wait * 1000,
                                     ctx->stopping, &job, &err);
        atomic_fetch_sub(ctx->waits, 1);
    } else {
        rc = ctx->svc->ops->get_job(ctx->svc->impl, param(req, 0), &job, &err);
    }
    if (rc != KL_OK)
        answer_err(resp, req, rc, &err, NULL);
    else
        answer_doc(resp, 200, kl_doc_job(&job), "job");
    kl_store_job_free(&job);
}

void kl_api_cancel_job(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                       struct kl_api_resp *resp)
{
    struct kl_err err = {KL_OK, ""};
    struct kl_store_job job;
    int rc;

    if (!kl_api_job_id_valid(param(req, 0))) {
        invalid_field(resp, req, "id", JOB_ID_RULE);
        return;
    }
    kl_store_job_init(&job);
    rc = ctx->svc->ops->cancel_job(ctx->svc->impl, param(req, 0), &job, &err);
    if (rc != KL_OK)
        answer_err(resp, req, rc, &err, &job);
    else
        answer_doc(resp, 202, kl_doc_job(&job), "job");
    kl_store_job_free(&job);
}

static bool cursor_valid(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        if ((unsigned char)s[n] <= 0x20 || (unsigned char)s[n] > 0x7e || n >= CURSOR_MAX)
            return false;
    }
    return n >= 1;
}

void kl_api_list_jobs(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                      struct kl_api_resp *resp)
{
    struct kl_field_errors fe;
    struct kl_err err = {KL_OK, ""};
    const char *stream = kl_api_req_query(req, "stream");
    const char *status = kl_api_req_query(req, "status");
    const char *limit_s = kl_api_req_query(req, "limit");
    const char *cursor = kl_api_req_query(req, "cursor");
    long limit = LIST_LIMIT_DEFAULT;
    struct kl_store_job_filter f;
    struct kl_store_job_page page = {0};
    int rc;

    memset(&f, 0, sizeof f);
    kl_field_errors_init(&fe);
    if (stream != NULL && !kl_stream_name_valid(stream))
        kl_field_errors_add(&fe, "stream", STREAM_RULE);
    if (status != NULL && kl_store_job_status_parse(status, &f.status) != 0)
        kl_field_errors_add(&fe, "status",
                            "must be queued, running, succeeded, failed or cancelled");
    if (limit_s != NULL && !parse_bounded_int(limit_s, 1, LIST_LIMIT_MAX, &limit))
        kl_field_errors_add(&fe, "limit", "must be an integer from 1 to %d", LIST_LIMIT_MAX);
    if (cursor != NULL && !cursor_valid(cursor))
        kl_field_errors_add(&fe, "cursor", "must be the next_cursor of a previous page");
    if (fe.n > 0) {
        kl_problem_invalid(resp, req, NULL, &fe);
        return;
    }
    f.stream = stream;
    f.has_status = status != NULL;
    f.limit = (int)limit;
    f.cursor = cursor;
    rc = ctx->svc->ops->list_jobs(ctx->svc->impl, &f, &page, &err);
    if (rc != KL_OK)
        answer_err(resp, req, rc, &err, NULL);
    else
        answer_doc(resp, 200, kl_doc_job_list(&page), "job list");
    kl_store_job_page_free(&page);
}

void kl_api_list_streams(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                         struct kl_api_resp *resp)
{
    struct kl_err err = {KL_OK, ""};
    struct kl_string_list names = {0};
    int rc = ctx->svc->ops->list_streams(ctx->svc->impl, &names, &err);

    if (rc != KL_OK)
        answer_err(resp, req, rc, &err, NULL);
    else
        answer_doc(resp, 200, kl_doc_stream_list(&names), "stream list");
    kl_string_list_free(&names);
}

void kl_api_get_stream(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                       struct kl_api_resp *resp)
{
    struct kl_err err = {KL_OK, ""};
    struct kl_stream_summary summary;
    struct kl_shard_list shards = {0};
    int rc;

    if (!kl_stream_name_valid(param(req, 0))) {
        invalid_field(resp, req, "stream", STREAM_RULE);
        return;
    }
    memset(&summary, 0, sizeof summary);
    rc = ctx->svc->ops->get_stream(ctx->svc->impl, param(req, 0), &summary, &shards, &err);
    if (rc != KL_OK)
        answer_err(resp, req, rc, &err, NULL);
    else
        answer_doc(resp, 200, kl_doc_stream(&summary, &shards), "stream");
    kl_shard_list_free(&shards);
}

/* The stream of the path and the pipeline/dataset of the query, with
 * defaults; the dataset normalised as a load job's is (into `dataset`,
 * KL_IDENT_MAX bytes). */
static bool state_args(const struct kl_api_req *req, struct kl_api_resp *resp,
                       const char **pipeline, char *dataset)
{
    struct kl_field_errors fe;
    const char *ds = kl_api_req_query(req, "dataset_name");
    char why[200];

    *pipeline = kl_api_req_query(req, "pipeline_name");
    kl_field_errors_init(&fe);
    if (!kl_stream_name_valid(param(req, 0)))
        kl_field_errors_add(&fe, "stream", STREAM_RULE);
    if (*pipeline == NULL)
        *pipeline = KL_DEFAULT_PIPELINE_NAME;
    else if (!kl_pipeline_name_valid(*pipeline))
        kl_field_errors_add(&fe, "pipeline_name",
                            "must be 1 to 64 characters of a-z, A-Z, 0-9, '_', '.', '-'");
    if (ds == NULL)
        ds = KL_DEFAULT_DATASET_NAME;
    if (!kl_sql_name_valid(ds))
        kl_field_errors_add(&fe, "dataset_name",
                            "must be 1 to 63 characters of a-z, A-Z, 0-9, '_', not starting "
                            "with a digit");
    else if (kl_load_dataset_normalize(ds, dataset, why, sizeof why) != KL_OK)
        kl_field_errors_add(&fe, "dataset_name", "%s", why);
    if (fe.n > 0) {
        kl_problem_invalid(resp, req, NULL, &fe);
        return false;
    }
    return true;
}

void kl_api_get_state(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                      struct kl_api_resp *resp)
{
    struct kl_err err = {KL_OK, ""};
    const char *pipeline;
    char dataset[KL_IDENT_MAX];
    struct kl_dest_state state;
    int rc;

    if (!state_args(req, resp, &pipeline, dataset))
        return;
    kl_dest_state_init(&state);
    rc = ctx->svc->ops->get_state(ctx->svc->impl, param(req, 0), pipeline, dataset, &state, &err);
    if (rc != KL_OK)
        answer_err(resp, req, rc, &err, NULL);
    else
        answer_doc(resp, 200, kl_doc_stream_state(param(req, 0), pipeline, dataset, &state),
                   "stream state");
    kl_dest_state_free(&state);
}

void kl_api_delete_state(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                         struct kl_api_resp *resp)
{
    struct kl_err err = {KL_OK, ""};
    const char *pipeline;
    char dataset[KL_IDENT_MAX];
    int rc;

    if (!state_args(req, resp, &pipeline, dataset))
        return;
    rc = ctx->svc->ops->delete_state(ctx->svc->impl, param(req, 0), pipeline, dataset, &err);
    if (rc != KL_OK) {
        answer_err(resp, req, rc, &err, NULL);
        return;
    }
    kl_api_resp_free(resp);
    resp->status = 204;
    resp->content_type = NULL;
}

void kl_api_healthz(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                    struct kl_api_resp *resp)
{
    (void)ctx;
    (void)req;
    kl_api_resp_static(resp, 200, "application/json", healthz_body, sizeof healthz_body - 1);
}

void kl_api_readyz(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                   struct kl_api_resp *resp)
{
    struct kl_readiness r;

    (void)req;
    memset(&r, 0, sizeof r);
    if (ctx->stopping != NULL && atomic_load(ctx->stopping))
        kl_readiness_add(&r, "shutdown", false, "the service is shutting down");
    else
        ctx->svc->ops->readiness(ctx->svc->impl, &r);
    answer_doc(resp, kl_readiness_ok(&r) ? 200 : 503, kl_doc_readiness(&r), "readiness");
}

void kl_api_metrics(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                    struct kl_api_resp *resp)
{
    struct kl_buf out;
    struct kl_err err = {KL_OK, ""};
    size_t engine_end;
    bool engine_ok;
    int rc = KL_OK;
    char *body;
    size_t len;

    (void)req;
    kl_buf_init(&out, METRICS_MAX);
    /* Engine metrics that fail are dropped, not the scrape: the HTTP and
     * process metrics matter most exactly when the engine is in trouble. */
    engine_ok = ctx->svc->ops->metrics(ctx->svc->impl, &out, &err) == KL_OK;
    if (!engine_ok) {
        snprintf(resp->error, sizeof resp->error, "engine metrics: %s: %.200s",
                 kl_err_code_name(err.code), err.msg);
        kl_buf_reset(&out);
    }
    engine_end = out.len;
    if (engine_end > 0 && out.data[engine_end - 1] != '\n')
        rc = kl_buf_append_str(&out, "\n", &err);
    if (rc == KL_OK)
        rc = kl_buf_printf(&out, &err,
                           "# HELP kl_engine_metrics_ok Whether the engine's metrics could be "
                           "collected for this scrape.\n"
                           "# TYPE kl_engine_metrics_ok gauge\n"
                           "kl_engine_metrics_ok %d\n",
                           engine_ok ? 1 : 0);
    if (rc == KL_OK && ctx->server_metrics != NULL)
        rc = ctx->server_metrics(ctx->server_metrics_arg, &out, &err);
    if (rc != KL_OK) {
        kl_buf_free(&out);
        kl_problem_from_err(resp, req, &err, NULL);
        return;
    }
    body = kl_buf_steal(&out, &len);
    if (body == NULL) {
        kl_api_resp_internal(resp, "out of memory");
        return;
    }
    kl_api_resp_take(resp, 200, metrics_type, body, len);
}

void kl_api_openapi(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                    struct kl_api_resp *resp)
{
    (void)ctx;
    (void)req;
    kl_api_resp_static(resp, 200, "application/yaml", (const char *)kl_openapi_yaml,
                       kl_openapi_yaml_len);
}
