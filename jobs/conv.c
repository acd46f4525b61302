/* conv: 2-D convolution ("same" size, zeros outside) of a batch of B
 * images of S x S float32 pixels with a K x K kernel, split by rows over W
 * functions. Function k owns output rows [r0, r1) of every image; the
 * driver stores its input slab, those rows plus K/2 halo rows on each side,
 * under partition k, and the function stores its output rows there too.
 * The driver assembles the batch and compares it with one process's
 * convolution by the same loop: the pixels must be identical (same
 * arithmetic in the same order). */
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/event.h"
#include "jobs/job_internal.h"

#define CONV_K 5

/* Output rows [r0, r1) of one S x S image whose rows [in0, in0+inrows) are
 * at in; out holds r1-r0 rows. */
static void conv_rows(const float *in, long long in0, long long inrows, long long S,
                      const float *k, int K, long long r0, long long r1, float *out)
{
    int h = K / 2;
    for (long long r = r0; r < r1; r++) {
        for (long long x = 0; x < S; x++) {
            float acc = 0.0f;
            for (int dy = -h; dy <= h; dy++) {
                long long y = r + dy;
                if (y < 0 || y >= S || y < in0 || y >= in0 + inrows)
                    continue;
                const float *row = in + (y - in0) * S;
                const float *kr = k + (dy + h) * K;
                for (int dx = -h; dx <= h; dx++) {
                    long long xx = x + dx;
                    if (xx >= 0 && xx < S)
                        acc += kr[dx + h] * row[xx];
                }
            }
            out[(r - r0) * S + x] = acc;
        }
    }
}

static void slab(long long S, int W, int k, long long *r0, long long *r1, long long *i0,
                 long long *i1)
{
    *r0 = S * k / W;
    *r1 = S * (k + 1) / W;
    *i0 = *r0 - CONV_K / 2 < 0 ? 0 : *r0 - CONV_K / 2;
    *i1 = *r1 + CONV_K / 2 > S ? S : *r1 + CONV_K / 2;
}

int flc_job_conv_rows(flc_job_task_t *f, cJSON **res, flc_err_t *e)
{
    long long S, B, k, W;
    const cJSON *kern;
    if (flc_ev_need_int(f->ev, "side", 1, 1 << 16, &S, e) ||
        flc_ev_need_int(f->ev, "batch", 1, 1 << 16, &B, e) ||
        flc_ev_need_int(f->ev, "id", 0, 1 << 16, &k, e) ||
        flc_ev_need_int(f->ev, "workers", 1, 1 << 16, &W, e) ||
        flc_ev_need_array(f->ev, "kernel", &kern, e))
        return e->code;
    float K[CONV_K * CONV_K];
    if (cJSON_GetArraySize(kern) != CONV_K * CONV_K)
        return flc_err_set(e, FLC_EINVAL, "event field 'kernel': %d values, expected %d",
                           cJSON_GetArraySize(kern), CONV_K * CONV_K);
    for (int i = 0; i < CONV_K * CONV_K; i++)
        K[i] = (float)cJSON_GetArrayItem(kern, i)->valuedouble;
    long long r0, r1, i0, i1;
    slab(S, (int)W, (int)k, &r0, &r1, &i0, &i1);
    flc_shard_t in;
    size_t len;
    int rc = flc_job_get(&f->x, 0, (uint32_t)k, "in", &in, &len, e);
    if (rc != FLC_OK)
        return rc;
    size_t inimg = (size_t)((i1 - i0) * S), outimg = (size_t)((r1 - r0) * S);
    if (len != (size_t)B * inimg * 4)
        rc = flc_err_set(e, FLC_EDIM, "slab %lld: %zu bytes, expected %zu", k, len,
                         (size_t)B * inimg * 4);
    float *out = rc == FLC_OK ? malloc((size_t)B * outimg * 4 + 4) : NULL;
    if (rc == FLC_OK && out == NULL)
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory for slab %lld", k);
    for (long long b = 0; rc == FLC_OK && b < B; b++)
        conv_rows(in.values + (size_t)b * inimg, i0, i1 - i0, S, K, CONV_K, r0, r1,
                  out + (size_t)b * outimg);
    if (rc == FLC_OK)
        rc = flc_job_put(&f->x, 1, (uint32_t)k, "out", out, (size_t)B * outimg * 4, e);
    free(out);
    flc_shard_release(&in);
    if (rc == FLC_OK)
        *res = cJSON_CreateObject();
    return rc;
}

int flc_job_conv(flc_job_ctx_t *c, flc_err_t *e)
{
    const flc_job_opts_t *o = c->o;
    long long S = o->size > 0 ? o->size : 512, B = o->batch > 0 ? o->batch : 8;
    int W = o->workers;
    if (W > S)
        return flc_err_set(e, FLC_EINVAL, "conv: %d functions for %lld rows", W, S);
    c->x.nparts = (uint32_t)W;
    size_t img = (size_t)(S * S), all = (size_t)B * img;
    float *X = malloc(all * 4), *Y = malloc(all * 4), *Y1 = malloc(all * 4);
    float *buf = malloc(all * 4 + 4);
    cJSON **ev = calloc((size_t)W, sizeof *ev);
    char(*names)[48] = calloc((size_t)W, sizeof *names);
    int rc = X && Y && Y1 && buf && ev && names
                 ? FLC_OK
                 : flc_err_set(e, FLC_ENOMEM, "conv: out of memory for %lld images of %lld^2",
                               B, S);
    float K[CONV_K * CONV_K];
    uint64_t s = o->seed * 0x9E3779B97F4A7C15ull + 7;
    for (size_t i = 0; rc == FLC_OK && i < all + CONV_K * CONV_K; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        float v = (float)((double)(s >> 40) / 16777216.0);
        if (i < CONV_K * CONV_K)
            K[i] = v - 0.5f;
        else
            X[i - CONV_K * CONV_K] = v;
    }
    uint64_t t0 = flc_now_ns();
    for (int k = 0; rc == FLC_OK && k < W; k++) {
        long long r0, r1, i0, i1;
        slab(S, W, k, &r0, &r1, &i0, &i1);
        size_t per = (size_t)((i1 - i0) * S);
        for (long long b = 0; b < B; b++)
            memcpy(buf + (size_t)b * per, X + (size_t)b * img + (size_t)(i0 * S), per * 4);
        rc = flc_job_put(&c->x, 0, (uint32_t)k, "in", buf, (size_t)B * per * 4, e);
        ev[k] = flc_job_event(c, "conv.rows");
        cJSON_AddNumberToObject(ev[k], "side", (double)S);
        cJSON_AddNumberToObject(ev[k], "batch", (double)B);
        cJSON_AddNumberToObject(ev[k], "id", k);
        cJSON_AddNumberToObject(ev[k], "workers", W);
        cJSON *ka = cJSON_AddArrayToObject(ev[k], "kernel");
        for (int i = 0; i < CONV_K * CONV_K; i++)
            cJSON_AddItemToArray(ka, cJSON_CreateNumber((double)K[i]));
        snprintf(names[k], sizeof names[k], "rows %lld-%lld", r0, r1 - 1);
    }
    if (rc == FLC_OK)
        rc = flc_job_phase(c, "slabs", ev, names, (size_t)W, NULL, e);
    for (int k = 0; rc == FLC_OK && k < W; k++) {
        long long r0, r1, i0, i1;
        slab(S, W, k, &r0, &r1, &i0, &i1);
        flc_shard_t sh;
        size_t len, per = (size_t)((r1 - r0) * S);
        if ((rc = flc_job_get(&c->x, 1, (uint32_t)k, "out", &sh, &len, e)) != FLC_OK)
            break;
        if (len != (size_t)B * per * 4)
            rc = flc_err_set(e, FLC_EDIM, "slab %d's output: %zu bytes", k, len);
        for (long long b = 0; rc == FLC_OK && b < B; b++)
            memcpy(Y + (size_t)b * img + (size_t)(r0 * S), sh.values + (size_t)b * per, per * 4);
        flc_shard_release(&sh);
    }
    c->rep->wall_ms = flc_job_ms(t0);
    if (rc == FLC_OK) {
        cJSON_AddNumberToObject(c->rep->metrics, "images", (double)B);
        cJSON_AddNumberToObject(c->rep->metrics, "side", (double)S);
        cJSON_AddNumberToObject(c->rep->metrics, "kernel", CONV_K);
    }
    if (rc == FLC_OK && o->check) {
        uint64_t t1 = flc_now_ns();
        for (long long b = 0; b < B; b++)
            conv_rows(X + (size_t)b * img, 0, S, S, K, CONV_K, 0, S, Y1 + (size_t)b * img);
        c->rep->single_ms = flc_job_ms(t1);
        size_t bad = 0;
        for (size_t i = 0; i < all; i++)
            bad += memcmp(&Y[i], &Y1[i], 4) != 0;
        c->rep->checked = 1;
        c->rep->check_ok = bad == 0;
        snprintf(c->rep->check, sizeof c->rep->check,
                 "%zu of %zu output pixels differ from one process's convolution", bad, all);
    }
    free(X);
    free(Y);
    free(Y1);
    free(buf);
    flc_job_events_free(ev, (size_t)W);
    free(ev);
    free(names);
    return rc;
}
