/*
 * Decimal text of integers without printf: no locale, no format parsing.
 * On the hot paths (row ids, COPY cells, timestamps) snprintf's format
 * interpreter cost more than the digits.
 */
#ifndef KL_UTIL_INTFMT_H
#define KL_UTIL_INTFMT_H

#include <stddef.h>
#include <stdint.h>

/* Room for the decimal text of any 64-bit integer, sign included. */
#define KL_INTFMT_MAX 21

/* Decimal digits of `v` into `out`; returns the length (no NUL written). */
size_t kl_fmt_u64(char *out, uint64_t v);
size_t kl_fmt_i64(char *out, int64_t v);

/* Two digits of `v` (0..99), zero-padded; returns out + 2. */
char *kl_fmt_2digits(char *out, unsigned v);

#endif
