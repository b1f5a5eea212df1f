/*
 * Matching a request's method and path against the route table of
 * api/routes.h: literal segments compare exactly, a `{name}` segment takes
 * one non-empty segment as a parameter. Knows nothing of HTTP beyond that
 * HEAD is answered like GET.
 */
#ifndef KL_SERVER_ROUTER_H
#define KL_SERVER_ROUTER_H

#include <stddef.h>

#include "api/routes.h"

#define KL_ROUTER_PATH_MAX 512 /* longer paths match nothing (404) */

enum kl_router_result {
    KL_ROUTER_MATCHED,
    KL_ROUTER_NOT_FOUND,          /* no pattern matches the path */
    KL_ROUTER_METHOD_NOT_ALLOWED, /* some pattern matches, not with this method; see `allow` */
};

struct kl_router_match {
    const struct kl_api_route *route;      /* when MATCHED */
    size_t index;                          /* of `route` in the table */
    const char *params[KL_API_MAX_PARAMS]; /* point into `scratch` */
    size_t n_params;
    char allow[64]; /* when METHOD_NOT_ALLOWED: "GET, HEAD, DELETE" */
    char scratch[KL_ROUTER_PATH_MAX];
};

/* Finds the route for `method` and `path` (decoded, without the query). The
 * parameters live in `m` and stay valid as long as it does. */
enum kl_router_result kl_router_match(const struct kl_api_route *routes, size_t n,
                                      const char *method, const char *path,
                                      struct kl_router_match *m);

#endif
