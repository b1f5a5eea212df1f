/*
 * AWS Signature Version 4 for request headers: canonical request, string to
 * sign, signing key and the Authorization value, plus the URL handling of
 * kl_sigv4_sign_headers. Not here: presigned (query-string) URLs, chunked
 * payload signing, SigV4a, credential lookup, sending anything.
 */
#include "core/aws/sigv4.h"
#include "core/aws/creds.h"
#include "core/util/buf.h"
#include "core/util/err.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define ALGORITHM "AWS4-HMAC-SHA256"
#define SHA256_LEN 32
#define SHA256_HEX_LEN 64
/* "YYYYMMDDTHHMMSSZ" */
#define AMZ_DATE_LEN 16

/* Bounds on what one request may bring. Kinesis requests are far below all
 * of them; they exist so hostile or broken input cannot make us allocate
 * without limit. */
#define MAX_NAME_LEN 128          /* one header name */
#define MAX_QUERY_PARAMS 128      /* name=value pairs in the query string */
#define MAX_PATH_SEGMENTS 256     /* segments of a normalised path */
#define MAX_INPUT_LEN 16384       /* a path, a query string, one header value */
#define MAX_CANONICAL (64 * 1024) /* the whole canonical request */
#define MAX_URL_LEN 8192
#define MAX_SCOPE_PART 64 /* region or service name */

/* One header as it enters the canonical form. */
struct canon_header {
    char name[MAX_NAME_LEN + 1]; /* lower case */
    const char *value;           /* as given; trimmed when written */
    size_t order;                /* position in the request: keeps same-name values in order */
};

/* What the canonical request produced besides its text. */
struct canonical {
    struct kl_buf text;
    char amz_date[AMZ_DATE_LEN + 1];
    size_t signed_off; /* the SignedHeaders line inside `text` */
    size_t signed_len;
};

static const char hex_upper[] = "0123456789ABCDEF";
static const char hex_lower[] = "0123456789abcdef";

static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* RFC 7230 token characters: what a header name or a method may contain. */
static bool is_tchar(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex_lower[in[i] >> 4];
        out[2 * i + 1] = hex_lower[in[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

/* Appends `s[0..n)` encoded the AWS way: unreserved bytes as they are,
 * every other byte as %XX with upper-case hex. */
static int append_encoded(struct kl_buf *b, const char *s, size_t n, struct kl_err *err)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char enc[3];
        int rc;

        if (is_unreserved(c)) {
            rc = kl_buf_append(b, &s[i], 1, err);
        } else {
            enc[0] = '%';
            enc[1] = hex_upper[c >> 4];
            enc[2] = hex_upper[c & 0x0f];
            rc = kl_buf_append(b, enc, 3, err);
        }
        if (rc != KL_OK)
            return rc;
    }
    return KL_OK;
}

/* Appends `s[0..n)` with %XX sequences decoded. A '%' that does not start a
 * valid escape stays a literal '%'; '+' stays '+' (AWS does not read it as a
 * space). */
static int append_decoded(struct kl_buf *b, const char *s, size_t n, struct kl_err *err)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int rc;

        if (c == '%' && n - i >= 3) {
            int hi = hex_value((unsigned char)s[i + 1]);
            int lo = hex_value((unsigned char)s[i + 2]);
            if (hi >= 0 && lo >= 0) {
                c = (char)(hi * 16 + lo);
                i += 2;
            }
        }
        rc = kl_buf_append(b, &c, 1, err);
        if (rc != KL_OK)
            return rc;
    }
    return KL_OK;
}

static int limit_error(struct kl_err *err, const char *what, size_t max)
{
    return kl_err_set(err, KL_ERR_INVALID, "sigv4: %s is longer than %zu bytes", what, max);
}

static int sha256_hex(const void *data, size_t n, char out[SHA256_HEX_LEN + 1], struct kl_err *err)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    static const char empty = '\0';

    if (EVP_Digest(n > 0 ? data : &empty, n, md, &md_len, EVP_sha256(), NULL) != 1 ||
        md_len != SHA256_LEN)
        return kl_err_set(err, KL_ERR_INTERNAL, "sigv4: SHA-256 failed in OpenSSL");
    to_hex(md, SHA256_LEN, out);
    return KL_OK;
}

static int hmac_sha256(const unsigned char *key, size_t key_len, const void *data, size_t n,
                       unsigned char out[SHA256_LEN], struct kl_err *err)
{
    size_t out_len = 0;
    static const unsigned char empty = 0;

    if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, key_len,
                  n > 0 ? (const unsigned char *)data : &empty, n, out, SHA256_LEN,
                  &out_len) == NULL ||
        out_len != SHA256_LEN)
        return kl_err_set(err, KL_ERR_INTERNAL, "sigv4: HMAC-SHA256 failed in OpenSSL");
    return KL_OK;
}

/* ---- canonical URI ---- */

/* Removes dot segments and empty segments, then encodes each remaining
 * segment once more. A trailing slash (or a final "." or "..") keeps the
 * result a directory, as RFC 3986 section 5.2.4 does. */
static int append_normalized_path(struct kl_buf *b, const char *path, size_t n, struct kl_err *err)
{
    size_t seg_off[MAX_PATH_SEGMENTS];
    size_t seg_len[MAX_PATH_SEGMENTS];
    size_t n_seg = 0, last = n, i = 0;
    bool trailing;
    int rc;

    while (last > 0 && path[last - 1] != '/')
        last--;
    /* "/a/", "/a/." and "/a/b/.." all name a directory. */
    trailing = last == n || strcmp(path + last, ".") == 0 || strcmp(path + last, "..") == 0;

    while (i < n) {
        size_t start, len;

        while (i < n && path[i] == '/')
            i++;
        start = i;
        while (i < n && path[i] != '/')
            i++;
        len = i - start;
        if (len == 0 || (len == 1 && path[start] == '.'))
            continue;
        if (len == 2 && path[start] == '.' && path[start + 1] == '.') {
            if (n_seg > 0)
                n_seg--;
            continue;
        }
        if (n_seg == MAX_PATH_SEGMENTS)
            return kl_err_set(err, KL_ERR_INVALID, "sigv4: the path has more than %d segments",
                              MAX_PATH_SEGMENTS);
        seg_off[n_seg] = start;
        seg_len[n_seg] = len;
        n_seg++;
    }

    for (size_t s = 0; s < n_seg; s++) {
        rc = kl_buf_append(b, "/", 1, err);
        if (rc == KL_OK)
            rc = append_encoded(b, path + seg_off[s], seg_len[s], err);
        if (rc != KL_OK)
            return rc;
    }
    if (n_seg == 0 || trailing)
        return kl_buf_append(b, "/", 1, err);
    return KL_OK;
}

/* Without normalisation (S3) the path is taken as already encoded: only
 * bytes that may not appear on the wire unencoded are escaped. */
static int append_raw_path(struct kl_buf *b, const char *path, size_t n, struct kl_err *err)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)path[i];
        int rc = (c == '/' || c == '%') ? kl_buf_append(b, &path[i], 1, err)
                                        : append_encoded(b, &path[i], 1, err);
        if (rc != KL_OK)
            return rc;
    }
    return KL_OK;
}

static int append_canonical_uri(struct kl_buf *b, const char *path, int normalize,
                                struct kl_err *err)
{
    size_t n;

    if (path == NULL || path[0] == '\0')
        path = "/";
    n = strnlen(path, MAX_INPUT_LEN + 1);
    if (n > MAX_INPUT_LEN)
        return limit_error(err, "the path", MAX_INPUT_LEN);
    if (path[0] != '/')
        return kl_err_set(err, KL_ERR_INVALID, "sigv4: the path must start with '/'");
    if (normalize)
        return append_normalized_path(b, path, n, err);
    return append_raw_path(b, path, n, err);
}

/* ---- canonical query string ---- */

struct query_param {
    char *name;  /* encoded, NUL-terminated, points into a shared buffer */
    char *value; /* encoded */
};

static int compare_params(const void *a, const void *b)
{
    const struct query_param *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c != 0 ? c : strcmp(x->value, y->value);
}

/* Appends `s[0..n)` decoded and re-encoded, NUL-terminated, to `store`. */
static int append_reencoded(struct kl_buf *store, const char *s, size_t n, struct kl_err *err)
{
    struct kl_buf tmp;
    int rc;

    kl_buf_init(&tmp, MAX_INPUT_LEN);
    rc = append_decoded(&tmp, s, n, err);
    if (rc == KL_OK)
        rc = append_encoded(store, tmp.data ? tmp.data : "", tmp.len, err);
    if (rc == KL_OK)
        rc = kl_buf_append(store, "", 1, err);
    kl_buf_free(&tmp);
    return rc;
}

static int append_canonical_query(struct kl_buf *b, const char *query, struct kl_err *err)
{
    struct query_param params[MAX_QUERY_PARAMS];
    size_t name_off[MAX_QUERY_PARAMS], value_off[MAX_QUERY_PARAMS];
    size_t n_params = 0, n, i = 0;
    struct kl_buf store;
    int rc = KL_OK;

    if (query == NULL || query[0] == '\0')
        return KL_OK;
    n = strnlen(query, MAX_INPUT_LEN + 1);
    if (n > MAX_INPUT_LEN)
        return limit_error(err, "the query string", MAX_INPUT_LEN);

    /* Encoded names and values go into one buffer; offsets, not pointers,
     * while it may still move. */
    kl_buf_init(&store, (size_t)4 * MAX_INPUT_LEN);
    while (i < n) {
        size_t start = i, eq, end;

        while (i < n && query[i] != '&')
            i++;
        end = i;
        i++; /* skip '&' */
        if (end == start)
            continue; /* "a=1&&b=2" or a trailing '&' */
        if (n_params == MAX_QUERY_PARAMS) {
            rc =
                kl_err_set(err, KL_ERR_INVALID,
                           "sigv4: the query string has more than %d parameters", MAX_QUERY_PARAMS);
            goto cleanup;
        }
        eq = start;
        while (eq < end && query[eq] != '=')
            eq++;
        name_off[n_params] = store.len;
        rc = append_reencoded(&store, query + start, eq - start, err);
        if (rc != KL_OK)
            goto cleanup;
        value_off[n_params] = store.len;
        rc = append_reencoded(&store, eq < end ? query + eq + 1 : "", eq < end ? end - eq - 1 : 0,
                              err);
        if (rc != KL_OK)
            goto cleanup;
        n_params++;
    }

    for (size_t p = 0; p < n_params; p++) {
        params[p].name = store.data + name_off[p];
        params[p].value = store.data + value_off[p];
    }
    qsort(params, n_params, sizeof params[0], compare_params);
    for (size_t p = 0; p < n_params && rc == KL_OK; p++)
        rc = kl_buf_printf(b, err, "%s%s=%s", p > 0 ? "&" : "", params[p].name, params[p].value);

cleanup:
    kl_buf_free(&store);
    return rc;
}

/* ---- canonical headers ---- */

static int compare_headers(const void *a, const void *b)
{
    const struct canon_header *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Appends `v` with leading and trailing blanks removed and every inner run
 * of blanks turned into one space. */
static int append_trimmed(struct kl_buf *b, const char *v, struct kl_err *err)
{
    const char *end;
    bool in_blank = false;

    while (*v == ' ' || *v == '\t')
        v++;
    end = v + strlen(v);
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    for (const char *p = v; p < end; p++) {
        int rc = KL_OK;
        if (*p == ' ' || *p == '\t') {
            if (!in_blank)
                rc = kl_buf_append(b, " ", 1, err);
            in_blank = true;
        } else {
            rc = kl_buf_append(b, p, 1, err);
            in_blank = false;
        }
        if (rc != KL_OK)
            return rc;
    }
    return KL_OK;
}

static int check_header(const struct kl_http_header *h, size_t i, struct kl_err *err)
{
    size_t name_len, value_len;

    if (h->name == NULL || h->value == NULL)
        return kl_err_set(err, KL_ERR_INVALID, "sigv4: header %zu has no name or no value", i);
    name_len = strnlen(h->name, MAX_NAME_LEN + 1);
    if (name_len == 0)
        return kl_err_set(err, KL_ERR_INVALID, "sigv4: header %zu has an empty name", i);
    if (name_len > MAX_NAME_LEN)
        return kl_err_set(err, KL_ERR_INVALID, "sigv4: header name %.32s... is longer than %d",
                          h->name, MAX_NAME_LEN);
    for (size_t k = 0; k < name_len; k++)
        if (!is_tchar((unsigned char)h->name[k]))
            return kl_err_set(err, KL_ERR_INVALID,
                              "sigv4: header name \"%s\" has a character not allowed in names",
                              h->name);
    value_len = strnlen(h->value, MAX_INPUT_LEN + 1);
    if (value_len > MAX_INPUT_LEN)
        return kl_err_set(err, KL_ERR_INVALID, "sigv4: the value of header %s is longer than %d",
                          h->name, MAX_INPUT_LEN);
    /* A CR or LF would let a value smuggle a header line of its own. */
    if (strpbrk(h->value, "\r\n") != NULL)
        return kl_err_set(err, KL_ERR_INVALID, "sigv4: the value of header %s has a line break",
                          h->name);
    return KL_OK;
}

/* Copies the X-Amz-Date value, blanks around it removed, when it has the
 * form YYYYMMDDTHHMMSSZ. */
static bool copy_amz_date(const char *v, char out[AMZ_DATE_LEN + 1])
{
    size_t n;

    while (*v == ' ' || *v == '\t')
        v++;
    n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n != AMZ_DATE_LEN || v[8] != 'T' || v[15] != 'Z')
        return false;
    for (size_t i = 0; i < AMZ_DATE_LEN; i++)
        if (i != 8 && i != 15 && (v[i] < '0' || v[i] > '9'))
            return false;
    memcpy(out, v, AMZ_DATE_LEN);
    out[AMZ_DATE_LEN] = '\0';
    return true;
}

static bool valid_scope_part(const char *s)
{
    size_t n;

    if (s == NULL)
        return false;
    n = strnlen(s, MAX_SCOPE_PART + 1);
    if (n == 0 || n > MAX_SCOPE_PART)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_' || s[i] == '.'))
            return false;
    return true;
}

static int check_params(const struct kl_sigv4_request *req, const struct kl_sigv4_params *p,
                        struct kl_err *err)
{
    size_t n;

    if (req == NULL || p == NULL)
        return kl_err_set(err, KL_ERR_INVALID, "sigv4: no request or no parameters");
    if (req->method == NULL || req->method[0] == '\0')
        return kl_err_set(err, KL_ERR_INVALID, "sigv4: the request has no method");
    n = strnlen(req->method, MAX_NAME_LEN + 1);
    if (n > MAX_NAME_LEN)
        return limit_error(err, "the method", MAX_NAME_LEN);
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)req->method[i]))
            return kl_err_set(err, KL_ERR_INVALID, "sigv4: the method is not a valid token");
    if (req->n_headers > 0 && req->headers == NULL)
        return kl_err_set(err, KL_ERR_INVALID, "sigv4: n_headers is %zu but headers is NULL",
                          req->n_headers);
    if (req->n_headers > KL_SIGV4_MAX_HEADERS)
        return kl_err_set(err, KL_ERR_INVALID, "sigv4: %zu headers to sign, at most %d",
                          req->n_headers, KL_SIGV4_MAX_HEADERS);
    if (req->payload == NULL && req->payload_len > 0)
        return kl_err_set(err, KL_ERR_INVALID, "sigv4: payload_len is %zu but payload is NULL",
                          req->payload_len);
    if (!valid_scope_part(p->region))
        return kl_err_set(err, KL_ERR_INVALID, "sigv4: the region is missing or malformed");
    if (!valid_scope_part(p->service))
        return kl_err_set(err, KL_ERR_INVALID, "sigv4: the service is missing or malformed");
    if (p->creds == NULL || p->creds->access_key_id == NULL || p->creds->access_key_id[0] == '\0' ||
        p->creds->secret_access_key == NULL || p->creds->secret_access_key[0] == '\0')
        return kl_err_set(err, KL_ERR_INVALID, "sigv4: no access key id or no secret key");
    n = strnlen(p->creds->access_key_id, MAX_NAME_LEN + 1);
    if (n > MAX_NAME_LEN)
        return limit_error(err, "the access key id", MAX_NAME_LEN);
    for (size_t i = 0; i < n; i++)
        if (!is_unreserved((unsigned char)p->creds->access_key_id[i]))
            return kl_err_set(err, KL_ERR_INVALID,
                              "sigv4: the access key id has a character outside A-Za-z0-9-._~");
    if (strnlen(p->creds->secret_access_key, MAX_INPUT_LEN + 1) > MAX_INPUT_LEN)
        return limit_error(err, "the secret key", MAX_INPUT_LEN);
    return KL_OK;
}

/* Builds the canonical request into `c` (initialised by the caller). */
static int build_canonical(const struct kl_sigv4_request *req, const struct kl_sigv4_params *p,
                           struct canonical *c, struct kl_err *err)
{
    struct canon_header hs[KL_SIGV4_MAX_HEADERS];
    char payload_hash[SHA256_HEX_LEN + 1];
    const char *amz_date = NULL;
    bool have_host = false, have_token = false;
    size_t n = req->n_headers;
    int rc;

    for (size_t i = 0; i < n; i++) {
        const struct kl_http_header *h = &req->headers[i];
        size_t k;

        rc = check_header(h, i, err);
        if (rc != KL_OK)
            return rc;
        for (k = 0; h->name[k] != '\0'; k++) {
            char ch = h->name[k];
            hs[i].name[k] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
        }
        hs[i].name[k] = '\0';
        hs[i].value = h->value;
        hs[i].order = i;
        if (strcmp(hs[i].name, "host") == 0) {
            if (have_host)
                return kl_err_set(err, KL_ERR_INVALID, "sigv4: more than one Host header");
            have_host = true;
        } else if (strcmp(hs[i].name, "x-amz-date") == 0) {
            if (amz_date != NULL)
                return kl_err_set(err, KL_ERR_INVALID, "sigv4: more than one X-Amz-Date header");
            amz_date = h->value;
        } else if (strcmp(hs[i].name, "x-amz-security-token") == 0) {
            have_token = true;
        } else if (strcmp(hs[i].name, "authorization") == 0) {
            return kl_err_set(err, KL_ERR_INVALID,
                              "sigv4: the request already has an Authorization header");
        }
    }
    if (!have_host)
        return kl_err_set(err, KL_ERR_INVALID, "sigv4: the request has no Host header");
    if (amz_date == NULL)
        return kl_err_set(err, KL_ERR_INVALID, "sigv4: the request has no X-Amz-Date header");
    if (!copy_amz_date(amz_date, c->amz_date))
        return kl_err_set(err, KL_ERR_INVALID,
                          "sigv4: X-Amz-Date \"%.32s\" is not of the form YYYYMMDDTHHMMSSZ",
                          amz_date);
    if (p->creds->session_token != NULL && p->creds->session_token[0] != '\0' && !have_token)
        return kl_err_set(err, KL_ERR_INVALID,
                          "sigv4: the credentials carry a session token but the request has "
                          "no X-Amz-Security-Token header");

    qsort(hs, n, sizeof hs[0], compare_headers);

    rc = kl_buf_printf(&c->text, err, "%s\n", req->method);
    if (rc == KL_OK)
        rc = append_canonical_uri(&c->text, req->path, p->normalize_path, err);
    if (rc == KL_OK)
        rc = kl_buf_append(&c->text, "\n", 1, err);
    if (rc == KL_OK)
        rc = append_canonical_query(&c->text, req->query, err);
    if (rc == KL_OK)
        rc = kl_buf_append(&c->text, "\n", 1, err);
    /* Canonical headers: one line per name, same-name values joined by commas. */
    for (size_t i = 0; i < n && rc == KL_OK; i++) {
        bool same = i > 0 && strcmp(hs[i].name, hs[i - 1].name) == 0;
        if (same)
            rc = kl_buf_append(&c->text, ",", 1, err);
        else
            rc = kl_buf_printf(&c->text, err, "%s%s:", i > 0 ? "\n" : "", hs[i].name);
        if (rc == KL_OK)
            rc = append_trimmed(&c->text, hs[i].value, err);
    }
    if (rc == KL_OK)
        rc = kl_buf_append(&c->text, "\n\n", 2, err);
    c->signed_off = c->text.len;
    for (size_t i = 0; i < n && rc == KL_OK; i++) {
        if (i > 0 && strcmp(hs[i].name, hs[i - 1].name) == 0)
            continue;
        rc = kl_buf_printf(&c->text, err, "%s%s", i > 0 ? ";" : "", hs[i].name);
    }
    c->signed_len = c->text.len - c->signed_off;
    if (rc == KL_OK)
        rc = sha256_hex(req->payload, req->payload_len, payload_hash, err);
    if (rc == KL_OK)
        rc = kl_buf_printf(&c->text, err, "\n%s", payload_hash);
    if (rc == KL_ERR_LIMIT)
        return kl_err_set(err, KL_ERR_INVALID, "sigv4: the canonical request would exceed %d bytes",
                          MAX_CANONICAL);
    return rc;
}

static int canonical_run(const struct kl_sigv4_request *req, const struct kl_sigv4_params *p,
                         struct canonical *c, struct kl_err *err)
{
    int rc;

    kl_buf_init(&c->text, (size_t)MAX_CANONICAL);
    c->amz_date[0] = '\0';
    c->signed_off = c->signed_len = 0;
    rc = check_params(req, p, err);
    if (rc == KL_OK)
        rc = build_canonical(req, p, c, err);
    if (rc != KL_OK)
        kl_buf_free(&c->text);
    return rc;
}

/* "AWS4-HMAC-SHA256\n<date>\n<scope>\n<hex sha256 of canonical request>" */
static int build_string_to_sign(const struct canonical *c, const struct kl_sigv4_params *p,
                                struct kl_buf *sts, struct kl_err *err)
{
    char creq_hash[SHA256_HEX_LEN + 1];
    int rc = sha256_hex(c->text.data, c->text.len, creq_hash, err);

    if (rc != KL_OK)
        return rc;
    return kl_buf_printf(sts, err, ALGORITHM "\n%s\n%.8s/%s/%s/aws4_request\n%s", c->amz_date,
                         c->amz_date, p->region, p->service, creq_hash);
}

/* HMAC chain: "AWS4"+secret -> date -> region -> service -> "aws4_request".
 * Every intermediate key is wiped before returning. */
static int derive_signing_key(const struct kl_sigv4_params *p, const char *amz_date,
                              unsigned char key[SHA256_LEN], struct kl_err *err)
{
    struct kl_buf k_secret;
    unsigned char k_date[SHA256_LEN], k_region[SHA256_LEN], k_service[SHA256_LEN];
    int rc;

    kl_buf_init(&k_secret, MAX_INPUT_LEN + 8);
    rc = kl_buf_append_str(&k_secret, "AWS4", err);
    if (rc == KL_OK)
        rc = kl_buf_append_str(&k_secret, p->creds->secret_access_key, err);
    if (rc == KL_OK)
        rc = hmac_sha256((const unsigned char *)k_secret.data, k_secret.len, amz_date, 8, k_date,
                         err);
    if (rc == KL_OK)
        rc = hmac_sha256(k_date, SHA256_LEN, p->region, strlen(p->region), k_region, err);
    if (rc == KL_OK)
        rc = hmac_sha256(k_region, SHA256_LEN, p->service, strlen(p->service), k_service, err);
    if (rc == KL_OK)
        rc = hmac_sha256(k_service, SHA256_LEN, "aws4_request", 12, key, err);

    kl_buf_free_secure(&k_secret);
    OPENSSL_cleanse(k_date, sizeof k_date);
    OPENSSL_cleanse(k_region, sizeof k_region);
    OPENSSL_cleanse(k_service, sizeof k_service);
    if (rc != KL_OK)
        OPENSSL_cleanse(key, SHA256_LEN);
    return rc;
}

int kl_sigv4_canonical_request(const struct kl_sigv4_request *req, const struct kl_sigv4_params *p,
                               char **out, struct kl_err *err)
{
    struct canonical c;
    int rc = canonical_run(req, p, &c, err);

    if (rc != KL_OK)
        return rc;
    *out = kl_buf_steal(&c.text, NULL);
    return KL_OK;
}

int kl_sigv4_string_to_sign(const struct kl_sigv4_request *req, const struct kl_sigv4_params *p,
                            char **out, struct kl_err *err)
{
    struct canonical c;
    struct kl_buf sts;
    int rc;

    kl_buf_init(&sts, 4096);
    rc = canonical_run(req, p, &c, err);
    if (rc != KL_OK)
        goto cleanup;
    rc = build_string_to_sign(&c, p, &sts, err);
    kl_buf_free(&c.text);
    if (rc != KL_OK)
        goto cleanup;
    *out = kl_buf_steal(&sts, NULL);

cleanup:
    kl_buf_free(&sts);
    return rc;
}

int kl_sigv4_authorization(const struct kl_sigv4_request *req, const struct kl_sigv4_params *p,
                           char *authorization, size_t cap, struct kl_err *err)
{
    struct canonical c;
    struct kl_buf sts;
    unsigned char key[SHA256_LEN], sig[SHA256_LEN];
    char sig_hex[SHA256_HEX_LEN + 1];
    bool have_canonical = false;
    int rc, n;

    kl_buf_init(&sts, 4096);
    if (authorization == NULL || cap == 0) {
        rc = kl_err_set(err, KL_ERR_INVALID, "sigv4: no room for the Authorization value");
        goto cleanup;
    }
    rc = canonical_run(req, p, &c, err);
    if (rc != KL_OK)
        goto cleanup;
    have_canonical = true;
    rc = build_string_to_sign(&c, p, &sts, err);
    if (rc != KL_OK)
        goto cleanup;
    rc = derive_signing_key(p, c.amz_date, key, err);
    if (rc != KL_OK)
        goto cleanup;
    rc = hmac_sha256(key, SHA256_LEN, sts.data, sts.len, sig, err);
    OPENSSL_cleanse(key, sizeof key);
    if (rc != KL_OK)
        goto cleanup;
    to_hex(sig, SHA256_LEN, sig_hex);

    n = snprintf(NULL, 0,
                 ALGORITHM " Credential=%s/%.8s/%s/%s/aws4_request, SignedHeaders=%.*s, "
                           "Signature=%s",
                 p->creds->access_key_id, c.amz_date, p->region, p->service, (int)c.signed_len,
                 c.text.data + c.signed_off, sig_hex);
    if (n < 0 || (size_t)n >= cap) {
        rc =
            kl_err_set(err, KL_ERR_LIMIT,
                       "sigv4: the Authorization value needs %d bytes, the buffer has %zu", n, cap);
        goto cleanup;
    }
    snprintf(authorization, cap,
             ALGORITHM " Credential=%s/%.8s/%s/%s/aws4_request, SignedHeaders=%.*s, Signature=%s",
             p->creds->access_key_id, c.amz_date, p->region, p->service, (int)c.signed_len,
             c.text.data + c.signed_off, sig_hex);

cleanup:
    if (have_canonical)
        kl_buf_free(&c.text);
    kl_buf_free(&sts);
    return rc;
}

/* ---- kl_sigv4_sign_headers: URL parsing and the added headers ---- */

struct parsed_url {
    bool https;
    char host[256]; /* Host header value: host, plus ":port" when not the default */
    char path[MAX_URL_LEN + 1];
    const char *query; /* points into the URL; NULL without '?' */
    size_t query_len;
};

static bool url_char_ok(unsigned char c)
{
    /* Printable ASCII only: anything else must be percent-encoded already. */
    return c > 0x20 && c < 0x7f;
}

static int parse_url(const char *url, struct parsed_url *u, struct kl_err *err)
{
    const char *p, *auth, *auth_end, *host_end, *path_start, *end;
    size_t n, host_len, port_len = 0;
    long port = 0;

    u->query = NULL;
    u->query_len = 0;
    if (url == NULL)
        return kl_err_set(err, KL_ERR_INVALID, "sigv4: no URL");
    n = strnlen(url, MAX_URL_LEN + 1);
    if (n > MAX_URL_LEN)
        return limit_error(err, "the URL", MAX_URL_LEN);
    for (size_t i = 0; i < n; i++)
        if (!url_char_ok((unsigned char)url[i]))
            return kl_err_set(err, KL_ERR_INVALID,
                              "sigv4: bad URL: byte %zu is a space, a control character or "
                              "not ASCII",
                              i);
    if (strncasecmp(url, "https://", 8) == 0) {
        u->https = true;
        auth = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        u->https = false;
        auth = url + 7;
    } else {
        return kl_err_set(err, KL_ERR_INVALID,
                          "sigv4: bad URL \"%.64s\": the scheme must be "
                          "http or https",
                          url);
    }
    end = url + n;
    /* The fragment never goes on the wire. */
    for (p = auth; p < end && *p != '#'; p++)
        ;
    end = p;
    for (auth_end = auth; auth_end < end && *auth_end != '/' && *auth_end != '?'; auth_end++)
        ;
    if (memchr(auth, '@', (size_t)(auth_end - auth)) != NULL)
        return kl_err_set(err, KL_ERR_INVALID,
                          "sigv4: bad URL: user information in the URL is not supported");
    if (auth_end == auth)
        return kl_err_set(err, KL_ERR_INVALID, "sigv4: bad URL \"%.64s\": no host", url);

    if (*auth == '[') {
        /* IPv6 literal: keep the brackets, they belong in the Host header too. */
        host_end = memchr(auth, ']', (size_t)(auth_end - auth));
        if (host_end == NULL || host_end == auth + 1)
            return kl_err_set(err, KL_ERR_INVALID, "sigv4: bad URL: unterminated IPv6 address");
        for (p = auth + 1; p < host_end; p++)
            if (hex_value((unsigned char)*p) < 0 && *p != ':' && *p != '.')
                return kl_err_set(err, KL_ERR_INVALID, "sigv4: bad URL: malformed IPv6 address");
        host_end++;
    } else {
        for (host_end = auth; host_end < auth_end && *host_end != ':'; host_end++)
            if (!(is_unreserved((unsigned char)*host_end)))
                return kl_err_set(err, KL_ERR_INVALID,
                                  "sigv4: bad URL: the host has a character other than "
                                  "A-Za-z0-9-._~");
        if (host_end == auth)
            return kl_err_set(err, KL_ERR_INVALID, "sigv4: bad URL \"%.64s\": no host", url);
    }
    host_len = (size_t)(host_end - auth);
    if (host_end < auth_end) {
        if (*host_end != ':')
            return kl_err_set(err, KL_ERR_INVALID, "sigv4: bad URL: junk after the host");
        port_len = (size_t)(auth_end - host_end - 1);
        if (port_len == 0 || port_len > 5)
            return kl_err_set(err, KL_ERR_INVALID, "sigv4: bad URL: malformed port");
        for (p = host_end + 1; p < auth_end; p++) {
            if (*p < '0' || *p > '9')
                return kl_err_set(err, KL_ERR_INVALID, "sigv4: bad URL: malformed port");
            port = port * 10 + (*p - '0');
        }
        if (port < 1 || port > 65535)
            return kl_err_set(err, KL_ERR_INVALID, "sigv4: bad URL: port %ld out of range", port);
    }
    if ((port == 443 && u->https) || (port == 80 && !u->https))
        port = 0;
    if (host_len + (port ? 6 : 0) >= sizeof u->host)
        return kl_err_set(err, KL_ERR_INVALID, "sigv4: bad URL: the host is too long");
    memcpy(u->host, auth, host_len);
    if (port)
        snprintf(u->host + host_len, sizeof u->host - host_len, ":%ld", port);
    else
        u->host[host_len] = '\0';

    path_start = auth_end;
    for (p = path_start; p < end && *p != '?'; p++)
        ;
    if (p == path_start) {
        strcpy(u->path, "/");
    } else {
        memcpy(u->path, path_start, (size_t)(p - path_start));
        u->path[p - path_start] = '\0';
    }
    if (p < end) {
        u->query = p + 1;
        u->query_len = (size_t)(end - p - 1);
    } else {
        u->query = NULL;
        u->query_len = 0;
    }
    return KL_OK;
}

static int format_amz_date(int64_t time_s, char out[AMZ_DATE_LEN + 1], struct kl_err *err)
{
    struct tm tm;
    time_t t;

    /* 9999-12-31T23:59:59Z: beyond it the format has no room. */
    if (time_s < 0 || time_s > 253402300799LL)
        return kl_err_set(err, KL_ERR_INVALID, "sigv4: time %lld is out of range",
                          (long long)time_s);
    t = (time_t)time_s;
    if (gmtime_r(&t, &tm) == NULL)
        return kl_err_set(err, KL_ERR_INVALID, "sigv4: time %lld cannot be converted",
                          (long long)time_s);
    if (strftime(out, AMZ_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm) != AMZ_DATE_LEN)
        return kl_err_set(err, KL_ERR_INTERNAL, "sigv4: X-Amz-Date formatting failed");
    return KL_OK;
}

int kl_sigv4_sign_headers(const char *method, const char *url, const struct kl_http_header *headers,
                          size_t n_headers, const void *payload, size_t payload_len,
                          const struct kl_sigv4_params *p, int64_t time_s,
                          struct kl_sigv4_signed *out, struct kl_err *err)
{
    struct parsed_url *u = NULL;
    struct kl_http_header all[KL_SIGV4_MAX_HEADERS];
    struct kl_sigv4_request req;
    char amz_date[AMZ_DATE_LEN + 1];
    char authorization[sizeof out->authorization];
    char *query = NULL;
    const char *token = NULL;
    size_t n_all, added;
    int rc;

    if (out == NULL || p == NULL || p->creds == NULL) {
        rc = kl_err_set(err, KL_ERR_INVALID, "sigv4: no output, parameters or credentials");
        goto cleanup;
    }
    if (n_headers > 0 && headers == NULL) {
        rc = kl_err_set(err, KL_ERR_INVALID, "sigv4: n_headers is %zu but headers is NULL",
                        n_headers);
        goto cleanup;
    }
    if (p->creds->session_token != NULL && p->creds->session_token[0] != '\0')
        token = p->creds->session_token;
    /* Host, X-Amz-Date, the token and Authorization join the caller's headers. */
    added = token != NULL ? 4 : 3;
    if (n_headers > KL_SIGV4_MAX_HEADERS - added) {
        rc = kl_err_set(err, KL_ERR_INVALID,
                        "sigv4: %zu headers given, at most %zu fit with the "
                        "%zu the signer adds",
                        n_headers, (size_t)KL_SIGV4_MAX_HEADERS - added, added);
        goto cleanup;
    }
    for (size_t i = 0; i < n_headers; i++) {
        static const char *const reserved[] = {"Host", "X-Amz-Date", "X-Amz-Security-Token",
                                               "Authorization"};
        if (headers[i].name == NULL)
            continue; /* reported by the signer with its position */
        for (size_t r = 0; r < sizeof reserved / sizeof reserved[0]; r++) {
            if (strcasecmp(headers[i].name, reserved[r]) == 0) {
                rc = kl_err_set(err, KL_ERR_INVALID,
                                "sigv4: the caller passed a %s header; the signer sets it",
                                reserved[r]);
                goto cleanup;
            }
        }
    }

    u = malloc(sizeof *u);
    if (u == NULL) {
        rc = kl_err_set(err, KL_ERR_NOMEM, "sigv4: out of memory");
        goto cleanup;
    }
    rc = parse_url(url, u, err);
    if (rc != KL_OK)
        goto cleanup;
    if (u->query != NULL) {
        query = malloc(u->query_len + 1);
        if (query == NULL) {
            rc = kl_err_set(err, KL_ERR_NOMEM, "sigv4: out of memory");
            goto cleanup;
        }
        memcpy(query, u->query, u->query_len);
        query[u->query_len] = '\0';
    }
    rc = format_amz_date(time_s, amz_date, err);
    if (rc != KL_OK)
        goto cleanup;

    n_all = 0;
    for (size_t i = 0; i < n_headers; i++)
        all[n_all++] = headers[i];
    all[n_all].name = "Host";
    all[n_all++].value = u->host;
    all[n_all].name = "X-Amz-Date";
    all[n_all++].value = amz_date;
    if (token != NULL) {
        all[n_all].name = "X-Amz-Security-Token";
        all[n_all++].value = token;
    }

    req.method = method;
    req.path = u->path;
    req.query = query;
    req.headers = all;
    req.n_headers = n_all;
    req.payload = payload;
    req.payload_len = payload_len;
    rc = kl_sigv4_authorization(&req, p, authorization, sizeof authorization, err);
    if (rc == KL_ERR_LIMIT)
        rc = kl_err_set(err, KL_ERR_INVALID,
                        "sigv4: the Authorization value does not fit in %zu bytes "
                        "(too many or too long header names)",
                        sizeof out->authorization);
    if (rc != KL_OK)
        goto cleanup;

    /* Nothing can fail from here on: `out` is written only on success. */
    memcpy(out->host, u->host, sizeof out->host);
    memcpy(out->amz_date, amz_date, sizeof out->amz_date);
    memcpy(out->authorization, authorization, sizeof out->authorization);
    for (size_t i = 0; i < n_headers; i++)
        out->headers[i] = headers[i];
    n_all = n_headers;
    out->headers[n_all].name = "Host";
    out->headers[n_all++].value = out->host;
    out->headers[n_all].name = "X-Amz-Date";
    out->headers[n_all++].value = out->amz_date;
    if (token != NULL) {
        out->headers[n_all].name = "X-Amz-Security-Token";
        out->headers[n_all++].value = token;
    }
    out->headers[n_all].name = "Authorization";
    out->headers[n_all++].value = out->authorization;
    out->n_headers = n_all;

cleanup:
    free(u);
    free(query);
    return rc;
}
