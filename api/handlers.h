/*
 * The REST handlers of openapi.yaml, one per operation: validate the
 * request, call the service facade (api/service.h), map the result to a
 * response. Routed by routes.c; each leaves a complete response.
 */
#ifndef KL_API_HANDLERS_H
#define KL_API_HANDLERS_H

#include "api/api.h"

void kl_api_create_load(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                        struct kl_api_resp *resp);
void kl_api_list_jobs(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                      struct kl_api_resp *resp);
void kl_api_get_job(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                    struct kl_api_resp *resp);
void kl_api_cancel_job(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                       struct kl_api_resp *resp);
void kl_api_list_streams(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                         struct kl_api_resp *resp);
void kl_api_get_stream(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                       struct kl_api_resp *resp);
void kl_api_get_state(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                      struct kl_api_resp *resp);
void kl_api_delete_state(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                         struct kl_api_resp *resp);
void kl_api_healthz(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                    struct kl_api_resp *resp);
void kl_api_readyz(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                   struct kl_api_resp *resp);
void kl_api_metrics(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                    struct kl_api_resp *resp);
void kl_api_openapi(const struct kl_api_ctx *ctx, const struct kl_api_req *req,
                    struct kl_api_resp *resp);

/* True for "application/json" with optional parameters; a charset, when
 * given, must be UTF-8. Case-insensitive. */
bool kl_api_media_type_is_json(const char *content_type);

/* Idempotency-Key: 1..255 printable ASCII characters. */
bool kl_api_idempotency_key_valid(const char *s);

#endif
