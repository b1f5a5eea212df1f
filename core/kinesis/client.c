/*
 * Kinesis API client: request building, signing, the retry loop, and the
 * decoding of each operation's answer into plain C structs. Knows nothing of
 * shard order, checkpoints or iterator choice (see reader).
 */
#include "core/kinesis/client.h"
#include "core/aws/creds.h"
#include "core/aws/http.h"
#include "core/aws/sigv4.h"
#include "core/util/base64.h"
#include "core/util/clock.h"
#include "core/util/err.h"
#include "core/util/log.h"
#include "core/util/rand.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TARGET_PREFIX "Kinesis_20131202."
#define MAX_RESPONSE ((size_t)48 << 20) /* 10 MiB of data is ~14 MiB of base64 */
#define CREATE_WAIT_MS 60000
#define PUT_MAX_ENTRIES 500

struct kl_kinesis {
    char *endpoint_url; /* endpoint with the path "/" */
    char *region;
    struct kl_http *http;
    struct kl_cred_provider *creds;
    const struct kl_clock *clock;
    int max_attempts;
    int64_t backoff_base_ms;
    int64_t backoff_cap_ms;
    long connect_timeout_ms;
    long timeout_ms;
    int64_t call_deadline_ms;
    bool aws; /* the endpoint is AWS's, not an emulator's */
    const atomic_bool *cancel;
    atomic_uint_fast64_t requests;
    atomic_uint_fast64_t retries;
    atomic_uint_fast64_t throttles;
    atomic_uint_fast64_t failures;
};

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
static const char *jstr(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jnum(const cJSON *obj, const char *key, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v))
        return false;
    *out = v->valuedouble;
    return true;
}

/* Copies `src` into a fixed field; fails when it does not fit. */
static int copy_field(char *dst, size_t cap, const char *src, const char *what, struct kl_err *err)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= cap)
        return kl_err_set(err, KL_ERR_UPSTREAM, "%s in the response is too long (%zu bytes)", what,
                          n);
    memcpy(dst, src ? src : "", n + 1);
    return KL_OK;
}

static int nomem(struct kl_err *err)
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
        type = jstr(doc, "__type");
        message = jstr(doc, "message");
        if (message == NULL)
            message = jstr(doc, "Message");
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

/* One signed request; on success `*out` is the parsed answer. */
static int attempt(struct kl_kinesis *k, const char *op, const char *body, size_t body_len,
                   long timeout_ms, cJSON **out, struct kl_err *err)
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
    snprintf(target, sizeof target, TARGET_PREFIX "%s", op);
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
    /* CreateStream and DeleteStream answer 200 with an empty body. */
    if (resp.body_len == 0)
        *out = cJSON_CreateObject();
    else
        *out = cJSON_ParseWithLength(resp.body, resp.body_len);
    if (*out == NULL) {
        /* A 200 with a broken body is a transport fault: worth another try. */
        rc = kl_err_set(err, KL_ERR_UNAVAILABLE, "%s: the answer is not valid JSON (%zu bytes)", op,
                        resp.body_len);
        goto cleanup;
    }
    rc = KL_OK;

cleanup:
    kl_http_response_free(&resp);
    kl_aws_creds_free(&creds);
    return rc;
}

static bool cancelled(const struct kl_kinesis *k)
{
    return k->cancel != NULL && atomic_load(k->cancel);
}

/* Full jitter: uniform in [0, min(cap, base * 2^(n-1))]. */
static int64_t backoff_ms(const struct kl_kinesis *k, int n)
{
    int64_t ceiling = k->backoff_base_ms;
    for (int i = 1; i < n && ceiling < k->backoff_cap_ms; i++)
        ceiling *= 2;
    if (ceiling > k->backoff_cap_ms)
        ceiling = k->backoff_cap_ms;
    return (int64_t)kl_rand_below((uint64_t)ceiling + 1);
}

/* Sends `request` as operation `op`, retrying what may pass until the
 * call's deadline. Takes ownership of nothing; on success `*out` is the
 * answer, which the caller deletes. `opts` may be NULL. */
static int call(struct kl_kinesis *k, struct kl_kinesis_call *opts, const char *op,
                const cJSON *request, cJSON **out, struct kl_err *err)
{
    char *body = cJSON_PrintUnformatted(request);
    cJSON *answer = NULL;
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
        rc = nomem(&last);
        goto cleanup;
    }
    for (;;) {
        int64_t left = began + budget - kl_clock_monotonic_ms(k->clock);
        long timeout = k->timeout_ms;
        if (left < timeout)
            timeout = left > 1 ? (long)left : 1;
        n++;
        rc = attempt(k, op, body, strlen(body), timeout, &answer, &last);
        if (rc == KL_OK || !kl_err_retryable((enum kl_err_code)rc) || n >= k->max_attempts)
            break;
        if (cancelled(k)) {
            rc = kl_err_set(&last, KL_ERR_CANCELLED, "%s: cancelled while retrying", op);
            break;
        }
        int64_t wait = backoff_ms(k, n);
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
    if (rc == KL_OK)
        *out = answer;
    else
        atomic_fetch_add(&k->failures, 1);

cleanup:
    if (rc != KL_OK && err != NULL)
        *err = last;
    free(body);
    return rc;
}

/* ---- streams ---- */

int kl_kinesis_list_streams(struct kl_kinesis *k, struct kl_string_list *out, struct kl_err *err)
{
    struct kl_string_list list = {NULL, 0};
    cJSON *req = NULL, *answer = NULL;
    char *last = NULL;
    int rc = KL_OK;

    for (;;) {
        const cJSON *names, *name;
        const cJSON *more;

        req = cJSON_CreateObject();
        if (req == NULL || cJSON_AddNumberToObject(req, "Limit", 1000) == NULL ||
            (last != NULL &&
             cJSON_AddStringToObject(req, "ExclusiveStartStreamName", last) == NULL)) {
            rc = nomem(err);
            goto cleanup;
        }
        rc = call(k, NULL, "ListStreams", req, &answer, err);
        if (rc != KL_OK)
            goto cleanup;
        names = cJSON_GetObjectItemCaseSensitive(answer, "StreamNames");
        cJSON_ArrayForEach(name, names)
        {
            char **grown;
            if (!cJSON_IsString(name))
                continue;
            grown = realloc(list.items, (list.n + 1) * sizeof *grown);
            if (grown == NULL) {
                rc = nomem(err);
                goto cleanup;
            }
            list.items = grown;
            list.items[list.n] = strdup(name->valuestring);
            if (list.items[list.n] == NULL) {
                rc = nomem(err);
                goto cleanup;
            }
            list.n++;
        }
        more = cJSON_GetObjectItemCaseSensitive(answer, "HasMoreStreams");
        if (!cJSON_IsTrue(more) || list.n == 0 || cJSON_GetArraySize(names) == 0)
            break;
        free(last);
        last = strdup(list.items[list.n - 1]);
        if (last == NULL) {
            rc = nomem(err);
            goto cleanup;
        }
        cJSON_Delete(req);
        cJSON_Delete(answer);
        req = answer = NULL;
    }
    *out = list;
    list.items = NULL;
    list.n = 0;

cleanup:
    kl_string_list_free(&list);
    free(last);
    cJSON_Delete(req);
    cJSON_Delete(answer);
    return rc;
}

static cJSON *stream_request(const char *stream)
{
    cJSON *req = cJSON_CreateObject();
    if (req != NULL && cJSON_AddStringToObject(req, "StreamName", stream) == NULL) {
        cJSON_Delete(req);
        return NULL;
    }
    return req;
}

static int check_stream_name(const char *stream, struct kl_err *err)
{
    if (!kl_stream_name_valid(stream))
        return kl_err_set(err, KL_ERR_INVALID,
                          "invalid stream name '%.140s': 1 to 128 characters of a-z, A-Z, 0-9, "
                          "'_', '.', '-'",
                          stream ? stream : "");
    return KL_OK;
}

int kl_kinesis_describe_stream_summary(struct kl_kinesis *k, const char *stream,
                                       struct kl_stream_summary *out, struct kl_err *err)
{
    struct kl_stream_summary s;
    cJSON *req = NULL, *answer = NULL;
    const cJSON *d, *mode;
    double num;
    int rc = check_stream_name(stream, err);

    if (rc != KL_OK)
        return rc;
    req = stream_request(stream);
    if (req == NULL) {
        rc = nomem(err);
        goto cleanup;
    }
    rc = call(k, NULL, "DescribeStreamSummary", req, &answer, err);
    if (rc != KL_OK)
        goto cleanup;
    memset(&s, 0, sizeof s);
    d = cJSON_GetObjectItemCaseSensitive(answer, "StreamDescriptionSummary");
    if (!cJSON_IsObject(d)) {
        rc = kl_err_set(err, KL_ERR_UPSTREAM, "DescribeStreamSummary: no StreamDescriptionSummary");
        goto cleanup;
    }
    if ((rc = copy_field(s.name, sizeof s.name, jstr(d, "StreamName"), "StreamName", err)) ||
        (rc = copy_field(s.arn, sizeof s.arn, jstr(d, "StreamARN"), "StreamARN", err)) ||
        (rc = copy_field(s.status, sizeof s.status, jstr(d, "StreamStatus"), "StreamStatus", err)))
        goto cleanup;
    if (jnum(d, "RetentionPeriodHours", &num))
        s.retention_hours = (int)num;
    if (jnum(d, "OpenShardCount", &num))
        s.open_shard_count = (int)num;
    if (jnum(d, "StreamCreationTimestamp", &num))
        s.created_ms = llround(num * 1000.0);
    mode = cJSON_GetObjectItemCaseSensitive(d, "StreamModeDetails");
    if (cJSON_IsObject(mode) &&
        (rc = copy_field(s.mode, sizeof s.mode, jstr(mode, "StreamMode"), "StreamMode", err)))
        goto cleanup;
    *out = s;

cleanup:
    cJSON_Delete(req);
    cJSON_Delete(answer);
    return rc;
}

/* Counts the retries of one call. */
struct retry_count {
    struct kl_kinesis_call call;
    int retries;
};

static void count_retry(void *ctx, const char *operation, int64_t since_ms, int64_t deadline_ms,
                        const struct kl_err *why)
{
    struct retry_count *c = ctx;
    (void)operation, (void)since_ms, (void)deadline_ms, (void)why;
    c->retries++;
}

int kl_kinesis_create_stream(struct kl_kinesis *k, const char *stream, int shard_count,
                             struct kl_err *err)
{
    struct retry_count retried = {{0, count_retry, NULL, false}, 0};
    struct kl_stream_summary s;
    cJSON *req = NULL, *answer = NULL;
    int64_t deadline;
    int rc = check_stream_name(stream, err);

    retried.call.ctx = &retried;
    if (rc != KL_OK)
        return rc;
    req = stream_request(stream);
    if (req == NULL || cJSON_AddNumberToObject(req, "ShardCount", shard_count) == NULL) {
        rc = nomem(err);
        goto cleanup;
    }
    rc = call(k, &retried.call, "CreateStream", req, &answer, err);
    /* An attempt that timed out or failed in transit may still have created
     * the stream: "in use" after a retry is our own creation. */
    if (rc == KL_ERR_CONFLICT && retried.retries > 0)
        rc = KL_OK;
    if (rc != KL_OK)
        goto cleanup;
    /* Wait for ACTIVE: emulators and AWS both create asynchronously. */
    deadline = kl_clock_monotonic_ms(k->clock) + CREATE_WAIT_MS;
    for (;;) {
        rc = kl_kinesis_describe_stream_summary(k, stream, &s, err);
        if (rc != KL_OK && rc != KL_ERR_NOT_FOUND)
            goto cleanup;
        if (rc == KL_OK && strcmp(s.status, "ACTIVE") == 0)
            break;
        if (kl_clock_monotonic_ms(k->clock) > deadline) {
            rc = kl_err_set(err, KL_ERR_UNAVAILABLE, "stream %s is not ACTIVE after %d ms", stream,
                            CREATE_WAIT_MS);
            goto cleanup;
        }
        kl_clock_sleep_ms(k->clock, 50);
    }
    rc = KL_OK;

cleanup:
    cJSON_Delete(req);
    cJSON_Delete(answer);
    return rc;
}

int kl_kinesis_delete_stream(struct kl_kinesis *k, const char *stream, struct kl_err *err)
{
    cJSON *req = NULL, *answer = NULL;
    int rc = check_stream_name(stream, err);

    if (rc != KL_OK)
        return rc;
    req = stream_request(stream);
    if (req == NULL) {
        rc = nomem(err);
        goto cleanup;
    }
    rc = call(k, NULL, "DeleteStream", req, &answer, err);

cleanup:
    cJSON_Delete(req);
    cJSON_Delete(answer);
    return rc;
}

/* ---- shards ---- */

static int parse_shard(const cJSON *j, struct kl_shard *s, struct kl_err *err)
{
    const cJSON *hash = cJSON_GetObjectItemCaseSensitive(j, "HashKeyRange");
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(j, "SequenceNumberRange");
    int rc;

    memset(s, 0, sizeof *s);
    if (jstr(j, "ShardId") == NULL)
        return kl_err_set(err, KL_ERR_UPSTREAM, "ListShards: a shard without ShardId");
    if ((rc = copy_field(s->id, sizeof s->id, jstr(j, "ShardId"), "ShardId", err)) ||
        (rc = copy_field(s->parent_id, sizeof s->parent_id, jstr(j, "ParentShardId"),
                         "ParentShardId", err)) ||
        (rc = copy_field(s->adjacent_parent_id, sizeof s->adjacent_parent_id,
                         jstr(j, "AdjacentParentShardId"), "AdjacentParentShardId", err)))
        return rc;
    if (cJSON_IsObject(hash) &&
        ((rc = copy_field(s->starting_hash_key, sizeof s->starting_hash_key,
                          jstr(hash, "StartingHashKey"), "StartingHashKey", err)) ||
         (rc = copy_field(s->ending_hash_key, sizeof s->ending_hash_key,
                          jstr(hash, "EndingHashKey"), "EndingHashKey", err))))
        return rc;
    if (cJSON_IsObject(seq) &&
        ((rc = copy_field(s->starting_seq, sizeof s->starting_seq,
                          jstr(seq, "StartingSequenceNumber"), "StartingSequenceNumber", err)) ||
         (rc = copy_field(s->ending_seq, sizeof s->ending_seq, jstr(seq, "EndingSequenceNumber"),
                          "EndingSequenceNumber", err))))
        return rc;
    return KL_OK;
}

int kl_kinesis_list_shards(struct kl_kinesis *k, const char *stream, struct kl_shard_list *out,
                           struct kl_err *err)
{
    struct kl_shard_list list = {NULL, 0};
    cJSON *req = NULL, *answer = NULL;
    char *token = NULL;
    int rc = check_stream_name(stream, err);

    if (rc != KL_OK)
        return rc;
    for (;;) {
        const cJSON *shards, *item;
        const char *next;

        /* A NextToken request must not name the stream (and kinesalite never
         * sends a token); a fresh page or a restart after an expired token
         * names the stream and the last shard seen. */
        req = cJSON_CreateObject();
        if (req == NULL) {
            rc = nomem(err);
            goto cleanup;
        }
        if (token != NULL) {
            if (cJSON_AddStringToObject(req, "NextToken", token) == NULL) {
                rc = nomem(err);
                goto cleanup;
            }
        } else if (cJSON_AddStringToObject(req, "StreamName", stream) == NULL ||
                   (list.n > 0 && cJSON_AddStringToObject(req, "ExclusiveStartShardId",
                                                          list.shards[list.n - 1].id) == NULL)) {
            rc = nomem(err);
            goto cleanup;
        }
        rc = call(k, NULL, "ListShards", req, &answer, err);
        if (rc == KL_ERR_EXPIRED && token != NULL) {
            /* The token aged out (300 s): continue after the last shard we have. */
            free(token);
            token = NULL;
            cJSON_Delete(req);
            req = NULL;
            continue;
        }
        if (rc != KL_OK)
            goto cleanup;
        shards = cJSON_GetObjectItemCaseSensitive(answer, "Shards");
        cJSON_ArrayForEach(item, shards)
        {
            struct kl_shard *grown = realloc(list.shards, (list.n + 1) * sizeof *grown);
            if (grown == NULL) {
                rc = nomem(err);
                goto cleanup;
            }
            list.shards = grown;
            rc = parse_shard(item, &list.shards[list.n], err);
            if (rc != KL_OK)
                goto cleanup;
            list.n++;
        }
        next = jstr(answer, "NextToken");
        free(token);
        token = NULL;
        if (next == NULL || cJSON_GetArraySize(shards) == 0)
            break;
        token = strdup(next);
        if (token == NULL) {
            rc = nomem(err);
            goto cleanup;
        }
        cJSON_Delete(req);
        cJSON_Delete(answer);
        req = answer = NULL;
    }
    *out = list;
    list.shards = NULL;
    list.n = 0;

cleanup:
    kl_shard_list_free(&list);
    free(token);
    cJSON_Delete(req);
    cJSON_Delete(answer);
    return rc;
}

/* ---- reading ---- */

int kl_kinesis_get_shard_iterator(struct kl_kinesis *k, struct kl_kinesis_call *opts,
                                  const char *stream, const char *shard_id,
                                  const struct kl_iterator_start *start, char **iterator_out,
                                  struct kl_err *err)
{
    cJSON *req = NULL, *answer = NULL;
    const char *it;
    char *copy;
    int rc = check_stream_name(stream, err);

    if (rc != KL_OK)
        return rc;
    req = stream_request(stream);
    if (req == NULL || cJSON_AddStringToObject(req, "ShardId", shard_id) == NULL ||
        cJSON_AddStringToObject(req, "ShardIteratorType", kl_iterator_type_name(start->type)) ==
            NULL) {
        rc = nomem(err);
        goto cleanup;
    }
    if (start->type == KL_ITER_AT_SEQUENCE_NUMBER || start->type == KL_ITER_AFTER_SEQUENCE_NUMBER) {
        if (start->sequence == NULL || start->sequence[0] == '\0') {
            rc = kl_err_set(err, KL_ERR_INVALID, "%s needs a sequence number",
                            kl_iterator_type_name(start->type));
            goto cleanup;
        }
        if (cJSON_AddStringToObject(req, "StartingSequenceNumber", start->sequence) == NULL) {
            rc = nomem(err);
            goto cleanup;
        }
    } else if (start->type == KL_ITER_AT_TIMESTAMP) {
        if (cJSON_AddNumberToObject(req, "Timestamp", (double)start->timestamp_ms / 1000.0) ==
            NULL) {
            rc = nomem(err);
            goto cleanup;
        }
    }
    rc = call(k, opts, "GetShardIterator", req, &answer, err);
    if (rc != KL_OK)
        goto cleanup;
    it = jstr(answer, "ShardIterator");
    if (it == NULL) {
        rc =
            kl_err_set(err, KL_ERR_UPSTREAM, "GetShardIterator: no ShardIterator for %s", shard_id);
        goto cleanup;
    }
    copy = strdup(it);
    if (copy == NULL) {
        rc = nomem(err);
        goto cleanup;
    }
    *iterator_out = copy;

cleanup:
    cJSON_Delete(req);
    cJSON_Delete(answer);
    return rc;
}

/* Reserves `n` bytes aligned to 8 from a sizing pass or a filling pass. */
static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

static int parse_records(const cJSON *answer, struct kl_record_batch *out, struct kl_err *err)
{
    const cJSON *records = cJSON_GetObjectItemCaseSensitive(answer, "Records");
    const cJSON *children = cJSON_GetObjectItemCaseSensitive(answer, "ChildShards");
    const cJSON *r;
    const char *next = jstr(answer, "NextShardIterator");
    size_t n = 0, n_children = 0, size, pos;
    struct kl_record_batch b;
    char *block;
    double num;

    kl_record_batch_init(&b);
    /* Sizing pass: one block holds the arrays, the strings and the data. */
    size = 0;
    cJSON_ArrayForEach(r, records)
    {
        const char *seq = jstr(r, "SequenceNumber"), *data = jstr(r, "Data");
        const char *pk = jstr(r, "PartitionKey");
        if (seq == NULL || data == NULL)
            return kl_err_set(err, KL_ERR_UPSTREAM, "GetRecords: a record without %s",
                              seq == NULL ? "SequenceNumber" : "Data");
        size +=
            strlen(seq) + 1 + (pk ? strlen(pk) : 0) + 1 + kl_base64_decoded_max(strlen(data)) + 1;
        n++;
    }
    cJSON_ArrayForEach(r, children)
    {
        n_children++;
    }
    size += align8(n * sizeof(struct kl_record)) +
            align8(n_children * sizeof(struct kl_child_shard)) + (next ? strlen(next) + 1 : 0) + 1;
    block = malloc(size);
    if (block == NULL)
        return nomem(err);
    b.storage = block;
    b.records = (struct kl_record *)(void *)block;
    pos = align8(n * sizeof(struct kl_record));
    b.children = (struct kl_child_shard *)(void *)(block + pos);
    pos += align8(n_children * sizeof(struct kl_child_shard));

    cJSON_ArrayForEach(r, records)
    {
        struct kl_record *rec = &b.records[b.n];
        const char *seq = jstr(r, "SequenceNumber"), *data = jstr(r, "Data");
        const char *pk = jstr(r, "PartitionKey");
        size_t len = strlen(seq), dlen;

        memcpy(block + pos, seq, len + 1);
        rec->sequence = block + pos;
        pos += len + 1;
        len = pk ? strlen(pk) : 0;
        memcpy(block + pos, pk ? pk : "", len + 1);
        rec->partition_key = block + pos;
        pos += len + 1;
        if (kl_base64_decode(data, strlen(data), (unsigned char *)block + pos, &dlen) != 0) {
            kl_record_batch_free(&b);
            return kl_err_set(err, KL_ERR_UPSTREAM, "GetRecords: record %s has invalid base64 Data",
                              seq);
        }
        rec->data = (const unsigned char *)block + pos;
        rec->data_len = dlen;
        block[pos + dlen] = '\0';
        pos += dlen + 1;
        rec->arrival_ms = jnum(r, "ApproximateArrivalTimestamp", &num) ? llround(num * 1000.0) : 0;
        b.data_bytes += dlen;
        b.n++;
    }
    cJSON_ArrayForEach(r, children)
    {
        struct kl_child_shard *c = &b.children[b.n_children];
        const cJSON *parents = cJSON_GetObjectItemCaseSensitive(r, "ParentShards"), *p;
        int rc;
        memset(c, 0, sizeof *c);
        rc = copy_field(c->id, sizeof c->id, jstr(r, "ShardId"), "ChildShards.ShardId", err);
        if (rc != KL_OK) {
            kl_record_batch_free(&b);
            return rc;
        }
        cJSON_ArrayForEach(p, parents)
        {
            if (cJSON_IsString(p) && c->n_parents < 2 &&
                strlen(p->valuestring) < sizeof c->parents[0])
                memcpy(c->parents[c->n_parents++], p->valuestring, strlen(p->valuestring) + 1);
        }
        b.n_children++;
    }
    if (next != NULL) {
        memcpy(block + pos, next, strlen(next) + 1);
        b.next_iterator = block + pos;
    }
    if (jnum(answer, "MillisBehindLatest", &num))
        b.millis_behind = (int64_t)num;
    *out = b;
    return KL_OK;
}

int kl_kinesis_get_records(struct kl_kinesis *k, struct kl_kinesis_call *opts, const char *iterator,
                           int limit, struct kl_record_batch *out, struct kl_err *err)
{
    cJSON *req = NULL, *answer = NULL;
    int rc;

    if (limit < 1 || limit > 10000)
        return kl_err_set(err, KL_ERR_INVALID, "GetRecords limit must be 1..10000, not %d", limit);
    if (iterator == NULL || iterator[0] == '\0')
        return kl_err_set(err, KL_ERR_INVALID, "GetRecords needs a shard iterator");
    req = cJSON_CreateObject();
    if (req == NULL || cJSON_AddStringToObject(req, "ShardIterator", iterator) == NULL ||
        cJSON_AddNumberToObject(req, "Limit", limit) == NULL) {
        rc = nomem(err);
        goto cleanup;
    }
    rc = call(k, opts, "GetRecords", req, &answer, err);
    if (rc != KL_OK)
        goto cleanup;
    rc = parse_records(answer, out, err);

cleanup:
    cJSON_Delete(req);
    cJSON_Delete(answer);
    return rc;
}

/* ---- writing ---- */

/* Builds a PutRecords request for the entries whose index is in `todo`. */
static cJSON *put_request(const char *stream, const struct kl_put_entry *entries,
                          const size_t *todo, size_t n_todo)
{
    cJSON *req = stream_request(stream), *arr;
    if (req == NULL)
        return NULL;
    arr = cJSON_AddArrayToObject(req, "Records");
    if (arr == NULL)
        goto fail;
    for (size_t i = 0; i < n_todo; i++) {
        const struct kl_put_entry *e = &entries[todo[i]];
        cJSON *item = cJSON_CreateObject();
        char *b64 = malloc(kl_base64_encoded_size(e->data_len));
        bool ok = item != NULL && b64 != NULL;
        if (ok) {
            kl_base64_encode(e->data, e->data_len, b64, true);
            ok = cJSON_AddStringToObject(item, "Data", b64) != NULL &&
                 cJSON_AddStringToObject(item, "PartitionKey", e->partition_key) != NULL &&
                 (e->explicit_hash_key == NULL ||
                  cJSON_AddStringToObject(item, "ExplicitHashKey", e->explicit_hash_key) != NULL);
        }
        free(b64);
        if (!ok || !cJSON_AddItemToArray(arr, item)) {
            cJSON_Delete(item);
            goto fail;
        }
    }
    return req;
fail:
    cJSON_Delete(req);
    return NULL;
}

int kl_kinesis_put_records(struct kl_kinesis *k, const char *stream,
                           const struct kl_put_entry *entries, size_t n,
                           struct kl_put_result_entry *results, struct kl_err *err)
{
    size_t todo[PUT_MAX_ENTRIES], n_todo = n;
    cJSON *req = NULL, *answer = NULL;
    int rc = check_stream_name(stream, err);

    if (rc != KL_OK)
        return rc;
    if (n == 0 || n > PUT_MAX_ENTRIES)
        return kl_err_set(err, KL_ERR_INVALID, "PutRecords takes 1..500 entries, not %zu", n);
    for (size_t i = 0; i < n; i++) {
        if (entries[i].partition_key == NULL || entries[i].partition_key[0] == '\0')
            return kl_err_set(err, KL_ERR_INVALID, "PutRecords entry %zu has no partition key", i);
        todo[i] = i;
        if (results != NULL)
            memset(&results[i], 0, sizeof results[i]);
    }
    for (int round = 1;; round++) {
        const cJSON *items, *item;
        size_t still = 0, idx = 0;

        req = put_request(stream, entries, todo, n_todo);
        if (req == NULL) {
            rc = nomem(err);
            goto cleanup;
        }
        rc = call(k, NULL, "PutRecords", req, &answer, err);
        if (rc != KL_OK)
            goto cleanup;
        items = cJSON_GetObjectItemCaseSensitive(answer, "Records");
        if (cJSON_GetArraySize(items) != (int)n_todo) {
            rc = kl_err_set(err, KL_ERR_UPSTREAM, "PutRecords: %d results for %zu entries",
                            cJSON_GetArraySize(items), n_todo);
            goto cleanup;
        }
        cJSON_ArrayForEach(item, items)
        {
            size_t e;
            if (idx >= n_todo)
                break;
            e = todo[idx++];
            const char *code = jstr(item, "ErrorCode");
            if (code != NULL) {
                if (results != NULL)
                    snprintf(results[e].error_code, sizeof results[e].error_code, "%s", code);
                todo[still++] = e;
            } else if (results != NULL) {
                snprintf(results[e].sequence, sizeof results[e].sequence, "%s",
                         jstr(item, "SequenceNumber") ? jstr(item, "SequenceNumber") : "");
                snprintf(results[e].shard_id, sizeof results[e].shard_id, "%s",
                         jstr(item, "ShardId") ? jstr(item, "ShardId") : "");
                results[e].error_code[0] = '\0';
            }
        }
        cJSON_Delete(req);
        cJSON_Delete(answer);
        req = answer = NULL;
        n_todo = still;
        if (n_todo == 0)
            break;
        if (round >= k->max_attempts || cancelled(k)) {
            rc = kl_err_set(err, KL_ERR_UNAVAILABLE,
                            "PutRecords: %zu of %zu entries still failing after %d rounds", n_todo,
                            n, round);
            goto cleanup;
        }
        atomic_fetch_add(&k->retries, 1);
        kl_clock_sleep_ms(k->clock, backoff_ms(k, round));
    }
    rc = KL_OK;

cleanup:
    cJSON_Delete(req);
    cJSON_Delete(answer);
    return rc;
}
