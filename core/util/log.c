/*
 * JSON-lines log writer. Each line is formatted into a local buffer and
 * written with one fwrite under the stream lock, so lines from different
 * threads never interleave.
 */
#include "core/util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum kl_log_level kl_log_threshold = KL_LOG_INFO;
static FILE *log_sink;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

int kl_log_set_level_name(const char *name)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            kl_log_threshold = (enum kl_log_level)i;
            return 0;
        }
    }
    return -1;
}

void kl_log_set_sink(FILE *f)
{
    log_sink = f;
}

size_t kl_log_escape(char *out, size_t pos, size_t cap, const char *s, bool *whole)
{
    static const char hex[] = "0123456789abcdef";
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (pos + 7 >= cap) {
            if (whole != NULL)
                *whole = false;
            return pos;
        }
        if (c == '"' || c == '\\') {
            out[pos++] = '\\';
            out[pos++] = (char)c;
        } else if (c == '\n') {
            out[pos++] = '\\';
            out[pos++] = 'n';
        } else if (c < 0x20 || c == 0x7f) {
            out[pos++] = '\\';
            out[pos++] = 'u';
            out[pos++] = '0';
            out[pos++] = '0';
            out[pos++] = hex[c >> 4];
            out[pos++] = hex[c & 15];
        } else {
            out[pos++] = (char)c;
        }
    }
    if (whole != NULL)
        *whole = true;
    return pos;
}

static size_t put_field(char *out, size_t pos, size_t cap, const char *key, const char *value)
{
    if (value == NULL || pos + strlen(key) + 8 >= cap)
        return pos;
    pos += (size_t)snprintf(out + pos, cap - pos, ",\"%s\":\"", key);
    pos = kl_log_escape(out, pos, cap, value, NULL); /* what fits */
    if (pos + 1 < cap)
        out[pos++] = '"';
    return pos;
}

void kl_log_write(enum kl_log_level level, const char *component, const struct kl_log_ctx *ctx,
                  const char *fmt, ...)
{
    char msg[1024];
    char line[2048];
    char ts[40];
    struct timespec now;
    struct tm tm;
    size_t pos;
    va_list ap;
    FILE *sink = log_sink != NULL ? log_sink : stderr;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);

    pos = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\"", ts,
                           now.tv_nsec / 1000000L, level_names[level]);
    pos = put_field(line, pos, sizeof line - 3, "component", component);
    if (ctx != NULL) {
        pos = put_field(line, pos, sizeof line - 3, "job_id", ctx->job_id);
        pos = put_field(line, pos, sizeof line - 3, "stream", ctx->stream);
        pos = put_field(line, pos, sizeof line - 3, "shard", ctx->shard);
    }
    pos = put_field(line, pos, sizeof line - 3, "msg", msg);
    line[pos++] = '}';
    line[pos++] = '\n';
    flockfile(sink);
    fwrite(line, 1, pos, sink);
    fflush(sink);
    funlockfile(sink);
}
