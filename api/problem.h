/*
 * Errors as RFC 9457 problem details (application/problem+json). One table in
 * problem.c says, for every engine error code and for the errors only HTTP
 * has (401, 405, 415), which status, `type` and `title` the client sees.
 * Not for building successful responses (api.h).
 */
#ifndef KL_API_PROBLEM_H
#define KL_API_PROBLEM_H

#include <stddef.h>

#include "core/util/err.h"

struct cJSON;
struct kl_api_req;
struct kl_api_resp;

enum kl_problem_kind {
    KL_PROBLEM_INVALID,                /* 400 /problems/invalid-request */
    KL_PROBLEM_UNAUTHORIZED,           /* 401 /problems/unauthorized */
    KL_PROBLEM_NOT_FOUND,              /* 404 /problems/not-found */
    KL_PROBLEM_METHOD_NOT_ALLOWED,     /* 405 /problems/method-not-allowed */
    KL_PROBLEM_CONFLICT,               /* 409 /problems/conflict */
    KL_PROBLEM_TOO_LARGE,              /* 413 /problems/payload-too-large */
    KL_PROBLEM_UNSUPPORTED_MEDIA_TYPE, /* 415 /problems/unsupported-media-type */
    KL_PROBLEM_INTERNAL,               /* 500 /problems/internal */
    KL_PROBLEM_UPSTREAM,               /* 502 /problems/upstream */
    KL_PROBLEM_UNAVAILABLE,            /* 503 /problems/unavailable (+ Retry-After) */
};

struct kl_problem_def {
    enum kl_problem_kind kind;
    enum kl_err_code code; /* the engine code this row answers; KL_OK for HTTP-only rows */
    int status;
    const char *type;
    const char *title;
    int retry_after_s; /* > 0: sent as Retry-After */
    int expose_detail; /* the error's message is shown to the client (else only logged) */
};

/* The row for an engine error code; codes without a row (and KL_OK) get the
 * internal-error row. Never NULL. */
const struct kl_problem_def *kl_problem_for_code(enum kl_err_code code);
/* The first row of a kind. Never NULL. */
const struct kl_problem_def *kl_problem_for_kind(enum kl_problem_kind kind);
/* The table itself, for tests and documentation. */
const struct kl_problem_def *kl_problem_table(size_t *n);

/* Field errors of an invalid request, one per offending field (bounded). */
#define KL_FIELD_ERRORS_MAX 16
struct kl_field_error {
    char field[64];
    char message[192];
};
struct kl_field_errors {
    struct kl_field_error e[KL_FIELD_ERRORS_MAX];
    size_t n;
    size_t dropped; /* errors past the maximum, counted but not kept */
};

void kl_field_errors_init(struct kl_field_errors *fe);
/* Adds one error. `field` may come from the client: it is cut to fit and
 * anything but printable ASCII becomes '?'. */
void kl_field_errors_add(struct kl_field_errors *fe, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The entry for `field`, or NULL. */
const struct kl_field_error *kl_field_errors_find(const struct kl_field_errors *fe,
                                                  const char *field);

/* Fills `resp` with a problem of `def`: type, title, status, detail (may be
 * NULL), instance (the request path), request_id, errors[] (when `fe` has
 * any), `job` (may be NULL; not consumed: ConflictProblem), and the headers
 * the status calls for (Retry-After). Other headers (Allow, WWW-Authenticate)
 * are the caller's. */
void kl_problem_respond(struct kl_api_resp *resp, const struct kl_api_req *req,
                        const struct kl_problem_def *def, const char *detail,
                        const struct kl_field_errors *fe, const struct cJSON *job);

/* The problem for an engine error: the message becomes `detail` where the
 * table says so, and always goes to the access log for 5xx. */
void kl_problem_from_err(struct kl_api_resp *resp, const struct kl_api_req *req,
                         const struct kl_err *err, const struct cJSON *job);

/* An invalid request: detail "<n> invalid field(s)" or `detail` when given. */
void kl_problem_invalid(struct kl_api_resp *resp, const struct kl_api_req *req, const char *detail,
                        const struct kl_field_errors *fe);

#endif
