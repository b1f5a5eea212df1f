/*
 * dlt's pipeline state document for `_dlt_pipeline_state`: the state JSON a
 * dlt kinesis pipeline keeps (per stream: the last sequence per shard as the
 * `_kinesis` incremental, and the run time as `initial_at_timestamp`),
 * compressed and encoded as dlt's compress_state does (zlib, base64), with a
 * version hash like dlt's. Internal to core/dest; the rows are written by
 * the backends.
 */
#ifndef KL_DEST_STATE_H
#define KL_DEST_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kl_err;
struct kl_checkpoint;

#define KL_STATE_ENGINE_VERSION 4 /* dlt's PIPELINE_STATE_ENGINE_VERSION */

struct kl_state_stream {
    const char *stream_name; /* dlt's resource name */
    const struct kl_checkpoint *checkpoints;
    size_t n_checkpoints;
    bool has_last_run;
    int64_t last_run_ms;
};

struct kl_state_doc_in {
    const char *pipeline_name;
    const char *dataset_name;
    const char *schema_name;      /* the source name */
    const char *destination_type; /* "dlt.destinations.postgres" */
    int64_t version;              /* _state_version */
    const struct kl_state_stream *streams;
    size_t n_streams;
};

struct kl_state_doc {
    char *json;            /* the state, uncompressed (malloc'ed) */
    char *state;           /* base64(zlib(json)) as dlt stores it (malloc'ed) */
    char version_hash[64]; /* base64(sha3-256) of the state without version fields */
    char row_id[24];       /* a fresh random `_dlt_id` */
};

int kl_state_doc_build(const struct kl_state_doc_in *in, struct kl_state_doc *out,
                       struct kl_err *err);
void kl_state_doc_free(struct kl_state_doc *d);

/* A zlib stream (RFC 1950) of stored deflate blocks: what zlib.decompress
 * reads, without a compression library. *out is malloc'ed. */
int kl_zlib_stored(const void *in, size_t n, unsigned char **out, size_t *out_len,
                   struct kl_err *err);

#endif
