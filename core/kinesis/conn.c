/*
 * Assembles transport, credentials, region, endpoint and client from the
 * options and the environment. No I/O happens here: credentials are looked
 * up on the first call.
 */
#include "core/kinesis/conn.h"
#include "core/aws/creds.h"
#include "core/aws/http.h"
#include "core/kinesis/client.h"
#include "core/util/clock.h"
#include "core/util/env.h"
#include "core/util/err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FALLBACK_REGION "us-east-1"

/* KL_KINESIS_CALL_TIMEOUT_S: whole seconds, 1..3600; unset: 0 (the client's). */
static int deadline_from_env(const struct kl_env *env, int64_t *ms, struct kl_err *err)
{
    const char *v = kl_env_get(env, "KL_KINESIS_CALL_TIMEOUT_S");
    char *end = NULL;
    long s;

    *ms = 0;
    if (v == NULL || v[0] == '\0')
        return KL_OK;
    errno = 0;
    s = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || s < 1 || s > 3600)
        return kl_err_set(
            err, KL_ERR_INVALID,
            "KL_KINESIS_CALL_TIMEOUT_S must be whole seconds from 1 to 3600, not '%s'", v);
    *ms = (int64_t)s * 1000;
    return KL_OK;
}

int kl_kinesis_conn_init(struct kl_kinesis_conn *c, const struct kl_kinesis_conn_options *o,
                         struct kl_err *err)
{
    const struct kl_env *env = o->env ? o->env : kl_env_system();
    const struct kl_clock *clock = o->clock ? o->clock : kl_clock_system();
    struct kl_cred_chain_config chain = {0};
    struct kl_kinesis_config kcfg = {0};
    struct kl_err sub;
    int rc;

    memset(c, 0, sizeof *c);
    if (o->endpoint != NULL) {
        if (strlen(o->endpoint) >= sizeof c->endpoint) {
            rc = kl_err_set(err, KL_ERR_INVALID, "Kinesis endpoint is too long");
            goto fail;
        }
        snprintf(c->endpoint, sizeof c->endpoint, "%s", o->endpoint);
    }
    if (o->region != NULL) {
        if (strlen(o->region) >= sizeof c->region) {
            rc = kl_err_set(err, KL_ERR_INVALID, "AWS region is too long");
            goto fail;
        }
        snprintf(c->region, sizeof c->region, "%s", o->region);
    } else {
        rc = kl_aws_region_resolve(env, o->profile, c->region, sizeof c->region, &sub);
        if (rc == KL_ERR_NOT_FOUND) {
            /* Emulators ignore the region; AWS itself needs one. */
            if (o->endpoint == NULL && kl_env_get(env, "AWS_ENDPOINT_URL_KINESIS") == NULL &&
                kl_env_get(env, "AWS_ENDPOINT_URL") == NULL) {
                rc = kl_err_set(err, KL_ERR_INVALID,
                                "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or "
                                "region in the profile)");
                goto fail;
            }
            snprintf(c->region, sizeof c->region, "%s", FALLBACK_REGION);
        } else if (rc != KL_OK) {
            if (err != NULL)
                *err = sub;
            goto fail;
        }
    }
    if (c->endpoint[0] == '\0') {
        rc = kl_aws_endpoint_resolve(env, "KINESIS", "kinesis", c->region, c->endpoint,
                                     sizeof c->endpoint, err);
        if (rc != KL_OK)
            goto fail;
    }

    c->http = kl_http_curl_create(NULL, err);
    if (c->http == NULL) {
        rc = err ? (int)err->code : KL_ERR_INTERNAL;
        goto fail;
    }
    chain.env = env;
    chain.clock = clock;
    chain.http = c->http;
    chain.access_key_id = o->access_key_id;
    chain.secret_access_key = o->secret_access_key;
    chain.session_token = o->session_token;
    chain.profile = o->profile;
    chain.region = c->region;
    c->creds = kl_cred_chain_create(&chain, err);
    if (c->creds == NULL) {
        rc = err ? (int)err->code : KL_ERR_INTERNAL;
        goto fail;
    }
    kcfg.endpoint = c->endpoint;
    kcfg.region = c->region;
    kcfg.http = c->http;
    kcfg.creds = c->creds;
    kcfg.clock = clock;
    kcfg.max_attempts = o->max_attempts;
    kcfg.timeout_ms = o->timeout_ms;
    kcfg.call_deadline_ms = o->call_deadline_ms;
    if (kcfg.call_deadline_ms <= 0) {
        rc = deadline_from_env(env, &kcfg.call_deadline_ms, err);
        if (rc != KL_OK)
            goto fail;
    }
    kcfg.cancel = o->cancel;
    c->client = kl_kinesis_create(&kcfg, err);
    if (c->client == NULL) {
        rc = err ? (int)err->code : KL_ERR_INTERNAL;
        goto fail;
    }
    return KL_OK;

fail:
    kl_kinesis_conn_free(c);
    return rc;
}

void kl_kinesis_conn_free(struct kl_kinesis_conn *c)
{
    kl_kinesis_destroy(c->client);
    kl_cred_provider_destroy(c->creds);
    kl_http_destroy(c->http);
    c->client = NULL;
    c->creds = NULL;
    c->http = NULL;
}
