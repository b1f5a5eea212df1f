/*
 * The HTTP server: libmicrohttpd with a thread pool (epoll), the route table
 * of api/routes.h, bounded request bodies, a request id per request, bearer
 * token auth, one JSON access-log line per request, an HTTP latency
 * histogram, and a stop in two steps (quiesce, then drain). What each route
 * answers is api/'s business; where the process starts and stops is serve.c.
 */
#ifndef KL_SERVER_HTTP_H
#define KL_SERVER_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct kl_err;
struct kl_service;

struct kl_httpd_opts {
    const char *host;       /* numeric address or name; NULL or "": every interface */
    int port;               /* 0: a free port (kl_httpd_port tells which) */
    int threads;            /* pool size, >= 1 */
    int max_connections;    /* >= 1 */
    int idle_timeout_s;     /* >= 1 */
    size_t max_body;        /* larger request bodies are answered 413 */
    const char *api_token;  /* NULL or "": no authentication; copied as a digest */
    struct kl_service *svc; /* borrowed; must outlive the server */
    FILE *log;              /* access and error lines; NULL: stderr */
};

struct kl_httpd;

/* Binds, listens and starts serving. */
struct kl_httpd *kl_httpd_start(const struct kl_httpd_opts *o, struct kl_err *err);

/* The bound port. */
uint16_t kl_httpd_port(const struct kl_httpd *h);

/* Stops accepting connections. Requests that still arrive on open
 * connections are answered 503 with Connection: close, except /healthz,
 * /readyz (which answers 503 not_ready) and /metrics. Idempotent. */
void kl_httpd_quiesce(struct kl_httpd *h);

/* Waits until no request is being answered, at most `timeout_ms`. True when
 * none is left. A request counts once its headers are complete: a
 * connection that is idle, or whose client stalled before the end of its
 * headers, does not hold this up (kl_httpd_destroy closes it). */
bool kl_httpd_drain(struct kl_httpd *h, int64_t timeout_ms);

/* Requests currently being answered (headers complete, not yet done). */
long kl_httpd_in_flight(struct kl_httpd *h);

/* Stops the daemon (closing idle connections; waits for handlers that still
 * run) and frees everything. NULL is a no-op. */
void kl_httpd_destroy(struct kl_httpd *h);

#endif
