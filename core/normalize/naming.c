/*
 * snake_case on code points: decode UTF-8, apply dlt's translation table and
 * regular expressions as Python's `re` evaluates them (left to right,
 * non-overlapping; `\d` is any Unicode decimal digit), encode again.
 * Shortening and tags follow dlt's NamingConvention base class.
 */
#include "core/normalize/naming.h"
#include "core/util/digest.h"
#include "core/util/err.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Unicode category Nd outside ASCII (Unicode 14, Python 3.11); every range
 * starts at a digit zero and spans whole sets of ten. */
static const uint32_t nd_ranges[][2] = {
    {0x660, 0x669},     {0x6f0, 0x6f9},     {0x7c0, 0x7c9},     {0x966, 0x96f},
    {0x9e6, 0x9ef},     {0xa66, 0xa6f},     {0xae6, 0xaef},     {0xb66, 0xb6f},
    {0xbe6, 0xbef},     {0xc66, 0xc6f},     {0xce6, 0xcef},     {0xd66, 0xd6f},
    {0xde6, 0xdef},     {0xe50, 0xe59},     {0xed0, 0xed9},     {0xf20, 0xf29},
    {0x1040, 0x1049},   {0x1090, 0x1099},   {0x17e0, 0x17e9},   {0x1810, 0x1819},
    {0x1946, 0x194f},   {0x19d0, 0x19d9},   {0x1a80, 0x1a89},   {0x1a90, 0x1a99},
    {0x1b50, 0x1b59},   {0x1bb0, 0x1bb9},   {0x1c40, 0x1c49},   {0x1c50, 0x1c59},
    {0xa620, 0xa629},   {0xa8d0, 0xa8d9},   {0xa900, 0xa909},   {0xa9d0, 0xa9d9},
    {0xa9f0, 0xa9f9},   {0xaa50, 0xaa59},   {0xabf0, 0xabf9},   {0xff10, 0xff19},
    {0x104a0, 0x104a9}, {0x10d30, 0x10d39}, {0x11066, 0x1106f}, {0x110f0, 0x110f9},
    {0x11136, 0x1113f}, {0x111d0, 0x111d9}, {0x112f0, 0x112f9}, {0x11450, 0x11459},
    {0x114d0, 0x114d9}, {0x11650, 0x11659}, {0x116c0, 0x116c9}, {0x11730, 0x11739},
    {0x118e0, 0x118e9}, {0x11950, 0x11959}, {0x11c50, 0x11c59}, {0x11d50, 0x11d59},
    {0x11da0, 0x11da9}, {0x16a60, 0x16a69}, {0x16ac0, 0x16ac9}, {0x16b50, 0x16b59},
    {0x1d7ce, 0x1d7ff}, {0x1e140, 0x1e149}, {0x1e2f0, 0x1e2f9}, {0x1e950, 0x1e959},
    {0x1fbf0, 0x1fbf9},
};

static bool is_digit(uint32_t c)
{
    if (c < 0x80)
        return c >= '0' && c <= '9';
    size_t lo = 0, hi = sizeof nd_ranges / sizeof nd_ranges[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < nd_ranges[mid][0])
            hi = mid;
        else if (c > nd_ranges[mid][1])
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

/* Python's str.isspace(). */
static bool is_space(uint32_t c)
{
    if (c < 0x80)
        return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20);
    return c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 ||
           c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

static bool is_upper(uint32_t c)
{
    return c >= 'A' && c <= 'Z';
}

static bool is_lower(uint32_t c)
{
    return c >= 'a' && c <= 'z';
}

/* A growable array of code points. */
struct cps {
    uint32_t *v;
    size_t n, cap;
};

static int push(struct cps *a, uint32_t c)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        uint32_t *v = realloc(a->v, cap * sizeof *v);
        if (v == NULL)
            return KL_ERR_NOMEM;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = c;
    return KL_OK;
}

/* Decodes UTF-8; KL_ERR_INVALID on malformed input. */
static int decode(const char *s, size_t len, struct cps *out)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        uint32_t c = *p;
        size_t n = 1;
        if (c >= 0x80) {
            if (c >= 0xC2 && c <= 0xDF)
                n = 2, c &= 0x1F;
            else if (c >= 0xE0 && c <= 0xEF)
                n = 3, c &= 0x0F;
            else if (c >= 0xF0 && c <= 0xF4)
                n = 4, c &= 0x07;
            else
                return KL_ERR_INVALID;
            if ((size_t)(end - p) < n)
                return KL_ERR_INVALID;
            for (size_t k = 1; k < n; k++) {
                if ((p[k] & 0xC0) != 0x80)
                    return KL_ERR_INVALID;
                c = (c << 6) | (p[k] & 0x3F);
            }
            if ((n == 3 && (c < 0x800 || (c >= 0xD800 && c <= 0xDFFF))) ||
                (n == 4 && (c < 0x10000 || c > 0x10FFFF)))
                return KL_ERR_INVALID;
        }
        if (push(out, c) != KL_OK)
            return KL_ERR_NOMEM;
        p += n;
    }
    return KL_OK;
}

static size_t encode1(uint32_t c, char *w)
{
    if (c < 0x80) {
        w[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        w[0] = (char)(0xC0 | (c >> 6));
        w[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        w[0] = (char)(0xE0 | (c >> 12));
        w[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        w[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    w[0] = (char)(0xF0 | (c >> 18));
    w[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    w[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    w[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* dlt's _compute_tag with the default collision probability 0.001:
 * int(3 * log2(1000) // 8 + 1) = 4 bytes. */
static void compute_tag(const char *ident, size_t len, char tag[16])
{
    char b64[16];
    size_t n = kl_digest_b64(ident, len, 4, b64);
    for (size_t i = 0; i < n; i++) {
        char c = b64[i];
        if (c == '/')
            c = 'a';
        else if (c == '+')
            c = 'b';
        else if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        tag[i] = c;
    }
    tag[n] = '\0';
}

/* Encodes code points [0, n) shortened to max_length with a tag over
 * `ident`, into out. */
static int finish(const uint32_t *v, size_t n, const char *ident, size_t ilen, size_t max_length,
                  char out[KL_NAME_CAP], size_t *out_len)
{
    size_t o = 0;
    if (max_length && n > max_length) {
        char tag[16];
        compute_tag(ident, ilen, tag);
        size_t tl = strlen(tag);
        if (tl > max_length || max_length > (KL_NAME_CAP - 1) / 4)
            return KL_ERR_INVALID;
        size_t remaining = max_length - tl;
        size_t head = remaining / 2 + remaining % 2, tail = remaining / 2;
        /* The first `head` and the last `tail` code points with the tag
         * between them (head + tail < n: the tag always goes in). */
        for (size_t i = 0; i < n; i++) {
            if (i == head) {
                memcpy(out + o, tag, tl);
                o += tl;
            }
            if (i < head || i >= n - tail)
                o += encode1(v[i], out + o);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            if (o + 4 >= KL_NAME_CAP)
                return KL_ERR_LIMIT;
            o += encode1(v[i], out + o);
        }
    }
    out[o] = '\0';
    *out_len = o;
    return KL_OK;
}

/* The snake_case transformation of an already stripped identifier. */
static int snake(const uint32_t *in, size_t n, struct cps *out)
{
    struct cps a = {0}, b = {0};
    int rc = KL_OK;
    bool run = false;

    /* translate "+-*@|" -> "x_xal", then runs of characters other than
     * ASCII letters, digits (any Nd) and "_" -> "_" */
    for (size_t i = 0; i < n; i++) {
        uint32_t c = in[i];
        switch (c) {
        case '+':
            c = 'x';
            break;
        case '-':
            c = '_';
            break;
        case '*':
            c = 'x';
            break;
        case '@':
            c = 'a';
            break;
        case '|':
            c = 'l';
            break;
        default:
            break;
        }
        bool keep = is_upper(c) || is_lower(c) || c == '_' || is_digit(c);
        if (keep) {
            run = false;
            if ((rc = push(&a, c)) != KL_OK)
                goto cleanup;
        } else if (!run) {
            /* one "_" for the whole run of other characters */
            run = true;
            if ((rc = push(&a, '_')) != KL_OK)
                goto cleanup;
        }
    }

    /* _SNAKE_CASE_BREAK_1: "([^_])([A-Z][a-z]+)" -> "\1_\2" */
    for (size_t i = 0; i < a.n;) {
        if (a.v[i] != '_' && i + 2 < a.n && is_upper(a.v[i + 1]) && is_lower(a.v[i + 2])) {
            size_t j = i + 3;
            while (j < a.n && is_lower(a.v[j]))
                j++;
            if ((rc = push(&b, a.v[i])) != KL_OK || (rc = push(&b, '_')) != KL_OK)
                goto cleanup;
            for (size_t k = i + 1; k < j; k++) {
                if ((rc = push(&b, a.v[k])) != KL_OK)
                    goto cleanup;
            }
            i = j;
        } else {
            if ((rc = push(&b, a.v[i])) != KL_OK)
                goto cleanup;
            i++;
        }
    }

    /* _SNAKE_CASE_BREAK_2: "([a-z0-9])([A-Z])" -> "\1_\2", then lower() */
    a.n = 0;
    for (size_t i = 0; i < b.n;) {
        uint32_t c = b.v[i];
        if ((is_lower(c) || (c >= '0' && c <= '9')) && i + 1 < b.n && is_upper(b.v[i + 1])) {
            if ((rc = push(&a, c)) != KL_OK || (rc = push(&a, '_')) != KL_OK ||
                (rc = push(&a, b.v[i + 1] + 32)) != KL_OK)
                goto cleanup;
            i += 2;
        } else {
            if ((rc = push(&a, is_upper(c) ? c + 32 : c)) != KL_OK)
                goto cleanup;
            i++;
        }
    }

    /* leading digits are prefixed with "_" */
    out->n = 0;
    if (a.n > 0 && is_digit(a.v[0]) && (rc = push(out, '_')) != KL_OK)
        goto cleanup;
    /* trailing "_" become "x", then runs of "_" collapse to one */
    size_t end = a.n, strip = 0;
    while (end > 0 && a.v[end - 1] == '_') {
        end--;
        strip++;
    }
    for (size_t i = 0; i < end; i++) {
        if (a.v[i] == '_' && out->n > 0 && out->v[out->n - 1] == '_')
            continue;
        if ((rc = push(out, a.v[i])) != KL_OK)
            goto cleanup;
    }
    for (size_t i = 0; i < strip; i++) {
        if ((rc = push(out, 'x')) != KL_OK)
            goto cleanup;
    }

cleanup:
    free(a.v);
    free(b.v);
    return rc;
}

/* Normalizes into code points; `sb` and `se` get the byte range of the stripped input. */
static int normalize_cps(const char *ident, size_t len, struct cps *out, size_t *sb, size_t *se)
{
    struct cps in = {0};
    int rc = decode(ident, len, &in);
    size_t s = 0, e;
    if (rc != KL_OK)
        goto cleanup;
    e = in.n;
    while (s < e && is_space(in.v[s]))
        s++;
    while (e > s && is_space(in.v[e - 1]))
        e--;
    if (s == e) {
        rc = KL_ERR_INVALID;
        goto cleanup;
    }
    /* byte offsets of the stripped part, for the tag */
    {
        size_t b = 0;
        char tmp[4];
        for (size_t i = 0; i < s; i++)
            b += encode1(in.v[i], tmp);
        *sb = b;
        for (size_t i = s; i < e; i++)
            b += encode1(in.v[i], tmp);
        *se = b;
    }
    rc = snake(in.v + s, e - s, out);
cleanup:
    free(in.v);
    return rc;
}

int kl_naming_normalize_identifier(const char *ident, size_t len, size_t max_length,
                                   char out[KL_NAME_CAP], size_t *out_len)
{
    struct cps norm = {0};
    size_t sb = 0, se = 0;
    int rc = normalize_cps(ident, len, &norm, &sb, &se);
    if (rc == KL_OK)
        rc = finish(norm.v, norm.n, ident + sb, se - sb, max_length, out, out_len);
    free(norm.v);
    return rc;
}

int kl_naming_shorten_identifier(const char *normalized, size_t nlen, const char *ident,
                                 size_t ilen, size_t max_length, char out[KL_NAME_CAP],
                                 size_t *out_len)
{
    struct cps v = {0};
    int rc = decode(normalized, nlen, &v);
    if (rc == KL_OK)
        rc = finish(v.v, v.n, ident, ilen, max_length, out, out_len);
    free(v.v);
    return rc;
}

/* Appends "__" + code points of a normalized identifier to `path`. */
static int join(struct cps *path, const uint32_t *v, size_t n)
{
    int rc = KL_OK;
    if (n == 0)
        return KL_OK;
    if (path->n > 0) {
        /* the separator, "__" */
        rc = push(path, '_');
        if (rc == KL_OK)
            rc = push(path, '_');
    }
    for (size_t i = 0; i < n && rc == KL_OK; i++)
        rc = push(path, v[i]);
    return rc;
}

int kl_naming_normalize_path(const char *p, size_t len, size_t max_length, char out[KL_NAME_CAP],
                             size_t *out_len)
{
    struct cps path = {0}, comp = {0};
    int rc = KL_OK;
    size_t i = 0;

    while (i <= len) {
        size_t j = i;
        while (j + 1 < len && !(p[j] == '_' && p[j + 1] == '_'))
            j++;
        if (j + 1 >= len)
            j = len;
        /* component [i, j) */
        if (!kl_naming_is_blank(p + i, j - i)) {
            char tmp[KL_NAME_CAP];
            size_t tl, sb = 0, se = 0;
            comp.n = 0;
            if ((rc = normalize_cps(p + i, j - i, &comp, &sb, &se)) != KL_OK)
                goto cleanup;
            /* each component is shortened on its own first */
            if ((rc = finish(comp.v, comp.n, p + i + sb, se - sb, max_length, tmp, &tl)) != KL_OK)
                goto cleanup;
            comp.n = 0;
            if ((rc = decode(tmp, tl, &comp)) != KL_OK ||
                (rc = join(&path, comp.v, comp.n)) != KL_OK)
                goto cleanup;
        }
        if (j >= len)
            break;
        i = j + 2;
    }
    rc = finish(path.v, path.n, p, len, max_length, out, out_len);
cleanup:
    free(path.v);
    free(comp.v);
    return rc;
}

int kl_naming_shorten_fragments(const char *const *idents, const size_t *lens, size_t n,
                                size_t max_length, char out[KL_NAME_CAP], size_t *out_len)
{
    struct cps path = {0}, comp = {0};
    char *joined = NULL;
    size_t jl = 0, cap = 0;
    int rc = KL_OK;

    for (size_t k = 0; k < n; k++) {
        if (kl_naming_is_blank(idents[k], lens[k]))
            continue;
        comp.n = 0;
        if ((rc = decode(idents[k], lens[k], &comp)) != KL_OK ||
            (rc = join(&path, comp.v, comp.n)) != KL_OK)
            goto cleanup;
        cap += lens[k] + 2;
    }
    joined = malloc(cap + 1);
    if (joined == NULL) {
        rc = KL_ERR_NOMEM;
        goto cleanup;
    }
    for (size_t k = 0; k < n; k++) {
        if (kl_naming_is_blank(idents[k], lens[k]))
            continue;
        if (jl > 0) {
            joined[jl++] = '_';
            joined[jl++] = '_';
        }
        memcpy(joined + jl, idents[k], lens[k]);
        jl += lens[k];
    }
    rc = finish(path.v, path.n, joined, jl, max_length, out, out_len);
cleanup:
    free(joined);
    free(path.v);
    free(comp.v);
    return rc;
}

bool kl_naming_is_blank(const char *s, size_t len)
{
    struct cps v = {0};
    bool blank = true;
    if (decode(s, len, &v) != KL_OK) {
        free(v.v);
        return false;
    }
    for (size_t i = 0; i < v.n && blank; i++)
        blank = is_space(v.v[i]);
    free(v.v);
    return blank;
}

size_t kl_naming_clip_bytes(const char *name, size_t len, size_t max_bytes)
{
    if (len <= max_bytes)
        return len;
    size_t n = max_bytes;
    while (n > 0 && ((unsigned char)name[n] & 0xC0) == 0x80)
        n--;
    return n;
}
