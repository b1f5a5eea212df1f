/*
 * One shard's reading loop (see cursor.h). The only state kept between
 * pages is the iterator, the last position handed out, and the pacing
 * deadline; everything a page holds lives in its chunk.
 */
#include "core/kinesis/cursor.h"
#include "core/kinesis/kpl.h"
#include "core/kinesis/page.h"
#include "core/util/clock.h"
#include "core/util/err.h"
#include "core/util/log.h"
#include "core/util/membudget.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EXPIRED_RETRIES 3
#define AT_TIMESTAMP_WAIT_MS 5000
#define CHUNK_ARENA_BLOCK ((size_t)16 * 1024)
#define CHUNK_ARENA_MAX ((size_t)64 << 20)
/* What a page of a shard whose pages are not known yet is given first. */
#define PAGE_ESTIMATE_MIN ((size_t)1 << 20)

struct kl_cursor {
    struct kl_kinesis *client;
    struct kl_kinesis_call call; /* the deadline hook for every call */
    struct kl_membudget *memory; /* pages are held under it; may be NULL */
    size_t rows_allowance;
    size_t page_estimate; /* twice what the last page held; 0: none yet */
    bool page_worst;      /* the last page outgrew its estimate: the worst case next */
    char job_id[64];
    char stream[KL_STREAM_NAME_MAX];
    char shard_id[KL_SHARD_ID_MAX];
    struct kl_iterator_start start;
    char start_sequence[KL_SEQ_MAX];
    /* resuming after a stored position */
    bool resuming;
    bool resume_checked;    /* the first record after opening was seen */
    bool from_trim_horizon; /* the stored position was gone: read what is left */
    /* AT_TIMESTAMP went unanswered: TRIM_HORIZON, records before it skipped */
    bool timestamp_fallback;
    int64_t skip_before_ms;
    char resume_sequence[KL_SEQ_MAX];
    int64_t resume_sub;
    /* where we are */
    char *iterator;
    char last_sequence[KL_SEQ_MAX];
    int64_t last_sub;
    bool done;
    bool closed;
    bool has_gap;
    struct kl_gap gap;
    /* rules */
    int64_t millis_behind_latest;
    int64_t stop_at_arrival_ms;
    int64_t at_timestamp_wait_ms;
    int64_t min_interval_ms;
    int64_t max_bytes_per_s;
    int64_t next_call_ms;
    bool no_deaggregate;
    bool read_to_end;
    int64_t poll_interval_ms;
    const struct kl_clock *clock;
    uint64_t expired;
};

/* Gives back what the chunk's page holds of the memory budget. */
static void chunk_uncharge(struct kl_chunk *c)
{
    kl_membudget_release(c->memory, c->charged);
    c->charged = 0;
    c->memory = NULL;
}

void kl_chunk_init(struct kl_chunk *c)
{
    memset(c, 0, sizeof *c);
    kl_record_batch_init(&c->batch);
    kl_arena_init(&c->arena, CHUNK_ARENA_BLOCK, CHUNK_ARENA_MAX);
    c->millis_behind = -1;
    c->end_sub_sequence = -1;
}

void kl_chunk_free(struct kl_chunk *c)
{
    if (c == NULL)
        return;
    chunk_uncharge(c);
    free(c->messages);
    kl_record_batch_free(&c->batch);
    kl_arena_free(&c->arena);
    kl_chunk_init(c);
}

/* Empties a chunk for reuse, keeping its message array and first arena block. */
void kl_chunk_empty(struct kl_chunk *c)
{
    chunk_uncharge(c);
    kl_record_batch_free(&c->batch);
    kl_arena_reset(&c->arena);
    c->n_messages = 0;
    c->n_records = 0;
    c->data_bytes = 0;
    c->millis_behind = -1;
    c->end_sequence[0] = '\0';
    c->end_sub_sequence = -1;
    c->shard_done = false;
    c->shard_closed = false;
    c->children = NULL;
    c->n_children = 0;
}

static int copy_id(char *dst, size_t cap, const char *src, const char *what, struct kl_err *err)
{
    size_t n = src ? strlen(src) : 0;
    if (n == 0 || n >= cap)
        return kl_err_set(err, KL_ERR_INVALID, "%s must be 1..%zu characters", what, cap - 1);
    memcpy(dst, src, n + 1);
    return KL_OK;
}

struct kl_cursor *kl_cursor_create(const struct kl_cursor_options *o, struct kl_err *err)
{
    struct kl_cursor *c = calloc(1, sizeof *c);
    if (c == NULL) {
        kl_err_set(err, KL_ERR_NOMEM, "out of memory creating a shard cursor");
        return NULL;
    }
    if (copy_id(c->stream, sizeof c->stream, o->stream, "stream name", err) != KL_OK ||
        copy_id(c->shard_id, sizeof c->shard_id, o->shard_id, "shard id", err) != KL_OK)
        goto fail;
    c->client = o->client;
    c->memory = o->memory;
    c->rows_allowance = o->rows_allowance;
    c->call.waiting = o->waiting;
    c->call.ctx = o->waiting_ctx;
    if (o->job_id != NULL)
        snprintf(c->job_id, sizeof c->job_id, "%s", o->job_id);
    c->start = o->start;
    if (o->start.sequence != NULL) {
        if (copy_id(c->start_sequence, sizeof c->start_sequence, o->start.sequence,
                    "start sequence", err) != KL_OK)
            goto fail;
        c->start.sequence = c->start_sequence;
    }
    if (o->resume != NULL && o->resume->sequence[0] != '\0') {
        c->resuming = true;
        memcpy(c->resume_sequence, o->resume->sequence, sizeof c->resume_sequence);
        c->resume_sequence[sizeof c->resume_sequence - 1] = '\0';
        c->resume_sub = o->resume->sub_sequence;
    }
    c->last_sub = -1;
    c->millis_behind_latest = o->millis_behind_latest;
    c->stop_at_arrival_ms = o->stop_at_arrival_ms;
    c->at_timestamp_wait_ms =
        o->at_timestamp_wait_ms > 0 ? o->at_timestamp_wait_ms : AT_TIMESTAMP_WAIT_MS;
    c->min_interval_ms = o->min_call_interval_ms;
    c->max_bytes_per_s = o->max_bytes_per_s;
    c->no_deaggregate = o->no_deaggregate;
    c->read_to_end = o->read_to_end;
    c->poll_interval_ms = o->poll_interval_ms > 0 ? o->poll_interval_ms : 0;
    c->clock = o->clock ? o->clock : kl_clock_system();
    return c;

fail:
    free(c);
    return NULL;
}

void kl_cursor_destroy(struct kl_cursor *c)
{
    if (c == NULL)
        return;
    free(c->iterator);
    free(c);
}

bool kl_cursor_done(const struct kl_cursor *c)
{
    return c->done;
}

const char *kl_cursor_shard_id(const struct kl_cursor *c)
{
    return c->shard_id;
}

const struct kl_gap *kl_cursor_gap(const struct kl_cursor *c)
{
    return c->has_gap ? &c->gap : NULL;
}

uint64_t kl_cursor_expired_count(const struct kl_cursor *c)
{
    return c->expired;
}

bool kl_cursor_timestamp_fallback(const struct kl_cursor *c)
{
    return c->timestamp_fallback;
}

static struct kl_log_ctx log_ctx(const struct kl_cursor *c)
{
    struct kl_log_ctx ctx = {c->job_id[0] ? c->job_id : NULL, c->stream, c->shard_id};
    return ctx;
}

static void note_gap(struct kl_cursor *c, const char *to_sequence, const char *reason)
{
    struct kl_log_ctx ctx = log_ctx(c);
    c->has_gap = true;
    snprintf(c->gap.from_sequence, sizeof c->gap.from_sequence, "%s", c->resume_sequence);
    snprintf(c->gap.to_sequence, sizeof c->gap.to_sequence, "%s", to_sequence);
    snprintf(c->gap.reason, sizeof c->gap.reason, "%.191s", reason);
    KL_WARN("reader", &ctx, "gap: stored sequence %s is no longer in the shard (%s)",
            c->resume_sequence, reason);
}

static void log_timed_out(const struct kl_cursor *c, const struct kl_err *err)
{
    struct kl_log_ctx ctx = log_ctx(c);
    if (c->call.timed_out)
        KL_WARN("reader", &ctx, "%s",
                err != NULL ? err->msg : "a Kinesis call passed its deadline");
}

/* Opens an iterator at `at` under the cursor's deadline and waiting hook; a
 * call past its deadline is logged with the operation. A `probe` (with its
 * own deadline) is neither shown as the shard's wait nor logged: its caller
 * decides what a silence means. */
static int open_iterator(struct kl_cursor *c, const struct kl_iterator_start *at, bool probe,
                         int64_t deadline_ms, struct kl_err *err)
{
    struct kl_kinesis_call call = c->call;
    int rc;

    call.deadline_ms = deadline_ms;
    if (probe)
        call.waiting = NULL;
    rc = kl_kinesis_get_shard_iterator(c->client, &call, c->stream, c->shard_id, at, &c->iterator,
                                       err);
    c->call.timed_out = call.timed_out;
    if (!probe)
        log_timed_out(c, err);
    return rc;
}

/* AT_TIMESTAMP, or on an endpoint that does not answer it in time, its
 * equivalent: TRIM_HORIZON with the records before the timestamp skipped. */
static int open_at_timestamp(struct kl_cursor *c, const struct kl_iterator_start *at,
                             struct kl_err *err)
{
    struct kl_iterator_start trim = {KL_ITER_TRIM_HORIZON, NULL, 0};
    struct kl_log_ctx ctx = log_ctx(c);
    char when[32];
    int rc;

    if (kl_kinesis_is_aws(c->client))
        return open_iterator(c, at, false, 0, err);
    if (!c->timestamp_fallback) {
        rc = open_iterator(c, at, true, c->at_timestamp_wait_ms, err);
        if (rc != KL_ERR_UNAVAILABLE || !c->call.timed_out)
            return rc;
        kl_format_timestamp(at->timestamp_ms, when);
        KL_WARN("reader", &ctx,
                "GetShardIterator AT_TIMESTAMP %s got no answer within %lld ms; reading from "
                "TRIM_HORIZON and skipping the records that arrived before it",
                when, (long long)c->at_timestamp_wait_ms);
        c->timestamp_fallback = true;
        c->skip_before_ms = at->timestamp_ms;
    }
    return open_iterator(c, &trim, false, 0, err);
}

/* Opens an iterator where reading should continue. */
static int acquire_iterator(struct kl_cursor *c, struct kl_err *err)
{
    struct kl_iterator_start at;
    int rc;

    if (c->last_sequence[0] != '\0') {
        at.type = KL_ITER_AFTER_SEQUENCE_NUMBER;
        at.sequence = c->last_sequence;
        at.timestamp_ms = 0;
    } else if (c->resuming && !c->from_trim_horizon) {
        at.type = KL_ITER_AT_SEQUENCE_NUMBER;
        at.sequence = c->resume_sequence;
        at.timestamp_ms = 0;
        rc = open_iterator(c, &at, false, 0, err);
        if (rc != KL_ERR_INVALID && rc != KL_ERR_NOT_FOUND)
            return rc;
        /* The stored record is gone (trimmed) or unknown to the shard: read
         * what is left and report the hole. A missing stream fails below. */
        note_gap(c, "", err ? err->msg : "stored sequence rejected");
        c->from_trim_horizon = true;
        c->resume_checked = true;
        at.type = KL_ITER_TRIM_HORIZON;
        at.sequence = NULL;
    } else if (c->from_trim_horizon) {
        at.type = KL_ITER_TRIM_HORIZON;
        at.sequence = NULL;
        at.timestamp_ms = 0;
    } else if (c->start.type == KL_ITER_AT_TIMESTAMP) {
        return open_at_timestamp(c, &c->start, err);
    } else {
        at = c->start;
    }
    return open_iterator(c, &at, false, 0, err);
}

static int grow_messages(struct kl_chunk *out, size_t need, struct kl_err *err)
{
    struct kl_message *m;
    size_t cap;
    if (need <= out->cap_messages)
        return KL_OK;
    cap = out->cap_messages ? out->cap_messages : 64;
    while (cap < need)
        cap *= 2;
    m = realloc(out->messages, cap * sizeof *m);
    if (m == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "out of memory for %zu messages", cap);
    out->messages = m;
    out->cap_messages = cap;
    return KL_OK;
}

static int add_message(struct kl_cursor *c, struct kl_chunk *out, const struct kl_record *r,
                       int64_t sub, const unsigned char *data, size_t len,
                       const char *partition_key, struct kl_err *err)
{
    struct kl_message *m;
    int rc = grow_messages(out, out->n_messages + 1, err);
    if (rc != KL_OK)
        return rc;
    m = &out->messages[out->n_messages];
    m->stream_name = c->stream;
    m->shard_id = c->shard_id;
    m->sequence = r->sequence;
    m->sub_sequence = sub;
    m->partition_key = partition_key;
    m->arrival_ms = r->arrival_ms;
    m->data = data;
    m->data_len = len;
    rc = kl_msg_id(c->shard_id, r->sequence, sub, m->msg_id, err);
    if (rc != KL_OK)
        return rc;
    out->n_messages++;
    return KL_OK;
}

/* Turns one Kinesis record into messages: its KPL user records, or itself.
 * Sub-records up to `skip_upto` were delivered before and are left out. A
 * record that is not a valid aggregate is delivered as it is. */
static int add_record(struct kl_cursor *c, struct kl_chunk *out, const struct kl_record *r,
                      int64_t skip_upto, struct kl_err *err)
{
    struct kl_kpl_records sub;
    int rc = KL_ERR_INVALID;

    kl_kpl_records_init(&sub);
    if (!c->no_deaggregate && kl_kpl_is_aggregated(r->data, r->data_len)) {
        rc = kl_kpl_decode(r->data, r->data_len, &sub, err);
        if (rc == KL_ERR_NOMEM || rc == KL_ERR_INTERNAL)
            goto cleanup;
    }
    if (rc != KL_OK) {
        rc = skip_upto >= 0
                 ? KL_OK
                 : add_message(c, out, r, -1, r->data, r->data_len, r->partition_key, err);
        goto cleanup;
    }
    for (size_t i = 0; i < sub.n; i++) {
        const struct kl_kpl_record *u = &sub.items[i];
        char *pk;
        if ((int64_t)i <= skip_upto)
            continue;
        pk = kl_arena_strndup(&out->arena, u->partition_key, u->partition_key_len);
        if (pk == NULL) {
            rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory for KPL partition keys");
            goto cleanup;
        }
        rc = add_message(c, out, r, (int64_t)i, u->data, u->data_len, pk, err);
        if (rc != KL_OK)
            goto cleanup;
    }
    rc = KL_OK;

cleanup:
    kl_kpl_records_free(&sub);
    return rc;
}

static void pace(struct kl_cursor *c)
{
    int64_t now = kl_clock_monotonic_ms(c->clock);
    if (c->next_call_ms > now)
        kl_clock_sleep_ms(c->clock, c->next_call_ms - now);
}

static void schedule_next_call(struct kl_cursor *c, const struct kl_record_batch *batch, int limit)
{
    int64_t now = kl_clock_monotonic_ms(c->clock);
    int64_t next = now + c->min_interval_ms;
    size_t bytes = batch->data_bytes;
    bool at_tip = batch->n < (size_t)limit && batch->millis_behind <= 0;
    if (at_tip && now + c->poll_interval_ms > next)
        next = now + c->poll_interval_ms;
    if (c->max_bytes_per_s > 0) {
        int64_t by_bytes = now + (int64_t)bytes * 1000 / c->max_bytes_per_s;
        if (by_bytes > next)
            next = by_bytes;
    }
    c->next_call_ms = next;
}

/* The stop rule for an open shard (see kl_cursor_options). */
static bool open_shard_done(const struct kl_cursor *c, const struct kl_record_batch *batch,
                            int limit, const struct kl_chunk *out)
{
    bool full = batch->n >= (size_t)limit;
    bool caught_up = batch->millis_behind >= 0 && batch->millis_behind < c->millis_behind_latest;
    bool empty_at_tip = batch->n == 0 && batch->millis_behind == 0;

    if ((!full && caught_up) || empty_at_tip)
        return true;
    if (c->stop_at_arrival_ms > 0)
        for (size_t i = out->n_messages; i > 0; i--)
            if (out->messages[i - 1].arrival_ms >= c->stop_at_arrival_ms)
                return true;
    return false;
}

/* Per record at most: the record and its page bookkeeping, its message,
 * a sequence number (56 digits on AWS) and a partition key (256 at most). */
#define RECORD_OVERHEAD                                                                            \
    (sizeof(struct kl_record) + sizeof(struct kl_page_record) + sizeof(struct kl_message) +        \
     KL_SEQ_MAX + 257 + 1)

size_t kl_cursor_page_reservation(int limit, size_t rows_allowance)
{
    size_t rows = rows_allowance > 0 ? KL_KINESIS_MAX_PAGE_DATA : 0;
    return KL_KINESIS_MAX_PAGE_DATA + rows + (size_t)(limit > 0 ? limit : 1) * RECORD_OVERHEAD +
           CHUNK_ARENA_BLOCK;
}

/* The page is in the chunk: what it holds replaces what was reserved, and
 * so do the rows of its largest message (a worker's rows pass their
 * allowance by one message at most). The next page of the shard is given
 * twice this. */
static void settle_memory(struct kl_cursor *c, struct kl_chunk *out)
{
    size_t holds = out->batch.held + out->cap_messages * sizeof *out->messages + out->arena.total;
    size_t largest = 0;
    for (size_t i = 0; c->rows_allowance > 0 && i < out->n_messages; i++)
        if (out->messages[i].data_len > largest)
            largest = out->messages[i].data_len;
    holds += largest;
    if (holds > c->call.charged)
        kl_membudget_charge(c->memory, holds - c->call.charged);
    else
        kl_membudget_release(c->memory, c->call.charged - holds);
    out->memory = c->memory;
    out->charged = c->memory != NULL ? holds : 0;
    c->call.charged = 0;
    c->page_estimate = 2 * holds;
    c->page_worst = false;
}

/* What a page of `batch` adds once it is in the chunk: its messages (KPL
 * aside, one a record), their arena's first block, and the rows of its
 * largest message (as settle_memory counts them). */
static size_t page_extra(const struct kl_cursor *c, const struct kl_record_batch *batch)
{
    size_t cap = 64, largest = 0;
    while (cap < batch->n)
        cap *= 2;
    for (size_t i = 0; c->rows_allowance > 0 && i < batch->n; i++)
        if (batch->records[i].data_len > largest)
            largest = batch->records[i].data_len;
    return cap * sizeof(struct kl_message) + CHUNK_ARENA_BLOCK + largest;
}

/* GetRecords at the cursor's iterator, re-acquiring an expired one. */
static int call_get_records(struct kl_cursor *c, int limit, struct kl_record_batch *batch,
                            struct kl_err *err)
{
    struct kl_log_ctx ctx = log_ctx(c);
    int rc;

    for (int attempt = 0;; attempt++) {
        if (c->iterator == NULL) {
            rc = acquire_iterator(c, err);
            if (rc != KL_OK)
                return rc;
        }
        pace(c);
        rc = kl_kinesis_get_records(c->client, &c->call, c->iterator, limit, batch, err);
        if (rc == KL_OK)
            return KL_OK;
        log_timed_out(c, err);
        if (rc != KL_ERR_EXPIRED || attempt >= MAX_EXPIRED_RETRIES)
            return rc;
        /* Iterators live five minutes; continue after what we handed out. */
        c->expired++;
        KL_INFO("reader", &ctx, "shard iterator expired; re-acquiring after %s",
                c->last_sequence[0] ? c->last_sequence : "the start");
        free(c->iterator);
        c->iterator = NULL;
    }
}

/* Reserves room for the next page and reads it. The room is twice what
 * this shard's last page held (PAGE_ESTIMATE_MIN at first), and the page
 * may grow past it only while the budget has more: readers of small pages
 * read at once, side by side. A page that does not fit is dropped and read
 * again (the same iterator: nothing of it was handed out) with room for
 * the worst case, reserved in line behind the other readers. On success
 * c->call.charged is what the page holds of the budget; on failure it is
 * still to be released. */
static int fetch_page(struct kl_cursor *c, int limit, struct kl_record_batch *batch,
                      struct kl_err *err)
{
    struct kl_log_ctx ctx = log_ctx(c);

    for (;;) {
        size_t worst = kl_cursor_page_reservation(limit, c->rows_allowance);
        size_t want = c->page_estimate > PAGE_ESTIMATE_MIN ? c->page_estimate : PAGE_ESTIMATE_MIN;
        int rc;

        if (c->page_worst || want > worst)
            want = worst;
        c->call.memory = c->memory;
        c->call.charged = c->memory != NULL ? want : 0;
        c->call.bounded = c->memory != NULL && want < worst;
        c->call.outgrown = false;
        rc = kl_membudget_reserve(c->memory, c->call.charged, kl_kinesis_cancel_flag(c->client),
                                  err);
        if (rc != KL_OK) {
            c->call.charged = 0;
            return rc;
        }
        rc = call_get_records(c, limit, batch, err);
        if (rc == KL_OK && c->call.bounded) {
            size_t need = batch->held + page_extra(c, batch);
            if (need > c->call.charged) {
                if (kl_membudget_try_charge(c->memory, need - c->call.charged)) {
                    c->call.charged = need;
                } else {
                    c->call.outgrown = true;
                    rc = kl_err_set(err, KL_ERR_LIMIT,
                                    "GetRecords: the page's messages did not fit");
                }
            }
        }
        if (rc == KL_OK || !c->call.outgrown)
            return rc;
        KL_DEBUG("reader", &ctx,
                 "a page outgrew the %zu bytes given to it: reading it again with %zu",
                 c->call.charged, worst);
        kl_record_batch_free(batch);
        kl_record_batch_init(batch);
        kl_membudget_release(c->memory, c->call.charged);
        c->call.charged = 0;
        c->page_worst = true;
    }
}

int kl_cursor_fetch(struct kl_cursor *c, int limit, struct kl_chunk *out, struct kl_err *err)
{
    struct kl_record_batch batch;
    int rc = KL_OK;

    kl_chunk_empty(out);
    kl_record_batch_init(&batch);
    snprintf(out->shard_id, sizeof out->shard_id, "%s", c->shard_id);
    snprintf(out->end_sequence, sizeof out->end_sequence, "%s", c->last_sequence);
    out->end_sub_sequence = c->last_sub;
    if (c->done) {
        out->shard_done = true;
        out->shard_closed = c->closed;
        return KL_OK;
    }
    if (limit < 1 || limit > 10000)
        return kl_err_set(err, KL_ERR_INVALID, "chunk size must be 1..10000, not %d", limit);
    rc = fetch_page(c, limit, &batch, err);
    if (rc != KL_OK)
        goto cleanup;
    schedule_next_call(c, &batch, limit);
    rc = grow_messages(out, batch.n, err); /* one message a record but for KPL */
    if (rc != KL_OK)
        goto cleanup;

    for (size_t i = 0; i < batch.n; i++) {
        const struct kl_record *r = &batch.records[i];
        int64_t skip_upto = -1;

        if (c->resuming && !c->resume_checked) {
            int cmp = kl_seq_cmp(r->sequence, c->resume_sequence);
            c->resume_checked = true;
            if (cmp == 0) {
                /* the stored record itself: skip what was delivered of it */
                skip_upto = c->resume_sub >= 0 ? c->resume_sub : INT64_MAX;
            } else if (cmp > 0) {
                note_gap(c, r->sequence, "stored sequence no longer in the shard (trimmed)");
            }
        } else if (c->has_gap && c->gap.to_sequence[0] == '\0') {
            snprintf(c->gap.to_sequence, sizeof c->gap.to_sequence, "%s", r->sequence);
        }
        if (c->timestamp_fallback && r->arrival_ms < c->skip_before_ms)
            continue; /* before the AT_TIMESTAMP it stands for */
        rc = add_record(c, out, r, skip_upto, err);
        if (rc != KL_OK)
            goto cleanup;
    }
    out->n_records = batch.n;
    out->data_bytes = batch.data_bytes;
    out->millis_behind = batch.millis_behind;

    free(c->iterator);
    c->iterator = NULL;
    if (batch.next_iterator != NULL) {
        c->iterator = strdup(batch.next_iterator);
        if (c->iterator == NULL) {
            rc = kl_err_set(err, KL_ERR_NOMEM, "out of memory copying a shard iterator");
            goto cleanup;
        }
        if (!c->read_to_end && open_shard_done(c, &batch, limit, out))
            c->done = true;
    } else {
        c->done = true;
        c->closed = true;
    }
    if (out->n_messages > 0) {
        const struct kl_message *last = &out->messages[out->n_messages - 1];
        snprintf(c->last_sequence, sizeof c->last_sequence, "%s", last->sequence);
        c->last_sub = last->sub_sequence;
    } else if (batch.n > 0) {
        /* every record was a skipped re-delivery, or arrived before the
         * timestamp read from: still move past them */
        snprintf(c->last_sequence, sizeof c->last_sequence, "%s",
                 batch.records[batch.n - 1].sequence);
        c->last_sub = c->resuming ? c->resume_sub : -1;
    }
    snprintf(out->end_sequence, sizeof out->end_sequence, "%s", c->last_sequence);
    out->end_sub_sequence = c->last_sub;
    out->shard_done = c->done;
    out->shard_closed = c->closed;
    /* the chunk owns the page from here on: messages point into it */
    out->batch = batch;
    out->children = batch.children;
    out->n_children = batch.n_children;
    kl_record_batch_init(&batch);
    settle_memory(c, out);
    rc = KL_OK;

cleanup:
    kl_record_batch_free(&batch);
    if (rc != KL_OK) {
        kl_membudget_release(c->memory, c->call.charged);
        c->call.charged = 0;
        kl_chunk_empty(out);
    }
    return rc;
}
