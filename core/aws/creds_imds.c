/*
 * EC2 instance profile credentials through IMDSv2: a session token (PUT),
 * the role name, then the role's credentials. Timeouts are short and there
 * is one retry, so a machine off EC2 learns "nothing here" quickly. IMDSv1
 * (requests without a token) is deliberately not supported.
 */
#include "core/aws/creds.h"
#include "core/aws/creds_internal.h"
#include "core/aws/http.h"
#include "core/util/clock.h"
#include "core/util/env.h"
#include "core/util/err.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define IMDS_DEFAULT_V4 "http://169.254.169.254"
#define IMDS_DEFAULT_V6 "http://[fd00:ec2::254]"
#define IMDS_CONNECT_TIMEOUT_MS 1000L
#define IMDS_TIMEOUT_MS 2000L
#define IMDS_ATTEMPTS 2
#define IMDS_RETRY_DELAY_MS 100
#define IMDS_TOKEN_TTL_S "21600"
#define IMDS_MAX_TOKEN 4096
#define IMDS_ROLE_MAX 128
#define CREDS_PATH "/latest/meta-data/iam/security-credentials/"
/* Room for the base URL (< KL_CREDS_MAX_URL), a path and a role name. */
#define IMDS_URL_MAX (KL_CREDS_MAX_URL + 256)

struct imds_provider {
    struct kl_cred_provider base;
    struct kl_creds_settings s;
};

/* One request with the retry policy: again once on a transport failure or 5xx.
 * On KL_OK `resp` holds the last answer, whatever its status. */
static int imds_send(struct imds_provider *m, const char *method, const char *url,
                     const struct kl_http_header *h, struct kl_http_response *resp,
                     struct kl_err *err)
{
    struct kl_http_request req;
    int rc;

    memset(&req, 0, sizeof req);
    req.sensitive = 1;
    req.method = method;
    req.url = url;
    req.headers = h;
    req.n_headers = 1;
    req.connect_timeout_ms = IMDS_CONNECT_TIMEOUT_MS;
    req.timeout_ms = IMDS_TIMEOUT_MS;
    req.max_response = KL_CREDS_MAX_RESPONSE;
    for (int attempt = 1;; attempt++) {
        rc = kl_http_send(m->s.http, &req, resp, err);
        if (rc == KL_OK && resp->status < 500)
            return KL_OK;
        if (attempt == IMDS_ATTEMPTS)
            return rc;
        if (rc == KL_OK)
            kl_creds_response_free(resp);
        else if (rc != KL_ERR_UNAVAILABLE)
            return rc;
        kl_clock_sleep_ms(m->s.clock, IMDS_RETRY_DELAY_MS);
    }
}

static int base_url(struct imds_provider *m, char *out, size_t cap, struct kl_err *err)
{
    const char *ep = m->s.imds_endpoint;
    const char *mode;
    int n;

    if (ep == NULL)
        ep = kl_env_get(m->s.env, "AWS_EC2_METADATA_SERVICE_ENDPOINT");
    if (ep == NULL) {
        mode = kl_env_get(m->s.env, "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
        if (mode == NULL || strcasecmp(mode, "IPv4") == 0)
            ep = IMDS_DEFAULT_V4;
        else if (strcasecmp(mode, "IPv6") == 0)
            ep = IMDS_DEFAULT_V6;
        else
            return kl_err_set(err, KL_ERR_INVALID,
                              "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=%.16s: expected IPv4 or IPv6",
                              mode);
    }
    if (strncmp(ep, "http://", 7) != 0 && strncmp(ep, "https://", 8) != 0)
        return kl_err_set(err, KL_ERR_INVALID, "IMDS endpoint %.128s is not an http(s) URL", ep);
    n = snprintf(out, cap, "%s", ep);
    if (n < 0 || (size_t)n >= cap)
        return kl_err_set(err, KL_ERR_INVALID, "IMDS endpoint URL is too long");
    kl_creds_trim_slashes(out);
    return KL_OK;
}

static int get_token(struct imds_provider *m, const char *base, char **out, struct kl_err *err)
{
    struct kl_http_header ttl = {"X-aws-ec2-metadata-token-ttl-seconds", IMDS_TOKEN_TTL_S};
    struct kl_http_response resp;
    char url[IMDS_URL_MAX];
    size_t len;
    int rc;

    kl_http_response_init(&resp);
    snprintf(url, sizeof url, "%s/latest/api/token", base);
    rc = imds_send(m, "PUT", url, &ttl, &resp, err);
    if (rc == KL_ERR_UNAVAILABLE) {
        /* Nobody answers: this is not an EC2 instance (or IMDS is off). */
        char detail[sizeof err->msg];
        snprintf(detail, sizeof detail, "%s", err != NULL ? err->msg : "");
        rc = kl_err_set(err, KL_ERR_NOT_FOUND, "IMDS not reachable at %s (%s)", base, detail);
        goto cleanup;
    }
    if (rc != KL_OK)
        goto cleanup;
    if (resp.status == 404) {
        rc = kl_err_set(err, KL_ERR_NOT_FOUND, "no IMDS at %s (HTTP 404 for a token)", base);
        goto cleanup;
    }
    if (resp.status == 403) {
        rc = kl_err_set(err, KL_ERR_AUTH,
                        "IMDS at %s refused a session token (HTTP 403): the instance metadata "
                        "service is disabled for this instance",
                        base);
        goto cleanup;
    }
    if (resp.status != 200) {
        rc = kl_err_set(err, kl_creds_status_code(resp.status), "IMDS token request: HTTP %ld%s",
                        resp.status,
                        resp.status < 500 ? " (IMDSv2 is required; IMDSv1 is not supported)" : "");
        goto cleanup;
    }
    len = resp.body_len;
    while (len > 0 && (resp.body[len - 1] == '\n' || resp.body[len - 1] == '\r'))
        len--;
    if (len == 0 || len > IMDS_MAX_TOKEN || strlen(resp.body) < len ||
        strcspn(resp.body, "\r\n") < len) {
        rc = kl_err_set(err, KL_ERR_UPSTREAM, "IMDS returned an unusable session token");
        goto cleanup;
    }
    resp.body[len] = '\0';
    *out = strdup(resp.body);
    if (*out == NULL)
        rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory keeping the IMDS token");
cleanup:
    kl_creds_response_free(&resp);
    return rc;
}

static bool valid_role(const char *r)
{
    if (*r == '\0' || strlen(r) > IMDS_ROLE_MAX)
        return false;
    for (; *r != '\0'; r++) { /* IAM role names: [\w+=,.@-] */
        if (!((*r >= 'a' && *r <= 'z') || (*r >= 'A' && *r <= 'Z') || (*r >= '0' && *r <= '9') ||
              strchr("_+=,.@-", *r) != NULL))
            return false;
    }
    return true;
}

static int get_role(struct imds_provider *m, const char *base, const char *token, char *role,
                    size_t cap, struct kl_err *err)
{
    struct kl_http_header auth = {"X-aws-ec2-metadata-token", token};
    struct kl_http_response resp;
    char url[IMDS_URL_MAX];
    size_t n;
    int rc;

    kl_http_response_init(&resp);
    snprintf(url, sizeof url, "%s%s", base, CREDS_PATH);
    rc = imds_send(m, "GET", url, &auth, &resp, err);
    if (rc != KL_OK)
        goto cleanup;
    if (resp.status == 404) {
        rc = kl_err_set(err, KL_ERR_NOT_FOUND,
                        "IMDS at %s: no IAM role is attached to this instance", base);
        goto cleanup;
    }
    if (resp.status != 200) {
        rc = kl_err_set(err, kl_creds_status_code(resp.status), "IMDS role lookup: HTTP %ld",
                        resp.status);
        goto cleanup;
    }
    n = strcspn(resp.body, "\r\n"); /* one role per instance profile: the first line */
    resp.body[n] = '\0';
    if (!valid_role(resp.body) || n >= cap) {
        rc = kl_err_set(err, KL_ERR_UPSTREAM, "IMDS returned an unusable role name");
        goto cleanup;
    }
    memcpy(role, resp.body, n + 1);
cleanup:
    kl_creds_response_free(&resp);
    return rc;
}

static int imds_resolve(void *impl, struct kl_aws_creds *out, struct kl_err *err)
{
    struct imds_provider *m = impl;
    struct kl_http_response resp;
    struct kl_http_header auth = {"X-aws-ec2-metadata-token", NULL};
    char base[KL_CREDS_MAX_URL], url[IMDS_URL_MAX], role[IMDS_ROLE_MAX + 1], source[48];
    char *token = NULL;
    int rc;

    kl_http_response_init(&resp);
    if (kl_creds_env_true(m->s.env, "AWS_EC2_METADATA_DISABLED"))
        return kl_err_set(err, KL_ERR_NOT_FOUND, "IMDS disabled by AWS_EC2_METADATA_DISABLED");
    rc = base_url(m, base, sizeof base, err);
    if (rc != KL_OK)
        return rc;
    rc = get_token(m, base, &token, err);
    if (rc != KL_OK)
        goto cleanup;
    rc = get_role(m, base, token, role, sizeof role, err);
    if (rc != KL_OK)
        goto cleanup;
    snprintf(url, sizeof url, "%s%s%s", base, CREDS_PATH, role);
    auth.value = token;
    rc = imds_send(m, "GET", url, &auth, &resp, err);
    if (rc != KL_OK)
        goto cleanup;
    if (resp.status != 200) {
        rc = kl_err_set(err, kl_creds_status_code(resp.status),
                        "IMDS credentials of role %s: HTTP %ld", role, resp.status);
        goto cleanup;
    }
    snprintf(source, sizeof source, "imds:%.42s", role);
    rc = kl_creds_json_parse(resp.body, resp.body_len, 1, "IMDS", source, out, err);
cleanup:
    kl_creds_response_free(&resp);
    kl_creds_free_secret(token);
    return rc;
}

static void imds_destroy(void *impl)
{
    struct imds_provider *m = impl;
    kl_creds_settings_free(&m->s);
    free(m);
}

static const struct kl_cred_provider_ops imds_ops = {imds_resolve, imds_destroy};

struct kl_cred_provider *kl_cred_imds_create(const struct kl_cred_chain_config *cfg,
                                             struct kl_err *err)
{
    struct imds_provider *m = calloc(1, sizeof *m);

    if (m == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "out of memory creating IMDS credentials");
        return NULL;
    }
    if (kl_creds_settings_init(&m->s, cfg, 1, "IMDS", err) != KL_OK) {
        free(m);
        return NULL;
    }
    m->base.ops = &imds_ops;
    m->base.impl = m;
    return &m->base;
}
