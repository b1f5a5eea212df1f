/*
 * Schema evolution as dlt's jsonl items normaliser does it: a value goes to
 * its column as the column's type; a column is created, its type inferred,
 * only when first seen; a value the type refuses goes to a variant column
 * `<col>__v_<type>`. How a value is coerced is coerce_value.c's.
 */
#include "core/normalize/coerce.h"
#include "core/normalize/internal.h"
#include "core/normalize/naming.h"
#include "core/normalize/schema.h"

#include <stdio.h>
#include <string.h>

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
    col.nullable = !kl_norm_not_null_hint(name) && !col.primary_key;
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

/* dlt's _coerce_non_null_value for one value of a row. */
int kl_norm_emit_value(struct kl_normalizer *n, struct ntable *nt, uint32_t si,
                       const struct kl_json *v, struct kl_err *err)
{
    struct kl_value cell;
    int py = kl_norm_py_type(v), rc;
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
        rc = kl_norm_coerce(n, cols[s->base].type, py, v, &cell);
        if (rc == 0)
            return cell.type == KL_TYPE_NULL ? KL_OK : kl_norm_push_cell(nt, s->base, &cell, err);
        if (rc == -2)
            return kl_norm_oom(n, err);
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
    rc = kl_norm_coerce(n, cols[s->var[vi]].type, py, v, &cell);
    if (rc == 0)
        return cell.type == KL_TYPE_NULL ? KL_OK : kl_norm_push_cell(nt, s->var[vi], &cell, err);
    if (rc == -2)
        return kl_norm_oom(n, err);
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
    rc = kl_norm_coerce(n, cols[s->var2[vi]].type, py, v, &cell);
    if (rc == 0)
        return cell.type == KL_TYPE_NULL ? KL_OK : kl_norm_push_cell(nt, s->var2[vi], &cell, err);
    if (rc == -2)
        return kl_norm_oom(n, err);
    return kl_err_set(err, KL_ERR_INTERNAL, "cannot store a %s value in %s", type_suffix(py),
                      cols[s->var2[vi]].name);
}
