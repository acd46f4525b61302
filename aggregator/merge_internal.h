/* Internal entry points of the merge kernels (aggregator/merge_*.c only).
 *
 * flc_merge_run validates a batch before merging it. For the rules that
 * read every update in blocks (median, trimmed mean, the Krum/Bulyan
 * distances), a separate NaN/Inf scan was one more pass over all k updates
 * from memory; these variants check each block of the raw updates as they
 * load it into their cache-resident tile instead. On a non-finite value
 * they stop with FLC_ENONFINITE and a generic message: the caller then runs
 * flc_merge_batch_check, whose message (first bad update, first element)
 * and error precedence are those of the up-front scan. The public
 * functions of merge.h keep their contract (no check). */
#ifndef FLC_AGGREGATOR_MERGE_INTERNAL_H
#define FLC_AGGREGATOR_MERGE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "aggregator/merge.h"

/* Floats per block of the averaging kernels: a block's double sums (4 KB)
 * stay in L1, and k rows of it in L1/L2, so the finite check and the sums
 * read each update from memory once. The sums' bits depend on it. */
#define FLC_MERGE_WS_BLOCK 512

/* A bad value found by a kernel: which update and which element. */
typedef struct flc_merge_bad {
    size_t update, pos;
} flc_merge_bad_t;

/* merge_avg.c: sum[0..n) += sum_j coef[j] u[j], all or nothing: 0, or
 * FLC_ENONFINITE with *bad set and sum as it was (to one rounding). */
int flc_merge_fold_rows(const float *const *u, size_t k, size_t n, const double *coef,
                        double *sum, flc_merge_bad_t *bad);

/* merge_avg.c: sum[0..n) += c*u in one pass (first: sum = 0 + c*u, its
 * memory not read); all or nothing as flc_merge_fold_rows. */
int flc_merge_fold_one(const float *u, size_t n, double c, int first, double *sum,
                       flc_merge_bad_t *bad);

/* merge_run.c: coef[i] *= update i's weight (1 when the rule is not
 * weighted or the batch has no weights); returns the weights' total. The
 * batch merge and the accumulator's batch fold weigh alike through it. */
double flc_merge_apply_weights(const flc_merge_rule_t *r, const flc_merge_batch_t *b,
                               double *coef);

/* flc_merge_median / _trimmed_mean; check = 1: refuse NaN/Inf in u. */
int flc_merge_median_x(const float *const *u, size_t k, size_t n, const double *s, int check,
                       float *out, flc_err_t *e);
int flc_merge_trimmed_mean_x(const float *const *u, size_t k, size_t n, const double *s,
                             double trim, int check, float *out, flc_err_t *e);

/* flc_merge_sqdist_partial; check = 1: refuse NaN/Inf in u. */
int flc_merge_sqdist_partial_x(const float *const *u, size_t k, size_t n, const double *s,
                               int check, double *D, flc_err_t *e);

/* Number of NaN/Inf in p[0..m) (exponent bits all ones), counted with
 * integer adds so that the loop vectorizes; inlined into the kernels'
 * block loads, so the check costs no pass of its own. */
static inline unsigned flc_merge_count_nonfinite(const float *restrict p, size_t m)
{
    unsigned bad = 0;
    for (size_t i = 0; i < m; i++) {
        uint32_t bits;
        memcpy(&bits, &p[i], sizeof bits);
        bad += (bits & 0x7f800000u) == 0x7f800000u;
    }
    return bad;
}

/* Asks for the next block of one update, p[0..m) with m floats, while the
 * current block is computed on. The updates are k streams read one short
 * block at a time, which the hardware prefetchers follow too late to keep
 * memory busy: the kernels were latency-bound (perf: the stall on the
 * first load of each row), not bandwidth-bound. */
static inline void flc_merge_prefetch(const float *p, size_t m)
{
    for (size_t i = 0; i < m; i += 16)
        __builtin_prefetch(p + i);
}

#endif
