/* What every model kind shares: descriptors and the flat parameter layout,
 * the workspace, seeded initialization, the softmax cross-entropy head
 * (loss, probabilities, dlogits), prediction, batched evaluation, the SGD
 * step and the proximal/L2 hook. The kind-specific passes live in
 * model_softmax.c and model_mlp.c. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ml/model.h"
#include "ml/model_internal.h"
#include "ml/rng.h"

int flc_model_desc_init(flc_model_desc_t *d, const char *name, size_t in, size_t hidden,
                        size_t classes, flc_err_t *err)
{
    memset(d, 0, sizeof *d);
    if (name == NULL)
        return flc_err_set(err, FLC_EINVAL, "model name is missing (softmax or mlp)");
    if (in == 0 || classes < 2)
        return flc_err_set(err, FLC_EINVAL, "model %s: %zu inputs and %zu classes are invalid",
                           name, in, classes);
    if (strcmp(name, "softmax") == 0) {
        d->kind = FLC_MODEL_SOFTMAX;
    } else if (strcmp(name, "mlp") == 0) {
        d->kind = FLC_MODEL_MLP;
        d->hidden = hidden ? hidden : FLC_MLP_HIDDEN_DEFAULT;
    } else {
        return flc_err_set(err, FLC_EINVAL, "unknown model '%s' (expected softmax or mlp)", name);
    }
    d->in = in;
    d->out = classes;
    return 0;
}

const char *flc_model_kind_name(int kind)
{
    switch (kind) {
    case FLC_MODEL_SOFTMAX: return "softmax";
    case FLC_MODEL_MLP: return "mlp";
    default: return "unknown";
    }
}

void flc_model_layout(const flc_model_desc_t *d, flc_model_layout_t *l)
{
    memset(l, 0, sizeof *l);
    size_t off = 0;
#define ADD(nm, r, c)                                                                       \
    do {                                                                                    \
        l->t[l->ntensors].name = (nm);                                                      \
        l->t[l->ntensors].off = off;                                                        \
        l->t[l->ntensors].rows = (r);                                                       \
        l->t[l->ntensors].cols = (c);                                                       \
        off += (size_t)(r) * (c);                                                           \
        l->ntensors++;                                                                      \
    } while (0)
    if (d->kind == FLC_MODEL_SOFTMAX) {
        ADD("W", d->in, d->out);
        ADD("b", 1, d->out);
    } else if (d->kind == FLC_MODEL_MLP) {
        ADD("W1", d->hidden, d->in);
        ADD("b1", 1, d->hidden);
        ADD("W2", d->hidden, d->out);
        ADD("b2", 1, d->out);
    }
#undef ADD
}

size_t flc_model_desc_nparams(const flc_model_desc_t *d)
{
    if (d->kind == FLC_MODEL_SOFTMAX)
        return d->in * d->out + d->out;
    if (d->kind == FLC_MODEL_MLP)
        return d->in * d->hidden + d->hidden + d->hidden * d->out + d->out;
    return 0;
}

int flc_model_new(const flc_model_desc_t *d, size_t max_batch, flc_model_t **out,
                  flc_err_t *err)
{
    size_t np = flc_model_desc_nparams(d);
    if (out != NULL)
        *out = NULL;
    if (out == NULL || np == 0 || max_batch == 0 || (d->kind == FLC_MODEL_MLP && d->hidden == 0))
        return flc_err_set(err, FLC_EINVAL, "model %s: bad descriptor or batch size %zu",
                           flc_model_kind_name(d->kind), max_batch);
    /* sgemm takes int sizes. */
    if (max_batch > (1u << 24) || d->in > (1u << 28) || d->hidden > (1u << 24) ||
        d->out > (1u << 24))
        return flc_err_set(err, FLC_EINVAL, "model %s: sizes too large for BLAS",
                           flc_model_kind_name(d->kind));
    flc_model_t *m = calloc(1, sizeof *m);
    size_t hid = d->hidden, nf = 2 * max_batch * hid + max_batch * d->out + max_batch +
                                 max_batch * d->in;
    if (m != NULL) {
        m->ws = malloc(nf * sizeof(float));
        m->pred = malloc(max_batch * sizeof(int32_t));
    }
    if (m == NULL || m->ws == NULL || m->pred == NULL) {
        flc_model_free(m);
        return flc_err_set(err, FLC_ENOMEM, "model %s: out of memory for a batch-%zu workspace",
                           flc_model_kind_name(d->kind), max_batch);
    }
    m->d = *d;
    m->nparams = np;
    m->max_batch = max_batch;
    m->h = m->ws;
    m->dh = m->h + max_batch * hid;
    m->prob = m->dh + max_batch * hid;
    m->ones = m->prob + max_batch * d->out;
    m->xg = m->ones + max_batch;
    for (size_t i = 0; i < max_batch; i++)
        m->ones[i] = 1.0f;
    *out = m;
    return 0;
}

void flc_model_free(flc_model_t *m)
{
    if (m == NULL)
        return;
    free(m->ws);
    free(m->pred);
    free(m);
}

static void fill_normal(flc_rng_t *r, float *w, size_t n, double std)
{
    for (size_t i = 0; i < n; i++)
        w[i] = (float)(flc_rng_normal(r) * std);
}

void flc_model_init_params(const flc_model_t *m, float *w, uint64_t seed)
{
    flc_rng_t r;
    flc_rng_seed(&r, seed);
    const flc_model_desc_t *d = &m->d;
    memset(w, 0, m->nparams * sizeof(float));
    if (d->kind == FLC_MODEL_SOFTMAX) {
        fill_normal(&r, w, d->in * d->out, sqrt(2.0 / (double)(d->in + d->out)));
    } else {
        float *W2 = w + d->in * d->hidden + d->hidden;
        fill_normal(&r, w, d->in * d->hidden, sqrt(2.0 / (double)d->in));
        fill_normal(&r, W2, d->hidden * d->out, sqrt(2.0 / (double)(d->hidden + d->out)));
    }
}

static void forward(flc_model_t *m, const float *w, const float *x, size_t bs)
{
    if (m->d.kind == FLC_MODEL_SOFTMAX)
        flc_softmax_forward(m, w, x, bs);
    else
        flc_mlp_forward(m, w, x, bs);
}

static int check_batch(const flc_model_t *m, const int32_t *y, size_t bs, flc_err_t *err)
{
    if (bs == 0 || bs > m->max_batch)
        return flc_err_set(err, FLC_EINVAL, "batch of %zu rows, model workspace holds 1..%zu", bs,
                           m->max_batch);
    for (size_t r = 0; y != NULL && r < bs; r++)
        if (y[r] < 0 || (size_t)y[r] >= m->d.out)
            return flc_err_set(err, FLC_EINVAL, "row %zu has label %d, model has %zu classes", r,
                               (int)y[r], m->d.out);
    return 0;
}

/* Turns the logits in m->prob into probabilities (stable: max subtracted)
 * and returns the summed cross-entropy of labels y; when y is NULL only the
 * probabilities are computed. Sums in double so large batches stay exact. */
static double softmax_xent(flc_model_t *m, const int32_t *y, size_t bs)
{
    const size_t out = m->d.out;
    double total = 0.0;
    for (size_t r = 0; r < bs; r++) {
        float *z = m->prob + r * out;
        float mx = z[0];
        for (size_t c = 1; c < out; c++)
            if (z[c] > mx)
                mx = z[c];
        float sum = 0.0f;
        for (size_t c = 0; c < out; c++) {
            z[c] = expf(z[c] - mx);
            sum += z[c];
        }
        float inv = 1.0f / sum;
        for (size_t c = 0; c < out; c++)
            z[c] *= inv;
        if (y != NULL) {
            /* -log p_y computed from the logit margin would need the logits
             * we just overwrote; clamping p_y keeps log finite instead. */
            float p = z[y[r]];
            total -= log(p > 1e-30f ? (double)p : 1e-30);
        }
    }
    return total;
}

int flc_model_loss_grad(flc_model_t *m, const float *w, const float *x, const int32_t *y,
                        size_t bs, float *grad, float *loss, flc_err_t *err)
{
    int rc = check_batch(m, y, bs, err);
    if (rc != 0)
        return rc;
    forward(m, w, x, bs);
    double total = softmax_xent(m, y, bs);
    if (loss != NULL)
        *loss = (float)(total / (double)bs);
    /* dLoss/dlogits of the mean loss: (p - onehot(y)) / bs, in place. */
    const size_t out = m->d.out;
    const float inv_bs = 1.0f / (float)bs;
    for (size_t r = 0; r < bs; r++) {
        float *z = m->prob + r * out;
        z[y[r]] -= 1.0f;
        for (size_t c = 0; c < out; c++)
            z[c] *= inv_bs;
    }
    if (m->d.kind == FLC_MODEL_SOFTMAX)
        flc_softmax_backward(m, w, x, bs, grad);
    else
        flc_mlp_backward(m, w, x, bs, grad);
    return 0;
}

int flc_model_loss(flc_model_t *m, const float *w, const float *x, const int32_t *y, size_t bs,
                   float *loss, flc_err_t *err)
{
    int rc = check_batch(m, y, bs, err);
    if (rc != 0)
        return rc;
    forward(m, w, x, bs);
    *loss = (float)(softmax_xent(m, y, bs) / (double)bs);
    return 0;
}

/* Argmax of each row of the logits in m->prob (before softmax: same argmax). */
static void argmax_rows(const flc_model_t *m, size_t bs, int32_t *pred)
{
    const size_t out = m->d.out;
    for (size_t r = 0; r < bs; r++) {
        const float *z = m->prob + r * out;
        size_t best = 0;
        for (size_t c = 1; c < out; c++)
            if (z[c] > z[best])
                best = c;
        pred[r] = (int32_t)best;
    }
}

int flc_model_predict(flc_model_t *m, const float *w, const float *x, size_t bs, int32_t *pred,
                      flc_err_t *err)
{
    int rc = check_batch(m, NULL, bs, err);
    if (rc != 0)
        return rc;
    forward(m, w, x, bs);
    argmax_rows(m, bs, pred);
    return 0;
}

int flc_model_evaluate(flc_model_t *m, const float *w, const flc_dataset_t *ds,
                       const uint32_t *idx, size_t n, double *accuracy, double *loss,
                       flc_err_t *err)
{
    if (ds->dim != m->d.in || (size_t)ds->num_classes > m->d.out)
        return flc_err_set(err, FLC_EDIM,
                           "data set has %zu features and %d classes, model %s takes %zu and %zu",
                           ds->dim, ds->num_classes, flc_model_kind_name(m->d.kind), m->d.in,
                           m->d.out);
    if (idx == NULL)
        n = ds->n;
    const size_t dim = ds->dim;
    size_t correct = 0;
    double total = 0.0;
    for (size_t i = 0; i < n; i += m->max_batch) {
        size_t bs = n - i < m->max_batch ? n - i : m->max_batch;
        const float *x;
        const int32_t *y;
        int32_t *yg = m->pred; /* labels gathered here, then overwritten */
        if (idx == NULL) {
            x = ds->x + i * dim;
            y = ds->y + i;
        } else {
            for (size_t r = 0; r < bs; r++) {
                uint32_t s = idx[i + r];
                if (s >= ds->n)
                    return flc_err_set(err, FLC_EINVAL, "evaluate: index %u out of range", s);
                memcpy(m->xg + r * dim, ds->x + (size_t)s * dim, dim * sizeof(float));
                yg[r] = ds->y[s];
            }
            x = m->xg;
            y = yg;
        }
        int rc = check_batch(m, y, bs, err);
        if (rc != 0)
            return rc;
        forward(m, w, x, bs);
        /* Correctness before softmax_xent overwrites the logits; compare
         * against y before the predictions reuse its buffer. */
        const size_t out = m->d.out;
        for (size_t r = 0; r < bs; r++) {
            const float *z = m->prob + r * out;
            size_t best = 0;
            for (size_t c = 1; c < out; c++)
                if (z[c] > z[best])
                    best = c;
            correct += (int32_t)best == y[r];
        }
        if (loss != NULL)
            total += softmax_xent(m, y, bs);
    }
    if (accuracy != NULL)
        *accuracy = n ? (double)correct / (double)n : 0.0;
    if (loss != NULL)
        *loss = n ? total / (double)n : 0.0;
    return 0;
}

void flc_model_sgd_step(size_t n, float *w, const float *grad, float lr)
{
    cblas_saxpy((int)n, -lr, grad, 1, w, 1);
}

double flc_model_add_prox(size_t n, float *grad, const float *w, const float *ref, float mu)
{
    double sq = 0.0;
    for (size_t i = 0; i < n; i++) {
        float d = ref != NULL ? w[i] - ref[i] : w[i];
        grad[i] += mu * d;
        sq += (double)d * d;
    }
    return 0.5 * (double)mu * sq;
}
