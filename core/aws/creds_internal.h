/*
 * Helpers shared by the credential providers (creds_*.c): filling and
 * parsing credentials, bounded file reads, secret-safe cleanup, and the STS
 * web-identity exchange used by both the env and the profile provider.
 * Not a public interface: code outside core/aws/creds*.c uses creds.h.
 */
#ifndef KL_AWS_CREDS_INTERNAL_H
#define KL_AWS_CREDS_INTERNAL_H

#include "core/aws/creds.h"

#include <stddef.h>
#include <stdint.h>

struct cJSON;
struct kl_buf;
struct kl_http_response;

/* Responses from STS, the container endpoint and IMDS are small; anything
 * bigger is refused rather than buffered. */
#define KL_CREDS_MAX_RESPONSE ((size_t)64 << 10)
/* Web identity and container authorization token files. */
#define KL_CREDS_MAX_TOKEN_FILE ((size_t)64 << 10)
#define KL_CREDS_MAX_PATH 1024
#define KL_CREDS_MAX_URL 2048

/* What a provider keeps from struct kl_cred_chain_config: the borrowed env,
 * clock and transport, and its own copies of the strings. */
struct kl_creds_settings {
    const struct kl_env *env;
    const struct kl_clock *clock;
    struct kl_http *http;
    char *profile;       /* NULL: AWS_PROFILE, then "default" */
    char *region;        /* NULL: resolved when needed */
    char *sts_endpoint;  /* NULL: the standard resolution */
    char *imds_endpoint; /* NULL: the standard resolution */
};
/* `need_http` also requires clock and http (providers that go to the network). */
int kl_creds_settings_init(struct kl_creds_settings *s, const struct kl_cred_chain_config *cfg,
                           int need_http, const char *who, struct kl_err *err);
void kl_creds_settings_free(struct kl_creds_settings *s);

/* Copies the strings into `out` (initialised); `session_token` may be NULL or
 * "" (long-term keys). `out` is written only on success. */
int kl_creds_fill(struct kl_aws_creds *out, const char *access_key_id,
                  const char *secret_access_key, const char *session_token, int64_t expires_at_ms,
                  const char *source, struct kl_err *err);

/* RFC 3339 / ISO-8601 date-time as AWS sends it: YYYY-MM-DDTHH:MM:SS, optional
 * fraction, then Z or +HH:MM / -HH:MM. Returns 0 and the epoch ms, or -1. */
int kl_creds_parse_time(const char *s, int64_t *out_ms);

/* Reads a whole regular file of at most `max` bytes into a NUL-terminated
 * malloc'ed buffer the caller wipes and frees (kl_creds_free_secret).
 * KL_ERR_NOT_FOUND when the file does not exist, KL_ERR_LIMIT when too big,
 * KL_ERR_IO otherwise. `what` names the file in messages. */
int kl_creds_read_file(const char *path, size_t max, const char *what, char **out, size_t *len_out,
                       struct kl_err *err);

/* A token file (web identity, container authorization): read fresh, trimmed of
 * surrounding whitespace; empty or with control characters inside is
 * KL_ERR_INVALID; a missing file is KL_ERR_IO (the setting names it, so it
 * must be there). Caller wipes and frees. */
int kl_creds_read_token_file(const char *path, const char *what, char **out, struct kl_err *err);

/* Wipes a NUL-terminated secret and frees it; NULL is a no-op. */
void kl_creds_free_secret(char *s);

/* Expands a leading "~/" with HOME from `env`. KL_ERR_INVALID when HOME is
 * needed but unset, KL_ERR_LIMIT when the result does not fit. */
int kl_creds_expand_path(const struct kl_env *env, const char *path, char *out, size_t cap,
                         struct kl_err *err);

/* Wipes the body (it may carry credentials) and frees the response. */
void kl_creds_response_free(struct kl_http_response *resp);

/* Wipes every string in the tree, then deletes it; NULL is a no-op. */
void kl_creds_json_delete(struct cJSON *json);

/* Appends "&name=value" (no '&' when `b` is empty), form-urlencoded. */
int kl_creds_form_append(struct kl_buf *b, const char *name, const char *value, struct kl_err *err);

/* Trims trailing '/' characters from a URL in place. */
void kl_creds_trim_slashes(char *url);

/* True when `s` equals "true" in any case (how SDKs read boolean variables). */
int kl_creds_env_true(const struct kl_env *env, const char *name);

/* The STS AssumeRoleWithWebIdentity exchange. */
struct kl_creds_web_identity {
    struct kl_http *http;
    const struct kl_clock *clock;
    const char *sts_url;      /* e.g. https://sts.us-east-1.amazonaws.com; no trailing slash */
    const char *role_arn;     /* required */
    const char *token_file;   /* required; re-read on every call (it rotates) */
    const char *session_name; /* NULL: "kinesis-loader-<epoch s>" */
    const char *source;       /* goes to creds.source */
};
int kl_creds_web_identity_fetch(const struct kl_creds_web_identity *p, struct kl_aws_creds *out,
                                struct kl_err *err);

/* The STS endpoint for the web identity exchange: `explicit_url`, else
 * AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL, else the regional endpoint of
 * `region`, else (no region known) the global https://sts.amazonaws.com. */
int kl_creds_sts_url(const struct kl_env *env, const char *explicit_url, const char *region,
                     char *out, size_t cap, struct kl_err *err);

/* Parses an STS AssumeRoleWithWebIdentity response of any status into
 * credentials or a mapped error (KL_ERR_AUTH for refused tokens,
 * KL_ERR_UNAVAILABLE for throttling and 5xx, KL_ERR_UPSTREAM otherwise). */
int kl_creds_sts_parse(long status, const char *body, size_t len, const char *source,
                       struct kl_aws_creds *out, struct kl_err *err);

/* Parses the JSON the container endpoint and IMDS answer with: AccessKeyId,
 * SecretAccessKey, Token, Expiration, and for IMDS Code/Message. A Code other
 * than "Success" is an error. `what` names the source in messages. */
int kl_creds_json_parse(const char *body, size_t len, int need_expiration, const char *what,
                        const char *source, struct kl_aws_creds *out, struct kl_err *err);

/* Maps an HTTP status from a credentials endpoint to an enum kl_err_code. */
int kl_creds_status_code(long status);

#endif
