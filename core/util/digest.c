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
static inline uint64_t rotl(uint64_t x, unsigned n)
{
    return n ? (x << n) | (x >> (64 - n)) : x;
}

/* Keccak-f[1600] with every step written out (the hot path hashes a row
 * id per row): lanes a[x + 5y]; theta, rho and pi into b, then chi and iota. */
static void keccak_f(uint64_t a[25])
{
    uint64_t b[25], c0, c1, c2, c3, c4, d0, d1, d2, d3, d4;
    for (int r = 0; r < 24; r++) {
        c0 = a[0] ^ a[5] ^ a[10] ^ a[15] ^ a[20];
        c1 = a[1] ^ a[6] ^ a[11] ^ a[16] ^ a[21];
        c2 = a[2] ^ a[7] ^ a[12] ^ a[17] ^ a[22];
        c3 = a[3] ^ a[8] ^ a[13] ^ a[18] ^ a[23];
        c4 = a[4] ^ a[9] ^ a[14] ^ a[19] ^ a[24];
        d0 = c4 ^ rotl(c1, 1);
        d1 = c0 ^ rotl(c2, 1);
        d2 = c1 ^ rotl(c3, 1);
        d3 = c2 ^ rotl(c4, 1);
        d4 = c3 ^ rotl(c0, 1);
        b[0] = rotl(a[0] ^ d0, 0);
        b[10] = rotl(a[1] ^ d1, 1);
        b[20] = rotl(a[2] ^ d2, 62);
        b[5] = rotl(a[3] ^ d3, 28);
        b[15] = rotl(a[4] ^ d4, 27);
        b[16] = rotl(a[5] ^ d0, 36);
        b[1] = rotl(a[6] ^ d1, 44);
        b[11] = rotl(a[7] ^ d2, 6);
        b[21] = rotl(a[8] ^ d3, 55);
        b[6] = rotl(a[9] ^ d4, 20);
        b[7] = rotl(a[10] ^ d0, 3);
        b[17] = rotl(a[11] ^ d1, 10);
        b[2] = rotl(a[12] ^ d2, 43);
        b[12] = rotl(a[13] ^ d3, 25);
        b[22] = rotl(a[14] ^ d4, 39);
        b[23] = rotl(a[15] ^ d0, 41);
        b[8] = rotl(a[16] ^ d1, 45);
        b[18] = rotl(a[17] ^ d2, 15);
        b[3] = rotl(a[18] ^ d3, 21);
        b[13] = rotl(a[19] ^ d4, 8);
        b[14] = rotl(a[20] ^ d0, 18);
        b[24] = rotl(a[21] ^ d1, 2);
        b[9] = rotl(a[22] ^ d2, 61);
        b[19] = rotl(a[23] ^ d3, 56);
        b[4] = rotl(a[24] ^ d4, 14);
        a[0] = b[0] ^ (~b[1] & b[2]);
        a[1] = b[1] ^ (~b[2] & b[3]);
        a[2] = b[2] ^ (~b[3] & b[4]);
        a[3] = b[3] ^ (~b[4] & b[0]);
        a[4] = b[4] ^ (~b[0] & b[1]);
        a[5] = b[5] ^ (~b[6] & b[7]);
        a[6] = b[6] ^ (~b[7] & b[8]);
        a[7] = b[7] ^ (~b[8] & b[9]);
        a[8] = b[8] ^ (~b[9] & b[5]);
        a[9] = b[9] ^ (~b[5] & b[6]);
        a[10] = b[10] ^ (~b[11] & b[12]);
        a[11] = b[11] ^ (~b[12] & b[13]);
        a[12] = b[12] ^ (~b[13] & b[14]);
        a[13] = b[13] ^ (~b[14] & b[10]);
        a[14] = b[14] ^ (~b[10] & b[11]);
        a[15] = b[15] ^ (~b[16] & b[17]);
        a[16] = b[16] ^ (~b[17] & b[18]);
        a[17] = b[17] ^ (~b[18] & b[19]);
        a[18] = b[18] ^ (~b[19] & b[15]);
        a[19] = b[19] ^ (~b[15] & b[16]);
        a[20] = b[20] ^ (~b[21] & b[22]);
        a[21] = b[21] ^ (~b[22] & b[23]);
        a[22] = b[22] ^ (~b[23] & b[24]);
        a[23] = b[23] ^ (~b[24] & b[20]);
        a[24] = b[24] ^ (~b[20] & b[21]);
        a[0] ^= round_constants[r];
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
