/* k-means on a Gram matrix. Every distance k-means needs is a combination of
 * dot products: ||x_i - mean(C)||^2 = G_ii - 2/|C| sum_{j in C} G_ij
 * + 1/|C|^2 sum_{j,l in C} G_jl, so clustering N clients' updates needs only
 * the N x N Gram matrix the shards computed, never the updates themselves,
 * and gives exactly what k-means over the vectors gives. Seeding is
 * k-means++ from a seed (reproducible). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/query.h"

static double unit(uint64_t *s)
{
    *s ^= *s << 13; /* xorshift64: enough for picking seeds */
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (double)(*s >> 11) / 9007199254740992.0;
}

static double pdist(const double *G, size_t ld, size_t a, size_t b)
{
    double d = G[a * ld + a] - 2 * G[a * ld + b] + G[b * ld + b];
    return d > 0 ? d : 0;
}

int flc_query_kmeans(const double *G, size_t ld, size_t n, unsigned k, unsigned seed,
                     int *assign, double *inertia, flc_err_t *e)
{
    if (k == 0 || k > n)
        return flc_err_set(e, FLC_EINVAL, "clusters: K must be in 1..%zu (the round's clients), "
                           "not %u", n, k);
    size_t *center = malloc(k * sizeof *center);
    double *dmin = malloc(n * sizeof *dmin), *self = calloc(k, sizeof *self);
    double *dot = malloc(n * k * sizeof *dot);
    size_t *size = calloc(k, sizeof *size);
    if (!center || !dmin || !self || !dot || !size) {
        free(center), free(dmin), free(self), free(dot), free(size);
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    }
    uint64_t rs = 0x9e3779b97f4a7c15ull ^ ((uint64_t)seed * 0xbf58476d1ce4e5b9ull);
    if (rs == 0)
        rs = 1;
    /* k-means++: each next center drawn with probability ~ squared distance. */
    center[0] = (size_t)(unit(&rs) * (double)n) % n;
    for (size_t i = 0; i < n; i++)
        dmin[i] = pdist(G, ld, i, center[0]);
    for (unsigned c = 1; c < k; c++) {
        double tot = 0;
        for (size_t i = 0; i < n; i++)
            tot += dmin[i];
        size_t pick = 0;
        if (tot > 0) {
            double x = unit(&rs) * tot;
            for (pick = 0; pick + 1 < n && (x -= dmin[pick]) > 0; pick++) {
            }
        } else {
            pick = c % n; /* all points equal: any distinct index */
        }
        center[c] = pick;
        for (size_t i = 0; i < n; i++) {
            double d = pdist(G, ld, i, pick);
            dmin[i] = d < dmin[i] ? d : dmin[i];
        }
    }
    for (size_t i = 0; i < n; i++) { /* start from the nearest seed */
        double best = -1;
        for (unsigned c = 0; c < k; c++) {
            double d = pdist(G, ld, i, center[c]);
            if (best < 0 || d < best)
                best = d, assign[i] = (int)c;
        }
    }
    double J = 0;
    for (int it = 0; it < 100; it++) {
        memset(size, 0, k * sizeof *size);
        memset(self, 0, k * sizeof *self);
        memset(dot, 0, n * k * sizeof *dot);
        for (size_t j = 0; j < n; j++)
            size[assign[j]]++;
        /* dot[i*k+c] = sum_{j in c} G_ij ; self[c] = sum_{j,l in c} G_jl */
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++)
                dot[i * k + (size_t)assign[j]] += G[i * ld + j];
        for (size_t i = 0; i < n; i++)
            self[assign[i]] += dot[i * k + (size_t)assign[i]];
        int moved = 0;
        J = 0;
        for (size_t i = 0; i < n; i++) {
            double best = -1;
            int bc = assign[i];
            for (unsigned c = 0; c < k; c++) {
                if (size[c] == 0)
                    continue;
                double sz = (double)size[c];
                double d = G[i * ld + i] - 2 * dot[i * k + c] / sz + self[c] / (sz * sz);
                if (best < 0 || d < best - 1e-12 * (1 + best))
                    best = d, bc = (int)c;
            }
            moved += bc != assign[i];
            assign[i] = bc;
            J += best > 0 ? best : 0;
        }
        /* An emptied cluster takes the point farthest from its center. */
        for (unsigned c = 0; c < k; c++) {
            size_t cnt = 0;
            for (size_t i = 0; i < n; i++)
                cnt += assign[i] == (int)c;
            if (cnt == 0 && n >= k) {
                size_t far = 0;
                double fd = -1;
                for (size_t i = 0; i < n; i++) {
                    double sz = (double)size[assign[i]];
                    double d = G[i * ld + i] - 2 * dot[i * k + (size_t)assign[i]] / sz +
                               self[assign[i]] / (sz * sz);
                    if (d > fd)
                        fd = d, far = i;
                }
                assign[far] = (int)c;
                moved = 1;
            }
        }
        if (!moved)
            break;
    }
    *inertia = J;
    free(center), free(dmin), free(self), free(dot), free(size);
    return FLC_OK;
}
