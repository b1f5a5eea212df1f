/*
 * The relational normaliser. A message is flattened the way dlt's
 * relational.py does it (dict semantics on normalised names, lists to child
 * tables with deterministic ids) and each row is coerced the way dlt's
 * jsonl items normaliser does it (existing column type, coercion, variant
 * columns, autodetection only for new columns). Names are cached per
 * (path, raw key) so a steady stream normalises no identifier twice.
 */
#include "core/normalize/normalizer.h"
#include "core/kinesis/message.h"
#include "core/normalize/coerce.h"
#include "core/util/digest.h"
#include "core/normalize/json.h"
#include "core/normalize/naming.h"
#include "core/normalize/schema.h"
#include "core/util/arena.h"
#include "core/util/base64.h"
#include "core/util/buf.h"
#include "core/util/err.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NONE UINT32_MAX
#define N_TYPES 9         /* enum kl_data_type */
#define PY_NUL_STRING 100 /* a string holding U+0000: kept as binary */
#define MAX_CACHED_NODES 200000

/* A key -> value hash map over (scope, bytes). Keys are copied. */
struct kmap_ent {
    uint64_t hash;
    char *key;
    uint32_t klen;
    uint32_t scope;
    uint32_t val;
};
struct kmap {
    struct kmap_ent *e;
    size_t cap, n;
};

static uint64_t hash_bytes(uint32_t scope, const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ ((uint64_t)scope * 0x9E3779B97F4A7C15ull);
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h | 1; /* 0 marks an empty slot */
}

static bool kmap_get(const struct kmap *m, uint32_t scope, const char *k, size_t n, uint32_t *val)
{
    if (m->cap == 0)
        return false;
    uint64_t h = hash_bytes(scope, k, n);
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        const struct kmap_ent *e = &m->e[i];
        if (e->hash == 0)
            return false;
        if (e->hash == h && e->scope == scope && e->klen == n && memcmp(e->key, k, n) == 0) {
            *val = e->val;
            return true;
        }
    }
}

static int kmap_put(struct kmap *m, uint32_t scope, const char *k, size_t n, uint32_t val)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        struct kmap_ent *ne = calloc(cap, sizeof *ne);
        if (ne == NULL)
            return KL_ERR_NOMEM;
        for (size_t i = 0; i < m->cap; i++) {
            if (m->e[i].hash == 0)
                continue;
            size_t j = m->e[i].hash & (cap - 1);
            while (ne[j].hash != 0)
                j = (j + 1) & (cap - 1);
            ne[j] = m->e[i];
        }
        free(m->e);
        m->e = ne;
        m->cap = cap;
    }
    uint64_t h = hash_bytes(scope, k, n);
    size_t i = h & (m->cap - 1);
    while (m->e[i].hash != 0)
        i = (i + 1) & (m->cap - 1);
    char *copy = malloc(n + 1);
    if (copy == NULL)
        return KL_ERR_NOMEM;
    memcpy(copy, k, n);
    copy[n] = '\0';
    m->e[i] = (struct kmap_ent){h, copy, (uint32_t)n, scope, val};
    m->n++;
    return KL_OK;
}

static void kmap_free(struct kmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->e[i].key);
    free(m->e);
    memset(m, 0, sizeof *m);
}

/* A column name of a table before typing: the flattened path. */
struct slot {
    char name[KL_IDENT_MAX]; /* clipped to 63 bytes */
    int32_t base;            /* schema column, -1 until created */
    int32_t var[N_TYPES];    /* variant column per value type, -1 */
    int32_t var2[N_TYPES];   /* second-level variant (lossless fallback), -1 */
    int32_t row_pos;         /* position in the row being built, -1 */
};

struct cell_ent {
    uint32_t col;
    struct kl_value v;
};

/* Per schema table: its slots and the chunk's rows (sparse until close). */
struct ntable {
    size_t table;
    struct slot *slots;
    size_t n_slots, cap_slots;
    struct cell_ent *cells;
    size_t n_cells, cap_cells;
    uint32_t *row_start;
    size_t n_rows, cap_rows;
    bool has_json_column;
    uint32_t s_dlt_id, s_load_id, s_parent_id, s_list_idx, s_root_id, s_value;
};

/* A naming context for tables: the full path of normalised components. */
struct tctx {
    char *full;
    size_t full_len;
    char name[KL_IDENT_MAX];
    uint32_t nt;   /* ntable */
    uint32_t root; /* root node */
};

/* A normalised flatten path inside one tctx. */
struct node {
    uint32_t tctx;
    uint32_t parent;
    char *joined; /* components from the tctx root joined with "__", blanks skipped */
    size_t joined_len;
    uint32_t slot;      /* slot of this path as a column */
    uint32_t list_tctx; /* tctx of a list at this path, NONE until needed */
};

struct rowent {
    uint32_t slot;
    const struct kl_json *v;
};

struct pend_list {
    uint32_t node;
    const struct kl_json *v;
};

struct kl_normalizer {
    struct kl_normalizer_options opt;
    char *stream_name, *table_name, *load_id;
    struct kl_schema *schema;
    bool schema_dirty;

    struct kmap raw_map;   /* (parent node, raw key) -> node */
    struct kmap canon_map; /* (parent node, normalised key) -> node */
    struct kmap slot_map;  /* (ntable, column name) -> slot */
    struct kmap tctx_map;  /* (0, full path) -> tctx */
    struct node *nodes;
    size_t n_nodes, cap_nodes;
    struct tctx *tctxs;
    size_t n_tctxs, cap_tctxs;
    struct ntable *nts;
    size_t n_nts, cap_nts;
    uint32_t *nt_of_table; /* schema table -> ntable, NONE */
    size_t cap_nt_of_table;
    uint32_t root_tctx;

    struct rowent *row;
    size_t n_row, cap_row;
    struct pend_list *lists;
    size_t n_lists, cap_lists;

    struct kl_json_doc doc;
    struct kl_arena msg;   /* per message: synthetic values and ids */
    struct kl_arena batch; /* per chunk: cell strings, dense cells, dead letters */
    struct kl_buf scratch;
    struct kl_json_doc scratch_doc;

    struct kl_dead_letter *dead;
    size_t n_dead, cap_dead;
    size_t n_messages;
    struct kl_table_rows *out_tables;

    const char **count_names;
    uint64_t *count_rows;
    size_t n_counts;
    uint64_t *chunk_rows; /* per schema table, rows in the open chunk */
    size_t cap_chunk_rows;
    char root_id[KL_DLT_ID_LEN + 1];
};

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return KL_OK;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *np = realloc(*p, n * elem);
    if (np == NULL)
        return KL_ERR_NOMEM;
    *p = np;
    *cap = n;
    return KL_OK;
}

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* ---------------------------------------------------------------- caches */

static void drop_caches(struct kl_normalizer *n)
{
    kmap_free(&n->raw_map);
    kmap_free(&n->canon_map);
    kmap_free(&n->slot_map);
    kmap_free(&n->tctx_map);
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

static bool is_not_null_name(const char *name)
{
    return strcmp(name, "_dlt_id") == 0 || strcmp(name, "_dlt_root_id") == 0 ||
           strcmp(name, "_dlt_parent_id") == 0 || strcmp(name, "_dlt_list_idx") == 0 ||
           strcmp(name, "_dlt_load_id") == 0;
}

static int slot_for(struct kl_normalizer *n, uint32_t nti, const char *name, size_t len,
                    uint32_t *out)
{
    uint32_t v;
    int rc;
    if (kmap_get(&n->slot_map, nti, name, len, &v)) {
        *out = v;
        return KL_OK;
    }
    struct ntable *nt = &n->nts[nti];
    if ((rc = grow((void **)&nt->slots, &nt->cap_slots, nt->n_slots + 1, sizeof *nt->slots)))
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
    if ((rc = kmap_put(&n->slot_map, nti, name, len, v)))
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
        if ((rc = grow((void **)&n->nt_of_table, &n->cap_nt_of_table, ti + 1,
                       sizeof *n->nt_of_table)))
            return kl_err_set(err, rc, "out of memory");
        for (size_t i = old; i < n->cap_nt_of_table; i++)
            n->nt_of_table[i] = NONE;
        if ((rc = grow((void **)&n->chunk_rows, &n->cap_chunk_rows, n->cap_nt_of_table,
                       sizeof *n->chunk_rows)))
            return kl_err_set(err, rc, "out of memory");
        for (size_t i = old; i < n->cap_chunk_rows; i++)
            n->chunk_rows[i] = 0;
    }
    if (n->nt_of_table[ti] != NONE) {
        *out = n->nt_of_table[ti];
        return KL_OK;
    }
    if ((rc = grow((void **)&n->nts, &n->cap_nts, n->n_nts + 1, sizeof *n->nts)))
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
    if ((rc = grow((void **)&n->nodes, &n->cap_nodes, n->n_nodes + 1, sizeof *n->nodes)))
        return kl_err_set(err, rc, "out of memory");
    struct node *nd = &n->nodes[n->n_nodes];
    nd->tctx = tctx;
    nd->parent = parent;
    nd->joined = dupn(joined, jl);
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
    if (kmap_get(&n->tctx_map, 0, full, len, &v)) {
        *out = v;
        return KL_OK;
    }
    const char *parts[1] = {full};
    size_t lens[1] = {len};
    if ((rc = kl_naming_shorten_fragments(parts, lens, 1, KL_NAMING_MAX_LENGTH, name, &nl)))
        return kl_err_set(err, rc, "cannot shorten table name");
    nl = kl_naming_clip_bytes(name, nl, KL_IDENT_MAX - 1);
    name[nl] = '\0';
    if ((rc = grow((void **)&n->tctxs, &n->cap_tctxs, n->n_tctxs + 1, sizeof *n->tctxs)))
        return kl_err_set(err, rc, "out of memory");
    struct tctx *t = &n->tctxs[n->n_tctxs];
    memset(t, 0, sizeof *t);
    t->full = dupn(full, len);
    t->full_len = len;
    memcpy(t->name, name, nl + 1);
    if (t->full == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "out of memory");
    v = (uint32_t)n->n_tctxs++;
    uint32_t nti = 0;
    if ((rc = ntable_for(n, name, parent, &nti, err)))
        return rc;
    n->tctxs[v].nt = nti;
    uint32_t root;
    if ((rc = new_node(n, v, NONE, "", 0, &root, err)))
        return rc;
    n->tctxs[v].root = root;
    if ((rc = kmap_put(&n->tctx_map, 0, full, len, v)))
        return kl_err_set(err, rc, "out of memory");
    *out = v;
    return KL_OK;
}

/* The node for normalised component `norm` under `parent`. */
static int canon_child(struct kl_normalizer *n, uint32_t parent, const char *norm, size_t nl,
                       uint32_t *out, struct kl_err *err)
{
    uint32_t v;
    int rc;
    if (kmap_get(&n->canon_map, parent, norm, nl, &v)) {
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
    rc = new_node(n, p->tctx, parent, j, jl, &v, err);
    free(j);
    if (rc)
        return rc;
    if ((rc = kmap_put(&n->canon_map, parent, norm, nl, v)))
        return kl_err_set(err, rc, "out of memory");
    *out = v;
    return KL_OK;
}

/* The node for raw key `k` under `parent`: relational._flatten's
 * normalize_identifier(k) ("a__b" is "a_b", "__" is "xx"), or "_empty" for
 * an empty or blank key. Paths are joined with "__" only after that. */
static int child_for_key(struct kl_normalizer *n, uint32_t parent, const char *k, size_t kl,
                         uint32_t *out, struct kl_err *err)
{
    uint32_t v;
    int rc;
    if (kmap_get(&n->raw_map, parent, k, kl, &v)) {
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
    if ((rc = canon_child(n, parent, norm, nl, &v, err)))
        return rc;
    if ((rc = kmap_put(&n->raw_map, parent, k, kl, v)))
        return kl_err_set(err, rc, "out of memory");
    *out = v;
    return KL_OK;
}

static int list_tctx(struct kl_normalizer *n, uint32_t node, uint32_t *out, struct kl_err *err)
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
    memcpy(parent, t->name, sizeof parent);
    uint32_t v;
    rc = tctx_for(n, full, len, parent, &v, err);
    free(full);
    if (rc)
        return rc;
    n->nodes[node].list_tctx = v;
    *out = v;
    return KL_OK;
}

/* ---------------------------------------------------------------- values */

/* The dlt type of a value as Python would see it after orjson. */
static int py_type(const struct kl_json *v)
{
    switch (v->type) {
    case KL_JSON_STRING:
        return v->has_nul ? PY_NUL_STRING : KL_TYPE_TEXT;
    case KL_JSON_NUMBER:
        if (v->num == KL_JSON_INT)
            return KL_TYPE_BIGINT;
        if (v->num == KL_JSON_BIGINT)
            return KL_TYPE_DECIMAL;
        {
            bool in_range;
            kl_json_number_double(v, &in_range);
            return in_range ? KL_TYPE_DOUBLE : KL_TYPE_DECIMAL;
        }
    case KL_JSON_TRUE:
    case KL_JSON_FALSE:
        return KL_TYPE_BOOL;
    case KL_JSON_TIMESTAMP:
        return KL_TYPE_TIMESTAMP;
    case KL_JSON_BYTES:
        return KL_TYPE_BINARY;
    case KL_JSON_OBJECT:
    case KL_JSON_ARRAY:
        return KL_TYPE_JSON;
    default:
        return KL_TYPE_NULL;
    }
}

static int set_text(struct kl_normalizer *n, struct kl_value *out, enum kl_data_type t,
                    const char *s, size_t len)
{
    char *p = kl_arena_alloc(&n->batch, len ? len : 1);
    if (p == NULL)
        return -2;
    memcpy(p, s, len);
    out->type = t;
    out->v.s.ptr = p;
    out->v.s.len = len;
    return 0;
}

/* Serialized JSON of a value, into the batch. */
static int set_json(struct kl_normalizer *n, struct kl_value *out, const struct kl_json *v)
{
    kl_buf_reset(&n->scratch);
    if (kl_json_write(v, &n->scratch, NULL) != KL_OK)
        return -2;
    return set_text(n, out, KL_TYPE_JSON, n->scratch.data, n->scratch.len);
}

/* A JSON integer outside int64 (dlt sees a Python int) rather than a float
 * a double cannot hold. */
static bool is_big_int(const struct kl_json *v)
{
    return v->type == KL_JSON_NUMBER && v->num == KL_JSON_BIGINT;
}

/* int.to_bytes((bit_length + 7) // 8, "little") of a non-negative decimal
 * integer, into the batch. Python raises for a negative one. */
static int int_text_to_bytes(struct kl_normalizer *n, const char *s, size_t len,
                             struct kl_value *out)
{
    unsigned char digits[4400], *bytes;
    size_t nd = 0, o = 0;
    if (len == 0 || s[0] == '-' || len > sizeof digits)
        return -1;
    for (size_t i = 0; i < len; i++)
        digits[nd++] = (unsigned char)(s[i] - '0');
    /* a decimal digit is under 3.33 bits: len / 2 + 1 bytes are enough */
    bytes = kl_arena_alloc(&n->batch, len / 2 + 1);
    if (bytes == NULL)
        return -2;
    size_t start = 0;
    while (start < nd && digits[start] == 0)
        start++;
    while (start < nd) {
        unsigned rem = 0;
        for (size_t i = start; i < nd; i++) {
            unsigned cur = rem * 10 + digits[i];
            digits[i] = (unsigned char)(cur / 256);
            rem = cur % 256;
        }
        bytes[o++] = (unsigned char)rem;
        while (start < nd && digits[start] == 0)
            start++;
    }
    out->type = KL_TYPE_BINARY;
    out->v.s.ptr = (const char *)bytes;
    out->v.s.len = o;
    return 0;
}

/* bytes.fromhex(s) of the text after "0x": pairs of hex digits, ASCII
 * whitespace allowed before each pair. */
static int hex_to_bytes(struct kl_normalizer *n, const char *s, size_t sl, struct kl_value *out)
{
    unsigned char *p = kl_arena_alloc(&n->batch, sl / 2 + 1);
    size_t o = 0, i = 0;
    if (p == NULL)
        return -2;
    while (i < sl) {
        if (s[i] == ' ' || (s[i] >= '\t' && s[i] <= '\r')) {
            i++;
            continue;
        }
        int hi, lo;
        if (i + 1 >= sl)
            return -1;
        hi = s[i] <= '9' && s[i] >= '0' ? s[i] - '0' : ((s[i] | 0x20) - 'a' + 10);
        lo = s[i + 1] <= '9' && s[i + 1] >= '0' ? s[i + 1] - '0' : ((s[i + 1] | 0x20) - 'a' + 10);
        if (hi < 0 || hi > 15 || lo < 0 || lo > 15)
            return -1;
        p[o++] = (unsigned char)(hi << 4 | lo);
        i += 2;
    }
    out->type = KL_TYPE_BINARY;
    out->v.s.ptr = (const char *)p;
    out->v.s.len = o;
    return 0;
}

/* base64.b64decode(s, validate=True) as Python 3.11 runs it (strict mode):
 * only the alphabet, then padding; 4k data characters take any padding
 * (none when empty), 4k+2 exactly two "=", 4k+3 exactly one. */
static int b64_to_bytes(struct kl_normalizer *n, const char *s, size_t sl, struct kl_value *out)
{
    size_t d = 0, pads;
    while (d < sl && ((s[d] >= 'A' && s[d] <= 'Z') || (s[d] >= 'a' && s[d] <= 'z') ||
                      (s[d] >= '0' && s[d] <= '9') || s[d] == '+' || s[d] == '/'))
        d++;
    for (pads = 0; d + pads < sl && s[d + pads] == '='; pads++)
        ;
    if (d + pads != sl)
        return -1;
    if (!(d % 4 == 0 ? (d > 0 || pads == 0) : d % 4 == 2 ? pads == 2 : d % 4 == 3 && pads == 1))
        return -1;
    unsigned char *p = kl_arena_alloc(&n->batch, kl_base64_decoded_max(d) + 1);
    size_t o;
    if (p == NULL)
        return -2;
    if (kl_base64_decode(s, d, p, &o) != 0)
        return -1;
    out->type = KL_TYPE_BINARY;
    out->v.s.ptr = (const char *)p;
    out->v.s.len = o;
    return 0;
}

/* dlt's coerce_value(to, py, v) (dlt/common/data_types/type_helpers.py),
 * with ensure_pendulum_datetime for timestamps. Where dlt raises ValueError
 * the value goes to a variant; where dlt crashes (TypeError, OverflowError)
 * or writes what the database refuses, the value goes to a variant too. 0:
 * coerced (a KL_TYPE_NULL cell for JSON text "null"); -1: cannot coerce;
 * -2: out of memory. */
static int coerce(struct kl_normalizer *n, enum kl_data_type to, int py, const struct kl_json *v,
                  struct kl_value *out)
{
    char buf[KL_DOUBLE_DECIMAL_CAP];
    size_t len;
    memset(out, 0, sizeof *out);
    if (py == PY_NUL_STRING) {
        /* a NUL cannot be stored in PostgreSQL text: keep the UTF-8 bytes */
        if (to != KL_TYPE_BINARY)
            return -1;
        return set_text(n, out, KL_TYPE_BINARY, v->u.s, v->len);
    }
    switch (to) {
    case KL_TYPE_TEXT:
        /* str(custom_encode(v)) or str(v); json.dumps for complex */
        switch (py) {
        case KL_TYPE_TEXT:
            return set_text(n, out, KL_TYPE_TEXT, v->u.s, v->len);
        case KL_TYPE_BIGINT:
            len = (size_t)snprintf(buf, sizeof buf, "%" PRId64, v->i);
            return set_text(n, out, KL_TYPE_TEXT, buf, len);
        case KL_TYPE_DOUBLE:
            len = kl_double_repr(kl_json_number_double(v, NULL), buf);
            return set_text(n, out, KL_TYPE_TEXT, buf, len);
        case KL_TYPE_DECIMAL:
            return set_text(n, out, KL_TYPE_TEXT, v->u.s, v->len);
        case KL_TYPE_BOOL:
            return v->type == KL_JSON_TRUE ? set_text(n, out, KL_TYPE_TEXT, "True", 4)
                                           : set_text(n, out, KL_TYPE_TEXT, "False", 5);
        case KL_TYPE_TIMESTAMP:
            len = kl_timestamp_iso(v->i, buf);
            return set_text(n, out, KL_TYPE_TEXT, buf, len);
        case KL_TYPE_BINARY: {
            char *p = kl_arena_alloc(&n->batch, kl_base64_encoded_size(v->len));
            if (p == NULL)
                return -2;
            len = kl_base64_encode(v->u.s, v->len, p, true);
            out->type = KL_TYPE_TEXT;
            out->v.s.ptr = p;
            out->v.s.len = len;
            return 0;
        }
        case KL_TYPE_JSON: {
            int rc = set_json(n, out, v);
            out->type = KL_TYPE_TEXT;
            return rc;
        }
        default:
            return -1;
        }
    case KL_TYPE_BIGINT:
        out->type = KL_TYPE_BIGINT;
        if (py == KL_TYPE_BIGINT) {
            out->v.i = v->i;
            return 0;
        }
        if (py == KL_TYPE_TEXT)
            return kl_text_to_int64(v->u.s, v->len, &out->v.i) ? 0 : -1;
        if (py == KL_TYPE_DOUBLE) {
            /* value % 1 != 0 raises; int(value) beyond int64 fails dlt's load */
            double d = kl_json_number_double(v, NULL);
            if (d != floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0)
                return -1;
            out->v.i = (int64_t)d;
            return 0;
        }
        /* bool, timestamp, binary raise; an int beyond int64 fails dlt's load */
        return -1;
    case KL_TYPE_DOUBLE:
        out->type = KL_TYPE_DOUBLE;
        if (py == KL_TYPE_DOUBLE) {
            out->v.d = kl_json_number_double(v, NULL);
            return 0;
        }
        if (py == KL_TYPE_BIGINT) {
            out->v.d = (double)v->i; /* float(value): nearest, ties to even */
            return 0;
        }
        if (py == KL_TYPE_DECIMAL) {
            /* float(int) of an integer beyond int64; Python raises
             * OverflowError past the largest double */
            double d = kl_json_number_double(v, NULL);
            if (!is_big_int(v) || !isfinite(d))
                return -1;
            out->v.d = d;
            return 0;
        }
        if (py == KL_TYPE_TEXT)
            return kl_text_to_double(v->u.s, v->len, &out->v.d) ? 0 : -1;
        return -1;
    case KL_TYPE_BOOL:
        out->type = KL_TYPE_BOOL;
        switch (py) {
        case KL_TYPE_BOOL:
            out->v.b = v->type == KL_JSON_TRUE;
            return 0;
        case KL_TYPE_TEXT:
            return kl_text_to_bool(v->u.s, v->len, &out->v.b) ? 0 : -1;
        case KL_TYPE_BIGINT: /* bool(value): any non-zero number is true */
            out->v.b = v->i != 0;
            return 0;
        case KL_TYPE_DOUBLE:
            out->v.b = kl_json_number_double(v, NULL) != 0.0;
            return 0;
        case KL_TYPE_DECIMAL:
            if (!is_big_int(v))
                return -1;
            out->v.b = true; /* never zero outside int64 */
            return 0;
        default: /* complex, binary and timestamp are refused */
            return -1;
        }
    case KL_TYPE_TIMESTAMP:
        out->type = KL_TYPE_TIMESTAMP;
        switch (py) {
        case KL_TYPE_TIMESTAMP:
            out->v.us = v->i;
            return 0;
        case KL_TYPE_TEXT:
            return kl_text_to_timestamp(v->u.s, v->len, &out->v.us) ? 0 : -1;
        case KL_TYPE_BIGINT: /* pendulum.from_timestamp, years 1..9999 */
            return kl_int_seconds_to_us(v->i, &out->v.us) ? 0 : -1;
        case KL_TYPE_DOUBLE:
            return kl_seconds_to_us(kl_json_number_double(v, NULL), &out->v.us) ? 0 : -1;
        case KL_TYPE_BOOL: /* a bool is an int: from_timestamp(True) is 1 s */
            out->v.us = v->type == KL_JSON_TRUE ? 1000000 : 0;
            return 0;
        default: /* dlt: OverflowError (big ints) or TypeError (bytes, complex) */
            return -1;
        }
    case KL_TYPE_BINARY:
        if (py == KL_TYPE_BINARY)
            return set_text(n, out, KL_TYPE_BINARY, v->u.s, v->len);
        if (py == KL_TYPE_TEXT) {
            /* value.startswith("0x") is tested on the text as it is */
            if (v->len >= 2 && v->u.s[0] == '0' && v->u.s[1] == 'x')
                return hex_to_bytes(n, v->u.s + 2, v->len - 2, out);
            return b64_to_bytes(n, v->u.s, v->len, out);
        }
        if (py == KL_TYPE_BIGINT || (py == KL_TYPE_DECIMAL && is_big_int(v))) {
            if (py == KL_TYPE_BIGINT)
                len = (size_t)snprintf(buf, sizeof buf, "%" PRId64, v->i);
            else if (v->len < sizeof buf)
                len = (size_t)snprintf(buf, sizeof buf, "%.*s", (int)v->len, v->u.s);
            else
                return -1;
            return int_text_to_bytes(n, buf, len, out);
        }
        return -1;
    case KL_TYPE_DECIMAL:
        if (py == KL_TYPE_DECIMAL)
            return set_text(n, out, KL_TYPE_DECIMAL, v->u.s, v->len);
        if (py == KL_TYPE_DOUBLE) {
            len = kl_double_to_decimal(kl_json_number_double(v, NULL), buf);
            return set_text(n, out, KL_TYPE_DECIMAL, buf, len);
        }
        if (py == KL_TYPE_BIGINT) {
            len = (size_t)snprintf(buf, sizeof buf, "%" PRId64, v->i);
            return set_text(n, out, KL_TYPE_DECIMAL, buf, len);
        }
        if (py == KL_TYPE_TEXT) {
            char *p = kl_arena_alloc(&n->batch, (size_t)v->len + 40);
            if (p == NULL)
                return -2;
            if (!kl_text_to_decimal(v->u.s, v->len, p, &len))
                return -1;
            out->type = KL_TYPE_DECIMAL;
            out->v.s.ptr = p;
            out->v.s.len = len;
            return 0;
        }
        return -1;
    case KL_TYPE_JSON:
        if (py == KL_TYPE_JSON)
            return set_json(n, out, v);
        if (py == KL_TYPE_TEXT) {
            /* json.loads(value); "null" loads as None: a NULL cell */
            if (kl_json_parse(&n->scratch_doc, v->u.s, v->len, NULL, 0) != KL_OK)
                return -1;
            if (n->scratch_doc.root.type == KL_JSON_NULL)
                return 0;
            return set_json(n, out, &n->scratch_doc.root);
        }
        return -1;
    default:
        return -1;
    }
}

/* dlt's _infer_column_type: autodetection (iso_timestamp) then the value's type. */
static enum kl_data_type infer(const struct kl_json *v, int py)
{
    if (py == KL_TYPE_TEXT && v->len > 0) {
        int64_t us;
        if (kl_iso_parse(v->u.s, v->len, &us) == KL_ISO_DATETIME)
            return KL_TYPE_TIMESTAMP;
    }
    if (py == PY_NUL_STRING)
        return KL_TYPE_BINARY;
    return (enum kl_data_type)py;
}

static int add_column(struct kl_normalizer *n, struct ntable *nt, const char *name,
                      enum kl_data_type type, bool variant, int32_t *out, struct kl_err *err)
{
    struct kl_column col;
    size_t idx;
    int rc;
    const struct kl_table *t = &n->schema->tables[nt->table];
    if (kl_schema_find_column(t, name, &idx)) {
        *out = (int32_t)idx;
        return KL_OK;
    }
    memset(&col, 0, sizeof col);
    strcpy(col.name, name);
    col.type = type;
    col.variant = variant;
    col.unique = strcmp(name, "_dlt_id") == 0;
    /* the source's primary_key hint, under every write disposition; dlt
     * makes a primary key non-nullable */
    col.primary_key = t->parent[0] == '\0' && strcmp(name, "_kinesis_msg_id") == 0;
    col.nullable = !is_not_null_name(name) && !col.primary_key;
    if ((rc = kl_schema_add_column(n->schema, nt->table, &col, &idx, err)))
        return rc;
    if (type == KL_TYPE_JSON)
        nt->has_json_column = true;
    n->schema_dirty = true;
    *out = (int32_t)idx;
    return KL_OK;
}

/* py_type_to_sc_type's name of the value's type, as variant names use it:
 * dlt 0.5.4 calls dicts and lists "complex". */
static const char *type_suffix(int py)
{
    if (py == KL_TYPE_JSON)
        return "complex";
    return kl_data_type_name(py == PY_NUL_STRING ? KL_TYPE_BINARY : (enum kl_data_type)py);
}

/* The name of `<col>__v_<type>`: shorten_fragments(col, "v_" + type). */
static void variant_name(const char *col, int py, char out[KL_IDENT_MAX])
{
    char suffix[32], name[KL_NAME_CAP];
    size_t nl;
    snprintf(suffix, sizeof suffix, "v_%s", type_suffix(py));
    const char *parts[2] = {col, suffix};
    size_t lens[2] = {strlen(col), strlen(suffix)};
    if (kl_naming_shorten_fragments(parts, lens, 2, KL_NAMING_MAX_LENGTH, name, &nl) != KL_OK)
        nl = 0;
    nl = kl_naming_clip_bytes(name, nl, KL_IDENT_MAX - 1);
    memcpy(out, name, nl);
    out[nl] = '\0';
}

static int push_cell(struct kl_normalizer *n, struct ntable *nt, int32_t col,
                     const struct kl_value *v, struct kl_err *err)
{
    (void)n;
    int rc = grow((void **)&nt->cells, &nt->cap_cells, nt->n_cells + 1, sizeof *nt->cells);
    if (rc)
        return kl_err_set(err, rc, "out of memory");
    nt->cells[nt->n_cells].col = (uint32_t)col;
    nt->cells[nt->n_cells].v = *v;
    nt->n_cells++;
    return KL_OK;
}

static int oom(struct kl_normalizer *n, struct kl_err *err)
{
    if (n->opt.max_chunk_bytes && n->batch.total >= n->opt.max_chunk_bytes)
        return kl_err_set(err, KL_ERR_LIMIT, "chunk storage passed %zu bytes",
                          n->opt.max_chunk_bytes);
    return kl_err_set(err, KL_ERR_NOMEM, "out of memory");
}

/* dlt's _coerce_non_null_value for one value of a row. */
static int emit_value(struct kl_normalizer *n, struct ntable *nt, uint32_t si,
                      const struct kl_json *v, struct kl_err *err)
{
    struct kl_value cell;
    int py = py_type(v), rc;
    struct slot *s = &nt->slots[si];
    const struct kl_column *cols;

    if (py == KL_TYPE_NULL)
        return KL_OK;
    /* the column itself: existing type, or inferred when first seen (a
     * string with U+0000 never creates it: it goes to the binary variant) */
    if (s->base < 0 && py != PY_NUL_STRING) {
        int32_t c;
        if ((rc = add_column(n, nt, s->name, infer(v, py), false, &c, err)))
            return rc;
        s = &nt->slots[si];
        s->base = c;
    }
    if (s->base >= 0) {
        cols = n->schema->tables[nt->table].columns;
        rc = coerce(n, cols[s->base].type, py, v, &cell);
        if (rc == 0)
            return cell.type == KL_TYPE_NULL ? KL_OK : push_cell(n, nt, s->base, &cell, err);
        if (rc == -2)
            return oom(n, err);
    }
    /* the variant `<col>__v_<type>`, created with the inferred type */
    int vi = py == PY_NUL_STRING ? KL_TYPE_BINARY : py;
    if (s->var[vi] < 0) {
        char name[KL_IDENT_MAX];
        int32_t c;
        variant_name(s->name, py, name);
        if ((rc = add_column(n, nt, name, infer(v, py), true, &c, err)))
            return rc;
        s = &nt->slots[si];
        s->var[vi] = c;
    }
    cols = n->schema->tables[nt->table].columns;
    rc = coerce(n, cols[s->var[vi]].type, py, v, &cell);
    if (rc == 0)
        return cell.type == KL_TYPE_NULL ? KL_OK : push_cell(n, nt, s->var[vi], &cell, err);
    if (rc == -2)
        return oom(n, err);
    /* dlt fails the whole run here (CannotCoerceColumnException); we keep
     * the value in a variant of the variant typed as the value itself */
    if (s->var2[vi] < 0) {
        char name[KL_IDENT_MAX];
        int32_t c;
        variant_name(cols[s->var[vi]].name, py, name);
        if ((rc = add_column(n, nt, name,
                             py == PY_NUL_STRING ? KL_TYPE_BINARY : (enum kl_data_type)py, true, &c,
                             err)))
            return rc;
        s = &nt->slots[si];
        s->var2[vi] = c;
    }
    cols = n->schema->tables[nt->table].columns;
    rc = coerce(n, cols[s->var2[vi]].type, py, v, &cell);
    if (rc == 0)
        return cell.type == KL_TYPE_NULL ? KL_OK : push_cell(n, nt, s->var2[vi], &cell, err);
    if (rc == -2)
        return oom(n, err);
    return kl_err_set(err, KL_ERR_INTERNAL, "cannot store a %s value in %s", type_suffix(py),
                      cols[s->var2[vi]].name);
}

/* ---------------------------------------------------------------- rows */

static int row_set(struct kl_normalizer *n, struct ntable *nt, uint32_t slot,
                   const struct kl_json *v, struct kl_err *err)
{
    struct slot *s = &nt->slots[slot];
    if (s->row_pos >= 0) {
        n->row[s->row_pos].v = v; /* a dict keeps the first position */
        return KL_OK;
    }
    int rc = grow((void **)&n->row, &n->cap_row, n->n_row + 1, sizeof *n->row);
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
    struct ntable *nt = &n->nts[n->tctxs[tci].nt];
    for (uint32_t i = 0; i < count; i++) {
        const struct kl_json_member *m = &members[i];
        const struct kl_json *v = &m->value;
        uint32_t node;
        int rc;
        if ((rc = child_for_key(n, parent_node, m->key, m->key_len, &node, err)))
            return rc;
        nt = &n->nts[n->tctxs[tci].nt];
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
                    (rc = canon_child(n, parent_node, "", 0, &lnode, err)))
                    return rc;
                if ((rc =
                         grow((void **)&n->lists, &n->cap_lists, n->n_lists + 1, sizeof *n->lists)))
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

static int normalize_row(struct kl_normalizer *n, uint32_t tci,
                         const struct kl_json_member *members, uint32_t count,
                         const struct kl_json *scalar, const char *parent_id, int64_t pos,
                         int r_lvl, bool is_root, struct kl_err *err);

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
            return oom(n, err);
        if (!scalar && (rc = row_set(n, nt, nt->s_root_id, root_key, err)))
            return rc;
    }
    if (is_root) {
        if ((v = synth_string(n, n->load_id, strlen(n->load_id))) == NULL)
            return oom(n, err);
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
            char in[512], digits[24];
            size_t pl = strlen(parent_id), tl = strlen(n->tctxs[tci].name), dl = 0, k = 0;
            uint64_t u = (uint64_t)pos;
            do {
                digits[dl++] = (char)('0' + u % 10);
                u /= 10;
            } while (u);
            if (pl + tl + dl + 2 > sizeof in)
                return kl_err_set(err, KL_ERR_INTERNAL, "row id input too long");
            memcpy(in, parent_id, pl);
            k = pl;
            in[k++] = '_';
            memcpy(in + k, n->tctxs[tci].name, tl);
            k += tl;
            in[k++] = '_';
            while (dl)
                in[k++] = digits[--dl];
            kl_digest_b64(in, k, KL_DLT_ID_BYTES, id);
        }
        if ((vid = synth_string(n, id, strlen(id))) == NULL)
            return oom(n, err);
        if ((is_root || scalar) && (rc = row_set(n, nt, nt->s_dlt_id, vid, err)))
            return rc;
        if (!is_root) {
            if ((v = synth_string(n, parent_id, strlen(parent_id))) == NULL ||
                (rc = row_set(n, nt, nt->s_parent_id, v, err)))
                return v == NULL ? oom(n, err) : rc;
            if ((v = synth_int(n, pos)) == NULL || (rc = row_set(n, nt, nt->s_list_idx, v, err)))
                return v == NULL ? oom(n, err) : rc;
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
    if ((rc = grow((void **)&nt->row_start, &nt->cap_rows, nt->n_rows + 1, sizeof *nt->row_start)))
        return kl_err_set(err, rc, "out of memory");
    nt->row_start[nt->n_rows++] = (uint32_t)nt->n_cells;
    n->chunk_rows[nt->table]++;
    size_t n_row = n->n_row;
    for (size_t i = 0; i < n_row; i++) {
        if ((rc = emit_value(n, &n->nts[nti], n->row[i].slot, n->row[i].v, err)))
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
        return oom(n, err);
    settle_lists(n, lists_from);
    for (size_t li = lists_from; li < lists_to; li++) {
        struct pend_list pl = n->lists[li];
        if (pl.node == NONE)
            continue;
        uint32_t child = 0;
        if ((rc = list_tctx(n, pl.node, &child, err)))
            return rc;
        for (uint32_t idx = 0; idx < pl.v->len; idx++) {
            const struct kl_json *item = &pl.v->u.items[idx];
            if (item->type == KL_JSON_OBJECT) {
                rc = normalize_row(n, child, item->u.members, item->len, NULL, pid, idx, r_lvl - 1,
                                   false, err);
            } else if (item->type == KL_JSON_ARRAY) {
                /* a list of lists: a mock row {"list": item} one level deeper */
                struct kl_json_member *mock = kl_arena_alloc(&n->msg, sizeof *mock);
                if (mock == NULL)
                    return oom(n, err);
                memset(mock, 0, sizeof *mock);
                mock->key = "list";
                mock->key_len = 4;
                mock->value = *item;
                rc = normalize_row(n, child, mock, 1, NULL, pid, idx, r_lvl - 2, false, err);
            } else {
                rc = normalize_row(n, child, NULL, 0, item, pid, idx, r_lvl - 1, false, err);
            }
            if (rc)
                return rc;
        }
    }
    n->n_lists = lists_from;
    return KL_OK;
}

static int normalize_row(struct kl_normalizer *n, uint32_t tci,
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

/* ---------------------------------------------------------------- API */

struct kl_normalizer *kl_normalizer_create(const struct kl_normalizer_options *opt,
                                           struct kl_schema *schema, struct kl_err *err)
{
    struct kl_normalizer *n = calloc(1, sizeof *n);
    if (n == NULL) {
        kl_schema_destroy(schema);
        kl_err_set(err, KL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    n->opt = *opt;
    n->stream_name = dupn(opt->stream_name ? opt->stream_name : "",
                          opt->stream_name ? strlen(opt->stream_name) : 0);
    n->table_name = opt->table_name ? dupn(opt->table_name, strlen(opt->table_name)) : NULL;
    n->load_id = dupn(opt->load_id ? opt->load_id : "", opt->load_id ? strlen(opt->load_id) : 0);
    n->opt.stream_name = n->stream_name;
    n->opt.table_name = n->table_name;
    n->opt.load_id = n->load_id;
    if (n->opt.max_chunk_bytes == 0)
        n->opt.max_chunk_bytes = 512u * 1024 * 1024;
    n->schema = schema ? schema : kl_schema_create("kinesis");
    n->root_tctx = NONE;
    kl_json_doc_init(&n->doc);
    kl_json_doc_init(&n->scratch_doc);
    kl_arena_init(&n->msg, 16 * 1024, 0);
    kl_arena_init(&n->batch, 256 * 1024, n->opt.max_chunk_bytes);
    kl_buf_init(&n->scratch, 64u * 1024 * 1024);
    if (n->stream_name == NULL || n->load_id == NULL || n->schema == NULL ||
        (opt->table_name && n->table_name == NULL)) {
        kl_normalizer_destroy(n);
        kl_err_set(err, KL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    const char *root = n->table_name ? n->table_name : n->stream_name;
    if (kl_naming_is_blank(root, strlen(root))) {
        kl_normalizer_destroy(n);
        kl_err_set(err, KL_ERR_INVALID, "no table name: give a stream name or a table name");
        return NULL;
    }
    return n;
}

void kl_normalizer_destroy(struct kl_normalizer *n)
{
    if (n == NULL)
        return;
    drop_caches(n);
    free(n->nodes);
    free(n->tctxs);
    free(n->nts);
    free(n->nt_of_table);
    free(n->row);
    free(n->lists);
    free(n->dead);
    free(n->count_names);
    free(n->count_rows);
    free(n->chunk_rows);
    kl_json_doc_free(&n->doc);
    kl_json_doc_free(&n->scratch_doc);
    kl_arena_free(&n->msg);
    kl_arena_free(&n->batch);
    kl_buf_free(&n->scratch);
    kl_schema_destroy(n->schema);
    free(n->stream_name);
    free(n->table_name);
    free(n->load_id);
    free(n);
}

static int root_context(struct kl_normalizer *n, struct kl_err *err)
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

static int dead_letter(struct kl_normalizer *n, const struct kl_message *m, const char *why,
                       struct kl_err *err)
{
    int rc = grow((void **)&n->dead, &n->cap_dead, n->n_dead + 1, sizeof *n->dead);
    if (rc)
        return kl_err_set(err, rc, "out of memory");
    struct kl_dead_letter *d = &n->dead[n->n_dead];
    d->shard_id = kl_arena_strndup(&n->batch, m->shard_id, strlen(m->shard_id));
    d->sequence = kl_arena_strndup(&n->batch, m->sequence, strlen(m->sequence));
    d->error = kl_arena_strndup(&n->batch, why, strlen(why));
    unsigned char *data = kl_arena_alloc(&n->batch, m->data_len ? m->data_len : 1);
    if (d->shard_id == NULL || d->sequence == NULL || d->error == NULL || data == NULL)
        return oom(n, err);
    if (m->data_len)
        memcpy(data, m->data, m->data_len);
    d->data = data;
    d->data_len = m->data_len;
    d->sub_sequence = m->sub_sequence;
    d->arrival_ms = m->arrival_ms;
    n->n_dead++;
    return KL_OK;
}

int kl_normalizer_add(struct kl_normalizer *n, const struct kl_message *m, struct kl_err *err)
{
    char reason[160];
    const struct kl_json *payload = NULL;
    int rc;

    if ((rc = root_context(n, err)))
        return rc;
    kl_arena_reset(&n->msg);
    if (n->opt.parse_json) {
        rc = kl_json_parse_object(&n->doc, m->data, m->data_len, &payload, reason, sizeof reason);
        if (rc == KL_ERR_INVALID)
            return dead_letter(n, m, reason, err);
        if (rc != KL_OK)
            return kl_err_set(err, rc, "%s", reason);
    }

    /* the envelope dlt's kinesis source builds, then message.update(payload) */
    struct kl_json_member *env = kl_arena_alloc(&n->msg, 6 * sizeof *env);
    struct kl_json_member *root;
    uint32_t n_root = 0, n_env = 0, cap_root = 3 + (payload ? payload->len : 0);
    root = kl_arena_alloc(&n->msg, cap_root * sizeof *root);
    if (env == NULL || root == NULL)
        return oom(n, err);
    memset(env, 0, 6 * sizeof *env);
    memset(root, 0, cap_root * sizeof *root);
#define ENV_STR(k, str)                                                                            \
    do {                                                                                           \
        env[n_env].key = k;                                                                        \
        env[n_env].key_len = (uint32_t)strlen(k);                                                  \
        env[n_env].value.type = KL_JSON_STRING;                                                    \
        env[n_env].value.u.s = (str) ? (str) : "";                                                 \
        env[n_env].value.len = (uint32_t)strlen(env[n_env].value.u.s);                             \
        n_env++;                                                                                   \
    } while (0)
    ENV_STR("shard_id", m->shard_id);
    ENV_STR("seq_no", m->sequence);
    env[n_env].key = "ts";
    env[n_env].key_len = 2;
    env[n_env].value.type = KL_JSON_TIMESTAMP;
    env[n_env].value.i = m->arrival_ms * 1000;
    n_env++;
    ENV_STR("partition", m->partition_key);
    ENV_STR("stream_name", n->stream_name[0] ? n->stream_name : m->stream_name);
    if (m->sub_sequence >= 0) {
        env[n_env].key = "sub_seq_no";
        env[n_env].key_len = 10;
        env[n_env].value.type = KL_JSON_NUMBER;
        env[n_env].value.num = KL_JSON_INT;
        env[n_env].value.i = m->sub_sequence;
        env[n_env].value.u.s = "";
        n_env++;
    }
#undef ENV_STR
    root[0].key = "_kinesis";
    root[0].key_len = 8;
    root[0].value.type = KL_JSON_OBJECT;
    root[0].value.len = n_env;
    root[0].value.u.members = env;
    root[1].key = "_kinesis_msg_id";
    root[1].key_len = 15;
    root[1].value.type = KL_JSON_STRING;
    root[1].value.u.s = m->msg_id;
    root[1].value.len = (uint32_t)strlen(m->msg_id);
    n_root = 2;
    if (payload != NULL) {
        for (uint32_t i = 0; i < payload->len; i++) {
            const struct kl_json_member *pm = &payload->u.members[i];
            if (pm->key_len == 8 && memcmp(pm->key, "_kinesis", 8) == 0)
                root[0].value = pm->value;
            else if (pm->key_len == 15 && memcmp(pm->key, "_kinesis_msg_id", 15) == 0)
                root[1].value = pm->value;
            else
                root[n_root++] = *pm;
        }
    } else {
        root[2].key = "data";
        root[2].key_len = 4;
        root[2].value.type = KL_JSON_BYTES;
        root[2].value.u.s = (const char *)m->data;
        root[2].value.len = (uint32_t)m->data_len;
        n_root = 3;
    }

    /* the root row id: digest of the record's own `_kinesis_msg_id` */
    kl_digest_b64(m->msg_id, strlen(m->msg_id), KL_DLT_ID_BYTES, n->root_id);
    n->n_row = 0;
    n->n_lists = 0;
    rc = normalize_row(n, n->root_tctx, root, n_root, NULL, NULL, 0, KL_NORMALIZER_MAX_NESTING,
                       true, err);
    if (rc == KL_OK)
        n->n_messages++;
    return rc;
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
            return oom(n, err);
    }
    for (size_t i = 0; i < n->n_nts; i++) {
        struct ntable *nt = &n->nts[i];
        if (nt->n_rows == 0)
            continue;
        size_t nc = n->schema->tables[nt->table].n_columns;
        struct kl_value *cells = kl_arena_alloc(&n->batch, nt->n_rows * nc * sizeof *cells);
        if (cells == NULL)
            return oom(n, err);
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
    if (n->n_nodes > MAX_CACHED_NODES) {
        /* keys that never repeat must not grow the caches without bound */
        drop_caches(n);
    }
}

const struct kl_schema *kl_normalizer_schema(const struct kl_normalizer *n)
{
    return n->schema;
}

int kl_normalizer_replace_schema(struct kl_normalizer *n, struct kl_schema *schema,
                                 struct kl_err *err)
{
    if (schema == NULL)
        return kl_err_set(err, KL_ERR_INVALID, "no schema");
    kl_normalizer_reset(n, false);
    drop_caches(n);
    /* counts keep table names: re-point them at the new schema's names */
    for (size_t k = 0; k < n->n_counts; k++) {
        size_t ti;
        if (kl_schema_find_table(schema, n->count_names[k], &ti))
            n->count_names[k] = schema->tables[ti].name;
    }
    kl_schema_destroy(n->schema);
    n->schema = schema;
    n->schema_dirty = false;
    return KL_OK;
}

size_t kl_normalizer_row_counts(const struct kl_normalizer *n, const char *const **names,
                                const uint64_t **rows)
{
    *names = n->count_names;
    *rows = n->count_rows;
    return n->n_counts;
}
