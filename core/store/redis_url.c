/*
 * REDIS_URL parsing (redis.h): scheme, credentials, host, port and
 * database number. The password is decoded into its own heap block that
 * is wiped when freed; error messages name the part that is wrong, never
 * its content.
 */
#include "core/store/redis.h"
#include "core/store/internal.h"
#include "core/util/err.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes src[0..n) into out (size bytes). Returns false for a bad
 * escape, a NUL byte, or when it does not fit. */
static bool decode(const char *src, size_t n, char *out, size_t size)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= n)
                return false;
            hi = hexval(src[i + 1]);
            lo = hexval(src[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return false;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (w + 1 >= size)
            return false;
        out[w++] = c;
    }
    out[w] = '\0';
    return true;
}

static int parse_port(const char *s, size_t n, int *out)
{
    int v = 0;
    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return -1;
    *out = v;
    return 0;
}

int kl_redis_url_parse(const char *url, struct kl_redis_url *out, struct kl_err *err)
{
    static const char scheme[] = "redis://";
    struct kl_redis_url u;
    const char *p, *auth_end, *at, *host, *host_end, *port = NULL;
    char *pass = NULL;
    size_t pass_cap = 0;
    int rc = KL_OK;

    memset(&u, 0, sizeof u);
    u.port = 6379;
    if (url == NULL || strncasecmp(url, scheme, sizeof scheme - 1) != 0) {
        rc = KL_STORE_FAIL(err, KL_ERR_INVALID,
                           strncasecmp(url != NULL ? url : "", "rediss://", 9) == 0
                               ? "REDIS_URL: TLS (rediss://) is not supported"
                               : "REDIS_URL must start with redis://");
        goto cleanup;
    }
    p = url + sizeof scheme - 1;
    auth_end = p + strcspn(p, "/?#");
    if (*auth_end == '?' || *auth_end == '#') {
        rc = KL_STORE_FAIL(err, KL_ERR_INVALID, "REDIS_URL: query strings are not supported");
        goto cleanup;
    }
    /* credentials end at the last '@' before the path */
    at = NULL;
    for (const char *q = p; q < auth_end; q++) {
        if (*q == '@')
            at = q;
    }
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon == NULL) {
            rc = KL_STORE_FAIL(err, KL_ERR_INVALID,
                               "REDIS_URL: credentials need a password (user:password@ or "
                               ":password@)");
            goto cleanup;
        }
        if (!decode(p, (size_t)(colon - p), u.user, sizeof u.user)) {
            rc = KL_STORE_FAIL(err, KL_ERR_INVALID, "REDIS_URL: bad user name");
            goto cleanup;
        }
        pass_cap = (size_t)(at - colon);
        pass = malloc(pass_cap);
        if (pass == NULL) {
            rc = KL_STORE_FAIL(err, KL_ERR_NOMEM, "REDIS_URL: out of memory");
            goto cleanup;
        }
        if (!decode(colon + 1, (size_t)(at - colon - 1), pass, pass_cap) || pass[0] == '\0') {
            rc = KL_STORE_FAIL(err, KL_ERR_INVALID, "REDIS_URL: bad or empty password");
            goto cleanup;
        }
        p = at + 1;
    }
    host = p;
    if (*host == '[') {
        const char *close = memchr(host, ']', (size_t)(auth_end - host));
        if (close == NULL) {
            rc = KL_STORE_FAIL(err, KL_ERR_INVALID, "REDIS_URL: unclosed [ in the host");
            goto cleanup;
        }
        host_end = close + 1;
        if (host_end < auth_end) {
            if (*host_end != ':') {
                rc = KL_STORE_FAIL(err, KL_ERR_INVALID, "REDIS_URL: bad host");
                goto cleanup;
            }
            port = host_end + 1;
        }
        host++;
        host_end = close;
    } else {
        host_end = memchr(host, ':', (size_t)(auth_end - host));
        if (host_end != NULL)
            port = host_end + 1;
        else
            host_end = auth_end;
    }
    if (host_end == host || (size_t)(host_end - host) >= sizeof u.host) {
        rc = KL_STORE_FAIL(err, KL_ERR_INVALID, "REDIS_URL: missing or too long host");
        goto cleanup;
    }
    memcpy(u.host, host, (size_t)(host_end - host));
    for (const char *c = u.host; *c != '\0'; c++) {
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || *c == '@') {
            rc = KL_STORE_FAIL(err, KL_ERR_INVALID, "REDIS_URL: bad character in the host");
            goto cleanup;
        }
    }
    if (port != NULL && parse_port(port, (size_t)(auth_end - port), &u.port) != 0) {
        rc = KL_STORE_FAIL(err, KL_ERR_INVALID, "REDIS_URL: port must be 1..65535");
        goto cleanup;
    }
    if (*auth_end == '/' && auth_end[1] != '\0') {
        const char *d = auth_end + 1;
        int64_t db = kl_store_parse_i64(d, strlen(d), -1);
        if (db < 0 || db > 100000 || d[0] == '-') {
            rc =
                KL_STORE_FAIL(err, KL_ERR_INVALID, "REDIS_URL: the path must be a database number");
            goto cleanup;
        }
        u.db = (int)db;
    }
    u.password = pass;
    pass = NULL;
    *out = u;
cleanup:
    if (pass != NULL) {
        OPENSSL_cleanse(pass, pass_cap);
        free(pass);
    }
    return rc;
}

void kl_redis_url_free(struct kl_redis_url *u)
{
    if (u == NULL)
        return;
    if (u->password != NULL) {
        OPENSSL_cleanse(u->password, strlen(u->password));
        free(u->password);
    }
    memset(u, 0, sizeof *u);
}

void kl_redis_url_redacted(const struct kl_redis_url *u, char *out, size_t size)
{
    bool v6 = strchr(u->host, ':') != NULL;
    snprintf(out, size, "redis://%s%s%s%s%s%s:%d/%d", u->user, u->password != NULL ? ":***" : "",
             u->user[0] != '\0' || u->password != NULL ? "@" : "", v6 ? "[" : "", u->host,
             v6 ? "]" : "", u->port, u->db);
}
