/* Differential privacy for the merge (issue 16 point 3): the Gaussian noise
 * a DP rule adds to its aggregate, and the privacy accountant that says what
 * the rounds so far cost, as (epsilon, delta).
 *
 * Accountant: Renyi DP of the subsampled Gaussian mechanism (each round
 * samples clients with probability q, clips each update to C, adds noise of
 * standard deviation sigma*C to the sum), computed for integer orders alpha
 * by the closed form of Mironov, Talwar and Zhang 2019 (Sec. 3.3: A_alpha =
 * sum_i C(alpha,i) (1-q)^(alpha-i) q^i exp((i^2-i)/(2 sigma^2)), RDP =
 * log(A_alpha)/(alpha-1)), summed over rounds (RDP composes additively), and
 * converted to epsilon at delta with Mironov 2017, Prop. 3: epsilon =
 * min_alpha RDP(alpha) + log(1/delta)/(alpha-1).
 * tests/test_dp.c checks A_alpha against numerical integration by scipy. */
#ifndef FLC_AGGREGATOR_DP_H
#define FLC_AGGREGATOR_DP_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/* The orders the accountant tracks: 2..64, then 80, 96, 128, 256. */
#define FLC_DP_NORDERS 67

/* The order of index i (0 <= i < FLC_DP_NORDERS). */
int flc_dp_order(int i);

/* RDP at order alpha >= 2 of one round of the sampled Gaussian mechanism
 * with sampling rate q in (0, 1] and noise multiplier sigma > 0; the log
 * of A_alpha goes to *log_a when not NULL. Computed in log space
 * (log-sum-exp), so large alpha/small sigma do not overflow. */
double flc_dp_rdp_sgm(double q, double sigma, int alpha, double *log_a);

typedef struct flc_dp_acct {
    double rdp[FLC_DP_NORDERS]; /* total RDP so far per order */
    uint64_t rounds;
} flc_dp_acct_t;

/* Starts an accountant at zero privacy cost. */
void flc_dp_acct_init(flc_dp_acct_t *a);

/* Adds `rounds` rounds at sampling rate q and noise multiplier sigma.
 * FLC_EINVAL naming the value when q is not in (0, 1] or sigma <= 0. */
int flc_dp_acct_step(flc_dp_acct_t *a, double q, double sigma, uint64_t rounds, flc_err_t *e);

/* epsilon at delta in (0, 1) for what was added so far (0 before any
 * round); the order that gave it to *order when not NULL. */
double flc_dp_acct_epsilon(const flc_dp_acct_t *a, double delta, int *order);

/* Adds independent Gaussian noise of standard deviation sd to v[0..n). The
 * generator is xoshiro256** seeded from getrandom(2), so the noise is not
 * predictable from the job, round or seed (a seeded noise would be removable
 * by whoever knows the seed). FLC_EIO when the kernel gives no randomness. */
int flc_dp_add_noise(float *v, size_t n, double sd, flc_err_t *e);

/* Local DP on a client's update d[0..n) before it is pushed: clip to L2
 * norm clip, then add Gaussian noise of sd sigma*clip to every coordinate.
 * Nothing when clip <= 0; clipping only when sigma <= 0. */
int flc_dp_local(float *d, size_t n, double clip, double sigma, flc_err_t *e);

/* Adaptive clipping (Andrew et al. 2021): with `below` of the k updates of
 * the round at norm <= *clip, moves *clip towards the gamma-quantile of the
 * norms: *clip *= exp(-eta ((below + N(0, sigma_b^2)) / k - gamma)). */
int flc_dp_clip_adapt(double *clip, size_t below, size_t k, double gamma, double eta,
                      double sigma_b, flc_err_t *e);

/* The noise multiplier left for the updates when the total is z and the
 * count's noise is sigma_b: (z^-2 - (2 sigma_b)^-2)^(-1/2); -1 when sigma_b
 * is too small for z (the count alone would spend the budget). */
double flc_dp_update_noise(double z, double sigma_b);

struct flc_merge_rule;

/* Central DP of rule r (its noise > 0): adds noise of sd noise*clip/k to the
 * mean out[0..n) of k clipped updates; nothing when r has no noise. Every
 * shard's merger noises its own slice (independent draws, the same sd), so
 * the whole model gets exactly that noise. */
int flc_dp_noise_mean(const struct flc_merge_rule *r, size_t k, float *out, size_t n,
                      flc_err_t *e);

#endif
