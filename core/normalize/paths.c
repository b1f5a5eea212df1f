/*
 * The normaliser's caches of names: a node per flatten path (raw key and
 * normalised component), a table context per child-table path, a column
 * slot per name of a table, so a steady stream normalises no identifier
 * twice. Creates tables in the schema as paths first reach them; columns
 * are created by evolve.c when a value arrives.
 */
#include "core/normalize/internal.h"
#include "core/normalize/naming.h"
#include "core/normalize/schema.h"

#include <string.h>

void kl_norm_drop_caches(struct kl_normalizer *n)
{
    kl_norm_kmap_free(&n->raw_map);
    kl_norm_kmap_free(&n->canon_map);
    kl_norm_kmap_free(&n->slot_map);
    kl_norm_kmap_free(&n->tctx_map);
    for (size_t i = 0; i < n->n_nodes; i++)
        free(n->nodes[i].joined);
    n->n_nodes = 0;
    for (size_t i = 0; i < n->n_tctxs; i++)
        free(n->tctxs[i].full);
    n->n_tctxs = 0;
    for (size_t i = 0; i < n->n_nts; i++) {
        free(n->nts[i].slots);
        free(n->nts[i].cells);
        free(n->nts[i].row_start);
    }
    n->n_nts = 0;
    for (size_t i = 0; i < n->cap_nt_of_table; i++)
        n->nt_of_table[i] = NONE;
    n->root_tctx = NONE;
}

static int slot_for(struct kl_normalizer *n, uint32_t nti, const char *name, size_t len,
                    uint32_t *out)
{
    uint32_t v;
    int rc;
    if (kl_norm_kmap_get(&n->slot_map, nti, name, len, &v)) {
        *out = v;
        return KL_OK;
    }
    struct ntable *nt = &n->nts[nti];
    if ((rc =
             kl_norm_grow((void **)&nt->slots, &nt->cap_slots, nt->n_slots + 1, sizeof *nt->slots)))
        return rc;
    struct slot *s = &nt->slots[nt->n_slots];
    memset(s, 0, sizeof *s);
    /* a path that normalises to nothing (a key such as "__") would name a
     * column ""; dlt's load then fails, we use dlt's name for empty keys */
    if (len == 0) {
        name = KL_NAMING_EMPTY_KEY;
        len = strlen(KL_NAMING_EMPTY_KEY);
    }
    size_t clip = kl_naming_clip_bytes(name, len, KL_IDENT_MAX - 1);
    memcpy(s->name, name, clip);
    s->name[clip] = '\0';
    s->row_pos = -1;
    s->base = -1;
    for (int t = 0; t < N_TYPES; t++)
        s->var[t] = s->var2[t] = -1;
    size_t ci;
    if (kl_schema_find_column(&n->schema->tables[nt->table], s->name, &ci))
        s->base = (int32_t)ci;
    v = (uint32_t)nt->n_slots++;
    if ((rc = kl_norm_kmap_put(&n->slot_map, nti, name, len, v)))
        return rc;
    *out = v;
    return KL_OK;
}

static int ntable_for(struct kl_normalizer *n, const char *name, const char *parent, uint32_t *out,
                      struct kl_err *err)
{
    size_t ti;
    int rc;
    if (!kl_schema_find_table(n->schema, name, &ti)) {
        if ((rc = kl_schema_add_table(n->schema, name, parent, n->opt.write_disposition, &ti, err)))
            return rc;
        n->schema_dirty = true;
    }
    if (ti >= n->cap_nt_of_table) {
        size_t old = n->cap_nt_of_table;
        if ((rc = kl_norm_grow((void **)&n->nt_of_table, &n->cap_nt_of_table, ti + 1,
                               sizeof *n->nt_of_table)))
            return kl_err_set(err, rc, "out of memory");
        for (size_t i = old; i < n->cap_nt_of_table; i++)
            n->nt_of_table[i] = NONE;
        if ((rc = kl_norm_grow((void **)&n->chunk_rows, &n->cap_chunk_rows, n->cap_nt_of_table,
                               sizeof *n->chunk_rows)))
            return kl_err_set(err, rc, "out of memory");
        for (size_t i = old; i < n->cap_chunk_rows; i++)
            n->chunk_rows[i] = 0;
    }
    if (n->nt_of_table[ti] != NONE) {
        *out = n->nt_of_table[ti];
        return KL_OK;
    }
    if ((rc = kl_norm_grow((void **)&n->nts, &n->cap_nts, n->n_nts + 1, sizeof *n->nts)))
        return kl_err_set(err, rc, "out of memory");
    uint32_t nti = (uint32_t)n->n_nts++;
    struct ntable *nt = &n->nts[nti];
    memset(nt, 0, sizeof *nt);
    nt->table = ti;
    const struct kl_table *t = &n->schema->tables[ti];
    for (size_t c = 0; c < t->n_columns; c++)
        nt->has_json_column = nt->has_json_column || t->columns[c].type == KL_TYPE_JSON;
    n->nt_of_table[ti] = nti;
    if ((rc = slot_for(n, nti, "_dlt_id", 7, &nt->s_dlt_id)) ||
        (rc = slot_for(n, nti, "_dlt_load_id", 12, &nt->s_load_id)) ||
        (rc = slot_for(n, nti, "_dlt_parent_id", 14, &nt->s_parent_id)) ||
        (rc = slot_for(n, nti, "_dlt_list_idx", 13, &nt->s_list_idx)) ||
        (rc = slot_for(n, nti, "_dlt_root_id", 12, &nt->s_root_id)) ||
        (rc = slot_for(n, nti, "value", 5, &nt->s_value)))
        return kl_err_set(err, rc, "out of memory");
    *out = nti;
    return KL_OK;
}

static int new_node(struct kl_normalizer *n, uint32_t tctx, uint32_t parent, const char *joined,
                    size_t jl, uint32_t *out, struct kl_err *err)
{
    int rc;
    char name[KL_NAME_CAP];
    size_t nl;
    if ((rc = kl_norm_grow((void **)&n->nodes, &n->cap_nodes, n->n_nodes + 1, sizeof *n->nodes)))
        return kl_err_set(err, rc, "out of memory");
    struct node *nd = &n->nodes[n->n_nodes];
    nd->tctx = tctx;
    nd->parent = parent;
    nd->joined = kl_norm_dupn(joined, jl);
    nd->joined_len = jl;
    nd->list_tctx = NONE;
    nd->slot = NONE;
    if (nd->joined == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "out of memory");
    n->n_nodes++;
    if (jl > 0) {
        /* the column name: shorten_fragments(*path, norm_k) */
        const char *parts[1] = {joined};
        size_t lens[1] = {jl};
        if ((rc = kl_naming_shorten_fragments(parts, lens, 1, KL_NAMING_MAX_LENGTH, name, &nl)))
            return kl_err_set(err, rc, "cannot shorten name");
    } else {
        nl = 0;
        name[0] = '\0';
    }
    uint32_t slot;
    if ((rc = slot_for(n, n->tctxs[tctx].nt, name, nl, &slot)))
        return kl_err_set(err, rc, "out of memory");
    n->nodes[n->n_nodes - 1].slot = slot;
    *out = (uint32_t)(n->n_nodes - 1);
    return KL_OK;
}

static int tctx_for(struct kl_normalizer *n, const char *full, size_t len, const char *parent,
                    uint32_t *out, struct kl_err *err)
{
    uint32_t v;
    int rc;
    char name[KL_NAME_CAP];
    size_t nl;
    if (kl_norm_kmap_get(&n->tctx_map, 0, full, len, &v)) {
        *out = v;
        return KL_OK;
    }
    const char *parts[1] = {full};
    size_t lens[1] = {len};
    if ((rc = kl_naming_shorten_fragments(parts, lens, 1, KL_NAMING_MAX_LENGTH, name, &nl)))
        return kl_err_set(err, rc, "cannot shorten table name");
    nl = kl_naming_clip_bytes(name, nl, KL_IDENT_MAX - 1);
    name[nl] = '\0';
    if ((rc = kl_norm_grow((void **)&n->tctxs, &n->cap_tctxs, n->n_tctxs + 1, sizeof *n->tctxs)))
        return kl_err_set(err, rc, "out of memory");
    struct tctx *t = &n->tctxs[n->n_tctxs];
    memset(t, 0, sizeof *t);
    t->full = kl_norm_dupn(full, len);
    t->full_len = len;
    memcpy(t->name, name, nl + 1);
    if (t->full == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "out of memory");
    v = (uint32_t)n->n_tctxs++;
    uint32_t nti = 0;
    if ((rc = ntable_for(n, name, parent, &nti, err)))
        return rc;
    n->tctxs[v].nt = nti;
    uint32_t root = NONE;
    if ((rc = new_node(n, v, NONE, "", 0, &root, err)))
        return rc;
    n->tctxs[v].root = root;
    if ((rc = kl_norm_kmap_put(&n->tctx_map, 0, full, len, v)))
        return kl_err_set(err, rc, "out of memory");
    *out = v;
    return KL_OK;
}

/* The node for normalised component `norm` under `parent`. */
int kl_norm_canon_child(struct kl_normalizer *n, uint32_t parent, const char *norm, size_t nl,
                        uint32_t *out, struct kl_err *err)
{
    uint32_t v;
    int rc;
    if (kl_norm_kmap_get(&n->canon_map, parent, norm, nl, &v)) {
        *out = v;
        return KL_OK;
    }
    const struct node *p = &n->nodes[parent];
    size_t jl = p->joined_len + (p->joined_len && nl ? 2 : 0) + nl;
    char *j = malloc(jl + 1);
    if (j == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "out of memory");
    size_t o = 0;
    memcpy(j, p->joined, p->joined_len);
    o = p->joined_len;
    if (p->joined_len && nl) {
        memcpy(j + o, "__", 2);
        o += 2;
    }
    memcpy(j + o, norm, nl);
    j[jl] = '\0'; /* new_node takes the length; terminated all the same */
    rc = new_node(n, p->tctx, parent, j, jl, &v, err);
    free(j);
    if (rc)
        return rc;
    if ((rc = kl_norm_kmap_put(&n->canon_map, parent, norm, nl, v)))
        return kl_err_set(err, rc, "out of memory");
    *out = v;
    return KL_OK;
}

/* The node for raw key `k` under `parent`: relational._flatten's
 * normalize_identifier(k) ("a__b" is "a_b", "__" is "xx"), or "_empty" for
 * an empty or blank key. Paths are joined with "__" only after that. */
int kl_norm_child_for_key(struct kl_normalizer *n, uint32_t parent, const char *k, size_t kl,
                          uint32_t *out, struct kl_err *err)
{
    uint32_t v;
    int rc;
    if (kl_norm_kmap_get(&n->raw_map, parent, k, kl, &v)) {
        *out = v;
        return KL_OK;
    }
    char norm[KL_NAME_CAP];
    size_t nl;
    if (kl_naming_is_blank(k, kl)) {
        strcpy(norm, KL_NAMING_EMPTY_KEY);
        nl = strlen(norm);
    } else if ((rc = kl_naming_normalize_identifier(k, kl, KL_NAMING_MAX_LENGTH, norm, &nl))) {
        return kl_err_set(err, rc, "cannot normalise a key");
    }
    if ((rc = kl_norm_canon_child(n, parent, norm, nl, &v, err)))
        return rc;
    if ((rc = kl_norm_kmap_put(&n->raw_map, parent, k, kl, v)))
        return kl_err_set(err, rc, "out of memory");
    *out = v;
    return KL_OK;
}

int kl_norm_list_tctx(struct kl_normalizer *n, uint32_t node, uint32_t *out, struct kl_err *err)
{
    struct node *nd = &n->nodes[node];
    if (nd->list_tctx != NONE) {
        *out = nd->list_tctx;
        return KL_OK;
    }
    const struct tctx *t = &n->tctxs[nd->tctx];
    size_t len = t->full_len + (t->full_len && nd->joined_len ? 2 : 0) + nd->joined_len;
    char *full = malloc(len + 1);
    char parent[KL_IDENT_MAX];
    int rc;
    if (full == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "out of memory");
    size_t o = t->full_len;
    memcpy(full, t->full, o);
    if (t->full_len && nd->joined_len) {
        memcpy(full + o, "__", 2);
        o += 2;
    }
    memcpy(full + o, nd->joined, nd->joined_len);
    full[len] = '\0'; /* tctx_for takes the length; terminated all the same */
    memcpy(parent, t->name, sizeof parent);
    uint32_t v = NONE;
    rc = tctx_for(n, full, len, parent, &v, err);
    free(full);
    if (rc)
        return rc;
    n->nodes[node].list_tctx = v;
    *out = v;
    return KL_OK;
}

int kl_norm_root_context(struct kl_normalizer *n, struct kl_err *err)
{
    char name[KL_NAME_CAP];
    size_t nl;
    int rc;
    if (n->root_tctx != NONE)
        return KL_OK;
    const char *root = n->table_name ? n->table_name : n->stream_name;
    /* the extractor's and normalize_data_item's normalize_table_identifier */
    if ((rc = kl_naming_normalize_identifier(root, strlen(root), KL_NAMING_MAX_LENGTH, name, &nl)))
        return kl_err_set(err, rc, "cannot normalise table name %.80s", root);
    if (nl == 0)
        return kl_err_set(err, KL_ERR_INVALID, "table name %.80s normalises to nothing", root);
    return tctx_for(n, name, nl, "", &n->root_tctx, err);
}
