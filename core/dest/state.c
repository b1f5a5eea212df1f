/*
 * Building dlt's pipeline state document (see state.h).
 */
#include "core/dest/state.h"
#include "core/dest/dest.h"
#include "core/dest/format.h"
#include "core/util/base64.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

static uint32_t adler32(const unsigned char *p, size_t n)
{
    uint32_t a = 1, b = 0;
    while (n > 0) {
        size_t k = n < 5552 ? n : 5552; /* largest run without overflow */
        n -= k;
        while (k-- > 0) {
            a += *p++;
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    return (b << 16) | a;
}

int kl_zlib_stored(const void *in, size_t n, unsigned char **out, size_t *out_len,
                   struct kl_err *err)
{
    const unsigned char *src = in;
    size_t blocks = n / 65535 + 1;
    size_t cap = 2 + blocks * 5 + n + 4;
    unsigned char *buf = malloc(cap), *p;
    uint32_t sum = adler32(src, n);

    if (buf == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "zlib buffer");
    p = buf;
    *p++ = 0x78; /* deflate, 32 KiB window */
    *p++ = 0x01; /* no dictionary, level 0; (0x78 << 8 | 0x01) % 31 == 0 */
    do {
        size_t k = n < 65535 ? n : 65535;
        *p++ = (unsigned char)(k == n ? 1 : 0); /* BFINAL, BTYPE 00 (stored) */
        *p++ = (unsigned char)(k & 0xff);
        *p++ = (unsigned char)(k >> 8);
        *p++ = (unsigned char)(~k & 0xff);
        *p++ = (unsigned char)((~k >> 8) & 0xff);
        memcpy(p, src, k);
        p += k;
        src += k;
        n -= k;
    } while (n > 0);
    *p++ = (unsigned char)(sum >> 24);
    *p++ = (unsigned char)(sum >> 16);
    *p++ = (unsigned char)(sum >> 8);
    *p++ = (unsigned char)sum;
    *out = buf;
    *out_len = (size_t)(p - buf);
    return KL_OK;
}

static int sha3_b64(const char *text, char out[64], struct kl_err *err)
{
    unsigned char md[32];
    unsigned int len = 0;

    if (EVP_Digest(text, strlen(text), md, &len, EVP_sha3_256(), NULL) != 1 || len != 32)
        return kl_err_set(err, KL_ERR_INTERNAL, "EVP_Digest(SHA3-256) failed");
    kl_base64_encode(md, 32, out, true);
    return KL_OK;
}

static cJSON *stream_state(const struct kl_state_stream *s)
{
    cJSON *res = cJSON_CreateObject();
    cJSON *incr, *kin, *last;

    if (res == NULL)
        return NULL;
    if (s->has_last_run) {
        char ts[KL_FMT_MAX];
        kl_fmt_timestamp(ts, s->last_run_ms * 1000, KL_TS_ISO);
        if (cJSON_AddStringToObject(res, "initial_at_timestamp", ts) == NULL)
            goto fail;
    }
    incr = cJSON_AddObjectToObject(res, "incremental");
    kin = incr != NULL ? cJSON_AddObjectToObject(incr, "_kinesis") : NULL;
    if (kin == NULL || cJSON_AddNullToObject(kin, "initial_value") == NULL)
        goto fail;
    last = cJSON_AddObjectToObject(kin, "last_value");
    if (last == NULL)
        goto fail;
    for (size_t i = 0; i < s->n_checkpoints; i++)
        if (cJSON_AddStringToObject(last, s->checkpoints[i].position.shard_id,
                                    s->checkpoints[i].position.sequence) == NULL)
            goto fail;
    if (cJSON_AddArrayToObject(kin, "unique_hashes") == NULL)
        goto fail;
    return res;
fail:
    cJSON_Delete(res);
    return NULL;
}

int kl_state_doc_build(const struct kl_state_doc_in *in, struct kl_state_doc *out,
                       struct kl_err *err)
{
    cJSON *root = cJSON_CreateObject(), *names, *sources, *src, *resources;
    char *text = NULL;
    unsigned char *z = NULL;
    size_t zlen = 0;
    unsigned char rid[10];
    int rc = KL_ERR_NOMEM;

    memset(out, 0, sizeof *out);
    if (root == NULL)
        goto cleanup;
    if (cJSON_AddNumberToObject(root, "_state_engine_version", KL_STATE_ENGINE_VERSION) == NULL ||
        cJSON_AddStringToObject(root, "pipeline_name", in->pipeline_name) == NULL ||
        cJSON_AddStringToObject(root, "dataset_name", in->dataset_name) == NULL ||
        cJSON_AddStringToObject(root, "default_schema_name", in->schema_name) == NULL)
        goto cleanup;
    names = cJSON_AddArrayToObject(root, "schema_names");
    if (names == NULL)
        goto cleanup;
    cJSON_AddItemToArray(names, cJSON_CreateString(in->schema_name));
    if (cJSON_AddStringToObject(root, "destination_type", in->destination_type) == NULL ||
        cJSON_AddNullToObject(root, "destination_name") == NULL)
        goto cleanup;
    sources = cJSON_AddObjectToObject(root, "sources");
    src = sources != NULL ? cJSON_AddObjectToObject(sources, in->schema_name) : NULL;
    resources = src != NULL ? cJSON_AddObjectToObject(src, "resources") : NULL;
    if (resources == NULL)
        goto cleanup;
    for (size_t i = 0; i < in->n_streams; i++) {
        cJSON *r = stream_state(&in->streams[i]);
        if (r == NULL)
            goto cleanup;
        cJSON_AddItemToObject(resources, in->streams[i].stream_name, r);
    }

    /* dlt hashes the state without its version fields. */
    text = cJSON_PrintUnformatted(root);
    if (text == NULL)
        goto cleanup;
    rc = sha3_b64(text, out->version_hash, err);
    if (rc != KL_OK)
        goto cleanup;
    free(text);
    text = NULL;
    rc = KL_ERR_NOMEM;
    if (cJSON_AddNumberToObject(root, "_state_version", (double)in->version) == NULL ||
        cJSON_AddStringToObject(root, "_version_hash", out->version_hash) == NULL)
        goto cleanup;
    text = cJSON_PrintUnformatted(root);
    if (text == NULL)
        goto cleanup;

    rc = kl_zlib_stored(text, strlen(text), &z, &zlen, err);
    if (rc != KL_OK)
        goto cleanup;
    out->state = malloc(kl_base64_encoded_size(zlen));
    if (out->state == NULL) {
        rc = kl_err_set(err, KL_ERR_NOMEM, "state encoding");
        goto cleanup;
    }
    kl_base64_encode(z, zlen, out->state, true);
    if (RAND_bytes(rid, sizeof rid) != 1) {
        rc = kl_err_set(err, KL_ERR_INTERNAL, "RAND_bytes failed");
        goto cleanup;
    }
    kl_base64_encode(rid, sizeof rid, out->row_id, false);
    out->json = text;
    text = NULL;
    rc = KL_OK;

cleanup:
    if (rc == KL_ERR_NOMEM && err != NULL && err->code != KL_ERR_NOMEM)
        kl_err_set(err, KL_ERR_NOMEM, "building the pipeline state");
    if (rc != KL_OK)
        kl_state_doc_free(out);
    cJSON_Delete(root);
    free(text);
    free(z);
    return rc;
}

void kl_state_doc_free(struct kl_state_doc *d)
{
    if (d == NULL)
        return;
    free(d->json);
    free(d->state);
    memset(d, 0, sizeof *d);
}
