/* Decision trees of the random forest (forest.c): CART on byte features
 * with the Gini criterion, sqrt(d) features tried per split, bootstrap
 * samples, every random choice drawn from a generator seeded by (seed,
 * tree index), so a tree is the same whichever function trains it and the
 * single-process forest equals the distributed one tree for tree. */
#ifndef FLC_JOBS_FOREST_TREE_H
#define FLC_JOBS_FOREST_TREE_H

#include <stddef.h>
#include <stdint.h>

#include "ml/dataset.h"

/* One node; a leaf has feat -1 and its class in cls. Go left when
 * x[feat] <= thr. Stored as-is (5 x int32, little-endian) in the cache. */
typedef struct flc_tree_node {
    int32_t feat, thr, left, right, cls;
} flc_tree_node_t;

typedef struct flc_tree {
    flc_tree_node_t *node;
    size_t n, cap;
} flc_tree_t;

/* Trains tree number t of a forest seeded by seed on d (max depth depth).
 * 0 or FLC_ENOMEM. */
int flc_tree_train(const flc_dataset_u8_t *d, uint64_t seed, uint32_t t, int depth,
                   flc_tree_t *out);

void flc_tree_free(flc_tree_t *t);

/* The class tree assigns to sample x. */
int flc_tree_predict(const flc_tree_node_t *node, const uint8_t *x);

/* Majority vote of ntrees trees (node arrays) over the n samples of d
 * (ties: the lowest class) into pred. */
void flc_tree_vote(const flc_tree_node_t *const *trees, size_t ntrees,
                        const flc_dataset_u8_t *d, uint8_t *pred);

#endif
