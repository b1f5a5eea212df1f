/*
 * SHAKE-128 (FIPS 202) on a plain Keccak-f[1600] permutation, and the
 * base64 spelling dlt gives its digests. Our own rather than OpenSSL's EVP:
 * a row id is one permutation of a short input, and EVP's per-call fetch,
 * context and dispatch cost more than the permutation itself.
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
#define ROL(x, n) (((x) << (n)) | ((x) >> (64 - (n))))

/* One round from the 25 lanes named A00..A24 (lane x + 5y) into E00..E24:
 * theta, then rho and pi gather each output row's five lanes into B0..B4,
 * chi and iota write the row. Two rounds are one loop step with A and E
 * swapped, so the state stays in named locals the compiler can keep in
 * registers (an array version was 25 % slower). */
#define KECCAK_ROUND(A, E, rc)                                                                     \
    do {                                                                                           \
        uint64_t C0 = A##00 ^ A##05 ^ A##10 ^ A##15 ^ A##20;                                       \
        uint64_t C1 = A##01 ^ A##06 ^ A##11 ^ A##16 ^ A##21;                                       \
        uint64_t C2 = A##02 ^ A##07 ^ A##12 ^ A##17 ^ A##22;                                       \
        uint64_t C3 = A##03 ^ A##08 ^ A##13 ^ A##18 ^ A##23;                                       \
        uint64_t C4 = A##04 ^ A##09 ^ A##14 ^ A##19 ^ A##24;                                       \
        uint64_t D0 = C4 ^ ROL(C1, 1), D1 = C0 ^ ROL(C2, 1), D2 = C1 ^ ROL(C3, 1);                 \
        uint64_t D3 = C2 ^ ROL(C4, 1), D4 = C3 ^ ROL(C0, 1);                                       \
        uint64_t B0, B1, B2, B3, B4;                                                               \
        B0 = A##00 ^ D0;                                                                           \
        B1 = ROL(A##06 ^ D1, 44);                                                                  \
        B2 = ROL(A##12 ^ D2, 43);                                                                  \
        B3 = ROL(A##18 ^ D3, 21);                                                                  \
        B4 = ROL(A##24 ^ D4, 14);                                                                  \
        CHI_ROW(E##00, E##01, E##02, E##03, E##04);                                                \
        E##00 ^= (rc);                                                                             \
        B0 = ROL(A##03 ^ D3, 28);                                                                  \
        B1 = ROL(A##09 ^ D4, 20);                                                                  \
        B2 = ROL(A##10 ^ D0, 3);                                                                   \
        B3 = ROL(A##16 ^ D1, 45);                                                                  \
        B4 = ROL(A##22 ^ D2, 61);                                                                  \
        CHI_ROW(E##05, E##06, E##07, E##08, E##09);                                                \
        B0 = ROL(A##01 ^ D1, 1);                                                                   \
        B1 = ROL(A##07 ^ D2, 6);                                                                   \
        B2 = ROL(A##13 ^ D3, 25);                                                                  \
        B3 = ROL(A##19 ^ D4, 8);                                                                   \
        B4 = ROL(A##20 ^ D0, 18);                                                                  \
        CHI_ROW(E##10, E##11, E##12, E##13, E##14);                                                \
        B0 = ROL(A##04 ^ D4, 27);                                                                  \
        B1 = ROL(A##05 ^ D0, 36);                                                                  \
        B2 = ROL(A##11 ^ D1, 10);                                                                  \
        B3 = ROL(A##17 ^ D2, 15);                                                                  \
        B4 = ROL(A##23 ^ D3, 56);                                                                  \
        CHI_ROW(E##15, E##16, E##17, E##18, E##19);                                                \
        B0 = ROL(A##02 ^ D2, 62);                                                                  \
        B1 = ROL(A##08 ^ D3, 55);                                                                  \
        B2 = ROL(A##14 ^ D4, 39);                                                                  \
        B3 = ROL(A##15 ^ D0, 41);                                                                  \
        B4 = ROL(A##21 ^ D1, 2);                                                                   \
        CHI_ROW(E##20, E##21, E##22, E##23, E##24);                                                \
    } while (0)

#define CHI_ROW(e0, e1, e2, e3, e4)                                                                \
    do {                                                                                           \
        (e0) = B0 ^ (~B1 & B2);                                                                    \
        (e1) = B1 ^ (~B2 & B3);                                                                    \
        (e2) = B2 ^ (~B3 & B4);                                                                    \
        (e3) = B3 ^ (~B4 & B0);                                                                    \
        (e4) = B4 ^ (~B0 & B1);                                                                    \
    } while (0)

#define LANES(A)                                                                                   \
    A##00, A##01, A##02, A##03, A##04, A##05, A##06, A##07, A##08, A##09, A##10, A##11, A##12,     \
        A##13, A##14, A##15, A##16, A##17, A##18, A##19, A##20, A##21, A##22, A##23, A##24

/* On x86-64 a second copy is built for CPUs with BMI1/BMI2 (andn, rorx:
 * about 20 % faster here), picked once at load time; elsewhere one copy. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define KECCAK_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
#endif
#ifndef KECCAK_CLONES
#define KECCAK_CLONES
#endif

/* Keccak-f[1600] over the state s[x + 5y]. */
KECCAK_CLONES static void keccak_f(uint64_t s[25])
{
    uint64_t a00 = s[0], a01 = s[1], a02 = s[2], a03 = s[3], a04 = s[4], a05 = s[5], a06 = s[6],
             a07 = s[7], a08 = s[8], a09 = s[9], a10 = s[10], a11 = s[11], a12 = s[12], a13 = s[13],
             a14 = s[14], a15 = s[15], a16 = s[16], a17 = s[17], a18 = s[18], a19 = s[19],
             a20 = s[20], a21 = s[21], a22 = s[22], a23 = s[23], a24 = s[24];
    uint64_t LANES(e);

    for (int r = 0; r < 24; r += 2) {
        KECCAK_ROUND(a, e, round_constants[r]);
        KECCAK_ROUND(e, a, round_constants[r + 1]);
    }
    s[0] = a00;
    s[1] = a01;
    s[2] = a02;
    s[3] = a03;
    s[4] = a04;
    s[5] = a05;
    s[6] = a06;
    s[7] = a07;
    s[8] = a08;
    s[9] = a09;
    s[10] = a10;
    s[11] = a11;
    s[12] = a12;
    s[13] = a13;
    s[14] = a14;
    s[15] = a15;
    s[16] = a16;
    s[17] = a17;
    s[18] = a18;
    s[19] = a19;
    s[20] = a20;
    s[21] = a21;
    s[22] = a22;
    s[23] = a23;
    s[24] = a24;
}

/* A little-endian 64-bit lane at p (one load where the host is little-endian). */
static inline uint64_t load_lane(const unsigned char *p)
{
    uint64_t lane = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&lane, p, 8);
#else
    for (unsigned b = 0; b < 8; b++)
        lane |= (uint64_t)p[b] << (8 * b);
#endif
    return lane;
}

/* XORs one RATE-byte block into the state. */
static void absorb_block(uint64_t st[25], const unsigned char *p)
{
    for (size_t w = 0; w < RATE / 8; w++)
        st[w] ^= load_lane(p + 8 * w);
}

void kl_shake128(const void *const *parts, const size_t *lens, size_t n, unsigned char *out,
                 size_t out_len)
{
    uint64_t st[25];
    unsigned char block[RATE];
    size_t pos = 0;

    memset(st, 0, sizeof st);
    for (size_t k = 0; k < n; k++) {
        const unsigned char *p = parts[k];
        size_t len = lens[k];
        while (len > 0) {
            size_t take = RATE - pos < len ? RATE - pos : len;
            memcpy(block + pos, p, take);
            pos += take;
            p += take;
            len -= take;
            if (pos == RATE) {
                absorb_block(st, block);
                keccak_f(st);
                pos = 0;
            }
        }
    }
    memset(block + pos, 0, RATE - pos);
    block[pos] ^= 0x1F;
    block[RATE - 1] ^= 0x80;
    absorb_block(st, block);
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
