/*
 * Base64: RFC 4648 §10 test vectors, padding-free encoding, strict decoding.
 */
#include "tests/support/test_support.h"
#include "core/util/base64.h"

#include <string.h>

static const char *const rfc4648[][2] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void encodes_rfc4648_vectors(void **state)
{
    char out[32];
    (void)state;
    for (size_t i = 0; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
        size_t n = kl_base64_encode(rfc4648[i][0], strlen(rfc4648[i][0]), out, true);
        assert_string_equal(out, rfc4648[i][1]);
        assert_int_equal(n, strlen(rfc4648[i][1]));
        assert_true(kl_base64_encoded_size(strlen(rfc4648[i][0])) > n);
    }
    kl_base64_encode("fo", 2, out, false);
    assert_string_equal(out, "Zm8");
}

static void decodes_with_and_without_padding(void **state)
{
    unsigned char out[32];
    size_t len;
    (void)state;
    for (size_t i = 0; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
        const char *enc = rfc4648[i][1];
        assert_int_equal(kl_base64_decode(enc, strlen(enc), out, &len), 0);
        assert_int_equal(len, strlen(rfc4648[i][0]));
        assert_memory_equal(out, rfc4648[i][0], len);
        /* the same without '=' */
        size_t bare = strcspn(enc, "=");
        assert_int_equal(kl_base64_decode(enc, bare, out, &len), 0);
        assert_int_equal(len, strlen(rfc4648[i][0]));
    }
}

static void round_trips_binary(void **state)
{
    unsigned char in[256], back[256];
    char enc[400];
    size_t len;
    (void)state;
    for (int i = 0; i < 256; i++)
        in[i] = (unsigned char)(255 - i);
    for (size_t n = 0; n <= sizeof in; n += 37) {
        size_t e = kl_base64_encode(in, n, enc, true);
        assert_true(kl_base64_decoded_max(e) >= n);
        assert_int_equal(kl_base64_decode(enc, e, back, &len), 0);
        assert_int_equal(len, n);
        assert_memory_equal(back, in, n);
    }
}

static void rejects_malformed_input(void **state)
{
    static const char *const bad[] = {"Zm9v!", "Z", "Zm9vY", "Zm 9v", "Zm9v\n", "====", "-_8="};
    unsigned char out[16];
    size_t len;
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(kl_base64_decode(bad[i], strlen(bad[i]), out, &len), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encodes_rfc4648_vectors),
        cmocka_unit_test(decodes_with_and_without_padding),
        cmocka_unit_test(round_trips_binary),
        cmocka_unit_test(rejects_malformed_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
