/*
 * Helpers the store backends share: job ids, position order, bounded
 * copies and snapshot ordering. Not part of the store's interface; only
 * the store backends include it.
 */
#ifndef KL_STORE_INTERNAL_H
#define KL_STORE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/store/store.h"
#include "core/util/err.h"

struct kl_err;
struct kl_clock;

/* A new job id for a job created at `now_ms`: 10 characters of time, 16 of
 * randomness from the OpenSSL generator. */
int kl_store_new_job_id(int64_t now_ms, char out[KL_STORE_JOB_ID_SIZE], struct kl_err *err);

/* True for a 26-character id of the job id alphabet. */
bool kl_store_job_id_valid(const char *id);

/* Copies at most size - 1 bytes and terminates; returns false when `src` did not fit. */
bool kl_store_copy(char *dst, size_t size, const char *src);

/* Sorts a snapshot's tables and shards by name (backends fill them in any order). */
void kl_store_job_sort(struct kl_store_job *j);

/* Sets `err` and yields `code`, as an expression the static analyzer can
 * see is not KL_OK (it does not look into err.c). */
#define KL_STORE_FAIL(err, code, ...) (kl_err_set((err), (code), __VA_ARGS__), (int)(code))

/* Clamps a count parsed from storage into [0, INT64_MAX]. */
int64_t kl_store_parse_i64(const char *s, size_t len, int64_t fallback);

#endif
