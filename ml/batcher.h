/* Minibatch iteration over an index list of a data set (a worker's
 * partition or a client's split), reshuffled every epoch from a seed.
 * The batcher gathers the rows of one minibatch into buffers allocated
 * once, so a training step never allocates. */
#ifndef FLC_ML_BATCHER_H
#define FLC_ML_BATCHER_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "ml/dataset.h"
#include "ml/rng.h"

/* Iterates minibatches over an index list of a data set, gathering rows
 * into its own buffers (allocated once). */
typedef struct flc_batcher {
    const flc_dataset_t *ds; /* borrowed; must outlive the batcher */
    uint32_t *order;         /* own copy of the index list, reshuffled per epoch */
    size_t n, pos, batch;
    int shuffle, drop_last;
    flc_rng_t rng;
    float *xb;   /* batch*dim */
    int32_t *yb; /* batch */
} flc_batcher_t;

/* Creates a batcher over idx[0..n) (idx NULL: all samples of ds). With
 * shuffle != 0 the order is reshuffled from `seed` at every epoch start
 * (including the first); drop_last != 0 skips a final short batch. */
int flc_batcher_new(const flc_dataset_t *ds, const uint32_t *idx, size_t n, size_t batch,
                    int shuffle, int drop_last, uint64_t seed, flc_batcher_t **out,
                    flc_err_t *err);

/* Frees a batcher; NULL is a no-op. */
void flc_batcher_free(flc_batcher_t *b);

/* Number of batches one epoch yields. */
size_t flc_batcher_steps(const flc_batcher_t *b);

/* Starts a new epoch (reshuffling when enabled). */
void flc_batcher_epoch(flc_batcher_t *b);

/* Next minibatch of this epoch: points *x (m*dim floats) and *y (m labels)
 * at the batcher's buffers, valid until the next call, and returns m; 0 when
 * the epoch is over. */
size_t flc_batcher_next(flc_batcher_t *b, const float **x, const int32_t **y);

#endif
