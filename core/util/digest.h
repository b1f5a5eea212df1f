/*
 * dlt's digest128 with a chosen length: base64 (standard alphabet, '='
 * stripped) of the first `nbytes` of SHAKE-128 over the input. Used for
 * `_dlt_id` (10 bytes) and naming tags (4 bytes). SHAKE-128 is computed here
 * rather than through EVP because it runs once per row on the hot path.
 */
#ifndef KL_UTIL_DIGEST_H
#define KL_UTIL_DIGEST_H

#include <stddef.h>

#define KL_DLT_ID_BYTES 10 /* dlt's DLT_ID_LENGTH_BYTES */
#define KL_DLT_ID_LEN 14   /* base64 characters of a 10-byte digest, '=' stripped */
#define KL_DIGEST_MAX_BYTES 32

/* SHAKE-128 of the concatenation of `n` parts, `out_len` bytes of output. */
void kl_shake128(const void *const *parts, const size_t *lens, size_t n, unsigned char *out,
                 size_t out_len);

/* Writes the base64 text and a NUL into `out` (at least 4 * ceil(nbytes / 3)
 * + 1 bytes); returns its length. `nbytes` at most KL_DIGEST_MAX_BYTES. */
size_t kl_digest_b64(const void *data, size_t len, size_t nbytes, char *out);

#endif
