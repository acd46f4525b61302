/* workers/ models: descriptors and the flat layout, seeded init, gradients
 * of softmax regression and the MLP against central finite differences,
 * the proximal hook, the SGD step, prediction and batched evaluation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ml/model.h"
#include "ml/rng.h"
#include "tests/harness.h"

enum { IN = 6, HID = 5, OUT = 4, BS = 7 };

/* Largest relative error between the analytic gradient and central
 * differences of the loss, per coordinate, with a floor on the scale so
 * coordinates whose gradient is ~0 compare by absolute error. Also returns
 * the error of the whole vector (norm of difference / norm of sum). */
static double grad_check(flc_model_t *m, float *w, const float *x, const int32_t *y,
                         const float *ref, float mu, double *vec_err)
{
    size_t np = m->nparams;
    float *g = malloc(np * sizeof(float));
    float loss;
    flc_err_t err = {0};
    flc_model_loss_grad(m, w, x, y, BS, g, &loss, &err);
    if (ref != NULL)
        flc_model_add_prox(np, g, w, ref, mu);
    double worst = 0, dn = 0, sn = 0;
    const float eps = 2e-3f;
    for (size_t i = 0; i < np; i++) {
        float keep = w[i], lp, lm;
        w[i] = keep + eps;
        flc_model_loss(m, w, x, y, BS, &lp, &err);
        double pp = ref ? 0.5 * mu * ((double)w[i] - ref[i]) * ((double)w[i] - ref[i]) : 0;
        w[i] = keep - eps;
        flc_model_loss(m, w, x, y, BS, &lm, &err);
        double pm = ref ? 0.5 * mu * ((double)w[i] - ref[i]) * ((double)w[i] - ref[i]) : 0;
        w[i] = keep;
        /* The step actually taken in float, not the nominal 2*eps. */
        double h = (double)(keep + eps) - (double)(keep - eps);
        double num = ((double)lp + pp - (double)lm - pm) / h;
        double diff = fabs(num - g[i]);
        double scale = fmax(fabs(num) + fabs(g[i]), 1e-2);
        worst = fmax(worst, diff / scale);
        dn += diff * diff;
        sn += (num + g[i]) * (num + g[i]);
    }
    *vec_err = sqrt(dn) / sqrt(sn);
    free(g);
    return worst;
}

static void tiny_problem(float *x, int32_t *y, unsigned seed)
{
    flc_t_fill(x, BS * IN, seed);
    for (int r = 0; r < BS; r++)
        y[r] = (int32_t)((r * 3 + seed) % OUT);
}

TEST(descriptors)
{
    flc_err_t err = {0};
    flc_model_desc_t d;
    CHECK(flc_model_desc_init(&d, "mlp", 784, 0, 10, &err) == 0 && d.hidden == 128 &&
              flc_model_desc_nparams(&d) == 784 * 128 + 128 + 128 * 10 + 10,
          "mlp defaults to 128 hidden units: 101770 parameters");
    flc_model_layout_t l;
    flc_model_layout(&d, &l);
    CHECK(l.ntensors == 4 && strcmp(l.t[2].name, "W2") == 0 && l.t[2].off == 784 * 128 + 128 &&
              l.t[3].off + l.t[3].cols == 101770,
          "mlp layout is W1, b1, W2, b2 with contiguous offsets");
    CHECK(flc_model_desc_init(&d, "softmax", 784, 64, 10, &err) == 0 && d.hidden == 0 &&
              flc_model_desc_nparams(&d) == 7850,
          "softmax on 784 features and 10 classes has 7850 parameters");
    flc_model_layout(&d, &l);
    CHECK(l.ntensors == 2 && l.t[1].off == 7840 && l.t[1].cols == 10, "softmax layout is W, b");
    CHECK(flc_model_desc_init(&d, "cnn", 784, 0, 10, &err) == FLC_EINVAL &&
              strstr(err.msg, "cnn") != NULL,
          "an unknown model name is FLC_EINVAL naming it: %s", err.msg);
    CHECK(strcmp(flc_model_kind_name(FLC_MODEL_MLP), "mlp") == 0, "kind names round-trip");
}

/* The gradient checks of one model kind (a case each, below). */
static void check_gradients(const char *name)
{
    flc_err_t err = {0};
    flc_model_desc_t d;
    flc_model_t *m = NULL;
    flc_model_desc_init(&d, name, IN, HID, OUT, &err);
    int rc = flc_model_new(&d, BS, &m, &err);
    if (!CHECK(rc == 0, "%s: model with batch workspace %d (%s)", name, BS, flc_err_msg(&err)))
        return;
    float *w = malloc(m->nparams * sizeof(float));
    float *ref = malloc(m->nparams * sizeof(float));
    float x[BS * IN];
    int32_t y[BS];
    tiny_problem(x, y, 3);
    flc_model_init_params(m, w, 11);
    /* Non-zero biases so the bias gradients are exercised off the origin. */
    flc_rng_t r;
    flc_rng_seed(&r, 2);
    for (size_t i = 0; i < m->nparams; i++)
        w[i] += (float)(0.1 * flc_rng_normal(&r));
    double verr, worst = grad_check(m, w, x, y, NULL, 0, &verr);
    CHECK(worst < 1e-2 && verr < 1e-3,
          "%s: gradient matches central differences (worst coordinate %.2e, vector %.2e)", name,
          worst, verr);
    flc_t_fill(ref, m->nparams, 9);
    worst = grad_check(m, w, x, y, ref, 0.5f, &verr);
    CHECK(worst < 1e-2 && verr < 1e-3,
          "%s: gradient with the proximal term mu=0.5 matches too (%.2e, %.2e)", name, worst,
          verr);

    /* Zero weights: uniform probabilities, loss log(OUT). */
    memset(w, 0, m->nparams * sizeof(float));
    float loss;
    flc_model_loss(m, w, x, y, BS, &loss, &err);
    CHECK(fabsf(loss - logf((float)OUT)) < 1e-5f, "%s: zero weights give loss log(%d) (%.6f)",
          name, OUT, loss);
    CHECK(flc_model_loss(m, w, x, y, BS + 1, &loss, &err) == FLC_EINVAL,
          "%s: a batch above the workspace is FLC_EINVAL: %s", name, err.msg);
    y[2] = OUT;
    CHECK(flc_model_loss(m, w, x, y, BS, &loss, &err) == FLC_EINVAL,
          "%s: a label outside the classes is FLC_EINVAL: %s", name, err.msg);
    free(w);
    free(ref);
    flc_model_free(m);
}

TEST(init_step_prox)
{
    flc_err_t err = {0};
    flc_model_desc_t d;
    flc_model_t *m = NULL;
    flc_model_desc_init(&d, "mlp", 784, 128, 10, &err);
    flc_model_new(&d, 32, &m, &err);
    float *a = malloc(m->nparams * sizeof(float)), *b = malloc(m->nparams * sizeof(float));
    flc_model_init_params(m, a, 5);
    flc_model_init_params(m, b, 5);
    CHECK(memcmp(a, b, m->nparams * sizeof(float)) == 0, "same seed, same initial parameters");
    double sq = 0;
    for (size_t i = 0; i < 784 * 128; i++)
        sq += (double)a[i] * a[i];
    double sd = sqrt(sq / (784 * 128));
    CHECK(fabs(sd - sqrt(2.0 / 784)) < 0.002, "W1 has He std sqrt(2/784) = 0.0505 (%.4f)", sd);
    int zero_bias = 1;
    for (size_t i = 784 * 128; i < 784 * 128 + 128; i++)
        zero_bias &= a[i] == 0.0f;
    CHECK(zero_bias, "biases start at 0");
    flc_model_init_params(m, b, 6);
    CHECK(memcmp(a, b, 64) != 0, "another seed, other parameters");

    float w[4] = {1, 2, 3, 4}, g[4] = {1, -1, 0.5f, 0}, ref[4] = {0, 2, 5, 4};
    flc_model_sgd_step(4, w, g, 0.1f);
    CHECK(fabsf(w[0] - 0.9f) < 1e-6f && fabsf(w[1] - 2.1f) < 1e-6f && fabsf(w[2] - 2.95f) < 1e-6f &&
              w[3] == 4.0f,
          "sgd step computes w - lr * g");
    float g2[4] = {0};
    double pen = flc_model_add_prox(4, g2, w, ref, 2.0f);
    CHECK(fabsf(g2[0] - 1.8f) < 1e-6f && fabsf(g2[2] + 4.1f) < 1e-6f &&
              fabs(pen - (0.81 + 0.01 + 2.05 * 2.05)) < 1e-5,
          "prox adds mu*(w - ref) and returns mu/2*||w - ref||^2 (%.4f)", pen);
    float g3[4] = {0};
    pen = flc_model_add_prox(4, g3, w, NULL, 1.0f);
    CHECK(g3[3] == 4.0f && fabs(pen - 0.5 * (0.81 + 4.41 + 2.95 * 2.95 + 16)) < 1e-4,
          "prox with no reference is L2 weight decay");
    free(a);
    free(b);
    flc_model_free(m);
}

TEST(predict_evaluate)
{
    flc_err_t err = {0};
    flc_dataset_t *ds = NULL;
    flc_data_new(50, IN, OUT, &ds, &err);
    flc_t_fill(ds->x, 50 * IN, 4);
    for (int i = 0; i < 50; i++)
        ds->y[i] = (int32_t)(i % OUT);
    flc_model_desc_t d;
    flc_model_t *m = NULL;
    flc_model_desc_init(&d, "mlp", IN, HID, OUT, &err);
    flc_model_new(&d, 8, &m, &err);
    float *w = malloc(m->nparams * sizeof(float));
    flc_model_init_params(m, w, 1);
    int32_t pred[8];
    size_t correct = 0;
    for (int i = 0; i < 50; i += 8) {
        int bs = 50 - i < 8 ? 50 - i : 8;
        flc_model_predict(m, w, ds->x + i * IN, (size_t)bs, pred, &err);
        for (int r = 0; r < bs; r++)
            correct += pred[r] == ds->y[i + r];
    }
    double acc, loss;
    int rc = flc_model_evaluate(m, w, ds, NULL, 0, &acc, &loss, &err);
    CHECK(rc == 0 && fabs(acc - correct / 50.0) < 1e-12,
          "evaluate in batches of 8 agrees with predict (%.2f)", acc);
    uint32_t idx[50];
    for (int i = 0; i < 50; i++)
        idx[i] = (uint32_t)(49 - i);
    double acc2, loss2;
    flc_model_evaluate(m, w, ds, idx, 50, &acc2, &loss2, &err);
    CHECK(acc2 == acc && fabs(loss2 - loss) < 1e-6, "evaluate over an index list gathers rows");
    flc_dataset_t *wrong = NULL;
    flc_data_new(5, IN + 1, OUT, &wrong, &err);
    CHECK(flc_model_evaluate(m, w, wrong, NULL, 0, &acc, NULL, &err) == FLC_EDIM,
          "a data set of another width is FLC_EDIM: %s", err.msg);
    flc_data_free(wrong);
    free(w);
    flc_model_free(m);
    flc_data_free(ds);
}

/* W1[j*in + i] links input i to hidden unit j (PyTorch's nn.Linear
 * weight): one weight, read the two ways, gives different classes. */
TEST(mlp_first_layer_is_unit_major)
{
    flc_err_t err = {0};
    flc_model_desc_t d;
    flc_model_t *m = NULL;
    CHECK(flc_model_desc_init(&d, "mlp", 3, 2, 2, &err) == 0 && flc_model_new(&d, 1, &m, &err) == 0,
          "a 3-2-2 mlp");
    /* W1 [2 x 3]: unit 0 <- input 1; b1 0; W2 identity; b2 (0, 0.5). */
    float w[3 * 2 + 2 + 2 * 2 + 2] = {0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0.5f};
    float x[3] = {0, 1, 0};
    int32_t pred = -1;
    CHECK(flc_model_predict(m, w, x, 1, &pred, &err) == 0 && pred == 0,
          "input 1 = 1 drives unit 0 (logits 1, 0.5): class 0, got %d (input-major "
          "would read input 0 -> unit 1 and give class 1)", pred);
    flc_model_free(m);
}

TEST(gradients_softmax)
{
    check_gradients("softmax");
}

TEST(gradients_mlp)
{
    check_gradients("mlp");
}

TEST_LIST(TEST_ENTRY(descriptors), TEST_ENTRY(gradients_softmax), TEST_ENTRY(gradients_mlp),
          TEST_ENTRY(init_step_prox), TEST_ENTRY(predict_evaluate),
          TEST_ENTRY(mlp_first_layer_is_unit_major))
