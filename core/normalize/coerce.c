/*
 * Conversions of single values, ported from the behaviour of the Python
 * functions dlt calls (pendulum's ISO-8601 parser and _parse_common,
 * int/float/Decimal parsing, str2bool, float repr). ASCII digits only where
 * Python would also accept other Unicode digits.
 */
#include "core/normalize/coerce.h"

#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define US_PER_S 1000000LL
#define MIN_SECONDS (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define MAX_SECONDS 253402300799LL   /* 9999-12-31T23:59:59Z */

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : d[m - 1];
}

static int days_in_year(int y)
{
    return is_leap(y) ? 366 : 365;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* ISO weekday, Monday 1 .. Sunday 7. */
static int week_day(int y, int m, int d)
{
    int64_t days = days_from_civil(y, m, d); /* 1970-01-01 was a Thursday */
    int w = (int)(((days % 7) + 7 + 3) % 7); /* 0 = Monday */
    return w + 1;
}

static bool is_long_year(int y)
{
    int w = week_day(y, 1, 1);
    return w == 4 || (is_leap(y) && w == 3);
}

struct dt {
    int year, month, day, hour, minute, second, us;
    bool has_date, has_time, has_offset, extended;
    int offset_s;
};

/* The parser position over the input. */
struct cur {
    const char *s;
    size_t n, i;
};

static char ch(const struct cur *c)
{
    return c->i < c->n ? c->s[c->i] : '\0';
}

static bool at_end(const struct cur *c)
{
    return c->i >= c->n;
}

static bool integer(struct cur *c, int len, int *out)
{
    int v = 0;
    for (int k = 0; k < len; k++) {
        char x = ch(c);
        if (at_end(c) || x < '0' || x > '9')
            return false;
        v = v * 10 + (x - '0');
        c->i++;
    }
    *out = v;
    return true;
}

static bool ordinal_to_ymd(int year, int ordinal, bool allow_oob, struct dt *d)
{
    int y = year, ord = ordinal;
    if (ord < 1) {
        if (!allow_oob)
            return false;
        ord += days_in_year(year - 1);
        y--;
    }
    if (ord > days_in_year(y)) {
        if (!allow_oob)
            return false;
        ord -= days_in_year(y);
        y++;
    }
    int m = 1;
    while (m < 12 && ord > days_in_month(y, m)) {
        ord -= days_in_month(y, m);
        m++;
    }
    d->year = y;
    d->month = m;
    d->day = ord;
    return true;
}

static bool iso_to_ymd(int year, int week, int wday, struct dt *d)
{
    if (week > 53 || (week > 52 && !is_long_year(year)))
        return false;
    if (wday > 7)
        return false;
    int ordinal = week * 7 + wday - (week_day(year, 1, 4) + 3);
    return ordinal_to_ymd(year, ordinal, true, d);
}

static bool fraction(struct cur *c, int *us)
{
    int v = 0, k = 0;
    c->i++; /* '.' or ',' */
    while (k < 6) {
        char x = ch(c);
        if (!at_end(c) && x >= '0' && x <= '9') {
            v = v * 10 + (x - '0');
        } else if (k == 0) {
            return false;
        } else {
            break;
        }
        c->i++;
        k++;
    }
    while (!at_end(c) && ch(c) >= '0' && ch(c) <= '9')
        c->i++;
    for (; k < 6; k++)
        v *= 10;
    *us = v;
    return true;
}

/* pendulum's Parser::parse_time. */
static bool parse_time(struct cur *c, struct dt *d, bool skip_hour)
{
    if (ch(c) != 'T' && ch(c) != ' ' && !skip_hour)
        return false;
    d->has_time = true;
    if (!skip_hour) {
        c->i++;
        if (!integer(c, 2, &d->hour))
            return false;
    }
    if (!at_end(c) && ch(c) != 'Z' && ch(c) != '+' && ch(c) != '-') {
        if (ch(c) == ':') {
            c->i++;
            if (!integer(c, 2, &d->minute))
                return false;
            if (!at_end(c) && ch(c) != 'Z' && ch(c) != '+' && ch(c) != '-') {
                if (ch(c) != ':')
                    return false;
                c->i++;
                if (!integer(c, 2, &d->second))
                    return false;
                if ((ch(c) == '.' || ch(c) == ',') && !fraction(c, &d->us))
                    return false;
                if (!d->extended)
                    return false; /* basic date with extended time */
            }
        } else {
            if (!integer(c, 2, &d->minute))
                return false;
            if (!at_end(c) && ch(c) != 'Z' && ch(c) != '+' && ch(c) != '-') {
                if (!integer(c, 2, &d->second))
                    return false;
                if ((ch(c) == '.' || ch(c) == ',') && !fraction(c, &d->us))
                    return false;
            }
            if (d->extended)
                return false; /* extended date with basic time */
        }
    }
    if (ch(c) == 'Z' && !at_end(c)) {
        d->has_offset = true;
        d->offset_s = 0;
        c->i++;
    } else if (!at_end(c) && (ch(c) == '+' || ch(c) == '-')) {
        int sign = ch(c) == '+' ? 1 : -1, h, m = 0;
        c->i++;
        if (!integer(c, 2, &h))
            return false;
        if (ch(c) == ':' && !at_end(c))
            c->i++;
        if (!at_end(c) && !integer(c, 2, &m))
            return false;
        int total = sign * (h * 60 + m);
        if (total > 24 * 60)
            return false;
        d->has_offset = true;
        d->offset_s = total * 60;
    }
    return true;
}

/* pendulum's Parser::parse for a date-time (durations and intervals fail). */
static bool parse_iso8601(const char *s, size_t n, struct dt *d)
{
    struct cur c = {s, n, 0};
    memset(d, 0, sizeof *d);
    d->month = d->day = 1;
    if (ch(&c) == 'P')
        return false;
    if (ch(&c) == 'T') {
        if (!parse_time(&c, d, false))
            return false;
        return at_end(&c);
    }
    int hi, lo;
    if (!integer(&c, 2, &hi))
        return false;
    if (ch(&c) == ':') {
        d->hour = hi;
        d->extended = true;
        if (!parse_time(&c, d, true))
            return false;
        return at_end(&c);
    }
    d->has_date = true;
    if (!integer(&c, 2, &lo))
        return false;
    d->year = hi * 100 + lo;
    if (ch(&c) == '-' && !at_end(&c)) {
        c.i++;
        d->extended = true;
        if (ch(&c) == 'W' && !at_end(&c)) {
            int week, wday = 1;
            c.i++;
            if (!integer(&c, 2, &week))
                return false;
            if (!at_end(&c) && ch(&c) != ' ' && ch(&c) != 'T') {
                if (ch(&c) != '-')
                    return false;
                c.i++;
                if (!integer(&c, 1, &wday))
                    return false;
            }
            if (!iso_to_ymd(d->year, week, wday, d))
                return false;
        } else {
            if (!integer(&c, 2, &d->month))
                return false;
            if (!at_end(&c) && ch(&c) != ' ' && ch(&c) != 'T') {
                if (ch(&c) == '-') {
                    c.i++;
                    if (!integer(&c, 2, &d->day))
                        return false;
                } else {
                    int digit;
                    if (!integer(&c, 1, &digit) ||
                        !ordinal_to_ymd(d->year, d->month * 10 + digit, false, d))
                        return false;
                }
            } else {
                d->day = 1;
            }
        }
    } else if (ch(&c) == 'W' && !at_end(&c)) {
        int week, wday = 1;
        c.i++;
        if (!integer(&c, 2, &week))
            return false;
        if (!at_end(&c) && ch(&c) != ' ' && ch(&c) != 'T' && !integer(&c, 1, &wday))
            return false;
        if (!iso_to_ymd(d->year, week, wday, d))
            return false;
    } else {
        int digit;
        if (!integer(&c, 2, &d->month) || !integer(&c, 1, &digit))
            return false;
        if (at_end(&c) || ch(&c) == ' ' || ch(&c) == 'T') {
            if (!ordinal_to_ymd(d->year, d->month * 10 + digit, false, d))
                return false;
        } else {
            int last;
            if (!integer(&c, 1, &last))
                return false;
            d->day = digit * 10 + last;
        }
    }
    if (!at_end(&c) && !parse_time(&c, d, false))
        return false;
    return at_end(&c); /* an interval ("/") is not a date-time for dlt */
}

static bool digit_at(const char *s, size_t n, size_t i)
{
    return i < n && s[i] >= '0' && s[i] <= '9';
}

static int num(const char *s, size_t a, size_t b)
{
    int v = 0;
    for (size_t i = a; i < b; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

/* The time part of pendulum's COMMON regex from `i` to the end, trying
 * alternatives in the order Python's backtracking does. */
static bool common_time(const char *s, size_t n, size_t i, struct dt *d, bool *minute_missing)
{
    for (int sep = 1; sep >= 0; sep--) {
        size_t p = i;
        if (sep) {
            if (p >= n || s[p] != ' ')
                continue;
            p++;
        }
        for (int hl = 2; hl >= 1; hl--) {
            size_t h0 = p, h1 = p + (size_t)hl;
            bool ok = true;
            for (size_t k = h0; k < h1; k++)
                ok = ok && digit_at(s, n, k);
            if (!ok || h1 >= n || s[h1] != ':')
                continue;
            for (int ml = 2; ml >= 0; ml--) {
                size_t m0 = h1 + 1, m1 = m0 + (size_t)ml;
                ok = true;
                for (size_t k = m0; k < m1; k++)
                    ok = ok && digit_at(s, n, k);
                if (!ok)
                    continue;
                for (int sl = 2; sl >= -1; sl--) {
                    size_t s0 = m1, s1 = m1;
                    if (sl > 0) {
                        if (s0 >= n || s[s0] != ':')
                            continue;
                        s0++;
                        s1 = s0 + (size_t)sl;
                        ok = true;
                        for (size_t k = s0; k < s1; k++)
                            ok = ok && digit_at(s, n, k);
                        if (!ok)
                            continue;
                    } else if (sl == 0) {
                        continue;
                    }
                    for (int fl = 9; fl >= 0; fl--) {
                        size_t f0 = s1, f1 = s1;
                        if (fl > 0) {
                            if (f0 >= n || (s[f0] != '.' && s[f0] != '|' && s[f0] != ','))
                                continue;
                            f0++;
                            f1 = f0 + (size_t)fl;
                            ok = true;
                            for (size_t k = f0; k < f1; k++)
                                ok = ok && digit_at(s, n, k);
                            if (!ok)
                                continue;
                        }
                        if (f1 != n)
                            continue;
                        d->has_time = true;
                        d->hour = num(s, h0, h1);
                        *minute_missing = ml == 0;
                        d->minute = num(s, m0, m1);
                        d->second = sl > 0 ? num(s, s0, s1) : 0;
                        d->us = 0;
                        if (fl > 0) {
                            size_t take = fl > 6 ? 6 : (size_t)fl;
                            int v = num(s, f0, f0 + take);
                            for (size_t k = take; k < 6; k++)
                                v *= 10;
                            d->us = v;
                        }
                        return true;
                    }
                }
            }
        }
    }
    return false;
}

/* pendulum's _parse_common (COMMON.fullmatch) for ASCII digits. */
static bool parse_common(const char *s, size_t n, struct dt *d)
{
    bool minute_missing = false;
    memset(d, 0, sizeof *d);
    d->month = d->day = 1;
    /* date present: year, then monthday present or absent */
    if (n >= 4 && digit_at(s, n, 0) && digit_at(s, n, 1) && digit_at(s, n, 2) &&
        digit_at(s, n, 3)) {
        for (int md = 1; md >= 0; md--) {
            for (int msep = 1; msep >= 0; msep--) {
                for (int dsep = 1; dsep >= 0; dsep--) {
                    size_t p = 4;
                    if (md) {
                        if (msep) {
                            if (p >= n || (s[p] != '/' && s[p] != ':'))
                                continue;
                            p++;
                        }
                        if (!digit_at(s, n, p) || !digit_at(s, n, p + 1))
                            continue;
                        size_t mpos = p;
                        p += 2;
                        if (dsep) {
                            if (p >= n || (s[p] != '/' && s[p] != ':'))
                                continue;
                            p++;
                        }
                        if (!digit_at(s, n, p) || !digit_at(s, n, p + 1))
                            continue;
                        d->month = num(s, mpos, mpos + 2);
                        d->day = num(s, p, p + 2);
                        p += 2;
                    } else if (msep == 0 || dsep == 0) {
                        /* without monthday the separators do not vary */
                        if (!(msep == 1 && dsep == 1))
                            continue;
                    }
                    d->has_date = true;
                    d->year = num(s, 0, 4);
                    if (!md) {
                        d->month = d->day = 1;
                    }
                    if (common_time(s, n, p, d, &minute_missing))
                        return !minute_missing;
                    if (p == n) {
                        d->has_time = false;
                        return true;
                    }
                    if (!md)
                        goto no_date;
                }
            }
        }
    }
no_date:
    memset(d, 0, sizeof *d);
    d->month = d->day = 1;
    if (common_time(s, n, 0, d, &minute_missing))
        return !minute_missing;
    return false;
}

static bool valid(const struct dt *d)
{
    if (d->has_date) {
        if (d->year < 1 || d->year > 9999 || d->month < 1 || d->month > 12 || d->day < 1 ||
            d->day > days_in_month(d->year, d->month))
            return false;
    }
    if (d->has_time) {
        if (d->hour > 23 || d->minute > 59 || d->second > 59 || d->us > 999999)
            return false;
        if (d->has_offset && (d->offset_s >= 86400 || d->offset_s <= -86400))
            return false;
    }
    return true;
}

enum kl_iso_kind kl_iso_parse(const char *s, size_t n, int64_t *us)
{
    struct dt d;
    bool ok = parse_iso8601(s, n, &d) && valid(&d);
    if (!ok)
        ok = parse_common(s, n, &d) && valid(&d);
    if (!ok)
        return KL_ISO_NONE;
    if (!d.has_date)
        return d.has_time ? KL_ISO_TIME : KL_ISO_NONE;
    int64_t secs = days_from_civil(d.year, d.month, d.day) * 86400;
    if (d.has_time)
        secs += d.hour * 3600 + d.minute * 60 + d.second - (d.has_offset ? d.offset_s : 0);
    if (us != NULL)
        *us = secs * US_PER_S + (d.has_time ? d.us : 0);
    return d.has_time ? KL_ISO_DATETIME : KL_ISO_DATE;
}

bool kl_int_seconds_to_us(int64_t seconds, int64_t *us)
{
    if (seconds < MIN_SECONDS || seconds > MAX_SECONDS)
        return false;
    *us = seconds * US_PER_S;
    return true;
}

bool kl_seconds_to_us(double seconds, int64_t *us)
{
    if (!isfinite(seconds))
        return false;
    double ip, fp = modf(seconds, &ip);
    if (ip < (double)MIN_SECONDS || ip > (double)MAX_SECONDS)
        return false;
    double frac_us = nearbyint(fp * 1e6); /* round half to even, as Python */
    int64_t v = (int64_t)ip * US_PER_S + (int64_t)frac_us;
    if (v < MIN_SECONDS * US_PER_S || v > (MAX_SECONDS + 1) * US_PER_S - 1)
        return false;
    *us = v;
    return true;
}

static bool py_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

static void strip(const char **s, size_t *n)
{
    while (*n > 0 && py_space(**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && py_space((*s)[*n - 1]))
        (*n)--;
}

static bool ascii_ieq(const char *s, size_t n, const char *word)
{
    size_t wl = strlen(word);
    if (n != wl)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        if (c != word[i])
            return false;
    }
    return true;
}

/* Digits with single underscores between them (Python literal grouping).
 * Returns the number of characters consumed, 0 when none. */
static size_t digitpart(const char *s, size_t n, bool hex, char *out, size_t *o)
{
    size_t i = 0;
    while (i < n) {
        char c = s[i];
        bool is_d =
            (c >= '0' && c <= '9') || (hex && ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')));
        if (is_d) {
            if (out)
                out[(*o)++] = c;
            i++;
        } else if (c == '_' && i > 0 && i + 1 < n) {
            char nx = s[i + 1];
            bool nd = (nx >= '0' && nx <= '9') ||
                      (hex && ((nx >= 'a' && nx <= 'f') || (nx >= 'A' && nx <= 'F')));
            if (!nd)
                break;
            i++;
        } else {
            break;
        }
    }
    return i;
}

bool kl_text_to_int64(const char *s, size_t n, int64_t *out)
{
    char digits[64];
    size_t o = 0, i = 0;
    bool neg = false, hex = false;
    strip(&s, &n);
    if (n >= 2 && s[0] == '0' && s[1] == 'x') {
        /* int(s[2:], 16): whitespace, a sign and an optional 0x prefix again */
        s += 2;
        n -= 2;
        strip(&s, &n);
        hex = true;
    }
    if (i < n && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    if (hex && i + 1 < n && s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'X')) {
        i += 2;
        if (i < n && s[i] == '_')
            i++;
    }
    if (n - i > sizeof digits - 1)
        return false;
    size_t used = digitpart(s + i, n - i, hex, digits, &o);
    if (used == 0 || i + used != n)
        return false;
    uint64_t mag = 0;
    for (size_t k = 0; k < o; k++) {
        char c = digits[k];
        unsigned d = c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);
        unsigned base = hex ? 16 : 10;
        if (mag > (UINT64_MAX - d) / base)
            return false;
        mag = mag * base + d;
    }
    if (neg ? mag > (uint64_t)INT64_MAX + 1 : mag > (uint64_t)INT64_MAX)
        return false;
    *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return true;
}

static double c_strtod(const char *s)
{
    static locale_t c_loc;
    if (c_loc == (locale_t)0)
        c_loc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    locale_t old = c_loc ? uselocale(c_loc) : (locale_t)0;
    double d = strtod(s, NULL);
    if (c_loc)
        uselocale(old);
    return d;
}

/* Python float() syntax without inf/nan; writes a strtod-ready copy. */
static bool float_syntax(const char *s, size_t n, char *out, bool *nonzero)
{
    size_t i = 0, o = 0, used;
    *nonzero = false;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        out[o++] = s[i++];
    size_t before = o;
    used = digitpart(s + i, n - i, false, out, &o);
    i += used;
    bool int_digits = used > 0;
    bool frac_digits = false;
    if (i < n && s[i] == '.') {
        out[o++] = s[i++];
        used = digitpart(s + i, n - i, false, out, &o);
        i += used;
        frac_digits = used > 0;
    }
    if (!int_digits && !frac_digits)
        return false;
    for (size_t k = before; k < o; k++)
        *nonzero = *nonzero || (out[k] >= '1' && out[k] <= '9');
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        out[o++] = s[i++];
        if (i < n && (s[i] == '+' || s[i] == '-'))
            out[o++] = s[i++];
        used = digitpart(s + i, n - i, false, out, &o);
        if (used == 0)
            return false;
        i += used;
    }
    out[o] = '\0';
    return i == n;
}

/* Python's float() of a str, after strip: a decimal literal with
 * underscores, or inf/infinity/nan in any case, each with an optional sign.
 * Out of range is not an error in Python: 1e400 is inf, 1e-400 is 0.0. */
static bool py_float(const char *s, size_t n, double *out)
{
    char stackbuf[128];
    bool nonzero, ok;
    size_t i = 0;
    bool neg = false;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    if (ascii_ieq(s + i, n - i, "inf") || ascii_ieq(s + i, n - i, "infinity")) {
        *out = neg ? -INFINITY : INFINITY;
        return true;
    }
    if (ascii_ieq(s + i, n - i, "nan")) {
        *out = neg ? -NAN : NAN;
        return true;
    }
    char *buf = n < sizeof stackbuf ? stackbuf : malloc(n + 1);
    if (buf == NULL)
        return false;
    ok = float_syntax(s, n, buf, &nonzero);
    if (ok)
        *out = c_strtod(buf);
    if (buf != stackbuf)
        free(buf);
    return ok;
}

/* int(s, 16) after a "0x": whitespace, a sign, an optional 0x prefix and
 * hex digits with single underscores. `digits` gets the digits (cap >= n + 1). */
static bool hex_syntax(const char *s, size_t n, bool *neg, char *digits, size_t *nd)
{
    size_t i = 0, o = 0;
    strip(&s, &n);
    *neg = false;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        *neg = s[i++] == '-';
    if (i + 1 < n && s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'X')) {
        i += 2;
        if (i < n && s[i] == '_')
            i++;
    }
    size_t used = digitpart(s + i, n - i, true, digits, &o);
    digits[o] = '\0';
    *nd = o;
    return used > 0 && i + used == n;
}

bool kl_text_to_double(const char *s, size_t n, double *out)
{
    strip(&s, &n);
    if (n >= 2 && s[0] == '0' && s[1] == 'x') {
        /* float(int(s[2:], 16)): correctly rounded, as strtod reads hex */
        char stackbuf[128];
        char *buf = n + 4 < sizeof stackbuf ? stackbuf : malloc(n + 4);
        bool neg, ok;
        size_t nd;
        if (buf == NULL)
            return false;
        buf[0] = '-';
        buf[1] = '0';
        buf[2] = 'x';
        ok = hex_syntax(s + 2, n - 2, &neg, buf + 3, &nd);
        if (ok) {
            double d = c_strtod(neg ? buf : buf + 1);
            ok = isfinite(d); /* Python raises OverflowError */
            if (ok)
                *out = d;
        }
        if (buf != stackbuf)
            free(buf);
        return ok;
    }
    return py_float(s, n, out);
}

bool kl_text_to_timestamp(const char *s, size_t n, int64_t *us)
{
    double d;
    const char *t = s;
    size_t tn = n;
    switch (kl_iso_parse(s, n, us)) {
    case KL_ISO_DATETIME:
    case KL_ISO_DATE:
        return true;
    case KL_ISO_TIME:
        return false; /* "Cannot coerce ... to a pendulum.DateTime" */
    default:
        break;
    }
    /* _datetime_from_ts_or_iso: float(value), then from_timestamp */
    strip(&t, &tn);
    return py_float(t, tn, &d) && kl_seconds_to_us(d, us);
}

bool kl_text_to_bool(const char *s, size_t n, bool *out)
{
    static const char *const yes[] = {"yes", "true", "t", "y", "1"};
    static const char *const no[] = {"no", "false", "f", "n", "0"};
    char low[8];
    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        low[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    low[n] = '\0';
    for (size_t i = 0; i < 5; i++) {
        if (strcmp(low, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcmp(low, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* str() of a finite Decimal given by sign, coefficient digits (no leading
 * zeros but a lone "0") and exponent: Python's __str__, scientific when the
 * exponent is positive or the value is small. */
static size_t decimal_str(bool neg, const char *digits, size_t nd, int64_t exp, char *out)
{
    int64_t left = exp + (int64_t)nd, dot = (exp <= 0 && left > -6) ? left : 1;
    size_t o = 0;
    if (neg)
        out[o++] = '-';
    if (dot <= 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (int64_t k = 0; k < -dot; k++)
            out[o++] = '0';
        memcpy(out + o, digits, nd);
        o += nd;
    } else if ((size_t)dot >= nd) {
        memcpy(out + o, digits, nd);
        o += nd;
        for (size_t k = nd; k < (size_t)dot; k++)
            out[o++] = '0';
    } else {
        memcpy(out + o, digits, (size_t)dot);
        o += (size_t)dot;
        out[o++] = '.';
        memcpy(out + o, digits + dot, nd - (size_t)dot);
        o += nd - (size_t)dot;
    }
    if (left != dot)
        o += (size_t)sprintf(out + o, "E%+" PRId64, left - dot);
    out[o] = '\0';
    return o;
}

bool kl_text_to_decimal(const char *s, size_t n, char *buf, size_t *len)
{
    size_t i = 0, o = 0, used, nfrac = 0;
    bool neg = false;
    int64_t exp = 0;
    strip(&s, &n);
    if (n >= 2 && s[0] == '0' && s[1] == 'x') {
        /* Decimal(int(s[2:], 16)): the integer's digits, inside 64 bits */
        int64_t v;
        if (!kl_text_to_int64(s, n, &v))
            return false;
        *len = (size_t)sprintf(buf, "%" PRId64, v);
        return true;
    }
    if (i < n && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    /* NaN and infinities as PostgreSQL's numeric reads them; a signed NaN,
     * a NaN payload or sNaN would fail dlt's load */
    if (ascii_ieq(s + i, n - i, "inf") || ascii_ieq(s + i, n - i, "infinity")) {
        *len = (size_t)sprintf(buf, "%s", neg ? "-Infinity" : "Infinity");
        return true;
    }
    if (ascii_ieq(s + i, n - i, "nan") && !neg) {
        *len = (size_t)sprintf(buf, "NaN");
        return true;
    }
    /* the coefficient's digits go to the end of buf, then move */
    char *digits = buf + 24;
    used = digitpart(s + i, n - i, false, digits, &o);
    i += used;
    bool any = used > 0;
    if (i < n && s[i] == '.') {
        i++;
        size_t before = o;
        used = digitpart(s + i, n - i, false, digits, &o);
        i += used;
        nfrac = o - before;
        any = any || used > 0;
    }
    if (!any)
        return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        bool eneg = false;
        char ed[32];
        size_t eo = 0;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            eneg = s[i++] == '-';
        if (n - i > 64)
            return false;
        used = digitpart(s + i, n - i, false, ed, &eo);
        if (used == 0)
            return false;
        i += used;
        size_t k = 0;
        while (k < eo && ed[k] == '0')
            k++;
        if (eo - k > 9)
            return false; /* beyond what any database's numeric holds */
        for (; k < eo; k++)
            exp = exp * 10 + (ed[k] - '0');
        if (eneg)
            exp = -exp;
    }
    if (i != n)
        return false;
    exp -= (int64_t)nfrac;
    size_t lead = 0;
    while (lead + 1 < o && digits[lead] == '0')
        lead++;
    char tmp[64];
    char *d = o - lead < sizeof tmp ? tmp : malloc(o - lead + 1);
    if (d == NULL)
        return false;
    memcpy(d, digits + lead, o - lead);
    *len = decimal_str(neg, d, o - lead, exp, buf);
    if (d != tmp)
        free(d);
    return true;
}

size_t kl_double_to_decimal(double d, char out[KL_DOUBLE_DECIMAL_CAP])
{
    /* Decimal(float) is exact: the integer's digits, or n/2^k written as
     * n*5^k with exponent -k (no trailing zeros); %f prints it exactly */
    char buf[KL_DOUBLE_DECIMAL_CAP];
    char *p = buf;
    bool neg = signbit(d) != 0;
    size_t nd;
    int64_t exp = 0;
    if (!isfinite(d))
        return (size_t)snprintf(out, 16, "%s", isnan(d) ? "NaN" : neg ? "-Infinity" : "Infinity");
    snprintf(buf, sizeof buf, "%.1074f", fabs(d));
    char *dot = strchr(buf, '.');
    size_t len = strlen(buf);
    if (d == floor(d)) {
        len = (size_t)(dot - buf);
    } else {
        while (buf[len - 1] == '0')
            len--;
        exp = -(int64_t)(buf + len - dot - 1);
        memmove(dot, dot + 1, (size_t)(buf + len - dot - 1));
        len--;
    }
    while (len > 1 && *p == '0') {
        p++;
        len--;
    }
    nd = len;
    return decimal_str(neg, p, nd, exp, out);
}

size_t kl_double_repr(double d, char out[32])
{
    char buf[40], digits[24];
    int prec, exp10, nd = 0;
    bool neg = signbit(d) != 0;
    size_t o = 0;

    if (d == 0.0)
        return (size_t)snprintf(out, 32, neg ? "-0.0" : "0.0");
    if (!isfinite(d))
        return (size_t)snprintf(out, 32, isnan(d) ? "nan" : (neg ? "-inf" : "inf"));
    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, d);
        if (c_strtod(buf) == d)
            break;
    }
    /* buf: [-]d[.ddd]e[+-]xx: a digit first, then maybe the point and more */
    const char *p = buf + (neg ? 1 : 0);
    digits[nd++] = *p++;
    for (; *p && *p != 'e'; p++) {
        if (*p != '.')
            digits[nd++] = *p;
    }
    exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    int decpt = exp10 + 1;
    if (neg)
        out[o++] = '-';
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int k = 0; k < -decpt; k++)
                out[o++] = '0';
            for (int k = 0; k < nd; k++)
                out[o++] = digits[k];
        } else if (decpt >= nd) {
            for (int k = 0; k < nd; k++)
                out[o++] = digits[k];
            for (int k = nd; k < decpt; k++)
                out[o++] = '0';
            out[o++] = '.';
            out[o++] = '0';
        } else {
            for (int k = 0; k < nd; k++) {
                if (k == decpt)
                    out[o++] = '.';
                out[o++] = digits[k];
            }
        }
        out[o] = '\0';
        return o;
    }
    out[o++] = digits[0];
    if (nd > 1) {
        out[o++] = '.';
        for (int k = 1; k < nd; k++)
            out[o++] = digits[k];
    }
    o += (size_t)snprintf(out + o, 32 - o, "e%c%02d", decpt - 1 < 0 ? '-' : '+', abs(decpt - 1));
    return o;
}

size_t kl_timestamp_iso(int64_t us, char out[40])
{
    int64_t secs = us / US_PER_S, frac = us % US_PER_S;
    if (frac < 0) {
        frac += US_PER_S;
        secs--;
    }
    int64_t days = secs / 86400, rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    /* civil_from_days */
    int64_t z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400, doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153, dd = doy - (153 * mp + 2) / 5 + 1;
    int64_t mm = mp + (mp < 10 ? 3 : -9);
    y += mm <= 2;
    int n = snprintf(out, 40, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld", (long long)y,
                     (long long)mm, (long long)dd, (long long)(rem / 3600),
                     (long long)(rem / 60 % 60), (long long)(rem % 60));
    if (frac)
        n += snprintf(out + n, (size_t)(40 - n), ".%06lld", (long long)frac);
    n += snprintf(out + n, (size_t)(40 - n), "+00:00");
    return (size_t)n;
}
