/*
 * `_kinesis_msg_id`, the primary key of a message, exactly as dlt computes
 * it: base64 (standard alphabet, '=' stripped) of the first 15 bytes of
 * SHAKE-128 over shard_id + sequence (UTF-8, no separator); a KPL sub-record
 * appends ':' and its 0-based sub-sequence index.
 */
#ifndef KL_KINESIS_MSGID_H
#define KL_KINESIS_MSGID_H

#include <stddef.h>
#include <stdint.h>

struct kl_err;

#define KL_MSG_ID_LEN 20 /* 15 bytes -> 20 base64 characters, no padding */

/* Writes the id and a NUL into `out` (KL_MSG_ID_LEN + 1 bytes). `sub_seq` < 0
 * means a plain (not de-aggregated) record. Thread-safe. */
int kl_msg_id(const char *shard_id, const char *sequence, int64_t sub_seq,
              char out[KL_MSG_ID_LEN + 1], struct kl_err *err);

/* dlt's digest128 over arbitrary bytes (used for _dlt_id and name hashing too):
 * base64 of the first 15 bytes of SHAKE-128, '=' stripped. */
int kl_digest128(const void *data, size_t len, char out[KL_MSG_ID_LEN + 1], struct kl_err *err);

#endif
