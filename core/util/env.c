/*
 * Environment lookups: the process environment and a fixed table for tests
 * and for the `load`/`read` commands' explicit settings.
 */
#include "core/util/env.h"

#include <stdlib.h>
#include <string.h>

static const char *system_get(void *impl, const char *name)
{
    (void)impl;
    return getenv(name);
}

static const struct kl_env_ops system_env_ops = {.get = system_get};
static const struct kl_env system_env = {&system_env_ops, NULL};

const struct kl_env *kl_env_system(void)
{
    return &system_env;
}

const char *kl_env_get(const struct kl_env *env, const char *name)
{
    const char *v = env->ops->get(env->impl, name);
    return (v != NULL && v[0] != '\0') ? v : NULL;
}

static const char *table_get(void *impl, const char *name)
{
    const struct kl_env_table *t = impl;
    for (const char *const *p = t->pairs; p != NULL && p[0] != NULL; p += 2) {
        if (strcmp(p[0], name) == 0)
            return p[1];
    }
    return NULL;
}

static const struct kl_env_ops table_env_ops = {.get = table_get};

void kl_env_table_init(struct kl_env_table *t, const char *const *pairs)
{
    t->env.ops = &table_env_ops;
    t->env.impl = t;
    t->pairs = pairs;
}
