/*
 * The open chunk and what it becomes: each table's rows as sparse cells
 * while messages are added, the dead letters, both in the chunk's arena up
 * to max_chunk_bytes; closing makes them the dense kl_row_batch, resetting
 * counts the committed rows per table. What goes into a row is flatten.c's.
 */
#include "core/kinesis/message.h"
#include "core/normalize/internal.h"
#include "core/normalize/schema.h"

#include <string.h>

#define MAX_CACHED_NODES 200000
#define KEEP_PER_MESSAGE ((size_t)1 << 20) /* of a message's arenas, kept between chunks */

int kl_norm_push_cell(struct ntable *nt, int32_t col, const struct kl_value *v, struct kl_err *err)
{
    int rc = kl_norm_grow((void **)&nt->cells, &nt->cap_cells, nt->n_cells + 1, sizeof *nt->cells);
    if (rc)
        return kl_err_set(err, rc, "out of memory");
    nt->cells[nt->n_cells].col = (uint32_t)col;
    nt->cells[nt->n_cells].v = *v;
    nt->n_cells++;
    return KL_OK;
}

int kl_norm_oom(struct kl_normalizer *n, struct kl_err *err)
{
    if (n->opt.max_chunk_bytes && n->batch.total >= n->opt.max_chunk_bytes)
        return kl_err_set(err, KL_ERR_LIMIT, "chunk storage passed %zu bytes",
                          n->opt.max_chunk_bytes);
    return kl_err_set(err, KL_ERR_NOMEM, "out of memory");
}

int kl_norm_dead_letter(struct kl_normalizer *n, const struct kl_message *m, const char *why,
                        struct kl_err *err)
{
    int rc = kl_norm_grow((void **)&n->dead, &n->cap_dead, n->n_dead + 1, sizeof *n->dead);
    if (rc)
        return kl_err_set(err, rc, "out of memory");
    struct kl_dead_letter *d = &n->dead[n->n_dead];
    d->shard_id = kl_arena_strndup(&n->batch, m->shard_id, strlen(m->shard_id));
    d->sequence = kl_arena_strndup(&n->batch, m->sequence, strlen(m->sequence));
    d->error = kl_arena_strndup(&n->batch, why, strlen(why));
    unsigned char *data = kl_arena_alloc(&n->batch, m->data_len ? m->data_len : 1);
    if (d->shard_id == NULL || d->sequence == NULL || d->error == NULL || data == NULL)
        return kl_norm_oom(n, err);
    if (m->data_len)
        memcpy(data, m->data, m->data_len);
    d->data = data;
    d->data_len = m->data_len;
    d->sub_sequence = m->sub_sequence;
    d->arrival_ms = m->arrival_ms;
    n->n_dead++;
    return KL_OK;
}

int kl_normalizer_close(struct kl_normalizer *n, struct kl_row_batch *out, struct kl_err *err)
{
    size_t n_out = 0;
    int rc;
    if (n->schema_dirty) {
        bool changed;
        if ((rc = kl_schema_bump_version(n->schema, &changed, err)))
            return rc;
        n->schema_dirty = false;
    }
    struct kl_table_rows *tr = NULL;
    if (n->n_nts) {
        tr = kl_arena_alloc(&n->batch, n->n_nts * sizeof *tr);
        if (tr == NULL)
            return kl_norm_oom(n, err);
    }
    for (size_t i = 0; i < n->n_nts; i++) {
        struct ntable *nt = &n->nts[i];
        if (nt->n_rows == 0)
            continue;
        size_t nc = n->schema->tables[nt->table].n_columns;
        struct kl_value *cells = kl_arena_alloc(&n->batch, nt->n_rows * nc * sizeof *cells);
        if (cells == NULL)
            return kl_norm_oom(n, err);
        memset(cells, 0, nt->n_rows * nc * sizeof *cells);
        for (size_t r = 0; r < nt->n_rows; r++) {
            size_t end = r + 1 < nt->n_rows ? nt->row_start[r + 1] : nt->n_cells;
            for (size_t c = nt->row_start[r]; c < end; c++)
                cells[r * nc + nt->cells[c].col] = nt->cells[c].v;
        }
        tr[n_out].table = nt->table;
        tr[n_out].n_columns = nc;
        tr[n_out].n_rows = nt->n_rows;
        tr[n_out].cells = cells;
        n_out++;
    }
    out->schema = n->schema;
    out->tables = tr;
    out->n_tables = n_out;
    out->dead_letters = n->dead;
    out->n_dead_letters = n->n_dead;
    out->n_messages = n->n_messages;
    return KL_OK;
}

void kl_normalizer_reset(struct kl_normalizer *n, bool committed)
{
    if (committed) {
        for (size_t t = 0; t < n->schema->n_tables && t < n->cap_chunk_rows; t++) {
            if (n->chunk_rows[t] == 0)
                continue;
            size_t k;
            for (k = 0; k < n->n_counts; k++) {
                if (strcmp(n->count_names[k], n->schema->tables[t].name) == 0)
                    break;
            }
            if (k == n->n_counts) {
                const char **nn = realloc(n->count_names, (k + 1) * sizeof *nn);
                uint64_t *nr = nn ? realloc(n->count_rows, (k + 1) * sizeof *nr) : NULL;
                if (nn)
                    n->count_names = nn;
                if (nr == NULL)
                    continue;
                n->count_rows = nr;
                n->count_names[k] = n->schema->tables[t].name;
                n->count_rows[k] = 0;
                n->n_counts++;
            }
            n->count_rows[k] += n->chunk_rows[t];
        }
    }
    for (size_t t = 0; t < n->cap_chunk_rows; t++)
        n->chunk_rows[t] = 0;
    for (size_t i = 0; i < n->n_nts; i++) {
        n->nts[i].n_cells = 0;
        n->nts[i].n_rows = 0;
    }
    n->n_dead = 0;
    n->n_messages = 0;
    n->n_row = 0;
    n->n_lists = 0;
    kl_arena_reset(&n->batch);
    if (n->opt.chunk_bytes_target > 0) {
        /* what one large message took goes back, not kept for the next */
        kl_arena_trim(&n->batch, n->opt.chunk_bytes_target);
        kl_arena_reset(&n->msg);
        kl_arena_trim(&n->msg, KEEP_PER_MESSAGE);
        kl_arena_reset(&n->doc.arena);
        kl_arena_trim(&n->doc.arena, KEEP_PER_MESSAGE);
    }
    if (n->n_nodes > MAX_CACHED_NODES) {
        /* keys that never repeat must not grow the caches without bound */
        kl_norm_drop_caches(n);
    }
}

size_t kl_normalizer_row_counts(const struct kl_normalizer *n, const char *const **names,
                                const uint64_t **rows)
{
    *names = n->count_names;
    *rows = n->count_rows;
    return n->n_counts;
}
