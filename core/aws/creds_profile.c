/*
 * Credentials from a profile of the shared files: static keys, or a role
 * assumed with a web identity token (role_arn + web_identity_token_file).
 * Profile features we do not implement (credential_process, SSO, role
 * chaining through source_profile / credential_source) fail with a message
 * that says so, instead of being skipped silently.
 */
#include "core/aws/aws_config.h"
#include "core/aws/creds.h"
#include "core/aws/creds_internal.h"
#include "core/util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct profile_provider {
    struct kl_cred_provider base;
    struct kl_creds_settings s;
};

static const char *get(const struct kl_aws_profile *p, const char *key)
{
    const char *v = kl_aws_profile_get(p, key);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static int unsupported(const struct kl_aws_profile *p, const char *what, struct kl_err *err)
{
    return kl_err_set(err, KL_ERR_INVALID,
                      "profile %s uses %s, which kinesis-loader does not support; use static "
                      "keys, web_identity_token_file, or the environment instead",
                      p->name, what);
}

static int web_identity(struct profile_provider *pp, const struct kl_aws_profile *p,
                        const char *role, const char *file, struct kl_aws_creds *out,
                        struct kl_err *err)
{
    char path[KL_CREDS_MAX_PATH], region[64], url[KL_CREDS_MAX_URL], source[48];
    const char *reg = pp->s.region;
    struct kl_creds_web_identity w;
    int rc;

    if (pp->s.http == NULL || pp->s.clock == NULL)
        return kl_err_set(err, KL_ERR_INVALID,
                          "profile %s assumes a role, which needs an HTTP transport and a clock",
                          p->name);
    rc = kl_creds_expand_path(pp->s.env, file, path, sizeof path, err);
    if (rc != KL_OK)
        return rc;
    if (reg == NULL && pp->s.sts_endpoint == NULL) {
        rc = kl_aws_region_resolve(pp->s.env, p->name, region, sizeof region, err);
        if (rc == KL_OK)
            reg = region;
        else if (rc != KL_ERR_NOT_FOUND)
            return rc;
    }
    rc = kl_creds_sts_url(pp->s.env, pp->s.sts_endpoint, reg, url, sizeof url, err);
    if (rc != KL_OK)
        return rc;
    snprintf(source, sizeof source, "profile:%.39s", p->name);
    memset(&w, 0, sizeof w);
    w.http = pp->s.http;
    w.clock = pp->s.clock;
    w.sts_url = url;
    w.role_arn = role;
    w.token_file = path;
    w.session_name = get(p, "role_session_name");
    w.source = source;
    return kl_creds_web_identity_fetch(&w, out, err);
}

static int from_profile(struct profile_provider *pp, const struct kl_aws_profile *p,
                        struct kl_aws_creds *out, struct kl_err *err)
{
    const char *key = get(p, "aws_access_key_id");
    const char *secret = get(p, "aws_secret_access_key");
    const char *role = get(p, "role_arn");
    char source[48];

    if (role != NULL) {
        const char *file = get(p, "web_identity_token_file");
        if (file != NULL)
            return web_identity(pp, p, role, file, out, err);
        if (get(p, "source_profile") != NULL)
            return unsupported(p, "role_arn with source_profile (role chaining)", err);
        if (get(p, "credential_source") != NULL)
            return unsupported(p, "role_arn with credential_source", err);
        return kl_err_set(err, KL_ERR_INVALID,
                          "profile %s has role_arn but no web_identity_token_file", p->name);
    }
    if (key != NULL || secret != NULL) {
        if (key == NULL || secret == NULL)
            return kl_err_set(err, KL_ERR_INVALID, "profile %s has %s but no %s", p->name,
                              key != NULL ? "aws_access_key_id" : "aws_secret_access_key",
                              key != NULL ? "aws_secret_access_key" : "aws_access_key_id");
        snprintf(source, sizeof source, "profile:%.39s", p->name);
        return kl_creds_fill(out, key, secret, get(p, "aws_session_token"), 0, source, err);
    }
    if (get(p, "credential_process") != NULL)
        return unsupported(p, "credential_process", err);
    if (get(p, "sso_session") != NULL || get(p, "sso_start_url") != NULL ||
        get(p, "sso_account_id") != NULL)
        return unsupported(p, "IAM Identity Center (SSO)", err);
    if (get(p, "login_session") != NULL)
        return unsupported(p, "login_session (aws login)", err);
    return kl_err_set(err, KL_ERR_NOT_FOUND, "profile %s has no credentials", p->name);
}

static int profile_resolve(void *impl, struct kl_aws_creds *out, struct kl_err *err)
{
    struct profile_provider *pp = impl;
    struct kl_aws_profile p;
    char name[KL_AWS_PROFILE_NAME_MAX];
    bool named;
    int rc;

    kl_aws_profile_init(&p);
    rc = kl_aws_profile_name(pp->s.env, pp->s.profile, name, sizeof name, &named, err);
    if (rc != KL_OK)
        goto cleanup;
    rc =
        kl_aws_profile_load(pp->s.env, name, KL_AWS_FILE_CONFIG | KL_AWS_FILE_CREDENTIALS, &p, err);
    if (rc != KL_OK)
        goto cleanup;
    if (!p.in_config && !p.in_credentials) {
        /* A profile asked for by name must exist; the default one may be absent. */
        rc = kl_err_set(err, named ? KL_ERR_INVALID : KL_ERR_NOT_FOUND,
                        "profile %s is in neither %s nor %s", name,
                        p.credentials_path[0] != '\0' ? p.credentials_path
                                                      : "the credentials file (no HOME)",
                        p.config_path[0] != '\0' ? p.config_path : "the config file (no HOME)");
        goto cleanup;
    }
    rc = from_profile(pp, &p, out, err);
cleanup:
    kl_aws_profile_free(&p);
    return rc;
}

static void profile_destroy(void *impl)
{
    struct profile_provider *pp = impl;
    kl_creds_settings_free(&pp->s);
    free(pp);
}

static const struct kl_cred_provider_ops profile_ops = {profile_resolve, profile_destroy};

struct kl_cred_provider *kl_cred_profile_create(const struct kl_cred_chain_config *cfg,
                                                struct kl_err *err)
{
    struct profile_provider *pp = calloc(1, sizeof *pp);

    if (pp == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "out of memory creating profile credentials");
        return NULL;
    }
    /* The transport is needed only for web identity profiles; it is checked there. */
    if (kl_creds_settings_init(&pp->s, cfg, 0, "profile", err) != KL_OK) {
        free(pp);
        return NULL;
    }
    pp->base.ops = &profile_ops;
    pp->base.impl = pp;
    return &pp->base;
}
