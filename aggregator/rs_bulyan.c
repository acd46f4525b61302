/* Bulyan across shards (aggregator/merge_bulyan.c has the arithmetic).
 *
 * The selection needs whole-model distances, so the mergers exchange partial
 * distance matrices exactly as sharded Krum does (flc_rs_dist_exchange) and
 * each makes the same selection; the trimmed mean is coordinate-wise, so each
 * then averages its own slice of the selected updates. Ties are broken by the
 * client id's order (strcmp), which every shard computes the same way and
 * which does not depend on arrival order; so one shard also takes this path. */
#include <stdlib.h>
#include <string.h>

#include "aggregator/rs_internal.h"

/* rank[x] = position of cfg->expected[x] in strcmp order. */
static void id_ranks(const flc_rs_merger_cfg_t *cfg, size_t *rank)
{
    size_t K = cfg->n_expected;
    for (size_t x = 0; x < K; x++) {
        size_t r = 0;
        for (size_t y = 0; y < K; y++) {
            int c = strcmp(cfg->expected[y], cfg->expected[x]);
            r += c < 0 || (c == 0 && y < x);
        }
        rank[x] = r;
    }
}

int flc_rs_bulyan(flc_store_t *s, const flc_rs_merger_cfg_t *cfg, float *const *kept,
                  const long *kept_idx, size_t nkept, uint64_t count, const double *scale,
                  unsigned wait_ms, float *out, unsigned char *used, flc_err_t *e)
{
    size_t K = cfg->n_expected;
    double *D = calloc(K * K + 1, sizeof *D), *Dsub = malloc((K * K + 1) * sizeof *Dsub);
    unsigned char *present = calloc(K + 1, 1);
    size_t *rank = malloc((K + 1) * sizeof *rank), *erank = malloc((K + 1) * sizeof *erank);
    size_t *eligible = malloc((K + 1) * sizeof *eligible), *sel = malloc((K + 1) * sizeof *sel);
    size_t *krank = malloc((nkept + 1) * sizeof *krank);
    long *local_of = malloc((K + 1) * sizeof *local_of); /* expected index -> kept index */
    int rc = FLC_OK;
    if (!D || !Dsub || !present || !rank || !erank || !eligible || !sel || !krank || !local_of)
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory for bulyan over %zu clients", K);
    if (rc == FLC_OK)
        rc = flc_rs_dist_exchange(s, cfg, kept, kept_idx, nkept, count, scale, wait_ms, D,
                                  present, e);
    size_t k = 0, theta = 0, beta = 0;
    int f = 0;
    if (rc == FLC_OK) {
        id_ranks(cfg, rank);
        for (size_t x = 0; x < K; x++)
            local_of[x] = -1;
        for (size_t i = 0; i < nkept; i++) {
            local_of[kept_idx[i]] = (long)i;
            krank[i] = rank[kept_idx[i]];
        }
        for (size_t x = 0; x < K; x++)
            if (present[x]) {
                erank[k] = rank[x];
                eligible[k++] = x;
            }
        for (size_t i = 0; i < k; i++)
            for (size_t j = 0; j < k; j++)
                Dsub[i * k + j] = D[eligible[i] * K + eligible[j]];
        rc = flc_merge_bulyan_params(&cfg->rule, k, &f, &theta, &beta, e);
    }
    if (rc == FLC_OK)
        rc = flc_merge_bulyan_select(Dsub, k, f, theta, erank, sel, e);
    if (rc == FLC_OK) {
        /* Every shard made the same choice; map it to this shard's updates
         * (a client another shard dropped is not eligible, so all are here). */
        for (size_t i = 0; i < theta; i++)
            sel[i] = (size_t)local_of[eligible[sel[i]]];
        memset(used, 0, nkept);
        for (size_t i = 0; i < theta; i++)
            used[sel[i]] = 1;
        rc = flc_merge_bulyan_trim((const float *const *)kept, sel, theta, beta, count, scale,
                                   krank, out, e);
    }
    free(D), free(Dsub), free(present), free(rank), free(erank), free(eligible), free(sel);
    free(krank), free(local_of);
    return rc;
}
