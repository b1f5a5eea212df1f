/*
 * The JSON codec of a load request (openapi.yaml's LoadRequest) into
 * struct kl_load_params: every field type-checked and range-checked, unknown
 * and repeated fields refused, one error per offending field. Not the job
 * document: the engine shapes that.
 */
#ifndef KL_API_LOAD_CODEC_H
#define KL_API_LOAD_CODEC_H

#include <stddef.h>

#include "core/load/params.h"

struct kl_field_errors;

/* initial_at_timestamp as epoch seconds: at most 9999-12-31T23:59:59Z. */
#define KL_EPOCH_S_MAX 253402300799.0

/* Parses the body of POST /streams/{stream}/loads for `stream` (the path's,
 * validated here too). `len` 0 takes every default. The body must be RFC
 * 8259 JSON without U+0000 in its names and strings. The parameters then
 * pass kl_load_params_check (core/load/check.h), as the `load` command's do:
 * what a job would fail on is refused here, and dataset_name is normalised.
 * On KL_OK `*out` holds the parameters; on KL_ERR_INVALID `fe` names each
 * bad field, or, when the body is not a JSON object at all, `detail` says
 * why (and `fe` is empty); KL_ERR_NOMEM when memory ran out. `*out` is
 * written only on KL_OK. */
int kl_load_request_parse(const char *stream, const char *body, size_t len,
                          struct kl_load_params *out, struct kl_field_errors *fe, char *detail,
                          size_t detail_cap);

/* Parses KL_CONTINUOUS_LOADS: a JSON array of load requests, each a
 * LoadRequest with its "stream" added, every one a continuous load
 * ("continuous" may be left out; false is refused). Each goes through
 * kl_load_request_parse; two of the same stream and pipeline are refused
 * (only one job of them can be active). On KL_OK `*out` is a malloc'ed
 * array of `*n` (NULL and 0 for an empty array); on KL_ERR_INVALID
 * `detail` says which entry and why. */
int kl_load_requests_parse_list(const char *json, size_t len, struct kl_load_params **out,
                                size_t *n, char *detail, size_t detail_cap);

/* The shortest decimal text of `d` that reads back as the same double
 * ("1700000000.25", "0.1"). `out` holds at least 32 bytes. */
void kl_json_number_text(double d, char *out, size_t cap);

#endif
