/*
 * Route matching (router.h): a linear scan of a dozen patterns, segment by
 * segment, with no allocation. Fast enough that a table-driven trie would
 * only add code.
 */
#include "server/router.h"

#include <stdbool.h>
#include <string.h>

/* Matches one pattern; on success the parameters are copied into scratch. */
static bool match_pattern(const char *pat, const char *path, struct kl_router_match *m)
{
    size_t used = 0;

    m->n_params = 0;
    while (*pat != '\0' && *path != '\0') {
        const char *pat_end, *path_end;
        size_t pat_len, path_len;

        if (*pat != '/' || *path != '/')
            return false;
        pat++;
        path++;
        pat_end = pat + strcspn(pat, "/");
        path_end = path + strcspn(path, "/");
        pat_len = (size_t)(pat_end - pat);
        path_len = (size_t)(path_end - path);
        if (pat_len >= 2 && pat[0] == '{' && pat[pat_len - 1] == '}') {
            if (path_len == 0 || m->n_params >= KL_API_MAX_PARAMS ||
                used + path_len + 1 > sizeof m->scratch)
                return false;
            memcpy(m->scratch + used, path, path_len);
            m->scratch[used + path_len] = '\0';
            m->params[m->n_params++] = m->scratch + used;
            used += path_len + 1;
        } else if (pat_len != path_len || memcmp(pat, path, pat_len) != 0) {
            return false;
        }
        pat = pat_end;
        path = path_end;
    }
    return *pat == '\0' && *path == '\0';
}

static bool method_matches(const char *route_method, const char *method)
{
    return strcmp(route_method, method) == 0 ||
           (strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0);
}

static void allow_add(char *allow, size_t cap, const char *method)
{
    size_t len = strlen(allow), n = strlen(method);
    const char *p = allow;

    /* already listed? */
    while ((p = strstr(p, method)) != NULL) {
        if ((p == allow || p[-1] == ' ') && (p[n] == '\0' || p[n] == ','))
            return;
        p += n;
    }
    if (len + n + 3 > cap)
        return;
    if (len > 0) {
        allow[len++] = ',';
        allow[len++] = ' ';
    }
    memcpy(allow + len, method, n + 1);
}

enum kl_router_result kl_router_match(const struct kl_api_route *routes, size_t n,
                                      const char *method, const char *path,
                                      struct kl_router_match *m)
{
    bool path_known = false;

    m->route = NULL;
    m->index = n;
    m->n_params = 0;
    m->allow[0] = '\0';
    if (strlen(path) >= sizeof m->scratch)
        return KL_ROUTER_NOT_FOUND;
    for (size_t i = 0; i < n; i++) {
        if (!match_pattern(routes[i].pattern, path, m))
            continue;
        if (method_matches(routes[i].method, method)) {
            m->route = &routes[i];
            m->index = i;
            return KL_ROUTER_MATCHED;
        }
        path_known = true;
    }
    if (!path_known) {
        m->n_params = 0;
        return KL_ROUTER_NOT_FOUND;
    }
    for (size_t i = 0; i < n; i++) {
        if (match_pattern(routes[i].pattern, path, m)) {
            allow_add(m->allow, sizeof m->allow, routes[i].method);
            if (strcmp(routes[i].method, "GET") == 0)
                allow_add(m->allow, sizeof m->allow, "HEAD");
        }
    }
    m->n_params = 0;
    return KL_ROUTER_METHOD_NOT_ALLOWED;
}
