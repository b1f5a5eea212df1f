/*
 * Where a shard stands: the one definition of a shard position, a gap in a
 * shard's history, and a checkpoint (a position with the fencing token of
 * its writer), shared by the Kinesis reader, the state store, the
 * destination and the load engine. A leaf: it includes nothing of the
 * project, so every layer may use it.
 */
#ifndef KL_KINESIS_POSITION_H
#define KL_KINESIS_POSITION_H

#include <stdint.h>

#define KL_SHARD_ID_MAX 129   /* AWS ShardId: at most 128 characters, with the NUL */
#define KL_SEQ_MAX 130        /* AWS SequenceNumber: 0|[1-9][0-9]{0,128}, with the NUL */
#define KL_GAP_REASON_MAX 192 /* why a gap is there, with the NUL */

/* The highest message delivered (or committed) of a shard. `sequence` ""
 * means none yet; `sub_sequence` is the KPL sub-record index within that
 * sequence, -1 for a whole record. */
struct kl_shard_position {
    char shard_id[KL_SHARD_ID_MAX];
    char sequence[KL_SEQ_MAX];
    int64_t sub_sequence;
};

/* A trimmed stored position: the records between `from_sequence` (the stored
 * one, exclusive) and `to_sequence` (the oldest still in the shard, "" when
 * the shard is empty) are no longer in the stream. */
struct kl_gap {
    char from_sequence[KL_SEQ_MAX];
    char to_sequence[KL_SEQ_MAX];
    char reason[KL_GAP_REASON_MAX];
};

/* A position as the destination stores it with the rows it covers. A shard
 * claimed before its first commit has a checkpoint with its fencing token
 * and no position (sequence "", sub_sequence -1): never resume from one. */
struct kl_checkpoint {
    struct kl_shard_position position;
    int64_t fencing_token; /* the writer's lease token; never decreases */
    int64_t updated_ms;    /* when it was written (epoch ms, UTC); read only */
};

/* Compares Kinesis sequence numbers numerically: leading zeros aside, a
 * longer digit string is larger, equal lengths compare lexicographically.
 * Returns <0, 0, >0. */
int kl_seq_cmp(const char *a, const char *b);

/* Orders positions of one shard: by sequence (numerically), then by
 * sub_sequence; no position ("") is before every position. Returns -1, 0, 1. */
int kl_position_cmp(const char *seq_a, int64_t sub_a, const char *seq_b, int64_t sub_b);

/* Sets `p` to (shard_id, sequence, sub_sequence), truncating to fit. */
void kl_position_set(struct kl_shard_position *p, const char *shard_id, const char *sequence,
                     int64_t sub_sequence);

#endif
