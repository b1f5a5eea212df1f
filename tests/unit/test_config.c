/*
 * The configuration table (server/config.c) through an injected
 * environment: defaults, every type's bounds and bad values, the token
 * sources, redaction in the log line and in error messages, --help.
 */
#include "tests/support/test_support.h"
#include "server/config.h"
#include "core/util/env.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The table outlives the config, as kl_config_load asks (the log reads it). */
static struct kl_env_table t;

static int load(struct kl_config *cfg, const char *const *pairs, struct kl_err *err)
{
    kl_env_table_init(&t, pairs);
    return kl_config_load(cfg, &t.env, err);
}

static void defaults_without_any_variable(void **state)
{
    static const char *const none[] = {NULL};
    struct kl_config cfg;
    struct kl_err err = {0};
    (void)state;

    assert_int_equal(load(&cfg, none, &err), KL_OK);
    assert_string_equal(cfg.listen, "0.0.0.0:8080");
    assert_string_equal(cfg.listen_host, "0.0.0.0");
    assert_int_equal(cfg.listen_port, 8080);
    assert_int_equal(cfg.workers, 4);
    assert_int_equal(cfg.http_threads, 16);
    assert_int_equal(cfg.max_body, 1 << 20);
    assert_int_equal(cfg.shutdown_grace_s, 25);
    assert_string_equal(cfg.log_level, "info");
    assert_string_equal(cfg.api_token, "");
    assert_string_equal(cfg.database_url, "");
    assert_string_equal(cfg.sqlite_path, "./kinesis-loader.db");
    assert_string_equal(cfg.redis_url, "");
    assert_int_equal(cfg.job_retention_hours, 168);
    assert_int_equal(cfg.task_slice_s, 60);
    assert_string_equal(cfg.kinesis_pacing, "auto");
    kl_config_free(&cfg);
}

static void every_default_satisfies_its_own_rule(void **state)
{
    size_t n;
    const struct kl_config_var *vars = kl_config_vars(&n);
    (void)state;

    /* each default, given explicitly, loads (so the table cannot drift) */
    for (size_t i = 0; i < n; i++) {
        const char *pairs[3] = {vars[i].name, vars[i].def, NULL};
        struct kl_config cfg;
        struct kl_err err = {0};
        if (vars[i].def == NULL)
            continue;
        if (load(&cfg, pairs, &err) != KL_OK)
            fail_msg("%s=%s: %s", vars[i].name, vars[i].def, err.msg);
        kl_config_free(&cfg);
        assert_non_null(vars[i].doc);
        assert_true(strlen(vars[i].doc) > 10);
    }
}

static void values_are_parsed_by_type(void **state)
{
    static const char *const pairs[] = {"KL_LISTEN",
                                        "[::1]:0",
                                        "KL_WORKERS",
                                        "256",
                                        "KL_MAX_BODY",
                                        "2MiB",
                                        "KL_LOG_LEVEL",
                                        "DEBUG",
                                        "KL_KINESIS_PACING",
                                        "off",
                                        "KL_HTTP_THREADS",
                                        "1",
                                        "KL_SHUTDOWN_GRACE_S",
                                        "0",
                                        "REDIS_URL",
                                        "redis://:pw@localhost:6380/2",
                                        "DATABASE_URL",
                                        "postgresql://kl:secret@db:5432/kl?sslmode=require",
                                        NULL};
    struct kl_config cfg;
    struct kl_err err = {0};
    (void)state;

    assert_int_equal(load(&cfg, pairs, &err), KL_OK);
    assert_string_equal(cfg.listen_host, "::1");
    assert_int_equal(cfg.listen_port, 0);
    assert_int_equal(cfg.workers, 256);
    assert_int_equal(cfg.max_body, 2 << 20);
    assert_string_equal(cfg.log_level, "debug");
    assert_string_equal(cfg.kinesis_pacing, "off");
    assert_int_equal(cfg.http_threads, 1);
    assert_int_equal(cfg.shutdown_grace_s, 0);
    assert_string_equal(cfg.redis_url, "redis://:pw@localhost:6380/2");
    assert_string_equal(cfg.database_url, "postgresql://kl:secret@db:5432/kl?sslmode=require");
    kl_config_free(&cfg);
    /* the secrets are wiped */
    assert_string_equal(cfg.database_url, "");
    assert_string_equal(cfg.redis_url, "");
}

static void listen_forms(void **state)
{
    static const struct {
        const char *value;
        const char *host;
        int port;
    } ok[] = {
        {"0.0.0.0:8080", "0.0.0.0", 8080},         {":9000", "", 9000},
        {"localhost:1", "localhost", 1},           {"[::]:65535", "::", 65535},
        {"[fe80::1%eth0]:80", "fe80::1%eth0", 80},
    };
    static const char *const bad[] = {"8080",   "0.0.0.0:", "0.0.0.0:65536",
                                      "::1:80", "[::1]80",  "host name:80",
                                      "a:b",    "[]:80",    "0.0.0.0:-1"};
    (void)state;

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        const char *pairs[] = {"KL_LISTEN", ok[i].value, NULL};
        struct kl_config cfg;
        struct kl_err err = {0};
        if (load(&cfg, pairs, &err) != KL_OK)
            fail_msg("%s: %s", ok[i].value, err.msg);
        assert_string_equal(cfg.listen_host, ok[i].host);
        assert_int_equal(cfg.listen_port, ok[i].port);
        kl_config_free(&cfg);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *pairs[] = {"KL_LISTEN", bad[i], NULL};
        struct kl_config cfg;
        struct kl_err err = {0};
        assert_int_equal(load(&cfg, pairs, &err), KL_ERR_INVALID);
        assert_non_null(strstr(err.msg, "KL_LISTEN="));
        assert_non_null(strstr(err.msg, "HOST:PORT"));
    }
}

static void bad_values_name_the_variable_and_the_rule(void **state)
{
    static const struct {
        const char *name;
        const char *value;
        const char *rule;
    } cases[] = {
        {"KL_WORKERS", "0", "an integer from 1 to 256"},
        {"KL_WORKERS", "257", "an integer from 1 to 256"},
        {"KL_WORKERS", "four", "an integer from 1 to 256"},
        {"KL_WORKERS", "4 ", "an integer from 1 to 256"},
        {"KL_WORKERS", "-1", "an integer from 1 to 256"},
        {"KL_WORKERS", "99999999999999999999999", "an integer from 1 to 256"},
        {"KL_HTTP_THREADS", "65", "an integer from 1 to 64"},
        {"KL_SHUTDOWN_GRACE_S", "3601", "an integer from 0 to 3600"},
        {"KL_MAX_BODY", "1023", "a size from 1KiB to 64MiB"},
        {"KL_MAX_BODY", "65MiB", "a size from 1KiB to 64MiB"},
        {"KL_MAX_BODY", "1MB", "a size from 1KiB to 64MiB"},
        {"KL_MAX_BODY", "99999999999999999GiB", "a size from 1KiB to 64MiB"},
        {"KL_LOG_LEVEL", "verbose", "one of debug, info, warn, error"},
        {"KL_KINESIS_PACING", "yes", "one of auto, on, off"},
        {"KL_JOB_RETENTION_HOURS", "0", "an integer from 1 to 8760"},
        {"KL_LEASE_TTL_S", "4", "an integer from 5 to 600"},
        {"KL_HTTP_MAX_CONNECTIONS", "0", "an integer from 1 to 65536"},
        {"KL_HTTP_IDLE_TIMEOUT_S", "0", "an integer from 1 to 3600"},
        {"KL_SQLITE_PATH", "a\nb", "a file path"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *pairs[] = {cases[i].name, cases[i].value, NULL};
        struct kl_config cfg;
        struct kl_err err = {0};
        char prefix[96];
        assert_int_equal(load(&cfg, pairs, &err), KL_ERR_INVALID);
        snprintf(prefix, sizeof prefix, "%s=", cases[i].name);
        if (strncmp(err.msg, prefix, strlen(prefix)) != 0 || strstr(err.msg, cases[i].rule) == NULL)
            fail_msg("%s=%s: '%s'", cases[i].name, cases[i].value, err.msg);
    }
}

static void secrets_never_appear_in_error_messages(void **state)
{
    static const struct {
        const char *name;
        const char *value;
    } cases[] = {
        {"KL_API_TOKEN", "has space-s3cr3t"},      {"DATABASE_URL", "mysql://u:s3cr3t@h/db"},
        {"REDIS_URL", "http://u:s3cr3t@h"},        {"REDIS_URL", "rediss://u:s3cr3t@h:6379"},
        {"REDIS_URL", "redis://u:s3cr3t@h:99999"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *pairs[] = {cases[i].name, cases[i].value, NULL};
        struct kl_config cfg;
        struct kl_err err = {0};
        assert_int_equal(load(&cfg, pairs, &err), KL_ERR_INVALID);
        assert_non_null(strstr(err.msg, cases[i].name));
        if (strstr(err.msg, "s3cr3t") != NULL)
            fail_msg("secret leaked: %s", err.msg);
    }
    {
        const char *pairs[] = {"REDIS_URL", "rediss://h:6379", NULL};
        struct kl_config cfg;
        struct kl_err err = {0};
        assert_int_equal(load(&cfg, pairs, &err), KL_ERR_INVALID);
        assert_non_null(strstr(err.msg, "TLS"));
    }
}

static void redis_and_postgres_url_forms(void **state)
{
    static const char *const redis_ok[] = {"redis://localhost", "redis://localhost:6379",
                                           "redis://u:p@10.0.0.1:7000/3", "redis://[::1]:6379",
                                           "unix:///run/redis.sock"};
    static const char *const redis_bad[] = {"localhost:6379", "redis://", "redis://h:0",
                                            "redis://h/x", "unix://relative"};
    static const char *const pg_ok[] = {"postgres://h/db", "postgresql://u@h:5433/db",
                                        "host=h dbname=db user=u", "dbname=kl"};
    static const char *const pg_bad[] = {"h:5432/db", "mysql://h/db"};
    (void)state;

    for (size_t i = 0; i < sizeof redis_ok / sizeof redis_ok[0]; i++) {
        const char *pairs[] = {"REDIS_URL", redis_ok[i], NULL};
        struct kl_config cfg;
        struct kl_err err = {0};
        if (load(&cfg, pairs, &err) != KL_OK)
            fail_msg("%s: %s", redis_ok[i], err.msg);
        kl_config_free(&cfg);
    }
    for (size_t i = 0; i < sizeof redis_bad / sizeof redis_bad[0]; i++) {
        const char *pairs[] = {"REDIS_URL", redis_bad[i], NULL};
        struct kl_config cfg;
        struct kl_err err = {0};
        if (load(&cfg, pairs, &err) != KL_ERR_INVALID)
            fail_msg("%s accepted", redis_bad[i]);
    }
    for (size_t i = 0; i < sizeof pg_ok / sizeof pg_ok[0]; i++) {
        const char *pairs[] = {"DATABASE_URL", pg_ok[i], NULL};
        struct kl_config cfg;
        struct kl_err err = {0};
        if (load(&cfg, pairs, &err) != KL_OK)
            fail_msg("%s: %s", pg_ok[i], err.msg);
        kl_config_free(&cfg);
    }
    for (size_t i = 0; i < sizeof pg_bad / sizeof pg_bad[0]; i++) {
        const char *pairs[] = {"DATABASE_URL", pg_bad[i], NULL};
        struct kl_config cfg;
        struct kl_err err = {0};
        assert_int_equal(load(&cfg, pairs, &err), KL_ERR_INVALID);
        assert_non_null(strstr(err.msg, "libpq"));
    }
}

static void redaction_of_urls(void **state)
{
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"postgresql://kl:s3cr3t@db:5432/kl", "postgresql://kl:***@db:5432/kl"},
        {"postgresql://kl@db/kl", "postgresql://kl@db/kl"},
        {"postgresql://db/kl?user=kl&password=s3cr3t&sslmode=require",
         "postgresql://db/kl?user=kl&password=***&sslmode=require"},
        {"host=db password=s3cr3t dbname=kl", "host=db password=*** dbname=kl"},
        {"host=db password = 'a b\\' c' dbname=kl", "host=db password = *** dbname=kl"},
        {"host=db PASSWORD=s3cr3t", "host=db PASSWORD=***"},
        {"host=db passwordfile=x", "host=db passwordfile=x"},
        {"redis://:s3cr3t@cache:6379/0", "redis://:***@cache:6379/0"},
        {"redis://user:p@ss:w0rd@cache", "redis://user:***@cache"},
        {"redis://cache:6379", "redis://cache:6379"},
    };
    char out[256];
    (void)state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kl_config_redact_url(cases[i].in, out, sizeof out);
        if (strcmp(out, cases[i].out) != 0)
            fail_msg("%s -> %s, expected %s", cases[i].in, out, cases[i].out);
    }
}

static char *write_temp(const char *content)
{
    static char path[64];
    int fd;
    snprintf(path, sizeof path, "/tmp/kl-token-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
    return path;
}

static void token_sources(void **state)
{
    struct kl_config cfg;
    struct kl_err err = {0};
    char *path;
    (void)state;

    {
        const char *pairs[] = {"KL_API_TOKEN", "tok-123", NULL};
        assert_int_equal(load(&cfg, pairs, &err), KL_OK);
        assert_string_equal(cfg.api_token, "tok-123");
        kl_config_free(&cfg);
        assert_string_equal(cfg.api_token, "");
    }
    path = write_temp("  \n s3cr3t-from-file\n\n");
    {
        const char *pairs[] = {"KL_API_TOKEN_FILE", path, NULL};
        assert_int_equal(load(&cfg, pairs, &err), KL_OK);
        assert_string_equal(cfg.api_token, "s3cr3t-from-file");
        assert_string_equal(cfg.api_token_file, path);
        kl_config_free(&cfg);
    }
    {
        const char *pairs[] = {"KL_API_TOKEN_FILE", path, "KL_API_TOKEN", "x", NULL};
        assert_int_equal(load(&cfg, pairs, &err), KL_ERR_INVALID);
        assert_non_null(strstr(err.msg, "KL_API_TOKEN and KL_API_TOKEN_FILE"));
    }
    unlink(path);
    path = write_temp("two words\n");
    {
        const char *pairs[] = {"KL_API_TOKEN_FILE", path, NULL};
        assert_int_equal(load(&cfg, pairs, &err), KL_ERR_INVALID);
        assert_non_null(strstr(err.msg, "KL_API_TOKEN_FILE="));
        assert_null(strstr(err.msg, "words"));
    }
    unlink(path);
    path = write_temp(" \n\t\n");
    {
        const char *pairs[] = {"KL_API_TOKEN_FILE", path, NULL};
        assert_int_equal(load(&cfg, pairs, &err), KL_ERR_INVALID);
    }
    unlink(path);
    {
        const char *pairs[] = {"KL_API_TOKEN_FILE", "/nonexistent/token", NULL};
        assert_int_equal(load(&cfg, pairs, &err), KL_ERR_INVALID);
        assert_non_null(strstr(err.msg, "cannot be read"));
    }
    {
        static char big[KL_CONFIG_TOKEN_MAX + 2];
        const char *pairs[] = {"KL_API_TOKEN", big, NULL};
        memset(big, 'a', sizeof big - 1);
        assert_int_equal(load(&cfg, pairs, &err), KL_ERR_INVALID);
        big[KL_CONFIG_TOKEN_MAX] = '\0';
        assert_int_equal(load(&cfg, pairs, &err), KL_OK);
        kl_config_free(&cfg);
    }
}

static void the_log_line_redacts_secrets(void **state)
{
    static const char *const pairs[] = {"KL_API_TOKEN",
                                        "s3cr3t-token",
                                        "DATABASE_URL",
                                        "postgresql://kl:s3cr3t@db/kl",
                                        "REDIS_URL",
                                        "redis://:s3cr3t@cache:6379",
                                        "AWS_SECRET_ACCESS_KEY",
                                        "s3cr3t-aws",
                                        "AWS_REGION",
                                        "eu-west-1",
                                        NULL};
    struct kl_config cfg;
    struct kl_err err = {0};
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cJSON *line, *conf;
    (void)state;

    assert_non_null(f);
    assert_int_equal(load(&cfg, pairs, &err), KL_OK);
    kl_config_log(&cfg, f);
    fclose(f);
    kl_config_free(&cfg);
    assert_null(strstr(text, "s3cr3t"));
    assert_int_equal(strchr(text, '\n') - text, (long)len - 1); /* one line */
    line = cJSON_Parse(text);
    assert_non_null(line);
    assert_string_equal(cJSON_GetObjectItem(line, "level")->valuestring, "info");
    assert_string_equal(cJSON_GetObjectItem(line, "component")->valuestring, "config");
    conf = cJSON_GetObjectItem(line, "config");
    assert_non_null(conf);
    assert_string_equal(cJSON_GetObjectItem(conf, "KL_API_TOKEN")->valuestring, "<redacted>");
    assert_string_equal(cJSON_GetObjectItem(conf, "DATABASE_URL")->valuestring,
                        "postgresql://kl:***@db/kl");
    assert_string_equal(cJSON_GetObjectItem(conf, "REDIS_URL")->valuestring,
                        "redis://:***@cache:6379");
    assert_string_equal(cJSON_GetObjectItem(conf, "AWS_SECRET_ACCESS_KEY")->valuestring,
                        "<redacted>");
    assert_string_equal(cJSON_GetObjectItem(conf, "AWS_REGION")->valuestring, "eu-west-1");
    assert_null(cJSON_GetObjectItem(conf, "AWS_PROFILE")); /* unset AWS entries are left out */
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(conf, "KL_API_TOKEN_FILE")));
    assert_int_equal(cJSON_GetObjectItem(conf, "KL_WORKERS")->valueint, 4);
    assert_int_equal(cJSON_GetObjectItem(conf, "KL_MAX_BODY")->valueint, 1 << 20);
    cJSON_Delete(line);
    free(text);
}

static void help_lists_every_variable_with_default_and_bounds(void **state)
{
    char *text = NULL;
    size_t len = 0, n;
    FILE *f = open_memstream(&text, &len);
    const struct kl_config_var *vars = kl_config_vars(&n);
    (void)state;

    assert_non_null(f);
    kl_config_help(f);
    fclose(f);
    for (size_t i = 0; i < n; i++) {
        char want[128];
        if (strstr(text, vars[i].name) == NULL)
            fail_msg("%s missing from --help", vars[i].name);
        if (vars[i].def != NULL) {
            snprintf(want, sizeof want, "%s  (default %s", vars[i].name, vars[i].def);
            if (strstr(text, want) == NULL)
                fail_msg("no '%s' in --help", want);
        }
    }
    assert_non_null(strstr(text, "KL_WORKERS  (default 4, 1..256)"));
    assert_non_null(strstr(text, "KL_MAX_BODY  (default 1MiB, 1KiB..64MiB)"));
    assert_non_null(strstr(text, "KL_API_TOKEN  (unset; secret, never logged)"));
    /* no line past 100 columns */
    for (char *line = text, *nl; *line != '\0'; line = nl + 1) {
        nl = strchr(line, '\n');
        assert_non_null(nl);
        assert_true(nl - line <= 100);
    }
    free(text);
}

static void the_binary_prints_the_table(void **state)
{
    char *out = NULL;
    (void)state;

    assert_int_equal(kl_test_run(&out, "%s --help", KL_BINARY), 0);
    assert_non_null(strstr(out, "KL_LISTEN  (default 0.0.0.0:8080)"));
    assert_non_null(strstr(out, "AWS_ENDPOINT_URL_KINESIS"));
    free(out);
    assert_int_equal(kl_test_run(&out, "%s serve --help", KL_BINARY), 0);
    assert_non_null(strstr(out, "usage: kinesis-loader [serve]"));
    assert_non_null(strstr(out, "KL_SHUTDOWN_GRACE_S"));
    free(out);
    /* a bad value stops `serve` before anything starts, naming the variable */
    assert_int_equal(kl_test_run(&out, "KL_MAX_BODY=1GiB %s serve 2>&1", KL_BINARY), 2);
    assert_non_null(strstr(out, "KL_MAX_BODY=1GiB: expected a size from 1KiB to 64MiB"));
    free(out);
}

/* KL_CONTINUOUS_LOADS: inline or from @file, each entry a continuous load;
 * a bad entry or an unreadable file names the variable and says why. */
static void continuous_loads_inline_or_from_a_file(void **state)
{
    const char *inline_pairs[] = {
        "KL_CONTINUOUS_LOADS",
        "[{\"stream\":\"orders\",\"dataset_name\":\"raw\"},{\"stream\":\"clicks\"}]", NULL};
    const char *bad_pairs[] = {"KL_CONTINUOUS_LOADS", "[{\"stream\":\"orders\",\"chunk_size\":0}]",
                               NULL};
    const char *missing_pairs[] = {"KL_CONTINUOUS_LOADS", "@/nonexistent/loads.json", NULL};
    char path[] = "/tmp/kl-test-loads-XXXXXX", at[64];
    const char *file_pairs[] = {"KL_CONTINUOUS_LOADS", at, NULL};
    static const char *const none[] = {NULL};
    struct kl_config cfg;
    struct kl_err err = {0};
    FILE *f;
    int fd;
    (void)state;

    assert_int_equal(load(&cfg, none, &err), KL_OK);
    assert_null(cfg.continuous_loads);
    assert_int_equal(cfg.n_continuous_loads, 0);
    kl_config_free(&cfg);

    assert_int_equal(load(&cfg, inline_pairs, &err), KL_OK);
    assert_int_equal(cfg.n_continuous_loads, 2);
    assert_string_equal(cfg.continuous_loads[0].stream, "orders");
    assert_string_equal(cfg.continuous_loads[0].dataset_name, "raw");
    assert_true(cfg.continuous_loads[1].continuous);
    kl_config_free(&cfg);

    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fputs("[{\"stream\": \"orders\", \"poll_interval_ms\": 300}]\n", f);
    fclose(f);
    snprintf(at, sizeof at, "@%s", path);
    assert_int_equal(load(&cfg, file_pairs, &err), KL_OK);
    assert_int_equal(cfg.n_continuous_loads, 1);
    assert_int_equal(cfg.continuous_loads[0].poll_interval_ms, 300);
    kl_config_free(&cfg);
    unlink(path);

    assert_int_equal(load(&cfg, bad_pairs, &err), KL_ERR_INVALID);
    assert_non_null(strstr(err.msg, "KL_CONTINUOUS_LOADS"));
    assert_non_null(strstr(err.msg, "entry 0 (stream orders): chunk_size"));
    assert_int_equal(load(&cfg, missing_pairs, &err), KL_ERR_INVALID);
    assert_non_null(
        strstr(err.msg, "KL_CONTINUOUS_LOADS=@/nonexistent/loads.json: cannot be read"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_without_any_variable),
        cmocka_unit_test(every_default_satisfies_its_own_rule),
        cmocka_unit_test(values_are_parsed_by_type),
        cmocka_unit_test(listen_forms),
        cmocka_unit_test(bad_values_name_the_variable_and_the_rule),
        cmocka_unit_test(secrets_never_appear_in_error_messages),
        cmocka_unit_test(redis_and_postgres_url_forms),
        cmocka_unit_test(redaction_of_urls),
        cmocka_unit_test(token_sources),
        cmocka_unit_test(continuous_loads_inline_or_from_a_file),
        cmocka_unit_test(the_log_line_redacts_secrets),
        cmocka_unit_test(help_lists_every_variable_with_default_and_bounds),
        cmocka_unit_test(the_binary_prints_the_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
