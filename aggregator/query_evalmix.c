/* Models evaluated from one round's kept products (query_eval.c): any mix
 * global + sum_i c_i delta_i (the deltas' first-layer products are linear
 * in them), built a block of samples at a time through the rest of the
 * model, and every leave-one-out FedAvg model from one weighted sum. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "aggregator/query_internal.h"
#include "base/bigbuf.h"

/* Samples a mix builds at a time: about 4 MB of products (74 rows at
 * FLStore's 14,000 hidden units). The last layer is one sgemm per block
 * (rows x C x H), and OpenBLAS packs W2 (H x C) for each: at 256 KB
 * blocks (4 rows) the 13 mixes of a schedule query took 160-210 ms, at
 * 4 MB 50-60 ms, as with all 198 rows at once (the testbed, 2026-11-30). */
size_t flc_query_eval_block_rows(const flc_query_eval_t *ev)
{
    size_t R = ev->H ? (1u << 20) / ev->H : ev->B;
    return R < 1 ? 1 : R > ev->B ? ev->B : R;
}

/* Accuracy and mean loss (and pred, B; act, B x H: activations) of the
 * model whose first-layer products are Zg + sum_k coef[k] src[k] (each
 * B x H) and whose later layers are L. Built a block of rows at a time
 * (about 256 KB of products, in the cache) through b1, the ReLU and the
 * last layer: one pass over the sources instead of five over 11 MB
 * matrices per model at FLStore's size. The products of a row are the same
 * sums in the same order as over whole matrices. */
static int eval_terms(const flc_query_eval_t *ev, const float *const *src, const float *coef,
                      size_t nt, const float *L, double *acc, double *loss, int32_t *pred,
                      float *act)
{
    const size_t B = ev->B, H = ev->H, C = ev->C, R = flc_query_eval_block_rows(ev);
    float *lg = malloc((B * C + 1) * sizeof *lg);
    if (lg == NULL)
        return FLC_ENOMEM;
    for (size_t b0 = 0; b0 < B; b0 += R) {
        size_t r = B - b0 < R ? B - b0 : R;
        float *Zb = act ? act + b0 * H : ev->scratch;
        memcpy(Zb, ev->Zg + b0 * H, r * H * sizeof *Zb);
        for (size_t k = 0; k < nt; k++)
            cblas_saxpy((int)(r * H), coef[k], src[k] + b0 * H, 1, Zb, 1);
        if (ev->kind == FLC_QUERY_MODEL_MLP) { /* + b1, ReLU, the last layer */
            const float *b1 = L, *W2 = L + H, *b2 = W2 + H * C;
            for (size_t b = 0; b < r; b++) {
                float *z = Zb + b * H;
                for (size_t h = 0; h < H; h++) {
                    float v = z[h] + b1[h];
                    z[h] = v > 0 ? v : 0;
                }
                memcpy(lg + (b0 + b) * C, b2, C * sizeof *lg);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)r, (int)C, (int)H, 1.0f,
                        Zb, (int)H, W2, (int)C, 1.0f, lg + b0 * C, (int)C);
        } else {
            memcpy(lg + b0 * C, Zb, r * C * sizeof *lg);
        }
    }
    size_t correct = 0;
    double total = 0;
    for (size_t b = 0; b < B; b++) {
        const float *z = lg + b * C;
        size_t best = 0;
        for (size_t k = 1; k < C; k++)
            if (z[k] > z[best])
                best = k;
        correct += (int32_t)best == ev->y[b];
        if (pred)
            pred[b] = (int32_t)best;
        double mx = z[best], se = 0;
        for (size_t k = 0; k < C; k++)
            se += exp((double)z[k] - mx);
        total += log(se) + mx - (double)z[ev->y[b]];
    }
    if (acc)
        *acc = B ? (double)correct / (double)B : 0;
    if (loss)
        *loss = B ? total / (double)B : 0;
    free(lg);
    return FLC_OK;
}

int flc_query_eval_mix(const flc_query_eval_t *ev, const double *c, double *acc, double *loss,
                       int32_t *pred, float *act)
{
    const size_t BH = ev->B * ev->H, n = ev->n;
    /* after the block eval_terms builds */
    float *L = ev->scratch + flc_query_eval_block_rows(ev) * ev->H;
    const float **src = malloc((n + 1) * sizeof *src);
    float *coef = malloc((n + 1) * sizeof *coef);
    if (src == NULL || coef == NULL) {
        free(src), free(coef);
        return FLC_ENOMEM;
    }
    size_t nt = 0;
    memcpy(L, ev->g2, ev->L2 * sizeof *L);
    for (size_t i = 0; i <= n; i++) {
        if (c[i] == 0 || (i == n && !ev->has_agg))
            continue;
        src[nt] = ev->D + i * BH;
        coef[nt++] = (float)c[i];
        if (ev->L2)
            cblas_saxpy((int)ev->L2, (float)c[i], ev->S2 + i * ev->L2, 1, L, 1);
    }
    int rc = eval_terms(ev, src, coef, nt, L, acc, loss, pred, act);
    free(src), free(coef);
    return rc;
}

int flc_query_eval_loo(const flc_query_eval_t *ev, const double *w, double *acc)
{
    const size_t n = ev->n, BH = ev->B * ev->H, L2 = ev->L2;
    size_t bytes = (BH + L2 + 1) * sizeof(float);
    float *F = flc_buf_alloc(bytes), *FL = F ? F + BH : NULL;
    if (F == NULL)
        return FLC_ENOMEM;
    double W = 0;
    for (size_t j = 0; j < n; j++) {
        W += w[j];
        cblas_saxpy((int)BH, (float)w[j], ev->D + j * BH, 1, F, 1);
        if (L2)
            cblas_saxpy((int)L2, (float)w[j], ev->S2 + j * L2, 1, FL, 1);
    }
    float *L = ev->scratch + flc_query_eval_block_rows(ev) * ev->H;
    int rc = FLC_OK;
    for (size_t i = 0; rc == FLC_OK && i < n; i++) {
        acc[i] = NAN;
        if (!(W > w[i]))
            continue;
        /* global + (sum_j w_j d_j - w_i d_i) / (W - w_i) */
        float sc = (float)(1.0 / (W - w[i])), si = (float)(-w[i] / (W - w[i]));
        memcpy(L, ev->g2, L2 * sizeof *L);
        if (L2) {
            cblas_saxpy((int)L2, sc, FL, 1, L, 1);
            cblas_saxpy((int)L2, si, ev->S2 + i * L2, 1, L, 1);
        }
        const float *src[2] = {F, ev->D + i * BH};
        const float coef[2] = {sc, si};
        rc = eval_terms(ev, src, coef, 2, L, &acc[i], NULL, NULL, NULL);
    }
    flc_buf_free(F, bytes);
    return rc;
}
