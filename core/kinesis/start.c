/*
 * Iterator choice and timestamp parsing (see start.h). Pure functions: no
 * clock, no I/O.
 */
#include "core/kinesis/start.h"
#include "core/util/err.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int64_t y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* Reads exactly `n` digits. */
static bool digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool parse_epoch(const char *s, int64_t *ms)
{
    int64_t whole = 0, frac = 0;
    int frac_digits = 0;
    const char *p = s;

    if (!isdigit((unsigned char)*p))
        return false;
    for (; isdigit((unsigned char)*p); p++) {
        if (whole > 100000000000LL) /* beyond year 5000: not a timestamp */
            return false;
        whole = whole * 10 + (*p - '0');
    }
    if (*p == '.') {
        for (p++; isdigit((unsigned char)*p); p++) {
            if (frac_digits < 3) {
                frac = frac * 10 + (*p - '0');
                frac_digits++;
            }
        }
    }
    if (*p != '\0')
        return false;
    while (frac_digits++ < 3)
        frac *= 10;
    *ms = whole * 1000 + frac;
    return true;
}

static bool parse_iso(const char *s, int64_t *ms)
{
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, sec = 0, frac = 0, frac_digits = 0;
    int64_t offset_min = 0;

    if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
        !digits(&p, 2, &d))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
        return false;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi))
            return false;
        if (*p == ':') {
            p++;
            if (!digits(&p, 2, &sec))
                return false;
            if (*p == '.' || *p == ',') {
                p++;
                if (!isdigit((unsigned char)*p))
                    return false;
                for (; isdigit((unsigned char)*p); p++) {
                    if (frac_digits < 3) {
                        frac = frac * 10 + (*p - '0');
                        frac_digits++;
                    }
                }
            }
        }
        if (h > 23 || mi > 59 || sec > 60)
            return false;
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
            if (!digits(&p, 2, &oh))
                return false;
            if (*p == ':')
                p++;
            if (isdigit((unsigned char)*p) && !digits(&p, 2, &om))
                return false;
            if (oh > 23 || om > 59)
                return false;
            offset_min = (int64_t)sign * (oh * 60 + om);
        }
    }
    if (*p != '\0')
        return false;
    while (frac_digits++ < 3)
        frac *= 10;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 + sec -
                   offset_min * 60;
    *ms = secs * 1000 + frac;
    return true;
}

int kl_parse_timestamp(const char *text, int64_t *ms_out, struct kl_err *err)
{
    int64_t ms;
    if (text != NULL && (parse_epoch(text, &ms) || parse_iso(text, &ms))) {
        *ms_out = ms;
        return KL_OK;
    }
    return kl_err_set(err, KL_ERR_INVALID,
                      "'%.64s' is not a timestamp: use epoch seconds (1700000000.5) or ISO-8601 "
                      "(2024-05-01T12:00:00Z)",
                      text ? text : "");
}

int kl_parse_initial_position(const char *text, struct kl_initial_position *out, struct kl_err *err)
{
    int64_t ms = 0;
    if (text != NULL &&
        (strcasecmp(text, "trim-horizon") == 0 || strcasecmp(text, "trim_horizon") == 0)) {
        out->kind = KL_INITIAL_TRIM_HORIZON;
        out->at_ms = 0;
        return KL_OK;
    }
    if (text != NULL && strcasecmp(text, "latest") == 0) {
        out->kind = KL_INITIAL_LATEST;
        out->at_ms = 0;
        return KL_OK;
    }
    if (kl_parse_timestamp(text, &ms, err) != KL_OK) {
        kl_err_set(err, KL_ERR_INVALID,
                   "'%.64s' is not a start position: use trim-horizon, latest, epoch seconds or "
                   "ISO-8601",
                   text ? text : "");
        return KL_ERR_INVALID;
    }
    /* dlt: 0 means "the tip of the stream". */
    out->kind = ms == 0 ? KL_INITIAL_LATEST : KL_INITIAL_AT_TIMESTAMP;
    out->at_ms = ms;
    return KL_OK;
}

void kl_format_timestamp(int64_t ms, char out[32])
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int millis = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    char base[24];

    gmtime_r(&secs, &tm);
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%.19s.%03dZ", base, millis);
}

void kl_choose_start(const struct kl_shard_position *stored, int64_t last_run_ms,
                     bool continue_from_parent, const struct kl_initial_position *initial,
                     struct kl_iterator_start *out)
{
    out->sequence = NULL;
    out->timestamp_ms = 0;
    if (stored != NULL && stored->sequence[0] != '\0') {
        out->type = KL_ITER_AT_SEQUENCE_NUMBER;
        out->sequence = stored->sequence;
    } else if (continue_from_parent) {
        out->type = KL_ITER_TRIM_HORIZON;
    } else if (last_run_ms >= 0) {
        out->type = KL_ITER_AT_TIMESTAMP;
        out->timestamp_ms = last_run_ms;
    } else {
        /* No history of this shard or its stream: the requested start. */
        switch (initial->kind) {
        case KL_INITIAL_TRIM_HORIZON:
            out->type = KL_ITER_TRIM_HORIZON;
            break;
        case KL_INITIAL_LATEST:
            out->type = KL_ITER_LATEST;
            break;
        default: /* KL_INITIAL_AT_TIMESTAMP */
            out->type = KL_ITER_AT_TIMESTAMP;
            out->timestamp_ms = initial->at_ms;
            break;
        }
    }
}
