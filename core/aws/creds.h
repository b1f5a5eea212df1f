/*
 * AWS credentials and the provider chain that finds them: explicit config,
 * environment, shared files, web identity (STS), container endpoint, EC2
 * IMDSv2. The chain caches temporary credentials and refreshes them before
 * they expire. Signing is not here (see sigv4.h).
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
/* Deep copy; `dst` must be initialised or freed. */
int kl_aws_creds_copy(struct kl_aws_creds *dst, const struct kl_aws_creds *src,
                      struct kl_err *err);

struct kl_cred_provider_ops {
    /* Fills `out` (initialised by the caller) with credentials the caller owns.
     * KL_ERR_NOT_FOUND means "this provider has nothing": the chain tries the
     * next. Any other error is final for the chain. */
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

/* NULL is a no-op. */
void kl_cred_provider_destroy(struct kl_cred_provider *p);

struct kl_cred_chain_config {
    const struct kl_env *env;     /* required: where AWS_* variables come from */
    const struct kl_clock *clock; /* required */
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

/* The default chain with caching. Thread-safe: concurrent resolves share one
 * cached copy; a refresh near expiry runs in one caller while the others keep
 * using the still-valid credentials. Returns NULL on error. */
struct kl_cred_provider *kl_cred_chain_create(const struct kl_cred_chain_config *cfg,
                                              struct kl_err *err);

/* Region: AWS_REGION, AWS_DEFAULT_REGION, then `region` of the profile in the
 * config file. KL_ERR_NOT_FOUND when none is set. `profile` may be NULL. */
int kl_aws_region_resolve(const struct kl_env *env, const char *profile, char *out, size_t cap,
                          struct kl_err *err);

/* Endpoint URL for a service: AWS_ENDPOINT_URL_<SERVICE_ENV> (e.g. KINESIS, STS),
 * then AWS_ENDPOINT_URL, then https://<service>.<region>.amazonaws.com
 * (.amazonaws.com.cn in cn- regions). No trailing slash. */
int kl_aws_endpoint_resolve(const struct kl_env *env, const char *service_env,
                            const char *service, const char *region, char *out, size_t cap,
                            struct kl_err *err);

#endif
