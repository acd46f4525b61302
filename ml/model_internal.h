/* The passes each model kind implements (model_softmax.c, model_mlp.c) and
 * model.c dispatches to. Internal to ml/: callers go through the
 * flc_model_* functions of ml/model.h, which check sizes and labels. */
#ifndef FLC_ML_MODEL_INTERNAL_H
#define FLC_ML_MODEL_INTERNAL_H

#include <stddef.h>

#include "ml/model.h"

/* Forward pass: logits of x[bs x in] into m->prob (mlp also fills m->h). */
void flc_softmax_forward(flc_model_t *m, const float *w, const float *x, size_t bs);
void flc_mlp_forward(flc_model_t *m, const float *w, const float *x, size_t bs);

/* Backward pass: m->prob holds dLoss/dlogits; writes the whole gradient. */
void flc_softmax_backward(flc_model_t *m, const float *w, const float *x, size_t bs, float *grad);
void flc_mlp_backward(flc_model_t *m, const float *w, const float *x, size_t bs, float *grad);

#endif
