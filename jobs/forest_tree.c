/* CART trees for the random forest (forest_tree.h). Splits are found from
 * per-value class histograms (features are bytes), so a node costs its
 * samples plus the span of values it holds, for every feature tried. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "jobs/forest_tree.h"
#include "ml/rng.h"

#define MAXC 16 /* classes handled (Fashion-MNIST: 10) */

static int push(flc_tree_t *t, flc_tree_node_t nd)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        flc_tree_node_t *g = realloc(t->node, cap * sizeof *g);
        if (g == NULL)
            return -1;
        t->node = g;
        t->cap = cap;
    }
    t->node[t->n++] = nd;
    return (int)(t->n - 1);
}

typedef struct work {
    const flc_dataset_u8_t *d;
    flc_rng_t rng;
    int *feats;            /* permutation buffer of the d->dim features */
    int mtry;
    uint32_t (*hist)[MAXC]; /* 256 x classes */
    uint32_t *hn;          /* samples per value */
    int depth;
    flc_tree_t *t;
} work_t;

static int majority(const uint32_t *cnt, int C)
{
    int best = 0;
    for (int c = 1; c < C; c++)
        if (cnt[c] > cnt[best])
            best = c;
    return best;
}

/* Builds the subtree of samples idx[0..n) at depth; returns its node index. */
static int build(work_t *w, uint32_t *idx, size_t n, int depth)
{
    const flc_dataset_u8_t *d = w->d;
    int C = d->num_classes;
    uint32_t tot[MAXC] = {0};
    for (size_t i = 0; i < n; i++)
        tot[d->y[idx[i]]]++;
    int cls = majority(tot, C);
    int pure = tot[cls] == n;
    if (pure || depth >= w->depth || n < 2)
        return push(w->t, (flc_tree_node_t){.feat = -1, .cls = cls});
    double sum_sq = 0;
    for (int c = 0; c < C; c++)
        sum_sq += (double)tot[c] * tot[c];
    double best = (double)n - sum_sq / (double)n; /* a split must do better than none */
    int bf = -1, bt = 0;
    /* mtry features drawn without replacement (partial Fisher-Yates). */
    int D = (int)d->dim;
    for (int k = 0; k < w->mtry && k < D; k++) {
        int j = k + (int)flc_rng_below(&w->rng, (uint64_t)(D - k));
        int tmp = w->feats[k];
        w->feats[k] = w->feats[j];
        w->feats[j] = tmp;
        int f = w->feats[k];
        int lo = 255, hi = 0;
        for (size_t i = 0; i < n; i++) {
            int v = d->px[(size_t)idx[i] * d->dim + (size_t)f];
            if (v < lo)
                lo = v;
            if (v > hi)
                hi = v;
        }
        if (lo == hi)
            continue;
        for (int v = lo; v <= hi; v++) {
            memset(w->hist[v], 0, sizeof w->hist[v]);
            w->hn[v] = 0;
        }
        for (size_t i = 0; i < n; i++) {
            int v = d->px[(size_t)idx[i] * d->dim + (size_t)f];
            w->hist[v][d->y[idx[i]]]++;
            w->hn[v]++;
        }
        uint32_t L[MAXC] = {0};
        size_t nl = 0;
        for (int v = lo; v < hi; v++) {
            if (w->hn[v] == 0)
                continue;
            for (int c = 0; c < C; c++)
                L[c] += w->hist[v][c];
            nl += w->hn[v];
            size_t nr = n - nl;
            double sl = 0, sr = 0;
            for (int c = 0; c < C; c++) {
                double r = (double)(tot[c] - L[c]);
                sl += (double)L[c] * L[c];
                sr += r * r;
            }
            double imp = (double)nl - sl / (double)nl + (double)nr - sr / (double)nr;
            if (imp < best - 1e-9) {
                best = imp;
                bf = f;
                bt = v;
            }
        }
    }
    if (bf < 0)
        return push(w->t, (flc_tree_node_t){.feat = -1, .cls = cls});
    /* Partition idx: left (<= bt) first, order kept within each side. */
    size_t nl = 0;
    uint32_t *tmp = malloc(n * sizeof *tmp);
    if (tmp == NULL)
        return -1;
    size_t nr = 0;
    for (size_t i = 0; i < n; i++) {
        if (d->px[(size_t)idx[i] * d->dim + (size_t)bf] <= bt)
            idx[nl++] = idx[i];
        else
            tmp[nr++] = idx[i];
    }
    memcpy(idx + nl, tmp, nr * sizeof *tmp);
    free(tmp);
    int me = push(w->t, (flc_tree_node_t){.feat = bf, .thr = bt, .cls = cls});
    if (me < 0)
        return -1;
    int l = build(w, idx, nl, depth + 1);
    if (l < 0)
        return -1;
    int r = build(w, idx + nl, nr, depth + 1);
    if (r < 0)
        return -1;
    w->t->node[me].left = l;
    w->t->node[me].right = r;
    return me;
}

int flc_tree_train(const flc_dataset_u8_t *d, uint64_t seed, uint32_t t, int depth,
                   flc_tree_t *out)
{
    memset(out, 0, sizeof *out);
    if (d->num_classes > MAXC || d->n == 0)
        return FLC_EINVAL;
    work_t w = {.d = d, .depth = depth, .t = out};
    flc_rng_seed2(&w.rng, seed, t);
    w.mtry = (int)floor(sqrt((double)d->dim));
    if (w.mtry < 1)
        w.mtry = 1;
    w.feats = malloc(d->dim * sizeof *w.feats);
    w.hist = malloc(256 * sizeof *w.hist);
    w.hn = malloc(256 * sizeof *w.hn);
    uint32_t *idx = malloc(d->n * sizeof *idx);
    int rc = FLC_OK;
    if (w.feats == NULL || w.hist == NULL || w.hn == NULL || idx == NULL) {
        rc = FLC_ENOMEM;
    } else {
        for (size_t i = 0; i < d->dim; i++)
            w.feats[i] = (int)i;
        for (size_t i = 0; i < d->n; i++) /* the bootstrap sample */
            idx[i] = (uint32_t)flc_rng_below(&w.rng, d->n);
        if (build(&w, idx, d->n, 0) < 0)
            rc = FLC_ENOMEM;
    }
    free(w.feats);
    free(w.hist);
    free(w.hn);
    free(idx);
    if (rc != FLC_OK)
        flc_tree_free(out);
    return rc;
}

void flc_tree_free(flc_tree_t *t)
{
    free(t->node);
    memset(t, 0, sizeof *t);
}

int flc_tree_predict(const flc_tree_node_t *node, const uint8_t *x)
{
    int i = 0;
    while (node[i].feat >= 0)
        i = x[node[i].feat] <= node[i].thr ? node[i].left : node[i].right;
    return node[i].cls;
}

void flc_tree_vote(const flc_tree_node_t *const *trees, size_t ntrees,
                        const flc_dataset_u8_t *d, uint8_t *pred)
{
    for (size_t s = 0; s < d->n; s++) {
        uint32_t votes[MAXC] = {0};
        for (size_t t = 0; t < ntrees; t++)
            votes[flc_tree_predict(trees[t], d->px + s * d->dim)]++;
        pred[s] = (uint8_t)majority(votes, d->num_classes);
    }
}
