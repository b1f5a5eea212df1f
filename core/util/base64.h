/*
 * Base64 with the standard alphabet (RFC 4648 §4), as Kinesis uses for record
 * Data and as `_kinesis_msg_id` is spelled. No line breaks; no URL alphabet.
 */
#ifndef KL_UTIL_BASE64_H
#define KL_UTIL_BASE64_H

#include <stdbool.h>
#include <stddef.h>

/* Bytes needed to encode `n` bytes with padding, plus the terminating NUL. */
size_t kl_base64_encoded_size(size_t n);
/* Largest number of bytes `n` encoded characters can decode to. */
size_t kl_base64_decoded_max(size_t n);

/* Encodes into `out` (at least kl_base64_encoded_size(n) bytes); NUL-terminates.
 * With `pad` false the trailing '=' are left out. Returns the length written. */
size_t kl_base64_encode(const void *in, size_t n, char *out, bool pad);

/* Decodes `n` characters into `out` (at least kl_base64_decoded_max(n) bytes).
 * Padding is optional; whitespace and other characters are rejected.
 * Returns 0 and sets *out_len, or -1 on malformed input. */
int kl_base64_decode(const char *in, size_t n, unsigned char *out, size_t *out_len);

#endif
