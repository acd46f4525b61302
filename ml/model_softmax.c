/* Multinomial logistic regression: logits = X W + b, one sgemm forward and
 * one sgemm plus one sgemv backward per minibatch. Layout in model.h:
 * W [in x out] then b [out]. */
#include <cblas.h>
#include <string.h>

#include "ml/model_internal.h"

void flc_softmax_forward(flc_model_t *m, const float *w, const float *x, size_t bs)
{
    const size_t in = m->d.in, out = m->d.out;
    const float *W = w, *b = w + in * out;
    /* Bias first, then sgemm accumulates on top of it (beta = 1). */
    for (size_t r = 0; r < bs; r++)
        memcpy(m->prob + r * out, b, out * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)bs, (int)out, (int)in, 1.0f, x,
                (int)in, W, (int)out, 1.0f, m->prob, (int)out);
}

void flc_softmax_backward(flc_model_t *m, const float *w, const float *x, size_t bs, float *grad)
{
    const size_t in = m->d.in, out = m->d.out;
    float *dW = grad, *db = grad + in * out;
    /* dW = X^T dZ, db = dZ^T 1 (dZ already divided by bs). */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)in, (int)out, (int)bs, 1.0f, x,
                (int)in, m->prob, (int)out, 0.0f, dW, (int)out);
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)bs, (int)out, 1.0f, m->prob, (int)out, m->ones, 1,
                0.0f, db, 1);
}
