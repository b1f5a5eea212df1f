/*
 * The configuration table (config.h) and what reads it: parsing per type,
 * the rules between variables, redaction, the log line, --help. To add a
 * setting: a field in struct kl_config, a row in `vars`, and the code that
 * uses it; nothing else reads the environment for KL_* settings.
 */
#include "server/config.h"
#include "server/logline.h"
#include "api/load_codec.h"
#include "core/util/env.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KIB 1024LL
#define MIB (1024LL * 1024)
#define GIB (1024LL * 1024 * 1024)

#define FIELD(f) offsetof(struct kl_config, f), sizeof(((struct kl_config *)0)->f)
#define NO_FIELD 0, 0

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const pacing_modes[] = {"auto", "on", "off", NULL};

/* clang-format off */
/* name, default, min, max, choices, type, flags, field, doc */
static const struct kl_config_var vars[] = {
    {"KL_LISTEN", "0.0.0.0:8080", 0, 0, NULL, KL_CONFIG_LISTEN, 0, FIELD(listen),
     "Where the HTTP server listens: HOST:PORT, [IPv6]:PORT, or :PORT for every interface. "
     "Port 0 takes a free port (the port is logged)."},
    {"KL_API_TOKEN", NULL, 1, KL_CONFIG_TOKEN_MAX, NULL, KL_CONFIG_TOKEN, KL_CONFIG_SECRET,
     FIELD(api_token),
     "Bearer token every request must carry (Authorization: Bearer TOKEN), except /healthz, "
     "/readyz, /metrics and /openapi.yaml. Visible ASCII without spaces. Unset: no "
     "authentication."},
    {"KL_API_TOKEN_FILE", NULL, 0, 0, NULL, KL_CONFIG_PATH, 0, FIELD(api_token_file),
     "A file holding the token (whitespace around it is trimmed), such as a mounted "
     "Kubernetes secret. Not together with KL_API_TOKEN."},
    {"KL_WORKERS", "4", 1, 256, NULL, KL_CONFIG_INT, 0, FIELD(workers),
     "Worker threads of this process that run shard tasks (one shard each at a time)."},
    {"KL_MEMORY_MAX", "40MiB", 8 * MIB, 64 * GIB, NULL, KL_CONFIG_SIZE, 0, FIELD(memory_max),
     "What the workers' GetRecords pages and normalised rows may hold at once. Each worker's "
     "rows get a quarter of it divided by KL_WORKERS (at least 1 MiB; a larger chunk is "
     "committed in parts), pages the rest: before each GetRecords a reader reserves what the "
     "page may take at most (10 MiB of data and each record's strings) and waits while that "
     "does not fit. One record larger than all of it still loads, alone. The process takes "
     "about 20 MiB more (code, connections, COPY buffers)."},
    {"KL_HTTP_THREADS", "16", 1, 64, NULL, KL_CONFIG_INT, 0, FIELD(http_threads),
     "Threads of the HTTP server's pool. A request waits for the state store (a Redis round "
     "trip) on its thread, so more threads than cores keep the API fast."},
    {"KL_HTTP_MAX_CONNECTIONS", "1024", 1, 65536, NULL, KL_CONFIG_INT, 0,
     FIELD(http_max_connections),
     "Open HTTP connections at most; more are refused until some close."},
    {"KL_HTTP_IDLE_TIMEOUT_S", "60", 1, 3600, NULL, KL_CONFIG_INT, 0, FIELD(http_idle_timeout_s),
     "Seconds an idle HTTP connection is kept open."},
    {"KL_MAX_BODY", "1MiB", 1 * KIB, 64 * MIB, NULL, KL_CONFIG_SIZE, 0, FIELD(max_body),
     "Largest request body; larger ones are answered 413 without being read. Bytes, or with "
     "a KiB, MiB or GiB suffix."},
    {"KL_SHUTDOWN_GRACE_S", "25", 0, 3600, NULL, KL_CONFIG_INT, 0, FIELD(shutdown_grace_s),
     "On SIGTERM or SIGINT the service stops taking requests and tasks, and gives in-flight "
     "requests and running chunks this long to finish. Keep it below Kubernetes' "
     "terminationGracePeriodSeconds (30 by default)."},
    {"KL_LOG_LEVEL", "info", 0, 0, log_levels, KL_CONFIG_ENUM, 0, FIELD(log_level),
     "Least severe level logged (JSON lines on stderr)."},
    {"DATABASE_URL", NULL, 0, 0, NULL, KL_CONFIG_PG_URL, KL_CONFIG_REDACT, FIELD(database_url),
     "The PostgreSQL destination as a libpq connection string "
     "(postgresql://user:password@host:5432/db?sslmode=require, or key=value pairs). Unset: the "
     "SQLite file of KL_SQLITE_PATH. Logged with the password hidden."},
    {"KL_SQLITE_PATH", "./kinesis-loader.db", 0, 0, NULL, KL_CONFIG_PATH, 0, FIELD(sqlite_path),
     "The embedded SQLite destination, used when DATABASE_URL is unset."},
    {"REDIS_URL", NULL, 0, 0, NULL, KL_CONFIG_REDIS_URL, KL_CONFIG_REDACT, FIELD(redis_url),
     "Shared state (jobs, task queue, shard leases) for several replicas: "
     "redis://[user:password@]host[:port][/db] or unix:///path/to/socket (no TLS). Unset: "
     "state in this process, durable through the destination's checkpoints. Logged with the "
     "password hidden."},
    {"KL_JOB_RETENTION_HOURS", "168", 1, 8760, NULL, KL_CONFIG_INT, 0, FIELD(job_retention_hours),
     "Finished jobs are kept, and answer GET /jobs/{id}, this many hours."},
    {"KL_LEASE_TTL_S", "30", 5, 600, NULL, KL_CONFIG_INT, 0, FIELD(lease_ttl_s),
     "Lifetime of a shard lease, renewed while a worker reads: a task whose worker died is "
     "taken over after this long."},
    {"KL_TASK_SLICE_S", "60", 0, 86400, NULL, KL_CONFIG_INT, 0, FIELD(task_slice_s),
     "A shard task that has read this many seconds gives its worker to waiting tasks at the "
     "next chunk boundary and queues again behind them, so one wide stream does not hold "
     "every worker while other jobs wait. 0: never."},
    {"KL_KINESIS_PACING", "auto", 0, 0, pacing_modes, KL_CONFIG_ENUM, 0, FIELD(kinesis_pacing),
     "on: keep each shard to Kinesis' 5 GetRecords calls/s and 2 MiB/s; off: read as fast as "
     "answered; auto: on for AWS endpoints, off for others (emulators)."},
{"KL_KINESIS_CALL_TIMEOUT_S", "60", 1, 3600, NULL, KL_CONFIG_INT, 0, FIELD(kinesis_call_timeout_s),
     "Deadline of one Kinesis call, retries and backoff included (seconds). A "
     "call past it is logged with the job, stream, shard and operation, fails its shard task "
     "(which is retried), and GET /jobs/{id} shows the shard waiting on it while it lasts. "
     "GetShardIterator AT_TIMESTAMP on an endpoint that is not AWS's waits 5 s at most: then "
     "the shard is read from TRIM_HORIZON with the records before the timestamp skipped."},
    /* Read by kl_config_load itself (a list, not one value). */
    {"KL_CONTINUOUS_LOADS", NULL, 0, 0, NULL, KL_CONFIG_DOC, 0, NO_FIELD,
     "Continuous loads this replica keeps running: a JSON array of load requests, each "
     "POST /streams/{stream}/loads' body with its \"stream\" added (\"continuous\" may be left "
     "out), or @/path/to/file.json holding one. Every replica ensures that each has an active "
     "job, at start and every 30 s (one per stream and pipeline: an active job of them, batch "
     "or continuous, counts), so the loads come back after the state store lost them. "
     "Cancelling one stops it until the next check: take it out of the list to stop it."},
    /* Read by core/aws and core/kinesis themselves; listed so --help is complete. */
    {"AWS_REGION", NULL, 0, 0, NULL, KL_CONFIG_DOC, 0, NO_FIELD,
     "The AWS region (else AWS_DEFAULT_REGION, else the profile's region)."},
    {"AWS_DEFAULT_REGION", NULL, 0, 0, NULL, KL_CONFIG_DOC, 0, NO_FIELD,
     "The region when AWS_REGION is unset."},
    {"AWS_ACCESS_KEY_ID", NULL, 0, 0, NULL, KL_CONFIG_DOC, KL_CONFIG_SECRET, NO_FIELD,
     "Static credentials, with AWS_SECRET_ACCESS_KEY and optionally AWS_SESSION_TOKEN."},
    {"AWS_SECRET_ACCESS_KEY", NULL, 0, 0, NULL, KL_CONFIG_DOC, KL_CONFIG_SECRET, NO_FIELD,
     "The secret of AWS_ACCESS_KEY_ID."},
    {"AWS_SESSION_TOKEN", NULL, 0, 0, NULL, KL_CONFIG_DOC, KL_CONFIG_SECRET, NO_FIELD,
     "The session token of temporary credentials."},
    {"AWS_PROFILE", NULL, 0, 0, NULL, KL_CONFIG_DOC, 0, NO_FIELD,
     "The profile of the shared config and credentials files."},
    {"AWS_CONFIG_FILE", NULL, 0, 0, NULL, KL_CONFIG_DOC, 0, NO_FIELD,
     "The shared config file (default ~/.aws/config)."},
    {"AWS_SHARED_CREDENTIALS_FILE", NULL, 0, 0, NULL, KL_CONFIG_DOC, 0, NO_FIELD,
     "The shared credentials file (default ~/.aws/credentials)."},
    {"AWS_ENDPOINT_URL_KINESIS", NULL, 0, 0, NULL, KL_CONFIG_DOC, 0, NO_FIELD,
     "The Kinesis endpoint (an emulator, a VPC endpoint); else AWS_ENDPOINT_URL, else AWS."},
    {"AWS_ENDPOINT_URL", NULL, 0, 0, NULL, KL_CONFIG_DOC, 0, NO_FIELD,
     "The endpoint of every AWS service without a service-specific one."},
    {"AWS_ROLE_ARN", NULL, 0, 0, NULL, KL_CONFIG_DOC, 0, NO_FIELD,
     "With AWS_WEB_IDENTITY_TOKEN_FILE: the role assumed with a web identity (EKS IRSA)."},
    {"AWS_WEB_IDENTITY_TOKEN_FILE", NULL, 0, 0, NULL, KL_CONFIG_DOC, 0, NO_FIELD,
     "The web identity token file for AWS_ROLE_ARN."},
    {"AWS_ROLE_SESSION_NAME", NULL, 0, 0, NULL, KL_CONFIG_DOC, 0, NO_FIELD,
     "The session name when assuming AWS_ROLE_ARN."},
    {"AWS_CONTAINER_CREDENTIALS_FULL_URI", NULL, 0, 0, NULL, KL_CONFIG_DOC, 0, NO_FIELD,
     "Container credentials endpoint (EKS Pod Identity, ECS); also "
     "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE)."},
    {"AWS_EC2_METADATA_DISABLED", NULL, 0, 0, NULL, KL_CONFIG_DOC, 0, NO_FIELD,
     "true: never ask the EC2 instance metadata service (IMDSv2) for credentials."},
};
/* clang-format on */

#define N_VARS (sizeof vars / sizeof vars[0])

const struct kl_config_var *kl_config_vars(size_t *n)
{
    *n = N_VARS;
    return vars;
}

static char *str_field(struct kl_config *cfg, const struct kl_config_var *v)
{
    return (char *)cfg + v->offset;
}

static const char *cstr_field(const struct kl_config *cfg, const struct kl_config_var *v)
{
    return (const char *)cfg + v->offset;
}

/* A decimal integer of at most 18 digits, no sign, no spaces. */
static bool parse_digits(const char *s, size_t n, long long *out)
{
    long long v = 0;
    if (n == 0 || n > 18)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static bool parse_size(const char *s, long long *out)
{
    static const struct {
        const char *suffix;
        long long unit;
    } units[] = {{"", 1}, {"B", 1}, {"KiB", KIB}, {"MiB", MIB}, {"GiB", GIB}};
    size_t n = 0;
    long long v;

    while (s[n] >= '0' && s[n] <= '9')
        n++;
    if (!parse_digits(s, n, &v))
        return false;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(s + n, units[i].suffix) == 0) {
            if (v > INT64_MAX / units[i].unit)
                return false;
            *out = v * units[i].unit;
            return true;
        }
    }
    return false;
}

static void format_size(long long v, char *out, size_t cap)
{
    if (v >= GIB && v % GIB == 0)
        snprintf(out, cap, "%lldGiB", v / GIB);
    else if (v >= MIB && v % MIB == 0)
        snprintf(out, cap, "%lldMiB", v / MIB);
    else if (v >= KIB && v % KIB == 0)
        snprintf(out, cap, "%lldKiB", v / KIB);
    else
        snprintf(out, cap, "%lld", v);
}

static bool host_char(char c, bool v6)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
        c == '-')
        return true;
    return v6 && (c == ':' || c == '%' || c == '_');
}

/* HOST:PORT, [IPv6]:PORT or :PORT; the host without brackets into `host`. */
static bool parse_hostport(const char *s, char *host, size_t host_cap, long long *port)
{
    const char *h = s, *h_end, *p;
    bool v6 = false;

    if (s[0] == '[') {
        h = s + 1;
        h_end = strchr(h, ']');
        if (h_end == NULL || h_end[1] != ':' || h_end == h)
            return false;
        p = h_end + 2;
        v6 = true;
    } else {
        h_end = strrchr(s, ':');
        if (h_end == NULL)
            return false;
        p = h_end + 1;
    }
    if ((size_t)(h_end - h) >= host_cap)
        return false;
    for (const char *c = h; c < h_end; c++) {
        if (!host_char(*c, v6))
            return false;
    }
    if (!parse_digits(p, strlen(p), port) || *port > 65535)
        return false;
    memcpy(host, h, (size_t)(h_end - h));
    host[h_end - h] = '\0';
    return true;
}

static bool visible_ascii(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    }
    return true;
}

static bool has_control(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
            return true;
    }
    return false;
}

static bool starts_with_ci(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* redis://[user[:password]@]host[:port][/db] or unix:///path. */
static bool redis_url_valid(const char *s, const char **why)
{
    const char *a, *a_end, *at, *hp;
    char host[256], hostport[300];
    long long port, db;

    if (starts_with_ci(s, "rediss://")) {
        *why = "TLS (rediss://) is not supported by this build (hiredis without TLS)";
        return false;
    }
    if (starts_with_ci(s, "unix://")) {
        *why = "expected unix:///absolute/path/to/socket";
        return s[7] == '/' && s[8] != '\0';
    }
    *why = "expected redis://[user[:password]@]host[:port][/db] or unix:///path";
    if (!starts_with_ci(s, "redis://"))
        return false;
    a = s + 8;
    a_end = strchr(a, '/');
    if (a_end == NULL)
        a_end = a + strlen(a);
    at = NULL;
    for (const char *c = a; c < a_end; c++) {
        if (*c == '@')
            at = c;
    }
    hp = at != NULL ? at + 1 : a;
    if (a_end - hp <= 0 || (size_t)(a_end - hp) >= sizeof hostport - 7)
        return false;
    memcpy(hostport, hp, (size_t)(a_end - hp));
    hostport[a_end - hp] = '\0';
    /* the port is optional: try as given, else with the default port */
    if (!parse_hostport(hostport, host, sizeof host, &port)) {
        strcat(hostport, ":6379");
        if (!parse_hostport(hostport, host, sizeof host, &port))
            return false;
    }
    if (host[0] == '\0' || port == 0)
        return false;
    if (*a_end == '/' && a_end[1] != '\0' && !parse_digits(a_end + 1, strlen(a_end + 1), &db))
        return false;
    return true;
}

static bool pg_url_valid(const char *s)
{
    return starts_with_ci(s, "postgresql://") || starts_with_ci(s, "postgres://") ||
           strchr(s, '=') != NULL;
}

static void describe_rule(const struct kl_config_var *v, char *out, size_t cap)
{
    char lo[32], hi[32];

    switch (v->type) {
    case KL_CONFIG_INT:
        snprintf(out, cap, "an integer from %lld to %lld", v->min, v->max);
        break;
    case KL_CONFIG_SIZE:
        format_size(v->min, lo, sizeof lo);
        format_size(v->max, hi, sizeof hi);
        snprintf(out, cap, "a size from %s to %s (bytes, or with a KiB, MiB or GiB suffix)", lo,
                 hi);
        break;
    case KL_CONFIG_ENUM: {
        size_t pos = (size_t)snprintf(out, cap, "one of");
        for (const char *const *c = v->choices; *c != NULL && pos < cap; c++)
            pos += (size_t)snprintf(out + pos, cap - pos, "%s %s", c == v->choices ? "" : ",", *c);
        break;
    }
    case KL_CONFIG_LISTEN:
        snprintf(out, cap, "HOST:PORT, [IPv6]:PORT or :PORT with a port from 0 to 65535");
        break;
    case KL_CONFIG_PATH:
        snprintf(out, cap, "a file path of at most %zu characters", v->size - 1);
        break;
    case KL_CONFIG_TOKEN:
        snprintf(out, cap, "%lld to %lld visible ASCII characters without spaces", v->min, v->max);
        break;
    case KL_CONFIG_PG_URL:
        snprintf(out, cap,
                 "a libpq connection string: postgresql://... or key=value pairs, at most %zu "
                 "characters",
                 v->size - 1);
        break;
    case KL_CONFIG_REDIS_URL:
        snprintf(out, cap, "redis://[user[:password]@]host[:port][/db] or unix:///path");
        break;
    case KL_CONFIG_DOC:
        snprintf(out, cap, "read by the AWS layer");
        break;
    }
}

/* Sets one variable from its text; the message names it and its rule. */
static int set_var(struct kl_config *cfg, const struct kl_config_var *v, const char *value,
                   bool from_default, struct kl_err *err)
{
    char rule[160];
    const char *why = NULL;
    long long n;
    size_t len = strlen(value);
    bool secret = (v->flags & (KL_CONFIG_SECRET | KL_CONFIG_REDACT)) != 0;

    switch (v->type) {
    case KL_CONFIG_INT:
        if (!parse_digits(value, len, &n) || n < v->min || n > v->max)
            goto bad;
        *(int *)((char *)cfg + v->offset) = (int)n;
        return KL_OK;
    case KL_CONFIG_SIZE:
        if (!parse_size(value, &n) || n < v->min || n > v->max)
            goto bad;
        *(size_t *)((char *)cfg + v->offset) = (size_t)n;
        return KL_OK;
    case KL_CONFIG_ENUM:
        for (const char *const *c = v->choices; *c != NULL; c++) {
            if (strcasecmp(value, *c) == 0 && strlen(*c) < v->size) {
                memcpy(str_field(cfg, v), *c, strlen(*c) + 1);
                return KL_OK;
            }
        }
        goto bad;
    case KL_CONFIG_LISTEN:
        if (len >= v->size || !parse_hostport(value, cfg->listen_host, sizeof cfg->listen_host, &n))
            goto bad;
        cfg->listen_port = (int)n;
        break;
    case KL_CONFIG_PATH:
        if (len >= v->size || has_control(value))
            goto bad;
        break;
    case KL_CONFIG_TOKEN:
        if ((long long)len < v->min || (long long)len > v->max || len >= v->size ||
            !visible_ascii(value))
            goto bad;
        break;
    case KL_CONFIG_PG_URL:
        if (len >= v->size || has_control(value) || !pg_url_valid(value))
            goto bad;
        break;
    case KL_CONFIG_REDIS_URL:
        if (len >= v->size || has_control(value) || !redis_url_valid(value, &why))
            goto bad;
        break;
    case KL_CONFIG_DOC:
        return KL_OK;
    }
    memcpy(str_field(cfg, v), value, len + 1);
    return KL_OK;
bad:
    describe_rule(v, rule, sizeof rule);
    if (why != NULL)
        snprintf(rule, sizeof rule, "%s", why);
    /* Never echo a secret back, not even a malformed one. */
    if (secret || from_default)
        return kl_err_set(err, KL_ERR_INVALID, "%s%s: expected %s", v->name,
                          from_default ? " (default)" : "", rule);
    return kl_err_set(err, KL_ERR_INVALID, "%s=%.60s%s: expected %s", v->name, value,
                      len > 60 ? "..." : "", rule);
}

/* Reads the token file: at most KL_CONFIG_TOKEN_MAX characters once trimmed. */
static int read_token_file(struct kl_config *cfg, struct kl_err *err)
{
    char buf[KL_CONFIG_TOKEN_MAX + 256];
    const char *path = cfg->api_token_file;
    size_t n, start = 0;
    FILE *f = fopen(path, "re");
    int rc = KL_ERR_INVALID;

    if (f == NULL)
        return kl_err_set(err, KL_ERR_INVALID, "KL_API_TOKEN_FILE=%.200s: cannot be read: %s", path,
                          strerror(errno));
    n = fread(buf, 1, sizeof buf - 1, f);
    if (ferror(f)) {
        kl_err_set(err, KL_ERR_INVALID, "KL_API_TOKEN_FILE=%.200s: cannot be read: %s", path,
                   strerror(errno));
        goto cleanup;
    }
    if (n == sizeof buf - 1 && fgetc(f) != EOF) {
        kl_err_set(err, KL_ERR_INVALID,
                   "KL_API_TOKEN_FILE=%.200s: expected a token of at most %d characters", path,
                   KL_CONFIG_TOKEN_MAX);
        goto cleanup;
    }
    buf[n] = '\0';
    while (n > 0 && isspace((unsigned char)buf[n - 1]))
        buf[--n] = '\0';
    while (start < n && isspace((unsigned char)buf[start]))
        start++;
    if (n - start == 0 || n - start > KL_CONFIG_TOKEN_MAX || strlen(buf + start) != n - start ||
        !visible_ascii(buf + start)) {
        kl_err_set(err, KL_ERR_INVALID,
                   "KL_API_TOKEN_FILE=%.200s: expected 1 to %d visible ASCII characters without "
                   "spaces (surrounding whitespace is trimmed)",
                   path, KL_CONFIG_TOKEN_MAX);
        goto cleanup;
    }
    memcpy(cfg->api_token, buf + start, n - start + 1);
    rc = KL_OK;
cleanup:
    OPENSSL_cleanse(buf, sizeof buf);
    fclose(f);
    return rc;
}

#define CONTINUOUS_LOADS_MAX_BYTES ((size_t)1 << 20)

/* KL_CONTINUOUS_LOADS: the JSON itself, or "@path" of a file holding it. */
static int read_continuous_loads(struct kl_config *cfg, const char *value, struct kl_err *err)
{
    char detail[512];
    char *text = NULL;
    size_t len;
    int rc;

    if (value == NULL || value[0] == '\0')
        return KL_OK;
    if (value[0] == '@') {
        FILE *f = fopen(value + 1, "re");
        if (f == NULL)
            return kl_err_set(err, KL_ERR_INVALID, "KL_CONTINUOUS_LOADS=%.200s: cannot be read: %s",
                              value, strerror(errno));
        text = malloc(CONTINUOUS_LOADS_MAX_BYTES + 1);
        len = text != NULL ? fread(text, 1, CONTINUOUS_LOADS_MAX_BYTES + 1, f) : 0;
        rc = text == NULL || ferror(f) ? KL_ERR_IO : KL_OK;
        fclose(f);
        if (rc != KL_OK || len > CONTINUOUS_LOADS_MAX_BYTES) {
            free(text);
            return kl_err_set(err, KL_ERR_INVALID,
                              "KL_CONTINUOUS_LOADS=%.200s: cannot be read (or larger than 1 MiB)",
                              value);
        }
    } else {
        len = strlen(value);
    }
    rc = kl_load_requests_parse_list(text != NULL ? text : value, len, &cfg->continuous_loads,
                                     &cfg->n_continuous_loads, detail, sizeof detail);
    free(text);
    if (rc != KL_OK)
        return kl_err_set(err, KL_ERR_INVALID, "KL_CONTINUOUS_LOADS%s%.200s: %s",
                          value[0] == '@' ? "=" : "", value[0] == '@' ? value : "", detail);
    return KL_OK;
}

int kl_config_load(struct kl_config *cfg, const struct kl_env *env, struct kl_err *err)
{
    int rc = KL_OK;

    memset(cfg, 0, sizeof *cfg);
    cfg->env = env;
    for (size_t i = 0; rc == KL_OK && i < N_VARS; i++) {
        const struct kl_config_var *v = &vars[i];
        const char *value;
        if (v->type == KL_CONFIG_DOC)
            continue;
        value = kl_env_get(env, v->name);
        if (value != NULL)
            rc = set_var(cfg, v, value, false, err);
        else if (v->def != NULL)
            rc = set_var(cfg, v, v->def, true, err);
    }
    if (rc == KL_OK && cfg->api_token[0] != '\0' && cfg->api_token_file[0] != '\0')
        rc = kl_err_set(err, KL_ERR_INVALID,
                        "KL_API_TOKEN and KL_API_TOKEN_FILE are both set: set only one");
    if (rc == KL_OK && cfg->api_token_file[0] != '\0')
        rc = read_token_file(cfg, err);
    if (rc == KL_OK)
        rc = read_continuous_loads(cfg, kl_env_get(env, "KL_CONTINUOUS_LOADS"), err);
    if (rc != KL_OK)
        kl_config_free(cfg);
    return rc;
}

void kl_config_free(struct kl_config *cfg)
{
    free(cfg->continuous_loads);
    cfg->continuous_loads = NULL;
    cfg->n_continuous_loads = 0;
    OPENSSL_cleanse(cfg->api_token, sizeof cfg->api_token);
    OPENSSL_cleanse(cfg->database_url, sizeof cfg->database_url);
    OPENSSL_cleanse(cfg->redis_url, sizeof cfg->redis_url);
}

/* The first case-insensitive occurrence of `needle` in `s`, or NULL. */
static char *find_ci(char *s, const char *needle)
{
    size_t n = strlen(needle);
    for (; *s != '\0'; s++) {
        if (strncasecmp(s, needle, n) == 0)
            return s;
    }
    return NULL;
}

/* Replaces the value of every `password=` parameter (URI query or key=value
 * conninfo, quoted or not) in place; `s` is NUL-terminated within `cap`. */
static void redact_password_params(char *s, size_t cap)
{
    static const char key[] = "password";
    char *p = s;

    while ((p = find_ci(p, key)) != NULL) {
        char *v = p + sizeof key - 1, *end;
        bool at_start = p == s || p[-1] == '?' || p[-1] == '&' || isspace((unsigned char)p[-1]);
        while (*v == ' ')
            v++;
        if (!at_start || *v != '=') {
            p += sizeof key - 1;
            continue;
        }
        v++;
        while (*v == ' ')
            v++;
        end = v;
        if (*end == '\'') {
            for (end++; *end != '\0' && *end != '\''; end++) {
                if (*end == '\\' && end[1] != '\0')
                    end++;
            }
            if (*end == '\'')
                end++;
        } else {
            while (*end != '\0' && *end != '&' && !isspace((unsigned char)*end))
                end++;
        }
        /* v..end becomes "***" */
        if ((size_t)(v - s) + 3 + strlen(end) + 1 > cap)
            break;
        memmove(v + 3, end, strlen(end) + 1);
        memcpy(v, "***", 3);
        p = v + 3;
    }
}

void kl_config_redact_url(const char *url, char *out, size_t cap)
{
    const char *scheme_end = strstr(url, "://");
    size_t pos = 0;

    if (cap == 0)
        return;
    out[0] = '\0';
    if (scheme_end != NULL) {
        const char *a = scheme_end + 3, *a_end = a + strcspn(a, "/?#"), *at = NULL, *colon;
        for (const char *c = a; c < a_end; c++) {
            if (*c == '@')
                at = c;
        }
        if (at != NULL && (colon = memchr(a, ':', (size_t)(at - a))) != NULL) {
            /* scheme://user:***@rest */
            pos = (size_t)snprintf(out, cap, "%.*s:***%s", (int)(colon - url), url, at);
        } else {
            pos = (size_t)snprintf(out, cap, "%s", url);
        }
    } else {
        pos = (size_t)snprintf(out, cap, "%s", url);
    }
    (void)pos;
    redact_password_params(out, cap);
}

size_t kl_config_json(const struct kl_config *cfg, char *out, size_t cap)
{
    cJSON *doc = cJSON_CreateObject();
    char buf[4096];
    bool ok = doc != NULL;

    for (size_t i = 0; ok && i < N_VARS; i++) {
        const struct kl_config_var *v = &vars[i];
        const char *s;
        cJSON *item;

        if (v->type == KL_CONFIG_DOC) {
            s = cfg->env != NULL ? kl_env_get(cfg->env, v->name) : NULL;
            if (s == NULL)
                continue;
            item = cJSON_CreateString((v->flags & KL_CONFIG_SECRET) ? "<redacted>" : s);
        } else if (v->type == KL_CONFIG_INT) {
            item = cJSON_CreateNumber(*(const int *)((const char *)cfg + v->offset));
        } else if (v->type == KL_CONFIG_SIZE) {
            item = cJSON_CreateNumber((double)*(const size_t *)((const char *)cfg + v->offset));
        } else {
            s = cstr_field(cfg, v);
            if (s[0] == '\0') {
                item = cJSON_CreateNull();
            } else if (v->flags & KL_CONFIG_SECRET) {
                item = cJSON_CreateString("<redacted>");
            } else if (v->flags & KL_CONFIG_REDACT) {
                kl_config_redact_url(s, buf, sizeof buf);
                item = cJSON_CreateString(buf);
            } else {
                item = cJSON_CreateString(s);
            }
        }
        ok = item != NULL && cJSON_AddItemToObject(doc, v->name, item);
        if (item != NULL && !ok)
            cJSON_Delete(item);
    }
    OPENSSL_cleanse(buf, sizeof buf);
    if (!ok || !cJSON_PrintPreallocated(doc, out, (int)(cap > INT32_MAX ? INT32_MAX : cap), false))
        snprintf(out, cap, "{}");
    cJSON_Delete(doc);
    return strlen(out);
}

void kl_config_log(const struct kl_config *cfg, FILE *out)
{
    struct kl_logline line;
    char json[KL_LOGLINE_MAX - 256];

    if (KL_LOG_INFO < kl_log_threshold)
        return;
    kl_config_json(cfg, json, sizeof json);
    kl_logline_begin(&line, KL_LOG_INFO, "config", "effective configuration");
    kl_logline_raw(&line, "config", json);
    kl_logline_emit(&line, out);
}

/* Prints `text` wrapped at `width` columns, each line after `indent`. */
static void print_wrapped(FILE *out, const char *indent, const char *text, size_t width)
{
    size_t col = 0, ind = strlen(indent);

    while (*text != '\0') {
        size_t word = strcspn(text, " ");
        if (col > 0 && col + 1 + word > width) {
            fputc('\n', out);
            col = 0;
        }
        if (col == 0) {
            fputs(indent, out);
            col = ind;
        } else {
            fputc(' ', out);
            col++;
        }
        fwrite(text, 1, word, out);
        col += word;
        text += word;
        while (*text == ' ')
            text++;
    }
    if (col > 0)
        fputc('\n', out);
}

void kl_config_help(FILE *out)
{
    char rule[160], lo[32], hi[32], extra[256];

    fprintf(out, "Environment (validated at start; the effective values are logged, secrets "
                 "redacted):\n\n");
    for (size_t i = 0; i < N_VARS; i++) {
        const struct kl_config_var *v = &vars[i];
        if (v->type == KL_CONFIG_DOC) {
            if (i == 0 || vars[i - 1].type != KL_CONFIG_DOC)
                fprintf(out, "\nRead by the AWS layer (standard names, listed for reference):\n\n");
            fprintf(out, "  %s%s\n", v->name, (v->flags & KL_CONFIG_SECRET) ? "  (secret)" : "");
            print_wrapped(out, "      ", v->doc, 96);
            continue;
        }
        extra[0] = '\0';
        switch (v->type) {
        case KL_CONFIG_INT:
            snprintf(extra, sizeof extra, ", %lld..%lld", v->min, v->max);
            break;
        case KL_CONFIG_SIZE:
            format_size(v->min, lo, sizeof lo);
            format_size(v->max, hi, sizeof hi);
            snprintf(extra, sizeof extra, ", %s..%s", lo, hi);
            break;
        case KL_CONFIG_ENUM:
            describe_rule(v, rule, sizeof rule);
            snprintf(extra, sizeof extra, ", %s", rule);
            break;
        default:
            break;
        }
        fprintf(out, "  %s  (%s%s%s%s)\n", v->name, v->def != NULL ? "default " : "unset",
                v->def != NULL ? v->def : "", extra,
                (v->flags & KL_CONFIG_SECRET)   ? "; secret, never logged"
                : (v->flags & KL_CONFIG_REDACT) ? "; password never logged"
                                                : "");
        print_wrapped(out, "      ", v->doc, 96);
    }
}
