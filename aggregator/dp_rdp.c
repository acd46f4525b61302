/* The RDP accountant of the sampled Gaussian mechanism (aggregator/dp.h has
 * the formulas and the papers). Integer orders only: there the closed form
 * of Mironov-Talwar-Zhang 2019 is exact and needs no numerical integration;
 * the list reaches 256 because small epsilons (large sigma, many rounds) are
 * attained at large orders. */
#include "aggregator/dp.h"

#include <math.h>

int flc_dp_order(int i)
{
    static const int tail[] = {80, 96, 128, 256};
    return i < 63 ? i + 2 : tail[i - 63];
}

double flc_dp_rdp_sgm(double q, double sigma, int alpha, double *log_a)
{
    double la;
    if (q >= 1.0) {
        la = (double)alpha * (alpha - 1) / (2 * sigma * sigma);
    } else {
        /* log-sum-exp over i = 0..alpha of
         * log C(alpha,i) + i log q + (alpha-i) log(1-q) + (i^2 - i)/(2 sigma^2) */
        double lq = log(q), l1q = log1p(-q), mx = -INFINITY;
        double terms[257];
        for (int i = 0; i <= alpha; i++) {
            double lbin = lgamma(alpha + 1.0) - lgamma(i + 1.0) - lgamma(alpha - i + 1.0);
            terms[i] = lbin + i * lq + (alpha - i) * l1q +
                       ((double)i * i - i) / (2 * sigma * sigma);
            if (terms[i] > mx)
                mx = terms[i];
        }
        double s = 0;
        for (int i = 0; i <= alpha; i++)
            s += exp(terms[i] - mx);
        la = mx + log(s);
    }
    if (log_a)
        *log_a = la;
    return la / (alpha - 1);
}

void flc_dp_acct_init(flc_dp_acct_t *a)
{
    for (int i = 0; i < FLC_DP_NORDERS; i++)
        a->rdp[i] = 0;
    a->rounds = 0;
}

int flc_dp_acct_step(flc_dp_acct_t *a, double q, double sigma, uint64_t rounds, flc_err_t *e)
{
    if (!(q > 0 && q <= 1))
        return flc_err_set(e, FLC_EINVAL, "dp accountant: sampling rate q = %g is not in (0, 1]",
                           q);
    if (!(sigma > 0) || !isfinite(sigma))
        return flc_err_set(e, FLC_EINVAL, "dp accountant: noise multiplier sigma = %g must be "
                           "> 0", sigma);
    for (int i = 0; i < FLC_DP_NORDERS; i++)
        a->rdp[i] += (double)rounds * flc_dp_rdp_sgm(q, sigma, flc_dp_order(i), NULL);
    a->rounds += rounds;
    return FLC_OK;
}

double flc_dp_acct_epsilon(const flc_dp_acct_t *a, double delta, int *order)
{
    if (a->rounds == 0)
        return 0;
    double best = INFINITY;
    int at = 0;
    for (int i = 0; i < FLC_DP_NORDERS; i++) {
        int al = flc_dp_order(i);
        double eps = a->rdp[i] + log(1 / delta) / (al - 1);
        if (eps < best)
            best = eps, at = al;
    }
    if (order)
        *order = at;
    return best;
}
