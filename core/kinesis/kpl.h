/*
 * KPL aggregated records: recognising one and splitting it into its user
 * records, in the format the Kinesis Producer Library writes and the KCL reads
 * (magic F3 89 9A C2, a protobuf AggregatedRecord, the MD5 of that protobuf).
 * Not here: what a reader does with a record that is not aggregated, skipping
 * sub-records already committed, or message ids (core/kinesis/cursor.h, msgid.h).
 *
 * Decisions, where the KCL (AggregatorUtil.deaggregate) is our reference:
 * - Wrong magic, too short, MD5 mismatch, broken protobuf: not aggregated; the
 *   record is delivered as it is. Same as the KCL.
 * - A partition or explicit hash key index outside its table: the whole record
 *   is delivered as it is. The KCL logs an error and keeps only the user
 *   records before the bad one, losing the rest; we lose nothing.
 * - A user record whose explicit hash key (or MD5 of its partition key) falls
 *   outside the hash key range of the shard it was read from: kept. The KCL
 *   drops the whole aggregated record in that case (it assumes a resharding
 *   duplicate); we never drop data, and the key is not even parsed here.
 * - No user records at all: delivered as it is (the KCL delivers nothing), so
 *   an odd record shows up as a dead letter instead of vanishing.
 * - Keys must be valid UTF-8 (they become text columns); otherwise the record
 *   is delivered as it is. Tags are checked for shape and then ignored.
 * - The decoder is strict: varints over 64 bits, lengths beyond their buffer,
 *   known fields with the wrong wire type, groups, wire types 6 and 7, field
 *   number 0 and missing required fields all make the protobuf invalid.
 *   Unknown fields are skipped by wire type; for a repeated-by-mistake scalar
 *   the last value wins, as in protobuf.
 */
#ifndef KL_KINESIS_KPL_H
#define KL_KINESIS_KPL_H

#include <stdbool.h>
#include <stddef.h>

struct kl_err;

#define KL_KPL_MAGIC_LEN 4
#define KL_KPL_DIGEST_LEN 16

/* Hard caps on what one aggregated record may declare. The KPL fills a
 * record to at most 1 MiB and a user record takes at least 6 bytes on the
 * wire, so a genuine record stays below 180000 of either. Beyond a cap
 * kl_kpl_decode answers KL_ERR_LIMIT and allocates nothing. */
#define KL_KPL_MAX_RECORDS 262144
#define KL_KPL_MAX_KEYS 262144

/* One user record. Every pointer points into the buffer given to
 * kl_kpl_decode: no copies, and the strings are NOT NUL-terminated (a key may
 * even contain a NUL byte). The index in kl_kpl_records.items is the
 * record's 0-based sub-sequence number. */
struct kl_kpl_record {
    const unsigned char *data; /* never NULL, even when data_len is 0 */
    size_t data_len;
    const char *partition_key; /* valid UTF-8, possibly empty */
    size_t partition_key_len;
    const char *explicit_hash_key; /* NULL when the record has none; else valid UTF-8 */
    size_t explicit_hash_key_len;
};

/* The user records of one aggregated record. Caller-owned: _init before the
 * first use, _free at the end. One struct can be reused for many decodes; its
 * storage is kept and grown as needed. */
struct kl_kpl_records {
    struct kl_kpl_record *items;
    size_t n;
    /* storage: items followed by the key tables of the last decode */
    void *storage;
    size_t storage_size;
};

void kl_kpl_records_init(struct kl_kpl_records *r);
/* Frees the storage; items are no longer valid after the call. */
void kl_kpl_records_free(struct kl_kpl_records *r);

/* True when `data` starts with the KPL magic and holds at least one byte of
 * protobuf besides the 16-byte digest (len > 20), as the KCL decides. A cheap
 * prefilter: only kl_kpl_decode says whether the record really is one. */
bool kl_kpl_is_aggregated(const unsigned char *data, size_t len);

/* Decodes the aggregated record `data` (its Kinesis Data bytes). On KL_OK,
 * out->items[0 .. out->n-1] (n >= 1) point into `data`, which the caller keeps
 * alive and unchanged as long as it uses them; the previous contents of `out`
 * are replaced. On any error `out` is left as it was.
 *
 * Errors:
 *   KL_ERR_INVALID  not an aggregated record, or a broken one (magic, length,
 *                   MD5, protobuf, key index, UTF-8, no user records);
 *   KL_ERR_LIMIT    more than KL_KPL_MAX_RECORDS user records or
 *                   KL_KPL_MAX_KEYS entries in a key table;
 *   KL_ERR_NOMEM    allocation failed;
 *   KL_ERR_INTERNAL OpenSSL cannot compute MD5 (e.g. a FIPS-only provider).
 * After KL_ERR_INVALID or KL_ERR_LIMIT the caller delivers the record as a
 * plain one; the other two are failures of ours, not of the record.
 * Thread-safe; `out` belongs to one thread at a time. */
int kl_kpl_decode(const unsigned char *data, size_t len, struct kl_kpl_records *out,
                  struct kl_err *err);

#endif
