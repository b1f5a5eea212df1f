/*
 * The one place that builds the concrete backends from the configuration:
 * the Kinesis connection, the state store (Redis, or in this process), the
 * destination (PostgreSQL, or the SQLite file) and the engine over them.
 * Every command that loads (`serve`, `load`) opens them here, so each honours
 * the same KL_* settings. Not here: HTTP serving, or what a command does.
 */
#ifndef KL_SERVER_BACKENDS_H
#define KL_SERVER_BACKENDS_H

#include <stdbool.h>

#include "core/kinesis/conn.h"

struct kl_config;
struct kl_dest_factory;
struct kl_engine;
struct kl_err;
struct kl_store;

struct kl_backends {
    struct kl_kinesis_conn conn;
    bool conn_open;
    struct kl_store *store;
    struct kl_dest_factory *dests;
    struct kl_engine *engine; /* started */
    const char *dest_kind;    /* "postgres" or "sqlite" */
};

/* Opens everything `cfg` names and starts the engine. On failure nothing
 * is left open and `err` says what failed. */
int kl_backends_open(struct kl_backends *b, const struct kl_config *cfg, struct kl_err *err);
/* Stops the engine and closes everything; a zeroed struct is a no-op. */
void kl_backends_close(struct kl_backends *b);

#endif
