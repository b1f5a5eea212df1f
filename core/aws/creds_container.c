/*
 * Container credentials: the ECS task role endpoint
 * (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI on 169.254.170.2) and any full URI
 * (AWS_CONTAINER_CREDENTIALS_FULL_URI, e.g. the EKS Pod Identity agent), with
 * an optional Authorization token that is re-read from its file every time.
 * Also the JSON credentials parser IMDS shares.
 */
#include "core/aws/creds.h"
#include "core/aws/creds_internal.h"
#include "core/aws/http.h"
#include "core/util/clock.h"
#include "core/util/env.h"
#include "core/util/err.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ECS_HOST_URL "http://169.254.170.2"
#define CONTAINER_CONNECT_TIMEOUT_MS 2000L
#define CONTAINER_TIMEOUT_MS 5000L
#define CONTAINER_ATTEMPTS 2
#define CONTAINER_RETRY_DELAY_MS 200

int kl_creds_status_code(long status)
{
    if (status == 401 || status == 403)
        return KL_ERR_AUTH;
    if (status == 429 || status >= 500)
        return KL_ERR_UNAVAILABLE;
    return KL_ERR_UPSTREAM;
}

static const char *json_string(const cJSON *obj, const char *a, const char *b)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, a);
    if (v == NULL && b != NULL)
        v = cJSON_GetObjectItemCaseSensitive(obj, b);
    return v != NULL && cJSON_IsString(v) && v->valuestring != NULL ? v->valuestring : NULL;
}

int kl_creds_json_parse(const char *body, size_t len, int need_expiration, const char *what,
                        const char *source, struct kl_aws_creds *out, struct kl_err *err)
{
    cJSON *json = cJSON_ParseWithLength(body, len);
    const char *code, *key, *secret, *token, *expiration;
    int64_t expires_at = 0;
    int rc;

    if (!cJSON_IsObject(json)) {
        rc = kl_err_set(err, KL_ERR_UPSTREAM,
                        "%s answered with something that is not a JSON "
                        "object",
                        what);
        goto cleanup;
    }
    code = json_string(json, "Code", NULL);
    if (code != NULL && strcmp(code, "Success") != 0) {
        const char *msg = json_string(json, "Message", NULL);
        rc = kl_err_set(
            err, strcmp(code, "AssumeRoleUnauthorizedAccess") == 0 ? KL_ERR_AUTH : KL_ERR_UPSTREAM,
            "%s: %.64s: %.120s%s", what, code, msg != NULL ? msg : "(no message)",
            strcmp(code, "AssumeRoleUnauthorizedAccess") == 0
                ? " (does the role trust ec2.amazonaws.com?)"
                : "");
        goto cleanup;
    }
    key = json_string(json, "AccessKeyId", NULL);
    secret = json_string(json, "SecretAccessKey", NULL);
    token = json_string(json, "Token", NULL);
    expiration = json_string(json, "Expiration", NULL);
    if (key == NULL || secret == NULL || key[0] == '\0' || secret[0] == '\0') {
        rc = kl_err_set(err, KL_ERR_UPSTREAM,
                        "%s: the answer lacks AccessKeyId or "
                        "SecretAccessKey",
                        what);
        goto cleanup;
    }
    if (expiration == NULL && need_expiration) {
        rc = kl_err_set(err, KL_ERR_UPSTREAM, "%s: the answer lacks Expiration", what);
        goto cleanup;
    }
    if (expiration != NULL && kl_creds_parse_time(expiration, &expires_at) != 0) {
        rc = kl_err_set(err, KL_ERR_UPSTREAM, "%s: Expiration %.40s is not an ISO-8601 time", what,
                        expiration);
        goto cleanup;
    }
    rc = kl_creds_fill(out, key, secret, token, expires_at, source, err);
cleanup:
    kl_creds_json_delete(json);
    return rc;
}

/* ---- the provider ---- */

struct container_provider {
    struct kl_cred_provider base;
    struct kl_creds_settings s;
};

/* Plain http is allowed only to hosts an attacker cannot be in the middle of:
 * loopback and the ECS / EKS Pod Identity link-local addresses, as the SDKs
 * do. Names other than "localhost" are not resolved here, so they need https. */
static bool trusted_http_host(const char *host)
{
    struct in_addr v4;
    struct in6_addr v6, eks6;

    if (strcasecmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &v4) == 1) {
        uint32_t a = ntohl(v4.s_addr);
        return (a >> 24) == 127 || a == 0xA9FEAA02u /* 169.254.170.2 */ ||
               a == 0xA9FEAA17u /* 169.254.170.23 */;
    }
    if (inet_pton(AF_INET6, host, &v6) == 1) {
        if (inet_pton(AF_INET6, "fd00:ec2::23", &eks6) != 1)
            return false;
        if (IN6_IS_ADDR_LOOPBACK(&v6) || memcmp(&v6, &eks6, sizeof v6) == 0)
            return true;
        return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
    }
    return false;
}

static int check_full_uri(const char *uri, struct kl_err *err)
{
    const char *auth, *end, *hs, *he;
    char host[256];
    size_t n;

    if (strncasecmp(uri, "https://", 8) == 0 && uri[8] != '\0' && uri[8] != '/')
        return KL_OK;
    if (strncasecmp(uri, "http://", 7) != 0)
        return kl_err_set(err, KL_ERR_INVALID,
                          "AWS_CONTAINER_CREDENTIALS_FULL_URI must be an http:// or https:// URL");
    auth = uri + 7;
    end = auth + strcspn(auth, "/?#");
    if (memchr(auth, '@', (size_t)(end - auth)) != NULL)
        return kl_err_set(err, KL_ERR_INVALID,
                          "AWS_CONTAINER_CREDENTIALS_FULL_URI must not carry user information");
    if (auth < end && *auth == '[') {
        hs = auth + 1;
        he = memchr(hs, ']', (size_t)(end - hs));
        if (he == NULL)
            return kl_err_set(err, KL_ERR_INVALID,
                              "AWS_CONTAINER_CREDENTIALS_FULL_URI has an unterminated [IPv6]");
    } else {
        hs = auth;
        he = memchr(hs, ':', (size_t)(end - hs));
        if (he == NULL)
            he = end;
    }
    n = (size_t)(he - hs);
    if (n == 0 || n >= sizeof host)
        return kl_err_set(err, KL_ERR_INVALID,
                          "AWS_CONTAINER_CREDENTIALS_FULL_URI has no usable host");
    memcpy(host, hs, n);
    host[n] = '\0';
    if (!trusted_http_host(host))
        return kl_err_set(err, KL_ERR_INVALID,
                          "AWS_CONTAINER_CREDENTIALS_FULL_URI: plain http is allowed only to "
                          "loopback, 169.254.170.2, 169.254.170.23 or fd00:ec2::23, not %.64s; "
                          "use https",
                          host);
    return KL_OK;
}

/* The Authorization value: the token file (read fresh: EKS rotates it) wins
 * over the variable. NULL in *out when neither is set. */
static int auth_token(const struct kl_env *env, char **out, struct kl_err *err)
{
    const char *file = kl_env_get(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    const char *value = kl_env_get(env, "AWS_CONTAINER_AUTHORIZATION_TOKEN");
    char path[KL_CREDS_MAX_PATH];
    int rc;

    *out = NULL;
    if (file != NULL) {
        rc = kl_creds_expand_path(env, file, path, sizeof path, err);
        if (rc != KL_OK)
            return rc;
        return kl_creds_read_token_file(path, "container authorization token file", out, err);
    }
    if (value == NULL)
        return KL_OK;
    for (const char *p = value; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return kl_err_set(err, KL_ERR_INVALID,
                              "AWS_CONTAINER_AUTHORIZATION_TOKEN contains control characters");
    }
    *out = strdup(value);
    if (*out == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "out of memory reading the authorization token");
    return KL_OK;
}

static int container_resolve(void *impl, struct kl_aws_creds *out, struct kl_err *err)
{
    struct container_provider *c = impl;
    const struct kl_env *env = c->s.env;
    const char *rel = kl_env_get(env, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = kl_env_get(env, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
    struct kl_http_header headers[2] = {{"Accept", "application/json"}, {"Authorization", ""}};
    struct kl_http_request req;
    struct kl_http_response resp;
    char url[KL_CREDS_MAX_URL];
    char *token = NULL;
    int rc, n;

    kl_http_response_init(&resp);
    if (rel == NULL && full == NULL)
        return kl_err_set(err, KL_ERR_NOT_FOUND,
                          "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and _FULL_URI are not set");
    if (rel != NULL) { /* the relative URI wins, as in every SDK */
        if (rel[0] != '/')
            return kl_err_set(err, KL_ERR_INVALID,
                              "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must start with '/'");
        n = snprintf(url, sizeof url, "%s%s", ECS_HOST_URL, rel);
    } else {
        rc = check_full_uri(full, err);
        if (rc != KL_OK)
            return rc;
        n = snprintf(url, sizeof url, "%s", full);
    }
    if (n < 0 || (size_t)n >= sizeof url)
        return kl_err_set(err, KL_ERR_INVALID, "container credentials URI is too long");
    rc = auth_token(env, &token, err);
    if (rc != KL_OK)
        goto cleanup;

    memset(&req, 0, sizeof req);
    req.sensitive = 1;
    req.method = "GET";
    req.url = url;
    req.headers = headers;
    req.n_headers = 1;
    if (token != NULL) {
        headers[1].value = token;
        req.n_headers = 2;
    }
    req.connect_timeout_ms = CONTAINER_CONNECT_TIMEOUT_MS;
    req.timeout_ms = CONTAINER_TIMEOUT_MS;
    req.max_response = KL_CREDS_MAX_RESPONSE;
    for (int attempt = 1;; attempt++) {
        rc = kl_http_send(c->s.http, &req, &resp, err);
        if (rc == KL_OK && resp.status == 200) {
            rc = kl_creds_json_parse(resp.body, resp.body_len, 0, "container endpoint", "container",
                                     out, err);
        } else if (rc == KL_OK) {
            cJSON *json = cJSON_ParseWithLength(resp.body, resp.body_len);
            const char *code = json_string(json, "code", "Code");
            const char *msg = json_string(json, "message", "Message");
            rc = kl_err_set(err, kl_creds_status_code(resp.status), "HTTP %ld%s%.64s%s%.120s",
                            resp.status, code != NULL ? " " : "", code != NULL ? code : "",
                            msg != NULL ? ": " : "", msg != NULL ? msg : "");
            kl_creds_json_delete(json);
        }
        kl_creds_response_free(&resp);
        if (rc != KL_ERR_UNAVAILABLE || attempt == CONTAINER_ATTEMPTS)
            break;
        kl_clock_sleep_ms(c->s.clock, CONTAINER_RETRY_DELAY_MS);
    }
    if (rc != KL_OK) {
        /* Scheme and host only: the ECS path carries the task's credential id. */
        const char *host = strstr(url, "://");
        size_t n_origin =
            host != NULL ? (size_t)(host + 3 - url) + strcspn(host + 3, "/?#") : strlen(url);
        kl_err_prefix(err, "container endpoint %.*s", (int)(n_origin < 128 ? n_origin : 128), url);
    }
cleanup:
    kl_creds_response_free(&resp);
    kl_creds_free_secret(token);
    return rc;
}

static void container_destroy(void *impl)
{
    struct container_provider *c = impl;
    kl_creds_settings_free(&c->s);
    free(c);
}

static const struct kl_cred_provider_ops container_ops = {container_resolve, container_destroy};

struct kl_cred_provider *kl_cred_container_create(const struct kl_cred_chain_config *cfg,
                                                  struct kl_err *err)
{
    struct container_provider *c = calloc(1, sizeof *c);

    if (c == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "out of memory creating container credentials");
        return NULL;
    }
    if (kl_creds_settings_init(&c->s, cfg, 1, "container", err) != KL_OK) {
        free(c);
        return NULL;
    }
    c->base.ops = &container_ops;
    c->base.impl = c;
    return &c->base;
}
