/* xoshiro256** (Blackman and Vigna) seeded with splitmix64, plus normal,
 * Gamma (Marsaglia-Tsang), Dirichlet and shuffle on top of it. Every draw
 * is a pure function of the seed, so results repeat across runs, machines
 * and processes. */
#include "ml/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void flc_rng_seed(flc_rng_t *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

void flc_rng_seed2(flc_rng_t *r, uint64_t seed, uint64_t stream)
{
    /* Mix the stream through splitmix first so seeds (s, t) and (s+1, t-1)
     * do not collide. */
    uint64_t x = stream ^ 0xD1B54A32D192ED03ull;
    flc_rng_seed(r, seed ^ splitmix64(&x));
}

uint64_t flc_rng_next(flc_rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double flc_rng_uniform(flc_rng_t *r)
{
    return (double)(flc_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t flc_rng_below(flc_rng_t *r, uint64_t n)
{
    /* Rejection of the short last bucket removes modulo bias. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t v;
    do {
        v = flc_rng_next(r);
    } while (v >= limit);
    return v % n;
}

double flc_rng_normal(flc_rng_t *r)
{
    double u, v, s;
    do {
        u = 2.0 * flc_rng_uniform(r) - 1.0;
        v = 2.0 * flc_rng_uniform(r) - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    /* The second value of the pair is dropped: keeps the state a plain
     * function of the draw count, which makes streams easy to reason about. */
    return u * sqrt(-2.0 * log(s) / s);
}

double flc_rng_log_gamma(flc_rng_t *r, double shape)
{
    if (shape < 1.0) {
        /* Gamma(a) = Gamma(a + 1) * U^(1/a); in logs to avoid underflow. */
        double u;
        do {
            u = flc_rng_uniform(r);
        } while (u == 0.0);
        return flc_rng_log_gamma(r, shape + 1.0) + log(u) / shape;
    }
    double d = shape - 1.0 / 3.0;
    double c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = flc_rng_normal(r);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        double u = flc_rng_uniform(r);
        if (u < 1.0 - 0.0331 * x * x * x * x)
            return log(d * v);
        if (u > 0.0 && log(u) < 0.5 * x * x + d * (1.0 - v + log(v)))
            return log(d * v);
    }
}

double flc_rng_gamma(flc_rng_t *r, double shape)
{
    return exp(flc_rng_log_gamma(r, shape));
}

void flc_rng_dirichlet(flc_rng_t *r, double alpha, size_t k, double *p)
{
    if (k == 0)
        return;
    double mx = -INFINITY;
    for (size_t i = 0; i < k; i++) {
        p[i] = flc_rng_log_gamma(r, alpha);
        if (p[i] > mx)
            mx = p[i];
    }
    /* Normalize with the max subtracted (log-sum-exp), so the largest
     * component is exp(0) = 1 before scaling and the sum is never 0. */
    double sum = 0.0;
    for (size_t i = 0; i < k; i++) {
        p[i] = exp(p[i] - mx);
        sum += p[i];
    }
    for (size_t i = 0; i < k; i++)
        p[i] /= sum;
}

void flc_rng_shuffle_u32(flc_rng_t *r, uint32_t *a, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)flc_rng_below(r, i);
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}
