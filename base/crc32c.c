/* CRC-32C (see crc32c.h): the crc32 instruction on x86-64 with SSE4.2 (three
 * chains at once on long buffers), chosen at run time, else a slice-by-8
 * table built on first use. */
#include "base/crc32c.h"

#include <pthread.h>
#include <string.h>

static uint32_t crc_table[8][256];
static int crc_ready;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
    crc_ready = 1;
}

/* Slice-by-8: about 1-2 GB/s, for CPUs without SSE4.2. */
static uint32_t crc_soft(uint32_t crc, const uint8_t *p, size_t n)
{
    if (!crc_ready)
        crc_init();
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc;
        crc = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
              crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
              crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
              crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return crc;
}

#if defined(__x86_64__)
/* The crc32 instruction on one dependent chain: about 8 bytes per 3 cycles
 * (its latency), 6-7 GB/s here. */
__attribute__((target("sse4.2"))) static uint32_t crc_hw1(uint32_t crc, const uint8_t *p,
                                                           size_t n)
{
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}

/* Three chains over three consecutive blocks of CRC_LONG bytes keep the
 * instruction's pipeline full (throughput one per cycle: about 3x one
 * chain), then are joined: the register after A||B is the register after A
 * moved over |B| zero bytes, xor the register of B alone from 0 (the CRC is
 * linear). Moving a register over CRC_LONG zero bytes is linear in its 32
 * bits, so four 256-entry tables do it; they are made once with the
 * instruction itself (1024 x CRC_LONG zero bytes, about 1 ms). The head
 * field of every chunked value checksums its payload (store_put_head.c):
 * one chain made a 16 MB put 35% slower. */
#define CRC_LONG 8192
static uint32_t crc_long[4][256];
static pthread_once_t crc_long_once = PTHREAD_ONCE_INIT;

static void crc_long_init(void)
{
    static const uint8_t zeros[CRC_LONG];
    for (int k = 0; k < 4; k++)
        for (uint32_t b = 0; b < 256; b++)
            crc_long[k][b] = crc_hw1(b << (8 * k), zeros, CRC_LONG);
}

static uint32_t crc_shift_long(uint32_t c)
{
    return crc_long[0][c & 0xff] ^ crc_long[1][(c >> 8) & 0xff] ^
           crc_long[2][(c >> 16) & 0xff] ^ crc_long[3][c >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t n)
{
    if (n >= 3 * CRC_LONG) {
        pthread_once(&crc_long_once, crc_long_init);
        while (n >= 3 * CRC_LONG) {
            uint64_t c0 = crc, c1 = 0, c2 = 0;
            for (size_t i = 0; i < CRC_LONG; i += 8) {
                uint64_t w0, w1, w2;
                memcpy(&w0, p + i, 8);
                memcpy(&w1, p + CRC_LONG + i, 8);
                memcpy(&w2, p + 2 * CRC_LONG + i, 8);
                c0 = __builtin_ia32_crc32di(c0, w0);
                c1 = __builtin_ia32_crc32di(c1, w1);
                c2 = __builtin_ia32_crc32di(c2, w2);
            }
            crc = crc_shift_long((uint32_t)c0) ^ (uint32_t)c1;
            crc = crc_shift_long(crc) ^ (uint32_t)c2;
            p += 3 * CRC_LONG;
            n -= 3 * CRC_LONG;
        }
    }
    return crc_hw1(crc, p, n);
}
#endif

uint32_t flc_crc32c(uint32_t crc, const void *buf, size_t n)
{
    crc = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2"))
        return ~crc_hw(crc, buf, n);
#endif
    return ~crc_soft(crc, buf, n);
}
