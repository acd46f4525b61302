/* A small seeded pseudo-random generator (xoshiro256**, seeded through
 * splitmix64) with the few distributions the data and model code need.
 *
 * Why our own: rand() differs between libcs and is shared global state; the
 * data partitions, Dirichlet splits and model inits must come out identical
 * on every machine and in every worker process for the same seed, so that
 * W workers can each compute their own partition and agree without talking. */
#ifndef FLC_ML_RNG_H
#define FLC_ML_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct flc_rng {
    uint64_t s[4];
} flc_rng_t;

/* Seeds the generator; any 64-bit seed (0 included) gives a valid state. */
void flc_rng_seed(flc_rng_t *r, uint64_t seed);

/* Seeds from a base seed and a stream number (worker, client, epoch), so
 * separate streams do not overlap in practice. */
void flc_rng_seed2(flc_rng_t *r, uint64_t seed, uint64_t stream);

/* Next 64 random bits. */
uint64_t flc_rng_next(flc_rng_t *r);

/* Uniform double in [0, 1) with 53 random bits. */
double flc_rng_uniform(flc_rng_t *r);

/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t flc_rng_below(flc_rng_t *r, uint64_t n);

/* Standard normal N(0, 1) (Marsaglia polar method). */
double flc_rng_normal(flc_rng_t *r);

/* log of a Gamma(shape, 1) sample, shape > 0 (Marsaglia-Tsang). Returned in
 * log space because for small shapes (alpha = 0.01) the sample itself
 * underflows to 0 in double precision. */
double flc_rng_log_gamma(flc_rng_t *r, double shape);

/* Gamma(shape, 1) sample, shape > 0 (exp of flc_rng_log_gamma). */
double flc_rng_gamma(flc_rng_t *r, double shape);

/* Fills p[0..k) with one Dirichlet(alpha, ..., alpha) sample (sums to 1),
 * computed in log space so tiny alphas still give a valid distribution. */
void flc_rng_dirichlet(flc_rng_t *r, double alpha, size_t k, double *p);

/* Fisher-Yates shuffle of a[0..n). */
void flc_rng_shuffle_u32(flc_rng_t *r, uint32_t *a, size_t n);

#endif
