/*
 * SHAKE-128 digests in dlt's spelling. The digest algorithm is fetched once
 * and each thread keeps its own context, so the per-message cost is the hash
 * itself.
 */
#include "core/kinesis/msgid.h"
#include "core/util/base64.h"
#include "core/util/err.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define DIGEST_BYTES 15

static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static EVP_MD *shake128;

static void fetch_shake128(void)
{
    shake128 = EVP_MD_fetch(NULL, "SHAKE128", NULL);
}

/* Feeds `n` parts to SHAKE-128 and encodes the first 15 bytes. */
static int digest_parts(const void *const *parts, const size_t *lens, size_t n,
                        char out[KL_MSG_ID_LEN + 1], struct kl_err *err)
{
    static _Thread_local EVP_MD_CTX *ctx;
    unsigned char md[DIGEST_BYTES];

    if (pthread_once(&fetch_once, fetch_shake128) != 0 || shake128 == NULL)
        return kl_err_set(err, KL_ERR_INTERNAL, "SHAKE-128 is not available in OpenSSL");
    if (ctx == NULL && (ctx = EVP_MD_CTX_new()) == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "EVP_MD_CTX_new failed");
    if (EVP_DigestInit_ex(ctx, shake128, NULL) != 1)
        return kl_err_set(err, KL_ERR_INTERNAL, "EVP_DigestInit_ex(SHAKE128) failed");
    for (size_t i = 0; i < n; i++) {
        if (EVP_DigestUpdate(ctx, parts[i], lens[i]) != 1)
            return kl_err_set(err, KL_ERR_INTERNAL, "EVP_DigestUpdate failed");
    }
    if (EVP_DigestFinalXOF(ctx, md, sizeof md) != 1)
        return kl_err_set(err, KL_ERR_INTERNAL, "EVP_DigestFinalXOF failed");
    kl_base64_encode(md, sizeof md, out, false);
    return KL_OK;
}

int kl_digest128(const void *data, size_t len, char out[KL_MSG_ID_LEN + 1], struct kl_err *err)
{
    const void *parts[1] = {data};
    size_t lens[1] = {len};
    return digest_parts(parts, lens, 1, out, err);
}

int kl_msg_id(const char *shard_id, const char *sequence, int64_t sub_seq,
              char out[KL_MSG_ID_LEN + 1], struct kl_err *err)
{
    char suffix[24];
    const void *parts[3] = {shard_id, sequence, suffix};
    size_t lens[3] = {strlen(shard_id), strlen(sequence), 0};

    if (sub_seq >= 0)
        lens[2] = (size_t)snprintf(suffix, sizeof suffix, ":%" PRId64, sub_seq);
    return digest_parts(parts, lens, sub_seq >= 0 ? 3 : 2, out, err);
}
