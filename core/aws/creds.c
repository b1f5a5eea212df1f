/*
 * The credentials record, the fixed-keys provider, the ordered list of
 * providers, and the default chain that strings them together behind the
 * cache (creds_cache.c). The providers that look things up live in their own
 * creds_<source>.c files.
 */
#include "core/aws/creds.h"
#include "core/aws/creds_internal.h"
#include "core/util/err.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kl_aws_creds_init(struct kl_aws_creds *c)
{
    memset(c, 0, sizeof *c);
}

void kl_aws_creds_free(struct kl_aws_creds *c)
{
    if (c == NULL)
        return;
    kl_creds_free_secret(c->access_key_id);
    kl_creds_free_secret(c->secret_access_key);
    kl_creds_free_secret(c->session_token);
    kl_aws_creds_init(c);
}

int kl_aws_creds_copy(struct kl_aws_creds *dst, const struct kl_aws_creds *src, struct kl_err *err)
{
    struct kl_aws_creds c;
    int rc;

    if (src->access_key_id == NULL || src->secret_access_key == NULL)
        return kl_err_set(err, KL_ERR_INVALID, "cannot copy incomplete credentials");
    kl_aws_creds_init(&c);
    rc = kl_creds_fill(&c, src->access_key_id, src->secret_access_key, src->session_token,
                       src->expires_at_ms, src->source, err);
    if (rc != KL_OK)
        return rc;
    kl_aws_creds_free(dst);
    *dst = c;
    return KL_OK;
}

void kl_cred_provider_destroy(struct kl_cred_provider *p)
{
    if (p != NULL)
        p->ops->destroy(p->impl);
}

/* ---- fixed keys ---- */

struct static_provider {
    struct kl_cred_provider base;
    struct kl_aws_creds creds; /* access_key_id NULL: nothing configured */
};

static int static_resolve(void *impl, struct kl_aws_creds *out, struct kl_err *err)
{
    struct static_provider *s = impl;
    if (s->creds.access_key_id == NULL)
        return kl_err_set(err, KL_ERR_NOT_FOUND, "no keys configured");
    return kl_aws_creds_copy(out, &s->creds, err);
}

static void static_destroy(void *impl)
{
    struct static_provider *s = impl;
    kl_aws_creds_free(&s->creds);
    free(s);
}

static const struct kl_cred_provider_ops static_ops = {static_resolve, static_destroy};

struct kl_cred_provider *kl_cred_static_create(const char *access_key_id,
                                               const char *secret_access_key,
                                               const char *session_token, const char *source,
                                               struct kl_err *err)
{
    struct static_provider *s = NULL;
    int has_key = access_key_id != NULL && access_key_id[0] != '\0';
    int has_secret = secret_access_key != NULL && secret_access_key[0] != '\0';

    if (has_key != has_secret) {
        kl_err_set(err, KL_ERR_INVALID, "%s credentials: %s is set but %s is not",
                   source != NULL ? source : "explicit",
                   has_key ? "the access key id" : "the secret access key",
                   has_key ? "the secret access key" : "the access key id");
        return NULL;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "out of memory creating a credentials provider");
        return NULL;
    }
    kl_aws_creds_init(&s->creds);
    if (has_key && kl_creds_fill(&s->creds, access_key_id, secret_access_key, session_token, 0,
                                 source != NULL ? source : "explicit", err) != KL_OK) {
        free(s);
        return NULL;
    }
    s->base.ops = &static_ops;
    s->base.impl = s;
    return &s->base;
}

/* ---- ordered list ---- */

struct list_provider {
    struct kl_cred_provider base;
    struct kl_cred_provider *providers[KL_CRED_LIST_MAX];
    char names[KL_CRED_LIST_MAX][24];
    size_t n;
};

static int list_resolve(void *impl, struct kl_aws_creds *out, struct kl_err *err)
{
    struct list_provider *l = impl;
    char tried[160];
    struct kl_err last = {KL_OK, ""};
    size_t pos = 0;

    tried[0] = '\0';
    for (size_t i = 0; i < l->n; i++) {
        struct kl_aws_creds c;
        struct kl_err e = {KL_OK, ""};
        int rc;

        kl_aws_creds_init(&c);
        rc = kl_cred_provider_resolve(l->providers[i], &c, &e);
        if (rc == KL_OK) {
            kl_aws_creds_free(out);
            *out = c;
            return KL_OK;
        }
        kl_aws_creds_free(&c);
        if (rc != KL_ERR_NOT_FOUND) {
            if (err != NULL) {
                *err = e;
                err->code = (enum kl_err_code)rc;
                kl_err_prefix(err, "%s credentials", l->names[i]);
            }
            return rc;
        }
        last = e;
        if (pos < sizeof tried) {
            int w =
                snprintf(tried + pos, sizeof tried - pos, "%s%s", i > 0 ? ", " : "", l->names[i]);
            if (w > 0)
                pos += (size_t)w;
        }
    }
    return kl_err_set(err, KL_ERR_NOT_FOUND, "no AWS credentials found; tried: %s (last: %s)",
                      tried, last.msg[0] != '\0' ? last.msg : "nothing configured");
}

static void list_destroy(void *impl)
{
    struct list_provider *l = impl;
    for (size_t i = 0; i < l->n; i++)
        kl_cred_provider_destroy(l->providers[i]);
    free(l);
}

static const struct kl_cred_provider_ops list_ops = {list_resolve, list_destroy};

struct kl_cred_provider *kl_cred_list_create(struct kl_cred_provider *const *providers,
                                             const char *const *names, size_t n, struct kl_err *err)
{
    struct list_provider *l = NULL;

    if (n > KL_CRED_LIST_MAX) {
        kl_err_set(err, KL_ERR_INVALID, "at most %d credential providers", KL_CRED_LIST_MAX);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        if (providers[i] == NULL) {
            kl_err_set(err, KL_ERR_INVALID, "credential provider %zu is NULL", i);
            goto fail;
        }
    }
    l = calloc(1, sizeof *l);
    if (l == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "out of memory creating the credential chain");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        l->providers[i] = providers[i];
        snprintf(l->names[i], sizeof l->names[i], "%s", names != NULL ? names[i] : "provider");
    }
    l->n = n;
    l->base.ops = &list_ops;
    l->base.impl = l;
    return &l->base;
fail:
    for (size_t i = 0; i < n && i < KL_CRED_LIST_MAX; i++)
        kl_cred_provider_destroy(providers[i]);
    return NULL;
}

/* ---- the default chain ---- */

struct kl_cred_provider *kl_cred_chain_create(const struct kl_cred_chain_config *cfg,
                                              struct kl_err *err)
{
    static const char *const names[] = {"explicit",     "env",       "profile",
                                        "web identity", "container", "IMDS"};
    struct kl_cred_provider *p[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    struct kl_cred_provider *list;

    if (cfg == NULL || cfg->env == NULL || cfg->clock == NULL || cfg->http == NULL) {
        kl_err_set(err, KL_ERR_INVALID, "credential chain: env, clock and http are required");
        return NULL;
    }
    if (cfg->access_key_id == NULL && cfg->secret_access_key != NULL) {
        kl_err_set(err, KL_ERR_INVALID,
                   "explicit credentials: a secret access key is set without an access key id");
        return NULL;
    }
    p[0] = kl_cred_static_create(cfg->access_key_id, cfg->secret_access_key, cfg->session_token,
                                 "explicit", err);
    if (p[0] == NULL)
        goto fail;
    p[1] = kl_cred_env_create(cfg, err);
    if (p[1] == NULL)
        goto fail;
    p[2] = kl_cred_profile_create(cfg, err);
    if (p[2] == NULL)
        goto fail;
    p[3] = kl_cred_web_identity_create(cfg, err);
    if (p[3] == NULL)
        goto fail;
    p[4] = kl_cred_container_create(cfg, err);
    if (p[4] == NULL)
        goto fail;
    p[5] = kl_cred_imds_create(cfg, err);
    if (p[5] == NULL)
        goto fail;
    list = kl_cred_list_create(p, names, 6, err);
    if (list == NULL)
        return NULL; /* the list destroyed the providers */
    return kl_cred_cache_create(list, cfg->clock, cfg->refresh_before_ms, err);
fail:
    for (size_t i = 0; i < 6; i++)
        kl_cred_provider_destroy(p[i]);
    return NULL;
}
