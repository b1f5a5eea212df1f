/*
 * Route matching (server/router.c) over the real route table: parameters,
 * 404 for unknown paths, 405 with the Allow list for known paths, HEAD as
 * GET, and the table itself against openapi.yaml's paths.
 */
#include "tests/support/test_support.h"
#include "server/router.h"
#include "api/routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct kl_api_route *match(const char *method, const char *path,
                                        enum kl_router_result want, struct kl_router_match *m)
{
    enum kl_router_result got = kl_router_match(kl_api_routes, kl_api_route_count, method, path, m);
    if (got != want)
        fail_msg("%s %s: result %d, expected %d", method, path, got, want);
    return m->route;
}

static void parameters_come_from_their_segments(void **state)
{
    static const struct {
        const char *method;
        const char *path;
        const char *pattern;
        const char *param;
    } cases[] = {
        {"POST", "/streams/orders/loads", "/streams/{stream}/loads", "orders"},
        {"GET", "/jobs/01hx0000000000000000000000", "/jobs/{id}", "01hx0000000000000000000000"},
        {"POST", "/jobs/abc/cancel", "/jobs/{id}/cancel", "abc"},
        {"GET", "/streams/a.b-c_d", "/streams/{stream}", "a.b-c_d"},
        {"GET", "/streams/x/state", "/streams/{stream}/state", "x"},
        {"DELETE", "/streams/x/state", "/streams/{stream}/state", "x"},
        {"GET", "/jobs", "/jobs", NULL},
        {"GET", "/streams", "/streams", NULL},
        {"GET", "/healthz", "/healthz", NULL},
        {"HEAD", "/openapi.yaml", "/openapi.yaml", NULL},
        {"HEAD", "/jobs/x", "/jobs/{id}", "x"},
    };
    struct kl_router_match m;
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct kl_api_route *r = match(cases[i].method, cases[i].path, KL_ROUTER_MATCHED, &m);
        assert_string_equal(r->pattern, cases[i].pattern);
        assert_ptr_equal(r, &kl_api_routes[m.index]);
        if (cases[i].param == NULL) {
            assert_int_equal(m.n_params, 0);
        } else {
            assert_int_equal(m.n_params, 1);
            assert_string_equal(m.params[0], cases[i].param);
        }
    }
}

static void unknown_paths_are_not_found(void **state)
{
    static const char *const paths[] = {
        "/",         "",         "/jobs/", "/jobs//cancel", "/streams/x/loads/y", "/streams//loads",
        "/healthz/", "/HEALTHZ", "/job",   "/jobs/a/b",     "/streams/x/state/",  "//jobs",
        "jobs",
    };
    struct kl_router_match m;
    (void)state;

    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        assert_null(match("GET", paths[i], KL_ROUTER_NOT_FOUND, &m));
        assert_int_equal(m.index, kl_api_route_count);
    }
}

static void a_known_path_with_another_method_lists_the_allowed_ones(void **state)
{
    static const struct {
        const char *method;
        const char *path;
        const char *allow;
    } cases[] = {
        {"DELETE", "/jobs", "GET, HEAD"},
        {"GET", "/streams/x/loads", "POST"},
        {"PUT", "/streams/x/state", "GET, HEAD, DELETE"},
        {"POST", "/healthz", "GET, HEAD"},
        {"GET", "/jobs/x/cancel", "POST"},
        {"OPTIONS", "/jobs/x", "GET, HEAD"},
    };
    struct kl_router_match m;
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_null(match(cases[i].method, cases[i].path, KL_ROUTER_METHOD_NOT_ALLOWED, &m));
        assert_string_equal(m.allow, cases[i].allow);
        assert_int_equal(m.index, kl_api_route_count);
    }
}

static void long_paths_match_nothing(void **state)
{
    char path[KL_ROUTER_PATH_MAX + 16];
    struct kl_router_match m;
    (void)state;

    memcpy(path, "/streams/", 9);
    memset(path + 9, 'a', sizeof path - 10);
    path[sizeof path - 1] = '\0';
    assert_null(match("GET", path, KL_ROUTER_NOT_FOUND, &m));
}

/* Every path and method of openapi.yaml has a route, and no route is extra. */
static void the_table_matches_openapi(void **state)
{
    char *doc = NULL, *p;
    size_t operations = 0;
    (void)state;

    assert_int_equal(kl_test_run(&doc, "cat %s/openapi.yaml", KL_SOURCE_DIR), 0);
    p = strstr(doc, "\npaths:\n");
    assert_non_null(p);
    *strstr(p, "\ncomponents:\n") = '\0';
    for (char *line = p + 8; line != NULL && *line != '\0';) {
        char *nl = strchr(line, '\n');
        static char path[128];
        if (nl != NULL)
            *nl = '\0';
        if (line[0] == ' ' && line[1] == ' ' && line[2] == '/') {
            snprintf(path, sizeof path, "%s", line + 2);
            path[strlen(path) - 1] = '\0'; /* the ':' */
        } else if (strncmp(line, "    get:", 8) == 0 || strncmp(line, "    post:", 9) == 0 ||
                   strncmp(line, "    delete:", 11) == 0) {
            char method[8];
            bool found = false;
            size_t n = (size_t)(strchr(line, ':') - line - 4);
            for (size_t i = 0; i < n; i++)
                method[i] = (char)(line[4 + i] - 'a' + 'A');
            method[n] = '\0';
            for (size_t i = 0; i < kl_api_route_count; i++)
                found |= strcmp(kl_api_routes[i].pattern, path) == 0 &&
                         strcmp(kl_api_routes[i].method, method) == 0;
            if (!found)
                fail_msg("openapi.yaml has %s %s; the route table does not", method, path);
            operations++;
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
    assert_int_equal(operations, kl_api_route_count);
    free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parameters_come_from_their_segments),
        cmocka_unit_test(unknown_paths_are_not_found),
        cmocka_unit_test(a_known_path_with_another_method_lists_the_allowed_ones),
        cmocka_unit_test(long_paths_match_nothing),
        cmocka_unit_test(the_table_matches_openapi),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
