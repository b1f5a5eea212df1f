/*
 * Decimal integers (see intfmt.h): two digits per division.
 */
#include "core/util/intfmt.h"

#include <string.h>

static const char DIGITS2[] = "00010203040506070809101112131415161718192021222324252627282930313233"
                              "34353637383940414243444546474849505152535455565758596061626364656667"
                              "6869707172737475767778798081828384858687888990919293949596979899";

size_t kl_fmt_u64(char *out, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof tmp;
    size_t n;

    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        i -= 2;
        memcpy(tmp + i, DIGITS2 + 2 * (size_t)r, 2);
    }
    if (v >= 10) {
        i -= 2;
        memcpy(tmp + i, DIGITS2 + 2 * (size_t)v, 2);
    } else {
        tmp[--i] = (char)('0' + v);
    }
    n = sizeof tmp - i;
    memcpy(out, tmp + i, n);
    return n;
}

size_t kl_fmt_i64(char *out, int64_t v)
{
    if (v < 0) {
        out[0] = '-';
        /* Negating in unsigned arithmetic keeps INT64_MIN exact. */
        return 1 + kl_fmt_u64(out + 1, (uint64_t)0 - (uint64_t)v);
    }
    return kl_fmt_u64(out, (uint64_t)v);
}

char *kl_fmt_2digits(char *out, unsigned v)
{
    memcpy(out, DIGITS2 + 2 * (size_t)(v % 100), 2);
    return out + 2;
}
