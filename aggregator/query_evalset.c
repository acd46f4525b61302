/* The evaluation set stored with a job: what the evaluation query kinds
 * (accuracy, incentives, faults, the --by accuracy views) run every
 * client's model on, next to the updates.
 *
 * Stored as the job's series "<J>/eval" through the store's named
 * operations for merged shards (no new key kind: the series is one shard,
 * like the global models "<J>/g", and goes with the job when it is removed
 * or expires). Round 0 holds the inputs, round 1 a small header with the
 * model descriptor and the labels (layout in aggregator/query.h). Floats
 * hold the header and labels exactly: every value is an integer below 2^24. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/query_internal.h"
#include "base/clock.h"
#include "cache/store_ops.h"

#define HDR 6 /* version, kind, in, hidden, out, n */
/* 2: an mlp's W1 is unit-major (ml/model.h); version 1 sets of an mlp were
 * written with input-major updates and are refused. A softmax's layout did
 * not change: its version 1 sets are read as before. */
#define EVALSET_VERSION 2
#define EXACT (1u << 24)

uint64_t flc_query_evalset_nparams(const flc_query_evalset_t *es)
{
    if (es->kind == FLC_QUERY_MODEL_SOFTMAX)
        return (uint64_t)es->in * es->out + es->out;
    if (es->kind == FLC_QUERY_MODEL_MLP)
        return (uint64_t)es->in * es->hidden + es->hidden + (uint64_t)es->hidden * es->out +
               es->out;
    return 0;
}

static int check(const char *job, const flc_query_evalset_t *es, flc_err_t *e)
{
    if (es->kind != FLC_QUERY_MODEL_SOFTMAX && es->kind != FLC_QUERY_MODEL_MLP)
        return flc_err_set(e, FLC_EINVAL, "evaluation set of job %s: model kind %d is neither "
                           "softmax nor mlp", job, es->kind);
    if (es->n == 0 || es->in == 0 || es->out < 2 || es->n >= EXACT || es->in >= EXACT ||
        es->out >= EXACT || es->hidden >= EXACT ||
        (es->kind == FLC_QUERY_MODEL_MLP && es->hidden == 0))
        return flc_err_set(e, FLC_EINVAL, "evaluation set of job %s: %zu samples of %zu "
                           "features, %zu hidden units and %zu classes are out of range", job,
                           es->n, es->in, es->hidden, es->out);
    for (size_t i = 0; es->y && i < es->n; i++)
        if (es->y[i] < 0 || (size_t)es->y[i] >= es->out)
            return flc_err_set(e, FLC_EINVAL, "evaluation set of job %s: sample %zu has label "
                               "%d, the model has %zu classes", job, i, (int)es->y[i], es->out);
    return FLC_OK;
}

static void series(char *out, size_t cap, const char *job)
{
    snprintf(out, cap, "%s/eval", job);
}

int flc_query_evalset_put(flc_store_t *s, const char *job, const flc_query_evalset_t *es,
                          flc_err_t *e)
{
    int rc = check(job, es, e);
    if (rc != FLC_OK)
        return rc;
    char ej[FLC_NAME_MAX + 1];
    series(ej, sizeof ej, job);
    float *lab = malloc((HDR + es->n) * sizeof *lab);
    if (lab == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory for %zu labels", es->n);
    float hdr[HDR] = {EVALSET_VERSION,   (float)es->kind, (float)es->in,
                      (float)es->hidden, (float)es->out,  (float)es->n};
    memcpy(lab, hdr, sizeof hdr);
    for (size_t i = 0; i < es->n; i++)
        lab[HDR + i] = (float)es->y[i];
    flc_shard_t x = {.round = 0, .shard = 0, .num_shards = 1, .offset = 0,
                     .count = (uint64_t)es->n * es->in, .model_size = (uint64_t)es->n * es->in,
                     .num_samples = es->n, .created_ms = flc_wall_ms(), .values = es->x};
    flc_shard_t y = x;
    y.round = 1;
    y.count = y.model_size = HDR + es->n;
    y.values = lab;
    snprintf(x.job, sizeof x.job, "%s", ej);
    snprintf(y.job, sizeof y.job, "%s", ej);
    /* Labels last: a reader that finds them finds the inputs they describe. */
    if (flc_store_put_merged(s, &x) != FLC_OK || flc_store_put_merged(s, &y) != FLC_OK) {
        *e = *flc_store_error(s);
        flc_err_wrap(e, "storing the evaluation set of job %s: ", job);
        rc = e->code;
    }
    free(lab);
    return rc;
}

void flc_query_evalset_free(flc_query_evalset_t *es)
{
    if (es == NULL)
        return;
    free(es->x);
    free(es->y);
    memset(es, 0, sizeof *es);
}

int flc_query_evalset_get_labels(flc_store_t *s, const char *job, flc_query_evalset_t *es,
                                 flc_err_t *e)
{
    memset(es, 0, sizeof *es);
    char ej[FLC_NAME_MAX + 1];
    series(ej, sizeof ej, job);
    flc_shard_t y = {0};
    int rc = flc_store_get_merged(s, ej, 1, 0, &y, NULL, 0);
    if (rc == FLC_ENOTFOUND)
        return flc_err_set(e, FLC_ENOTFOUND, "job %s has no evaluation set (flcache simulate "
                           "stores one; for other jobs: flcache eval-set --job %s)", job, job);
    if (rc != FLC_OK) {
        *e = *flc_store_error(s);
        return rc;
    }
    const float *h = y.values;
    if (y.count >= HDR && h[0] == 1 && (int)h[1] == FLC_QUERY_MODEL_MLP) {
        flc_shard_release(&y);
        return flc_err_set(e, FLC_EDATA, "evaluation set of job %s was stored for an mlp "
                           "whose W1 was input-major (flcache before the unit-major layout "
                           "of ml/model.h): its updates would be read transposed; train the "
                           "job again, or store the set again (flcache eval-set) if its "
                           "updates are unit-major (PyTorch's nn.Linear)", job);
    }
    if (y.count < HDR || (h[0] != 1 && h[0] != EVALSET_VERSION) ||
        y.count != HDR + (uint64_t)h[5]) {
        flc_shard_release(&y);
        return flc_err_set(e, FLC_EDATA, "evaluation set of job %s: its label record is not "
                           "version %d or has the wrong length", job, EVALSET_VERSION);
    }
    es->kind = (int)h[1];
    es->in = (size_t)h[2];
    es->hidden = (size_t)h[3];
    es->out = (size_t)h[4];
    es->n = es->stored = (size_t)h[5];
    if ((rc = check(job, es, e)) != FLC_OK) {
        flc_shard_release(&y);
        memset(es, 0, sizeof *es);
        return rc;
    }
    es->y = malloc(es->n * sizeof *es->y);
    for (size_t i = 0; es->y && i < es->n; i++) {
        float v = h[HDR + i];
        es->y[i] = (int32_t)v;
        if (v != floorf(v) || v < 0 || (size_t)v >= es->out)
            rc = flc_err_set(e, FLC_EDATA, "evaluation set of job %s: label %zu is %g", job, i,
                             (double)v);
    }
    flc_shard_release(&y);
    if (es->y == NULL)
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory for %zu labels", es->n);
    if (rc != FLC_OK)
        flc_query_evalset_free(es);
    return rc;
}

int flc_query_evalset_get_inputs(flc_store_t *s, const char *job, flc_query_evalset_t *es,
                                 flc_err_t *e)
{
    char ej[FLC_NAME_MAX + 1];
    series(ej, sizeof ej, job);
    flc_shard_t x = {0};
    int rc = flc_store_get_merged(s, ej, 0, 0, &x, NULL, 0);
    if (rc != FLC_OK) {
        *e = *flc_store_error(s);
        return flc_err_wrap(e, "evaluation set of job %s, inputs: ", job);
    }
    /* x.count: every sample stored (es->n may be fewer: the first ones) */
    size_t stored = es->stored ? es->stored : es->n;
    if (x.count != (uint64_t)stored * es->in || stored < es->n)
        rc = flc_err_set(e, FLC_EDATA, "evaluation set of job %s: %llu input floats for %zu "
                         "samples of %zu features", job, (unsigned long long)x.count, stored,
                         es->in);
    if (rc == FLC_OK) {
        free(es->x);
        es->x = malloc(es->n * es->in * sizeof *es->x);
        if (es->x == NULL)
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory for %zu samples", es->n);
        else
            memcpy(es->x, x.values, es->n * es->in * sizeof *es->x);
    }
    flc_shard_release(&x);
    return rc;
}

int flc_query_evalset_get(flc_store_t *s, const char *job, size_t limit, flc_query_evalset_t *es,
                          flc_err_t *e)
{
    int rc = flc_query_evalset_get_labels(s, job, es, e);
    if (rc != FLC_OK)
        return rc;
    if (limit && limit < es->n)
        es->n = limit;
    if ((rc = flc_query_evalset_get_inputs(s, job, es, e)) != FLC_OK)
        flc_query_evalset_free(es);
    return rc;
}

int flc_query_evalset_stamp(flc_store_t *s, const char *job, uint64_t *stamp)
{
    char ej[FLC_NAME_MAX + 1];
    series(ej, sizeof ej, job);
    uint64_t sx = 0, sy = 0;
    int rc = flc_store_merged_stamp(s, ej, 0, 0, &sx);
    if (rc == FLC_OK)
        rc = flc_store_merged_stamp(s, ej, 1, 0, &sy);
    *stamp = sx * 1099511628211ull ^ sy;
    return rc == FLC_OK && (sx == 0 || sy == 0) ? FLC_ENOTFOUND : rc;
}
