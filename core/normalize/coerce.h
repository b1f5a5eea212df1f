/*
 * The value conversions dlt's normaliser relies on, on text and numbers:
 * iso_timestamp detection as pendulum parses it, coercions of text into
 * other types as Python's int(), float(), str2bool and Decimal read it, and
 * Python's str() of a float. Knows nothing of tables or columns.
 */
#ifndef KL_NORMALIZE_COERCE_H
#define KL_NORMALIZE_COERCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum kl_iso_kind {
    KL_ISO_NONE = 0, /* not a date, time or date-time pendulum would parse */
    KL_ISO_DATE,     /* a date only: coerces to midnight UTC */
    KL_ISO_TIME,     /* a time of day only: never a timestamp */
    KL_ISO_DATETIME, /* a date and a time: what iso_timestamp detects */
};

/* dlt's parse_iso_like_datetime: pendulum's parse_iso8601 and, when that
 * fails, its "common" format. For DATE and DATETIME `*us` gets UTC
 * microseconds since the epoch (naive times are UTC, as dlt assumes). */
enum kl_iso_kind kl_iso_parse(const char *s, size_t n, int64_t *us);

/* pendulum.from_timestamp of seconds, as dlt coerces numbers into a
 * timestamp column; false outside years 1..9999. */
bool kl_seconds_to_us(double seconds, int64_t *us);
bool kl_int_seconds_to_us(int64_t seconds, int64_t *us);

/* Python's int(s.strip()) or int(s[2:], 16) after "0x", inside int64. */
bool kl_text_to_int64(const char *s, size_t n, int64_t *out);
/* dlt's text -> double: float(int(s[2:], 16)) after "0x", else Python's
 * float(s.strip()), which reads "nan", "inf" and "1e400" (inf) and "1e-400"
 * (0.0) too. False where Python raises (and for a hex integer beyond a double). */
bool kl_text_to_double(const char *s, size_t n, double *out);
/* dlt's str2bool: yes/true/t/y/1 and no/false/f/n/0, any case, nothing stripped. */
bool kl_text_to_bool(const char *s, size_t n, bool *out);
/* str(Decimal(s.strip())) (or of a "0x" integer inside int64): the
 * canonical text, "1.50", "1E+5", "1E-7", "NaN", "-Infinity". False where
 * Python raises, and for what PostgreSQL's numeric would refuse (sNaN, a
 * signed NaN or one with a payload, an exponent beyond 9 digits). `buf`
 * needs n + 40 bytes. */
bool kl_text_to_decimal(const char *s, size_t n, char *buf, size_t *len);
/* dlt's ensure_pendulum_datetime of a str: an ISO date or date-time (a date
 * is midnight UTC), else float(s) seconds since the epoch; a time of day is
 * refused. */
bool kl_text_to_timestamp(const char *s, size_t n, int64_t *us);

#define KL_DOUBLE_DECIMAL_CAP 1600
/* str(Decimal(d)): the exact value of the double ("0.1" is
 * "0.1000000000000000055511151231257827021181583404541015625"). */
size_t kl_double_to_decimal(double d, char out[KL_DOUBLE_DECIMAL_CAP]);

/* Python's repr/str of a float ("1.5", "1e+16", "0.0001", "1e-05"). */
size_t kl_double_repr(double d, char out[32]);
/* The timestamp as pendulum's isoformat() in UTC ("2021-01-01T00:00:00+00:00"). */
size_t kl_timestamp_iso(int64_t us, char out[40]);

#endif
