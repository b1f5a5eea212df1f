/*
 * Fast text forms of cell values for the destinations: integers, doubles
 * that read back to the same bits, UTC timestamps from epoch microseconds,
 * hex. No allocation, no locale. Not for escaping (see copy.h).
 */
#ifndef KL_DEST_FORMAT_H
#define KL_DEST_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util/intfmt.h" /* kl_fmt_i64 */

/* Room for any output of the functions below, NUL included. */
#define KL_FMT_MAX 48

/* A double as Postgres float8 input that reads back to the same value:
 * integers below 2^53 without exponent, others with 17 significant digits,
 * "NaN", "Infinity", "-Infinity". Returns the length (NUL-terminated). */
size_t kl_fmt_double(char *out, double d);

enum kl_ts_style {
    KL_TS_PG,  /* 2024-05-01 12:00:00.000001+00 (Postgres input; BC years as "... BC") */
    KL_TS_ISO, /* 2024-05-01T12:00:00.000001+00:00 (ISO-8601, as SQLite's date functions read) */
};

/* UTC timestamp of `us` microseconds since the epoch. Returns the length
 * (NUL-terminated). */
size_t kl_fmt_timestamp(char *out, int64_t us, enum kl_ts_style style);

/* Days since 1970-01-01 to a proleptic Gregorian date, and back. */
void kl_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);
int64_t kl_days_from_civil(int64_t y, unsigned m, unsigned d);

/* Reads what kl_fmt_timestamp(KL_TS_ISO) writes (also with a space for 'T',
 * 0..6 fraction digits, and "Z", "+00:00", "+00" or nothing as the zone).
 * Returns 0, or -1 when `s` is not such a UTC timestamp. */
int kl_fmt_parse_timestamp(const char *s, int64_t *us);

/* Lower-case hex of `n` bytes into `out` (2n chars, no NUL). */
void kl_fmt_hex(char *out, const unsigned char *in, size_t n);

#endif
