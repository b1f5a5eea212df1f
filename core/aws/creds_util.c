/*
 * Small helpers the credential providers share: filling a credentials record,
 * parsing AWS timestamps, bounded reads of credential and token files, and
 * cleanup that wipes secrets. No provider logic lives here.
 */
#include "core/aws/creds_internal.h"
#include "core/aws/http.h"
#include "core/util/buf.h"
#include "core/util/env.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static char *dup_str(const char *s)
{
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (p != NULL)
        memcpy(p, s, n + 1);
    return p;
}

static int dup_opt(char **dst, const char *src)
{
    *dst = NULL;
    if (src == NULL || src[0] == '\0')
        return 0;
    *dst = dup_str(src);
    return *dst == NULL ? -1 : 0;
}

int kl_creds_settings_init(struct kl_creds_settings *s, const struct kl_cred_chain_config *cfg,
                           int need_http, const char *who, struct kl_err *err)
{
    memset(s, 0, sizeof *s);
    if (cfg == NULL || cfg->env == NULL)
        return kl_err_set(err, KL_ERR_INVALID, "%s credentials: an env is required", who);
    if (need_http && (cfg->clock == NULL || cfg->http == NULL))
        return kl_err_set(err, KL_ERR_INVALID,
                          "%s credentials: a clock and an HTTP transport are required", who);
    s->env = cfg->env;
    s->clock = cfg->clock;
    s->http = cfg->http;
    if (dup_opt(&s->profile, cfg->profile) != 0 || dup_opt(&s->region, cfg->region) != 0 ||
        dup_opt(&s->sts_endpoint, cfg->sts_endpoint) != 0 ||
        dup_opt(&s->imds_endpoint, cfg->imds_endpoint) != 0) {
        kl_creds_settings_free(s);
        return kl_err_set(err, KL_ERR_NOMEM, "out of memory creating %s credentials", who);
    }
    return KL_OK;
}

void kl_creds_settings_free(struct kl_creds_settings *s)
{
    free(s->profile);
    free(s->region);
    free(s->sts_endpoint);
    free(s->imds_endpoint);
    memset(s, 0, sizeof *s);
}

void kl_creds_free_secret(char *s)
{
    if (s == NULL)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

int kl_creds_fill(struct kl_aws_creds *out, const char *access_key_id,
                  const char *secret_access_key, const char *session_token, int64_t expires_at_ms,
                  const char *source, struct kl_err *err)
{
    struct kl_aws_creds c;
    int rc = KL_OK;

    kl_aws_creds_init(&c);
    c.access_key_id = dup_str(access_key_id);
    c.secret_access_key = dup_str(secret_access_key);
    if (session_token != NULL && session_token[0] != '\0')
        c.session_token = dup_str(session_token);
    if (c.access_key_id == NULL || c.secret_access_key == NULL ||
        (session_token != NULL && session_token[0] != '\0' && c.session_token == NULL)) {
        rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory copying credentials");
        goto cleanup;
    }
    c.expires_at_ms = expires_at_ms;
    snprintf(c.source, sizeof c.source, "%s", source != NULL ? source : "");
    *out = c;
    kl_aws_creds_init(&c);
cleanup:
    kl_aws_creds_free(&c);
    return rc;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int kl_creds_parse_time(const char *s, int64_t *out_ms)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec, ms = 0, off_h = 0, off_m = 0, sign = 0;
    const char *p;
    int64_t days, total;

    if (s == NULL || strlen(s) < 19)
        return -1;
    if (digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
        digits(s + 17, 2, &sec))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60)
        return -1;
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return -1;
    p = s + 19;
    if (*p == '.') {
        int n = 0;
        p++;
        while (*p >= '0' && *p <= '9') {
            if (n < 3)
                ms = ms * 10 + (*p - '0');
            n++;
            p++;
        }
        if (n == 0)
            return -1;
        for (; n < 3; n++)
            ms *= 10;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '-' ? -1 : 1;
        if (digits(p + 1, 2, &off_h))
            return -1;
        p += 3;
        if (*p == ':')
            p++;
        if (digits(p, 2, &off_m) || off_h > 23 || off_m > 59)
            return -1;
        p += 2;
    } else {
        return -1; /* a time without a zone is ambiguous: refuse it */
    }
    if (*p != '\0')
        return -1;
    days = days_from_civil(y, mo, d);
    total = ((days * 24 + h) * 60 + mi) * 60 + sec;
    total -= (int64_t)sign * (off_h * 3600 + off_m * 60);
    *out_ms = total * 1000 + ms;
    return 0;
}

int kl_creds_read_file(const char *path, size_t max, const char *what, char **out, size_t *len_out,
                       struct kl_err *err)
{
    int fd = -1, rc = KL_OK;
    struct stat st;
    char *data = NULL;
    size_t cap, len = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = kl_err_set(err, errno == ENOENT ? KL_ERR_NOT_FOUND : KL_ERR_IO,
                        "%s %s cannot be opened: %s", what, path, strerror(errno));
        goto cleanup;
    }
    if (fstat(fd, &st) != 0) {
        rc = kl_err_set(err, KL_ERR_IO, "%s %s: fstat: %s", what, path, strerror(errno));
        goto cleanup;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = kl_err_set(err, KL_ERR_IO, "%s %s is not a regular file", what, path);
        goto cleanup;
    }
    if ((uintmax_t)st.st_size > max) {
        rc = kl_err_set(err, KL_ERR_LIMIT, "%s %s is larger than %zu bytes", what, path, max);
        goto cleanup;
    }
    /* One allocation of the final size: a secret never sits in a block that
     * realloc() frees without wiping. One spare byte detects a growing file. */
    cap = (size_t)st.st_size + 1;
    data = malloc(cap + 1);
    if (data == NULL) {
        rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory reading %s", path);
        goto cleanup;
    }
    for (;;) {
        ssize_t n = read(fd, data + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = kl_err_set(err, KL_ERR_IO, "%s %s: read: %s", what, path, strerror(errno));
            goto cleanup;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == cap) {
            rc = kl_err_set(err, KL_ERR_IO, "%s %s changed while being read", what, path);
            goto cleanup;
        }
    }
    data[len] = '\0';
    *out = data;
    data = NULL;
    if (len_out != NULL)
        *len_out = len;
cleanup:
    if (data != NULL) {
        OPENSSL_cleanse(data, cap);
        free(data);
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

int kl_creds_read_token_file(const char *path, const char *what, char **out, struct kl_err *err)
{
    char *data = NULL;
    size_t len = 0, start = 0;
    int rc;

    rc = kl_creds_read_file(path, KL_CREDS_MAX_TOKEN_FILE, what, &data, &len, err);
    if (rc == KL_ERR_NOT_FOUND) {
        /* The variable names this file: its absence is a broken setup, not "no credentials". */
        if (err != NULL)
            err->code = KL_ERR_IO;
        rc = KL_ERR_IO;
    }
    if (rc != KL_OK)
        goto cleanup;
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' ' ||
                       data[len - 1] == '\t'))
        data[--len] = '\0';
    while (start < len && (data[start] == ' ' || data[start] == '\t' || data[start] == '\n' ||
                           data[start] == '\r'))
        start++;
    if (start == len) {
        rc = kl_err_set(err, KL_ERR_INVALID, "%s %s is empty", what, path);
        goto cleanup;
    }
    for (size_t i = start; i < len; i++) {
        if ((unsigned char)data[i] < 0x20 || data[i] == 0x7f) {
            rc = kl_err_set(err, KL_ERR_INVALID,
                            "%s %s contains control characters (line breaks inside the token?)",
                            what, path);
            goto cleanup;
        }
    }
    if (start > 0)
        memmove(data, data + start, len - start + 1);
    *out = data;
    data = NULL;
cleanup:
    kl_creds_free_secret(data);
    return rc;
}

int kl_creds_expand_path(const struct kl_env *env, const char *path, char *out, size_t cap,
                         struct kl_err *err)
{
    int n;

    if (path[0] == '~' && (path[1] == '/' || path[1] == '\0')) {
        const char *home = kl_env_get(env, "HOME");
        if (home == NULL)
            return kl_err_set(err, KL_ERR_INVALID, "HOME is not set, so %s cannot be expanded",
                              path);
        n = snprintf(out, cap, "%s%s", home, path + 1);
    } else {
        n = snprintf(out, cap, "%s", path);
    }
    if (n < 0 || (size_t)n >= cap)
        return kl_err_set(err, KL_ERR_LIMIT, "path %s is too long", path);
    return KL_OK;
}

void kl_creds_response_free(struct kl_http_response *resp)
{
    if (resp->body != NULL)
        OPENSSL_cleanse(resp->body, resp->body_len);
    kl_http_response_free(resp);
}

static void json_wipe(cJSON *item)
{
    for (; item != NULL; item = item->next) {
        if (item->valuestring != NULL)
            OPENSSL_cleanse(item->valuestring, strlen(item->valuestring));
        json_wipe(item->child);
    }
}

void kl_creds_json_delete(cJSON *json)
{
    if (json == NULL)
        return;
    json_wipe(json);
    cJSON_Delete(json);
}

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

int kl_creds_form_append(struct kl_buf *b, const char *name, const char *value, struct kl_err *err)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t need = strlen(name) + 2;
    int rc;

    for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++)
        need += unreserved(*p) ? 1 : 3;
    /* Reserve once so a secret value is never left behind in a realloc'ed block. */
    rc = kl_buf_reserve(b, need, err);
    if (rc != KL_OK)
        return rc;
    if (b->len > 0)
        b->data[b->len++] = '&';
    memcpy(b->data + b->len, name, strlen(name));
    b->len += strlen(name);
    b->data[b->len++] = '=';
    for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
        if (unreserved(*p)) {
            b->data[b->len++] = (char)*p;
        } else {
            b->data[b->len++] = '%';
            b->data[b->len++] = hex[*p >> 4];
            b->data[b->len++] = hex[*p & 15];
        }
    }
    b->data[b->len] = '\0';
    return KL_OK;
}

void kl_creds_trim_slashes(char *url)
{
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        url[--n] = '\0';
}

int kl_creds_env_true(const struct kl_env *env, const char *name)
{
    const char *v = kl_env_get(env, name);
    return v != NULL && strcasecmp(v, "true") == 0;
}
