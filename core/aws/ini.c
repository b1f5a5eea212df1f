/*
 * The AWS profile-file INI dialect, line by line. A line that starts with
 * '[' is a section header, one that starts with a space or tab continues the
 * previous property, '#'/';' in column one is a comment, anything else is
 * "name = value". Only syntax is checked here; names are not validated.
 */
#include "core/aws/ini.h"
#include "core/util/buf.h"
#include "core/util/err.h"

#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

struct parser {
    const char *origin;
    unsigned lineno;
    bool in_section;
    char section[KL_INI_MAX_NAME];
    /* The property being read; it is reported when the next header or
     * property starts (or at the end), after its continuation lines. */
    bool pending;
    bool pending_is_group; /* empty value: continuation lines are sub-properties */
    unsigned pending_line;
    char key[KL_INI_MAX_NAME];
    struct kl_buf value;
    int (*on_entry)(void *ud, const struct kl_ini_entry *e, struct kl_err *err);
    void *ud;
};

static bool is_ws(char c)
{
    return c == ' ' || c == '\t';
}

/* Trims spaces and tabs from both ends of [*s, *e). */
static void trim(const char **s, const char **e)
{
    while (*s < *e && is_ws(**s))
        (*s)++;
    while (*e > *s && is_ws((*e)[-1]))
        (*e)--;
}

/* Trims, then cuts a trailing comment. In a property a comment starts only
 * after whitespace ("key = pass;word" keeps its ';'); in a header anywhere. */
static void strip_line(const char **s, const char **e, bool comment_needs_space)
{
    trim(s, e);
    for (const char *p = *s; p < *e; p++) {
        if ((*p == '#' || *p == ';') && (!comment_needs_space || (p > *s && is_ws(p[-1])))) {
            *e = p;
            break;
        }
    }
    trim(s, e);
}

static int syntax(struct parser *ps, struct kl_err *err, const char *what)
{
    return kl_err_set(err, KL_ERR_INVALID, "%s:%u: %s", ps->origin, ps->lineno, what);
}

static int copy_name(struct parser *ps, char *dst, const char *s, const char *e, struct kl_err *err)
{
    size_t n = (size_t)(e - s);
    if (n >= KL_INI_MAX_NAME)
        return kl_err_set(err, KL_ERR_LIMIT, "%s:%u: name longer than %d characters", ps->origin,
                          ps->lineno, KL_INI_MAX_NAME - 1);
    memcpy(dst, s, n);
    dst[n] = '\0';
    return KL_OK;
}

static void wipe_value(struct parser *ps)
{
    if (ps->value.data != NULL)
        OPENSSL_cleanse(ps->value.data, ps->value.cap);
    kl_buf_reset(&ps->value);
}

static int flush(struct parser *ps, struct kl_err *err)
{
    struct kl_ini_entry e;
    int rc;

    if (!ps->pending)
        return KL_OK;
    ps->pending = false;
    e.section = ps->section;
    e.key = ps->key;
    e.value = ps->value.data != NULL ? ps->value.data : "";
    e.line = ps->pending_line;
    rc = ps->on_entry(ps->ud, &e, err);
    wipe_value(ps);
    return rc;
}

/* Splits "name = value"; `what` names the construct in messages. */
static int split_property(struct parser *ps, const char *s, const char *e, const char **ks,
                          const char **ke, const char **vs, const char **ve, const char *what,
                          struct kl_err *err)
{
    const char *eq;
    char msg[96];

    strip_line(&s, &e, true);
    eq = memchr(s, '=', (size_t)(e - s));
    if (eq == NULL) {
        snprintf(msg, sizeof msg, "expected an '=' sign defining a %s", what);
        return syntax(ps, err, msg);
    }
    *ks = s;
    *ke = eq;
    trim(ks, ke);
    if (*ks == *ke) {
        snprintf(msg, sizeof msg, "%s without a name", what);
        return syntax(ps, err, msg);
    }
    *vs = eq + 1;
    *ve = e;
    trim(vs, ve);
    return KL_OK;
}

static int section_line(struct parser *ps, const char *s, const char *e, struct kl_err *err)
{
    struct kl_ini_entry entry;
    int rc = flush(ps, err);

    if (rc != KL_OK)
        return rc;
    strip_line(&s, &e, false);
    if (e - s < 2 || e[-1] != ']')
        return syntax(ps, err, "a section header must end with ']'");
    s++;
    e--;
    trim(&s, &e);
    rc = copy_name(ps, ps->section, s, e, err);
    if (rc != KL_OK)
        return rc;
    ps->in_section = true;
    entry.section = ps->section;
    entry.key = NULL;
    entry.value = NULL;
    entry.line = ps->lineno;
    return ps->on_entry(ps->ud, &entry, err);
}

static int property_line(struct parser *ps, const char *s, const char *e, struct kl_err *err)
{
    const char *ks = s, *ke = s, *vs = s, *ve = s;
    int rc;

    if (!ps->in_section)
        return syntax(ps, err, "expected a [section] before the first property");
    rc = flush(ps, err);
    if (rc != KL_OK)
        return rc;
    rc = split_property(ps, s, e, &ks, &ke, &vs, &ve, "property", err);
    if (rc != KL_OK)
        return rc;
    rc = copy_name(ps, ps->key, ks, ke, err);
    if (rc != KL_OK)
        return rc;
    rc = kl_buf_append(&ps->value, vs, (size_t)(ve - vs), err);
    if (rc != KL_OK)
        return kl_err_set(err, rc, "%s:%u: value too long", ps->origin, ps->lineno);
    ps->pending = true;
    ps->pending_is_group = vs == ve;
    ps->pending_line = ps->lineno;
    return KL_OK;
}

static int continuation_line(struct parser *ps, const char *s, const char *e, struct kl_err *err)
{
    int rc;

    if (!ps->in_section)
        return syntax(ps, err, "expected a [section] before the first property");
    if (!ps->pending)
        return syntax(ps, err, "expected a property definition, found a continuation line");
    if (ps->pending_is_group) {
        const char *ks = s, *ke = s, *vs = s, *ve = s;
        rc = split_property(ps, s, e, &ks, &ke, &vs, &ve, "sub-property", err);
        if (rc != KL_OK)
            return rc;
    }
    trim(&s, &e);
    rc = kl_buf_append(&ps->value, "\n", 1, err);
    if (rc == KL_OK)
        rc = kl_buf_append(&ps->value, s, (size_t)(e - s), err);
    if (rc != KL_OK)
        return kl_err_set(err, rc, "%s:%u: value too long", ps->origin, ps->lineno);
    return KL_OK;
}

int kl_ini_parse(const char *text, size_t len, const char *origin,
                 int (*on_entry)(void *ud, const struct kl_ini_entry *e, struct kl_err *err),
                 void *ud, struct kl_err *err)
{
    struct parser ps;
    const char *p = text, *end = text + len;
    int rc = KL_OK;

    memset(&ps, 0, sizeof ps);
    ps.origin = origin != NULL ? origin : "(config)";
    ps.on_entry = on_entry;
    ps.ud = ud;
    /* No value can be longer than the file: reserving that much up front means
     * the buffer never moves, so no unwiped copy of a secret is left behind. */
    kl_buf_init(&ps.value, len < KL_INI_MAX_VALUE ? len : KL_INI_MAX_VALUE);
    rc = kl_buf_reserve(&ps.value, ps.value.max, err);
    if (rc != KL_OK)
        goto cleanup;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl != NULL ? nl : end;
        const char *ls = p, *ts, *te;

        p = nl != NULL ? nl + 1 : end;
        ps.lineno++;
        if (le > ls && le[-1] == '\r')
            le--;
        ts = ls;
        te = le;
        trim(&ts, &te);
        if (ts == te || ls[0] == '#' || ls[0] == ';')
            continue;
        if (ls[0] == '[')
            rc = section_line(&ps, ls, le, err);
        else if (is_ws(ls[0]))
            rc = continuation_line(&ps, ls, le, err);
        else
            rc = property_line(&ps, ls, le, err);
        if (rc != KL_OK)
            goto cleanup;
    }
    rc = flush(&ps, err);
cleanup:
    wipe_value(&ps);
    kl_buf_free(&ps.value);
    return rc;
}
