/*
 * xoshiro-style generator with thread-local state, seeded once per thread
 * from getrandom(). Used for backoff jitter only.
 */
#include "core/util/rand.h"

#include <sys/random.h>
#include <time.h>

static _Thread_local uint64_t state[2];
static _Thread_local int seeded;

static void seed(void)
{
    if (getrandom(state, sizeof state, 0) != (long)sizeof state) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        state[0] = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ULL;
        state[1] = (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&ts;
    }
    if (state[0] == 0 && state[1] == 0)
        state[1] = 1;
    seeded = 1;
}

uint64_t kl_rand_u64(void)
{
    uint64_t s0, s1, result;
    if (!seeded)
        seed();
    /* xorshift128+ */
    s1 = state[0];
    s0 = state[1];
    result = s0 + s1;
    state[0] = s0;
    s1 ^= s1 << 23;
    state[1] = s1 ^ s0 ^ (s1 >> 18) ^ (s0 >> 5);
    return result;
}

uint64_t kl_rand_below(uint64_t bound)
{
    return bound == 0 ? 0 : kl_rand_u64() % bound;
}
