/*
 * The AWS shared files as a source of settings: locating them, picking the
 * profile, merging its properties from both files, and resolving the region
 * and service endpoints the way the AWS SDKs do. Credentials are built from
 * these properties in creds_profile.c, not here.
 */
#include "core/aws/aws_config.h"
#include "core/aws/creds.h"
#include "core/aws/creds_internal.h"
#include "core/aws/ini.h"
#include "core/util/env.h"
#include "core/util/err.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Which section a property came from; a higher rank wins. */
enum {
    RANK_NONE = 0,
    RANK_CONFIG_BARE_DEFAULT = 1, /* [default] in the config file */
    RANK_CONFIG_PROFILE = 2,      /* [profile NAME] in the config file */
    RANK_CREDENTIALS = 3,         /* [NAME] in the credentials file */
};

void kl_aws_profile_init(struct kl_aws_profile *p)
{
    memset(p, 0, sizeof *p);
}

void kl_aws_profile_free(struct kl_aws_profile *p)
{
    for (size_t i = 0; i < p->n_props; i++) {
        free(p->props[i].key);
        kl_creds_free_secret(p->props[i].value);
    }
    kl_aws_profile_init(p);
}

const char *kl_aws_profile_get(const struct kl_aws_profile *p, const char *key)
{
    const struct kl_aws_profile_prop *best = NULL;

    for (size_t i = 0; i < p->n_props; i++) {
        const struct kl_aws_profile_prop *pr = &p->props[i];
        if (pr->rank == RANK_CONFIG_BARE_DEFAULT && p->prefixed_default_seen)
            continue;
        if (strcmp(pr->key, key) == 0 && (best == NULL || pr->rank > best->rank))
            best = pr;
    }
    return best != NULL ? best->value : NULL;
}

/* Profile and property names the SDKs accept: [A-Za-z0-9_-/.%@:+]+ */
static bool valid_identifier(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        if (!isalnum((unsigned char)*s) && strchr("_-/.%@:+", *s) == NULL)
            return false;
    }
    return true;
}

int kl_aws_profile_name(const struct kl_env *env, const char *explicit_name, char *out, size_t cap,
                        bool *named, struct kl_err *err)
{
    const char *name = explicit_name;
    int n;

    if (name == NULL || name[0] == '\0')
        name = kl_env_get(env, "AWS_PROFILE");
    *named = name != NULL;
    if (name == NULL)
        name = "default";
    n = snprintf(out, cap, "%s", name);
    if (n < 0 || (size_t)n >= cap)
        return kl_err_set(err, KL_ERR_INVALID, "profile name is longer than %zu characters",
                          cap - 1);
    return KL_OK;
}

static int store(struct kl_aws_profile *p, const char *key, const char *value, int rank,
                 struct kl_err *err)
{
    struct kl_aws_profile_prop *pr = NULL;
    char *v;

    for (size_t i = 0; i < p->n_props; i++) {
        if (p->props[i].rank == rank && strcmp(p->props[i].key, key) == 0) {
            pr = &p->props[i];
            break;
        }
    }
    v = strdup(value);
    if (v == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "out of memory reading profile %s", p->name);
    if (pr != NULL) { /* later definitions win */
        kl_creds_free_secret(pr->value);
        pr->value = v;
        return KL_OK;
    }
    if (p->n_props == KL_AWS_PROFILE_MAX_PROPS) {
        kl_creds_free_secret(v);
        return kl_err_set(err, KL_ERR_LIMIT, "profile %s has more than %d properties", p->name,
                          KL_AWS_PROFILE_MAX_PROPS);
    }
    pr = &p->props[p->n_props];
    pr->key = strdup(key);
    if (pr->key == NULL) {
        kl_creds_free_secret(v);
        return kl_err_set(err, KL_ERR_NOMEM, "out of memory reading profile %s", p->name);
    }
    pr->value = v;
    pr->rank = rank;
    p->n_props++;
    return KL_OK;
}

struct parse_ctx {
    struct kl_aws_profile *out;
    enum kl_aws_file which;
    int rank; /* rank of the current section when it is the wanted profile, else 0 */
};

/* What a section header means in this file: the profile's rank, or 0 when the
 * section is not the wanted profile (another profile, sso-session, services,
 * or a name the SDKs would ignore). */
static int section_rank(struct parse_ctx *ctx, const char *section)
{
    const char *sp = section;
    char prefix[KL_INI_MAX_NAME];
    const char *suffix;
    size_t plen;

    while (*sp != '\0' && *sp != ' ' && *sp != '\t')
        sp++;
    if (*sp == '\0') { /* one word: [default] or [name] */
        if (ctx->which == KL_AWS_FILE_CREDENTIALS)
            return valid_identifier(section) && strcmp(section, ctx->out->name) == 0
                       ? RANK_CREDENTIALS
                       : RANK_NONE;
        /* In the config file only [default] may go without the "profile " prefix. */
        return strcmp(section, "default") == 0 && strcmp(ctx->out->name, "default") == 0
                   ? RANK_CONFIG_BARE_DEFAULT
                   : RANK_NONE;
    }
    if (ctx->which == KL_AWS_FILE_CREDENTIALS)
        return RANK_NONE; /* "[profile x]" is not a credentials-file profile */
    plen = (size_t)(sp - section);
    memcpy(prefix, section, plen);
    prefix[plen] = '\0';
    suffix = sp;
    while (*suffix == ' ' || *suffix == '\t')
        suffix++;
    if (strcmp(prefix, "profile") != 0 || !valid_identifier(suffix))
        return RANK_NONE;
    if (strcmp(suffix, "default") == 0)
        ctx->out->prefixed_default_seen = true;
    return strcmp(suffix, ctx->out->name) == 0 ? RANK_CONFIG_PROFILE : RANK_NONE;
}

static int on_entry(void *ud, const struct kl_ini_entry *e, struct kl_err *err)
{
    struct parse_ctx *ctx = ud;
    char key[KL_INI_MAX_NAME];
    size_t i;

    if (e->key == NULL) {
        ctx->rank = section_rank(ctx, e->section);
        if (ctx->rank == RANK_CREDENTIALS)
            ctx->out->in_credentials = true;
        else if (ctx->rank != RANK_NONE)
            ctx->out->in_config = true;
        return KL_OK;
    }
    if (ctx->rank == RANK_NONE || !valid_identifier(e->key))
        return KL_OK;
    for (i = 0; e->key[i] != '\0' && i + 1 < sizeof key; i++)
        key[i] = (char)tolower((unsigned char)e->key[i]);
    key[i] = '\0';
    return store(ctx->out, key, e->value, ctx->rank, err);
}

int kl_aws_profile_parse(const char *text, size_t len, enum kl_aws_file which, const char *origin,
                         const char *name, struct kl_aws_profile *out, struct kl_err *err)
{
    struct parse_ctx ctx = {out, which, RANK_NONE};

    if (out->name[0] == '\0')
        snprintf(out->name, sizeof out->name, "%s", name);
    return kl_ini_parse(text, len, origin, on_entry, &ctx, err);
}

/* The file's path: the variable when set (with ~ expanded), else ~/.aws/<leaf>;
 * "" when HOME is unknown and no variable is set. */
static int shared_path(const struct kl_env *env, const char *var, const char *leaf, char *out,
                       size_t cap, struct kl_err *err)
{
    const char *v = kl_env_get(env, var);
    char def[64];

    if (v != NULL)
        return kl_creds_expand_path(env, v, out, cap, err);
    if (kl_env_get(env, "HOME") == NULL) {
        out[0] = '\0';
        return KL_OK;
    }
    snprintf(def, sizeof def, "~/.aws/%s", leaf);
    return kl_creds_expand_path(env, def, out, cap, err);
}

static int load_file(const char *path, enum kl_aws_file which, const char *name,
                     struct kl_aws_profile *out, struct kl_err *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc;

    if (path[0] == '\0')
        return KL_OK;
    rc = kl_creds_read_file(
        path, KL_AWS_SHARED_FILE_MAX,
        which == KL_AWS_FILE_CONFIG ? "AWS config file" : "AWS credentials file", &text, &len, err);
    if (rc == KL_ERR_NOT_FOUND) { /* no file is no profile, as in every SDK */
        kl_err_clear(err);
        return KL_OK;
    }
    if (rc != KL_OK)
        return rc;
    rc = kl_aws_profile_parse(text, len, which, path, name, out, err);
    kl_creds_free_secret(text);
    return rc;
}

int kl_aws_profile_load(const struct kl_env *env, const char *name, unsigned files,
                        struct kl_aws_profile *out, struct kl_err *err)
{
    struct kl_aws_profile p;
    int rc;

    kl_aws_profile_init(&p);
    snprintf(p.name, sizeof p.name, "%s", name);
    rc = shared_path(env, "AWS_CONFIG_FILE", "config", p.config_path, sizeof p.config_path, err);
    if (rc == KL_OK)
        rc = shared_path(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials", p.credentials_path,
                         sizeof p.credentials_path, err);
    if (rc == KL_OK && (files & KL_AWS_FILE_CONFIG))
        rc = load_file(p.config_path, KL_AWS_FILE_CONFIG, name, &p, err);
    if (rc == KL_OK && (files & KL_AWS_FILE_CREDENTIALS))
        rc = load_file(p.credentials_path, KL_AWS_FILE_CREDENTIALS, name, &p, err);
    if (rc != KL_OK) {
        kl_aws_profile_free(&p);
        return rc;
    }
    kl_aws_profile_free(out);
    *out = p;
    return KL_OK;
}

/* ---- region ---- */

static bool valid_region(const char *r)
{
    size_t n = strlen(r);
    if (n == 0 || n > 63)
        return false;
    for (; *r != '\0'; r++) {
        if (!((*r >= 'a' && *r <= 'z') || (*r >= '0' && *r <= '9') || *r == '-'))
            return false;
    }
    return true;
}

static int put_region(const char *value, const char *where, char *out, size_t cap,
                      struct kl_err *err)
{
    if (!valid_region(value))
        return kl_err_set(err, KL_ERR_INVALID,
                          "%s: \"%.64s\" is not a region name (like us-east-1)", where, value);
    if (strlen(value) >= cap)
        return kl_err_set(err, KL_ERR_LIMIT, "region name does not fit in %zu bytes", cap);
    memcpy(out, value, strlen(value) + 1);
    return KL_OK;
}

int kl_aws_region_resolve(const struct kl_env *env, const char *profile, char *out, size_t cap,
                          struct kl_err *err)
{
    static const char *const vars[] = {"AWS_REGION", "AWS_DEFAULT_REGION"};
    struct kl_aws_profile p;
    char name[KL_AWS_PROFILE_NAME_MAX], where[KL_AWS_PROFILE_NAME_MAX + 32];
    const char *v;
    bool named;
    int rc;

    for (size_t i = 0; i < 2; i++) {
        v = kl_env_get(env, vars[i]);
        if (v != NULL)
            return put_region(v, vars[i], out, cap, err);
    }
    rc = kl_aws_profile_name(env, profile, name, sizeof name, &named, err);
    if (rc != KL_OK)
        return rc;
    kl_aws_profile_init(&p);
    rc = kl_aws_profile_load(env, name, KL_AWS_FILE_CONFIG, &p, err);
    if (rc != KL_OK)
        goto cleanup;
    v = kl_aws_profile_get(&p, "region");
    if (v == NULL || v[0] == '\0') {
        rc = kl_err_set(err, KL_ERR_NOT_FOUND,
                        "no AWS region: set AWS_REGION, or region in profile %s of %s", name,
                        p.config_path[0] != '\0' ? p.config_path : "~/.aws/config");
        goto cleanup;
    }
    snprintf(where, sizeof where, "region of profile %s", name);
    rc = put_region(v, where, out, cap, err);
cleanup:
    kl_aws_profile_free(&p);
    return rc;
}

/* ---- endpoints ---- */

/* DNS suffix of the partition a region belongs to. */
static const char *dns_suffix(const char *region)
{
    static const struct {
        const char *prefix;
        const char *suffix;
    } partitions[] = {
        {"cn-", "amazonaws.com.cn"}, {"us-isob-", "sc2s.sgov.gov"},  {"us-isof-", "csp.hci.ic.gov"},
        {"us-iso-", "c2s.ic.gov"},   {"eu-isoe-", "cloud.adc-e.uk"},
    };
    for (size_t i = 0; i < sizeof partitions / sizeof partitions[0]; i++) {
        if (strncmp(region, partitions[i].prefix, strlen(partitions[i].prefix)) == 0)
            return partitions[i].suffix;
    }
    return "amazonaws.com";
}

static bool is_http_url(const char *v)
{
    return (strncmp(v, "http://", 7) == 0 && v[7] != '\0' && v[7] != '/') ||
           (strncmp(v, "https://", 8) == 0 && v[8] != '\0' && v[8] != '/');
}

int kl_aws_endpoint_resolve(const struct kl_env *env, const char *service_env, const char *service,
                            const char *region, char *out, size_t cap, struct kl_err *err)
{
    char var[96], url[KL_CREDS_MAX_URL];
    const char *v = NULL, *from = NULL;
    int n;

    if (!kl_creds_env_true(env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")) {
        if (service_env != NULL) {
            for (const char *s = service_env; *s != '\0'; s++) {
                if (!((*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_'))
                    return kl_err_set(err, KL_ERR_INVALID,
                                      "service name %s must be upper case, digits and '_'",
                                      service_env);
            }
            n = snprintf(var, sizeof var, "AWS_ENDPOINT_URL_%s", service_env);
            if (n < 0 || (size_t)n >= sizeof var)
                return kl_err_set(err, KL_ERR_INVALID, "service name %s is too long", service_env);
            v = kl_env_get(env, var);
            from = var;
        }
        if (v == NULL) {
            v = kl_env_get(env, "AWS_ENDPOINT_URL");
            from = "AWS_ENDPOINT_URL";
        }
    }
    if (v != NULL) {
        if (!is_http_url(v))
            return kl_err_set(err, KL_ERR_INVALID, "%s=%.128s is not an http:// or https:// URL",
                              from, v);
        n = snprintf(url, sizeof url, "%s", v);
    } else {
        if (region == NULL || region[0] == '\0')
            return kl_err_set(err, KL_ERR_NOT_FOUND,
                              "no region to build the %s endpoint from (set AWS_REGION or "
                              "AWS_ENDPOINT_URL_%s)",
                              service, service_env != NULL ? service_env : "<SERVICE>");
        if (!valid_region(region))
            return kl_err_set(err, KL_ERR_INVALID, "\"%.64s\" is not a region name", region);
        n = snprintf(url, sizeof url, "https://%s.%s.%s", service, region, dns_suffix(region));
    }
    if (n < 0 || (size_t)n >= sizeof url)
        return kl_err_set(err, KL_ERR_LIMIT, "%s endpoint URL is longer than %zu bytes", service,
                          sizeof url - 1);
    kl_creds_trim_slashes(url);
    if (strlen(url) >= cap)
        return kl_err_set(err, KL_ERR_LIMIT, "%s endpoint URL does not fit in %zu bytes", service,
                          cap);
    memcpy(out, url, strlen(url) + 1);
    return KL_OK;
}
