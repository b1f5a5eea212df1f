/*
 * The REST layer's view of one HTTP exchange: a request already routed
 * (path parameters, query arguments, body, header lookup) and the response a
 * handler fills in. No libmicrohttpd here: server/http.c translates, and unit
 * tests build requests by hand. The route table lives in routes.c.
 */
#ifndef KL_API_API_H
#define KL_API_API_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct cJSON;
struct kl_buf;
struct kl_err;
struct kl_service;

#define KL_API_MAX_PARAMS 3       /* path parameters of the longest pattern */
#define KL_API_MAX_QUERY 16       /* query arguments kept; more is a 400 */
#define KL_API_MAX_RESP_HEADERS 6 /* headers a handler may add */
#define KL_API_REQUEST_ID_MAX 129 /* 1..128 characters */
#define KL_API_JOB_ID_LEN 26      /* ^[a-z0-9]{26}$ */
#define KL_API_RETRY_AFTER_S_DEFAULT 5

struct kl_api_kv {
    const char *key;
    const char *value; /* "" for `?flag` without '=' */
};

/* Everything is borrowed from the transport and valid during the handler call. */
struct kl_api_req {
    const char *method;
    const char *path; /* decoded, without the query string */
    const char *request_id;
    const char *params[KL_API_MAX_PARAMS]; /* path parameters in pattern order */
    size_t n_params;
    struct kl_api_kv query[KL_API_MAX_QUERY];
    size_t n_query;
    bool query_overflow; /* more than KL_API_MAX_QUERY arguments arrived */
    const char *body;    /* NULL or body_len bytes (not NUL-terminated in general) */
    size_t body_len;
    /* Case-insensitive header lookup; NULL when absent. May be NULL itself. */
    const char *(*header)(void *header_arg, const char *name);
    void *header_arg;
};

struct kl_api_header {
    char name[32];
    char value[192];
};

struct kl_api_resp {
    int status;
    const char *content_type; /* a static string; NULL when there is no body */
    char *body;               /* malloc'ed and owned, or NULL */
    const char *static_body;  /* a body that outlives every response (not freed) */
    size_t body_len;
    struct kl_api_header headers[KL_API_MAX_RESP_HEADERS];
    size_t n_headers;
    /* What went wrong behind a 5xx, for the access log line; never sent. */
    char error[256];
};

/* What the handlers work with. */
struct kl_api_ctx {
    struct kl_service *svc;
    /* Appends the process's own metrics (HTTP histogram, process_*) to
     * /metrics; may be NULL. */
    int (*server_metrics)(void *arg, struct kl_buf *out, struct kl_err *err);
    void *server_metrics_arg;
    /* Set once shutdown began: /readyz answers 503, waits end. May be NULL. */
    const atomic_bool *stopping;
    /* GET /jobs/{id}?wait= holds an HTTP thread while it waits: at most
     * `max_waits` requests wait at once, counted in `*waits`; the others are
     * answered at once. NULL: no request waits. */
    atomic_int *waits;
    int max_waits;
};

/* A handler always leaves a complete response in `resp` (a problem on failure). */
typedef void (*kl_api_handler)(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                               struct kl_api_resp *resp);

void kl_api_resp_init(struct kl_api_resp *r);
/* Frees an owned body; the response can then be reused after kl_api_resp_init. */
void kl_api_resp_free(struct kl_api_resp *r);

/* Adds a response header (copied). KL_ERR_LIMIT when the table is full or a
 * string does not fit; nothing is added then. */
int kl_api_resp_header(struct kl_api_resp *r, const char *name, const char *value);

/* Serialises `doc` (not consumed) as the application/json body, with a
 * trailing newline. On allocation failure the response becomes a 500. */
void kl_api_resp_json(struct kl_api_resp *r, int status, const struct cJSON *doc);

/* A static body (not copied, never freed) with its content type. */
void kl_api_resp_static(struct kl_api_resp *r, int status, const char *content_type,
                        const char *body, size_t len);

/* Takes a malloc'ed body (freed with the response). */
void kl_api_resp_take(struct kl_api_resp *r, int status, const char *content_type, char *body,
                      size_t len);

/* The last resort when even building a problem failed: a fixed 500 problem
 * body that needs no allocation. `why` goes to the access log. */
void kl_api_resp_internal(struct kl_api_resp *r, const char *why);

/* A request header through the request's lookup; NULL when absent. */
const char *kl_api_req_header(const struct kl_api_req *req, const char *name);

/* The query argument `key`, NULL when absent. */
const char *kl_api_req_query(const struct kl_api_req *req, const char *key);

/* ^[a-z0-9]{26}$ */
bool kl_api_job_id_valid(const char *s);

/* X-Request-Id values we take from clients: 1..128 of [A-Za-z0-9._:/+=-]. */
bool kl_api_request_id_valid(const char *s);

#endif
