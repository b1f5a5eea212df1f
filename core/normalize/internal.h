/*
 * What the files of the normaliser share and nothing else sees: the
 * normaliser object, its caches of paths, tables and column slots, the
 * chunk's sparse rows, and the functions one file of core/normalize calls in
 * another. Only the .c files of core/normalize include this; the API is
 * normalizer.h.
 */
#ifndef KL_NORMALIZE_INTERNAL_H
#define KL_NORMALIZE_INTERNAL_H

#include "core/normalize/json.h"
#include "core/normalize/normalizer.h"
#include "core/normalize/rows.h"
#include "core/util/arena.h"
#include "core/util/buf.h"
#include "core/util/digest.h"
#include "core/util/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NONE UINT32_MAX
#define N_TYPES 9         /* enum kl_data_type */
#define PY_NUL_STRING 100 /* a string holding U+0000: kept as binary */

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

    const char **count_names;
    uint64_t *count_rows;
    size_t n_counts;
    uint64_t *chunk_rows; /* per schema table, rows in the open chunk */
    size_t cap_chunk_rows;
    char root_id[KL_DLT_ID_LEN + 1];
};

/* Grows `*p` to hold at least `need` elements of `elem` bytes, doubling.
 * On failure `*p` and `*cap` are unchanged. */
static inline int kl_norm_grow(void **p, size_t *cap, size_t need, size_t elem)
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

/* A malloc'd copy of `n` bytes and a NUL (the caller frees it), or NULL. */
static inline char *kl_norm_dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* The value of a hexadecimal digit of either case, or -1. */
static inline int kl_norm_hexval(unsigned c)
{
    if (c >= '0' && c <= '9')
        return (int)(c - '0');
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return (int)(c - 'a' + 10);
    return -1;
}

/* kmap.c: the hash map behind the caches. */
bool kl_norm_kmap_get(const struct kmap *m, uint32_t scope, const char *k, size_t n, uint32_t *val);
int kl_norm_kmap_put(struct kmap *m, uint32_t scope, const char *k, size_t n, uint32_t val);
void kl_norm_kmap_free(struct kmap *m);

/* paths.c: flatten paths, table contexts and column slots, cached. */
void kl_norm_drop_caches(struct kl_normalizer *n);
/* The context of the root table, created on the first message. */
int kl_norm_root_context(struct kl_normalizer *n, struct kl_err *err);
/* The node for normalised component `norm` under node `parent`. */
int kl_norm_canon_child(struct kl_normalizer *n, uint32_t parent, const char *norm, size_t nl,
                        uint32_t *out, struct kl_err *err);
/* The node for raw key `k` under node `parent`. */
int kl_norm_child_for_key(struct kl_normalizer *n, uint32_t parent, const char *k, size_t kl,
                          uint32_t *out, struct kl_err *err);
/* The table context of a list found at `node`. */
int kl_norm_list_tctx(struct kl_normalizer *n, uint32_t node, uint32_t *out, struct kl_err *err);

/* schema.c: a name of dlt's default not_null hints (the `_dlt_*` columns). */
bool kl_norm_not_null_hint(const char *name);

/* coerce_value.c: a JSON value into a cell of a column's type. */
int kl_norm_py_type(const struct kl_json *v);
int kl_norm_coerce(struct kl_normalizer *n, enum kl_data_type to, int py, const struct kl_json *v,
                   struct kl_value *out);

/* evolve.c: one value of a row into its column, creating columns and
 * variants as dlt does. */
int kl_norm_emit_value(struct kl_normalizer *n, struct ntable *nt, uint32_t si,
                       const struct kl_json *v, struct kl_err *err);

/* flatten.c: one row (an object's members, or a scalar of a list) and the
 * lists it holds into rows of their tables. */
int kl_norm_normalize_row(struct kl_normalizer *n, uint32_t tci,
                          const struct kl_json_member *members, uint32_t count,
                          const struct kl_json *scalar, const char *parent_id, int64_t pos,
                          int r_lvl, bool is_root, struct kl_err *err);

/* batch.c: the chunk's storage. */
int kl_norm_push_cell(struct ntable *nt, int32_t col, const struct kl_value *v, struct kl_err *err);
/* The error for a failed allocation: KL_ERR_LIMIT when the chunk is full. */
int kl_norm_oom(struct kl_normalizer *n, struct kl_err *err);
/* Keeps message `m` as a dead letter of the chunk, with reason `why`. */
int kl_norm_dead_letter(struct kl_normalizer *n, const struct kl_message *m, const char *why,
                        struct kl_err *err);

#endif
