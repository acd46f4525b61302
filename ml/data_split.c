/* Data set life cycle and everything that rearranges samples without
 * copying them: normalization in place, IID partitions into W worker parts,
 * Dirichlet(alpha) label splits over N federated clients, and the minibatch
 * iterator that gathers the rows of an index list into one batch buffer.
 *
 * Splits are flc_parts_t: one index array holding every sample exactly once
 * and an offset per part, so N clients cost 4 bytes per sample plus one
 * offset each, however many clients there are. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ml/data.h"

/* ---- data set ---- */

int flc_data_new(size_t n, size_t dim, int num_classes, flc_dataset_t **out, flc_err_t *err)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || n == 0 || dim == 0 || num_classes < 1 || n > SIZE_MAX / dim / sizeof(float))
        return flc_err_set(err, FLC_EINVAL, "data set of %zu x %zu with %d classes is invalid", n,
                           dim, num_classes);
    flc_dataset_t *ds = calloc(1, sizeof *ds);
    if (ds != NULL) {
        ds->x = calloc(n * dim, sizeof(float));
        ds->y = calloc(n, sizeof(int32_t));
    }
    if (ds == NULL || ds->x == NULL || ds->y == NULL) {
        flc_data_free(ds);
        return flc_err_set(err, FLC_ENOMEM, "out of memory for a data set of %zu x %zu floats", n,
                           dim);
    }
    ds->n = n;
    ds->dim = dim;
    ds->num_classes = num_classes;
    *out = ds;
    return 0;
}

void flc_data_free(flc_dataset_t *ds)
{
    if (ds == NULL)
        return;
    free(ds->x);
    free(ds->y);
    free(ds);
}

int flc_data_subset(const flc_dataset_t *ds, const uint32_t *idx, size_t n, flc_dataset_t **out,
                    flc_err_t *err)
{
    *out = NULL;
    for (size_t i = 0; i < n; i++)
        if (idx[i] >= ds->n)
            return flc_err_set(err, FLC_EINVAL, "subset index %u is out of range (%zu samples)",
                               idx[i], ds->n);
    int rc = flc_data_new(n, ds->dim, ds->num_classes, out, err);
    if (rc != 0)
        return rc;
    flc_dataset_t *s = *out;
    for (size_t i = 0; i < n; i++) {
        memcpy(s->x + i * ds->dim, ds->x + (size_t)idx[i] * ds->dim, ds->dim * sizeof(float));
        s->y[i] = ds->y[idx[i]];
    }
    return 0;
}

void flc_data_label_counts(const flc_dataset_t *ds, const uint32_t *idx, size_t n, size_t *counts)
{
    memset(counts, 0, (size_t)ds->num_classes * sizeof(size_t));
    if (idx == NULL)
        n = ds->n;
    for (size_t i = 0; i < n; i++) {
        int32_t c = ds->y[idx ? idx[i] : i];
        if (c >= 0 && c < ds->num_classes)
            counts[c]++;
    }
}

/* ---- normalization ---- */

int flc_norm_fit(const flc_dataset_t *ds, int mode, flc_norm_t *norm, flc_err_t *err)
{
    memset(norm, 0, sizeof *norm);
    if (ds == NULL || ds->n == 0 || (mode != FLC_NORM_GLOBAL && mode != FLC_NORM_FEATURE))
        return flc_err_set(err, FLC_EINVAL, "normalization: empty data set or bad mode %d", mode);
    size_t k = mode == FLC_NORM_FEATURE ? ds->dim : 1;
    double *sum = calloc(2 * k, sizeof(double));
    norm->mean = malloc(k * sizeof(float));
    norm->inv_std = malloc(k * sizeof(float));
    if (sum == NULL || norm->mean == NULL || norm->inv_std == NULL) {
        free(sum);
        flc_norm_release(norm);
        return flc_err_set(err, FLC_ENOMEM, "normalization: out of memory");
    }
    double *sq = sum + k;
    /* Sums in double: 47M pixels in float would lose the low digits. */
    for (size_t i = 0; i < ds->n; i++) {
        const float *row = ds->x + i * ds->dim;
        for (size_t j = 0; j < ds->dim; j++) {
            size_t c = mode == FLC_NORM_FEATURE ? j : 0;
            sum[c] += row[j];
            sq[c] += (double)row[j] * row[j];
        }
    }
    double cnt = mode == FLC_NORM_FEATURE ? (double)ds->n : (double)ds->n * ds->dim;
    for (size_t c = 0; c < k; c++) {
        double mean = sum[c] / cnt;
        double var = sq[c] / cnt - mean * mean;
        double sd = var > 0 ? sqrt(var) : 0.0;
        norm->mean[c] = (float)mean;
        /* A constant feature (a border pixel that is always 0) stays
         * centred but unscaled instead of dividing by ~0. */
        norm->inv_std[c] = sd > 1e-6 ? (float)(1.0 / sd) : 1.0f;
    }
    free(sum);
    norm->mode = mode;
    norm->dim = ds->dim;
    return 0;
}

int flc_norm_apply(const flc_norm_t *norm, flc_dataset_t *ds, flc_err_t *err)
{
    if (norm->dim != ds->dim)
        return flc_err_set(err, FLC_EDIM, "normalization fitted on %zu features, data has %zu",
                           norm->dim, ds->dim);
    for (size_t i = 0; i < ds->n; i++) {
        float *row = ds->x + i * ds->dim;
        if (norm->mode == FLC_NORM_FEATURE) {
            for (size_t j = 0; j < ds->dim; j++)
                row[j] = (row[j] - norm->mean[j]) * norm->inv_std[j];
        } else {
            float m = norm->mean[0], s = norm->inv_std[0];
            for (size_t j = 0; j < ds->dim; j++)
                row[j] = (row[j] - m) * s;
        }
    }
    return 0;
}

void flc_norm_release(flc_norm_t *norm)
{
    if (norm == NULL)
        return;
    free(norm->mean);
    free(norm->inv_std);
    memset(norm, 0, sizeof *norm);
}

/* ---- partitions and client splits ---- */

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

/* ---- minibatches ---- */

int flc_batcher_new(const flc_dataset_t *ds, const uint32_t *idx, size_t n, size_t batch,
                    int shuffle, int drop_last, uint64_t seed, flc_batcher_t **out,
                    flc_err_t *err)
{
    if (out != NULL)
        *out = NULL;
    if (idx == NULL)
        n = ds->n;
    if (out == NULL || batch == 0 || n > UINT32_MAX)
        return flc_err_set(err, FLC_EINVAL, "batcher: batch size %zu over %zu samples", batch, n);
    for (size_t i = 0; idx != NULL && i < n; i++)
        if (idx[i] >= ds->n)
            return flc_err_set(err, FLC_EINVAL, "batcher: index %u out of range (%zu samples)",
                               idx[i], ds->n);
    flc_batcher_t *b = calloc(1, sizeof *b);
    if (b != NULL) {
        b->order = malloc((n ? n : 1) * sizeof(uint32_t));
        b->xb = malloc(batch * ds->dim * sizeof(float));
        b->yb = malloc(batch * sizeof(int32_t));
    }
    if (b == NULL || b->order == NULL || b->xb == NULL || b->yb == NULL) {
        flc_batcher_free(b);
        return flc_err_set(err, FLC_ENOMEM, "batcher: out of memory for batch %zu x %zu", batch,
                           ds->dim);
    }
    for (size_t i = 0; i < n; i++)
        b->order[i] = idx ? idx[i] : (uint32_t)i;
    b->ds = ds;
    b->n = n;
    b->batch = batch;
    b->shuffle = shuffle;
    b->drop_last = drop_last;
    flc_rng_seed(&b->rng, seed);
    flc_batcher_epoch(b);
    *out = b;
    return 0;
}

void flc_batcher_free(flc_batcher_t *b)
{
    if (b == NULL)
        return;
    free(b->order);
    free(b->xb);
    free(b->yb);
    free(b);
}

size_t flc_batcher_steps(const flc_batcher_t *b)
{
    return b->drop_last ? b->n / b->batch : (b->n + b->batch - 1) / b->batch;
}

void flc_batcher_epoch(flc_batcher_t *b)
{
    b->pos = 0;
    if (b->shuffle)
        flc_rng_shuffle_u32(&b->rng, b->order, b->n);
}

size_t flc_batcher_next(flc_batcher_t *b, const float **x, const int32_t **y)
{
    size_t left = b->n - b->pos;
    size_t m = left < b->batch ? left : b->batch;
    if (m == 0 || (b->drop_last && m < b->batch))
        return 0;
    size_t dim = b->ds->dim;
    for (size_t i = 0; i < m; i++) {
        uint32_t s = b->order[b->pos + i];
        memcpy(b->xb + i * dim, b->ds->x + (size_t)s * dim, dim * sizeof(float));
        b->yb[i] = b->ds->y[s];
    }
    b->pos += m;
    *x = b->xb;
    *y = b->yb;
    return m;
}
