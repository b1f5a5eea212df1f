/*
 * The route table of openapi.yaml and the checks every route shares (the
 * query string). Adding an endpoint: a row here, a handler in handlers.c,
 * the operation in openapi.yaml.
 */
#include "api/routes.h"
#include "api/handlers.h"
#include "api/problem.h"

#include <string.h>

static const char *const jobs_query[] = {"stream", "status", "limit", "cursor", NULL};
static const char *const job_query[] = {"wait", NULL};
static const char *const state_query[] = {"pipeline_name", "dataset_name", NULL};

/* clang-format off */
const struct kl_api_route kl_api_routes[] = {
    {"POST",   "/streams/{stream}/loads", kl_api_create_load,  0,             NULL},
    {"GET",    "/jobs",                   kl_api_list_jobs,    0,             jobs_query},
    {"GET",    "/jobs/{id}",              kl_api_get_job,      0,             job_query},
    {"POST",   "/jobs/{id}/cancel",       kl_api_cancel_job,   0,             NULL},
    {"GET",    "/streams",                kl_api_list_streams, 0,             NULL},
    {"GET",    "/streams/{stream}",       kl_api_get_stream,   0,             NULL},
    {"GET",    "/streams/{stream}/state", kl_api_get_state,    0,             state_query},
    {"DELETE", "/streams/{stream}/state", kl_api_delete_state, 0,             state_query},
    {"GET",    "/healthz",                kl_api_healthz,      KL_ROUTE_OPEN, NULL},
    {"GET",    "/readyz",                 kl_api_readyz,       KL_ROUTE_OPEN, NULL},
    {"GET",    "/metrics",                kl_api_metrics,      KL_ROUTE_OPEN, NULL},
    {"GET",    "/openapi.yaml",           kl_api_openapi,      KL_ROUTE_OPEN, NULL},
};
/* clang-format on */

const size_t kl_api_route_count = sizeof kl_api_routes / sizeof kl_api_routes[0];

static bool accepted(const struct kl_api_route *route, const char *key)
{
    for (const char *const *q = route->query; q != NULL && *q != NULL; q++) {
        if (strcmp(*q, key) == 0)
            return true;
    }
    return false;
}

void kl_api_dispatch(const struct kl_api_ctx *ctx, const struct kl_api_route *route,
                     const struct kl_api_req *req, struct kl_api_resp *resp)
{
    struct kl_field_errors fe;

    kl_field_errors_init(&fe);
    if (req->query_overflow) {
        kl_problem_invalid(resp, req, "too many query parameters", NULL);
        return;
    }
    for (size_t i = 0; i < req->n_query; i++) {
        const char *key = req->query[i].key;
        if (!accepted(route, key)) {
            kl_field_errors_add(&fe, key, "unknown query parameter");
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(req->query[j].key, key) == 0) {
                kl_field_errors_add(&fe, key, "is given more than once");
                break;
            }
        }
    }
    if (fe.n > 0) {
        kl_problem_invalid(resp, req, NULL, &fe);
        return;
    }
    route->handler(ctx, req, resp);
    if (resp->status < 100 || resp->status > 599)
        kl_api_resp_internal(resp, "a handler left no status");
}
