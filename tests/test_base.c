/* base/: error codes, error messages, the clock and CRC-32C. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/crc32c.h"
#include "base/error.h"
#include "tests/harness.h"

TEST(error_set_and_wrap)
{
    flc_err_t e = {0};
    int rc = flc_err_set(&e, FLC_EDATA, "shard %d of round %d: payload has %d floats", 3, 12, 4000);
    CHECK(rc == FLC_EDATA, "flc_err_set returns the code it sets");
    CHECK(strcmp(flc_err_msg(&e), "shard 3 of round 12: payload has 4000 floats") == 0,
          "error message is formatted: '%s'", flc_err_msg(&e));
    flc_err_wrap(&e, "job %s: ", "mnist");
    CHECK(strncmp(flc_err_msg(&e), "job mnist: shard 3", 18) == 0, "wrap prefixes context: '%s'",
          flc_err_msg(&e));
    flc_err_clear(&e);
    CHECK(e.code == 0 && strcmp(flc_err_msg(&e), "ok") == 0, "cleared error reads 'ok'");
}

TEST(error_codes_named)
{
    for (int c = FLC_OK; c >= FLC_ECHECKSUM; c--)
        if (strcmp(flc_strerror(c), "unknown error") == 0)
            EXPECT(0, "code %d has a description", c);
    CHECK(strcmp(flc_strerror(-999), "unknown error") == 0, "unknown codes are named as such");
}

TEST(clocks)
{
    uint64_t t0 = flc_now_ns();
    flc_sleep_ms(20);
    uint64_t dt = flc_now_ns() - t0;
    EXPECT(dt >= 19000000ull && dt < 500000000ull, "monotonic clock measures a 20 ms sleep (%.1f ms)",
           dt / 1e6);
    EXPECT(flc_wall_ms() > 1600000000000ull, "wall clock is after 2020");
}

TEST(crc32c)
{
    CHECK(flc_crc32c(0, "123456789", 9) == 0xE3069283u, "CRC-32C of '123456789' is e3069283");
    CHECK(flc_crc32c(flc_crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u,
          "CRC-32C continues across calls");
    CHECK(flc_crc32c(0, "", 0) == 0, "CRC-32C of nothing is 0");
    /* Longer than a slice of 8 and not a multiple of it: the word loop and
     * the byte tail both run, and pieces cut anywhere give the same CRC. */
    unsigned char big[1003];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)(i * 131u + 7u);
    uint32_t whole = flc_crc32c(0, big, sizeof big);
    uint32_t cut = flc_crc32c(flc_crc32c(0, big, 333), big + 333, sizeof big - 333);
    CHECK(whole == cut, "CRC-32C of 1003 bytes is the same in two pieces (%08x)", whole);
    /* Long buffers run three chains joined by shifts (base/crc32c.c): the
     * same value as a bit-at-a-time reference at lengths around the
     * 3 x 8192-byte blocks, from odd offsets and continued states. */
    enum { LEN = 3 * 3 * 8192 + 77 };
    unsigned char *buf = malloc(LEN + 8);
    uint32_t x = 12345;
    for (size_t i = 0; i < LEN + 8; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (unsigned char)(x >> 16);
    }
    static const size_t lens[] = {24575, 24576, 24577, 49152, 49159, LEN - 1};
    int same = 1;
    for (size_t t = 0; t < sizeof lens / sizeof lens[0]; t++)
        for (size_t off = 0; off < 3; off++) {
            uint32_t ref = ~0u; /* reflected polynomial 0x82F63B78, one bit at a time */
            for (size_t i = 0; i < lens[t]; i++) {
                ref ^= buf[off + i];
                for (int k = 0; k < 8; k++)
                    ref = ref & 1 ? (ref >> 1) ^ 0x82F63B78u : ref >> 1;
            }
            ref = ~ref;
            uint32_t got = flc_crc32c(0, buf + off, lens[t]);
            uint32_t split = flc_crc32c(flc_crc32c(0, buf + off, 5), buf + off + 5, lens[t] - 5);
            if (got != ref || split != ref) {
                printf("# length %zu at offset %zu: %08x, in two pieces %08x, reference %08x\n",
                       lens[t], off, got, split, ref);
                same = 0;
            }
        }
    free(buf);
    CHECK(same, "CRC-32C of 24575..73805 bytes at offsets 0-2, whole and in pieces, equals a "
          "bit-at-a-time reference");
}

TEST_LIST(TEST_ENTRY(error_set_and_wrap), TEST_ENTRY(error_codes_named), TEST_ENTRY(clocks),
          TEST_ENTRY(crc32c))
