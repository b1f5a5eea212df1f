/*
 * dlt's pipeline state document (see state.h). Reading goes through the
 * exact JSON parser (core/normalize/json.h); writing turns the restored
 * document into a cJSON tree whose scalars are raw JSON text, so that what
 * we do not touch is written again exactly as it was (numbers keep their
 * digits, strings their escapes), edits the few values that are ours, and
 * prints it compact as dlt's typed_dumpb does.
 */
#include "core/dest/state.h"
#include "core/kinesis/msgid.h"
#include "core/normalize/coerce.h"
#include "core/normalize/json.h"
#include "core/util/base64.h"
#include "core/util/buf.h"
#include "core/util/err.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define ZLIB_CONST /* next_in is const: the input is never written */
#include <zlib.h>

void kl_dlt_state_row_free(struct kl_dlt_state_row *r)
{
    if (r == NULL)
        return;
    free(r->state);
    memset(r, 0, sizeof *r);
}

void kl_dlt_stream_free(struct kl_dlt_stream *s)
{
    if (s == NULL)
        return;
    free(s->positions);
    memset(s, 0, sizeof *s);
}

/* ---- encoding ---- */

static int inflate_all(const unsigned char *in, size_t n, char **json, size_t *len,
                       struct kl_err *err)
{
    z_stream z;
    struct kl_buf out;
    int zrc = Z_OK, rc = KL_OK;

    memset(&z, 0, sizeof z);
    kl_buf_init(&out, KL_STATE_TEXT_MAX);
    if (inflateInit(&z) != Z_OK)
        return kl_err_set(err, KL_ERR_NOMEM, "zlib: inflateInit failed");
    z.next_in = (const Bytef *)in;
    z.avail_in = (uInt)n;
    while (rc == KL_OK && zrc != Z_STREAM_END) {
        rc = kl_buf_reserve(&out, (size_t)64 * 1024, err);
        if (rc != KL_OK)
            break;
        z.next_out = (unsigned char *)out.data + out.len;
        z.avail_out = (uInt)(out.cap - out.len - 1);
        zrc = inflate(&z, Z_NO_FLUSH);
        out.len = (size_t)((char *)z.next_out - out.data);
        if (zrc != Z_OK && zrc != Z_STREAM_END)
            rc = kl_err_set(err, KL_ERR_UPSTREAM, "pipeline state: not a zlib stream (%s)",
                            z.msg != NULL ? z.msg : "truncated");
    }
    inflateEnd(&z);
    if (rc == KL_OK && z.avail_in != 0)
        rc = kl_err_set(err, KL_ERR_UPSTREAM, "pipeline state: bytes after the zlib stream");
    if (rc == KL_OK) {
        out.data[out.len] = '\0';
        *json = kl_buf_steal(&out, len);
    }
    kl_buf_free(&out);
    return rc;
}

int kl_dlt_state_decode(const char *column, char **json, size_t *len, struct kl_err *err)
{
    size_t n = strlen(column), zlen = 0;
    unsigned char *z = malloc(kl_base64_decoded_max(n) + 1);
    int rc;

    if (z == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "pipeline state");
    if (kl_base64_decode(column, n, z, &zlen) == 0) {
        rc = inflate_all(z, zlen, json, len, err);
    } else if (n > KL_STATE_TEXT_MAX) {
        rc = kl_err_set(err, KL_ERR_LIMIT, "pipeline state larger than %zu bytes",
                        KL_STATE_TEXT_MAX);
    } else if ((*json = strdup(column)) == NULL) { /* dlt's older format: plain JSON */
        rc = kl_err_set(err, KL_ERR_NOMEM, "pipeline state");
    } else {
        *len = n;
        rc = KL_OK;
    }
    free(z);
    return rc;
}

int kl_dlt_state_encode(const char *json, size_t len, char **column, struct kl_err *err)
{
    uLongf zlen = compressBound((uLong)len);
    unsigned char *z = malloc(zlen);
    int rc = KL_OK;

    *column = NULL;
    if (z == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "pipeline state");
    /* zlib.compress(value, level=9): compress2, windowBits 15, memLevel 8 */
    if (compress2(z, &zlen, (const Bytef *)json, (uLong)len, 9) != Z_OK)
        rc = kl_err_set(err, KL_ERR_INTERNAL, "zlib: compress2 failed");
    if (rc == KL_OK && (*column = malloc(kl_base64_encoded_size(zlen))) == NULL)
        rc = kl_err_set(err, KL_ERR_NOMEM, "pipeline state");
    if (rc == KL_OK)
        kl_base64_encode(z, zlen, *column, true);
    free(z);
    return rc;
}

/* ---- the document as a tree ---- */

/* Adds `c` (taken) to object `node` under member m's key. */
static int add_member(cJSON *node, const struct kl_json_member *m, cJSON *c, struct kl_err *err)
{
    char *key;
    int rc = KL_OK;

    if (memchr(m->key, '\0', m->key_len) != NULL) { /* cJSON keys end at a NUL */
        cJSON_Delete(c);
        return kl_err_set(err, KL_ERR_UPSTREAM, "pipeline state: a key with U+0000");
    }
    key = malloc(m->key_len + 1);
    if (key != NULL) {
        memcpy(key, m->key, m->key_len);
        key[m->key_len] = '\0';
    }
    if (key == NULL || !cJSON_AddItemToObject(node, key, c)) {
        cJSON_Delete(c);
        rc = kl_err_set(err, KL_ERR_NOMEM, "pipeline state");
    }
    free(key);
    return rc;
}

/* A cJSON copy of `v` whose scalars are raw JSON text (as kl_json_write
 * spells them: numbers as written, strings as dlt writes them). NULL with
 * *rc set on failure. */
static cJSON *raw_tree(const struct kl_json *v, struct kl_buf *tmp, int *rc, struct kl_err *err)
{
    cJSON *node;

    if (v->type != KL_JSON_OBJECT && v->type != KL_JSON_ARRAY) {
        kl_buf_reset(tmp);
        *rc = kl_json_write(v, tmp, err);
        node = *rc == KL_OK ? cJSON_CreateRaw(tmp->data) : NULL;
        if (node == NULL && *rc == KL_OK)
            *rc = kl_err_set(err, KL_ERR_NOMEM, "pipeline state");
        return node;
    }
    node = v->type == KL_JSON_OBJECT ? cJSON_CreateObject() : cJSON_CreateArray();
    if (node == NULL) {
        *rc = kl_err_set(err, KL_ERR_NOMEM, "pipeline state");
        return NULL;
    }
    for (uint32_t i = 0; i < v->len; i++) {
        const bool obj = v->type == KL_JSON_OBJECT;
        cJSON *c = raw_tree(obj ? &v->u.members[i].value : &v->u.items[i], tmp, rc, err);
        if (c != NULL && !obj && !cJSON_AddItemToArray(node, c)) {
            cJSON_Delete(c);
            c = NULL;
            *rc = kl_err_set(err, KL_ERR_NOMEM, "pipeline state");
        } else if (c != NULL && obj) {
            *rc = add_member(node, &v->u.members[i], c, err);
        }
        if (c == NULL || *rc != KL_OK) {
            cJSON_Delete(node);
            return NULL;
        }
    }
    return node;
}

/* The excluded top-level keys of the hash. */
static bool hash_excluded(const char *key)
{
    static const char *const keys[] = {"_local", "_state_version", "_state_engine_version",
                                       "_version_hash"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(key, keys[i]) == 0)
            return true;
    return false;
}

/* Appends cJSON's compact text of `item` to `out`. */
static int append_printed(struct kl_buf *out, const cJSON *item, struct kl_err *err)
{
    char *text = cJSON_PrintUnformatted(item);
    int rc = text != NULL ? kl_buf_append_str(out, text, err)
                          : kl_err_set(err, KL_ERR_NOMEM, "pipeline state");
    free(text);
    return rc;
}

static int tree_hash(const cJSON *root, char out[KL_STATE_HASH_CAP], struct kl_err *err)
{
    struct kl_buf text;
    const cJSON *m;
    unsigned char md[32];
    unsigned int mdlen = 0;
    bool first = true;
    int rc;

    kl_buf_init(&text, KL_STATE_TEXT_MAX);
    rc = kl_buf_append(&text, "{", 1, err);
    cJSON_ArrayForEach(m, root)
    {
        cJSON *key;
        if (rc != KL_OK || hash_excluded(m->string))
            continue;
        key = cJSON_CreateString(m->string);
        if (!first)
            rc = kl_buf_append(&text, ",", 1, err);
        if (rc == KL_OK)
            rc = key != NULL ? append_printed(&text, key, err)
                             : kl_err_set(err, KL_ERR_NOMEM, "pipeline state");
        if (rc == KL_OK)
            rc = kl_buf_append(&text, ":", 1, err);
        if (rc == KL_OK)
            rc = append_printed(&text, m, err);
        cJSON_Delete(key);
        first = false;
    }
    if (rc == KL_OK)
        rc = kl_buf_append(&text, "}", 1, err);
    if (rc == KL_OK &&
        (EVP_Digest(text.data, text.len, md, &mdlen, EVP_sha3_256(), NULL) != 1 || mdlen != 32))
        rc = kl_err_set(err, KL_ERR_INTERNAL, "EVP_Digest(SHA3-256) failed");
    if (rc == KL_OK)
        kl_base64_encode(md, 32, out, true);
    kl_buf_free(&text);
    return rc;
}

/* Parses `json` with the exact parser; KL_ERR_UPSTREAM unless it is an
 * object. `doc` is initialised here and freed by the caller. */
static int parse_object(struct kl_json_doc *doc, const char *json, size_t len, struct kl_err *err)
{
    char reason[96] = "";
    int rc;

    kl_json_doc_init(doc);
    rc = kl_json_parse(doc, json, len, reason, sizeof reason);
    if (rc == KL_ERR_INVALID || (rc == KL_OK && doc->root.type != KL_JSON_OBJECT))
        return kl_err_set(err, KL_ERR_UPSTREAM, "pipeline state: not a JSON object%s%s",
                          reason[0] ? ": " : "", reason);
    if (rc != KL_OK)
        return kl_err_set(err, KL_ERR_NOMEM, "pipeline state");
    return KL_OK;
}

/* Parses `json` into a raw tree; KL_ERR_UPSTREAM unless it is an object. */
static int parse_tree(const char *json, size_t len, cJSON **out, struct kl_err *err)
{
    struct kl_json_doc doc;
    struct kl_buf tmp;
    int rc = parse_object(&doc, json, len, err);

    *out = NULL;
    kl_buf_init(&tmp, KL_STATE_TEXT_MAX);
    if (rc == KL_OK)
        *out = raw_tree(&doc.root, &tmp, &rc, err);
    kl_buf_free(&tmp);
    kl_json_doc_free(&doc);
    return rc;
}

int kl_dlt_state_hash(const char *json, size_t len, char out[KL_STATE_HASH_CAP], struct kl_err *err)
{
    cJSON *root = NULL;
    int rc = parse_tree(json, len, &root, err);

    if (rc == KL_OK)
        rc = tree_hash(root, out, err);
    cJSON_Delete(root);
    return rc;
}

/* ---- reading a stream ---- */

static const struct kl_json *member(const struct kl_json *o, const char *key)
{
    return o != NULL && o->type == KL_JSON_OBJECT ? kl_json_get(o, key, strlen(key)) : NULL;
}

static bool is_sequence(const char *s, size_t n)
{
    if (n == 0 || n >= KL_SEQ_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* A datetime as dlt stores it (the marker and isoformat()), or an ISO
 * string without the marker (kinesis-loader before wrote that). */
static bool read_datetime(const struct kl_json *v, struct kl_dlt_stream *out)
{
    const char *s;
    size_t n;
    int64_t us = 0;
    enum kl_iso_kind kind;
    bool marked;

    if (v == NULL || v->type != KL_JSON_STRING || v->has_nul)
        return false;
    s = v->u.s;
    n = v->len;
    marked = n >= 3 && memcmp(s, KL_STATE_DATETIME_MARKER, 3) == 0;
    if (marked) {
        s += 3;
        n -= 3;
    }
    kind = kl_iso_parse(s, n, &us);
    if ((kind != KL_ISO_DATETIME && kind != KL_ISO_DATE) || n >= sizeof out->run_text)
        return false;
    out->run_ms = us >= 0 ? us / 1000 : -((-us + 999) / 1000);
    out->run_marked = marked;
    memcpy(out->run_text, s, n);
    out->run_text[n] = '\0';
    return true;
}

/* sources.<section>.resources.<stream>, preferring `section`. */
static const struct kl_json *find_resource(const struct kl_json *root, const char *section,
                                           const char *stream)
{
    const struct kl_json *sources = member(root, "sources"), *first = NULL;

    if (sources == NULL || sources->type != KL_JSON_OBJECT)
        return NULL;
    for (uint32_t i = 0; i < sources->len; i++) {
        const struct kl_json_member *m = &sources->u.members[i];
        const struct kl_json *r = member(member(&m->value, "resources"), stream);
        if (r == NULL || r->type != KL_JSON_OBJECT)
            continue;
        if (m->key_len == strlen(section) && memcmp(m->key, section, m->key_len) == 0)
            return r;
        if (first == NULL)
            first = r;
    }
    return first;
}

/* The section name the stream's resource is under, as find_resource chooses it. */
static const char *resource_section(const cJSON *root, const char *section, const char *stream)
{
    const cJSON *src, *first = NULL;

    cJSON_ArrayForEach(src, cJSON_GetObjectItemCaseSensitive(root, "sources"))
    {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(src, "resources"), stream);
        if (!cJSON_IsObject(r))
            continue;
        if (strcmp(src->string, section) == 0)
            return src->string;
        if (first == NULL)
            first = src;
    }
    return first != NULL ? first->string : section;
}

static int stream_of(const struct kl_json *root, const char *section, const char *stream,
                     struct kl_dlt_stream *out, struct kl_err *err)
{
    const struct kl_json *res = find_resource(root, section, stream);
    const struct kl_json *last =
        member(member(member(res, "incremental"), "_kinesis"), "last_value");
    struct kl_dlt_stream s;

    memset(&s, 0, sizeof s);
    s.found = res != NULL;
    if (last != NULL && last->type == KL_JSON_OBJECT && last->len > 0) {
        s.positions = calloc(last->len, sizeof *s.positions);
        if (s.positions == NULL)
            return kl_err_set(err, KL_ERR_NOMEM, "pipeline state");
        for (uint32_t i = 0; i < last->len; i++) {
            const struct kl_json_member *m = &last->u.members[i];
            struct kl_shard_position *p = &s.positions[s.n_positions];
            if (m->value.type != KL_JSON_STRING || !is_sequence(m->value.u.s, m->value.len) ||
                m->key_len == 0 || m->key_len >= KL_SHARD_ID_MAX ||
                memchr(m->key, '\0', m->key_len) != NULL)
                continue;
            memcpy(p->shard_id, m->key, m->key_len);
            p->shard_id[m->key_len] = '\0';
            memcpy(p->sequence, m->value.u.s, m->value.len);
            p->sequence[m->value.len] = '\0';
            p->sub_sequence = -1;
            s.n_positions++;
        }
    }
    s.has_run = read_datetime(member(res, "initial_at_timestamp"), &s);
    *out = s;
    return KL_OK;
}

int kl_dlt_state_stream(const char *json, size_t len, const char *section, const char *stream,
                        struct kl_dlt_stream *out, struct kl_err *err)
{
    struct kl_json_doc doc;
    int rc;

    memset(out, 0, sizeof *out);
    rc = parse_object(&doc, json, len, err);
    if (rc == KL_OK)
        rc = stream_of(&doc.root, section, stream, out, err);
    kl_json_doc_free(&doc);
    return rc;
}

/* ---- writing ---- */

/* The object member `key` of `parent`, added when missing (a null is
 * replaced). KL_ERR_UPSTREAM when it is there and is something else. */
static int child_object(cJSON *parent, const char *key, cJSON **out, struct kl_err *err)
{
    cJSON *c = cJSON_GetObjectItemCaseSensitive(parent, key);

    if (cJSON_IsObject(c)) {
        *out = c;
        return KL_OK;
    }
    if (c != NULL && !(cJSON_IsRaw(c) && strcmp(c->valuestring, "null") == 0) && !cJSON_IsNull(c))
        return kl_err_set(err, KL_ERR_UPSTREAM, "pipeline state: %s is not an object", key);
    if (c != NULL) {
        cJSON *o = cJSON_CreateObject();
        if (o == NULL || !cJSON_ReplaceItemInObjectCaseSensitive(parent, key, o)) {
            cJSON_Delete(o);
            return kl_err_set(err, KL_ERR_NOMEM, "pipeline state");
        }
        *out = o;
        return KL_OK;
    }
    *out = cJSON_AddObjectToObject(parent, key);
    return *out != NULL ? KL_OK : kl_err_set(err, KL_ERR_NOMEM, "pipeline state");
}

/* Sets member `key` of `obj` to `v` (taken), in place when it is there. */
static int set_member(cJSON *obj, const char *key, cJSON *v, struct kl_err *err)
{
    bool ok;
    if (v == NULL)
        return kl_err_set(err, KL_ERR_NOMEM, "pipeline state");
    ok = cJSON_GetObjectItemCaseSensitive(obj, key) != NULL
             ? cJSON_ReplaceItemInObjectCaseSensitive(obj, key, v)
             : cJSON_AddItemToObject(obj, key, v);
    if (!ok) {
        cJSON_Delete(v);
        return kl_err_set(err, KL_ERR_NOMEM, "pipeline state");
    }
    return KL_OK;
}

/* dlt's typed datetime of `ms`: the marker, then pendulum's isoformat() in UTC. */
static cJSON *datetime_value(int64_t ms)
{
    char iso[40], text[48];
    kl_timestamp_iso(ms * 1000, iso);
    snprintf(text, sizeof text, "%s%s", KL_STATE_DATETIME_MARKER, iso);
    return cJSON_CreateString(text);
}

/* dlt's unique hash of the row of the checkpoint's message:
 * [digest128(json.dumps(_kinesis_msg_id))]. */
static int unique_hashes(const struct kl_checkpoint *cp, cJSON **out, struct kl_err *err)
{
    char id[KL_MSG_ID_LEN + 1], quoted[KL_MSG_ID_LEN + 8], h[KL_MSG_ID_LEN + 1];
    int rc =
        kl_msg_id(cp->position.shard_id, cp->position.sequence, cp->position.sub_sequence, id, err);

    if (rc == KL_OK) {
        snprintf(quoted, sizeof quoted, "\"%s\"", id);
        rc = kl_digest128(quoted, strlen(quoted), h, err);
    }
    if (rc != KL_OK)
        return rc;
    *out = cJSON_CreateArray();
    if (*out == NULL || !cJSON_AddItemToArray(*out, cJSON_CreateString(h))) {
        cJSON_Delete(*out);
        return kl_err_set(err, KL_ERR_NOMEM, "pipeline state");
    }
    return KL_OK;
}

/* Merges one stream of ours into the tree. `old` is what the restored
 * state held for it. */
static int merge_stream(cJSON *root, const char *section, const struct kl_state_stream *st,
                        const struct kl_dlt_stream *old, struct kl_err *err)
{
    const char *sec = resource_section(root, section, st->stream_name);
    const struct kl_checkpoint *newest = NULL;
    cJSON *sources = NULL, *src = NULL, *resources = NULL, *res = NULL, *incr = NULL, *kin = NULL,
          *last = NULL;
    bool fresh_kin;
    int rc;

    rc = child_object(root, "sources", &sources, err);
    if (rc == KL_OK)
        rc = child_object(sources, sec, &src, err);
    if (rc == KL_OK)
        rc = child_object(src, "resources", &resources, err);
    if (rc == KL_OK)
        rc = child_object(resources, st->stream_name, &res, err);
    if (rc == KL_OK)
        rc = child_object(res, "incremental", &incr, err);
    if (rc != KL_OK)
        return rc;
    fresh_kin = cJSON_GetObjectItemCaseSensitive(incr, "_kinesis") == NULL;
    rc = child_object(incr, "_kinesis", &kin, err);
    if (rc == KL_OK && fresh_kin)
        rc = set_member(kin, "initial_value", cJSON_CreateNull(), err);
    if (rc == KL_OK)
        rc = child_object(kin, "last_value", &last, err);
    for (size_t i = 0; rc == KL_OK && i < st->n_checkpoints; i++) {
        const struct kl_checkpoint *cp = &st->checkpoints[i];
        const char *was = NULL;
        for (size_t k = 0; k < old->n_positions; k++)
            if (strcmp(old->positions[k].shard_id, cp->position.shard_id) == 0)
                was = old->positions[k].sequence;
        if (cp->position.sequence[0] == '\0' ||
            (was != NULL && kl_seq_cmp(was, cp->position.sequence) >= 0))
            continue; /* the restored state is as far or further */
        rc =
            set_member(last, cp->position.shard_id, cJSON_CreateString(cp->position.sequence), err);
        if (newest == NULL || cp->updated_ms >= newest->updated_ms)
            newest = cp;
    }
    if (rc == KL_OK && newest != NULL) {
        cJSON *h = NULL;
        rc = unique_hashes(newest, &h, err);
        if (rc == KL_OK)
            rc = set_member(kin, "unique_hashes", h, err);
    } else if (rc == KL_OK && cJSON_GetObjectItemCaseSensitive(kin, "unique_hashes") == NULL) {
        rc = set_member(kin, "unique_hashes", cJSON_CreateArray(), err);
    }
    /* The later run time. A restored one without dlt's marker (what
     * kinesis-loader wrote before) gets it, or dlt's source would fail on
     * it; one with it stays as written. */
    if (rc == KL_OK && st->has_last_run && (!old->has_run || st->last_run_ms > old->run_ms)) {
        rc = set_member(res, "initial_at_timestamp", datetime_value(st->last_run_ms), err);
    } else if (rc == KL_OK && old->has_run && !old->run_marked) {
        char text[sizeof old->run_text + 4];
        snprintf(text, sizeof text, "%s%s", KL_STATE_DATETIME_MARKER, old->run_text);
        rc = set_member(res, "initial_at_timestamp", cJSON_CreateString(text), err);
    }
    return rc;
}

/* Removes sources.<section>.resources.<stream>; *removed says whether it was there. */
static void forget_stream(cJSON *root, const char *section, const char *stream, bool *removed)
{
    const char *sec = resource_section(root, section, stream);
    cJSON *resources = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "sources"), sec),
        "resources");
    cJSON *r = cJSON_DetachItemFromObjectCaseSensitive(resources, stream);

    *removed = r != NULL;
    cJSON_Delete(r);
}

/* A new state, its keys in the order dlt 0.5.4 wrote them in the fixtures. */
static cJSON *new_state(const struct kl_state_doc_in *in)
{
    cJSON *root = cJSON_CreateObject(), *names;

    if (root == NULL || cJSON_AddNumberToObject(root, "_state_version", 0) == NULL ||
        cJSON_AddNumberToObject(root, "_state_engine_version", KL_STATE_ENGINE_VERSION) == NULL ||
        cJSON_AddStringToObject(root, "dataset_name", in->dataset_name) == NULL ||
        cJSON_AddStringToObject(root, "default_schema_name", in->schema_name) == NULL ||
        (names = cJSON_AddArrayToObject(root, "schema_names")) == NULL ||
        !cJSON_AddItemToArray(names, cJSON_CreateString(in->schema_name)) ||
        cJSON_AddStringToObject(root, "pipeline_name", in->pipeline_name) == NULL ||
        cJSON_AddStringToObject(root, "destination_type", in->destination_type) == NULL ||
        cJSON_AddStringToObject(root, "destination_name", in->destination_name) == NULL ||
        cJSON_AddStringToObject(root, "_version_hash", "") == NULL ||
        cJSON_AddObjectToObject(root, "sources") == NULL) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

int kl_state_doc_build(const struct kl_state_doc_in *in, struct kl_state_doc *out,
                       struct kl_err *err)
{
    cJSON *root = NULL;
    char before[KL_STATE_HASH_CAP] = "";
    unsigned char rid[10];
    char v[24];
    int rc = KL_OK;

    memset(out, 0, sizeof *out);
    if (in->restored != NULL) {
        rc = parse_tree(in->restored, in->restored_len, &root, err);
        if (rc == KL_OK)
            rc = tree_hash(root, before, err);
    } else if ((root = new_state(in)) == NULL) {
        rc = kl_err_set(err, KL_ERR_NOMEM, "pipeline state");
    }
    if (in->forget != NULL && rc == KL_OK) {
        bool removed = false;
        forget_stream(root, in->schema_name, in->forget, &removed);
    }
    for (size_t i = 0; in->forget == NULL && rc == KL_OK && i < in->n_streams; i++) {
        struct kl_dlt_stream old;
        memset(&old, 0, sizeof old);
        if (in->restored != NULL)
            rc = kl_dlt_state_stream(in->restored, in->restored_len, in->schema_name,
                                     in->streams[i].stream_name, &old, err);
        if (rc == KL_OK)
            rc = merge_stream(root, in->schema_name, &in->streams[i], &old, err);
        kl_dlt_stream_free(&old);
    }
    if (rc == KL_OK)
        rc = tree_hash(root, out->version_hash, err);
    snprintf(v, sizeof v, "%lld", (long long)in->version);
    if (rc == KL_OK)
        rc = set_member(root, "_state_version", cJSON_CreateRaw(v), err);
    if (rc == KL_OK && cJSON_GetObjectItemCaseSensitive(root, "_state_engine_version") == NULL)
        rc = set_member(root, "_state_engine_version", cJSON_CreateNumber(KL_STATE_ENGINE_VERSION),
                        err);
    if (rc == KL_OK)
        rc = set_member(root, "_version_hash", cJSON_CreateString(out->version_hash), err);
    if (rc == KL_OK)
        out->json = cJSON_PrintUnformatted(root);
    if (rc == KL_OK && out->json == NULL)
        rc = kl_err_set(err, KL_ERR_NOMEM, "pipeline state");
    else if (rc == KL_OK)
        rc = kl_dlt_state_encode(out->json, strlen(out->json), &out->state, err);
    if (rc == KL_OK && RAND_bytes(rid, sizeof rid) != 1)
        rc = kl_err_set(err, KL_ERR_INTERNAL, "RAND_bytes failed");
    if (rc == KL_OK) {
        kl_base64_encode(rid, sizeof rid, out->row_id, false);
        out->changed = strcmp(before, out->version_hash) != 0;
    } else {
        kl_state_doc_free(out);
    }
    cJSON_Delete(root);
    return rc;
}

void kl_state_doc_free(struct kl_state_doc *d)
{
    if (d == NULL)
        return;
    free(d->json);
    free(d->state);
    memset(d, 0, sizeof *d);
}

int kl_dlt_load_id_after(int64_t now_ms, const char *newest, char *out, size_t cap,
                         struct kl_err *err)
{
    char id[64];

    /* the engine's load ids have microseconds: so have these */
    snprintf(id, sizeof id, "%lld.%06lld", (long long)(now_ms / 1000),
             (long long)(now_ms % 1000) * 1000);
    if (strcmp(id, newest) > 0) {
        snprintf(out, cap, "%s", id);
        return KL_OK;
    }
    /* the clock is behind the newest load: one digit more sorts after it */
    if (strlen(newest) + 2 > cap)
        return kl_err_set(err, KL_ERR_LIMIT, "load id %.40s... is too long to follow", newest);
    snprintf(out, cap, "%s1", newest);
    return KL_OK;
}
