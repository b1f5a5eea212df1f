/*
 * Where a shard's reading starts, by dlt's rules: the stored position of the
 * shard, else the previous run time, else `initial_at_timestamp`; and the
 * parsing of the timestamps users give (epoch seconds or ISO-8601).
 * Reading itself is in cursor.h.
 */
#ifndef KL_KINESIS_START_H
#define KL_KINESIS_START_H

#include <stdbool.h>
#include <stdint.h>

#include "core/kinesis/client.h"
#include "core/kinesis/position.h"

struct kl_err;

/* dlt's `initial_at_timestamp`: null -> TRIM_HORIZON, 0 -> LATEST, else AT_TIMESTAMP. */
enum kl_initial_kind { KL_INITIAL_TRIM_HORIZON, KL_INITIAL_LATEST, KL_INITIAL_AT_TIMESTAMP };

struct kl_initial_position {
    enum kl_initial_kind kind;
    int64_t at_ms; /* for AT_TIMESTAMP: epoch ms */
};

/* Parses a timestamp: epoch seconds ("1700000000", "1700000000.25") or
 * ISO-8601 ("2024-05-01T12:00:00Z", "2024-05-01T14:00:00.5+02:00",
 * "2024-05-01 12:00:00", "2024-05-01"; no offset means UTC, as dlt assumes).
 * Writes epoch ms. KL_ERR_INVALID with a message naming the input otherwise. */
int kl_parse_timestamp(const char *text, int64_t *ms_out, struct kl_err *err);

/* The user-facing spelling: "trim-horizon", "latest", or a timestamp as above;
 * "0" means LATEST as in dlt. */
int kl_parse_initial_position(const char *text, struct kl_initial_position *out,
                              struct kl_err *err);

/* Formats epoch ms as ISO-8601 UTC with milliseconds ("2024-05-01T12:00:00.000Z"). */
void kl_format_timestamp(int64_t ms, char out[32]);

/* Chooses the iterator for one shard. `stored` (may be NULL) is the shard's
 * position; `last_run_ms` is the previous run's time minus 1 s (-1 when
 * there was none); `continue_from_parent` is true when a parent of this
 * shard has a position, so the shard continues its parent's history from its
 * very beginning (TRIM_HORIZON) instead of jumping to a timestamp. With a
 * stored position the iterator is AT_SEQUENCE_NUMBER: the cursor checks that
 * the stored record still exists (else a gap is reported) and skips what was
 * already delivered. `out->sequence` points into `stored`. */
void kl_choose_start(const struct kl_shard_position *stored, int64_t last_run_ms,
                     bool continue_from_parent, const struct kl_initial_position *initial,
                     struct kl_iterator_start *out);

#endif
