/* The minibatch iterator: gathers the rows of an index list, in a seeded
 * per-epoch order, into one batch buffer allocated at creation. */
#include <stdlib.h>
#include <string.h>

#include "ml/batcher.h"

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
