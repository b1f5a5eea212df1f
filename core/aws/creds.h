/*
 * AWS credentials and the provider chain that finds them: explicit config,
 * environment, shared files, web identity (STS), container endpoint, EC2
 * IMDSv2. The chain caches temporary credentials and refreshes them before
 * they expire. Signing is not here (see sigv4.h); neither is the parsing of
 * the shared files (aws_config.h).
 */
#ifndef KL_AWS_CREDS_H
#define KL_AWS_CREDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kl_err;
struct kl_env;
struct kl_clock;
struct kl_http;

struct kl_aws_creds {
    char *access_key_id;     /* heap; wiped and freed by kl_aws_creds_free */
    char *secret_access_key; /* heap; wiped and freed by kl_aws_creds_free */
    char *session_token;     /* heap or NULL for long-term keys */
    int64_t expires_at_ms;   /* epoch ms; 0 = does not expire */
    char source[48];         /* which provider: "explicit", "env", "profile:NAME", ... */
};

void kl_aws_creds_init(struct kl_aws_creds *c);
/* Wipes the secrets (OPENSSL_cleanse) and frees them; the struct is re-initialised. */
void kl_aws_creds_free(struct kl_aws_creds *c);
/* Deep copy; `dst` must be initialised or freed. `dst` is written only on success. */
int kl_aws_creds_copy(struct kl_aws_creds *dst, const struct kl_aws_creds *src, struct kl_err *err);

struct kl_cred_provider_ops {
    /* Fills `out` (initialised by the caller) with credentials the caller owns.
     * KL_ERR_NOT_FOUND means "this provider has nothing": the chain tries the
     * next. Any other error is final for the chain. Error messages never
     * contain secrets. */
    int (*resolve)(void *impl, struct kl_aws_creds *out, struct kl_err *err);
    void (*destroy)(void *impl);
};

struct kl_cred_provider {
    const struct kl_cred_provider_ops *ops;
    void *impl;
};

static inline int kl_cred_provider_resolve(struct kl_cred_provider *p, struct kl_aws_creds *out,
                                           struct kl_err *err)
{
    return p->ops->resolve(p->impl, out, err);
}

/* NULL is a no-op. After the call `p` is no longer valid. */
void kl_cred_provider_destroy(struct kl_cred_provider *p);

struct kl_cred_chain_config {
    const struct kl_env *env;     /* required: where AWS_* variables come from; borrowed */
    const struct kl_clock *clock; /* required; borrowed */
    struct kl_http *http;         /* required for STS, container and IMDS; borrowed */
    /* Explicit keys win over everything when access_key_id is set. Copied. */
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token;
    const char *profile; /* overrides AWS_PROFILE; NULL: env, then "default" */
    const char *region;  /* for the regional STS endpoint; NULL: resolved from env/profile */
    /* Endpoint overrides for tests and unusual networks; NULL: the standard ones
     * (AWS_ENDPOINT_URL_STS/AWS_ENDPOINT_URL, AWS_EC2_METADATA_SERVICE_ENDPOINT). */
    const char *sts_endpoint;
    const char *imds_endpoint;
    /* Refresh temporary credentials this long before they expire (default 5 min). */
    int64_t refresh_before_ms;
};

#define KL_CRED_REFRESH_BEFORE_MS_DEFAULT ((int64_t)5 * 60 * 1000)
/* While cached credentials are still valid, a refresh is not attempted again
 * sooner than this after the previous attempt (so a failing or short-lived
 * source is not hammered by every request). */
#define KL_CRED_REFRESH_RETRY_MS ((int64_t)10 * 1000)

/* The default chain with caching: explicit -> env -> profile -> web identity
 * -> container -> IMDS. Thread-safe: concurrent resolves share one cached
 * copy; a refresh near expiry runs in one caller while the others keep using
 * the still-valid credentials; callers wait only when nothing valid is cached.
 * A failed refresh keeps still-valid credentials (and logs a warning). Each
 * resolve hands out a deep copy the caller frees with kl_aws_creds_free.
 * Returns NULL on error (KL_ERR_INVALID for an inconsistent config). */
struct kl_cred_provider *kl_cred_chain_create(const struct kl_cred_chain_config *cfg,
                                              struct kl_err *err);

/*
 * The building blocks of the chain, for tests and custom chains. Each copies
 * what it needs from `cfg` (env, clock and http stay borrowed) and reads the
 * environment and files again on every resolve. None of them caches.
 */

/* Fixed keys (the "explicit" provider). NOT_FOUND when access_key_id is NULL;
 * KL_ERR_INVALID at creation when only one of key and secret is given. */
struct kl_cred_provider *kl_cred_static_create(const char *access_key_id,
                                               const char *secret_access_key,
                                               const char *session_token, const char *source,
                                               struct kl_err *err);
/* AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and the optional
 * AWS_CREDENTIAL_EXPIRATION (ISO-8601). */
struct kl_cred_provider *kl_cred_env_create(const struct kl_cred_chain_config *cfg,
                                            struct kl_err *err);
/* Static keys or a web-identity role from the shared credentials/config files. */
struct kl_cred_provider *kl_cred_profile_create(const struct kl_cred_chain_config *cfg,
                                                struct kl_err *err);
/* AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE -> STS AssumeRoleWithWebIdentity. */
struct kl_cred_provider *kl_cred_web_identity_create(const struct kl_cred_chain_config *cfg,
                                                     struct kl_err *err);
/* AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI (ECS task role, EKS Pod Identity). */
struct kl_cred_provider *kl_cred_container_create(const struct kl_cred_chain_config *cfg,
                                                  struct kl_err *err);
/* EC2 instance profile through IMDSv2 (no IMDSv1 fallback). */
struct kl_cred_provider *kl_cred_imds_create(const struct kl_cred_chain_config *cfg,
                                             struct kl_err *err);

#define KL_CRED_LIST_MAX 8
/* Tries `providers` in order: the first success wins, KL_ERR_NOT_FOUND moves
 * on, any other error stops with the provider's name prefixed. When all say
 * NOT_FOUND the error lists `names`. Takes ownership of the providers, also
 * when it fails. n <= KL_CRED_LIST_MAX. */
struct kl_cred_provider *kl_cred_list_create(struct kl_cred_provider *const *providers,
                                             const char *const *names, size_t n,
                                             struct kl_err *err);
/* The caching, refreshing wrapper described at kl_cred_chain_create. Takes
 * ownership of `inner`, also when it fails. refresh_before_ms <= 0: the default. */
struct kl_cred_provider *kl_cred_cache_create(struct kl_cred_provider *inner,
                                              const struct kl_clock *clock,
                                              int64_t refresh_before_ms, struct kl_err *err);

/* Region: AWS_REGION, AWS_DEFAULT_REGION, then `region` of the profile in the
 * config file (`profile`, else AWS_PROFILE, else "default"; may be NULL).
 * KL_ERR_NOT_FOUND when none is set; KL_ERR_INVALID for a value that is not a
 * region name (lower-case letters, digits, '-'). */
int kl_aws_region_resolve(const struct kl_env *env, const char *profile, char *out, size_t cap,
                          struct kl_err *err);

/* Endpoint URL for a service: AWS_ENDPOINT_URL_<SERVICE_ENV> (e.g. KINESIS, STS),
 * then AWS_ENDPOINT_URL (both skipped when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS
 * is true), then https://<service>.<region>.amazonaws.com (.amazonaws.com.cn in
 * cn- regions, the ISO partitions' suffixes in theirs). No trailing slash.
 * `service_env` may be NULL (only AWS_ENDPOINT_URL applies). `region` may be
 * NULL when an override is set; without either: KL_ERR_NOT_FOUND. An override
 * that is not an http(s) URL: KL_ERR_INVALID. */
int kl_aws_endpoint_resolve(const struct kl_env *env, const char *service_env, const char *service,
                            const char *region, char *out, size_t cap, struct kl_err *err);

#endif
