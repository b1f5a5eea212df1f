/*
 * Structured logging: one JSON object per line (ts, level, component, msg,
 * and job_id/stream/shard where known). The level check happens in the
 * macro, so a disabled level costs one comparison. Not for metrics.
 */
#ifndef KL_UTIL_LOG_H
#define KL_UTIL_LOG_H

#include <stdbool.h>
#include <stdio.h>

enum kl_log_level { KL_LOG_DEBUG = 0, KL_LOG_INFO, KL_LOG_WARN, KL_LOG_ERROR, KL_LOG_OFF };

/* Where the line is about: any field may be NULL. */
struct kl_log_ctx {
    const char *job_id;
    const char *stream;
    const char *shard;
};

extern enum kl_log_level kl_log_threshold;

/* Sets the threshold from a name ("debug", "info", "warn", "error", "off").
 * Returns 0, or -1 for an unknown name (the threshold is then unchanged). */
int kl_log_set_level_name(const char *name);
/* Redirects output (default stderr); the caller keeps ownership of `f`. */
void kl_log_set_sink(FILE *f);

/* Writes `s` JSON-escaped (", \\, control characters and DEL as escapes)
 * into out[pos..cap), leaving room for a 6-byte escape at the end, and
 * returns the new position. Stops at the first character that does not fit
 * and then sets `*whole` false (else true); `whole` may be NULL. The one
 * escaper of log lines (this file's and server/logline.c's). */
size_t kl_log_escape(char *out, size_t pos, size_t cap, const char *s, bool *whole);

void kl_log_write(enum kl_log_level level, const char *component, const struct kl_log_ctx *ctx,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define KL_LOG(level, component, ctx, ...)                                                         \
    do {                                                                                           \
        if ((level) >= kl_log_threshold)                                                           \
            kl_log_write((level), (component), (ctx), __VA_ARGS__);                                \
    } while (0)

#define KL_DEBUG(component, ctx, ...) KL_LOG(KL_LOG_DEBUG, component, ctx, __VA_ARGS__)
#define KL_INFO(component, ctx, ...) KL_LOG(KL_LOG_INFO, component, ctx, __VA_ARGS__)
#define KL_WARN(component, ctx, ...) KL_LOG(KL_LOG_WARN, component, ctx, __VA_ARGS__)
#define KL_ERROR(component, ctx, ...) KL_LOG(KL_LOG_ERROR, component, ctx, __VA_ARGS__)

#endif
