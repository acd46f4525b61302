/* Adaptive clipping (Andrew, Thakkar, McMahan, Ramaswamy 2021, "Differentially
 * Private Learning with Adaptive Clipping", Algorithm 1 with geometric
 * updates): the clip norm C follows the gamma-quantile of the update norms,
 * estimated privately. Each round, b = (number of updates with norm <= C +
 * N(0, sigma_b^2)) / K, then C <- C exp(-eta (b - gamma)). The count's noise
 * costs privacy too, so the update noise multiplier becomes
 * z_delta = (z^-2 - (2 sigma_b)^-2)^(-1/2) for a total of z (their Thm. 1):
 * the accountant keeps z. */
#include "aggregator/dp.h"

#include <math.h>

int flc_dp_clip_adapt(double *clip, size_t below, size_t k, double gamma, double eta,
                      double sigma_b, flc_err_t *e)
{
    if (k == 0)
        return FLC_OK;
    float noise = 0;
    int rc = sigma_b > 0 ? flc_dp_add_noise(&noise, 1, sigma_b, e) : FLC_OK;
    if (rc != FLC_OK)
        return rc;
    double b = ((double)below + noise) / (double)k;
    *clip *= exp(-eta * (b - gamma));
    return FLC_OK;
}

double flc_dp_update_noise(double z, double sigma_b)
{
    double r = 1 / (z * z) - 1 / (4 * sigma_b * sigma_b);
    return r > 0 ? 1 / sqrt(r) : -1;
}
