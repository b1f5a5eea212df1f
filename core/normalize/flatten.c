/*
 * A message into rows, as dlt's relational.py flattens it: nested objects
 * into columns of their row with dict semantics on normalised names, lists
 * into rows of child tables with deterministic `_dlt_id`s, in dlt's column
 * order. Each finished row goes to evolve.c value by value.
 */
#include "core/normalize/coerce.h"
#include "core/normalize/internal.h"
#include "core/normalize/naming.h"
#include "core/util/intfmt.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int row_set(struct kl_normalizer *n, struct ntable *nt, uint32_t slot,
                   const struct kl_json *v, struct kl_err *err)
{
    struct slot *s = &nt->slots[slot];
    if (s->row_pos >= 0) {
        n->row[s->row_pos].v = v; /* a dict keeps the first position */
        return KL_OK;
    }
    int rc = kl_norm_grow((void **)&n->row, &n->cap_row, n->n_row + 1, sizeof *n->row);
    if (rc)
        return kl_err_set(err, rc, "out of memory");
    s->row_pos = (int32_t)n->n_row;
    n->row[n->n_row].slot = slot;
    n->row[n->n_row].v = v;
    n->n_row++;
    return KL_OK;
}

static const struct kl_json *synth_string(struct kl_normalizer *n, const char *s, size_t len)
{
    struct kl_json *v = kl_arena_alloc(&n->msg, sizeof *v);
    char *p = kl_arena_strndup(&n->msg, s, len);
    if (v == NULL || p == NULL)
        return NULL;
    memset(v, 0, sizeof *v);
    v->type = KL_JSON_STRING;
    v->u.s = p;
    v->len = (uint32_t)len;
    return v;
}

static const struct kl_json *synth_int(struct kl_normalizer *n, int64_t i)
{
    struct kl_json *v = kl_arena_alloc(&n->msg, sizeof *v);
    if (v == NULL)
        return NULL;
    memset(v, 0, sizeof *v);
    v->type = KL_JSON_NUMBER;
    v->num = KL_JSON_INT;
    v->i = i;
    v->u.s = "";
    return v;
}

/* dlt's _flatten: nested objects into the row, lists set aside. */
static int flatten(struct kl_normalizer *n, uint32_t tci, uint32_t parent_node,
                   const struct kl_json_member *members, uint32_t count, int r_lvl,
                   struct kl_err *err)
{
    for (uint32_t i = 0; i < count; i++) {
        const struct kl_json_member *m = &members[i];
        const struct kl_json *v = &m->value;
        uint32_t node;
        int rc;
        if ((rc = kl_norm_child_for_key(n, parent_node, m->key, m->key_len, &node, err)))
            return rc;
        struct ntable *nt = &n->nts[n->tctxs[tci].nt];
        if (v->type == KL_JSON_OBJECT || v->type == KL_JSON_ARRAY) {
            bool as_json = r_lvl <= 0;
            if (!as_json && nt->has_json_column) {
                const struct slot *s = &nt->slots[n->nodes[node].slot];
                as_json = s->base >= 0 &&
                          n->schema->tables[nt->table].columns[s->base].type == KL_TYPE_JSON;
            }
            if (!as_json) {
                if (v->type == KL_JSON_OBJECT) {
                    if ((rc = flatten(n, tci, node, v->u.members, v->len, r_lvl - 1, err)))
                        return rc;
                    continue;
                }
                /* a list: keyed by its normalised path, a later one replaces */
                uint32_t lnode = node;
                if (kl_naming_is_blank(m->key, m->key_len) &&
                    (rc = kl_norm_canon_child(n, parent_node, "", 0, &lnode, err)))
                    return rc;
                if ((rc = kl_norm_grow((void **)&n->lists, &n->cap_lists, n->n_lists + 1,
                                       sizeof *n->lists)))
                    return kl_err_set(err, rc, "out of memory");
                n->lists[n->n_lists].node = lnode;
                n->lists[n->n_lists].v = v;
                n->n_lists++;
                continue;
            }
        }
        if ((rc = row_set(n, nt, n->nodes[node].slot, v, err)))
            return rc;
    }
    return KL_OK;
}

/* Python's truthiness and str() of a `_dlt_id` found in the data. */
static bool given_row_id(const struct kl_json *v, char *out, size_t cap)
{
    switch (v->type) {
    case KL_JSON_STRING:
        if (v->len == 0)
            return false;
        snprintf(out, cap, "%.*s", (int)v->len, v->u.s);
        return true;
    case KL_JSON_TRUE:
        snprintf(out, cap, "True");
        return true;
    case KL_JSON_NUMBER:
        if (v->num == KL_JSON_INT) {
            if (v->i == 0)
                return false;
            snprintf(out, cap, "%" PRId64, v->i);
            return true;
        }
        if (v->num == KL_JSON_FLOAT) {
            double d = kl_json_number_double(v, NULL);
            if (d == 0.0)
                return false;
            kl_double_repr(d, out);
            return true;
        }
        snprintf(out, cap, "%.*s", (int)v->len, v->u.s);
        return true;
    default:
        return false;
    }
}

/* The list order rule needs the first position with the last value: fix
 * the pending lists of a row in place before they are processed. */
static void settle_lists(struct kl_normalizer *n, size_t from)
{
    for (size_t i = from; i < n->n_lists; i++) {
        for (size_t j = i + 1; j < n->n_lists; j++) {
            if (n->lists[j].node == n->lists[i].node) {
                n->lists[i].v = n->lists[j].v;
                n->lists[j].node = NONE; /* dropped */
            }
        }
    }
}

/* Emits the row being built and processes the lists it set aside. */
static int finish_row(struct kl_normalizer *n, uint32_t tci, size_t lists_from,
                      const char *parent_id, int64_t pos, int r_lvl, bool is_root, bool scalar,
                      struct kl_err *err)
{
    uint32_t nti = n->tctxs[tci].nt;
    struct ntable *nt = &n->nts[nti];
    char row_id[320];
    const struct kl_json *v;
    int rc;

    /* relational.py's column order: a row of a list of objects gets the
     * propagated root key (merge) after its data, then _dlt_parent_id,
     * _dlt_list_idx and _dlt_id; a row of a list of scalars is
     * {value, _dlt_id, _dlt_parent_id, _dlt_list_idx} and then the root key */
    const struct kl_json *root_key = NULL;
    if (!is_root && n->opt.write_disposition == KL_WRITE_MERGE) {
        if ((root_key = synth_string(n, n->root_id, strlen(n->root_id))) == NULL)
            return kl_norm_oom(n, err);
        if (!scalar && (rc = row_set(n, nt, nt->s_root_id, root_key, err)))
            return rc;
    }
    if (is_root) {
        if ((v = synth_string(n, n->load_id, strlen(n->load_id))) == NULL)
            return kl_norm_oom(n, err);
        if ((rc = row_set(n, nt, nt->s_load_id, v, err)))
            return rc;
    }
    /* a truthy `_dlt_id` in the data is kept as the row id */
    const struct slot *ids = &nt->slots[nt->s_dlt_id];
    if (!(ids->row_pos >= 0 && given_row_id(n->row[ids->row_pos].v, row_id, sizeof row_id))) {
        char id[KL_DLT_ID_LEN + 8];
        const struct kl_json *vid;
        if (is_root) {
            memcpy(id, n->root_id, sizeof n->root_id);
        } else {
            /* dlt: digest128(f"{parent_row_id}_{table}_{list_idx}", 10) */
            char in[512];
            const char *table = n->tctxs[tci].name;
            size_t plen = strlen(parent_id), tlen = strlen(table), k = 0;
            if (plen + tlen + 2 + KL_INTFMT_MAX > sizeof in)
                return kl_err_set(err, KL_ERR_INTERNAL, "row id input too long");
            memcpy(in, parent_id, plen + 1); /* NULs included: each is written over */
            k = plen;
            in[k++] = '_';
            memcpy(in + k, table, tlen + 1);
            k += tlen;
            in[k++] = '_';
            k += kl_fmt_u64(in + k, (uint64_t)pos);
            kl_digest_b64(in, k, KL_DLT_ID_BYTES, id);
        }
        if ((vid = synth_string(n, id, strlen(id))) == NULL)
            return kl_norm_oom(n, err);
        if ((is_root || scalar) && (rc = row_set(n, nt, nt->s_dlt_id, vid, err)))
            return rc;
        if (!is_root) {
            if ((v = synth_string(n, parent_id, strlen(parent_id))) == NULL ||
                (rc = row_set(n, nt, nt->s_parent_id, v, err)))
                return v == NULL ? kl_norm_oom(n, err) : rc;
            if ((v = synth_int(n, pos)) == NULL || (rc = row_set(n, nt, nt->s_list_idx, v, err)))
                return v == NULL ? kl_norm_oom(n, err) : rc;
        }
        if (!is_root && !scalar && (rc = row_set(n, nt, nt->s_dlt_id, vid, err)))
            return rc;
        strcpy(row_id, id);
    }
    if (scalar && root_key != NULL && (rc = row_set(n, nt, nt->s_root_id, root_key, err)))
        return rc;
    if (is_root)
        snprintf(n->root_id, sizeof n->root_id, "%.*s", KL_DLT_ID_LEN, row_id);

    /* coerce the row into the table */
    if ((rc = kl_norm_grow((void **)&nt->row_start, &nt->cap_rows, nt->n_rows + 1,
                           sizeof *nt->row_start)))
        return kl_err_set(err, rc, "out of memory");
    nt->row_start[nt->n_rows++] = (uint32_t)nt->n_cells;
    n->chunk_rows[nt->table]++;
    size_t n_row = n->n_row;
    for (size_t i = 0; i < n_row; i++) {
        if ((rc = kl_norm_emit_value(n, &n->nts[nti], n->row[i].slot, n->row[i].v, err)))
            return rc;
    }
    nt = &n->nts[nti];
    for (size_t i = 0; i < n_row; i++)
        nt->slots[n->row[i].slot].row_pos = -1;
    n->n_row = 0;

    /* the lists, in order; a later list at the same path replaced an earlier one */
    size_t lists_to = n->n_lists;
    char *pid = kl_arena_strndup(&n->msg, row_id, strlen(row_id));
    if (pid == NULL)
        return kl_norm_oom(n, err);
    settle_lists(n, lists_from);
    for (size_t li = lists_from; li < lists_to; li++) {
        struct pend_list pl = n->lists[li];
        if (pl.node == NONE)
            continue;
        uint32_t child = 0;
        if ((rc = kl_norm_list_tctx(n, pl.node, &child, err)))
            return rc;
        for (uint32_t idx = 0; idx < pl.v->len; idx++) {
            const struct kl_json *item = &pl.v->u.items[idx];
            if (item->type == KL_JSON_OBJECT) {
                rc = kl_norm_normalize_row(n, child, item->u.members, item->len, NULL, pid, idx,
                                           r_lvl - 1, false, err);
            } else if (item->type == KL_JSON_ARRAY) {
                /* a list of lists: a mock row {"list": item} one level deeper */
                struct kl_json_member *mock = kl_arena_alloc(&n->msg, sizeof *mock);
                if (mock == NULL)
                    return kl_norm_oom(n, err);
                memset(mock, 0, sizeof *mock);
                mock->key = "list";
                mock->key_len = 4;
                mock->value = *item;
                rc =
                    kl_norm_normalize_row(n, child, mock, 1, NULL, pid, idx, r_lvl - 2, false, err);
            } else {
                rc =
                    kl_norm_normalize_row(n, child, NULL, 0, item, pid, idx, r_lvl - 1, false, err);
            }
            if (rc)
                return rc;
        }
    }
    n->n_lists = lists_from;
    return KL_OK;
}

int kl_norm_normalize_row(struct kl_normalizer *n, uint32_t tci,
                          const struct kl_json_member *members, uint32_t count,
                          const struct kl_json *scalar, const char *parent_id, int64_t pos,
                          int r_lvl, bool is_root, struct kl_err *err)
{
    size_t lists_from = n->n_lists;
    int rc;
    if (scalar != NULL) {
        struct ntable *nt = &n->nts[n->tctxs[tci].nt];
        if ((rc = row_set(n, nt, nt->s_value, scalar, err)))
            return rc;
    } else if ((rc = flatten(n, tci, n->tctxs[tci].root, members, count, r_lvl, err))) {
        return rc;
    }
    return finish_row(n, tci, lists_from, parent_id, pos, r_lvl, is_root, scalar != NULL, err);
}
