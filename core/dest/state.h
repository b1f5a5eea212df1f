/*
 * dlt's pipeline state document, the `state` column of `_dlt_pipeline_state`:
 * decoding it as dlt's decompress_state does (base64, zlib, JSON with dlt's
 * typed-value markers), reading a kinesis stream's positions and run time
 * from it, and writing the next one as dlt would (our positions merged into
 * the restored state, everything else kept as it was; zlib level 9; dlt's
 * version hash). Internal to core/dest: the backends read and write the
 * rows (backend.h), load.c and backend.c decide what goes in.
 *
 * Where a kinesis stream's state lives: sources.<section>.resources.<stream>
 * with `incremental._kinesis.last_value` = {shard_id: sequence} (strings)
 * and `initial_at_timestamp`, a datetime (U+F027 + isoformat()). The
 * section is the source's (`kinesis` for dlt's verified source); a state
 * whose stream is under another section is read and updated there.
 */
#ifndef KL_DEST_STATE_H
#define KL_DEST_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/kinesis/position.h"

struct kl_err;

#define KL_STATE_ENGINE_VERSION 4               /* dlt's PIPELINE_STATE_ENGINE_VERSION */
#define KL_STATE_TEXT_MAX ((size_t)64 << 20)    /* a decoded state larger than this is refused */
#define KL_STATE_HASH_CAP 48                    /* base64 of SHA3-256, 44 characters */
#define KL_STATE_DATETIME_MARKER "\xef\x80\xa7" /* U+F027: dlt's typed datetime */

/* The row dlt restores: of the pipeline, whose load is complete (status
 * 0), with the greatest `_dlt_loads.load_id` as text. */
struct kl_dlt_state_row {
    bool found;
    int64_t version;    /* `version` (= _state_version) */
    char load_id[128];  /* `_dlt_load_id` */
    int64_t created_ms; /* `created_at` (epoch ms) */
    char *state;        /* the `state` column as stored (malloc'ed) */
};

void kl_dlt_state_row_free(struct kl_dlt_state_row *r);

/* dlt's decompress_state: base64, then zlib, then the JSON; a column that
 * is not base64 is read as plain JSON (dlt's older format). *json is
 * malloc'ed and NUL-terminated. KL_ERR_UPSTREAM for what dlt could not
 * read either. */
int kl_dlt_state_decode(const char *column, char **json, size_t *len, struct kl_err *err);

/* dlt's compress_state of the JSON text: base64 of zlib level 9, with
 * padding. *column is malloc'ed. */
int kl_dlt_state_encode(const char *json, size_t len, char **column, struct kl_err *err);

/* dlt's generate_pipeline_state_version_hash of a state: base64 of the
 * SHA3-256 of its compact JSON without `_local`, `_state_version`,
 * `_state_engine_version` and `_version_hash`, keys in their order (as
 * dlt 0.5.4 with simplejson computes it; dlt never checks a stored hash). */
int kl_dlt_state_hash(const char *json, size_t len, char out[KL_STATE_HASH_CAP],
                      struct kl_err *err);

/* What a state holds for one stream. */
struct kl_dlt_stream {
    bool found;                          /* the stream has a resource state */
    struct kl_shard_position *positions; /* last_value, in the document's order (malloc'ed) */
    size_t n_positions;
    bool has_run; /* initial_at_timestamp: a datetime */
    int64_t run_ms;
    bool run_marked;   /* with dlt's marker (without: kinesis-loader before wrote it) */
    char run_text[64]; /* its text after the marker */
};

void kl_dlt_stream_free(struct kl_dlt_stream *s);

/* Reads `stream`'s state (preferring section `section`, else the first
 * section that has the stream) from decoded JSON. Values that are not
 * what dlt's kinesis source writes (a sequence that is not a decimal
 * string, say) are left out. KL_ERR_UPSTREAM when the JSON is not an
 * object. */
int kl_dlt_state_stream(const char *json, size_t len, const char *section, const char *stream,
                        struct kl_dlt_stream *out, struct kl_err *err);

/* One stream as kinesis-loader stores it: its checkpoints and run time. */
struct kl_state_stream {
    const char *stream_name; /* dlt's resource name */
    const struct kl_checkpoint *checkpoints;
    size_t n_checkpoints; /* positions only: no claimed shard without one */
    bool has_last_run;
    int64_t last_run_ms;
};

/* The next state row. */
struct kl_state_doc_in {
    /* The decoded state restored (kl_dlt_state_decode), which the new one
     * continues; NULL: a new state with the properties below. */
    const char *restored;
    size_t restored_len;
    /* Pipeline properties; in a restored state they stay as they were. */
    const char *pipeline_name;
    const char *dataset_name;
    const char *schema_name;      /* the source section and default schema: "kinesis" */
    const char *destination_type; /* "dlt.destinations.postgres" */
    const char *destination_name; /* "postgres" */
    int64_t version;              /* _state_version: the restored one + 1 */
    /* Our streams: per shard the greater of the restored position and ours
     * is written, and the later run time. A stream whose positions moved
     * gets `unique_hashes` of its most recently written checkpoint. */
    const struct kl_state_stream *streams;
    size_t n_streams;
    /* Instead of the streams: remove this stream's resource state (what
     * forgetting a stream's state means to dlt). */
    const char *forget;
};

struct kl_state_doc {
    char *json;                           /* the state, uncompressed (malloc'ed) */
    char *state;                          /* base64(zlib(json)) as dlt stores it (malloc'ed) */
    char version_hash[KL_STATE_HASH_CAP]; /* kl_dlt_state_hash of json */
    char row_id[24];                      /* a fresh random `_dlt_id` */
    bool changed;                         /* the content differs from the restored one */
};

/* Builds the next state. The restored state's other sources, resources
 * and keys are kept as they were, byte for byte (numbers as written). */
int kl_state_doc_build(const struct kl_state_doc_in *in, struct kl_state_doc *out,
                       struct kl_err *err);
void kl_state_doc_free(struct kl_state_doc *d);

/* A dlt load id (str(time.time()): "1796299273.9676971") for `now_ms` that
 * sorts after `newest` as text ("" when there is none): now, or when the
 * clock is behind, `newest` with a digit appended. KL_ERR_LIMIT when it
 * does not fit `cap`. */
int kl_dlt_load_id_after(int64_t now_ms, const char *newest, char *out, size_t cap,
                         struct kl_err *err);

#endif
