/*
 * A JSON log line with fields of its own (the access log's method, path,
 * status, duration_ms, request_id; the effective configuration as an
 * object), in the same shape as core/util/log.h's lines: ts, level,
 * component, msg first. Built in a fixed buffer; a line that would not fit is
 * cut at a field boundary and marked "truncated":true. Not for free text.
 */
#ifndef KL_SERVER_LOGLINE_H
#define KL_SERVER_LOGLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/util/log.h"

#define KL_LOGLINE_MAX 8192

struct kl_logline {
    char buf[KL_LOGLINE_MAX];
    size_t len;
    bool truncated;
};

/* Starts a line: {"ts":...,"level":...,"component":...,"msg":...  */
void kl_logline_begin(struct kl_logline *l, enum kl_log_level level, const char *component,
                      const char *msg);
/* Adds "key":"value" (escaped); NULL values are written as null. */
void kl_logline_str(struct kl_logline *l, const char *key, const char *value);
void kl_logline_int(struct kl_logline *l, const char *key, int64_t value);
/* Adds a number with three decimals (durations in ms). */
void kl_logline_ms(struct kl_logline *l, const char *key, double value);
void kl_logline_bool(struct kl_logline *l, const char *key, bool value);
/* Adds "key": followed by `json`, which must be one valid JSON value. */
void kl_logline_raw(struct kl_logline *l, const char *key, const char *json);
/* Closes the line and writes it with one fwrite (NULL: stderr). */
void kl_logline_emit(struct kl_logline *l, FILE *out);

#endif
