/*
 * The HTTP client interface core code uses to reach AWS and metadata
 * endpoints. One request in, one buffered response out; retries belong to
 * the caller. The libcurl implementation lives in http_curl.c; tests plug
 * in fakes through the same ops table.
 */
#ifndef KL_AWS_HTTP_H
#define KL_AWS_HTTP_H

#include <stddef.h>

struct kl_err;

struct kl_http_header {
    const char *name;
    const char *value;
};

struct kl_http_request {
    const char *method; /* "GET", "POST", "PUT" */
    const char *url;
    const struct kl_http_header *headers;
    size_t n_headers;
    const void *body; /* may be NULL when body_len is 0 */
    size_t body_len;
    long connect_timeout_ms; /* 0: the transport's default */
    long timeout_ms;         /* whole request; 0: the transport's default */
    size_t max_response;     /* response body limit; 0: the transport's default */
    /* The headers or the answer carry secrets (credential endpoints): every
     * copy the transport makes is wiped, and so is the response body when it
     * is freed. */
    int sensitive;
    /* When set, a 2xx body goes to `sink` piece by piece as it arrives
     * instead of into the response (whose body stays empty); a sink that
     * returns an error ends the transfer with it. Other statuses are
     * buffered as usual. A transport may ignore this and buffer: callers
     * feed a buffered 2xx body to the sink themselves. */
    int (*sink)(void *ctx, const char *data, size_t n, struct kl_err *err);
    void *sink_ctx;
};

struct kl_http_response {
    long status;
    char *body; /* NUL-terminated; owned by the response, freed by kl_http_response_free */
    size_t body_len;
    char content_type[128];
    char request_id[128]; /* x-amzn-RequestId or x-amz-request-id, when sent */
    int sensitive;        /* copied from the request: the body is wiped when freed */
};

struct kl_http_ops {
    /* Sends the request and fills `resp` on any HTTP status. Fails with
     * KL_ERR_UNAVAILABLE for connection errors and timeouts, KL_ERR_LIMIT when
     * the body exceeds max_response. `resp` is untouched on failure. */
    int (*send)(void *impl, const struct kl_http_request *req, struct kl_http_response *resp,
                struct kl_err *err);
    void (*destroy)(void *impl);
};

struct kl_http {
    const struct kl_http_ops *ops;
    void *impl;
};

void kl_http_response_init(struct kl_http_response *resp);
void kl_http_response_free(struct kl_http_response *resp);

static inline int kl_http_send(struct kl_http *h, const struct kl_http_request *req,
                               struct kl_http_response *resp, struct kl_err *err)
{
    return h->ops->send(h->impl, req, resp, err);
}

/* Destroys the transport; NULL is a no-op. */
void kl_http_destroy(struct kl_http *h);

struct kl_http_curl_options {
    long connect_timeout_ms; /* default 3000 */
    long timeout_ms;         /* default 30000 */
    size_t max_response;     /* default 32 MiB */
    const char *ca_file;     /* optional CA bundle; NULL: the system store */
};

/* The libcurl transport. Thread-safe: each thread gets its own easy handle,
 * kept alive between requests for connection reuse. `opts` may be NULL.
 * Call kl_http_global_init() once before creating threads. */
struct kl_http *kl_http_curl_create(const struct kl_http_curl_options *opts, struct kl_err *err);

/* curl_global_init; idempotent and thread-safe. Returns KL_OK or an error code. */
int kl_http_global_init(struct kl_err *err);

#endif
