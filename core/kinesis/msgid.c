/*
 * `_kinesis_msg_id` on dlt's digest128 (core/util/digest.h): no OpenSSL
 * context per thread, nothing to free when a reader thread ends.
 */
#include "core/kinesis/msgid.h"
#include "core/util/base64.h"
#include "core/util/digest.h"
#include "core/util/err.h"
#include "core/util/intfmt.h"

#include <string.h>

#define DIGEST_BYTES 15

int kl_digest128(const void *data, size_t len, char out[KL_MSG_ID_LEN + 1], struct kl_err *err)
{
    (void)err;
    kl_digest_b64(data, len, DIGEST_BYTES, out);
    return KL_OK;
}

int kl_msg_id(const char *shard_id, const char *sequence, int64_t sub_seq,
              char out[KL_MSG_ID_LEN + 1], struct kl_err *err)
{
    unsigned char md[DIGEST_BYTES];
    char suffix[24];
    const void *parts[3] = {shard_id, sequence, suffix};
    size_t lens[3] = {strlen(shard_id), strlen(sequence), 0};

    (void)err;
    if (sub_seq >= 0) {
        suffix[0] = ':';
        lens[2] = 1 + kl_fmt_i64(suffix + 1, sub_seq);
    }
    kl_shake128(parts, lens, sub_seq >= 0 ? 3 : 2, md, sizeof md);
    kl_base64_encode(md, sizeof md, out, false);
    return KL_OK;
}
