/*
 * Web identity: exchanging an OIDC token file (EKS IRSA, GitHub OIDC, ...)
 * for temporary credentials with STS AssumeRoleWithWebIdentity, an unsigned
 * form POST answered in XML. Holds the exchange (shared with the profile
 * provider) and the provider driven by AWS_ROLE_ARN and
 * AWS_WEB_IDENTITY_TOKEN_FILE. Other STS calls are not here.
 */
#include "core/aws/creds.h"
#include "core/aws/creds_internal.h"
#include "core/aws/http.h"
#include "core/util/buf.h"
#include "core/util/clock.h"
#include "core/util/env.h"
#include "core/util/err.h"

#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STS_CONNECT_TIMEOUT_MS 5000L
#define STS_TIMEOUT_MS 15000L
#define STS_ATTEMPTS 2
#define STS_RETRY_DELAY_MS 300

/* ---- just enough XML: STS answers are flat, unprefixed and entity-escaped ---- */

static bool name_ends(char c)
{
    return c == '>' || c == '/' || c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Finds the first element `name` within [s, e) and returns its content. */
static bool xml_find(const char *s, const char *e, const char *name, const char **cs,
                     const char **ce)
{
    size_t nl = strlen(name);

    for (const char *p = s; p < e;) {
        const char *lt = memchr(p, '<', (size_t)(e - p));
        const char *gt;
        if (lt == NULL || (size_t)(e - lt) < nl + 2)
            return false;
        p = lt + 1;
        if (memcmp(lt + 1, name, nl) != 0 || !name_ends(lt[1 + nl]))
            continue;
        gt = memchr(lt, '>', (size_t)(e - lt));
        if (gt == NULL)
            return false;
        if (gt[-1] == '/') { /* <Name/> */
            *cs = *ce = gt;
            return true;
        }
        for (const char *q = gt + 1; q < e; q++) {
            if (q[0] == '<' && (size_t)(e - q) >= nl + 3 && q[1] == '/' &&
                memcmp(q + 2, name, nl) == 0 && q[2 + nl] == '>') {
                *cs = gt + 1;
                *ce = q;
                return true;
            }
        }
        return false;
    }
    return false;
}

static bool xml_path(const char *s, const char *e, const char *const *path, size_t n,
                     const char **cs, const char **ce)
{
    for (size_t i = 0; i < n; i++) {
        if (!xml_find(s, e, path[i], &s, &e))
            return false;
    }
    *cs = s;
    *ce = e;
    return true;
}

static int digit_value(char c, int base)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (base == 16 && c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (base == 16 && c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes "&#NN;" / "&#xHH;" at `s` (after the '&'); ASCII only, since nothing
 * AWS sends in these fields is outside it. Returns the end, or NULL. */
static const char *char_ref(const char *s, const char *e, char *out)
{
    unsigned long v = 0;
    int base = 10, n = 0, d;

    s++; /* '#' */
    if (s < e && (*s == 'x' || *s == 'X')) {
        base = 16;
        s++;
    }
    for (; s < e && *s != ';'; s++, n++) {
        d = digit_value(*s, base);
        if (d < 0 || v > 0x7f)
            return NULL;
        v = v * (unsigned long)base + (unsigned long)d;
    }
    if (s == e || n == 0 || v == 0 || v > 0x7f)
        return NULL;
    *out = (char)v;
    return s + 1;
}

/* Decodes the predefined entities and character references of the trimmed
 * text into a malloc'ed string; NULL when out of memory or malformed. */
static char *xml_text(const char *s, const char *e)
{
    static const struct {
        const char *name;
        char c;
    } ents[] = {{"amp;", '&'}, {"lt;", '<'}, {"gt;", '>'}, {"quot;", '"'}, {"apos;", '\''}};
    size_t cap = (size_t)(e - s) + 1, n = 0;
    char *out = malloc(cap);

    if (out == NULL)
        return NULL;
    while (s < e && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
        e--;
    while (s < e) {
        size_t i;
        if (*s != '&') {
            out[n++] = *s++;
            continue;
        }
        s++;
        if (s < e && *s == '#') {
            s = char_ref(s, e, &out[n++]);
            if (s == NULL)
                goto bad;
            continue;
        }
        for (i = 0; i < sizeof ents / sizeof ents[0]; i++) {
            size_t l = strlen(ents[i].name);
            if ((size_t)(e - s) >= l && memcmp(s, ents[i].name, l) == 0) {
                out[n++] = ents[i].c;
                s += l;
                break;
            }
        }
        if (i == sizeof ents / sizeof ents[0])
            goto bad;
    }
    out[n] = '\0';
    return out;
bad:
    OPENSSL_cleanse(out, cap);
    free(out);
    return NULL;
}

/* Copies the decoded text of `path` into a bounded stack buffer ("" if absent). */
static void xml_copy(const char *body, size_t len, const char *const *path, size_t n, char *out,
                     size_t cap)
{
    const char *cs, *ce;
    char *t;

    out[0] = '\0';
    if (!xml_path(body, body + len, path, n, &cs, &ce))
        return;
    t = xml_text(cs, ce);
    if (t != NULL) {
        snprintf(out, cap, "%s", t);
        free(t);
    }
}

/* Error codes STS documents for AssumeRoleWithWebIdentity, by what a caller can do. */
static enum kl_err_code sts_error_code(long status, const char *code)
{
    static const char *const retryable[] = {
        "IDPCommunicationError", "Throttling",      "ThrottlingException", "RequestLimitExceeded",
        "ServiceUnavailable",    "InternalFailure", "InternalError"};
    static const char *const refused[] = {"InvalidIdentityToken",  "ExpiredTokenException",
                                          "ExpiredToken",          "AccessDenied",
                                          "AccessDeniedException", "IDPRejectedClaim",
                                          "InvalidClientTokenId",  "RegionDisabledException"};

    for (size_t i = 0; i < sizeof retryable / sizeof retryable[0]; i++) {
        if (strcmp(code, retryable[i]) == 0)
            return KL_ERR_UNAVAILABLE;
    }
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        if (strcmp(code, refused[i]) == 0)
            return KL_ERR_AUTH;
    }
    if (status >= 500 || status == 429)
        return KL_ERR_UNAVAILABLE;
    if (status == 401 || status == 403)
        return KL_ERR_AUTH;
    return KL_ERR_UPSTREAM;
}

int kl_creds_sts_parse(long status, const char *body, size_t len, const char *source,
                       struct kl_aws_creds *out, struct kl_err *err)
{
    static const char *const creds_path[] = {"AssumeRoleWithWebIdentityResult", "Credentials"};
    static const char *const fields[] = {"AccessKeyId", "SecretAccessKey", "SessionToken",
                                         "Expiration"};
    static const char *const code_path[] = {"Error", "Code"};
    static const char *const msg_path[] = {"Error", "Message"};
    char *v[4] = {NULL, NULL, NULL, NULL};
    const char *cs, *ce;
    int64_t expires_at;
    int rc;

    if (status != 200) {
        char code[96], msg[160];
        xml_copy(body, len, code_path, 2, code, sizeof code);
        xml_copy(body, len, msg_path, 2, msg, sizeof msg);
        if (code[0] == '\0')
            return kl_err_set(err,
                              status >= 500 || status == 429 ? KL_ERR_UNAVAILABLE : KL_ERR_UPSTREAM,
                              "HTTP %ld without an STS error document", status);
        return kl_err_set(err, sts_error_code(status, code), "HTTP %ld %s: %s", status, code,
                          msg[0] != '\0' ? msg : "(no message)");
    }
    if (!xml_path(body, body + len, creds_path, 2, &cs, &ce)) {
        rc = kl_err_set(err, KL_ERR_UPSTREAM, "STS answered 200 without <Credentials>");
        goto cleanup;
    }
    for (size_t i = 0; i < 4; i++) {
        const char *fs, *fe;
        if (!xml_find(cs, ce, fields[i], &fs, &fe)) {
            rc = kl_err_set(err, KL_ERR_UPSTREAM, "STS credentials lack <%s>", fields[i]);
            goto cleanup;
        }
        v[i] = xml_text(fs, fe);
        if (v[i] == NULL) {
            rc = kl_err_set(err, KL_ERR_UPSTREAM, "STS credentials: <%s> cannot be decoded",
                            fields[i]);
            goto cleanup;
        }
    }
    if (v[0][0] == '\0' || v[1][0] == '\0') {
        rc = kl_err_set(err, KL_ERR_UPSTREAM, "STS credentials are empty");
        goto cleanup;
    }
    if (kl_creds_parse_time(v[3], &expires_at) != 0) {
        rc = kl_err_set(err, KL_ERR_UPSTREAM, "STS <Expiration> %.40s is not an ISO-8601 time",
                        v[3]);
        goto cleanup;
    }
    rc = kl_creds_fill(out, v[0], v[1], v[2], expires_at, source, err);
cleanup:
    for (size_t i = 0; i < 4; i++)
        kl_creds_free_secret(v[i]);
    return rc;
}

int kl_creds_sts_url(const struct kl_env *env, const char *explicit_url, const char *region,
                     char *out, size_t cap, struct kl_err *err)
{
    int rc;

    if (explicit_url != NULL) {
        int n = snprintf(out, cap, "%s", explicit_url);
        if (n < 0 || (size_t)n >= cap)
            return kl_err_set(err, KL_ERR_LIMIT, "STS endpoint URL is too long");
        kl_creds_trim_slashes(out);
        return KL_OK;
    }
    rc = kl_aws_endpoint_resolve(env, "STS", "sts", region, out, cap, err);
    if (rc == KL_ERR_NOT_FOUND) { /* no region: the global endpoint still serves the call */
        kl_err_clear(err);
        snprintf(out, cap, "https://sts.amazonaws.com");
        rc = KL_OK;
    }
    return rc;
}

int kl_creds_web_identity_fetch(const struct kl_creds_web_identity *p, struct kl_aws_creds *out,
                                struct kl_err *err)
{
    struct kl_http_header headers[] = {
        {"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"},
        {"Accept", "text/xml"},
    };
    struct kl_http_request req;
    struct kl_http_response resp;
    struct kl_buf body;
    char session[64], url[KL_CREDS_MAX_URL];
    char *token = NULL;
    int rc, n;

    kl_http_response_init(&resp);
    kl_buf_init(&body, KL_CREDS_MAX_TOKEN_FILE * 3 + 8192);
    rc = kl_creds_read_token_file(p->token_file, "web identity token file", &token, err);
    if (rc != KL_OK)
        goto cleanup;
    if (p->session_name != NULL)
        snprintf(session, sizeof session, "%s", p->session_name);
    else
        snprintf(session, sizeof session, "kinesis-loader-%lld",
                 (long long)(kl_clock_wall_ms(p->clock) / 1000));
    n = snprintf(url, sizeof url, "%s/", p->sts_url);
    if (n < 0 || (size_t)n >= sizeof url) {
        rc = kl_err_set(err, KL_ERR_LIMIT, "STS endpoint URL is too long");
        goto cleanup;
    }
    /* The token goes last: whatever realloc moved before it held no secret. */
    rc = kl_creds_form_append(&body, "Action", "AssumeRoleWithWebIdentity", err);
    if (rc == KL_OK)
        rc = kl_creds_form_append(&body, "Version", "2011-06-15", err);
    if (rc == KL_OK)
        rc = kl_creds_form_append(&body, "RoleArn", p->role_arn, err);
    if (rc == KL_OK)
        rc = kl_creds_form_append(&body, "RoleSessionName", session, err);
    if (rc == KL_OK)
        rc = kl_creds_form_append(&body, "WebIdentityToken", token, err);
    if (rc != KL_OK)
        goto cleanup;

    memset(&req, 0, sizeof req);
    req.sensitive = 1;
    req.method = "POST";
    req.url = url;
    req.headers = headers;
    req.n_headers = sizeof headers / sizeof headers[0];
    req.body = body.data;
    req.body_len = body.len;
    req.connect_timeout_ms = STS_CONNECT_TIMEOUT_MS;
    req.timeout_ms = STS_TIMEOUT_MS;
    req.max_response = KL_CREDS_MAX_RESPONSE;
    for (int attempt = 1;; attempt++) {
        rc = kl_http_send(p->http, &req, &resp, err);
        if (rc == KL_OK) {
            rc = kl_creds_sts_parse(resp.status, resp.body, resp.body_len, p->source, out, err);
            kl_creds_response_free(&resp);
        }
        if (rc != KL_ERR_UNAVAILABLE || attempt == STS_ATTEMPTS)
            break;
        kl_clock_sleep_ms(p->clock, STS_RETRY_DELAY_MS);
    }
    if (rc != KL_OK)
        kl_err_prefix(err, "AssumeRoleWithWebIdentity for %.96s at %.96s", p->role_arn, p->sts_url);
cleanup:
    kl_creds_response_free(&resp);
    kl_buf_free_secure(&body);
    kl_creds_free_secret(token);
    return rc;
}

/* ---- the provider: AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE ---- */

struct web_identity_provider {
    struct kl_cred_provider base;
    struct kl_creds_settings s;
};

static int web_identity_resolve(void *impl, struct kl_aws_creds *out, struct kl_err *err)
{
    struct web_identity_provider *w = impl;
    const struct kl_env *env = w->s.env;
    const char *role = kl_env_get(env, "AWS_ROLE_ARN");
    const char *file = kl_env_get(env, "AWS_WEB_IDENTITY_TOKEN_FILE");
    char path[KL_CREDS_MAX_PATH], region[64], url[KL_CREDS_MAX_URL];
    const char *reg = w->s.region;
    struct kl_creds_web_identity p;
    int rc;

    if (file == NULL)
        return kl_err_set(err, KL_ERR_NOT_FOUND, "AWS_WEB_IDENTITY_TOKEN_FILE is not set");
    if (role == NULL)
        return kl_err_set(err, KL_ERR_INVALID,
                          "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not");
    rc = kl_creds_expand_path(env, file, path, sizeof path, err);
    if (rc != KL_OK)
        return rc;
    if (reg == NULL && w->s.sts_endpoint == NULL) {
        rc = kl_aws_region_resolve(env, w->s.profile, region, sizeof region, err);
        if (rc == KL_OK)
            reg = region;
        else if (rc != KL_ERR_NOT_FOUND)
            return rc;
    }
    rc = kl_creds_sts_url(env, w->s.sts_endpoint, reg, url, sizeof url, err);
    if (rc != KL_OK)
        return rc;
    memset(&p, 0, sizeof p);
    p.http = w->s.http;
    p.clock = w->s.clock;
    p.sts_url = url;
    p.role_arn = role;
    p.token_file = path;
    p.session_name = kl_env_get(env, "AWS_ROLE_SESSION_NAME");
    p.source = "web-identity";
    return kl_creds_web_identity_fetch(&p, out, err);
}

static void web_identity_destroy(void *impl)
{
    struct web_identity_provider *w = impl;
    kl_creds_settings_free(&w->s);
    free(w);
}

static const struct kl_cred_provider_ops web_identity_ops = {web_identity_resolve,
                                                             web_identity_destroy};

struct kl_cred_provider *kl_cred_web_identity_create(const struct kl_cred_chain_config *cfg,
                                                     struct kl_err *err)
{
    struct web_identity_provider *w = calloc(1, sizeof *w);

    if (w == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "out of memory creating web identity credentials");
        return NULL;
    }
    if (kl_creds_settings_init(&w->s, cfg, 1, "web identity", err) != KL_OK) {
        free(w);
        return NULL;
    }
    w->base.ops = &web_identity_ops;
    w->base.impl = w;
    return &w->base;
}
