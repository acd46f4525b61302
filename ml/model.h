/* Models shared by worker functions (synchronous SGD) and federated
 * clients: multinomial logistic regression ("softmax") and a one-hidden-
 * layer perceptron ("mlp": ReLU, softmax cross-entropy).
 *
 * Parameters are ONE flat float32 vector, so the model can be cut into
 * shards by offset and merged with vector math. Layout (row-major):
 *   softmax: W [in x out] (W[i*out + c] links feature i to class c), b [out]
 *   mlp:     W1 [hidden x in] (W1[j*in + i] links input i to hidden unit j,
 *            PyTorch's nn.Linear weight), b1 [hidden], W2 [hidden x out],
 *            b2 [out]
 * The mlp's first layer is unit-major so that a shard of the vector holds
 * whole hidden units: an evaluation next to the data computes those units'
 * activations there and moves B x units floats, where an input-major W1
 * cut by inputs would move B x hidden partial sums per shard
 * (aggregator/query_eval.c). flc_model_layout gives the offsets. Gradients
 * use the same layout.
 *
 * An flc_model_t holds the descriptor and a workspace sized once for a
 * maximum batch, so training steps never allocate. It holds no parameters:
 * w is passed to every call, which lets one model object evaluate the
 * global model, a client's local copy, or a merged vector alike. One
 * flc_model_t must not be used by two threads at the same time. */
#ifndef FLC_ML_MODEL_H
#define FLC_ML_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "ml/dataset.h"

enum {
    FLC_MODEL_SOFTMAX = 1,
    FLC_MODEL_MLP = 2,
};

#define FLC_MLP_HIDDEN_DEFAULT 128

typedef struct flc_model_desc {
    int kind;      /* FLC_MODEL_* */
    size_t in;     /* features */
    size_t hidden; /* hidden units (mlp), 0 for softmax */
    size_t out;    /* classes */
} flc_model_desc_t;

/* Fills *d from a model name ("softmax" or "mlp"), the input size and the
 * class count; hidden 0 means FLC_MLP_HIDDEN_DEFAULT for "mlp" and is
 * ignored for "softmax". Returns FLC_EINVAL naming an unknown model. */
int flc_model_desc_init(flc_model_desc_t *d, const char *name, size_t in, size_t hidden,
                        size_t classes, flc_err_t *err);

/* The name of a kind ("softmax", "mlp"), or "unknown". */
const char *flc_model_kind_name(int kind);

/* Number of float parameters of a descriptor. */
size_t flc_model_desc_nparams(const flc_model_desc_t *d);

/* Named tensors inside the flat parameter vector. */
typedef struct flc_model_layout {
    int ntensors;
    struct {
        const char *name; /* "W", "b", "W1", "b1", "W2", "b2" */
        size_t off;       /* first float in the flat vector */
        size_t rows, cols;
    } t[4];
} flc_model_layout_t;

/* Fills *l with the tensors of d in vector order. */
void flc_model_layout(const flc_model_desc_t *d, flc_model_layout_t *l);

typedef struct flc_model {
    flc_model_desc_t d; /* read-only after flc_model_new */
    size_t nparams;
    size_t max_batch;
    /* Workspace, one allocation, sized for max_batch rows: */
    float *ws;
    float *h;      /* max_batch x hidden: ReLU activations (mlp) */
    float *dh;     /* max_batch x hidden: their gradient (mlp) */
    float *prob;   /* max_batch x out: logits, then probabilities, then dlogits */
    float *ones;   /* max_batch ones, to sum rows for bias gradients */
    float *xg;     /* max_batch x in: rows gathered by flc_model_evaluate */
    int32_t *pred; /* max_batch predictions */
} flc_model_t;

/* Creates a model object with workspace for batches up to max_batch rows.
 * Caller frees with flc_model_free. */
int flc_model_new(const flc_model_desc_t *d, size_t max_batch, flc_model_t **out,
                  flc_err_t *err);

/* Frees a model object; NULL is a no-op. */
void flc_model_free(flc_model_t *m);

/* Seeded initialization of w (nparams floats): He normal for weights that
 * feed a ReLU (mlp W1), Xavier/Glorot normal for weights feeding softmax,
 * zero biases. Same seed, same vector, in every process. */
void flc_model_init_params(const flc_model_t *m, float *w, uint64_t seed);

/* Mean softmax cross-entropy of a batch x[bs x in] with labels y (each in
 * 0..out-1) into *loss, and its gradient w.r.t. w into grad (nparams floats,
 * overwritten). bs <= max_batch. Returns FLC_EINVAL for a bad batch size
 * or label. */
int flc_model_loss_grad(flc_model_t *m, const float *w, const float *x, const int32_t *y,
                        size_t bs, float *grad, float *loss, flc_err_t *err);

/* Mean loss only (no gradient), same contract as flc_model_loss_grad. */
int flc_model_loss(flc_model_t *m, const float *w, const float *x, const int32_t *y, size_t bs,
                   float *loss, flc_err_t *err);

/* Predicted class (argmax) of each row of x[bs x in] into pred[bs]. */
int flc_model_predict(flc_model_t *m, const float *w, const float *x, size_t bs, int32_t *pred,
                      flc_err_t *err);

/* Accuracy (fraction correct) and mean loss of w over samples idx[0..n)
 * of ds (idx NULL: all of ds), evaluated in batches of max_batch. Either
 * output pointer may be NULL. Returns FLC_EDIM when ds does not fit the
 * model. */
int flc_model_evaluate(flc_model_t *m, const float *w, const flc_dataset_t *ds,
                       const uint32_t *idx, size_t n, double *accuracy, double *loss,
                       flc_err_t *err);

/* Plain SGD step: w -= lr * grad over n floats (OpenBLAS saxpy). */
void flc_model_sgd_step(size_t n, float *w, const float *grad, float lr);

/* Proximal / L2 hook: grad += mu * (w - ref) and returns the penalty
 * mu/2 * ||w - ref||^2 to add to the loss. FedProx passes the global model
 * as ref; ref NULL means ref = 0, i.e. plain L2 weight decay. */
double flc_model_add_prox(size_t n, float *grad, const float *w, const float *ref, float mu);

#endif
