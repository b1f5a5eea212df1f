/*
 * The records of dlt 0.5.4's golden fixtures (tests/fixtures/dlt-0.5.4 and
 * its foreign_write/, records.jsonl): what the tests of dlt's schema and
 * pipeline state read them into. Test code only.
 */
#ifndef KL_TEST_DLT_FIXTURE_H
#define KL_TEST_DLT_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "core/kinesis/position.h"

struct kl_dlt_record {
    char shard_id[KL_SHARD_ID_MAX];
    char sequence[KL_SEQ_MAX];
    char partition_key[16]; /* pk-<i>: the i-th record put */
    char *data;             /* the JSON text as put (malloc'ed) */
    int64_t arrival_ms;     /* approximate_arrival_timestamp */
    char loaded_in[40];     /* the `_dlt_load_id` dlt loaded it in; "" when none */
    char consumed_by[40];   /* the foreign write that consumed it; "" when none */
};

/* Reads <dir>/records.jsonl (dir below tests/fixtures) into out[0..cap);
 * returns the count. Free with kl_dlt_records_free. */
size_t kl_dlt_records_read(const char *dir, struct kl_dlt_record *out, size_t cap);
void kl_dlt_records_free(struct kl_dlt_record *r, size_t n);

#endif
