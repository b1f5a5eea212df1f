/*
 * libcurl behind struct kl_http. One easy handle per thread and transport,
 * reused across requests so connections stay alive; the response body is
 * collected into a bounded buffer. Retrying is not done here.
 */
#include "core/aws/http.h"
#include "core/util/buf.h"
#include "core/util/err.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_CONNECT_TIMEOUT_MS 3000L
#define DEFAULT_TIMEOUT_MS 30000L
#define DEFAULT_MAX_RESPONSE ((size_t)32 << 20)

/* A thread's handle; linked into the transport's list so destroy frees all. */
struct handle {
    CURL *curl;
    struct curl_transport *owner;
    struct handle *next;
};

struct curl_transport {
    struct kl_http http;
    struct kl_http_curl_options opts;
    char *ca_file;
    pthread_key_t key;
    pthread_mutex_t lock;
    struct handle *handles;
};

struct transfer {
    struct kl_buf body;
    struct kl_http_response *resp;
    int limit_hit;
    CURL *curl;
    const struct kl_http_request *req;
    int streaming; /* -1 not known yet, 0 buffering, 1 to the sink */
    int sink_rc;
    struct kl_err sink_err;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK;

static void global_init_once(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int kl_http_global_init(struct kl_err *err)
{
    if (pthread_once(&global_once, global_init_once) != 0)
        return kl_err_set(err, KL_ERR_INTERNAL, "pthread_once failed");
    if (global_rc != CURLE_OK)
        return kl_err_set(err, KL_ERR_INTERNAL, "curl_global_init: %s",
                          curl_easy_strerror(global_rc));
    return KL_OK;
}

void kl_http_response_init(struct kl_http_response *resp)
{
    memset(resp, 0, sizeof *resp);
}

void kl_http_response_free(struct kl_http_response *resp)
{
    if (resp == NULL)
        return;
    if (resp->sensitive && resp->body != NULL)
        OPENSSL_cleanse(resp->body, resp->body_len);
    free(resp->body);
    resp->body = NULL;
    resp->body_len = 0;
}

void kl_http_destroy(struct kl_http *h)
{
    if (h != NULL)
        h->ops->destroy(h->impl);
}

static void unlink_handle(struct curl_transport *t, struct handle *h)
{
    struct handle **pp;
    for (pp = &t->handles; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    }
}

/* Runs when a thread that used the transport exits. */
static void handle_thread_exit(void *p)
{
    struct handle *h = p;
    struct curl_transport *t = h->owner;

    pthread_mutex_lock(&t->lock);
    unlink_handle(t, h);
    pthread_mutex_unlock(&t->lock);
    curl_easy_cleanup(h->curl);
    free(h);
}

static CURL *thread_handle(struct curl_transport *t, struct kl_err *err)
{
    struct handle *h = pthread_getspecific(t->key);
    if (h != NULL)
        return h->curl;
    h = calloc(1, sizeof *h);
    if (h == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "out of memory for an HTTP handle");
        return NULL;
    }
    h->curl = curl_easy_init();
    if (h->curl == NULL) {
        free(h);
        kl_err_set(err, KL_ERR_INTERNAL, "curl_easy_init failed");
        return NULL;
    }
    h->owner = t;
    if (pthread_setspecific(t->key, h) != 0) {
        curl_easy_cleanup(h->curl);
        free(h);
        kl_err_set(err, KL_ERR_INTERNAL, "pthread_setspecific failed");
        return NULL;
    }
    pthread_mutex_lock(&t->lock);
    h->next = t->handles;
    t->handles = h;
    pthread_mutex_unlock(&t->lock);
    return h->curl;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct transfer *x = userdata;
    size_t n = size * nmemb;
    if (x->streaming < 0) {
        /* the status line and headers are in: a 2xx body may stream */
        long status = 0;
        curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
        x->streaming = x->req->sink != NULL && status >= 200 && status < 300;
    }
    if (x->streaming) {
        x->sink_rc = x->req->sink(x->req->sink_ctx, data, n, &x->sink_err);
        return x->sink_rc == KL_OK ? n : 0;
    }
    if (kl_buf_append(&x->body, data, n, NULL) != KL_OK) {
        x->limit_hit = 1;
        return 0; /* makes curl fail with CURLE_WRITE_ERROR */
    }
    return n;
}

/* Copies a header's value (trimmed) into `out` when its name matches. */
static void take_header(const char *line, size_t len, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name), v, end;
    if (len <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0)
        return;
    v = nl + 1;
    while (v < len && (line[v] == ' ' || line[v] == '\t'))
        v++;
    end = len;
    while (end > v && (line[end - 1] == '\r' || line[end - 1] == '\n' || line[end - 1] == ' '))
        end--;
    if (end - v >= cap)
        end = v + cap - 1;
    memcpy(out, line + v, end - v);
    out[end - v] = '\0';
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct transfer *x = userdata;
    size_t n = size * nmemb;
    take_header(data, n, "content-type", x->resp->content_type, sizeof x->resp->content_type);
    take_header(data, n, "x-amzn-requestid", x->resp->request_id, sizeof x->resp->request_id);
    take_header(data, n, "x-amz-request-id", x->resp->request_id, sizeof x->resp->request_id);
    return n;
}

static int map_curl_error(CURLcode rc, const struct transfer *x, const char *errbuf,
                          const char *url, struct kl_err *err)
{
    const char *detail = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
    if (x->sink_rc != KL_OK) {
        if (err != NULL)
            *err = x->sink_err;
        return x->sink_rc;
    }
    if (x->limit_hit)
        return kl_err_set(err, KL_ERR_LIMIT, "response from %s exceeds %zu bytes", url,
                          x->body.max);
    switch (rc) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        return kl_err_set(err, KL_ERR_INVALID, "bad URL %s: %s", url, detail);
    case CURLE_OUT_OF_MEMORY:
        return kl_err_set(err, KL_ERR_NOMEM, "%s", detail);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
        return kl_err_set(err, KL_ERR_INVALID, "TLS verification failed for %s: %s", url, detail);
    default:
        /* Connection refused/reset, DNS, timeouts, truncated replies: all may pass. */
        return kl_err_set(err, KL_ERR_UNAVAILABLE, "%s: %s", url, detail);
    }
}

static int curl_send(void *impl, const struct kl_http_request *req, struct kl_http_response *resp,
                     struct kl_err *err)
{
    struct curl_transport *t = impl;
    struct curl_slist *headers = NULL, *tmp;
    struct transfer x;
    struct kl_http_response out;
    char errbuf[CURL_ERROR_SIZE];
    char line[8192];
    CURLcode rc;
    CURL *curl = NULL;
    int result = KL_OK;
    size_t max = req->max_response ? req->max_response : t->opts.max_response;

    kl_http_response_init(&out);
    kl_buf_init(&x.body, max);
    x.body.secure = req->sensitive != 0;
    out.sensitive = req->sensitive;
    x.resp = &out;
    x.limit_hit = 0;
    x.req = req;
    x.streaming = -1;
    x.curl = NULL;
    x.sink_rc = KL_OK;
    kl_err_clear(&x.sink_err);
    errbuf[0] = '\0';

    curl = thread_handle(t, err);
    if (curl == NULL) {
        result = err != NULL ? (int)err->code : KL_ERR_INTERNAL;
        goto cleanup;
    }
    curl_easy_reset(curl);
    x.curl = curl;

    /* An empty "Expect:" stops curl from waiting for 100-continue on large bodies. */
    tmp = curl_slist_append(headers, "Expect:");
    if (tmp == NULL)
        goto nomem;
    headers = tmp;
    for (size_t i = 0; i < req->n_headers; i++) {
        int n = snprintf(line, sizeof line, "%s: %s", req->headers[i].name, req->headers[i].value);
        if (n < 0 || (size_t)n >= sizeof line) {
            result = kl_err_set(err, KL_ERR_INVALID, "header %s is too long", req->headers[i].name);
            goto cleanup;
        }
        tmp = curl_slist_append(headers, line);
        OPENSSL_cleanse(line, (size_t)n);
        if (tmp == NULL)
            goto nomem;
        headers = tmp;
    }

    if (curl_easy_setopt(curl, CURLOPT_URL, req->url) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req->method) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &x) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_HEADERDATA, &x) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                         req->connect_timeout_ms ? req->connect_timeout_ms
                                                 : t->opts.connect_timeout_ms) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                         req->timeout_ms ? req->timeout_ms : t->opts.timeout_ms) != CURLE_OK ||
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK) {
        result = kl_err_set(err, KL_ERR_INTERNAL, "curl_easy_setopt failed");
        goto cleanup;
    }
    if (t->ca_file != NULL && curl_easy_setopt(curl, CURLOPT_CAINFO, t->ca_file) != CURLE_OK) {
        result = kl_err_set(err, KL_ERR_INTERNAL, "curl_easy_setopt(CAINFO) failed");
        goto cleanup;
    }
    if (req->body_len > 0 || strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0) {
        if (curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req->body ? req->body : "") != CURLE_OK ||
            curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len) !=
                CURLE_OK) {
            result = kl_err_set(err, KL_ERR_INTERNAL, "curl_easy_setopt(POSTFIELDS) failed");
            goto cleanup;
        }
    }

    rc = curl_easy_perform(curl);
    if (rc != CURLE_OK) {
        result = map_curl_error(rc, &x, errbuf, req->url, err);
        goto cleanup;
    }
    if (curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out.status) != CURLE_OK) {
        result = kl_err_set(err, KL_ERR_INTERNAL, "curl_easy_getinfo failed");
        goto cleanup;
    }
    out.body = kl_buf_steal(&x.body, &out.body_len);
    if (out.body == NULL)
        goto nomem;
    *resp = out;
    goto cleanup;

nomem:
    result = kl_err_set(err, KL_ERR_NOMEM, "out of memory building an HTTP request");
cleanup:
    if (curl != NULL) {
        /* The header list is freed below; the handle must not keep pointing at it. */
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
    }
    /* curl copied the header lines; tokens among them must not linger */
    for (struct curl_slist *h = headers; h != NULL; h = h->next)
        OPENSSL_cleanse(h->data, strlen(h->data));
    curl_slist_free_all(headers);
    if (x.body.secure)
        kl_buf_free_secure(&x.body);
    else
        kl_buf_free(&x.body);
    return result;
}

static void curl_destroy(void *impl)
{
    struct curl_transport *t = impl;
    struct handle *h, *next;

    /* Contract: no thread is using the transport any more. */
    pthread_key_delete(t->key);
    for (h = t->handles; h != NULL; h = next) {
        next = h->next;
        curl_easy_cleanup(h->curl);
        free(h);
    }
    pthread_mutex_destroy(&t->lock);
    free(t->ca_file);
    free(t);
}

static const struct kl_http_ops curl_ops = {.send = curl_send, .destroy = curl_destroy};

struct kl_http *kl_http_curl_create(const struct kl_http_curl_options *opts, struct kl_err *err)
{
    struct curl_transport *t;

    if (kl_http_global_init(err) != KL_OK)
        return NULL;
    t = calloc(1, sizeof *t);
    if (t == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "out of memory creating the HTTP transport");
        return NULL;
    }
    if (opts != NULL)
        t->opts = *opts;
    if (t->opts.connect_timeout_ms <= 0)
        t->opts.connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    if (t->opts.timeout_ms <= 0)
        t->opts.timeout_ms = DEFAULT_TIMEOUT_MS;
    if (t->opts.max_response == 0)
        t->opts.max_response = DEFAULT_MAX_RESPONSE;
    if (opts != NULL && opts->ca_file != NULL) {
        t->ca_file = strdup(opts->ca_file);
        if (t->ca_file == NULL) {
            free(t);
            kl_err_set(err, KL_ERR_NOMEM, "out of memory creating the HTTP transport");
            return NULL;
        }
    }
    t->opts.ca_file = t->ca_file;
    if (pthread_key_create(&t->key, handle_thread_exit) != 0) {
        free(t->ca_file);
        free(t);
        kl_err_set(err, KL_ERR_INTERNAL, "pthread_key_create failed");
        return NULL;
    }
    if (pthread_mutex_init(&t->lock, NULL) != 0) {
        pthread_key_delete(t->key);
        free(t->ca_file);
        free(t);
        kl_err_set(err, KL_ERR_INTERNAL, "pthread_mutex_init failed");
        return NULL;
    }
    t->http.ops = &curl_ops;
    t->http.impl = t;
    return &t->http;
}
