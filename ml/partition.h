/* Splitting the samples of a data set into parts without copying them:
 * IID partitions into W worker parts (synchronous SGD) and Dirichlet(alpha)
 * non-IID label splits over N federated clients.
 *
 * A split is one index array holding every sample exactly once and an
 * offset per part, so N clients cost 4 bytes per sample plus one offset
 * each, however many clients there are. Splits are seeded: the same inputs
 * give the same parts in every process, so W workers can each compute
 * their own part and agree without talking. */
#ifndef FLC_ML_PARTITION_H
#define FLC_ML_PARTITION_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

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

#endif
