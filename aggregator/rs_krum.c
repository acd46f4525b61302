/* Krum and Multi-Krum across shards. Krum ranks whole updates by their
 * distances to each other, so the mergers of the S shards must agree on one
 * selection: each publishes its shard's partial pairwise squared distances
 * (they sum to the whole model's), waits for the others (BLPOP on its own
 * list, no polling), sums them and runs the same deterministic selection.
 * Only the K*K matrices move between shards, never the updates. Equal
 * scores are broken by client id, so one shard or many, in any arrival
 * order, choose the same updates (issue 17 point 5); with one shard the
 * merger takes this path too (rs_merger.c), exchanging with itself.
 *
 * Partial layout, one field per shard in fl:{J/j}:krum:<r>:
 *   u32 K | K bytes present | K*K doubles (row-major, indexes of cfg->expected) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/rs_internal.h"
#include "base/clock.h"
#include "cache/store_ops.h"

static int publish(flc_store_t *s, const flc_rs_merger_cfg_t *cfg, const double *D,
                   const unsigned char *present, size_t K, flc_err_t *e)
{
    size_t len = 4 + K + K * K * sizeof(double);
    char *blob = malloc(len);
    if (blob == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory for a %zux%zu distance matrix", K, K);
    uint32_t k32 = (uint32_t)K;
    memcpy(blob, &k32, 4);
    memcpy(blob + 4, present, K);
    memcpy(blob + 4 + K, D, K * K * sizeof(double));
    char field[16];
    snprintf(field, sizeof field, "%u", cfg->shard);
    int rc = flc_store_krum_partial_put(s, cfg->job, cfg->round, cfg->shard, blob, len);
    free(blob);
    for (uint32_t t = 0; rc == FLC_OK && t < cfg->num_shards; t++)
        rc = flc_store_notify(s, cfg->job, cfg->round, t, "krumready", field, 1);
    if (rc != FLC_OK)
        *e = *flc_store_error(s);
    return rc;
}

/* Waits for all S partials and sums them into D; present[i] ends 1 only for
 * clients every shard kept. */
static int gather(flc_store_t *s, const flc_rs_merger_cfg_t *cfg, unsigned wait_ms, double *D,
                  unsigned char *present, size_t K, flc_err_t *e)
{
    uint64_t t0 = flc_now_ns();
    for (uint32_t got = 0; got < cfg->num_shards; got++) {
        double spent = (double)(flc_now_ns() - t0) / 1e6;
        unsigned left = spent >= wait_ms ? 1 : wait_ms - (unsigned)spent;
        int rc = flc_store_wait(s, cfg->job, cfg->round, cfg->shard, "krumready", left, NULL, 0);
        if (rc == FLC_ETIMEOUT)
            return flc_err_set(e, FLC_ETIMEOUT, "krum: only %u of %u shards published their "
                               "distances within %u ms", got, cfg->num_shards, wait_ms);
        if (rc != FLC_OK) {
            *e = *flc_store_error(s);
            return rc;
        }
    }
    flc_store_fields_t all;
    if (flc_store_krum_partial_getall(s, cfg->job, cfg->round, &all) != FLC_OK) {
        *e = *flc_store_error(s);
        return e->code;
    }
    int rc = FLC_OK;
    memset(D, 0, K * K * sizeof *D);
    memset(present, 1, K);
    size_t want = 4 + K + K * K * sizeof(double);
    for (size_t i = 0; rc == FLC_OK && i < all.n; i++) {
        const char *b = all.v[i].value;
        uint32_t k32 = 0;
        if (all.v[i].len == want)
            memcpy(&k32, b, 4);
        if (k32 != K) {
            rc = flc_err_set(e, FLC_EDATA, "krum: a shard's distance matrix has the wrong size");
            break;
        }
        const double *Ds = (const double *)(void *)(b + 4 + K);
        for (size_t x = 0; x < K; x++)
            present[x] &= (unsigned char)b[4 + x];
        for (size_t x = 0; x < K * K; x++) {
            double v;
            memcpy(&v, Ds + x, sizeof v); /* the blob is not 8-byte aligned */
            D[x] += v;
        }
    }
    if (rc == FLC_OK && all.n != cfg->num_shards)
        rc = flc_err_set(e, FLC_EDATA, "krum: %zu partials for %u shards", all.n,
                         cfg->num_shards);
    flc_store_fields_free(&all);
    return rc;
}

/* Insertion sort of the expected-list indexes idx[0..k) by client id
 * (k is a round's clients: tens to hundreds). */
static void sort_by_client(size_t *idx, size_t k, const char *const *names)
{
    for (size_t i = 1; i < k; i++) {
        size_t v = idx[i], j = i;
        for (; j > 0 && strcmp(names[idx[j - 1]], names[v]) > 0; j--)
            idx[j] = idx[j - 1];
        idx[j] = v;
    }
}

int flc_rs_krum(flc_store_t *s, const flc_rs_merger_cfg_t *cfg, float *const *kept,
                const long *kept_idx, size_t nkept, uint64_t count, const double *scale,
                unsigned wait_ms, float *out, unsigned char *used, flc_err_t *e)
{
    size_t K = cfg->n_expected;
    double *Dl = calloc(nkept * nkept + 1, sizeof *Dl);
    double *D = calloc(K * K, sizeof *D);
    unsigned char *present = calloc(K, 1);
    long *local_of = malloc(K * sizeof *local_of); /* expected index -> kept index */
    size_t *eligible = malloc(K * sizeof *eligible), *sel = malloc(K * sizeof *sel);
    double *Dsub = malloc(K * K * sizeof *Dsub);
    int rc = FLC_OK;
    if (!Dl || !D || !present || !local_of || !eligible || !sel || !Dsub)
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory for krum over %zu clients", K);
    if (rc == FLC_OK)
        rc = flc_merge_sqdist_partial((const float *const *)kept, nkept, count, scale, Dl, e);
    if (rc == FLC_OK) {
        for (size_t x = 0; x < K; x++)
            local_of[x] = -1;
        for (size_t i = 0; i < nkept; i++) {
            local_of[kept_idx[i]] = (long)i;
            present[kept_idx[i]] = 1;
            for (size_t j = 0; j < nkept; j++)
                D[(size_t)kept_idx[i] * K + (size_t)kept_idx[j]] = Dl[i * nkept + j];
        }
        rc = publish(s, cfg, D, present, K, e);
    }
    if (rc == FLC_OK)
        rc = gather(s, cfg, wait_ms, D, present, K, e);
    size_t k = 0, m = 0;
    int f = 0;
    if (rc == FLC_OK) {
        for (size_t x = 0; x < K; x++)
            if (present[x])
                eligible[k++] = x;
        /* Ties go to the lower index (flc_merge_krum_select): ordered by
         * client id, the choice between equal scores is the same whatever
         * the expected list's order, the arrival order or the shard count. */
        sort_by_client(eligible, k, cfg->expected);
        for (size_t i = 0; i < k; i++)
            for (size_t j = 0; j < k; j++)
                Dsub[i * k + j] = D[eligible[i] * K + eligible[j]];
        rc = flc_merge_krum_params(&cfg->rule, k, &f, &m, e);
    }
    if (rc == FLC_OK)
        rc = flc_merge_krum_select(Dsub, k, f, m, sel, NULL, e);
    if (rc == FLC_OK) {
        /* Every shard made the same choice; map it to this shard's updates. */
        for (size_t i = 0; i < m; i++)
            sel[i] = (size_t)local_of[eligible[sel[i]]];
        memset(used, 0, nkept);
        for (size_t i = 0; i < m; i++)
            used[sel[i]] = 1;
        rc = flc_merge_mean_of((const float *const *)kept, sel, m, count, scale, out, e);
    }
    free(Dl), free(D), free(present), free(local_of), free(eligible), free(sel), free(Dsub);
    return rc;
}

int flc_rs_dist_exchange(flc_store_t *s, const flc_rs_merger_cfg_t *cfg, float *const *kept,
                         const long *kept_idx, size_t nkept, uint64_t count, const double *scale,
                         unsigned wait_ms, double *D, unsigned char *present, flc_err_t *e)
{
    size_t K = cfg->n_expected;
    double *Dl = calloc(nkept * nkept + 1, sizeof *Dl);
    if (Dl == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory for distances of %zu clients", K);
    int rc = flc_merge_sqdist_partial((const float *const *)kept, nkept, count, scale, Dl, e);
    if (rc == FLC_OK) {
        memset(D, 0, K * K * sizeof *D);
        memset(present, 0, K);
        for (size_t i = 0; i < nkept; i++) {
            present[kept_idx[i]] = 1;
            for (size_t j = 0; j < nkept; j++)
                D[(size_t)kept_idx[i] * K + (size_t)kept_idx[j]] = Dl[i * nkept + j];
        }
        /* One shard holds the whole model: nothing to exchange. */
        if (cfg->num_shards > 1)
            rc = publish(s, cfg, D, present, K, e);
        if (rc == FLC_OK && cfg->num_shards > 1)
            rc = gather(s, cfg, wait_ms, D, present, K, e);
    }
    free(Dl);
    return rc;
}
