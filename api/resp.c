/*
 * Building responses and reading requests (api.h). Serialisation only: what
 * a response says is the handlers' and problem.c's business.
 */
#include "api/api.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sent when nothing else can be built; needs no allocation. */
static const char internal_body[] =
    "{\"type\":\"/problems/internal\",\"title\":\"Internal error\",\"status\":500}\n";

void kl_api_resp_init(struct kl_api_resp *r)
{
    memset(r, 0, sizeof *r);
    r->status = 500;
}

void kl_api_resp_free(struct kl_api_resp *r)
{
    free(r->body);
    r->body = NULL;
    r->static_body = NULL;
    r->body_len = 0;
}

int kl_api_resp_header(struct kl_api_resp *r, const char *name, const char *value)
{
    struct kl_api_header *h;
    size_t nl = strlen(name), vl = strlen(value);

    if (r->n_headers >= KL_API_MAX_RESP_HEADERS || nl >= sizeof h->name || vl >= sizeof h->value)
        return KL_ERR_LIMIT;
    h = &r->headers[r->n_headers++];
    memcpy(h->name, name, nl + 1);
    memcpy(h->value, value, vl + 1);
    return KL_OK;
}

void kl_api_resp_static(struct kl_api_resp *r, int status, const char *content_type,
                        const char *body, size_t len)
{
    kl_api_resp_free(r);
    r->status = status;
    r->content_type = content_type;
    r->static_body = body;
    r->body_len = len;
}

void kl_api_resp_take(struct kl_api_resp *r, int status, const char *content_type, char *body,
                      size_t len)
{
    kl_api_resp_free(r);
    r->status = status;
    r->content_type = content_type;
    r->body = body;
    r->body_len = len;
}

void kl_api_resp_internal(struct kl_api_resp *r, const char *why)
{
    kl_api_resp_static(r, 500, "application/problem+json", internal_body, sizeof internal_body - 1);
    if (why != NULL && r->error[0] == '\0')
        snprintf(r->error, sizeof r->error, "%s", why);
}

void kl_api_resp_json(struct kl_api_resp *r, int status, const struct cJSON *doc)
{
    char *text = cJSON_PrintUnformatted(doc);
    char *grown;
    size_t len;

    if (text == NULL) {
        kl_api_resp_internal(r, "out of memory serialising a JSON document");
        return;
    }
    len = strlen(text);
    grown = realloc(text, len + 2);
    if (grown == NULL) {
        free(text);
        kl_api_resp_internal(r, "out of memory serialising a JSON document");
        return;
    }
    grown[len] = '\n';
    grown[len + 1] = '\0';
    kl_api_resp_take(r, status, "application/json", grown, len + 1);
}

const char *kl_api_req_header(const struct kl_api_req *req, const char *name)
{
    if (req->header == NULL)
        return NULL;
    return req->header(req->header_arg, name);
}

const char *kl_api_req_query(const struct kl_api_req *req, const char *key)
{
    for (size_t i = 0; i < req->n_query; i++) {
        if (strcmp(req->query[i].key, key) == 0)
            return req->query[i].value != NULL ? req->query[i].value : "";
    }
    return NULL;
}

bool kl_api_job_id_valid(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9')))
            return false;
    }
    return n == KL_API_JOB_ID_LEN;
}

bool kl_api_request_id_valid(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        if (n >= KL_API_REQUEST_ID_MAX - 1)
            return false;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '/' || c == '+' || c == '=' || c == '-'))
            return false;
    }
    return n >= 1;
}
