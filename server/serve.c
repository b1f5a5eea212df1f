/*
 * The serve loop and the `serve` command (serve.h): configuration in, HTTP
 * server up, wait for a signal, stop in order. The order matters: first no
 * new connections (load balancers and Kubernetes see refused connections and
 * move on), then the engine drains while requests already in flight finish,
 * then the daemon goes.
 */
#include "server/serve.h"
#include "server/config.h"
#include "server/http.h"
#include "server/logline.h"
#include "server/signals.h"
#include "core/util/env.h"
#include "core/util/err.h"
#include "core/util/log.h"

#include <stdbool.h>
#include <string.h>
#include <time.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void log_event(FILE *out, enum kl_log_level level, const char *msg, const char *k1,
                      const char *v1, const char *k2, int64_t v2)
{
    struct kl_logline line;
    if (level < kl_log_threshold)
        return;
    kl_logline_begin(&line, level, "serve", msg);
    if (k1 != NULL)
        kl_logline_str(&line, k1, v1);
    if (k2 != NULL)
        kl_logline_int(&line, k2, v2);
    kl_logline_emit(&line, out);
}

int kl_serve(const struct kl_config *cfg, struct kl_service *svc,
             const struct kl_serve_hooks *hooks, struct kl_err *err)
{
    struct kl_httpd_opts o;
    struct kl_httpd *h = NULL;
    FILE *log = hooks != NULL ? hooks->log : NULL;
    int64_t deadline;
    int sig = 0, rc;
    bool drained;
    char address[300];

    rc = kl_signals_install(err);
    if (rc != KL_OK)
        return rc;
    memset(&o, 0, sizeof o);
    o.host = cfg->listen_host;
    o.port = cfg->listen_port;
    o.threads = cfg->http_threads;
    o.max_connections = cfg->http_max_connections;
    o.idle_timeout_s = cfg->http_idle_timeout_s;
    o.max_body = cfg->max_body;
    o.api_token = cfg->api_token;
    o.svc = svc;
    o.log = log;
    h = kl_httpd_start(&o, err);
    if (h == NULL) {
        rc = err != NULL ? (int)err->code : KL_ERR_IO;
        goto cleanup;
    }
    snprintf(address, sizeof address, "%s%s%s:%u", strchr(cfg->listen_host, ':') ? "[" : "",
             cfg->listen_host[0] != '\0' ? cfg->listen_host : "*",
             strchr(cfg->listen_host, ':') ? "]" : "", kl_httpd_port(h));
    log_event(log, KL_LOG_INFO, "listening", "address", address, "port", kl_httpd_port(h));
    if (cfg->api_token[0] == '\0')
        log_event(log, KL_LOG_WARN, "no KL_API_TOKEN or KL_API_TOKEN_FILE: every endpoint is open",
                  NULL, NULL, NULL, 0);
    if (hooks != NULL && hooks->on_listening != NULL)
        hooks->on_listening(hooks->arg, kl_httpd_port(h));

    while (sig <= 0)
        sig = kl_signals_wait(1000);
    deadline = now_ms() + (int64_t)cfg->shutdown_grace_s * 1000;
    log_event(log, KL_LOG_INFO, "stopping", "signal", kl_signal_name(sig), "grace_s",
              cfg->shutdown_grace_s);
    kl_httpd_quiesce(h);
    if (hooks != NULL && hooks->drain != NULL)
        hooks->drain(hooks->arg, deadline - now_ms() > 0 ? deadline - now_ms() : 0);
    drained = kl_httpd_drain(h, deadline - now_ms() > 0 ? deadline - now_ms() : 0);
    if (!drained) {
        log_event(log, KL_LOG_ERROR, "requests still running at the end of the grace period", NULL,
                  NULL, "in_flight", kl_httpd_in_flight(h));
        /* Stopping the daemon would wait for them: leave it to the exit. */
        h = NULL;
        rc =
            kl_err_set(err, KL_ERR_CANCELLED, "requests still running after KL_SHUTDOWN_GRACE_S=%d",
                       cfg->shutdown_grace_s);
        goto cleanup;
    }
    log_event(log, KL_LOG_INFO, "stopped", NULL, NULL, NULL, 0);
    rc = KL_OK;
cleanup:
    kl_httpd_destroy(h);
    kl_signals_restore();
    return rc;
}

void kl_serve_usage(FILE *out)
{
    fprintf(out, "usage: kinesis-loader [serve]\n"
                 "\n"
                 "Runs the service: the REST control plane (openapi.yaml, served at\n"
                 "/openapi.yaml) and the workers that run load jobs. Stops on SIGTERM or SIGINT:\n"
                 "no new connections, running chunks finish and commit, in-flight requests are\n"
                 "answered, within KL_SHUTDOWN_GRACE_S.\n"
                 "\n"
                 "Exit status: 0 stopped cleanly, 1 failure, 2 bad usage or configuration.\n"
                 "\n");
    kl_config_help(out);
}

static void log_error(const char *msg, const char *detail)
{
    struct kl_logline line;
    if (KL_LOG_ERROR < kl_log_threshold)
        return;
    kl_logline_begin(&line, KL_LOG_ERROR, "serve", msg);
    kl_logline_str(&line, "error", detail);
    kl_logline_emit(&line, NULL);
}

int kl_serve_command(int argc, char **argv, const struct kl_serve_engine *engine)
{
    struct kl_config cfg;
    struct kl_serve_hooks hooks;
    struct kl_service *svc = NULL;
    struct kl_err err = {KL_OK, ""};
    int status = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            kl_serve_usage(stdout);
            return 0;
        }
        fprintf(stderr, "kinesis-loader serve: unknown option '%s'\n\n", argv[i]);
        kl_serve_usage(stderr);
        return 2;
    }
    if (kl_config_load(&cfg, kl_env_system(), &err) != KL_OK) {
        log_error("invalid configuration", err.msg);
        fprintf(stderr,
                "kinesis-loader serve: %s\n(kinesis-loader serve --help lists the "
                "settings)\n",
                err.msg);
        return 2;
    }
    (void)kl_log_set_level_name(cfg.log_level);
    kl_config_log(&cfg, NULL);
    if (engine == NULL) {
        log_error("cannot serve", "this build has no load engine behind the REST API yet");
        goto cleanup;
    }
    svc = engine->start(engine->arg, &cfg, &err);
    if (svc == NULL) {
        log_error("the engine did not start", err.msg);
        goto cleanup;
    }
    memset(&hooks, 0, sizeof hooks);
    hooks.drain = engine->drain;
    hooks.arg = engine->arg;
    if (kl_serve(&cfg, svc, &hooks, &err) == KL_OK)
        status = 0;
    else
        log_error("serve failed", err.msg);
    engine->destroy(engine->arg);
cleanup:
    kl_config_free(&cfg);
    return status;
}
