/*
 * What the files of the Kinesis client share (client.c, streams.c,
 * records.c) and nothing else includes: the client's state and the call
 * path the operations go through.
 */
#ifndef KL_KINESIS_CLIENT_INTERNAL_H
#define KL_KINESIS_CLIENT_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/kinesis/client.h"

struct cJSON;
struct kl_err;

#define KL_KINESIS_TARGET_PREFIX "Kinesis_20131202."

struct kl_kinesis {
    char *endpoint_url; /* endpoint with the path "/" */
    char *region;
    struct kl_http *http;
    struct kl_cred_provider *creds;
    const struct kl_clock *clock;
    int max_attempts;
    int64_t backoff_base_ms;
    int64_t backoff_cap_ms;
    long connect_timeout_ms;
    long timeout_ms;
    int64_t call_deadline_ms;
    bool aws; /* the endpoint is AWS's, not an emulator's */
    const atomic_bool *cancel;
    atomic_uint_fast64_t requests;
    atomic_uint_fast64_t retries;
    atomic_uint_fast64_t throttles;
    atomic_uint_fast64_t failures;
};

/* Sends `request` as operation `op`, retrying what may pass until the
 * call's deadline; on success `*out` is the answer, which the caller
 * deletes. `opts` may be NULL (the client's deadline, nobody told of waits). */
int kl_kinesis_call_op(struct kl_kinesis *k, struct kl_kinesis_call *opts, const char *op,
                       const struct cJSON *request, struct cJSON **out, struct kl_err *err);

/* Where a streamed answer goes (GetRecords): `begin` before each attempt,
 * `feed` with the pieces of a 200 answer's body as they arrive, `end` once it
 * is complete. Errors of `feed` and `end` end the attempt with them
 * (KL_ERR_UNAVAILABLE: another attempt may pass). */
struct kl_kinesis_sink {
    void *ctx;
    void (*begin)(void *ctx);
    int (*feed)(void *ctx, const char *data, size_t n, struct kl_err *err);
    int (*end)(void *ctx, struct kl_err *err);
};

/* kl_kinesis_call_op with the answer streamed to `sink`. */
int kl_kinesis_call_stream(struct kl_kinesis *k, struct kl_kinesis_call *opts, const char *op,
                           const struct cJSON *request, const struct kl_kinesis_sink *sink,
                           struct kl_err *err);

/* True once the client's cancel flag is set (kl_kinesis_config.cancel). */
bool kl_kinesis_cancelled(const struct kl_kinesis *k);
/* The wait before retry `n` (1-based): full jitter up to the capped exponential. */
int64_t kl_kinesis_backoff_ms(const struct kl_kinesis *k, int n);

/* A string member; JSON null and other types count as absent. */
const char *kl_kinesis_jstr(const struct cJSON *obj, const char *key);
/* A number member; false when absent or not a number. */
bool kl_kinesis_jnum(const struct cJSON *obj, const char *key, double *out);
/* Copies `src` into a fixed field; KL_ERR_UPSTREAM when it does not fit. */
int kl_kinesis_copy_field(char *dst, size_t cap, const char *src, const char *what,
                          struct kl_err *err);
/* KL_ERR_NOMEM, "out of memory". */
int kl_kinesis_nomem(struct kl_err *err);
/* {"StreamName": stream}, or NULL when out of memory. */
struct cJSON *kl_kinesis_stream_request(const char *stream);
/* KL_ERR_INVALID for a name Kinesis would refuse. */
int kl_kinesis_check_stream_name(const char *stream, struct kl_err *err);

#endif
