/* CRC-32C (Castagnoli), the checksum of the cold tier's object trailers.
 * It lives in base/ because it is plain arithmetic on bytes that any layer
 * may want; the SSE4.2 crc32 instruction computes this polynomial, so the
 * check costs next to nothing on the CPUs we run on. */
#ifndef FLC_BASE_CRC32C_H
#define FLC_BASE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C of buf[0..n), continuing from crc (start with 0; feeding a buffer
 * in pieces gives the CRC of the whole). Uses the SSE4.2 instruction when the
 * CPU has it, a slice-by-8 table otherwise; both give the same value. */
uint32_t flc_crc32c(uint32_t crc, const void *buf, size_t n);

#endif
