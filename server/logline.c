/*
 * JSON log lines with typed fields (logline.h). Each field is written to a
 * scratch area first and kept only when it fits whole, so a cut line is
 * still valid JSON.
 */
#include "server/logline.h"
#include "core/util/log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

/* Room kept for the closing brace, the truncation marker and the newline. */
#define TAIL_RESERVE 24

/* Escapes `s` at `pos`; `cap` when it does not fit whole (the caller drops
 * the field). */
static size_t put_escaped(char *out, size_t pos, size_t cap, const char *s)
{
    bool whole;
    pos = kl_log_escape(out, pos, cap, s, &whole);
    return whole ? pos : cap;
}

/* Appends `,"key":` then the value text, or nothing when it does not fit. */
static void put_field(struct kl_logline *l, const char *key, const char *value, bool quote)
{
    size_t cap = sizeof l->buf - TAIL_RESERVE;
    size_t pos = l->len;

    if (l->truncated || pos + 4 >= cap)
        goto cut;
    l->buf[pos++] = ',';
    l->buf[pos++] = '"';
    pos = put_escaped(l->buf, pos, cap, key);
    if (pos + 3 >= cap)
        goto cut;
    l->buf[pos++] = '"';
    l->buf[pos++] = ':';
    if (value == NULL) {
        if (pos + 4 >= cap)
            goto cut;
        memcpy(l->buf + pos, "null", 4);
        pos += 4;
    } else if (quote) {
        l->buf[pos++] = '"';
        pos = put_escaped(l->buf, pos, cap, value);
        if (pos + 1 >= cap)
            goto cut;
        l->buf[pos++] = '"';
    } else {
        size_t n = strlen(value);
        if (pos + n >= cap)
            goto cut;
        memcpy(l->buf + pos, value, n);
        pos += n;
    }
    l->len = pos;
    return;
cut:
    l->truncated = true;
}

void kl_logline_begin(struct kl_logline *l, enum kl_log_level level, const char *component,
                      const char *msg)
{
    struct timespec now;
    struct tm tm;
    char ts[48];

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    l->truncated = false;
    l->len = (size_t)snprintf(l->buf, sizeof l->buf, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\"", ts,
                              now.tv_nsec / 1000000L, level_names[level]);
    put_field(l, "component", component, true);
    put_field(l, "msg", msg, true);
}

void kl_logline_str(struct kl_logline *l, const char *key, const char *value)
{
    put_field(l, key, value, true);
}

void kl_logline_int(struct kl_logline *l, const char *key, int64_t value)
{
    char text[24];
    snprintf(text, sizeof text, "%lld", (long long)value);
    put_field(l, key, text, false);
}

void kl_logline_ms(struct kl_logline *l, const char *key, double value)
{
    char text[40];
    snprintf(text, sizeof text, "%.3f", value);
    put_field(l, key, text, false);
}

void kl_logline_bool(struct kl_logline *l, const char *key, bool value)
{
    put_field(l, key, value ? "true" : "false", false);
}

void kl_logline_raw(struct kl_logline *l, const char *key, const char *json)
{
    put_field(l, key, json, false);
}

void kl_logline_emit(struct kl_logline *l, FILE *out)
{
    FILE *sink = out != NULL ? out : stderr;

    if (l->truncated) {
        memcpy(l->buf + l->len, ",\"truncated\":true", 17);
        l->len += 17;
    }
    l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
    flockfile(sink);
    fwrite(l->buf, 1, l->len, sink);
    fflush(sink);
    funlockfile(sink);
}
