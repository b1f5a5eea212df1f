/*
 * Injectable environment lookup, so code that reads AWS_* variables is
 * tested with a table instead of the process environment.
 */
#ifndef KL_UTIL_ENV_H
#define KL_UTIL_ENV_H

struct kl_env_ops {
    /* Returns the value or NULL when unset. The pointer stays valid as long as the env. */
    const char *(*get)(void *impl, const char *name);
};

struct kl_env {
    const struct kl_env_ops *ops;
    void *impl;
};

/* The process environment (getenv). Static; never freed. */
const struct kl_env *kl_env_system(void);

/* Returns the value, or NULL when unset or empty (AWS tools treat "" as unset). */
const char *kl_env_get(const struct kl_env *env, const char *name);

/* A fixed table: `pairs` is {name, value, name, value, ..., NULL}; the
 * strings are borrowed and must outlive the env. */
struct kl_env_table {
    struct kl_env env;
    const char *const *pairs;
};
void kl_env_table_init(struct kl_env_table *t, const char *const *pairs);

#endif
