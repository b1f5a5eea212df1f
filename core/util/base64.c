/*
 * Base64 encoder and strict decoder. Table-driven; the decoder is on the
 * GetRecords hot path, so it works four characters at a time.
 */
#include "core/util/base64.h"

#include <stdint.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0..63 for alphabet characters, 64 for anything else; 16 a row. */
/* clang-format off */
static const unsigned char decode_table[256] = {
#define X 64
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, 62, X, X, X, 63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, X, X, X, X, X, X,
    X, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, X, X, X, X, X,
    X, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
    X, X, X, X, X, X, X, X, X, X, X, X, X, X, X, X,
#undef X
};
/* clang-format on */

size_t kl_base64_encoded_size(size_t n)
{
    return (n + 2) / 3 * 4 + 1;
}

size_t kl_base64_decoded_max(size_t n)
{
    return (n + 3) / 4 * 3;
}

size_t kl_base64_encode(const void *in, size_t n, char *out, bool pad)
{
    const unsigned char *p = in;
    size_t i = 0, o = 0;

    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        if (pad) {
            out[o++] = '=';
            out[o++] = '=';
        }
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        if (pad)
            out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

int kl_base64_decode(const char *in, size_t n, unsigned char *out, size_t *out_len)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t i = 0, o = 0, rest;

    /* Strip up to two '=' of padding; the remaining length decides the tail. */
    if (n > 0 && p[n - 1] == '=')
        n--;
    if (n > 0 && p[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return -1;
    for (; i + 4 <= n; i += 4) {
        unsigned a = decode_table[p[i]], b = decode_table[p[i + 1]];
        unsigned c = decode_table[p[i + 2]], d = decode_table[p[i + 3]];
        if ((a | b | c | d) & 64)
            return -1;
        uint32_t v = a << 18 | b << 12 | c << 6 | d;
        out[o++] = (unsigned char)(v >> 16);
        out[o++] = (unsigned char)(v >> 8);
        out[o++] = (unsigned char)v;
    }
    rest = n - i;
    if (rest >= 2) {
        unsigned a = decode_table[p[i]], b = decode_table[p[i + 1]];
        unsigned c = rest == 3 ? decode_table[p[i + 2]] : 0;
        if ((a | b | c) & 64)
            return -1;
        uint32_t v = a << 18 | b << 12 | c << 6;
        out[o++] = (unsigned char)(v >> 16);
        if (rest == 3)
            out[o++] = (unsigned char)(v >> 8);
    }
    *out_len = o;
    return 0;
}
