/* IID partitions into W worker parts and Dirichlet(alpha) label splits
 * over N federated clients, both seeded (ml/rng.h) so every process that
 * asks for the same split gets the same parts.
 *
 * Splits are flc_parts_t: one index array holding every sample exactly once
 * and an offset per part, so N clients cost 4 bytes per sample plus one
 * offset each, however many clients there are. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ml/partition.h"
#include "ml/rng.h"

static flc_parts_t *parts_alloc(int nparts, size_t total)
{
    flc_parts_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->idx = malloc((total ? total : 1) * sizeof(uint32_t));
    p->off = calloc((size_t)nparts + 1, sizeof(size_t));
    if (p->idx == NULL || p->off == NULL) {
        flc_parts_free(p);
        return NULL;
    }
    p->nparts = nparts;
    p->total = total;
    return p;
}

void flc_parts_free(flc_parts_t *p)
{
    if (p == NULL)
        return;
    free(p->idx);
    free(p->off);
    free(p);
}

size_t flc_parts_get(const flc_parts_t *p, int i, const uint32_t **idx)
{
    if (i < 0 || i >= p->nparts) {
        *idx = NULL;
        return 0;
    }
    *idx = p->idx + p->off[i];
    return p->off[i + 1] - p->off[i];
}

int flc_split_iid(size_t n, int w, uint64_t seed, flc_parts_t **out, flc_err_t *err)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || w < 1 || n > UINT32_MAX)
        return flc_err_set(err, FLC_EINVAL, "cannot split %zu samples into %d parts", n, w);
    flc_parts_t *p = parts_alloc(w, n);
    if (p == NULL)
        return flc_err_set(err, FLC_ENOMEM, "out of memory splitting %zu samples", n);
    for (size_t i = 0; i < n; i++)
        p->idx[i] = (uint32_t)i;
    flc_rng_t r;
    flc_rng_seed(&r, seed);
    flc_rng_shuffle_u32(&r, p->idx, n);
    size_t base = n / (size_t)w, extra = n % (size_t)w;
    for (int i = 0; i < w; i++)
        p->off[i + 1] = p->off[i] + base + ((size_t)i < extra ? 1 : 0);
    *out = p;
    return 0;
}

/* One Dirichlet draw: counts[c*nclients + k] = samples of class c given to
 * client k. Cuts each class's count at rounded cumulative proportions, so
 * the counts of a class add up to its size exactly. */
static void dirichlet_counts(flc_rng_t *r, const size_t *class_n, int num_classes, int nclients,
                             double alpha, double *prop, size_t *counts)
{
    for (int c = 0; c < num_classes; c++) {
        flc_rng_dirichlet(r, alpha, (size_t)nclients, prop);
        double cum = 0.0;
        size_t prev = 0;
        for (int k = 0; k < nclients; k++) {
            cum += prop[k];
            size_t cut = k == nclients - 1 ? class_n[c] : (size_t)llround(cum * (double)class_n[c]);
            if (cut > class_n[c])
                cut = class_n[c];
            if (cut < prev)
                cut = prev;
            counts[(size_t)c * nclients + k] = cut - prev;
            prev = cut;
        }
    }
}

int flc_split_dirichlet(const int32_t *labels, size_t n, int num_classes, int nclients,
                        double alpha, uint64_t seed, size_t min_size, flc_parts_t **out,
                        flc_err_t *err)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || labels == NULL || n == 0 || n > UINT32_MAX || num_classes < 1 ||
        nclients < 1 || !(alpha > 0.0) || !isfinite(alpha))
        return flc_err_set(err, FLC_EINVAL,
                           "Dirichlet split of %zu samples (%d classes) over %d clients with "
                           "alpha %g is invalid",
                           n, num_classes, nclients, alpha);
    if (min_size > 0 && min_size * (size_t)nclients > n)
        return flc_err_set(err, FLC_EINVAL,
                           "cannot give %d clients %zu samples each from only %zu samples",
                           nclients, min_size, n);
    size_t nc = (size_t)num_classes, nk = (size_t)nclients;
    size_t *class_n = calloc(nc, sizeof(size_t));
    size_t *class_start = calloc(nc + 1, sizeof(size_t));
    uint32_t *by_class = malloc(n * sizeof(uint32_t));
    size_t *counts = malloc(nc * nk * sizeof(size_t));
    size_t *fill = calloc(nk, sizeof(size_t)); /* next free slot per client */
    double *prop = malloc(nk * sizeof(double));
    flc_parts_t *p = parts_alloc(nclients, n);
    int rc = 0;
    if (!class_n || !class_start || !by_class || !counts || !fill || !prop || !p) {
        rc = flc_err_set(err, FLC_ENOMEM, "out of memory for a split over %d clients", nclients);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= num_classes) {
            rc = flc_err_set(err, FLC_EINVAL, "sample %zu has label %d, not in 0..%d", i,
                             (int)labels[i], num_classes - 1);
            goto done;
        }
        class_n[labels[i]]++;
    }
    /* Samples grouped by class, each group shuffled. */
    for (size_t c = 0; c < nc; c++)
        class_start[c + 1] = class_start[c] + class_n[c];
    flc_rng_t r;
    flc_rng_seed(&r, seed);
    {
        size_t *pos = malloc(nc * sizeof(size_t));
        if (pos == NULL) {
            rc = flc_err_set(err, FLC_ENOMEM, "out of memory for a split");
            goto done;
        }
        memcpy(pos, class_start, nc * sizeof(size_t));
        for (size_t i = 0; i < n; i++)
            by_class[pos[labels[i]]++] = (uint32_t)i;
        free(pos);
    }
    for (size_t c = 0; c < nc; c++)
        flc_rng_shuffle_u32(&r, by_class + class_start[c], class_n[c]);

    /* Draw proportions until every client has min_size samples. */
    int tries = 0;
    for (;;) {
        dirichlet_counts(&r, class_n, num_classes, nclients, alpha, prop, counts);
        size_t smallest = SIZE_MAX;
        for (size_t k = 0; k < nk; k++) {
            size_t s = 0;
            for (size_t c = 0; c < nc; c++)
                s += counts[c * nk + k];
            p->off[k + 1] = s;
            if (s < smallest)
                smallest = s;
        }
        if (smallest >= min_size)
            break;
        if (++tries >= 1000) {
            rc = flc_err_set(err, FLC_EINVAL,
                             "Dirichlet split: no draw in 1000 gave each of %d clients %zu "
                             "samples with alpha %g; lower min_size or raise alpha",
                             nclients, min_size, alpha);
            goto done;
        }
    }
    for (size_t k = 0; k < nk; k++)
        p->off[k + 1] += p->off[k];
    /* Hand out each class's shuffled samples in client order. */
    for (size_t k = 0; k < nk; k++)
        fill[k] = p->off[k];
    for (size_t c = 0; c < nc; c++) {
        size_t src = class_start[c];
        for (size_t k = 0; k < nk; k++) {
            size_t m = counts[c * nk + k];
            memcpy(p->idx + fill[k], by_class + src, m * sizeof(uint32_t));
            fill[k] += m;
            src += m;
        }
    }
    for (size_t k = 0; k < nk; k++)
        flc_rng_shuffle_u32(&r, p->idx + p->off[k], p->off[k + 1] - p->off[k]);
    *out = p;
    p = NULL;
done:
    free(class_n);
    free(class_start);
    free(by_class);
    free(counts);
    free(fill);
    free(prop);
    flc_parts_free(p);
    return rc;
}
