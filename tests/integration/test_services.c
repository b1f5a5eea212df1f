/*
 * Integration: the services scripts/services.sh starts are up and behave as
 * the other tests assume: both emulators answer (and check no signature),
 * the signature proxies refuse unsigned and forged requests, count them per
 * access key, and pass SDK-signed requests through. Talks HTTP through the
 * project's own transport. PostgreSQL and Redis are checked by services.sh.
 */
#include "tests/support/test_support.h"
#include "core/aws/http.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TARGET_PREFIX "Kinesis_20131202."

struct fixture {
    struct kl_http *http;
    char access_key[64]; /* unique per test run, so proxy counters start at 0 */
};

static int setup(void **state)
{
    struct kl_err err = {0};
    struct fixture *f = calloc(1, sizeof *f);

    if (f == NULL || kl_http_global_init(&err) != KL_OK)
        return -1;
    f->http = kl_http_curl_create(NULL, &err);
    if (f->http == NULL) {
        fprintf(stderr, "kl_http_curl_create: %s\n", err.msg);
        free(f);
        return -1;
    }
    snprintf(f->access_key, sizeof f->access_key, "AKIDSERVICES%ld%ld", (long)getpid(),
             (long)time(NULL));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kl_http_destroy(f->http);
    free(f);
    return 0;
}

/* Sends one request and fails the test on a transport error. */
static void send_or_fail(struct fixture *f, const char *method, const char *url,
                         const struct kl_http_header *headers, size_t n_headers, const char *body,
                         struct kl_http_response *resp)
{
    struct kl_err err = {0};
    struct kl_http_request req = {0};

    req.method = method;
    req.url = url;
    req.headers = headers;
    req.n_headers = n_headers;
    req.body = body;
    req.body_len = body != NULL ? strlen(body) : 0;
    req.timeout_ms = 10000;
    kl_http_response_init(resp);
    if (kl_http_send(f->http, &req, resp, &err) != KL_OK)
        fail_msg("%s %s: %s", method, url, err.msg);
}

/* A Kinesis JSON call; `authorization` NULL sends it unsigned, else with
 * that Authorization header and the current X-Amz-Date. */
static void kinesis_call(struct fixture *f, const char *base, const char *op,
                         const char *authorization, struct kl_http_response *resp)
{
    char url[512], target[128], date[32];
    struct kl_http_header headers[4];
    size_t n = 0;
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%Y%m%dT%H%M%SZ", &tm);
    snprintf(url, sizeof url, "%s/", base);
    snprintf(target, sizeof target, TARGET_PREFIX "%s", op);
    headers[n++] = (struct kl_http_header){"Content-Type", "application/x-amz-json-1.1"};
    headers[n++] = (struct kl_http_header){"X-Amz-Target", target};
    if (authorization != NULL) {
        headers[n++] = (struct kl_http_header){"X-Amz-Date", date};
        headers[n++] = (struct kl_http_header){"Authorization", authorization};
    }
    send_or_fail(f, "POST", url, headers, n, "{}", resp);
}

/* An Authorization header of the right shape whose signature is made up. */
static void forged_authorization(const struct fixture *f, char *out, size_t cap)
{
    char day[16];
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    strftime(day, sizeof day, "%Y%m%d", &tm);
    snprintf(out, cap,
             "AWS4-HMAC-SHA256 Credential=%s/%s/us-east-1/kinesis/aws4_request, "
             "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=%064d",
             f->access_key, day, 0);
}

/* The "__type" of an AWS JSON error body, or "" (static buffer). */
static const char *error_type(const struct kl_http_response *resp)
{
    static char type[128];
    cJSON *doc = cJSON_Parse(resp->body);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, "__type");

    type[0] = '\0';
    if (cJSON_IsString(t))
        snprintf(type, sizeof type, "%s", t->valuestring);
    cJSON_Delete(doc);
    return type;
}

/* An integer member of a JSON object; fails the test when it is missing. */
static int json_int(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!cJSON_IsNumber(v))
        fail_msg("JSON member %s is missing or not a number", name);
    return v->valueint;
}

static void emulators_answer_without_checking_signatures(void **state)
{
    struct fixture *f = *state;
    const char *bases[] = {kl_test_require_env("KL_TEST_KINESALITE_URL"),
                           kl_test_require_env("KL_TEST_KINESIS_LOCAL_URL")};
    char auth[512];

    forged_authorization(f, auth, sizeof auth);
    for (size_t i = 0; i < 2; i++) {
        struct kl_http_response resp;
        kinesis_call(f, bases[i], "ListStreams", auth, &resp);
        if (resp.status != 200)
            fail_msg("%s answered %ld: %s", bases[i], resp.status, resp.body);
        assert_non_null(strstr(resp.body, "\"StreamNames\""));
        kl_http_response_free(&resp);
    }
}

static void proxies_refuse_unsigned_requests(void **state)
{
    struct fixture *f = *state;
    const char *bases[] = {kl_test_require_env("KL_TEST_PROXY_URL"),
                           kl_test_require_env("KL_TEST_PROXY_LOCAL_URL")};

    for (size_t i = 0; i < 2; i++) {
        struct kl_http_response resp;
        kinesis_call(f, bases[i], "ListStreams", NULL, &resp);
        assert_int_equal(resp.status, 400);
        assert_string_equal(error_type(&resp), "MissingAuthenticationTokenException");
        assert_non_null(strstr(resp.content_type, "application/x-amz-json-1.1"));
        kl_http_response_free(&resp);
    }
}

static void proxies_refuse_forged_signatures_and_count_them(void **state)
{
    struct fixture *f = *state;
    const char *bases[] = {kl_test_require_env("KL_TEST_PROXY_URL"),
                           kl_test_require_env("KL_TEST_PROXY_LOCAL_URL")};
    char auth[512], url[512];

    forged_authorization(f, auth, sizeof auth);
    for (size_t i = 0; i < 2; i++) {
        struct kl_http_response resp;
        cJSON *stats;

        kinesis_call(f, bases[i], "ListStreams", auth, &resp);
        assert_int_equal(resp.status, 400);
        assert_string_equal(error_type(&resp), "InvalidSignatureException");
        assert_non_null(strstr(resp.body, "The Canonical String for this request"));
        kl_http_response_free(&resp);

        snprintf(url, sizeof url, "%s/__stats?access_key=%s", bases[i], f->access_key);
        send_or_fail(f, "GET", url, NULL, 0, NULL, &resp);
        assert_int_equal(resp.status, 200);
        stats = cJSON_Parse(resp.body);
        assert_non_null(stats);
        assert_int_equal(json_int(stats, "signature_failures"), 1);
        assert_int_equal(
            json_int(cJSON_GetObjectItemCaseSensitive(stats, "requests"), "ListStreams"), 1);
        cJSON_Delete(stats);
        kl_http_response_free(&resp);
    }
}

/* Runs a command through the shell; returns its exit status and its
 * stdout (malloc'ed, caller frees) in `out`. */
static int run_command(const char *cmd, char **out)
{
    char chunk[4096];
    size_t len = 0, n;
    char *buf = NULL, *grown;
    FILE *p = popen(cmd, "r");
    int status;

    assert_non_null(p);
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0) {
        grown = realloc(buf, len + n + 1);
        assert_non_null(grown);
        buf = grown;
        memcpy(buf + len, chunk, n);
        len += n;
        buf[len] = '\0';
    }
    status = pclose(p);
    *out = buf != NULL ? buf : strdup("");
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void sdk_signed_requests_pass_both_proxies(void **state)
{
    struct fixture *f = *state;
    const char *tools = kl_test_require_env("KL_TEST_NODE_TOOLS");
    const char *secret = kl_test_require_env("KL_TEST_PROXY_SECRET");
    const char *bases[] = {kl_test_require_env("KL_TEST_PROXY_URL"),
                           kl_test_require_env("KL_TEST_PROXY_LOCAL_URL")};
    char stream[64], common[1024], cmd[2048];

    snprintf(stream, sizeof stream, "kl-it-services-%ld", (long)getpid());
    for (size_t i = 0; i < 2; i++) {
        char *out;
        cJSON *summary, *shard;
        int total = 0;

        snprintf(common, sizeof common,
                 "--endpoint '%s' --stream '%s' --access-key '%s' --secret-key '%s'", bases[i],
                 stream, f->access_key, secret);

        snprintf(cmd, sizeof cmd, "node '%s/create-stream.js' %s --shards 2", tools, common);
        if (run_command(cmd, &out) != 0)
            fail_msg("%s failed: %s", cmd, out);
        assert_non_null(strstr(out, "\"ACTIVE\""));
        free(out);

        snprintf(cmd, sizeof cmd, "node '%s/put-records.js' %s --count 25", tools, common);
        if (run_command(cmd, &out) != 0)
            fail_msg("%s failed: %s", cmd, out);
        summary = cJSON_Parse(out);
        assert_non_null(summary);
        cJSON_ArrayForEach(shard, cJSON_GetObjectItemCaseSensitive(summary, "shards"))
        {
            total += json_int(shard, "count");
        }
        assert_int_equal(total, 25);
        cJSON_Delete(summary);
        free(out);

        snprintf(cmd, sizeof cmd, "node '%s/delete-stream.js' %s", tools, common);
        if (run_command(cmd, &out) != 0)
            fail_msg("%s failed: %s", cmd, out);
        free(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(emulators_answer_without_checking_signatures),
        cmocka_unit_test(proxies_refuse_unsigned_requests),
        cmocka_unit_test(proxies_refuse_forged_signatures_and_count_them),
        cmocka_unit_test(sdk_signed_requests_pass_both_proxies),
    };
    return cmocka_run_group_tests_name("services", tests, setup, teardown);
}
