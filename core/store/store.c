/*
 * The backend-independent half of the state store (store.h): argument
 * checks in front of every operation, so both backends see only valid
 * input, plus status names, job ids, position order and snapshot helpers.
 * Nothing here talks to Redis or holds state.
 */
#include "core/store/store.h"
#include "core/store/internal.h"
#include "core/kinesis/client.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <openssl/rand.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS (24LL * 3600 * 1000)
#define MAX_TTL_MS (7 * DAY_MS) /* leases, task leases, delays, timeouts */
#define MAX_PROGRESS_TABLES 1024

static const char *const status_names[] = {"queued", "running", "succeeded", "failed", "cancelled"};

const char *kl_store_job_status_name(enum kl_store_job_status s)
{
    return (unsigned)s < sizeof status_names / sizeof status_names[0] ? status_names[s] : "?";
}

int kl_store_job_status_parse(const char *name, enum kl_store_job_status *out)
{
    for (size_t i = 0; name != NULL && i < sizeof status_names / sizeof status_names[0]; i++) {
        if (strcmp(name, status_names[i]) == 0) {
            *out = (enum kl_store_job_status)i;
            return 0;
        }
    }
    return -1;
}

bool kl_store_job_status_final(enum kl_store_job_status s)
{
    return s == KL_STORE_JOB_SUCCEEDED || s == KL_STORE_JOB_FAILED || s == KL_STORE_JOB_CANCELLED;
}

/* ---- snapshots ---- */

void kl_store_job_init(struct kl_store_job *j)
{
    memset(j, 0, sizeof *j);
    j->started_ms = -1;
    j->finished_ms = -1;
}

void kl_store_job_free(struct kl_store_job *j)
{
    if (j == NULL)
        return;
    free(j->parameters);
    free(j->tables);
    free(j->shards);
    kl_store_job_init(j);
}

void kl_store_job_page_free(struct kl_store_job_page *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n_jobs; i++)
        kl_store_job_free(&p->jobs[i]);
    free(p->jobs);
    memset(p, 0, sizeof *p);
}

static int cmp_tables(const void *a, const void *b)
{
    return strcmp(((const struct kl_store_table_rows *)a)->table,
                  ((const struct kl_store_table_rows *)b)->table);
}

static int cmp_shards(const void *a, const void *b)
{
    return strcmp(((const struct kl_store_shard_progress *)a)->position.shard_id,
                  ((const struct kl_store_shard_progress *)b)->position.shard_id);
}

double kl_store_rate_at(const struct kl_store_shard_progress *s, int64_t now_ms)
{
    int64_t dt = now_ms - s->rate_at_ms;
    if (s->rate_at_ms <= 0 || s->messages_per_s <= 0)
        return 0;
    return dt > 0 ? s->messages_per_s * exp(-(double)dt / KL_STORE_RATE_WINDOW_MS)
                  : s->messages_per_s;
}

void kl_store_rate_add(double *rate, int64_t *rate_at, int64_t n, int64_t at_ms)
{
    int64_t dt = *rate_at > 0 ? at_ms - *rate_at : 0;
    if (dt > 0)
        *rate *= exp(-(double)dt / KL_STORE_RATE_WINDOW_MS);
    *rate += (double)n * 1000.0 / KL_STORE_RATE_WINDOW_MS;
    if (at_ms > *rate_at)
        *rate_at = at_ms;
}

void kl_store_job_sort(struct kl_store_job *j)
{
    if (j->n_tables > 1)
        qsort(j->tables, j->n_tables, sizeof j->tables[0], cmp_tables);
    if (j->n_shards > 1)
        qsort(j->shards, j->n_shards, sizeof j->shards[0], cmp_shards);
}

bool kl_store_copy(char *dst, size_t size, const char *src)
{
    size_t n;
    if (src == NULL)
        src = "";
    n = strlen(src);
    bool fits = n < size;
    if (!fits)
        n = size - 1;
    if (n > 0)
        memcpy(dst, src, n);
    dst[n] = '\0';
    return fits;
}

int64_t kl_store_parse_i64(const char *s, size_t len, int64_t fallback)
{
    int64_t v = 0;
    bool neg = false;
    size_t i = 0;

    if (s == NULL || len == 0)
        return fallback;
    if (s[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i == len)
        return fallback;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return fallback;
        if (v > (INT64_MAX - (s[i] - '0')) / 10)
            return fallback;
        v = v * 10 + (s[i] - '0');
    }
    return neg ? -v : v;
}

/* ---- ids and positions ---- */

static const char id_alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";

int kl_store_new_job_id(int64_t now_ms, char out[KL_STORE_JOB_ID_SIZE], struct kl_err *err)
{
    unsigned char rnd[10];
    uint64_t t = now_ms > 0 ? (uint64_t)now_ms & ((1ULL << 48) - 1) : 0;
    uint64_t hi, lo;
    int rc = KL_OK;

    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        rc = KL_STORE_FAIL(err, KL_ERR_INTERNAL, "job id: the random generator failed");
        goto cleanup;
    }
    /* 10 characters of time (50 bits, the top 2 are zero), 16 of randomness (80 bits). */
    for (int i = 9; i >= 0; i--) {
        out[i] = id_alphabet[t & 31];
        t >>= 5;
    }
    hi = 0;
    lo = 0;
    for (int i = 0; i < 5; i++)
        hi = hi << 8 | rnd[i];
    for (int i = 5; i < 10; i++)
        lo = lo << 8 | rnd[i];
    for (int i = 7; i >= 0; i--) {
        out[10 + i] = id_alphabet[hi & 31];
        out[18 + i] = id_alphabet[lo & 31];
        hi >>= 5;
        lo >>= 5;
    }
    out[KL_STORE_JOB_ID_LEN] = '\0';
cleanup:
    return rc;
}

bool kl_store_job_id_valid(const char *id)
{
    size_t n;
    if (id == NULL)
        return false;
    for (n = 0; id[n] != '\0'; n++) {
        if (n >= KL_STORE_JOB_ID_LEN || strchr(id_alphabet, id[n]) == NULL)
            return false;
    }
    return n == KL_STORE_JOB_ID_LEN;
}

/* ---- argument checks ---- */

/* A key part: 1..max-1 printable ASCII bytes other than ':', '|', '/' and space. */
static bool name_ok(const char *s, size_t max)
{
    size_t n;
    if (s == NULL || s[0] == '\0')
        return false;
    for (n = 0; s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n + 1 >= max || c <= 0x20 || c >= 0x7f || c == ':' || c == '|' || c == '/')
            return false;
    }
    return true;
}

/* An owner: 1..max-1 printable ASCII bytes without space (':' is fine). */
static bool owner_ok(const char *s)
{
    size_t n;
    if (s == NULL || s[0] == '\0')
        return false;
    for (n = 0; s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n + 1 >= KL_STORE_OWNER_MAX || c <= 0x20 || c >= 0x7f)
            return false;
    }
    return true;
}

static bool seq_ok(const char *s)
{
    size_t n;
    if (s == NULL || s[0] == '\0')
        return false;
    for (n = 0; s[n] != '\0'; n++) {
        if (n + 1 >= KL_SEQ_MAX || s[n] < '0' || s[n] > '9')
            return false;
    }
    return true;
}

static bool text_ok(const char *s, size_t max)
{
    return s == NULL || strnlen(s, max) < max;
}

static int bad(struct kl_err *err, const char *what)
{
    return KL_STORE_FAIL(err, KL_ERR_INVALID, "store: invalid %s", what);
}

static int check_names(const char *pipeline, const char *stream, struct kl_err *err)
{
    if (!name_ok(pipeline, KL_STORE_NAME_MAX))
        return bad(err, "pipeline name");
    if (!name_ok(stream, KL_STREAM_NAME_MAX))
        return bad(err, "stream name");
    return KL_OK;
}

static int check_shard_key(const struct kl_store_shard_key *k, struct kl_err *err)
{
    if (k == NULL)
        return bad(err, "shard key");
    if (check_names(k->pipeline, k->stream, err) != KL_OK)
        return err != NULL ? (int)err->code : KL_ERR_INVALID;
    if (!name_ok(k->shard_id, KL_SHARD_ID_MAX))
        return bad(err, "shard id");
    return KL_OK;
}

static bool ms_ok(int64_t ms, bool zero_ok)
{
    return (zero_ok ? ms >= 0 : ms > 0) && ms <= MAX_TTL_MS;
}

static int check_task(const struct kl_store_task *t, struct kl_err *err)
{
    if (t == NULL || !kl_store_job_id_valid(t->job_id) || !name_ok(t->shard_id, KL_SHARD_ID_MAX) ||
        t->delivery < 1)
        return bad(err, "task");
    return KL_OK;
}

/* ---- lifecycle ---- */

void kl_store_options_init(struct kl_store_options *o)
{
    memset(o, 0, sizeof *o);
    o->key_prefix = "kl:";
    o->job_retention_ms = 7 * DAY_MS;
    o->idempotency_ttl_ms = DAY_MS;
    o->connect_timeout_ms = 2000;
    o->command_timeout_ms = 5000;
    o->pool_max = 64;
    o->poll_ms = 500;
    o->backoff_max_ms = 2000;
}

void kl_store_destroy(struct kl_store *s)
{
    if (s == NULL)
        return;
    s->ops->destroy(s->impl);
    free(s);
}

const char *kl_store_name(struct kl_store *s)
{
    return s->ops->name(s->impl);
}

int kl_store_ping(struct kl_store *s, struct kl_err *err)
{
    return s->ops->ping(s->impl, err);
}

/* ---- jobs ---- */

int kl_store_job_create(struct kl_store *s, const struct kl_store_job_new *j,
                        char id_out[KL_STORE_JOB_ID_SIZE], bool *existing, struct kl_err *err)
{
    cJSON *doc = NULL;
    const char *key;
    int rc = KL_OK;

    if (j == NULL || id_out == NULL || existing == NULL) {
        rc = bad(err, "job");
        goto cleanup;
    }
    if ((rc = check_names(j->pipeline_name, j->stream, err)) != KL_OK)
        goto cleanup;
    if (!name_ok(j->dataset_name, KL_STORE_NAME_MAX)) {
        rc = bad(err, "dataset name");
        goto cleanup;
    }
    if (j->parameters_json != NULL) {
        size_t n = strnlen(j->parameters_json, KL_STORE_PARAMS_MAX + 1);
        if (n > KL_STORE_PARAMS_MAX) {
            rc = KL_STORE_FAIL(err, KL_ERR_INVALID, "store: job parameters exceed %d bytes",
                               KL_STORE_PARAMS_MAX);
            goto cleanup;
        }
        doc = cJSON_ParseWithLength(j->parameters_json, n);
        if (doc == NULL) {
            rc = KL_STORE_FAIL(err, KL_ERR_INVALID, "store: job parameters are not JSON");
            goto cleanup;
        }
    }
    key = j->idempotency_key;
    if (key != NULL && key[0] != '\0') {
        size_t n;
        for (n = 0; key[n] != '\0'; n++) {
            if (n + 1 >= KL_STORE_IDEMPOTENCY_MAX || (unsigned char)key[n] < 0x20 ||
                (unsigned char)key[n] >= 0x7f)
                break;
        }
        if (key[n] != '\0') {
            rc = KL_STORE_FAIL(err, KL_ERR_INVALID,
                               "store: Idempotency-Key must be 1..%d printable ASCII characters",
                               KL_STORE_IDEMPOTENCY_MAX - 1);
            goto cleanup;
        }
    }
    rc = s->ops->job_create(s->impl, j, id_out, existing, err);
cleanup:
    cJSON_Delete(doc);
    return rc;
}

int kl_store_job_get(struct kl_store *s, const char *id, struct kl_store_job *out,
                     struct kl_err *err)
{
    if (out == NULL)
        return bad(err, "snapshot");
    if (!kl_store_job_id_valid(id))
        return KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no such job");
    return s->ops->job_get(s->impl, id, out, err);
}

int kl_store_job_list(struct kl_store *s, const struct kl_store_job_filter *f,
                      struct kl_store_job_page *out, struct kl_err *err)
{
    struct kl_store_job_filter g;
    if (f == NULL || out == NULL)
        return bad(err, "job filter");
    g = *f;
    if (g.limit == 0)
        g.limit = 50;
    if (g.limit < 1 || g.limit > KL_STORE_LIST_MAX)
        return bad(err, "limit");
    if (g.stream != NULL && g.stream[0] == '\0')
        g.stream = NULL;
    if (g.stream != NULL && !name_ok(g.stream, KL_STREAM_NAME_MAX))
        return bad(err, "stream name");
    if (g.has_status && (unsigned)g.status > KL_STORE_JOB_CANCELLED)
        return bad(err, "status");
    if (g.cursor != NULL && g.cursor[0] == '\0')
        g.cursor = NULL;
    if (g.cursor != NULL && !kl_store_job_id_valid(g.cursor))
        return bad(err, "cursor");
    return s->ops->job_list(s->impl, &g, out, err);
}

int kl_store_job_status(struct kl_store *s, const char *id, enum kl_store_job_status *status,
                        bool *cancel_requested, struct kl_err *err)
{
    if (status == NULL || cancel_requested == NULL)
        return bad(err, "out-parameter");
    if (!kl_store_job_id_valid(id))
        return KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no such job");
    return s->ops->job_status(s->impl, id, status, cancel_requested, err);
}

int kl_store_job_active(struct kl_store *s, const char *pipeline, const char *stream,
                        char id_out[KL_STORE_JOB_ID_SIZE], bool *found, struct kl_err *err)
{
    int rc = check_names(pipeline, stream, err);
    if (rc != KL_OK)
        return rc;
    if (id_out == NULL || found == NULL)
        return bad(err, "out-parameter");
    return s->ops->job_active(s->impl, pipeline, stream, id_out, found, err);
}

int kl_store_job_transition(struct kl_store *s, const char *id, enum kl_store_job_status to,
                            const struct kl_store_job_error *e, enum kl_store_job_status *now,
                            struct kl_err *err)
{
    enum kl_store_job_status ignored;
    if (!kl_store_job_id_valid(id))
        return KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no such job");
    if ((unsigned)to > KL_STORE_JOB_CANCELLED)
        return bad(err, "status");
    if (e != NULL &&
        ((e->type != NULL && !name_ok(e->type, 32)) ||
         (e->shard_id != NULL && e->shard_id[0] != '\0' && !name_ok(e->shard_id, KL_SHARD_ID_MAX))))
        return bad(err, "job error");
    return s->ops->job_transition(s->impl, id, to, e, now != NULL ? now : &ignored, err);
}

int kl_store_job_cancel(struct kl_store *s, const char *id, enum kl_store_job_status *now,
                        struct kl_err *err)
{
    enum kl_store_job_status ignored;
    if (!kl_store_job_id_valid(id))
        return KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no such job");
    return s->ops->job_cancel(s->impl, id, now != NULL ? now : &ignored, err);
}

int kl_store_job_progress(struct kl_store *s, const char *id, const struct kl_store_progress *p,
                          bool *applied, struct kl_err *err)
{
    bool ignored;
    if (!kl_store_job_id_valid(id))
        return KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no such job");
    if (p == NULL || !name_ok(p->shard_id, KL_SHARD_ID_MAX))
        return bad(err, "progress shard id");
    if (p->sequence != NULL && (!seq_ok(p->sequence) || p->sub_sequence < -1))
        return bad(err, "progress sequence");
    if (p->messages < 0 || p->dead_letters < 0 || p->released < 0)
        return bad(err, "progress counts");
    if ((p->resumed_from != NULL && !text_ok(p->resumed_from, KL_STORE_OPERATION_MAX)) ||
        (p->resumed_from_load_id != NULL && !text_ok(p->resumed_from_load_id, KL_STORE_NAME_MAX)))
        return bad(err, "progress origin");
    if (p->n_tables > MAX_PROGRESS_TABLES || (p->n_tables > 0 && p->tables == NULL))
        return bad(err, "progress tables");
    for (size_t i = 0; i < p->n_tables; i++) {
        if (!name_ok(p->tables[i].table, KL_STORE_TABLE_MAX) || p->tables[i].rows < 0)
            return bad(err, "progress table");
    }
    if (p->gap != NULL && (!seq_ok(p->gap->from_sequence) ||
                           (p->gap->to_sequence[0] != '\0' && !seq_ok(p->gap->to_sequence)) ||
                           !text_ok(p->gap->reason, sizeof p->gap->reason)))
        return bad(err, "progress gap");
    return s->ops->job_progress(s->impl, id, p, applied != NULL ? applied : &ignored, err);
}

/* ---- the message budget ---- */

int kl_store_budget_reserve(struct kl_store *s, const char *job_id, const char *shard_id,
                            int64_t max_messages, int64_t want, int64_t *granted,
                            struct kl_err *err)
{
    *granted = 0;
    if (!kl_store_job_id_valid(job_id))
        return KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no such job");
    if (!name_ok(shard_id, KL_SHARD_ID_MAX))
        return bad(err, "budget shard id");
    if (max_messages < 0 || want < 0)
        return bad(err, "budget amounts");
    return s->ops->budget_reserve(s->impl, job_id, shard_id, max_messages, want, granted, err);
}

int kl_store_budget_release(struct kl_store *s, const char *job_id, const char *shard_id, int64_t n,
                            struct kl_err *err)
{
    if (!kl_store_job_id_valid(job_id))
        return KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no such job");
    if (!name_ok(shard_id, KL_SHARD_ID_MAX))
        return bad(err, "budget shard id");
    return s->ops->budget_release(s->impl, job_id, shard_id, n, err);
}

/* ---- tasks ---- */

int kl_store_task_enqueue(struct kl_store *s, const char *job_id, const char *shard_id,
                          const char *meta, int64_t delay_ms, bool *created, struct kl_err *err)
{
    bool ignored;
    if (!kl_store_job_id_valid(job_id))
        return KL_STORE_FAIL(err, KL_ERR_NOT_FOUND, "no such job");
    if (!name_ok(shard_id, KL_SHARD_ID_MAX))
        return bad(err, "shard id");
    if (!text_ok(meta, KL_STORE_TASK_META_MAX))
        return bad(err, "task meta (too long)");
    if (!ms_ok(delay_ms, true))
        return bad(err, "delay");
    return s->ops->task_enqueue(s->impl, job_id, shard_id, meta != NULL ? meta : "", delay_ms,
                                created != NULL ? created : &ignored, err);
}

int kl_store_task_take(struct kl_store *s, const char *owner, int64_t lease_ms, int64_t timeout_ms,
                       struct kl_store_task *out, bool *got, struct kl_err *err)
{
    if (!owner_ok(owner))
        return bad(err, "owner");
    if (!ms_ok(lease_ms, false) || !ms_ok(timeout_ms, true))
        return bad(err, "lease or timeout");
    if (out == NULL || got == NULL)
        return bad(err, "out-parameter");
    return s->ops->task_take(s->impl, owner, lease_ms, timeout_ms, out, got, err);
}

int kl_store_task_heartbeat(struct kl_store *s, const struct kl_store_task *t, int64_t lease_ms,
                            struct kl_err *err)
{
    int rc = check_task(t, err);
    if (rc != KL_OK)
        return rc;
    if (!ms_ok(lease_ms, false))
        return bad(err, "lease");
    return s->ops->task_heartbeat(s->impl, t, lease_ms, err);
}

int kl_store_task_ack(struct kl_store *s, const struct kl_store_task *t,
                      struct kl_store_task_ack *out, struct kl_err *err)
{
    struct kl_store_task_ack ignored;
    int rc = check_task(t, err);
    if (rc != KL_OK)
        return rc;
    return s->ops->task_ack(s->impl, t, out != NULL ? out : &ignored, err);
}

static int check_requeue(const struct kl_store_task *t, int64_t delay_ms, struct kl_err *err)
{
    int rc = check_task(t, err);
    if (rc == KL_OK && !ms_ok(delay_ms, true))
        rc = bad(err, "delay");
    return rc;
}

int kl_store_task_nack(struct kl_store *s, const struct kl_store_task *t, int64_t delay_ms,
                       struct kl_err *err)
{
    int rc = check_requeue(t, delay_ms, err);
    return rc != KL_OK ? rc : s->ops->task_nack(s->impl, t, delay_ms, err);
}

int kl_store_task_release(struct kl_store *s, const struct kl_store_task *t, int64_t delay_ms,
                          struct kl_err *err)
{
    int rc = check_requeue(t, delay_ms, err);
    return rc != KL_OK ? rc : s->ops->task_release(s->impl, t, delay_ms, err);
}

int kl_store_stats(struct kl_store *s, struct kl_store_stats *out, struct kl_err *err)
{
    if (out == NULL)
        return bad(err, "out-parameter");
    return s->ops->stats(s->impl, out, err);
}

/* ---- leases ---- */

int kl_store_lease_take(struct kl_store *s, const struct kl_store_shard_key *k, const char *owner,
                        int64_t ttl_ms, int64_t min_token, int64_t *token, struct kl_err *err)
{
    int rc = check_shard_key(k, err);
    if (rc != KL_OK)
        return rc;
    if (!owner_ok(owner))
        return bad(err, "owner");
    if (!ms_ok(ttl_ms, false) || min_token < 0 || min_token >= (1LL << 52) || token == NULL)
        return bad(err, "lease ttl or token");
    return s->ops->lease_take(s->impl, k, owner, ttl_ms, min_token, token, err);
}

int kl_store_lease_renew(struct kl_store *s, const struct kl_store_shard_key *k, const char *owner,
                         int64_t token, int64_t ttl_ms, struct kl_err *err)
{
    int rc = check_shard_key(k, err);
    if (rc != KL_OK)
        return rc;
    if (!owner_ok(owner))
        return bad(err, "owner");
    if (!ms_ok(ttl_ms, false) || token < 1)
        return bad(err, "lease ttl or token");
    return s->ops->lease_renew(s->impl, k, owner, token, ttl_ms, err);
}

int kl_store_lease_release(struct kl_store *s, const struct kl_store_shard_key *k,
                           const char *owner, int64_t token, struct kl_err *err)
{
    int rc = check_shard_key(k, err);
    if (rc != KL_OK)
        return rc;
    if (!owner_ok(owner) || token < 1)
        return bad(err, "owner or token");
    return s->ops->lease_release(s->impl, k, owner, token, err);
}
