/*
 * `serve` without the choice of engine: runs the HTTP server over a given
 * service facade until SIGTERM or SIGINT, then stops in order (no new
 * connections; the engine's drain hook; in-flight requests finish) within
 * KL_SHUTDOWN_GRACE_S. server/main.c builds the engine and calls this; tests
 * call it with a fake service.
 */
#ifndef KL_SERVER_SERVE_H
#define KL_SERVER_SERVE_H

#include <stdint.h>
#include <stdio.h>

struct kl_config;
struct kl_err;
struct kl_service;

struct kl_serve_hooks {
    /* The server listens on `port` (the bound one, also for KL_LISTEN port 0). */
    void (*on_listening)(void *arg, uint16_t port);
    /* Shutdown began and no new connection is accepted: stop taking tasks,
     * let running ones finish their chunk and release their leases, within
     * `budget_ms`. Runs while in-flight requests finish. */
    void (*drain)(void *arg, int64_t budget_ms);
    void *arg;
    FILE *log; /* log lines; NULL: stderr */
};

/* Serves until a stop signal. `hooks` may be NULL. Returns KL_OK after a
 * clean stop; an error when the server could not start (the message in
 * `err`), or KL_ERR_CANCELLED when requests were still running at the end of
 * the grace period (the process should exit anyway; the daemon is left
 * running rather than waited for). */
int kl_serve(const struct kl_config *cfg, struct kl_service *svc,
             const struct kl_serve_hooks *hooks, struct kl_err *err);

/* What `kinesis-loader serve` runs the facade on: made by main.c, which is
 * the one place that knows the concrete store and destination. */
struct kl_serve_engine {
    /* Builds and starts the engine from the configuration. */
    struct kl_service *(*start)(void *arg, const struct kl_config *cfg, struct kl_err *err);
    /* See kl_serve_hooks.drain. */
    void (*drain)(void *arg, int64_t budget_ms);
    /* Stops whatever is left and frees the engine. */
    void (*destroy)(void *arg);
    void *arg;
};

/* The `serve` command: options, configuration (validated and logged), the
 * engine, kl_serve. `engine` NULL: this build has none, which is an error
 * after the configuration was checked. Returns the exit status. */
int kl_serve_command(int argc, char **argv, const struct kl_serve_engine *engine);
void kl_serve_usage(FILE *out);

#endif
