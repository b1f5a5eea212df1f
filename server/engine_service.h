/*
 * The engine `kinesis-loader serve` runs (see engine_service.c): built from
 * the configuration, handed to kl_serve_command by main.c.
 */
#ifndef KL_SERVER_ENGINE_SERVICE_H
#define KL_SERVER_ENGINE_SERVICE_H

#include "server/serve.h"

/* Static; one engine per process. */
const struct kl_serve_engine *kl_engine_serve_hooks(void);

#endif
