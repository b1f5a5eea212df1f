/*
 * Fast non-cryptographic randomness for jitter and sampling. Thread-safe
 * (per-thread state seeded from the kernel). Not for tokens or ids.
 */
#ifndef KL_UTIL_RAND_H
#define KL_UTIL_RAND_H

#include <stdint.h>

uint64_t kl_rand_u64(void);
/* Uniform in [0, bound); returns 0 when bound is 0. */
uint64_t kl_rand_below(uint64_t bound);

#endif
