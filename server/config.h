/*
 * The process configuration: one declarative table of environment
 * variables (name, type, default, bounds, secrecy, doc) in config.c, read
 * through an injectable environment, validated at start, printed by --help
 * and logged once with secrets redacted. AWS settings are read by the AWS
 * layer itself and only listed here. Not for per-job parameters.
 */
#ifndef KL_SERVER_CONFIG_H
#define KL_SERVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/load/params.h"

struct kl_env;
struct kl_err;

enum kl_config_type {
    KL_CONFIG_INT,       /* a decimal integer in [min, max] */
    KL_CONFIG_SIZE,      /* bytes: an integer with an optional KiB, MiB or GiB suffix */
    KL_CONFIG_ENUM,      /* one of `choices`, case-insensitive */
    KL_CONFIG_LISTEN,    /* HOST:PORT, [IPv6]:PORT or :PORT */
    KL_CONFIG_PATH,      /* a file path */
    KL_CONFIG_TOKEN,     /* 1..max visible ASCII characters, no spaces */
    KL_CONFIG_PG_URL,    /* a libpq connection URI or key=value string */
    KL_CONFIG_REDIS_URL, /* redis://[user[:password]@]host[:port][/db] or unix:///path */
    KL_CONFIG_DOC,       /* read elsewhere (the AWS layer); documented only */
};

#define KL_CONFIG_SECRET 1u /* never logged: "<redacted>" */
#define KL_CONFIG_REDACT 2u /* logged with its password replaced by "***" */

struct kl_config_var {
    const char *name;
    const char *def;            /* NULL: unset unless given */
    long long min, max;         /* INT and SIZE: bounds; TOKEN: length bounds */
    const char *const *choices; /* ENUM: NULL-terminated */
    enum kl_config_type type;
    unsigned flags;
    size_t offset, size; /* the value's place in struct kl_config (size 0 for DOC) */
    const char *doc;
};

#define KL_CONFIG_TOKEN_MAX 4096
#define KL_CONFIG_PATH_MAX 4096

struct kl_config {
    char listen[272];
    char listen_host[256];                   /* without brackets; "" = every interface */
    int listen_port;                         /* 0..65535; 0 = any free port */
    char api_token[KL_CONFIG_TOKEN_MAX + 1]; /* "" = no authentication; wiped by _free */
    char api_token_file[KL_CONFIG_PATH_MAX];
    int workers;
    size_t memory_max;
    int http_threads;
    int http_max_connections;
    int http_idle_timeout_s;
    size_t max_body;
    int shutdown_grace_s;
    char log_level[8];
    char database_url[4096]; /* "" = SQLite at sqlite_path; wiped by _free */
    char sqlite_path[KL_CONFIG_PATH_MAX];
    char redis_url[1024]; /* "" = in-process state; wiped by _free */
    int job_retention_hours;
    int lease_ttl_s;
    int task_slice_s;
    char kinesis_pacing[8]; /* "auto", "on", "off" */
    int kinesis_call_timeout_s;
    /* KL_CONTINUOUS_LOADS: the continuous loads this replica keeps running
     * (malloc'ed, freed by kl_config_free; NULL and 0 when unset) */
    struct kl_load_params *continuous_loads;
    size_t n_continuous_loads;
    const struct kl_env
        *env; /* where it was read from (borrowed), for the AWS entries of the log */
};

/* The table, for --help and tests. */
const struct kl_config_var *kl_config_vars(size_t *n);

/* Fills `cfg` from `env`: defaults, then every variable parsed and checked
 * against its row, then the rules between variables (one token source; the
 * token file read and trimmed). On failure the message names the variable
 * and the rule, and `cfg` holds nothing secret. `env` must outlive `cfg`. */
int kl_config_load(struct kl_config *cfg, const struct kl_env *env, struct kl_err *err);

/* Wipes the secrets; the struct can be loaded again. */
void kl_config_free(struct kl_config *cfg);

/* The effective configuration as one JSON object, secrets redacted, unset
 * values null (AWS entries appear only when set). Returns the length written
 * (cut to `cap` - 1 on overflow, still NUL-terminated). */
size_t kl_config_json(const struct kl_config *cfg, char *out, size_t cap);

/* Logs the effective configuration as one JSON line (component "config",
 * field "config"); `out` NULL is stderr. */
void kl_config_log(const struct kl_config *cfg, FILE *out);

/* Writes `url` with its password (userinfo, `password=` parameters) replaced
 * by "***". Output is cut to `cap`. */
void kl_config_redact_url(const char *url, char *out, size_t cap);

/* Prints the table: every variable with its default, bounds and doc. */
void kl_config_help(FILE *out);

#endif
