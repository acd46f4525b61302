/* Internal entry points of the Krum kernels (aggregator/merge_krum*.c only).
 *
 * merge_krum.c defines the centred Gram of a block (its order of operations
 * is what fixes the bits of every distance) and picks a kernel for it;
 * merge_krum_fused.c holds the kernels for the usual few updates of a round
 * that read each update from memory once and keep every dot product in
 * registers, and the mean of the selected updates that Multi-Krum reads. */
#ifndef FLC_AGGREGATOR_MERGE_KRUM_INTERNAL_H
#define FLC_AGGREGATOR_MERGE_KRUM_INTERNAL_H

#include <stddef.h>

/* Coordinates per block of the Gram: each dot product is summed within a
 * block in a fixed order, then added to the Gram matrix. Every kernel uses
 * the same blocks: the distances' bits depend on it. */
#define FLC_KRUM_BLOCK 1024

/* The most updates the fused kernels take (and the fewest). */
#define FLC_KRUM_FUSED_KMAX 8
#define FLC_KRUM_FUSED_KMIN 2

/* 1 when this CPU runs the fused kernels (AVX-512F/VL and FMA). */
int flc_merge_krum_fused_ok(void);

/* Adds the Gram matrix of the slice, each block centred on its mean, to the
 * upper triangle of the k*k matrix g, for FLC_KRUM_FUSED_KMIN <= k <=
 * FLC_KRUM_FUSED_KMAX: the same bits as merge_krum.c's tiled kernels. With
 * check, returns 1 (g then partly summed) when an update holds NaN/Inf. */
unsigned flc_merge_krum_gram_fused(const float *const *u, size_t k, size_t n, const double *s,
                                   int check, double *g);

/* The same for FLC_KRUM_FUSED_KMAX < k <= FLC_KRUM_TILED_KMAX: the rows
 * centred into an L1 buffer, 4 x 4 tiles of products over it. */
#define FLC_KRUM_TILED_KMAX 32
unsigned flc_merge_krum_gram_tiled(const float *const *u, size_t k, size_t n, const double *s,
                                   int check, double *g);

/* out = (float)(inv * sum_i s[sel[i]] u[sel[i]]) over the m selected,
 * inv = 1/m, the same bits as flc_merge_wsum (groups of four, then one at
 * a time), read last block first: the end of the slice, which the Gram read
 * last, is still in the cache. Returns 1 when it did not finish: more than
 * 64 selected, or a sum that is NaN/Inf (out then holds garbage; the
 * caller runs flc_merge_wsum, which names the bad value or, for a huge
 * scale, gives the same result). */
unsigned flc_merge_krum_mean_fused(const float *const *u, const size_t *sel, size_t m, size_t n,
                                   const double *s, float *out);

#endif
