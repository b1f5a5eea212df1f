/*
 * Credentials from the process environment: AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and AWS_CREDENTIAL_EXPIRATION.
 * Half a key pair is a configuration error, not "nothing here".
 */
#include "core/aws/creds.h"
#include "core/aws/creds_internal.h"
#include "core/util/env.h"
#include "core/util/err.h"

#include <stdlib.h>

struct env_provider {
    struct kl_cred_provider base;
    const struct kl_env *env;
};

static int env_resolve(void *impl, struct kl_aws_creds *out, struct kl_err *err)
{
    struct env_provider *p = impl;
    const char *key = kl_env_get(p->env, "AWS_ACCESS_KEY_ID");
    const char *secret = kl_env_get(p->env, "AWS_SECRET_ACCESS_KEY");
    const char *token = kl_env_get(p->env, "AWS_SESSION_TOKEN");
    const char *expiration = kl_env_get(p->env, "AWS_CREDENTIAL_EXPIRATION");
    int64_t expires_at = 0;

    if (key == NULL && secret == NULL)
        return kl_err_set(err, KL_ERR_NOT_FOUND, "AWS_ACCESS_KEY_ID is not set");
    if (secret == NULL)
        return kl_err_set(err, KL_ERR_INVALID,
                          "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
    if (key == NULL)
        return kl_err_set(err, KL_ERR_INVALID,
                          "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not");
    if (expiration != NULL && kl_creds_parse_time(expiration, &expires_at) != 0)
        return kl_err_set(err, KL_ERR_INVALID,
                          "AWS_CREDENTIAL_EXPIRATION=%.64s is not an ISO-8601 time", expiration);
    return kl_creds_fill(out, key, secret, token, expires_at, "env", err);
}

static void env_destroy(void *impl)
{
    free(impl);
}

static const struct kl_cred_provider_ops env_ops = {env_resolve, env_destroy};

struct kl_cred_provider *kl_cred_env_create(const struct kl_cred_chain_config *cfg,
                                            struct kl_err *err)
{
    struct env_provider *p;

    if (cfg == NULL || cfg->env == NULL) {
        kl_err_set(err, KL_ERR_INVALID, "env credentials: an env is required");
        return NULL;
    }
    p = calloc(1, sizeof *p);
    if (p == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "out of memory creating env credentials");
        return NULL;
    }
    p->env = cfg->env;
    p->base.ops = &env_ops;
    p->base.impl = p;
    return &p->base;
}
