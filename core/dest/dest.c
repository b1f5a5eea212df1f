/*
 * The backend-independent parts of the destination interface (see dest.h):
 * names, defaults, validation, and the destroy wrappers.
 */
#include "core/dest/dest.h"
#include "core/util/err.h"

#include <stdlib.h>
#include <string.h>

const char *kl_dest_step_name(enum kl_dest_step s)
{
    static const char *const names[KL_DEST_STEP_COUNT] = {
        "begin",        "checkpoint", "ddl",          "version", "replace",
        "merge_delete", "rows",       "dead_letters", "commit",
    };
    return (unsigned)s < KL_DEST_STEP_COUNT ? names[s] : "?";
}

const char *kl_state_origin_name(enum kl_state_origin o)
{
    switch (o) {
    case KL_STATE_OURS:
        return "kinesis-loader";
    case KL_STATE_DLT:
        return "dlt";
    case KL_STATE_NONE:
        break;
    }
    return "none";
}

void kl_dest_state_init(struct kl_dest_state *s)
{
    memset(s, 0, sizeof *s);
}

void kl_dest_state_free(struct kl_dest_state *s)
{
    if (s == NULL)
        return;
    free(s->checkpoints);
    free(s->origins);
    memset(s, 0, sizeof *s);
}

void kl_dest_options_init(struct kl_dest_options *o)
{
    memset(o, 0, sizeof *o);
    o->create_indexes = true;
    o->busy_timeout_ms = 30000;
    o->copy_buffer = (size_t)1 << 20;
}

void kl_dest_destroy(struct kl_dest *d)
{
    if (d == NULL)
        return;
    d->ops->destroy(d->impl);
    free(d);
}

void kl_dest_factory_destroy(struct kl_dest_factory *f)
{
    if (f == NULL)
        return;
    f->ops->destroy(f->impl);
    free(f);
}

static int check_name(const char *what, const char *name, struct kl_err *err)
{
    size_t n;

    if (name == NULL || name[0] == '\0')
        return kl_err_set(err, KL_ERR_INVALID, "%s name is empty", what);
    n = strnlen(name, 64);
    if (n > 63)
        return kl_err_set(err, KL_ERR_INVALID, "%s name is longer than 63 characters", what);
    if (name[0] >= '0' && name[0] <= '9')
        return kl_err_set(err, KL_ERR_INVALID, "%s name \"%s\" starts with a digit", what, name);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return kl_err_set(err, KL_ERR_INVALID, "%s name \"%s\" may hold only a-z, 0-9 and _",
                              what, name);
    }
    return KL_OK;
}

int kl_dest_validate_dataset(const char *name, struct kl_err *err)
{
    int rc = check_name("dataset", name, err);

    if (rc != KL_OK)
        return rc;
    /* Postgres reserves pg_* schemas; SQLite reserves sqlite_* table names,
     * which "<dataset>.<table>" would start with. */
    if (strncmp(name, "pg_", 3) == 0 || strncmp(name, "sqlite_", 7) == 0 ||
        strcmp(name, "information_schema") == 0)
        return kl_err_set(err, KL_ERR_INVALID, "dataset name \"%s\" is reserved", name);
    return KL_OK;
}

int kl_dest_validate_table(const char *name, struct kl_err *err)
{
    int rc = check_name("table", name, err);

    if (rc != KL_OK)
        return rc;
    if (strncmp(name, "_dlt", 4) == 0 || strncmp(name, "_kinesis", 8) == 0)
        return kl_err_set(err, KL_ERR_INVALID, "table name \"%s\" is reserved for system tables",
                          name);
    return KL_OK;
}
