/*
 * Kinesis API client: its life cycle, request building, signing, error
 * classification and the retry loop every operation goes through. The
 * operations themselves are in streams.c (streams, shards) and records.c
 * (reading and writing records). Knows nothing of shard order, checkpoints
 * or iterator choice (see cursor.h, reader.h).
 */
#include "core/kinesis/client.h"
#include "core/kinesis/client_internal.h"
#include "core/aws/creds.h"
#include "core/aws/http.h"
#include "core/aws/sigv4.h"
#include "core/util/clock.h"
#include "core/util/err.h"
#include "core/util/log.h"
#include "core/util/rand.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_RESPONSE ((size_t)48 << 20) /* 10 MiB of data is ~14 MiB of base64 */

/* How an AWS error __type is treated. */
struct error_kind {
    const char *type;
    enum kl_err_code code;
    bool throttle;
};

static const struct error_kind error_kinds[] = {
    {"ProvisionedThroughputExceededException", KL_ERR_UNAVAILABLE, true},
    {"LimitExceededException", KL_ERR_UNAVAILABLE, true},
    {"ThrottlingException", KL_ERR_UNAVAILABLE, true},
    {"Throttling", KL_ERR_UNAVAILABLE, true},
    {"RequestLimitExceeded", KL_ERR_UNAVAILABLE, true},
    {"KMSThrottlingException", KL_ERR_UNAVAILABLE, true},
    {"InternalFailure", KL_ERR_UNAVAILABLE, false},
    {"InternalFailureException", KL_ERR_UNAVAILABLE, false},
    {"ServiceUnavailable", KL_ERR_UNAVAILABLE, false},
    {"ServiceUnavailableException", KL_ERR_UNAVAILABLE, false},
    {"ExpiredIteratorException", KL_ERR_EXPIRED, false},
    {"ExpiredNextTokenException", KL_ERR_EXPIRED, false},
    {"ResourceNotFoundException", KL_ERR_NOT_FOUND, false},
    {"ResourceInUseException", KL_ERR_CONFLICT, false},
    {"InvalidArgumentException", KL_ERR_INVALID, false},
    {"ValidationException", KL_ERR_INVALID, false},
    {"SerializationException", KL_ERR_INVALID, false},
    {"InvalidSignatureException", KL_ERR_AUTH, false},
    {"IncompleteSignatureException", KL_ERR_AUTH, false},
    {"UnrecognizedClientException", KL_ERR_AUTH, false},
    {"MissingAuthenticationTokenException", KL_ERR_AUTH, false},
    {"AccessDeniedException", KL_ERR_AUTH, false},
    {"ExpiredTokenException", KL_ERR_AUTH, false},
    {"InvalidClientTokenId", KL_ERR_AUTH, false},
    {"KMSAccessDeniedException", KL_ERR_AUTH, false},
};

/* ---- small helpers ---- */

/* A string member; JSON null and other types count as absent (kinesis-mock sends nulls). */
const char *kl_kinesis_jstr(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

bool kl_kinesis_jnum(const cJSON *obj, const char *key, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v))
        return false;
    *out = v->valuedouble;
    return true;
}

/* Copies `src` into a fixed field; fails when it does not fit. */
int kl_kinesis_copy_field(char *dst, size_t cap, const char *src, const char *what,
                          struct kl_err *err)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= cap)
        return kl_err_set(err, KL_ERR_UPSTREAM, "%s in the response is too long (%zu bytes)", what,
                          n);
    memcpy(dst, src ? src : "", n + 1);
    return KL_OK;
}

int kl_kinesis_nomem(struct kl_err *err)
{
    return kl_err_set(err, KL_ERR_NOMEM, "out of memory");
}

const char *kl_iterator_type_name(enum kl_iterator_type t)
{
    switch (t) {
    case KL_ITER_TRIM_HORIZON:
        return "TRIM_HORIZON";
    case KL_ITER_LATEST:
        return "LATEST";
    case KL_ITER_AT_SEQUENCE_NUMBER:
        return "AT_SEQUENCE_NUMBER";
    case KL_ITER_AFTER_SEQUENCE_NUMBER:
        return "AFTER_SEQUENCE_NUMBER";
    case KL_ITER_AT_TIMESTAMP:
        return "AT_TIMESTAMP";
    }
    return "UNKNOWN";
}

bool kl_stream_name_valid(const char *name)
{
    size_t n = 0;
    if (name == NULL)
        return false;
    for (; name[n] != '\0'; n++) {
        char c = name[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return n >= 1 && n < KL_STREAM_NAME_MAX;
}

void kl_string_list_free(struct kl_string_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

void kl_shard_list_free(struct kl_shard_list *l)
{
    if (l == NULL)
        return;
    free(l->shards);
    l->shards = NULL;
    l->n = 0;
}

void kl_record_batch_init(struct kl_record_batch *b)
{
    memset(b, 0, sizeof *b);
    b->millis_behind = -1;
}

void kl_record_batch_free(struct kl_record_batch *b)
{
    if (b == NULL)
        return;
    free(b->storage);
    free(b->children);
    free(b->bytes);
    kl_record_batch_init(b);
}

/* ---- life cycle ---- */

/* The host of an AWS endpoint ends in one of AWS's domains. */
static bool endpoint_is_aws(const char *url)
{
    static const char *const domains[] = {".amazonaws.com", ".amazonaws.com.cn", ".api.aws"};
    const char *host = strstr(url, "://");
    size_t n;

    host = host != NULL ? host + 3 : url;
    n = strcspn(host, ":/");
    for (size_t i = 0; i < sizeof domains / sizeof domains[0]; i++) {
        size_t d = strlen(domains[i]);
        if (n > d && strncasecmp(host + n - d, domains[i], d) == 0)
            return true;
    }
    return false;
}

struct kl_kinesis *kl_kinesis_create(const struct kl_kinesis_config *cfg, struct kl_err *err)
{
    struct kl_kinesis *k = NULL;
    size_t elen;

    if (cfg->endpoint == NULL || cfg->region == NULL || cfg->http == NULL || cfg->creds == NULL) {
        kl_err_set(err, KL_ERR_INVALID, "Kinesis client needs endpoint, region, http and creds");
        return NULL;
    }
    if (strncmp(cfg->endpoint, "http://", 7) != 0 && strncmp(cfg->endpoint, "https://", 8) != 0) {
        kl_err_set(err, KL_ERR_INVALID, "Kinesis endpoint must start with http:// or https://: %s",
                   cfg->endpoint);
        return NULL;
    }
    k = calloc(1, sizeof *k);
    if (k == NULL)
        goto fail_nomem;
    elen = strlen(cfg->endpoint);
    while (elen > 0 && cfg->endpoint[elen - 1] == '/')
        elen--;
    k->endpoint_url = malloc(elen + 2);
    k->region = strdup(cfg->region);
    if (k->endpoint_url == NULL || k->region == NULL)
        goto fail_nomem;
    memcpy(k->endpoint_url, cfg->endpoint, elen);
    memcpy(k->endpoint_url + elen, "/", 2);
    k->http = cfg->http;
    k->creds = cfg->creds;
    k->clock = cfg->clock ? cfg->clock : kl_clock_system();
    k->max_attempts = cfg->max_attempts > 0 ? cfg->max_attempts : 8;
    k->backoff_base_ms = cfg->backoff_base_ms > 0 ? cfg->backoff_base_ms : 100;
    k->backoff_cap_ms = cfg->backoff_cap_ms > 0 ? cfg->backoff_cap_ms : 5000;
    k->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 3000;
    k->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 30000;
    k->call_deadline_ms = cfg->call_deadline_ms > 0 ? cfg->call_deadline_ms : 60000;
    k->aws = endpoint_is_aws(k->endpoint_url);
    k->cancel = cfg->cancel;
    return k;

fail_nomem:
    kl_kinesis_destroy(k);
    kl_err_set(err, KL_ERR_NOMEM, "out of memory creating the Kinesis client");
    return NULL;
}

void kl_kinesis_destroy(struct kl_kinesis *k)
{
    if (k == NULL)
        return;
    free(k->endpoint_url);
    free(k->region);
    free(k);
}

bool kl_kinesis_is_aws(const struct kl_kinesis *k)
{
    return k->aws;
}

int kl_kinesis_pacing(const struct kl_kinesis *k, const char *mode, int64_t *min_call_interval_ms,
                      int64_t *max_bytes_per_s, struct kl_err *err)
{
    bool on;
    if (strcmp(mode, "on") == 0)
        on = true;
    else if (strcmp(mode, "off") == 0)
        on = false;
    else if (strcmp(mode, "auto") == 0)
        on = k->aws;
    else
        return kl_err_set(err, KL_ERR_INVALID, "pacing is on, off or auto, not '%s'", mode);
    *min_call_interval_ms = on ? KL_KINESIS_MIN_CALL_INTERVAL_MS : 0;
    *max_bytes_per_s = on ? KL_KINESIS_MAX_BYTES_PER_S : 0;
    return KL_OK;
}

void kl_kinesis_stats(const struct kl_kinesis *k, struct kl_kinesis_stats *out)
{
    out->requests = atomic_load(&k->requests);
    out->retries = atomic_load(&k->retries);
    out->throttles = atomic_load(&k->throttles);
    out->failures = atomic_load(&k->failures);
}

/* ---- the call path ---- */

/* Turns a non-200 answer into an error code and message. */
static int classify_error(struct kl_kinesis *k, const char *op, const struct kl_http_response *resp,
                          struct kl_err *err)
{
    cJSON *doc = cJSON_ParseWithLength(resp->body, resp->body_len);
    const char *type = NULL, *message = NULL, *hash;
    enum kl_err_code code;
    bool throttle = false;
    int rc;

    if (doc != NULL) {
        type = kl_kinesis_jstr(doc, "__type");
        message = kl_kinesis_jstr(doc, "message");
        if (message == NULL)
            message = kl_kinesis_jstr(doc, "Message");
    }
    /* "com.amazonaws.kinesis.v20131202#ResourceNotFoundException" -> the part after '#'. */
    if (type != NULL && (hash = strrchr(type, '#')) != NULL)
        type = hash + 1;

    code = resp->status >= 500 ? KL_ERR_UNAVAILABLE : KL_ERR_UPSTREAM;
    if (resp->status == 429)
        code = KL_ERR_UNAVAILABLE, throttle = true;
    for (size_t i = 0; type != NULL && i < sizeof error_kinds / sizeof error_kinds[0]; i++) {
        if (strcmp(type, error_kinds[i].type) == 0) {
            code = error_kinds[i].code;
            throttle = error_kinds[i].throttle;
            break;
        }
    }
    if (throttle)
        atomic_fetch_add(&k->throttles, 1);
    if (type != NULL)
        rc = kl_err_set(err, code, "%s: %s: %s", op, type, message ? message : "(no message)");
    else
        rc = kl_err_set(err, code, "%s: HTTP %ld from %s: %.120s", op, resp->status,
                        k->endpoint_url, resp->body ? resp->body : "");
    cJSON_Delete(doc);
    return rc;
}

/* Where one call's answer goes: parsed into `*json`, or streamed to `sink`. */
struct answer {
    cJSON **json;
    const struct kl_kinesis_sink *sink;
};

static int sink_piece(void *ctx, const char *data, size_t n, struct kl_err *err)
{
    const struct kl_kinesis_sink *sink = ctx;
    return sink->feed(sink->ctx, data, n, err);
}

/* A 200 answer: parsed, or (streamed, or fed whole when the transport
 * buffered it) ended at the sink. */
static int take_answer(const char *op, const struct kl_http_response *resp, const struct answer *to,
                       struct kl_err *err)
{
    if (to->sink != NULL) {
        int rc = resp->body_len > 0 ? to->sink->feed(to->sink->ctx, resp->body, resp->body_len, err)
                                    : KL_OK;
        if (rc == KL_OK)
            rc = to->sink->end(to->sink->ctx, err);
        if (rc != KL_OK)
            kl_err_prefix(err, "%s", op);
        return rc;
    }
    /* CreateStream and DeleteStream answer 200 with an empty body. */
    if (resp->body_len == 0)
        *to->json = cJSON_CreateObject();
    else
        *to->json = cJSON_ParseWithLength(resp->body, resp->body_len);
    if (*to->json == NULL) {
        /* A 200 with a broken body is a transport fault: worth another try. */
        return kl_err_set(err, KL_ERR_UNAVAILABLE, "%s: the answer is not valid JSON (%zu bytes)",
                          op, resp->body_len);
    }
    return KL_OK;
}

/* One signed request; on success the answer went where `to` says. */
static int attempt(struct kl_kinesis *k, const char *op, const char *body, size_t body_len,
                   long timeout_ms, const struct answer *to, struct kl_err *err)
{
    struct kl_aws_creds creds;
    struct kl_sigv4_signed signed_req;
    struct kl_sigv4_params params;
    struct kl_http_response resp;
    struct kl_http_request req;
    char target[64];
    struct kl_http_header headers[2];
    int rc;

    kl_aws_creds_init(&creds);
    kl_http_response_init(&resp);
    snprintf(target, sizeof target, KL_KINESIS_TARGET_PREFIX "%s", op);
    headers[0].name = "Content-Type";
    headers[0].value = "application/x-amz-json-1.1";
    headers[1].name = "X-Amz-Target";
    headers[1].value = target;

    rc = kl_cred_provider_resolve(k->creds, &creds, err);
    if (rc != KL_OK) {
        kl_err_prefix(err, "%s: credentials", op);
        goto cleanup;
    }
    params.region = k->region;
    params.service = "kinesis";
    params.creds = &creds;
    params.normalize_path = 1;
    rc = kl_sigv4_sign_headers("POST", k->endpoint_url, headers, 2, body, body_len, &params,
                               kl_clock_wall_ms(k->clock) / 1000, &signed_req, err);
    if (rc != KL_OK)
        goto cleanup;

    memset(&req, 0, sizeof req);
    req.method = "POST";
    req.url = k->endpoint_url;
    req.headers = signed_req.headers;
    req.n_headers = signed_req.n_headers;
    req.body = body;
    req.body_len = body_len;
    req.connect_timeout_ms = k->connect_timeout_ms;
    req.timeout_ms = timeout_ms;
    req.max_response = MAX_RESPONSE;
    if (to->sink != NULL) {
        to->sink->begin(to->sink->ctx);
        req.sink = sink_piece;
        req.sink_ctx = (void *)to->sink;
    }
    atomic_fetch_add(&k->requests, 1);
    rc = kl_http_send(k->http, &req, &resp, err);
    if (rc != KL_OK) {
        kl_err_prefix(err, "%s", op);
        goto cleanup;
    }
    if (resp.status != 200) {
        rc = classify_error(k, op, &resp, err);
        goto cleanup;
    }
    rc = take_answer(op, &resp, to, err);

cleanup:
    kl_http_response_free(&resp);
    kl_aws_creds_free(&creds);
    return rc;
}

const atomic_bool *kl_kinesis_cancel_flag(const struct kl_kinesis *k)
{
    return k->cancel;
}

bool kl_kinesis_cancelled(const struct kl_kinesis *k)
{
    return k->cancel != NULL && atomic_load(k->cancel);
}

/* Full jitter: uniform in [0, min(cap, base * 2^(n-1))]. */
int64_t kl_kinesis_backoff_ms(const struct kl_kinesis *k, int n)
{
    int64_t ceiling = k->backoff_base_ms;
    for (int i = 1; i < n && ceiling < k->backoff_cap_ms; i++)
        ceiling *= 2;
    if (ceiling > k->backoff_cap_ms)
        ceiling = k->backoff_cap_ms;
    return (int64_t)kl_rand_below((uint64_t)ceiling + 1);
}

/* Sends `request` as operation `op`, retrying what may pass until the
 * call's deadline; the answer goes where `to` says. `opts` may be NULL. */
static int call(struct kl_kinesis *k, struct kl_kinesis_call *opts, const char *op,
                const cJSON *request, const struct answer *to, struct kl_err *err)
{
    char *body = cJSON_PrintUnformatted(request);
    struct kl_err last;
    int64_t budget =
        opts != NULL && opts->deadline_ms > 0 ? opts->deadline_ms : k->call_deadline_ms;
    int64_t began = kl_clock_monotonic_ms(k->clock);
    int64_t began_wall = kl_clock_wall_ms(k->clock);
    int n = 0;
    int rc = KL_OK;

    kl_err_clear(&last);
    if (opts != NULL)
        opts->timed_out = false;
    if (body == NULL) {
        rc = kl_kinesis_nomem(&last);
        goto cleanup;
    }
    for (;;) {
        int64_t left = began + budget - kl_clock_monotonic_ms(k->clock);
        long timeout = k->timeout_ms;
        if (left < timeout)
            timeout = left > 1 ? (long)left : 1;
        n++;
        rc = attempt(k, op, body, strlen(body), timeout, to, &last);
        if (rc == KL_OK || !kl_err_retryable((enum kl_err_code)rc) || n >= k->max_attempts)
            break;
        if (kl_kinesis_cancelled(k)) {
            rc = kl_err_set(&last, KL_ERR_CANCELLED, "%s: cancelled while retrying", op);
            break;
        }
        int64_t wait = kl_kinesis_backoff_ms(k, n);
        left = began + budget - kl_clock_monotonic_ms(k->clock);
        if (left <= wait) {
            /* no time for another attempt: the deadline ends the call */
            char why[sizeof last.msg];
            snprintf(why, sizeof why, "%s", last.msg);
            rc = kl_err_set(&last, KL_ERR_UNAVAILABLE,
                            "%s: no answer within the call's deadline of %lld ms (%d attempt%s; "
                            "last: %.160s)",
                            op, (long long)budget, n, n == 1 ? "" : "s", why);
            if (opts != NULL) {
                opts->timed_out = true;
                if (opts->waiting != NULL)
                    opts->waiting(opts->ctx, op, began_wall, began_wall + budget, &last);
            }
            break;
        }
        if (opts != NULL && opts->waiting != NULL)
            opts->waiting(opts->ctx, op, began_wall, began_wall + budget, &last);
        atomic_fetch_add(&k->retries, 1);
        KL_DEBUG("kinesis", NULL, "retry %d of %s in %lld ms: %s", n, op, (long long)wait,
                 last.msg);
        kl_clock_sleep_ms(k->clock, wait);
    }
    if (rc != KL_OK)
        atomic_fetch_add(&k->failures, 1);

cleanup:
    if (rc != KL_OK && err != NULL)
        *err = last;
    free(body);
    return rc;
}

int kl_kinesis_call_op(struct kl_kinesis *k, struct kl_kinesis_call *opts, const char *op,
                       const cJSON *request, cJSON **out, struct kl_err *err)
{
    struct answer to = {out, NULL};
    *out = NULL;
    return call(k, opts, op, request, &to, err);
}

int kl_kinesis_call_stream(struct kl_kinesis *k, struct kl_kinesis_call *opts, const char *op,
                           const cJSON *request, const struct kl_kinesis_sink *sink,
                           struct kl_err *err)
{
    struct answer to = {NULL, sink};
    if (sink == NULL)
        return kl_err_set(err, KL_ERR_INVALID, "%s: no sink for the answer", op);
    return call(k, opts, op, request, &to, err);
}
