/* test_common.c — errors, SHA-256, the capped buffer, durations, sizes, edit distance. */
#include "unit.h"
#include "common/error.h"
#include "common/sha256.h"
#include "common/util.h"

TEST(error_table) {
    CHECK_STR(weir_strerror(WEIR_OK), "success");
    CHECK_STR(weir_errname(WEIR_ELIMIT), "ELIMIT");
    CHECK_STR(weir_strerror(-9999), "unknown error");
}

TEST(sha256_vectors) {
    char hex[65];
    weir_sha256_hex("", 0, hex);
    CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    weir_sha256_hex("abc", 3, hex);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    weir_sha256_hex(two, strlen(two), hex);
    CHECK_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* a million 'a', fed in uneven pieces to exercise the block boundary logic */
    weir_sha256_t c;
    uint8_t d[32];
    char chunk[997];
    memset(chunk, 'a', sizeof chunk);
    weir_sha256_init(&c);
    size_t left = 1000000;
    while (left) {
        size_t n = left < sizeof chunk ? left : sizeof chunk;
        weir_sha256_update(&c, chunk, n);
        left -= n;
    }
    weir_sha256_final(&c, d);
    weir_hex(d, 32, hex);
    CHECK_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(buf_cap) {
    weir_buf_t b;
    weir_buf_init(&b, 10);
    CHECK_EQ(weir_buf_append(&b, "hello", 5), 0);
    CHECK_EQ(weir_buf_printf(&b, "%d", 12345), 0);
    CHECK_STR(b.data, "hello12345");
    CHECK_EQ(weir_buf_append(&b, "x", 1), WEIR_ELIMIT);
    CHECK_STR(b.data, "hello12345");
    weir_buf_free(&b);
}

TEST(durations) {
    int64_t ms;
    CHECK_EQ(weir_parse_duration("250ms", &ms), 0); CHECK_EQ(ms, 250);
    CHECK_EQ(weir_parse_duration("30s", &ms), 0); CHECK_EQ(ms, 30000);
    CHECK_EQ(weir_parse_duration("1h30m", &ms), 0); CHECK_EQ(ms, 5400000);
    CHECK_EQ(weir_parse_duration("2d", &ms), 0); CHECK_EQ(ms, 172800000);
    CHECK_EQ(weir_parse_duration("1m30s", &ms), 0); CHECK_EQ(ms, 90000);
    CHECK_EQ(weir_parse_duration("", &ms), WEIR_EINVAL);
    CHECK_EQ(weir_parse_duration("10", &ms), WEIR_EINVAL);
    CHECK_EQ(weir_parse_duration("5 m", &ms), WEIR_EINVAL);
    CHECK_EQ(weir_parse_duration("30m1h", &ms), WEIR_EINVAL);
    CHECK_EQ(weir_parse_duration("-5s", &ms), WEIR_EINVAL);
    CHECK_EQ(weir_parse_duration("5w", &ms), WEIR_EINVAL);
}

TEST(sizes) {
    int64_t b;
    CHECK_EQ(weir_parse_size("512", &b), 0); CHECK_EQ(b, 512);
    CHECK_EQ(weir_parse_size("4GiB", &b), 0); CHECK_EQ(b, 4294967296LL);
    CHECK_EQ(weir_parse_size("100MB", &b), 0); CHECK_EQ(b, 100000000);
    CHECK_EQ(weir_parse_size("1.5KiB", &b), 0); CHECK_EQ(b, 1536);
    CHECK_EQ(weir_parse_size("4 GiB", &b), WEIR_EINVAL);
    CHECK_EQ(weir_parse_size("lots", &b), WEIR_EINVAL);
}

TEST(edit_distance) {
    CHECK_EQ(weir_edit_distance("ingest", "ingst", 3), 1);
    CHECK_EQ(weir_edit_distance("train", "train", 3), 0);
    CHECK_EQ(weir_edit_distance("kitten", "sitting", 5), 3);
    CHECK_EQ(weir_edit_distance("a", "completely-different", 3), 4);
}

UNIT_MAIN(common, CASE(error_table), CASE(sha256_vectors), CASE(buf_cap), CASE(durations), CASE(sizes),
          CASE(edit_distance))
