/*
 * dlt's default naming convention, snake_case, as its Python code computes
 * it: identifiers, `__` paths, and shortening to a destination's length with
 * a hash tag in the middle. Lengths count code points, as Python does.
 * Nothing here knows about tables or rows.
 */
#ifndef KL_NORMALIZE_NAMING_H
#define KL_NORMALIZE_NAMING_H

#include <stdbool.h>
#include <stddef.h>

#define KL_NAMING_MAX_LENGTH 63 /* dlt's max_identifier_length for PostgreSQL */
#define KL_NAMING_PATH_SEPARATOR "__"
/* An output buffer: max_length code points of up to 4 bytes, and a NUL. */
#define KL_NAME_CAP 256
/* What dlt uses for a key that is empty or only whitespace. */
#define KL_NAMING_EMPTY_KEY "_empty"

/* normalize_identifier: strips Python whitespace, maps `+-*@|` to `x_xal`,
 * replaces runs of other characters than ASCII letters, `_` and Unicode
 * decimal digits with `_`, breaks camelCase, lower-cases, prefixes a leading
 * digit with `_`, turns trailing `_` into `x`, collapses `__`, then shortens
 * to `max_length` code points (0: no limit) with a tag computed over the
 * stripped input. KL_ERR_INVALID for an empty or whitespace-only identifier
 * or invalid UTF-8 (dlt raises). Writes a NUL-terminated name into `out`. */
int kl_naming_normalize_identifier(const char *ident, size_t len, size_t max_length,
                                   char out[KL_NAME_CAP], size_t *out_len);

/* normalize_path: splits on `__`, drops empty or whitespace components,
 * normalizes each, joins with `__` and shortens the whole with a tag over
 * the original path. May be empty (a path such as "__"). Also dlt's
 * normalize_tables_path for this convention. */
int kl_naming_normalize_path(const char *path, size_t len, size_t max_length, char out[KL_NAME_CAP],
                             size_t *out_len);

/* shorten_fragments: joins already normalized identifiers with `__`,
 * skipping empty ones, and shortens the result with a tag over the joined
 * text. */
int kl_naming_shorten_fragments(const char *const *idents, const size_t *lens, size_t n,
                                size_t max_length, char out[KL_NAME_CAP], size_t *out_len);

/* shorten_identifier: when `normalized` has more than `max_length` code
 * points, keeps its head and tail around a 6-character tag (SHAKE-128 of
 * `ident`, 4 bytes, base64 with '/' and '+' as 'a' and 'b', lower case). */
int kl_naming_shorten_identifier(const char *normalized, size_t nlen, const char *ident,
                                 size_t ilen, size_t max_length, char out[KL_NAME_CAP],
                                 size_t *out_len);

/* dlt's test for keys it replaces with "_empty": empty or all whitespace
 * (Python's str.isspace). */
bool kl_naming_is_blank(const char *s, size_t len);

/* The longest prefix of a UTF-8 name that fits `max_bytes` without cutting a
 * character: what PostgreSQL keeps of an identifier over 63 bytes (only
 * names with non-ASCII digits can be longer than 63 bytes). */
size_t kl_naming_clip_bytes(const char *name, size_t len, size_t max_bytes);

#endif
