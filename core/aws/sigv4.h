/*
 * AWS Signature Version 4 (header signing) with OpenSSL. Pure computation:
 * no I/O, no clock (the caller passes the time), no credential lookup.
 */
#ifndef KL_AWS_SIGV4_H
#define KL_AWS_SIGV4_H

#include <stddef.h>
#include <stdint.h>

#include "core/aws/http.h"

struct kl_err;
struct kl_aws_creds;

#define KL_SIGV4_MAX_HEADERS 32

struct kl_sigv4_request {
    const char *method;
    /* Path and query exactly as they go on the wire (already percent-encoded);
     * path "" is treated as "/"; query without '?' or NULL. Query names and
     * values are percent-decoded, then encoded the AWS way and sorted; '+' is
     * a literal plus, not a space. */
    const char *path;
    const char *query;
    /* Every header to sign, Host and X-Amz-Date included; names in any case. */
    const struct kl_http_header *headers;
    size_t n_headers;
    const void *payload;
    size_t payload_len;
};

struct kl_sigv4_params {
    const char *region;
    const char *service;
    const struct kl_aws_creds *creds;
    /* Normalise the path (remove dot segments, collapse slashes) and encode it a
     * second time, as every service but S3 expects. When 0 (S3) the path is
     * signed as given, only bytes that are not allowed unencoded escaped. */
    int normalize_path;
};

/* Low level: computes the Authorization header value for a request whose
 * headers already carry X-Amz-Date (and X-Amz-Security-Token when the
 * credentials have a session token). `authorization` receives the value.
 * This function and the ones below fail with KL_ERR_INVALID for malformed or
 * oversized input (no Host or X-Amz-Date, more than KL_SIGV4_MAX_HEADERS
 * headers, a line break in a value, ...) and then write nothing; this one
 * also fails with KL_ERR_LIMIT when the value does not fit in `cap` bytes. */
int kl_sigv4_authorization(const struct kl_sigv4_request *req, const struct kl_sigv4_params *p,
                           char *authorization, size_t cap, struct kl_err *err);

/* The intermediate strings, for tests and debugging. `*out` is malloc'ed; the caller frees. */
int kl_sigv4_canonical_request(const struct kl_sigv4_request *req, const struct kl_sigv4_params *p,
                               char **out, struct kl_err *err);
int kl_sigv4_string_to_sign(const struct kl_sigv4_request *req, const struct kl_sigv4_params *p,
                            char **out, struct kl_err *err);

/* The headers of a signed request, ready for kl_http_send. */
struct kl_sigv4_signed {
    struct kl_http_header headers[KL_SIGV4_MAX_HEADERS];
    size_t n_headers;
    /* storage the headers point into */
    char host[256];
    char amz_date[17];
    char authorization[1024];
};

/* High level: signs a request to `url` at `time_s` (epoch seconds). Adds Host
 * (from the URL, with the port when it is not the scheme's default),
 * X-Amz-Date, X-Amz-Security-Token when the credentials carry one, and
 * Authorization to `headers`. The output borrows the input header strings and
 * the credentials' session token: keep them alive while `out` is used.
 * `headers` must not contain Host, X-Amz-Date, X-Amz-Security-Token or
 * Authorization, and at most KL_SIGV4_MAX_HEADERS - 4 of them fit (- 3
 * without a token). The URL is http or https, ASCII without spaces (already
 * percent-encoded), without user information; a fragment is ignored.
 * `out` is written only on success. */
int kl_sigv4_sign_headers(const char *method, const char *url, const struct kl_http_header *headers,
                          size_t n_headers, const void *payload, size_t payload_len,
                          const struct kl_sigv4_params *p, int64_t time_s,
                          struct kl_sigv4_signed *out, struct kl_err *err);

#endif
