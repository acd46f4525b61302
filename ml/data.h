/* Data sets for workers and federated clients: loading (Fashion-MNIST IDX
 * gzip files), normalization, partitioning into W worker parts,
 * Dirichlet(alpha) non-IID label splits over N clients, and minibatch
 * iteration over an index list.
 *
 * A data set is dense and row-major: sample i is x[i*dim .. i*dim+dim) with
 * label y[i] in 0..num_classes-1. Partitions and client splits never copy
 * samples; they are lists of sample indices (flc_parts_t), and a batcher
 * gathers the rows of one minibatch into its own buffer. */
#ifndef FLC_ML_DATA_H
#define FLC_ML_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "ml/rng.h"

/* Where Debian's dataset-fashion-mnist package puts the files;
 * FLCACHE_DATA_DIR overrides it. */
#define FLC_FASHION_DIR "/usr/share/datasets/fashion-mnist"

typedef struct flc_dataset {
    size_t n;             /* samples */
    size_t dim;           /* features per sample */
    int num_classes;      /* labels are 0..num_classes-1 */
    float *x;             /* n*dim floats, row-major, owned */
    int32_t *y;           /* n labels, owned */
} flc_dataset_t;

/* Allocates an n x dim data set with zeroed x and y. Free with
 * flc_data_free. Returns 0, FLC_EINVAL or FLC_ENOMEM. */
int flc_data_new(size_t n, size_t dim, int num_classes, flc_dataset_t **out, flc_err_t *err);

/* Frees a data set; NULL is a no-op. */
void flc_data_free(flc_dataset_t *ds);

/* Copies the samples idx[0..n) of ds into a new data set (for a worker that
 * wants its partition contiguous). Caller frees *out. */
int flc_data_subset(const flc_dataset_t *ds, const uint32_t *idx, size_t n, flc_dataset_t **out,
                    flc_err_t *err);

/* Counts labels: counts[c] for c < ds->num_classes (caller's array). */
void flc_data_label_counts(const flc_dataset_t *ds, const uint32_t *idx, size_t n, size_t *counts);

/* ---- loaders ---- */

/* Loads an IDX image file (magic 0x00000803, unsigned bytes, n x rows x cols)
 * and its IDX label file (magic 0x00000801), each gzip-compressed or plain.
 * Pixels are scaled to [0, 1] (byte / 255). limit > 0 keeps only the first
 * `limit` samples (and reads no further). num_classes > 0 fixes the class
 * count and rejects larger labels; 0 infers max label + 1.
 * Errors: FLC_EIO when a file cannot be opened (the message names the path
 * and the Debian package), FLC_EDATA for a bad magic number, bad dimensions,
 * image/label count mismatch, out-of-range labels, or truncated/corrupt
 * gzip data (the message says which file and what was wrong). */
int flc_data_load_idx(const char *images_path, const char *labels_path, size_t limit,
                      int num_classes, flc_dataset_t **out, flc_err_t *err);

/* Loads Fashion-MNIST from dir (NULL: $FLCACHE_DATA_DIR, else
 * FLC_FASHION_DIR): the 60000-sample train split when train != 0, else the
 * 10000-sample t10k split; limit as in flc_data_load_idx; 10 classes. */
int flc_data_load_fashion(const char *dir, int train, size_t limit, flc_dataset_t **out,
                          flc_err_t *err);

/* ---- normalization ---- */

enum {
    FLC_NORM_GLOBAL = 1,  /* one mean and std over all features */
    FLC_NORM_FEATURE = 2, /* a mean and std per feature (column) */
};

/* Statistics fitted on one data set (the train set) and applied to others
 * (the test set) so both see the same transform. */
typedef struct flc_norm {
    int mode;
    size_t dim;
    float *mean;    /* dim values (FEATURE) or 1 (GLOBAL), owned */
    float *inv_std; /* same length; 1 where the std is ~0 (constant pixels) */
} flc_norm_t;

/* Fits mean/std of ds into *norm (allocates; release with flc_norm_release).
 * Returns 0, FLC_EINVAL (bad mode, empty set) or FLC_ENOMEM. */
int flc_norm_fit(const flc_dataset_t *ds, int mode, flc_norm_t *norm, flc_err_t *err);

/* x = (x - mean) * inv_std in place. Returns FLC_EDIM when dims differ. */
int flc_norm_apply(const flc_norm_t *norm, flc_dataset_t *ds, flc_err_t *err);

/* Frees the arrays of *norm (not norm itself) and zeroes it. */
void flc_norm_release(flc_norm_t *norm);

/* ---- partitions and client splits ---- */

/* A split of sample indices into parts: part p is
 * idx[off[p] .. off[p+1]), and every index appears in exactly one part. */
typedef struct flc_parts {
    int nparts;
    size_t total; /* = off[nparts] */
    uint32_t *idx;
    size_t *off;  /* nparts + 1 offsets */
} flc_parts_t;

/* Frees a split; NULL is a no-op. */
void flc_parts_free(flc_parts_t *p);

/* Part i: returns its length and points *idx at its first index. */
size_t flc_parts_get(const flc_parts_t *p, int i, const uint32_t **idx);

/* IID split of n samples into w parts: a seeded shuffle of 0..n-1, cut into
 * contiguous parts whose sizes differ by at most one (the first n % w parts
 * get the extra sample). Same (n, w, seed) gives the same parts in every
 * process. Caller frees *out. */
int flc_split_iid(size_t n, int w, uint64_t seed, flc_parts_t **out, flc_err_t *err);

/* Non-IID label split (Hsu et al. 2019): for each class, proportions over
 * the nclients clients are drawn from Dirichlet(alpha) and that class's
 * (shuffled) samples are cut by those proportions. Small alpha (0.1) gives
 * clients dominated by one or two classes; large alpha (1000) is close to
 * IID. When min_size > 0 the draw is repeated (up to 1000 times) until every
 * client holds at least min_size samples, else FLC_EINVAL. Each client's
 * list is shuffled. Seeded and reproducible. Caller frees *out. */
int flc_split_dirichlet(const int32_t *labels, size_t n, int num_classes, int nclients,
                        double alpha, uint64_t seed, size_t min_size, flc_parts_t **out,
                        flc_err_t *err);

/* ---- minibatches ---- */

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
