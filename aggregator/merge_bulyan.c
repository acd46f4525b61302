/* Bulyan (El Mhamdi, Guerraoui, Rouault 2018), split like Krum so shards can
 * share the work.
 *
 * Bulyan runs Krum theta = k - 2f times, each time over the updates not yet
 * chosen, and moves each winner into a selection set; then, coordinate by
 * coordinate, it averages the beta = theta - 2f selected values closest to
 * their median. The first step needs whole-model distances, so it takes the
 * summed partial matrix that sharded Krum already exchanges (one selection
 * for the whole model); the second step is coordinate-wise, so every shard
 * does its own slice.
 *
 * Ties are broken by a rank (the client id's order) rather than by arrival:
 * a round's answer must not depend on which client landed first nor on how
 * many shards summed the distances, so scores that differ only by rounding
 * (within 1e-9 of the round's largest score) count as equal. */
#include "aggregator/merge.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int flc_merge_bulyan_params(const flc_merge_rule_t *r, size_t k, int *f, size_t *theta,
                            size_t *beta, flc_err_t *e)
{
    int ff = r->f;
    if (ff < 0)
        ff = k >= 3 ? (int)((k - 3) / 4) : 0;
    if (k < 4 * (size_t)ff + 3)
        return flc_err_set(e, FLC_EINVAL, "merge bulyan: f = %d needs at least %d updates "
                           "(4f + 3), got %zu", ff, 4 * ff + 3, k);
    *f = ff;
    *theta = k - 2 * (size_t)ff;
    *beta = *theta - 2 * (size_t)ff;
    return FLC_OK;
}

static size_t rank_of(const size_t *rank, size_t i)
{
    return rank ? rank[i] : i;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int flc_merge_bulyan_select(const double *D, size_t k, int f, size_t theta, const size_t *rank,
                            size_t *sel, flc_err_t *e)
{
    if (f < 0 || theta < 1 || theta > k)
        return flc_err_set(e, FLC_EINVAL, "merge bulyan: cannot select %zu of %zu updates "
                           "with f = %d", theta, k, f);
    unsigned char *taken = calloc(k, 1);
    double *d = malloc(k * sizeof *d), *score = malloc(k * sizeof *score);
    if (taken == NULL || d == NULL || score == NULL) {
        free(taken), free(d), free(score);
        return flc_err_set(e, FLC_ENOMEM, "merge bulyan: cannot allocate scores of %zu updates",
                           k);
    }
    for (size_t t = 0; t < theta; t++) {
        size_t left = k - t; /* updates still in the set */
        size_t q = left >= (size_t)f + 3 ? left - (size_t)f - 2 : 1;
        if (q > left - 1)
            q = left - 1;
        double top = 0;
        for (size_t i = 0; i < k; i++) {
            if (taken[i])
                continue;
            size_t nd = 0;
            for (size_t j = 0; j < k; j++)
                if (j != i && !taken[j])
                    /* rounding can leave a tiny negative distance between equal updates */
                    d[nd++] = D[i * k + j] > 0 ? D[i * k + j] : 0;
            qsort(d, nd, sizeof *d, cmp_double);
            double s = 0;
            for (size_t j = 0; j < q; j++)
                s += d[j];
            score[i] = s;
            if (s > top)
                top = s;
        }
        double lo = INFINITY, tol = 1e-9 * top;
        for (size_t i = 0; i < k; i++)
            if (!taken[i] && score[i] < lo)
                lo = score[i];
        size_t best = k; /* the lowest rank among the scores within tol of the lowest */
        for (size_t i = 0; i < k; i++)
            if (!taken[i] && score[i] <= lo + tol &&
                (best == k || rank_of(rank, i) < rank_of(rank, best)))
                best = i;
        taken[best] = 1;
        sel[t] = best;
    }
    free(taken), free(d), free(score);
    return FLC_OK;
}

typedef struct near {
    double dist, value;
    size_t rank;
} near_t;

/* Closer to the median first, then the lower rank. */
static int cmp_near(const void *a, const void *b)
{
    const near_t *x = a, *y = b;
    if (x->dist != y->dist)
        return x->dist < y->dist ? -1 : 1;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

int flc_merge_bulyan_trim(const float *const *u, const size_t *sel, size_t theta, size_t beta,
                          size_t n, const double *s, const size_t *rank, float *out,
                          flc_err_t *e)
{
    if (theta == 0 || beta == 0 || beta > theta)
        return flc_err_set(e, FLC_EINVAL, "merge bulyan: cannot average %zu of %zu values",
                           beta, theta);
    double *v = malloc(theta * sizeof *v);
    near_t *nr = malloc(theta * sizeof *nr);
    if (v == NULL || nr == NULL) {
        free(v), free(nr);
        return flc_err_set(e, FLC_ENOMEM, "merge bulyan: cannot allocate %zu values", theta);
    }
    for (size_t c = 0; c < n; c++) {
        for (size_t j = 0; j < theta; j++) {
            size_t x = sel[j];
            nr[j].value = (s ? s[x] : 1.0) * (double)u[x][c];
            nr[j].rank = rank_of(rank, x);
            v[j] = nr[j].value;
        }
        qsort(v, theta, sizeof *v, cmp_double);
        double med = theta % 2 ? v[theta / 2] : 0.5 * (v[theta / 2 - 1] + v[theta / 2]);
        for (size_t j = 0; j < theta; j++)
            nr[j].dist = fabs(nr[j].value - med);
        qsort(nr, theta, sizeof *nr, cmp_near);
        double sum = 0;
        for (size_t j = 0; j < beta; j++)
            sum += nr[j].value;
        out[c] = (float)(sum / (double)beta);
    }
    free(v), free(nr);
    return FLC_OK;
}
