/* Local differential privacy (issue 16 point 3): what a client does to its
 * own update before it pushes, so that nothing it sends (and so nothing the
 * cache stores or a query reads) is more than a Gaussian mechanism of its
 * data. Clip to L2 norm C, then add noise of sd sigma*C to every coordinate
 * (sensitivity C under add/remove of the client, so sigma is the noise
 * multiplier the accountant of aggregator/dp.h takes, at the client's
 * sampling rate q = K/N). Lives beside central DP so both use the same noise
 * source; clients/ calls it. */
#include "aggregator/dp.h"

#include <math.h>

int flc_dp_local(float *d, size_t n, double clip, double sigma, flc_err_t *e)
{
    if (!(clip > 0))
        return FLC_OK;
    double ss = 0;
    for (size_t i = 0; i < n; i++)
        ss += (double)d[i] * d[i];
    double norm = sqrt(ss);
    if (norm > clip) {
        float s = (float)(clip / norm);
        for (size_t i = 0; i < n; i++)
            d[i] *= s;
    }
    return sigma > 0 ? flc_dp_add_noise(d, n, sigma * clip, e) : FLC_OK;
}
