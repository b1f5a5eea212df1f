/*
 * The fake HTTP server of fake_server.h on libmicrohttpd 0.9.75: one thread
 * per connection, bodies collected into bounded buffers, one lock around
 * every handler call. Test code only.
 */
#include "tests/support/fake_server.h"
#include "tests/support/test_support.h"
#include "core/util/buf.h"
#include "core/util/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct kl_fake_server {
    struct MHD_Daemon *daemon;
    kl_fake_server_handler handler;
    void *user;
    pthread_mutex_t lock;
    unsigned requests;
    uint16_t port;
    char url[64];
};

/* Per connection and request: the body as it arrives. */
struct request_state {
    struct kl_buf body;
    bool too_big;
};

void kl_fake_server_lock(struct kl_fake_server *s)
{
    if (pthread_mutex_lock(&s->lock) != 0)
        abort();
}

void kl_fake_server_unlock(struct kl_fake_server *s)
{
    if (pthread_mutex_unlock(&s->lock) != 0)
        abort();
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static enum MHD_Result answer(struct kl_fake_server *s, struct MHD_Connection *conn,
                              const char *url, const char *method, struct request_state *st)
{
    struct kl_fake_request req;
    struct kl_fake_response resp;
    struct MHD_Response *r;
    enum MHD_Result ret;

    memset(&resp, 0, sizeof resp);
    resp.status = 200;
    snprintf(resp.content_type, sizeof resp.content_type, "text/plain");
    if (st->too_big) {
        resp.status = 413;
    } else {
        req.method = method;
        req.path = url;
        req.body = st->body.data != NULL ? st->body.data : "";
        req.body_len = st->body.len;
        req.connection = conn;
        kl_fake_server_lock(s);
        req.index = s->requests++;
        s->handler(s->user, &req, &resp);
        kl_fake_server_unlock(s);
    }
    if (resp.delay_ms > 0)
        sleep_ms(resp.delay_ms);
    if (resp.drop) {
        free(resp.body);
        return MHD_NO; /* libmicrohttpd closes the connection */
    }
    r = MHD_create_response_from_buffer(resp.body_len, resp.body != NULL ? resp.body : "",
                                        MHD_RESPMEM_MUST_COPY);
    free(resp.body);
    if (r == NULL)
        return MHD_NO;
    ret = MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp.content_type);
    for (size_t i = 0; ret == MHD_YES && i < resp.n_headers; i++)
        ret = MHD_add_response_header(r, resp.headers[i].name, resp.headers[i].value);
    if (ret == MHD_YES)
        ret = MHD_queue_response(conn, (unsigned int)resp.status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct request_state *st = *con_cls;
    (void)version;

    if (st == NULL) { /* headers are in; the body (if any) comes in further calls */
        st = calloc(1, sizeof *st);
        if (st == NULL)
            return MHD_NO;
        kl_buf_init(&st->body, KL_FAKE_SERVER_MAX_BODY);
        *con_cls = st;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!st->too_big && kl_buf_append(&st->body, upload_data, *upload_data_size, NULL) != KL_OK)
            st->too_big = true;
        *upload_data_size = 0;
        return MHD_YES;
    }
    return answer(cls, conn, url, method, st);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode why)
{
    struct request_state *st = *con_cls;
    (void)cls;
    (void)conn;
    (void)why;
    if (st != NULL) {
        kl_buf_free(&st->body);
        free(st);
        *con_cls = NULL;
    }
}

struct kl_fake_server *kl_fake_server_start(kl_fake_server_handler handler, void *user)
{
    struct kl_fake_server *s = calloc(1, sizeof *s);
    struct sockaddr_in addr;
    const union MHD_DaemonInfo *info;

    /* fail_msg() does not return; the returns only tell static analysers so. */
    if (s == NULL) {
        fail_msg("fake server: out of memory");
        return NULL;
    }
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        fail_msg("fake server: pthread_mutex_init failed");
        free(s);
        return NULL;
    }
    s->handler = handler;
    s->user = user;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    /* No MHD_USE_ERROR_LOG: a scripted dropped connection would be logged as an
     * error; a failure to start is reported below. */
    s->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                                 NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &addr,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)30, MHD_OPTION_END);
    if (s->daemon == NULL) {
        fail_msg("fake server: MHD_start_daemon failed on 127.0.0.1");
        return NULL;
    }
    info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (info == NULL || info->port == 0) {
        fail_msg("fake server: cannot learn the bound port");
        return NULL;
    }
    s->port = info->port;
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%u", (unsigned)s->port);
    return s;
}

void kl_fake_server_stop(struct kl_fake_server *s)
{
    if (s == NULL)
        return;
    MHD_stop_daemon(s->daemon);
    (void)pthread_mutex_destroy(&s->lock);
    free(s);
}

uint16_t kl_fake_server_port(const struct kl_fake_server *s)
{
    return s->port;
}

const char *kl_fake_server_url(const struct kl_fake_server *s)
{
    return s->url;
}

unsigned kl_fake_server_requests(struct kl_fake_server *s)
{
    unsigned n;
    kl_fake_server_lock(s);
    n = s->requests;
    kl_fake_server_unlock(s);
    return n;
}

const char *kl_fake_request_header(const struct kl_fake_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->connection, MHD_HEADER_KIND, name);
}

const char *kl_fake_request_query(const struct kl_fake_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->connection, MHD_GET_ARGUMENT_KIND, name);
}

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

bool kl_fake_form_value(const char *body, size_t len, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = body, *end = body + len;

    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *fe = amp != NULL ? amp : end;
        if ((size_t)(fe - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t n = 0;
            for (const char *v = p + nl + 1; v < fe; v++) {
                char c = *v;
                if (c == '+') {
                    c = ' ';
                } else if (c == '%' && fe - v >= 3 && hexval(v[1]) >= 0 && hexval(v[2]) >= 0) {
                    c = (char)(hexval(v[1]) * 16 + hexval(v[2]));
                    v += 2;
                }
                if (n + 1 >= cap)
                    return false;
                out[n++] = c;
            }
            out[n] = '\0';
            return true;
        }
        p = fe + 1;
    }
    return false;
}

void kl_fake_response_body(struct kl_fake_response *resp, const char *content_type,
                           const char *body)
{
    size_t n = strlen(body);

    free(resp->body);
    resp->body = malloc(n + 1);
    if (resp->body == NULL)
        abort();
    memcpy(resp->body, body, n + 1);
    resp->body_len = n;
    if (content_type != NULL)
        snprintf(resp->content_type, sizeof resp->content_type, "%s", content_type);
}

void kl_fake_response_header(struct kl_fake_response *resp, const char *name, const char *value)
{
    if (resp->n_headers == KL_FAKE_RESPONSE_MAX_HEADERS)
        abort();
    snprintf(resp->headers[resp->n_headers].name, sizeof resp->headers[0].name, "%s", name);
    snprintf(resp->headers[resp->n_headers].value, sizeof resp->headers[0].value, "%s", value);
    resp->n_headers++;
}

uint16_t kl_fake_unused_port(void)
{
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    uint16_t port;

    if (fd < 0)
        fail_msg("socket() failed");
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0)
        fail_msg("cannot bind a loopback port");
    port = ntohs(addr.sin_port);
    close(fd);
    return port;
}
