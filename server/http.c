/*
 * The libmicrohttpd side of the REST server (http.h). A request goes through
 * three calls of the access handler: the first (headers known) decides the
 * request id, route, auth and size limits; the middle ones collect the body
 * into a bounded buffer; the last dispatches to api/ and queues the answer.
 * Errors found on the first call are answered at once when a body is on its
 * way (so it is never read), else on the last call (keeping the connection).
 * The access log line and the histogram are written when libmicrohttpd
 * reports the request complete.
 */
#include "server/http.h"
#include "server/logline.h"
#include "server/metrics.h"
#include "server/router.h"
#include "api/api.h"
#include "api/problem.h"
#include "api/routes.h"
#include "core/util/buf.h"
#include "core/util/err.h"
#include "core/util/rand.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DIGEST_LEN 32
#define LISTEN_BACKLOG 1024
/* A body past the limit is read and dropped up to this much more, so the
 * 413 can still be sent; past it the connection is closed. */
#define DISCARD_MAX ((uint64_t)16 << 20)
#define WWW_AUTHENTICATE "Bearer realm=\"kinesis-loader\""
#define WWW_AUTHENTICATE_INVALID "Bearer realm=\"kinesis-loader\", error=\"invalid_token\""

struct kl_httpd {
    struct MHD_Daemon *daemon;
    MHD_socket listen_fd; /* ours until quiesced or handed to the daemon */
    bool quiesced;
    uint16_t port;
    size_t max_body;
    bool auth;
    unsigned char token_digest[DIGEST_LEN];
    FILE *log;
    atomic_bool stopping;
    atomic_int waits; /* requests in GET /jobs/{id}?wait= */
    struct kl_api_ctx api;
    struct kl_http_metrics metrics;
};

/* One request, from the request line to the completion callback. */
struct request {
    struct timespec start;
    bool begun;
    bool body_pending; /* the client announced a body */
    bool too_large;
    bool close; /* answer with Connection: close */
    bool have_early;
    bool nul_in_uri;            /* the raw request target holds %00 */
    enum kl_problem_kind early; /* answered on the last call */
    char early_detail[160];
    enum kl_router_result routed;
    struct kl_router_match match;
    struct kl_buf body;
    uint64_t received;
    int status; /* 0 until queued */
    size_t bytes;
    char method[16];
    char path[256];
    char request_id[KL_API_REQUEST_ID_MAX];
    char error[256];
};

static int64_t elapsed_us(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(now.tv_sec - since->tv_sec) * 1000000 + (now.tv_nsec - since->tv_nsec) / 1000;
}

static int sha256(const void *data, size_t len, unsigned char out[DIGEST_LEN])
{
    unsigned int n = 0;
    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != DIGEST_LEN)
        return KL_ERR_INTERNAL;
    return KL_OK;
}

static void new_request_id(char out[KL_API_REQUEST_ID_MAX])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[16];

    if (RAND_bytes(raw, sizeof raw) != 1) {
        uint64_t a = kl_rand_u64(), b = kl_rand_u64();
        memcpy(raw, &a, 8);
        memcpy(raw + 8, &b, 8);
    }
    for (size_t i = 0; i < sizeof raw; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * sizeof raw] = '\0';
}

static void copy_cut(char *dst, size_t cap, const char *src)
{
    size_t n = src != NULL ? strnlen(src, cap - 1) : 0;
    if (n > 0)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Client text for the log: cut, and bytes outside printable ASCII as '?'. */
static void copy_printable(char *dst, size_t cap, const char *src)
{
    size_t i = 0;
    for (; src != NULL && src[i] != '\0' && i + 1 < cap; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    dst[i] = '\0';
}

static const char *header(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

static const char *header_cb(void *arg, const char *name)
{
    return header(arg, name);
}

/* ---- answering ---- */

/* Queues `resp` (its body handed over to libmicrohttpd). */
static enum MHD_Result queue(struct request *rq, struct MHD_Connection *conn,
                             struct kl_api_resp *resp)
{
    struct MHD_Response *r;
    enum MHD_Result ret;

    if (resp->body != NULL) {
        r = MHD_create_response_from_buffer(resp->body_len, resp->body, MHD_RESPMEM_MUST_FREE);
        if (r != NULL)
            resp->body = NULL; /* libmicrohttpd frees it now */
    } else {
        r = MHD_create_response_from_buffer(
            resp->body_len, (void *)(resp->static_body != NULL ? resp->static_body : ""),
            MHD_RESPMEM_PERSISTENT);
    }
    if (r == NULL) {
        copy_cut(rq->error, sizeof rq->error, "out of memory creating a response");
        return MHD_NO;
    }
    ret = MHD_add_response_header(r, "X-Request-Id", rq->request_id);
    if (ret == MHD_YES && resp->content_type != NULL)
        ret = MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type);
    for (size_t i = 0; ret == MHD_YES && i < resp->n_headers; i++)
        ret = MHD_add_response_header(r, resp->headers[i].name, resp->headers[i].value);
    if (ret == MHD_YES && rq->close)
        ret = MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    if (ret == MHD_YES)
        ret = MHD_queue_response(conn, (unsigned int)resp->status, r);
    MHD_destroy_response(r);
    if (ret == MHD_YES) {
        rq->status = resp->status;
        rq->bytes = resp->body_len;
        if (resp->error[0] != '\0')
            copy_cut(rq->error, sizeof rq->error, resp->error);
    } else {
        copy_cut(rq->error, sizeof rq->error, "libmicrohttpd refused the response");
    }
    return ret;
}

static enum MHD_Result answer_problem(struct request *rq, struct MHD_Connection *conn,
                                      enum kl_problem_kind kind, const char *detail)
{
    struct kl_api_req req = {0};
    struct kl_api_resp resp;
    enum MHD_Result ret;
    bool invalid_token = false;

    req.method = rq->method;
    req.path = rq->path;
    req.request_id = rq->request_id;
    kl_api_resp_init(&resp);
    kl_problem_respond(&resp, &req, kl_problem_for_kind(kind), detail, NULL, NULL);
    switch (kind) {
    case KL_PROBLEM_UNAUTHORIZED:
        invalid_token = header(conn, MHD_HTTP_HEADER_AUTHORIZATION) != NULL;
        (void)kl_api_resp_header(&resp, "WWW-Authenticate",
                                 invalid_token ? WWW_AUTHENTICATE_INVALID : WWW_AUTHENTICATE);
        break;
    case KL_PROBLEM_METHOD_NOT_ALLOWED:
        (void)kl_api_resp_header(&resp, "Allow", rq->match.allow);
        break;
    default:
        break;
    }
    ret = queue(rq, conn, &resp);
    kl_api_resp_free(&resp);
    return ret;
}

/* ---- the three phases ---- */

static bool authorized(const struct kl_httpd *h, struct MHD_Connection *conn)
{
    const char *auth = header(conn, MHD_HTTP_HEADER_AUTHORIZATION);
    unsigned char digest[DIGEST_LEN];
    const char *token;

    if (auth == NULL || strncasecmp(auth, "Bearer", 6) != 0 || (auth[6] != ' ' && auth[6] != '\t'))
        return false;
    token = auth + 7;
    while (*token == ' ' || *token == '\t')
        token++;
    /* Digests of equal length, compared in constant time: neither the
     * token's length nor its prefix leaks through timing. */
    if (sha256(token, strlen(token), digest) != KL_OK)
        return false;
    return CRYPTO_memcmp(digest, h->token_digest, DIGEST_LEN) == 0;
}

/* Content-Length, or -1 when absent or unreadable. */
static long long content_length(struct MHD_Connection *conn)
{
    const char *cl = header(conn, MHD_HTTP_HEADER_CONTENT_LENGTH);
    long long v = 0;

    if (cl == NULL || *cl == '\0')
        return -1;
    for (; *cl != '\0'; cl++) {
        if (*cl < '0' || *cl > '9' || v > (long long)1e15)
            return -1;
        v = v * 10 + (*cl - '0');
    }
    return v;
}

/* What the header block says about framing, and whether it is clean. */
struct header_scan {
    int content_lengths;
    int transfer_encodings;
    bool te_chunked_only; /* the one Transfer-Encoding is exactly "chunked" */
    bool nul;             /* a NUL byte inside a header name or value */
};

static bool is_chunked(const char *v, size_t n)
{
    while (n > 0 && (*v == ' ' || *v == '\t'))
        v++, n--;
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    return n == 7 && strncasecmp(v, "chunked", 7) == 0;
}

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    struct header_scan *sc = cls;

    (void)kind;
    /* A NUL inside a name or value: every C-string lookup would stop there.
     * libmicrohttpd 0.9.75 itself cuts header lines at a NUL and reports the
     * cut length, so this only fires with a library that keeps the real
     * length (1.0 refuses such requests itself); README.md says so. */
    if (key == NULL || strlen(key) != key_size || (value != NULL && strlen(value) != value_size))
        sc->nul = true;
    if (key != NULL && strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
        sc->content_lengths++;
    if (key != NULL && strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        sc->transfer_encodings++;
        sc->te_chunked_only = value != NULL && is_chunked(value, value_size);
    }
    return MHD_YES;
}

/* RFC 9112 §6.3: a message whose length is ambiguous is answered 400 and
 * the connection closed, since what follows its body cannot be trusted to
 * be the next request. libmicrohttpd takes the first of two Content-Lengths
 * and lets Transfer-Encoding win over Content-Length; either lets a proxy
 * and this server disagree on where a request ends. NULL when clean. */
static const char *bad_framing(struct MHD_Connection *conn)
{
    struct header_scan sc = {0, 0, false, false};

    (void)MHD_get_connection_values_n(conn, MHD_HEADER_KIND, scan_header, &sc);
    if (sc.nul)
        return "a header holds a NUL byte";
    if (sc.content_lengths > 1)
        return "more than one Content-Length header";
    if (sc.content_lengths > 0 && sc.transfer_encodings > 0)
        return "Content-Length and Transfer-Encoding together";
    if (sc.transfer_encodings > 1 || (sc.transfer_encodings == 1 && !sc.te_chunked_only))
        return "the only Transfer-Encoding accepted is chunked";
    return NULL;
}

static void early(struct request *rq, enum kl_problem_kind kind, const char *detail)
{
    rq->have_early = true;
    rq->early = kind;
    copy_cut(rq->early_detail, sizeof rq->early_detail, detail);
}

static enum MHD_Result begin(struct kl_httpd *h, struct request *rq, struct MHD_Connection *conn,
                             const char *url, const char *method)
{
    const char *rid = header(conn, "X-Request-Id");
    long long length = content_length(conn);
    const char *framing = bad_framing(conn);
    bool open, serve_while_stopping;

    /* In flight from here: a connection whose request never got this far
     * (headers not complete) does not hold up a stop (kl_httpd_drain). */
    rq->begun = true;
    atomic_fetch_add(&h->metrics.in_flight, 1);
    copy_printable(rq->method, sizeof rq->method, method);
    copy_printable(rq->path, sizeof rq->path, url);
    if (framing == NULL && rid != NULL && kl_api_request_id_valid(rid))
        copy_cut(rq->request_id, sizeof rq->request_id, rid);
    else
        new_request_id(rq->request_id);
    if (framing != NULL) {
        /* Answered now, before any body byte is read, and the connection
         * closed after the answer: no byte after it is read as a request. */
        rq->close = true;
        rq->have_early = true;
        rq->early = KL_PROBLEM_INVALID;
        return answer_problem(rq, conn, KL_PROBLEM_INVALID, framing);
    }
    rq->body_pending = length > 0 || header(conn, MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
    rq->routed = kl_router_match(kl_api_routes, kl_api_route_count, method, url, &rq->match);
    open = rq->routed == KL_ROUTER_MATCHED && (rq->match.route->flags & KL_ROUTE_OPEN) != 0;

    /* While stopping only the probes and /metrics are answered. */
    serve_while_stopping = open && strcmp(rq->match.route->pattern, "/openapi.yaml") != 0;
    if (atomic_load(&h->stopping) && !serve_while_stopping) {
        rq->close = true;
        early(rq, KL_PROBLEM_UNAVAILABLE, "the service is shutting down");
    } else if (h->auth && !open && !authorized(h, conn)) {
        early(rq, KL_PROBLEM_UNAUTHORIZED,
              header(conn, MHD_HTTP_HEADER_AUTHORIZATION) != NULL
                  ? "the bearer token is not valid"
                  : "this endpoint needs Authorization: Bearer <token>");
    } else if (rq->nul_in_uri) {
        early(rq, KL_PROBLEM_INVALID, "the request target holds %00");
    } else if (rq->routed == KL_ROUTER_NOT_FOUND) {
        early(rq, KL_PROBLEM_NOT_FOUND, "no such endpoint; see /openapi.yaml");
    } else if (rq->routed == KL_ROUTER_METHOD_NOT_ALLOWED) {
        early(rq, KL_PROBLEM_METHOD_NOT_ALLOWED, NULL);
    } else if (length > 0 && (unsigned long long)length > h->max_body) {
        char detail[96];
        snprintf(detail, sizeof detail, "the request body is larger than %zu bytes", h->max_body);
        early(rq, KL_PROBLEM_TOO_LARGE, detail);
    }
    if (rq->have_early && rq->body_pending) {
        /* Answer before the body: libmicrohttpd then skips it and closes. */
        rq->close = true;
        return answer_problem(rq, conn, rq->early, rq->early_detail);
    }
    return MHD_YES;
}

static enum MHD_Result take_body(struct kl_httpd *h, struct request *rq, const char *data,
                                 size_t *size)
{
    size_t n = *size;

    *size = 0;
    rq->received += n;
    if (rq->have_early || rq->too_large) {
        /* dropped; a client that keeps sending loses the connection */
        return rq->received > h->max_body + DISCARD_MAX ? MHD_NO : MHD_YES;
    }
    if (kl_buf_append(&rq->body, data, n, NULL) != KL_OK) {
        rq->too_large = true;
        rq->close = true;
        kl_buf_free(&rq->body);
    }
    return MHD_YES;
}

static enum MHD_Result collect_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    struct kl_api_req *req = cls;
    (void)kind;
    if (req->n_query >= KL_API_MAX_QUERY) {
        req->query_overflow = true;
        return MHD_NO;
    }
    req->query[req->n_query].key = key;
    req->query[req->n_query].value = value != NULL ? value : "";
    req->n_query++;
    return MHD_YES;
}

static enum MHD_Result finish(struct kl_httpd *h, struct request *rq, struct MHD_Connection *conn,
                              const char *url, const char *method)
{
    struct kl_api_req req = {0};
    struct kl_api_resp resp;
    enum MHD_Result ret;

    if (rq->have_early)
        return answer_problem(rq, conn, rq->early, rq->early_detail);
    if (rq->too_large) {
        char detail[96];
        snprintf(detail, sizeof detail, "the request body is larger than %zu bytes", h->max_body);
        return answer_problem(rq, conn, KL_PROBLEM_TOO_LARGE, detail);
    }
    req.method = method;
    req.path = url;
    req.request_id = rq->request_id;
    for (size_t i = 0; i < rq->match.n_params; i++)
        req.params[i] = rq->match.params[i];
    req.n_params = rq->match.n_params;
    (void)MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_query, &req);
    req.body = rq->body.data;
    req.body_len = rq->body.len;
    req.header = header_cb;
    req.header_arg = conn;
    kl_api_resp_init(&resp);
    kl_api_dispatch(&h->api, rq->match.route, &req, &resp);
    ret = queue(rq, conn, &resp);
    kl_api_resp_free(&resp);
    return ret;
}

/* ---- libmicrohttpd callbacks ---- */

static struct request *request_new(struct kl_httpd *h)
{
    struct request *rq = calloc(1, sizeof *rq);
    if (rq == NULL)
        return NULL;
    clock_gettime(CLOCK_MONOTONIC, &rq->start);
    kl_buf_init(&rq->body, h->max_body);
    return rq;
}

/* Called with the raw request line's URI, before anything else of the
 * request: the clock of the request starts here. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct request *rq = request_new(cls);

    (void)conn;
    /* libmicrohttpd decodes %00 into the path and the query values, where
     * every C string stops at it: refused (seen here, before decoding). */
    if (rq != NULL && uri != NULL && strstr(uri, "%00") != NULL)
        rq->nul_in_uri = true;
    return rq;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct kl_httpd *h = cls;
    struct request *rq = *con_cls;

    (void)version;
    if (rq == NULL) {
        rq = request_new(h);
        if (rq == NULL)
            return MHD_NO;
        *con_cls = rq;
    }
    if (!rq->begun)
        return begin(h, rq, conn, url, method);
    if (*upload_data_size > 0)
        return take_body(h, rq, upload_data, upload_data_size);
    if (rq->status != 0)
        return MHD_YES; /* answered early */
    return finish(h, rq, conn, url, method);
}

static const char *termination_name(enum MHD_RequestTerminationCode toe)
{
    switch (toe) {
    case MHD_REQUEST_TERMINATED_COMPLETED_OK:
        return NULL;
    case MHD_REQUEST_TERMINATED_WITH_ERROR:
        return "error";
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED:
        return "timeout";
    case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN:
        return "shutdown";
    case MHD_REQUEST_TERMINATED_READ_ERROR:
        return "read_error";
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT:
        return "client_abort";
    default:
        return "other";
    }
}

static void client_address(struct MHD_Connection *conn, char *out, size_t cap)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;

    out[0] = '\0';
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET)
        (void)inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                        (socklen_t)cap);
    else if (sa->sa_family == AF_INET6)
        (void)inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                        (socklen_t)cap);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct kl_httpd *h = cls;
    struct request *rq = *con_cls;
    struct kl_logline line;
    const char *aborted = termination_name(toe);
    enum kl_log_level level;
    char remote[INET6_ADDRSTRLEN];
    int64_t us;

    if (rq == NULL)
        return;
    *con_cls = NULL;
    us = elapsed_us(&rq->start);
    if (rq->status > 0)
        kl_http_metrics_observe(&h->metrics, rq->match.index, rq->status, (uint64_t)us);
    level = rq->status >= 500 || (rq->status == 0 && rq->begun) ? KL_LOG_WARN : KL_LOG_INFO;
    if (rq->status >= 500 && rq->status != 503)
        level = KL_LOG_ERROR;
    if (rq->begun && level >= kl_log_threshold) {
        client_address(conn, remote, sizeof remote);
        kl_logline_begin(&line, level, "http", "request");
        kl_logline_str(&line, "request_id", rq->request_id);
        kl_logline_str(&line, "method", rq->method);
        kl_logline_str(&line, "path", rq->path);
        kl_logline_int(&line, "status", rq->status);
        kl_logline_ms(&line, "duration_ms", (double)us / 1000.0);
        kl_logline_int(&line, "bytes", (int64_t)rq->bytes);
        if (rq->received > 0)
            kl_logline_int(&line, "body_bytes", (int64_t)rq->received);
        if (remote[0] != '\0')
            kl_logline_str(&line, "remote", remote);
        if (aborted != NULL)
            kl_logline_str(&line, "aborted", aborted);
        if (rq->error[0] != '\0')
            kl_logline_str(&line, "error", rq->error);
        kl_logline_emit(&line, h->log);
    }
    if (rq->begun)
        atomic_fetch_sub(&h->metrics.in_flight, 1);
    kl_buf_free(&rq->body);
    free(rq);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct kl_httpd *h = cls;
    struct kl_logline line;
    char msg[512];
    size_t n;

    if (KL_LOG_WARN < kl_log_threshold)
        return;
    vsnprintf(msg, sizeof msg, fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    kl_logline_begin(&line, KL_LOG_WARN, "http", msg);
    kl_logline_emit(&line, h->log);
}

static int server_metrics(void *arg, struct kl_buf *out, struct kl_err *err)
{
    struct kl_httpd *h = arg;
    return kl_http_metrics_render(&h->metrics, out, err);
}

/* ---- start and stop ---- */

static int open_listener(const struct kl_httpd_opts *o, MHD_socket *out, struct kl_err *err)
{
    struct addrinfo hints, *res = NULL;
    char port[8];
    const char *host = o->host != NULL && o->host[0] != '\0' ? o->host : NULL;
    int gai, last_errno = 0, one = 1, zero = 0;
    int fd = -1;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = host == NULL ? AF_INET6 : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof port, "%d", o->port);
    gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0 && host == NULL) {
        /* no IPv6 here: every IPv4 interface */
        hints.ai_family = AF_INET;
        gai = getaddrinfo(NULL, port, &hints, &res);
    }
    if (gai != 0)
        return kl_err_set(err, KL_ERR_INVALID, "KL_LISTEN: cannot resolve '%s': %s",
                          host != NULL ? host : "*", gai_strerror(gai));
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
            (ai->ai_family == AF_INET6 && host == NULL &&
             setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) != 0) ||
            bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
            last_errno = errno;
            close(fd);
            fd = -1;
            continue;
        }
        break;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return kl_err_set(err, KL_ERR_IO, "KL_LISTEN: cannot listen on %s:%d: %s",
                          host != NULL ? host : "*", o->port, strerror(last_errno));
    *out = fd;
    return KL_OK;
}

static uint16_t bound_port(MHD_socket fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

struct kl_httpd *kl_httpd_start(const struct kl_httpd_opts *o, struct kl_err *err)
{
    struct kl_httpd *h = NULL;
    bool metrics_ready = false;
    unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;

    if (o->svc == NULL || o->threads < 1 || o->max_connections < 1 || o->idle_timeout_s < 1 ||
        o->max_body == 0) {
        kl_err_set(err, KL_ERR_INVALID, "HTTP server: bad options");
        return NULL;
    }
    h = calloc(1, sizeof *h);
    if (h == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "out of memory starting the HTTP server");
        return NULL;
    }
    h->listen_fd = MHD_INVALID_SOCKET;
    h->max_body = o->max_body;
    h->log = o->log;
    atomic_init(&h->stopping, false);
    if (o->api_token != NULL && o->api_token[0] != '\0') {
        if (sha256(o->api_token, strlen(o->api_token), h->token_digest) != KL_OK) {
            kl_err_set(err, KL_ERR_INTERNAL, "SHA-256 is not available");
            goto fail;
        }
        h->auth = true;
    }
    if (kl_http_metrics_init(&h->metrics, kl_api_routes, kl_api_route_count, err) != KL_OK)
        goto fail;
    metrics_ready = true;
    h->api.svc = o->svc;
    h->api.server_metrics = server_metrics;
    h->api.server_metrics_arg = h;
    h->api.stopping = &h->stopping;
    /* A waiting request holds its pool thread (and the connections that
     * thread serves): half the pool at most, the rest keeps answering. */
    atomic_init(&h->waits, 0);
    h->api.waits = &h->waits;
    h->api.max_waits = o->threads / 2;
    if (open_listener(o, &h->listen_fd, err) != KL_OK)
        goto fail;
    h->port = bound_port(h->listen_fd);
    /* clang-format off */
    h->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, h,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
        MHD_OPTION_LISTEN_SOCKET, h->listen_fd,
        /* 0: the one internal thread, without a pool */
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)(o->threads > 1 ? o->threads : 0),
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)o->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)o->idle_timeout_s,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, h,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_END);
    /* clang-format on */
    if (h->daemon == NULL) {
        kl_err_set(err, KL_ERR_IO, "libmicrohttpd could not start on port %u", h->port);
        goto fail;
    }
    return h;
fail:
    if (h->listen_fd != MHD_INVALID_SOCKET)
        close(h->listen_fd);
    if (metrics_ready)
        kl_http_metrics_free(&h->metrics);
    OPENSSL_cleanse(h->token_digest, sizeof h->token_digest);
    free(h);
    return NULL;
}

uint16_t kl_httpd_port(const struct kl_httpd *h)
{
    return h->port;
}

void kl_httpd_quiesce(struct kl_httpd *h)
{
    MHD_socket fd;

    atomic_store(&h->stopping, true);
    if (h->quiesced)
        return;
    h->quiesced = true;
    fd = MHD_quiesce_daemon(h->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    h->listen_fd = MHD_INVALID_SOCKET;
}

long kl_httpd_in_flight(struct kl_httpd *h)
{
    return (long)atomic_load(&h->metrics.in_flight);
}

bool kl_httpd_drain(struct kl_httpd *h, int64_t timeout_ms)
{
    struct timespec start, nap = {0, 10 * 1000000L};

    clock_gettime(CLOCK_MONOTONIC, &start);
    while (atomic_load(&h->metrics.in_flight) > 0) {
        if (elapsed_us(&start) / 1000 >= timeout_ms)
            return false;
        nanosleep(&nap, NULL);
    }
    return true;
}

void kl_httpd_destroy(struct kl_httpd *h)
{
    if (h == NULL)
        return;
    atomic_store(&h->stopping, true);
    /* Closes every connection (completion callbacks run) and joins the pool;
     * closes the listening socket unless it was quiesced. */
    MHD_stop_daemon(h->daemon);
    kl_http_metrics_free(&h->metrics);
    OPENSSL_cleanse(h->token_digest, sizeof h->token_digest);
    free(h);
}
