/* darkhash_test: shim/darkhash.c against known answers: MD2 test vectors from RFC 1319, and
 * the real CUDA 13 driver's answers to the runtime's driver check measured on the H200 with
 * test/gpu/integrity_truth.c (docs/bench/cuda-compat-2026-11-28b/export-summary.txt). */
#include <stdio.h>
#include <string.h>

#include "darkhash.h"

static int failures;

static void expect_hex(const char *what, const uint8_t got[16], const char *want)
{
    char hex[33];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", got[i]);
    if (strcmp(hex, want) != 0) {
        fprintf(stderr, "%s: got %s, want %s\n", what, hex, want);
        failures++;
    }
}

static void md2_of(const char *s, uint8_t out[16])
{
    struct shim_md2 m;
    shim_md2_init(&m);
    shim_md2_update(&m, s, strlen(s));
    shim_md2_final(&m, out);
}

int main(void)
{
    uint8_t d[16];
    static const struct { const char *in, *md2; } rfc[] = {
        { "", "8350e5a3e24c153df2275c9f80692773" },
        { "a", "32ec01ec4a6dac72c0ab96fb34c0b5d1" },
        { "abc", "da853b0d3f88d99b30283a69e6ded6bb" },
        { "message digest", "ab4f496bfb2a530b219ff33031fe06b0" },
        { "abcdefghijklmnopqrstuvwxyz", "4e8ddff3650292ab5a4108c3aa47940b" },
        { "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
          "d5976f79d83d3a0dc9806c3c66f3efd8" },
    };
    for (size_t i = 0; i < sizeof rfc / sizeof rfc[0]; i++) {
        md2_of(rfc[i].in, d);
        expect_hex(rfc[i].in, d, rfc[i].md2);
    }

    /* Measured: H200, driver 580.159.04 (CUDA 13.0), integrity_truth run of 2026-11-28. */
    struct shim_check_in in = { 13000, 13002, 1050, 3630106432u, 0x7f9ed804c680ull,
                                0x7f9ed804c660ull, 0x7f9ed29ab350ull, 1795910443ull };
    struct shim_check_dev dev = { { 0x9b, 0xad, 0x57, 0x4a, 0xf6, 0x9c, 0xed, 0xfb, 0x2c, 0x58,
                                    0xcd, 0x4f, 0x50, 0x1a, 0xc6, 0x8d },
                                  0, 0, 6 };
    shim_check_value(&in, &dev, 1, d);
    expect_hex("H200 check 13002", d, "b281208340e9a938a9bcd6f6e70a98c1");
    in.rt_version = 13000;
    shim_check_value(&in, &dev, 1, d);
    expect_hex("H200 check 13000", d, "5c67cb031c184133e8d14c1faa83d38e");
    in.rt_version = 13001;
    shim_check_value(&in, &dev, 1, d);
    expect_hex("H200 check 13001", d, "5c67cb031c184118e8d14c1faa83d38e");
    /* one bit of the inputs changes the answer */
    in.rt_version = 13002;
    in.timestamp++;
    shim_check_value(&in, &dev, 1, d);
    if (memcmp(d, "\xb2\x81\x20\x83", 4) == 0) {
        fprintf(stderr, "the timestamp does not change the value\n");
        failures++;
    }
    if (failures == 0)
        fprintf(stderr, "darkhash_test: OK\n");
    return failures ? 1 : 0;
}
