/* Gaussian noise for central DP (aggregator/dp.h). Seeded from the kernel,
 * never from the job's seed: noise someone can regenerate protects nothing.
 * xoshiro256** with Box-Muller in double is fast enough to noise a model per
 * round per shard; it is not the discrete/secure sampler a formal
 * floating-point analysis (Mironov 2012) would ask for (docs/simulate.md). */
#include "aggregator/dp.h"
#include "aggregator/merge.h"

#include <math.h>
#include <sys/random.h>

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next(uint64_t s[4])
{
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* Uniform in (0, 1]. */
static double unif(uint64_t s[4])
{
    return ((next(s) >> 11) + 1) * 0x1.0p-53;
}

int flc_dp_add_noise(float *v, size_t n, double sd, flc_err_t *e)
{
    uint64_t s[4];
    if (getrandom(s, sizeof s, 0) != (ssize_t)sizeof s)
        return flc_err_set(e, FLC_EIO, "dp noise: getrandom gave no randomness");
    for (size_t i = 0; i < n; i += 2) {
        double r = sqrt(-2 * log(unif(s))), th = 2 * M_PI * unif(s);
        v[i] += (float)(sd * r * cos(th));
        if (i + 1 < n)
            v[i + 1] += (float)(sd * r * sin(th));
    }
    return FLC_OK;
}

int flc_dp_noise_mean(const flc_merge_rule_t *r, size_t k, float *out, size_t n, flc_err_t *e)
{
    if (!(r->noise > 0) || k == 0)
        return FLC_OK;
    return flc_dp_add_noise(out, n, r->noise * r->clip / (double)k, e);
}
