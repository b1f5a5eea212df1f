/*
 * One Kinesis message as the reader delivers it: the envelope dlt puts under
 * `_kinesis` plus the raw Data bytes. Whether Data is a JSON object is decided
 * by the exact JSON parser (core/normalize/json.h), not here.
 */
#ifndef KL_KINESIS_MESSAGE_H
#define KL_KINESIS_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

#include "core/kinesis/msgid.h"

struct kl_message {
    const char *stream_name;   /* `_kinesis.stream_name` */
    const char *shard_id;      /* `_kinesis.shard_id` */
    const char *sequence;      /* `_kinesis.seq_no` */
    int64_t sub_sequence;      /* `_kinesis.sub_seq_no` for a KPL sub-record, else -1 */
    const char *partition_key; /* `_kinesis.partition` */
    int64_t arrival_ms;        /* `_kinesis.ts`: ApproximateArrivalTimestamp, epoch ms, UTC */
    const unsigned char *data; /* the user record's bytes (after KPL de-aggregation) */
    size_t data_len;
    char msg_id[KL_MSG_ID_LEN + 1]; /* `_kinesis_msg_id` */
};

#endif
