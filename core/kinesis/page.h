/*
 * A GetRecords answer parsed as it arrives: the HTTP body is fed piece by
 * piece and each record's Data is base64-decoded straight into the page's
 * one block of bytes, so a page never exists as JSON text, as a JSON tree
 * and as decoded bytes at once. What the page holds is charged to a memory
 * budget as it grows (core/util/membudget.h). Used by records.c; its own
 * header so the unit tests can feed it byte by byte.
 */
#ifndef KL_KINESIS_PAGE_H
#define KL_KINESIS_PAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/kinesis/client.h"

struct kl_err;
struct kl_membudget;

#define KL_PAGE_MAX_DEPTH 32    /* JSON nesting the parser follows */
#define KL_PAGE_SCRATCH_MAX 256 /* keys, shard ids: longer ones are not ours */

/* One record while the page is parsed: offsets into the block, which may
 * still move. */
struct kl_page_record {
    size_t sequence, partition_key, data, data_len;
    int64_t arrival_ms;
    bool has_sequence, has_data;
};

struct kl_page_parser {
    /* the page so far */
    struct kl_page_record *records;
    size_t n_records, cap_records;
    struct kl_child_shard *children;
    size_t n_children, cap_children;
    char *bytes; /* strings and data, NUL after each */
    size_t len, cap;
    size_t next_iterator; /* offset, when has_next */
    bool has_next;
    int64_t millis_behind;
    size_t max_bytes; /* the block may not pass this */
    /* memory: what is charged to `budget` for this page (reserved before
     * included); grows with the page */
    struct kl_membudget *budget;
    size_t *charged;
    bool bounded;  /* growth past `*charged` must fit under the budget's limit */
    bool outgrown; /* it did not: the feed failed with KL_ERR_LIMIT */
    /* the tokenizer */
    int state, return_state;
    int depth;
    unsigned char ctx[KL_PAGE_MAX_DEPTH]; /* what each open container is */
    int field;                            /* what the value being read is for */
    int target;                           /* where the string being read goes */
    bool key_overflow;
    char scratch[KL_PAGE_SCRATCH_MAX];
    size_t scratch_len;
    char key[KL_PAGE_SCRATCH_MAX];
    char num[64];
    size_t num_len;
    const char *literal; /* "true", "false", "null" while one is read */
    size_t literal_pos;
    unsigned hex, hex_digits, high_surrogate;
    /* base64 of Data */
    char quad[4];
    size_t n_quad;
    int pads;
    size_t data_start;
};

/* Starts a page. `budget` may be NULL; `*charged` is what the caller already
 * holds of it for this page, and grows as the page does. `max_bytes` bounds
 * the page's block (0: 64 MiB). */
void kl_page_parser_init(struct kl_page_parser *p, struct kl_membudget *budget, size_t *charged,
                         size_t max_bytes);
/* Growth past what is charged must fit under the budget's limit: a page
 * that would pass it fails the feed with KL_ERR_LIMIT and sets `outgrown`
 * (the caller asks again with room for the worst case). Without this, the
 * page takes what it needs, past the limit if need be. */
void kl_page_parser_bound(struct kl_page_parser *p);
/* Forgets what was fed (another attempt of the call): the memory stays
 * allocated and charged, for the next body. */
void kl_page_parser_restart(struct kl_page_parser *p);
/* Feeds the next `n` bytes of the body. Errors: KL_ERR_UNAVAILABLE for text
 * that is not JSON (a broken transfer: worth another attempt), KL_ERR_UPSTREAM
 * for a record without SequenceNumber or Data or with invalid base64,
 * KL_ERR_LIMIT past max_bytes or, bounded, past the budget, KL_ERR_NOMEM. */
int kl_page_parser_feed(struct kl_page_parser *p, const char *data, size_t n, struct kl_err *err);
/* The body ended: KL_ERR_UNAVAILABLE unless it was one whole JSON object. */
int kl_page_parser_end(const struct kl_page_parser *p, struct kl_err *err);
/* The body ended: checks it was one whole JSON object and moves the page
 * into `out` (its storage leaves the parser). */
int kl_page_parser_finish(struct kl_page_parser *p, struct kl_record_batch *out,
                          struct kl_err *err);
/* Frees what the parser still holds (not what finish handed out). The
 * charge is left to the caller: `*charged` says what it is. */
void kl_page_parser_free(struct kl_page_parser *p);

#endif
