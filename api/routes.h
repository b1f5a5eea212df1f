/*
 * The REST surface as data: method + path pattern -> handler, whether the
 * route is open without a token, which query parameters it takes. The
 * matching itself is server/router.c; the daemon is server/http.c.
 */
#ifndef KL_API_ROUTES_H
#define KL_API_ROUTES_H

#include <stddef.h>

#include "api/api.h"

#define KL_ROUTE_OPEN 1u /* answered without a bearer token (health, metrics, openapi) */

struct kl_api_route {
    const char *method;  /* "GET", "POST", "DELETE" */
    const char *pattern; /* "/jobs/{id}": a {name} segment is one path parameter */
    kl_api_handler handler;
    unsigned flags;
    const char *const *query; /* NULL-terminated names the route accepts; NULL: none */
};

/* The routes of openapi.yaml. */
extern const struct kl_api_route kl_api_routes[];
extern const size_t kl_api_route_count;

/* Checks the query string against the route (unknown, repeated or too many
 * parameters are a 400 naming them), then calls the route's handler. */
void kl_api_dispatch(const struct kl_api_ctx *ctx, const struct kl_api_route *route,
                     const struct kl_api_req *req, struct kl_api_resp *resp);

#endif
