/*
 * SHAKE-128 (FIPS 202) on a plain Keccak-f[1600] permutation, and the
 * base64 spelling dlt gives its digests.
 */
#include "core/util/digest.h"
#include "core/util/base64.h"

#include <stdint.h>
#include <string.h>

#define RATE 168 /* SHAKE-128: 1600 - 2 * 128 bits */

static const uint64_t round_constants[24] = {
    0x0000000000000001ull, 0x0000000000008082ull, 0x800000000000808aull, 0x8000000080008000ull,
    0x000000000000808bull, 0x0000000080000001ull, 0x8000000080008081ull, 0x8000000000008009ull,
    0x000000000000008aull, 0x0000000000000088ull, 0x0000000080008009ull, 0x000000008000000aull,
    0x000000008000808bull, 0x800000000000008bull, 0x8000000000008089ull, 0x8000000000008003ull,
    0x8000000000008002ull, 0x8000000000000080ull, 0x000000000000800aull, 0x800000008000000aull,
    0x8000000080008081ull, 0x8000000000008080ull, 0x0000000080000001ull, 0x8000000080008008ull,
};
static const unsigned rho[24] = {1,  3,  6,  10, 15, 21, 28, 36, 45, 55, 2,  14,
                                 27, 41, 56, 8,  25, 43, 62, 18, 39, 61, 20, 44};
static const unsigned pi[24] = {10, 7,  11, 17, 18, 3, 5,  16, 8,  21, 24, 4,
                                15, 23, 19, 13, 12, 2, 20, 14, 22, 9,  6,  1};

static inline uint64_t rotl(uint64_t x, unsigned n)
{
    return (x << n) | (x >> (64 - n));
}

static void keccak_f(uint64_t st[25])
{
    uint64_t bc[5], t;
    for (int r = 0; r < 24; r++) {
        for (int i = 0; i < 5; i++)
            bc[i] = st[i] ^ st[i + 5] ^ st[i + 10] ^ st[i + 15] ^ st[i + 20];
        for (int i = 0; i < 5; i++) {
            t = bc[(i + 4) % 5] ^ rotl(bc[(i + 1) % 5], 1);
            for (int j = 0; j < 25; j += 5)
                st[j + i] ^= t;
        }
        t = st[1];
        for (int i = 0; i < 24; i++) {
            unsigned j = pi[i];
            uint64_t tmp = st[j];
            st[j] = rotl(t, rho[i]);
            t = tmp;
        }
        for (int j = 0; j < 25; j += 5) {
            for (int i = 0; i < 5; i++)
                bc[i] = st[j + i];
            for (int i = 0; i < 5; i++)
                st[j + i] ^= (~bc[(i + 1) % 5]) & bc[(i + 2) % 5];
        }
        st[0] ^= round_constants[r];
    }
}

/* The state is kept as bytes in little-endian lane order. */
static inline void absorb_byte(uint64_t st[25], size_t pos, unsigned char b)
{
    st[pos / 8] ^= (uint64_t)b << (8 * (pos % 8));
}

void kl_shake128(const void *const *parts, const size_t *lens, size_t n, unsigned char *out,
                 size_t out_len)
{
    uint64_t st[25];
    size_t pos = 0;

    memset(st, 0, sizeof st);
    for (size_t k = 0; k < n; k++) {
        const unsigned char *p = parts[k];
        size_t len = lens[k];
        while (len > 0) {
            if (pos == 0 && len >= RATE) {
                for (size_t w = 0; w < RATE / 8; w++) {
                    uint64_t lane = 0;
                    for (unsigned b = 0; b < 8; b++)
                        lane |= (uint64_t)p[w * 8 + b] << (8 * b);
                    st[w] ^= lane;
                }
                keccak_f(st);
                p += RATE;
                len -= RATE;
                continue;
            }
            absorb_byte(st, pos++, *p++);
            len--;
            if (pos == RATE) {
                keccak_f(st);
                pos = 0;
            }
        }
    }
    absorb_byte(st, pos, 0x1F);
    absorb_byte(st, RATE - 1, 0x80);
    keccak_f(st);
    for (size_t o = 0, i = 0; o < out_len; o++, i++) {
        if (i == RATE) {
            keccak_f(st);
            i = 0;
        }
        out[o] = (unsigned char)(st[i / 8] >> (8 * (i % 8)));
    }
}

size_t kl_digest_b64(const void *data, size_t len, size_t nbytes, char *out)
{
    unsigned char md[KL_DIGEST_MAX_BYTES];
    const void *parts[1] = {data};
    size_t lens[1] = {len};
    if (nbytes > sizeof md)
        nbytes = sizeof md;
    kl_shake128(parts, lens, 1, md, nbytes);
    return kl_base64_encode(md, nbytes, out, false);
}
