/*
 * A tiny HTTP server on 127.0.0.1 (a free port picked by the kernel) that a
 * test starts itself, to stand in for AWS endpoints, metadata services and
 * the like. The test scripts every answer in a handler and can inspect what
 * arrived. Built on libmicrohttpd; test code only, not for production.
 */
#ifndef KL_TEST_FAKE_SERVER_H
#define KL_TEST_FAKE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Request bodies above this are answered 413 without calling the handler. */
#define KL_FAKE_SERVER_MAX_BODY ((size_t)4 << 20)
#define KL_FAKE_RESPONSE_MAX_HEADERS 8

struct kl_fake_server;

/* What arrived. Valid only during the handler call. */
struct kl_fake_request {
    const char *method;
    const char *path; /* without the query string */
    const char *body; /* NUL-terminated (the body may contain NULs before body_len) */
    size_t body_len;
    unsigned index;   /* 0 for the first request the server got, 1 for the next, ... */
    void *connection; /* private */
};

struct kl_fake_response_header {
    char name[64];
    char value[512];
};

/* What to answer. The server fills the defaults (200, empty text/plain body)
 * before calling the handler. */
struct kl_fake_response {
    int status;
    char content_type[128];
    char *body; /* set with kl_fake_response_body(); owned by the server */
    size_t body_len;
    struct kl_fake_response_header headers[KL_FAKE_RESPONSE_MAX_HEADERS];
    size_t n_headers;
    long delay_ms; /* wait this long before answering (to provoke client timeouts) */
    bool drop;     /* close the connection without any answer */
};

/* Called once per complete request, in a server thread, with the server's
 * lock held: handlers never run concurrently, and a test that shares state
 * with its handler reads it under kl_fake_server_lock(). */
typedef void (*kl_fake_server_handler)(void *user, const struct kl_fake_request *req,
                                       struct kl_fake_response *resp);

/* Starts serving; fails the running test when the server cannot start. */
struct kl_fake_server *kl_fake_server_start(kl_fake_server_handler handler, void *user);
/* Stops the server, closing open connections; NULL is a no-op. */
void kl_fake_server_stop(struct kl_fake_server *s);

uint16_t kl_fake_server_port(const struct kl_fake_server *s);
/* "http://127.0.0.1:<port>", no trailing slash; valid until stop. */
const char *kl_fake_server_url(const struct kl_fake_server *s);
/* Number of complete requests handled so far. */
unsigned kl_fake_server_requests(struct kl_fake_server *s);

void kl_fake_server_lock(struct kl_fake_server *s);
void kl_fake_server_unlock(struct kl_fake_server *s);

/* A request header (case-insensitive name) or NULL. */
const char *kl_fake_request_header(const struct kl_fake_request *req, const char *name);
/* A query-string argument (decoded) or NULL. */
const char *kl_fake_request_query(const struct kl_fake_request *req, const char *name);
/* A field of an application/x-www-form-urlencoded body, decoded ('+' and
 * %XX) into `out`. Returns false when absent or when it does not fit. */
bool kl_fake_form_value(const char *body, size_t len, const char *name, char *out, size_t cap);

/* Sets the answer's body (copied) and, when not NULL, its content type. */
void kl_fake_response_body(struct kl_fake_response *resp, const char *content_type,
                           const char *body);
void kl_fake_response_header(struct kl_fake_response *resp, const char *name, const char *value);

/* A loopback port nothing listens on (bound and released at once), for
 * "connection refused" cases. */
uint16_t kl_fake_unused_port(void);

#endif
