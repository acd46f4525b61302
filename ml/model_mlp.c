/* One-hidden-layer perceptron: H = relu(X W1 + b1), logits = H W2 + b2.
 * Forward is two sgemms; backward is three sgemms and two sgemvs. The ReLU
 * mask is read back from H itself (H > 0 exactly where the pre-activation
 * was > 0), so the pre-activations are never stored. Layout in model.h:
 * W1 [hidden x in] (unit-major, as PyTorch's nn.Linear), b1 [hidden],
 * W2 [hidden x out], b2 [out]. */
#include <cblas.h>
#include <string.h>

#include "ml/model_internal.h"

void flc_mlp_forward(flc_model_t *m, const float *w, const float *x, size_t bs)
{
    const size_t in = m->d.in, hid = m->d.hidden, out = m->d.out;
    const float *W1 = w, *b1 = W1 + in * hid, *W2 = b1 + hid, *b2 = W2 + hid * out;
    for (size_t r = 0; r < bs; r++)
        memcpy(m->h + r * hid, b1, hid * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)bs, (int)hid, (int)in, 1.0f, x,
                (int)in, W1, (int)in, 1.0f, m->h, (int)hid);
    for (size_t k = 0; k < bs * hid; k++)
        if (!(m->h[k] > 0.0f))
            m->h[k] = 0.0f;
    for (size_t r = 0; r < bs; r++)
        memcpy(m->prob + r * out, b2, out * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)bs, (int)out, (int)hid, 1.0f,
                m->h, (int)hid, W2, (int)out, 1.0f, m->prob, (int)out);
}

void flc_mlp_backward(flc_model_t *m, const float *w, const float *x, size_t bs, float *grad)
{
    const size_t in = m->d.in, hid = m->d.hidden, out = m->d.out;
    const float *W2 = w + in * hid + hid;
    float *dW1 = grad, *db1 = dW1 + in * hid, *dW2 = db1 + hid, *db2 = dW2 + hid * out;
    const float *dz = m->prob; /* bs x out, already divided by bs */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)hid, (int)out, (int)bs, 1.0f, m->h,
                (int)hid, dz, (int)out, 0.0f, dW2, (int)out);
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)bs, (int)out, 1.0f, dz, (int)out, m->ones, 1,
                0.0f, db2, 1);
    /* dH = dZ W2^T, masked by the ReLU. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)bs, (int)hid, (int)out, 1.0f, dz,
                (int)out, W2, (int)out, 0.0f, m->dh, (int)hid);
    for (size_t k = 0; k < bs * hid; k++)
        if (!(m->h[k] > 0.0f))
            m->dh[k] = 0.0f;
    /* dW1 = dH^T X: [hidden x in], W1's layout. */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)hid, (int)in, (int)bs, 1.0f, m->dh,
                (int)hid, x, (int)in, 0.0f, dW1, (int)in);
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)bs, (int)hid, 1.0f, m->dh, (int)hid, m->ones, 1,
                0.0f, db1, 1);
}
