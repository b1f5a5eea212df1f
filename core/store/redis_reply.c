/*
 * Reading the Redis store's replies: element access, and a job snapshot
 * from its three hashes (the job, its row counts, its shards).
 */
#include "core/store/redis_internal.h"
#include "core/store/internal.h"
#include "core/util/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- reply helpers ---- */

const char *kl_rs_el_str(const redisReply *r, size_t i, size_t *len)
{
    const redisReply *e;
    if (len != NULL)
        *len = 0;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || i >= r->elements)
        return NULL;
    e = r->element[i];
    if (e->type != REDIS_REPLY_STRING && e->type != REDIS_REPLY_STATUS)
        return NULL;
    if (len != NULL)
        *len = e->len;
    return e->str;
}

bool kl_rs_el_is(const redisReply *r, size_t i, const char *s)
{
    size_t n;
    const char *v = kl_rs_el_str(r, i, &n);
    return v != NULL && n == strlen(s) && memcmp(v, s, n) == 0;
}

int64_t kl_rs_el_i64(const redisReply *r, size_t i, int64_t fallback)
{
    size_t n;
    const char *s;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || i >= r->elements)
        return fallback;
    if (r->element[i]->type == REDIS_REPLY_INTEGER)
        return r->element[i]->integer;
    s = kl_rs_el_str(r, i, &n);
    return kl_store_parse_i64(s, n, fallback);
}

/* Copies a reply string into a fixed buffer; false when it does not fit. */
bool kl_rs_copy_n(char *dst, size_t size, const char *s, size_t n)
{
    if (s == NULL || n >= size)
        return false;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return true;
}

int kl_rs_bad_reply(const char *what, struct kl_err *err)
{
    return KL_STORE_FAIL(err, KL_ERR_INTERNAL, "redis %s: unexpected reply", what);
}

/* One "<key>|<name>" field of a hash, for grouping by key. */
struct field {
    const char *key;
    size_t key_len;
    const char *name; /* after the '|' */
    size_t name_len;
    const char *val;
    size_t val_len;
};

static int cmp_field(const void *a, const void *b)
{
    const struct field *x = a, *y = b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    if (c != 0)
        return c;
    return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/* Splits an HGETALL reply's "<key>|<name>" fields, sorted by key; fields
 * without '|' are left out. `*out` is malloc'ed. */
static int group_fields(const redisReply *h, struct field **out, size_t *n_out, struct kl_err *err)
{
    struct field *f = NULL;
    size_t n = 0;

    if (h == NULL || h->type != REDIS_REPLY_ARRAY || h->elements % 2 != 0)
        return kl_rs_bad_reply("hash", err);
    if (h->elements / 2 > HASH_PAIRS_MAX)
        return KL_STORE_FAIL(err, KL_ERR_LIMIT, "redis: a hash of %zu fields is too large",
                             h->elements / 2);
    if (h->elements > 0) {
        f = malloc(h->elements / 2 * sizeof *f);
        if (f == NULL)
            return KL_STORE_FAIL(err, KL_ERR_NOMEM, "redis: out of memory");
    }
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        size_t kl, vl;
        const char *k = kl_rs_el_str(h, i, &kl), *v = kl_rs_el_str(h, i + 1, &vl), *bar = NULL;
        if (k == NULL || v == NULL)
            continue;
        for (size_t j = kl; j > 0; j--) {
            if (k[j - 1] == '|') {
                bar = k + j - 1;
                break;
            }
        }
        if (bar == NULL)
            continue;
        f[n].key = k;
        f[n].key_len = (size_t)(bar - k);
        f[n].name = bar + 1;
        f[n].name_len = kl - f[n].key_len - 1;
        f[n].val = v;
        f[n].val_len = vl;
        n++;
    }
    if (n > 1)
        qsort(f, n, sizeof *f, cmp_field);
    *out = f;
    *n_out = n;
    return KL_OK;
}

/* A stored decimal ("12.500000"); 0 when it is not one. */
static double parse_double(const char *v, size_t n)
{
    char buf[64];
    double d;
    if (n == 0 || n >= sizeof buf)
        return 0;
    memcpy(buf, v, n);
    buf[n] = '\0';
    d = strtod(buf, NULL);
    return d > 0 && d < 1e15 ? d : 0;
}

static bool name_is(const struct field *f, const char *s)
{
    return f->name_len == strlen(s) && memcmp(f->name, s, f->name_len) == 0;
}

static size_t count_groups(const struct field *f, size_t n)
{
    size_t groups = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || cmp_field(&f[i - 1], &f[i]) != 0)
            groups++;
    }
    return groups;
}

static int parse_shards(const redisReply *h, struct kl_store_job *j, struct kl_err *err)
{
    struct field *f = NULL;
    size_t n = 0, groups;
    int rc = group_fields(h, &f, &n, err);
    if (rc != KL_OK)
        return rc;
    groups = count_groups(f, n);
    if (groups > 0) {
        j->shards = calloc(groups, sizeof *j->shards);
        if (j->shards == NULL) {
            rc = KL_STORE_FAIL(err, KL_ERR_NOMEM, "redis: out of memory");
            goto cleanup;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct kl_store_shard_progress *s;
        if (i == 0 || cmp_field(&f[i - 1], &f[i]) != 0) {
            s = &j->shards[j->n_shards++];
            s->position.sub_sequence = -1;
            s->millis_behind_latest = -1;
            s->window = -1;
            if (!kl_rs_copy_n(s->position.shard_id, sizeof s->position.shard_id, f[i].key,
                              f[i].key_len)) {
                rc = kl_rs_bad_reply("shard id", err);
                goto cleanup;
            }
        }
        s = &j->shards[j->n_shards - 1];
        if (name_is(&f[i], "seq"))
            kl_rs_copy_n(s->position.sequence, sizeof s->position.sequence, f[i].val, f[i].val_len);
        else if (name_is(&f[i], "sub"))
            s->position.sub_sequence = kl_store_parse_i64(f[i].val, f[i].val_len, -1);
        else if (name_is(&f[i], "mbl"))
            s->millis_behind_latest = kl_store_parse_i64(f[i].val, f[i].val_len, -1);
        else if (name_is(&f[i], "msgs"))
            s->messages = kl_store_parse_i64(f[i].val, f[i].val_len, 0);
        else if (name_is(&f[i], "done"))
            s->done = f[i].val_len == 1 && f[i].val[0] == '1';
        else if (name_is(&f[i], "gfrom"))
            s->has_gap = kl_rs_copy_n(s->gap.from_sequence, sizeof s->gap.from_sequence, f[i].val,
                                      f[i].val_len);
        else if (name_is(&f[i], "gto"))
            kl_rs_copy_n(s->gap.to_sequence, sizeof s->gap.to_sequence, f[i].val, f[i].val_len);
        else if (name_is(&f[i], "greason"))
            kl_rs_copy_n(s->gap.reason, sizeof s->gap.reason, f[i].val,
                         f[i].val_len < sizeof s->gap.reason ? f[i].val_len
                                                             : sizeof s->gap.reason - 1);
        else if (name_is(&f[i], "wop"))
            kl_rs_copy_n(s->waiting_on, sizeof s->waiting_on, f[i].val,
                         f[i].val_len < sizeof s->waiting_on ? f[i].val_len
                                                             : sizeof s->waiting_on - 1);
        else if (name_is(&f[i], "rfrom"))
            kl_rs_copy_n(s->resumed_from, sizeof s->resumed_from, f[i].val,
                         f[i].val_len < sizeof s->resumed_from ? f[i].val_len
                                                               : sizeof s->resumed_from - 1);
        else if (name_is(&f[i], "rload"))
            kl_rs_copy_n(s->resumed_from_load_id, sizeof s->resumed_from_load_id, f[i].val,
                         f[i].val_len < sizeof s->resumed_from_load_id
                             ? f[i].val_len
                             : sizeof s->resumed_from_load_id - 1);
        else if (name_is(&f[i], "own"))
            kl_rs_copy_n(s->owner, sizeof s->owner, f[i].val,
                         f[i].val_len < sizeof s->owner ? f[i].val_len : sizeof s->owner - 1);
        else if (name_is(&f[i], "arr"))
            s->last_arrival_ms = kl_store_parse_i64(f[i].val, f[i].val_len, 0);
        else if (name_is(&f[i], "rate"))
            s->messages_per_s = parse_double(f[i].val, f[i].val_len);
        else if (name_is(&f[i], "win"))
            s->window = kl_store_parse_i64(f[i].val, f[i].val_len, -1);
        else if (name_is(&f[i], "rat"))
            s->rate_at_ms = kl_store_parse_i64(f[i].val, f[i].val_len, 0);
        else if (name_is(&f[i], "wsince"))
            s->waiting_since_ms = kl_store_parse_i64(f[i].val, f[i].val_len, 0);
        else if (name_is(&f[i], "wuntil"))
            s->waiting_until_ms = kl_store_parse_i64(f[i].val, f[i].val_len, 0);
        else if (name_is(&f[i], "wwhy"))
            kl_rs_copy_n(s->waiting_why, sizeof s->waiting_why, f[i].val,
                         f[i].val_len < sizeof s->waiting_why ? f[i].val_len
                                                              : sizeof s->waiting_why - 1);
    }
cleanup:
    free(f);
    return rc;
}

static int parse_tables(const redisReply *h, struct kl_store_job *j, struct kl_err *err)
{
    if (h == NULL || h->type != REDIS_REPLY_ARRAY || h->elements % 2 != 0)
        return kl_rs_bad_reply("rows", err);
    if (h->elements / 2 > KL_STORE_SHARDS_MAX)
        return KL_STORE_FAIL(err, KL_ERR_LIMIT, "redis: too many tables in a job");
    if (h->elements == 0)
        return KL_OK;
    j->tables = calloc(h->elements / 2, sizeof *j->tables);
    if (j->tables == NULL)
        return KL_STORE_FAIL(err, KL_ERR_NOMEM, "redis: out of memory");
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        size_t n;
        const char *t = kl_rs_el_str(h, i, &n);
        struct kl_store_table_rows *row = &j->tables[j->n_tables];
        if (!kl_rs_copy_n(row->table, sizeof row->table, t, n))
            continue;
        row->rows = kl_rs_el_i64(h, i + 1, 0);
        j->n_tables++;
    }
    return KL_OK;
}

/* Fills a snapshot from {job hash, rows hash, shards hash}. */
int kl_rs_parse_job(const redisReply *trio, struct kl_store_job *out, struct kl_err *err)
{
    struct kl_store_job j;
    const redisReply *h;
    int rc = KL_OK;

    kl_store_job_init(&j);
    if (trio == NULL || trio->type != REDIS_REPLY_ARRAY || trio->elements != 3) {
        rc = kl_rs_bad_reply("job", err);
        goto cleanup;
    }
    h = trio->element[0];
    if (h->type != REDIS_REPLY_ARRAY || h->elements % 2 != 0 || h->elements > 128) {
        rc = kl_rs_bad_reply("job hash", err);
        goto cleanup;
    }
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        size_t kn, vn;
        const char *k = kl_rs_el_str(h, i, &kn), *v = kl_rs_el_str(h, i + 1, &vn);
        char name[16];
        if (k == NULL || v == NULL || !kl_rs_copy_n(name, sizeof name, k, kn))
            continue;
        if (strcmp(name, "id") == 0) {
            kl_rs_copy_n(j.id, sizeof j.id, v, vn);
        } else if (strcmp(name, "stream") == 0) {
            kl_rs_copy_n(j.stream, sizeof j.stream, v, vn);
        } else if (strcmp(name, "pipeline") == 0) {
            kl_rs_copy_n(j.pipeline_name, sizeof j.pipeline_name, v, vn);
        } else if (strcmp(name, "dataset") == 0) {
            kl_rs_copy_n(j.dataset_name, sizeof j.dataset_name, v, vn);
        } else if (strcmp(name, "params") == 0) {
            free(j.parameters);
            j.parameters = malloc(vn + 1);
            if (j.parameters == NULL) {
                rc = KL_STORE_FAIL(err, KL_ERR_NOMEM, "redis: out of memory");
                goto cleanup;
            }
            memcpy(j.parameters, v, vn);
            j.parameters[vn] = '\0';
        } else if (strcmp(name, "status") == 0) {
            char st[16];
            if (!kl_rs_copy_n(st, sizeof st, v, vn) ||
                kl_store_job_status_parse(st, &j.status) != 0) {
                rc = kl_rs_bad_reply("job status", err);
                goto cleanup;
            }
        } else if (strcmp(name, "cancel") == 0) {
            j.cancel_requested = vn == 1 && v[0] == '1';
        } else if (strcmp(name, "created") == 0) {
            j.created_ms = kl_store_parse_i64(v, vn, 0);
        } else if (strcmp(name, "started") == 0) {
            j.started_ms = kl_store_parse_i64(v, vn, -1);
        } else if (strcmp(name, "finished") == 0) {
            j.finished_ms = kl_store_parse_i64(v, vn, -1);
        } else if (strcmp(name, "err_type") == 0) {
            j.has_error = kl_rs_copy_n(j.error_type, sizeof j.error_type, v, vn);
        } else if (strcmp(name, "err_detail") == 0) {
            kl_rs_copy_n(j.error_detail, sizeof j.error_detail, v,
                         vn < sizeof j.error_detail ? vn : sizeof j.error_detail - 1);
        } else if (strcmp(name, "err_shard") == 0) {
            kl_rs_copy_n(j.error_shard, sizeof j.error_shard, v, vn);
        } else if (strcmp(name, "messages") == 0) {
            j.messages = kl_store_parse_i64(v, vn, 0);
        } else if (strcmp(name, "dead_letters") == 0) {
            j.dead_letters = kl_store_parse_i64(v, vn, 0);
        } else if (strcmp(name, "tasks_total") == 0) {
            j.tasks_total = kl_store_parse_i64(v, vn, 0);
        } else if (strcmp(name, "tasks_done") == 0) {
            j.tasks_done = kl_store_parse_i64(v, vn, 0);
        }
    }
    if (!kl_store_job_id_valid(j.id)) {
        rc = kl_rs_bad_reply("job id", err);
        goto cleanup;
    }
    if (j.parameters == NULL && (j.parameters = strdup("{}")) == NULL) {
        rc = KL_STORE_FAIL(err, KL_ERR_NOMEM, "redis: out of memory");
        goto cleanup;
    }
    if ((rc = parse_tables(trio->element[1], &j, err)) != KL_OK ||
        (rc = parse_shards(trio->element[2], &j, err)) != KL_OK)
        goto cleanup;
    kl_store_job_sort(&j);
    kl_store_job_free(out);
    *out = j;
    kl_store_job_init(&j);
cleanup:
    kl_store_job_free(&j);
    return rc;
}
