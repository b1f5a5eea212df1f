/*
 * Value formatting for the destinations (see format.h). Hot path of COPY:
 * integers and timestamps are formatted by hand, doubles fall back to
 * printf only when they are not small integers.
 */
#include "core/dest/format.h"
#include "core/util/intfmt.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

size_t kl_fmt_double(char *out, double d)
{
    int n;

    if (isnan(d)) {
        memcpy(out, "NaN", 4);
        return 3;
    }
    if (isinf(d)) {
        if (d < 0) {
            memcpy(out, "-Infinity", 10);
            return 9;
        }
        memcpy(out, "Infinity", 9);
        return 8;
    }
    if (d == 0.0 && signbit(d)) {
        memcpy(out, "-0", 3);
        return 2;
    }
    if (fabs(d) < 9007199254740992.0 && d == (double)(int64_t)d) {
        size_t len = kl_fmt_i64(out, (int64_t)d);
        out[len] = '\0';
        return len;
    }
    /* Few fraction digits (prices, measurements): m / 10^k == d means the
     * decimal m * 10^-k reads back as d, since both are the double nearest
     * that rational. Saves printf's exact big-number formatting. */
    if (fabs(d) < 1e9) {
        static const double pow10[] = {1e1, 1e2, 1e3, 1e4, 1e5, 1e6};
        for (int k = 0; k < 6; k++) {
            double x = d * pow10[k];
            int64_t m = (int64_t)(x < 0 ? x - 0.5 : x + 0.5);
            if ((double)m / pow10[k] == d) {
                uint64_t am = m < 0 ? (uint64_t)0 - (uint64_t)m : (uint64_t)m;
                uint64_t p = (uint64_t)pow10[k];
                char *o = out;
                size_t fl;
                if (m < 0)
                    *o++ = '-';
                o += kl_fmt_u64(o, am / p);
                *o++ = '.';
                /* k + 1 fraction digits, zero-padded, trailing zeros kept
                 * (they cannot occur: a shorter k would have matched). */
                fl = kl_fmt_u64(o, am % p + p) - 1;
                memmove(o, o + 1, fl);
                o += fl;
                *o = '\0';
                return (size_t)(o - out);
            }
        }
    }
    n = snprintf(out, KL_FMT_MAX, "%.17g", d);
    return n > 0 ? (size_t)n : 0;
}

void kl_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
    /* Howard Hinnant's days_from_civil inverse, on 400-year eras. */
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    uint64_t doe = (uint64_t)(z - era * 146097);
    uint64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    uint64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    uint64_t mp = (5 * doy + 2) / 153;
    unsigned dd = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    unsigned mm = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    int64_t yy = (int64_t)yoe + era * 400 + (mm <= 2);

    *y = yy;
    *m = mm;
    *d = dd;
}

int64_t kl_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    uint64_t yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (uint64_t)(y - era * 400);
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char **p, int n, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (unsigned)(c - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

int kl_fmt_parse_timestamp(const char *s, int64_t *us)
{
    const char *p = s;
    unsigned y, mo, d, h, mi, se, frac = 0;
    int nfrac = 0;

    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
        digits(&p, 2, &d) || (*p != 'T' && *p != ' '))
        return -1;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' || digits(&p, 2, &se))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return -1;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            if (nfrac < 6) {
                frac = frac * 10 + (unsigned)(*p - '0');
                nfrac++;
            }
            p++;
        }
        if (nfrac == 0)
            return -1;
        while (nfrac < 6) {
            frac *= 10;
            nfrac++;
        }
    }
    if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0 && strcmp(p, "+00") != 0 && *p != '\0')
        return -1;
    *us = ((kl_days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 + se) *
           1000000LL) +
          frac;
    return 0;
}

size_t kl_fmt_timestamp(char *out, int64_t us, enum kl_ts_style style)
{
    int64_t days = us / 86400000000LL;
    int64_t rem = us % 86400000000LL;
    int64_t year;
    unsigned mon, day, secs, frac;
    bool bc = false;
    char *p = out;

    if (rem < 0) {
        rem += 86400000000LL;
        days -= 1;
    }
    kl_civil_from_days(days, &year, &mon, &day);
    if (year <= 0 && style == KL_TS_PG) {
        bc = true;
        year = 1 - year; /* 1 BC is year 0 */
    }
    secs = (unsigned)(rem / 1000000);
    frac = (unsigned)(rem % 1000000);

    if (year < 0) {
        *p++ = '-';
        year = -year;
    }
    if (year < 1000) {
        /* Zero-pad to four digits. */
        *p++ = (char)('0' + (year / 1000) % 10);
        *p++ = (char)('0' + (year / 100) % 10);
        *p++ = (char)('0' + (year / 10) % 10);
        *p++ = (char)('0' + year % 10);
    } else {
        p += kl_fmt_u64(p, (uint64_t)year);
    }
    *p++ = '-';
    p = kl_fmt_2digits(p, mon);
    *p++ = '-';
    p = kl_fmt_2digits(p, day);
    *p++ = style == KL_TS_ISO ? 'T' : ' ';
    p = kl_fmt_2digits(p, secs / 3600);
    *p++ = ':';
    p = kl_fmt_2digits(p, (secs / 60) % 60);
    *p++ = ':';
    p = kl_fmt_2digits(p, secs % 60);
    *p++ = '.';
    p = kl_fmt_2digits(p, frac / 10000);
    p = kl_fmt_2digits(p, (frac / 100) % 100);
    p = kl_fmt_2digits(p, frac % 100);
    if (style == KL_TS_ISO) {
        memcpy(p, "+00:00", 6);
        p += 6;
    } else {
        memcpy(p, "+00", 3);
        p += 3;
        if (bc) {
            memcpy(p, " BC", 3);
            p += 3;
        }
    }
    *p = '\0';
    return (size_t)(p - out);
}

void kl_fmt_hex(char *out, const unsigned char *in, size_t n)
{
    static const char HEX[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = HEX[in[i] >> 4];
        out[2 * i + 1] = HEX[in[i] & 15];
    }
}
