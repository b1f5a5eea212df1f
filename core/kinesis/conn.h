/*
 * A ready-to-use Kinesis connection built from the AWS settings: HTTP
 * transport, credential chain, region, endpoint and client, created and
 * freed together. The commands and the service use it; the pieces stay
 * usable on their own for tests.
 */
#ifndef KL_KINESIS_CONN_H
#define KL_KINESIS_CONN_H

#include <stdatomic.h>
#include <stdint.h>

struct kl_env;
struct kl_clock;
struct kl_err;

struct kl_kinesis_conn_options {
    const struct kl_env *env;     /* NULL: the process environment */
    const struct kl_clock *clock; /* NULL: the system clock */
    const char *region;           /* NULL: AWS_REGION, AWS_DEFAULT_REGION, profile */
    const char *endpoint;         /* NULL: AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL, AWS */
    const char *profile;          /* NULL: AWS_PROFILE, then "default" */
    const char *access_key_id;    /* explicit keys; NULL: the credential chain */
    const char *secret_access_key;
    const char *session_token;
    int max_attempts; /* 0: the client's default */
    long timeout_ms;  /* 0: the client's default */
    /* One call's deadline, retries included; 0: KL_KINESIS_CALL_TIMEOUT_S
     * from the environment (seconds, 1..3600), else the client's 60 s. */
    int64_t call_deadline_ms;
    const atomic_bool *cancel;
};

struct kl_kinesis_conn {
    struct kl_http *http;
    struct kl_cred_provider *creds;
    struct kl_kinesis *client;
    char region[64];
    char endpoint[512];
};

/* Region resolution falls back to us-east-1 only when an endpoint override
 * is set (emulators ignore the region); without either, it is an error. */
int kl_kinesis_conn_init(struct kl_kinesis_conn *c, const struct kl_kinesis_conn_options *o,
                         struct kl_err *err);
/* Frees what init created; safe on a zeroed or half-initialised struct. */
void kl_kinesis_conn_free(struct kl_kinesis_conn *c);

#endif
