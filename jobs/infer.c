/* infer: the forward pass of an MLP too large for one function's memory,
 * partitioned across P functions (issue 20 part 4, docs/workloads.md),
 * activations through the cache. The model: L layers of H x H float32
 * weights and H biases (x W + b, ReLU between layers, none after the last);
 * weight (l, i, j) is a hash of (seed, l, i, j), so a function generates
 * exactly its own part and no function ever holds the whole model.
 *  - pipeline (--split layers): function p holds layers [L p / P, L (p+1) / P)
 *    and runs the batch as M micro-batches (--micro, default P): it waits
 *    for stage p-1's activation of micro-batch m (a token on the "done" list
 *    of round 1+m, partition p-1), computes its layers, stores its output
 *    there under its own partition and signals. Stages overlap across
 *    micro-batches, so throughput grows with P while one sample's latency
 *    is the sum of the stages and P-1 cache hops.
 *  - tensor-parallel (--split columns): function p holds output columns
 *    [H p / P, H (p+1) / P) of every layer; after each layer the P slices
 *    are exchanged (an all-gather through the cache: P puts and P (P-1)
 *    gets of B x H/P floats per layer), so every layer costs a cache round,
 *    whatever P.
 * The driver checks the assembled output against the same forward pass in
 * one process (max |y - y1| / max |y1| <= 1e-4: the same float32 sums,
 * only the sgemm blocking of smaller operands may differ). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/event.h"
#include "cache/store.h"
#include "jobs/job_internal.h"

#define INF_TOL 1e-4
#define INF_WAIT_MS 120000u

/* Weight (l, i, j) of layer l (i: input, j: output), or its bias j (i = H):
 * splitmix64 of the coordinates, uniform in [-s, s), s = sqrt(3 / H) so
 * activations keep their scale through the layers. */
static float weight(uint64_t seed, int H, int l, int i, int j)
{
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + ((uint64_t)l << 42) + ((uint64_t)i << 21) +
                 (uint64_t)j + 1;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    double u = (double)(z >> 11) / 9007199254740992.0 * 2 - 1;
    return (float)(u * sqrt(3.0 / H) * (i == H ? 0.1 : 1));
}

/* Columns [c0, c1) of layer l: W (H x (c1-c0), row-major) then the bias. */
static void gen_cols(uint64_t seed, int H, int l, int c0, int c1, float *W, float *b)
{
    int w = c1 - c0;
    for (int i = 0; i < H; i++)
        for (int j = c0; j < c1; j++)
            W[(size_t)i * w + (j - c0)] = weight(seed, H, l, i, j);
    for (int j = c0; j < c1; j++)
        b[j - c0] = weight(seed, H, l, H, j);
}

/* y (rows x w) = x (rows x H) W (H x w) + b, then ReLU unless last. */
static void layer(const float *x, int rows, int H, const float *W, const float *b, int w,
                  int last, float *y)
{
    for (int r = 0; r < rows; r++)
        memcpy(y + (size_t)r * w, b, (size_t)w * sizeof *b);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, w, H, 1.0f, x, H, W, w, 1.0f,
                y, w);
    if (!last)
        for (size_t k = 0; k < (size_t)rows * w; k++)
            y[k] = y[k] > 0 ? y[k] : 0;
}

static long long split_at(long long n, int k, int i)
{
    return n * i / k;
}

typedef struct shape {
    long long H, L, B, P, M;
    uint64_t seed;
} shape_t;

static int read_shape(const cJSON *ev, shape_t *s, flc_err_t *e)
{
    long long seed;
    if (flc_ev_need_int(ev, "h", 1, 65536, &s->H, e) ||
        flc_ev_need_int(ev, "layers", 1, 4096, &s->L, e) ||
        flc_ev_need_int(ev, "batch", 1, 1 << 20, &s->B, e) ||
        flc_ev_need_int(ev, "p", 1, 4096, &s->P, e) ||
        flc_ev_opt_int(ev, "micro", 1, 1 << 20, 1, &s->M, e) ||
        flc_ev_need_int(ev, "seed", 0, 1LL << 53, &seed, e))
        return e->code;
    s->seed = (uint64_t)seed;
    return FLC_OK;
}

/* Waits for partition part's token of round r, then reads its value. */
static int wait_get(flc_job_xfer_t *x, uint32_t r, uint32_t part, const char *name,
                    flc_shard_t *sh, size_t want, flc_err_t *e)
{
    char tok[64];
    uint64_t t0 = flc_now_ns();
    int rc = flc_store_wait(x->s, x->job, r, part, "done", INF_WAIT_MS, tok, sizeof tok);
    x->comm_ms += flc_job_ms(t0);
    if (rc != FLC_OK)
        return flc_err_set(e, rc, "round %u: no activation from partition %u within %u ms", r,
                           part, INF_WAIT_MS);
    size_t len;
    if ((rc = flc_job_get(x, r, part, name, sh, &len, e)) != FLC_OK)
        return rc;
    if (len != want) {
        flc_shard_release(sh);
        return flc_err_set(e, FLC_EDIM, "round %u, partition %u: %zu bytes of activation, "
                           "expected %zu", r, part, len, want);
    }
    return FLC_OK;
}

static int put_signal(flc_job_xfer_t *x, uint32_t r, uint32_t part, const float *v, size_t n,
                      unsigned readers, flc_err_t *e)
{
    int rc = flc_job_put(x, r, part, "act", v, n * sizeof *v, e);
    if (rc == FLC_OK && readers > 0) {
        uint64_t t0 = flc_now_ns();
        rc = flc_store_notify(x->s, x->job, r, part, "done", "1", readers);
        x->comm_ms += flc_job_ms(t0);
        if (rc != FLC_OK)
            rc = flc_err_set(e, rc, "round %u, partition %u: cannot signal: %s", r, part,
                             flc_store_errstr(x->s));
    }
    return rc;
}

int flc_job_infer_stage(flc_job_task_t *f, cJSON **res, flc_err_t *e)
{
    shape_t s;
    long long p;
    if (read_shape(f->ev, &s, e) || flc_ev_need_int(f->ev, "i", 0, 4095, &p, e))
        return e->code;
    int H = (int)s.H, l0 = (int)split_at(s.L, (int)s.P, (int)p);
    int l1 = (int)split_at(s.L, (int)s.P, (int)p + 1), nl = l1 - l0;
    size_t hh = (size_t)H * H, maxrows = (size_t)((s.B + s.M - 1) / s.M);
    float *W = malloc((size_t)nl * (hh + H) * sizeof *W + 4);
    float *a = malloc(maxrows * H * sizeof *a), *b = malloc(maxrows * H * sizeof *b);
    int rc = W && a && b ? FLC_OK : flc_err_set(e, FLC_ENOMEM, "stage %lld: out of memory for "
                                                "%d layers of %d x %d", p, nl, H, H);
    for (int l = 0; rc == FLC_OK && l < nl; l++)
        gen_cols(s.seed, H, l0 + l, 0, H, W + l * (hh + H), W + l * (hh + H) + hh);
    for (long long m = 0; rc == FLC_OK && m < s.M; m++) {
        int rows = (int)(split_at(s.B, (int)s.M, (int)m + 1) - split_at(s.B, (int)s.M, (int)m));
        flc_shard_t sh;
        size_t want = (size_t)rows * H * sizeof(float);
        size_t len = want;
        /* Stage 0's inputs are in the cache before any stage starts. */
        rc = p == 0 ? flc_job_get(&f->x, (uint32_t)(1 + m), 0, "in", &sh, &len, e)
                    : wait_get(&f->x, (uint32_t)(1 + m), (uint32_t)p - 1, "act", &sh, want, e);
        if (rc != FLC_OK)
            break;
        if (len != want) {
            flc_shard_release(&sh);
            rc = flc_err_set(e, FLC_EDIM, "micro-batch %lld: %zu bytes of input", m, len);
            break;
        }
        memcpy(a, sh.values, want);
        flc_shard_release(&sh);
        for (int l = 0; l < nl; l++) {
            const float *Wl = W + l * (hh + H);
            layer(a, rows, H, Wl, Wl + hh, H, l0 + l == s.L - 1, b);
            float *t = a;
            a = b;
            b = t;
        }
        rc = put_signal(&f->x, (uint32_t)(1 + m), (uint32_t)p, a, (size_t)rows * H,
                        p + 1 < s.P ? 1 : 0, e);
    }
    free(W);
    free(a);
    free(b);
    if (rc == FLC_OK) {
        *res = cJSON_CreateObject();
        cJSON_AddNumberToObject(*res, "weights_mb", (double)nl * (hh + H) * 4 / 1048576.0);
    }
    return rc;
}

int flc_job_infer_cols(flc_job_task_t *f, cJSON **res, flc_err_t *e)
{
    shape_t s;
    long long p;
    if (read_shape(f->ev, &s, e) || flc_ev_need_int(f->ev, "i", 0, 4095, &p, e))
        return e->code;
    int H = (int)s.H, P = (int)s.P, B = (int)s.B;
    int c0 = (int)split_at(H, P, (int)p), w = (int)split_at(H, P, (int)p + 1) - c0;
    size_t per = (size_t)H * w + w;
    float *W = malloc((size_t)s.L * per * sizeof *W + 4);
    float *x = malloc((size_t)B * H * sizeof *x), *y = malloc((size_t)B * (w + 1) * sizeof *y);
    int rc = W && x && y ? FLC_OK : flc_err_set(e, FLC_ENOMEM, "columns %lld: out of memory", p);
    for (int l = 0; rc == FLC_OK && l < s.L; l++)
        gen_cols(s.seed, H, l, c0, c0 + w, W + l * per, W + l * per + (size_t)H * w);
    flc_shard_t sh;
    size_t len;
    if (rc == FLC_OK && (rc = flc_job_get(&f->x, 0, 0, "in", &sh, &len, e)) == FLC_OK) {
        if (len == (size_t)B * H * 4)
            memcpy(x, sh.values, len);
        else
            rc = flc_err_set(e, FLC_EDIM, "input: %zu bytes, expected %zu", len,
                             (size_t)B * H * 4);
        flc_shard_release(&sh);
    }
    for (int l = 0; rc == FLC_OK && l < s.L; l++) {
        int last = l == s.L - 1;
        layer(x, B, H, W + l * per, W + l * per + (size_t)H * w, w, last, y);
        rc = put_signal(&f->x, (uint32_t)(1 + l), (uint32_t)p, y, (size_t)B * w,
                        last ? 0 : (unsigned)P - 1, e);
        /* All-gather: the other slices of this layer's output. */
        for (int q = 0; rc == FLC_OK && !last && q < P; q++) {
            int q0 = (int)split_at(H, P, q), qw = (int)split_at(H, P, q + 1) - q0;
            const float *src = y;
            if (q != p) {
                if ((rc = wait_get(&f->x, (uint32_t)(1 + l), (uint32_t)q, "act", &sh,
                                   (size_t)B * qw * 4, e)) != FLC_OK)
                    break;
                src = sh.values;
            }
            for (int r = 0; r < B; r++)
                memcpy(x + (size_t)r * H + q0, src + (size_t)r * qw, (size_t)qw * 4);
            if (q != p)
                flc_shard_release(&sh);
        }
    }
    free(W);
    free(x);
    free(y);
    if (rc == FLC_OK) {
        *res = cJSON_CreateObject();
        cJSON_AddNumberToObject(*res, "weights_mb", (double)s.L * per * 4 / 1048576.0);
    }
    return rc;
}

/* The whole forward pass in this process, for the check. */
static int forward_one(const shape_t *s, const float *in, float *out)
{
    int H = (int)s->H;
    size_t hh = (size_t)H * H;
    float *W = malloc((hh + H) * sizeof *W), *a = malloc((size_t)s->B * H * sizeof *a);
    if (W == NULL || a == NULL) {
        free(W);
        free(a);
        return -1;
    }
    memcpy(a, in, (size_t)s->B * H * sizeof *a);
    for (int l = 0; l < s->L; l++) {
        gen_cols(s->seed, H, l, 0, H, W, W + hh);
        layer(a, (int)s->B, H, W, W + hh, H, l == s->L - 1, out);
        memcpy(a, out, (size_t)s->B * H * sizeof *a);
    }
    free(W);
    free(a);
    return 0;
}

int flc_job_infer(flc_job_ctx_t *c, flc_err_t *e)
{
    const flc_job_opts_t *o = c->o;
    int cols = o->split != NULL && strcmp(o->split, "columns") == 0;
    if (o->split != NULL && !cols && strcmp(o->split, "layers") != 0)
        return flc_err_set(e, FLC_EINVAL, "infer: --split must be layers or columns, not '%s'",
                           o->split);
    shape_t s = {.H = o->size > 0 ? o->size : 1024, .L = o->layers > 0 ? o->layers : 8,
                 .B = o->batch, .P = o->workers, .seed = o->seed};
    s.M = cols ? 1 : o->micro > 0 ? o->micro : s.P;
    if (s.H > 16384 || (!cols && s.P > s.L) || (cols && s.P > s.H) || s.M > s.B)
        return flc_err_set(e, FLC_EINVAL, "infer: %lld functions, %lld layers of width %lld, "
                           "%lld samples in %lld micro-batches do not fit (pipeline: P <= "
                           "layers; columns: P <= width; micro-batches <= samples; width "
                           "<= 16384)", s.P, s.L, s.H, s.B, s.M);
    int H = (int)s.H, B = (int)s.B, P = (int)s.P;
    c->x.nparts = (uint32_t)P;
    size_t n = (size_t)B * H;
    float *in = malloc(n * 4), *out = malloc(n * 4), *ref = malloc(n * 4);
    cJSON **ev = calloc((size_t)P, sizeof *ev);
    char(*names)[48] = calloc((size_t)P, sizeof *names);
    int rc = in && out && ref && ev && names ? FLC_OK
                                             : flc_err_set(e, FLC_ENOMEM, "infer: out of memory");
    for (size_t k = 0; rc == FLC_OK && k < n; k++)
        in[k] = weight(s.seed + 7, H, 4095, (int)(k / H), (int)(k % H)) * 10;
    uint64_t t0 = flc_now_ns();
    /* Inputs: the whole batch (columns) or micro-batch m as round 1+m
     * (pipeline), under partition 0. */
    if (rc == FLC_OK && cols)
        rc = flc_job_put(&c->x, 0, 0, "in", in, n * 4, e);
    for (long long m = 0; rc == FLC_OK && !cols && m < s.M; m++) {
        long long r0 = split_at(B, (int)s.M, (int)m), r1 = split_at(B, (int)s.M, (int)m + 1);
        rc = flc_job_put(&c->x, (uint32_t)(1 + m), 0, "in", in + r0 * H,
                         (size_t)(r1 - r0) * H * 4, e);
    }
    for (int k = 0; rc == FLC_OK && k < P; k++) {
        ev[k] = flc_job_event(c, cols ? "infer.cols" : "infer.stage");
        cJSON_AddNumberToObject(ev[k], "h", H);
        cJSON_AddNumberToObject(ev[k], "layers", (double)s.L);
        cJSON_AddNumberToObject(ev[k], "batch", B);
        cJSON_AddNumberToObject(ev[k], "p", P);
        cJSON_AddNumberToObject(ev[k], "micro", (double)s.M);
        cJSON_AddNumberToObject(ev[k], "seed", (double)s.seed);
        cJSON_AddNumberToObject(ev[k], "i", k);
        snprintf(names[k], sizeof names[k], cols ? "columns %d" : "stage %d", k);
    }
    if (rc == FLC_OK)
        rc = flc_job_phase(c, cols ? "columns" : "stages", ev, names, (size_t)P, NULL, e);
    /* The output: the last stage's micro-batches, or every slice of the
     * last layer. */
    for (int k = 0; rc == FLC_OK && k < (cols ? P : (int)s.M); k++) {
        flc_shard_t sh;
        size_t len;
        if ((rc = flc_job_get(&c->x, cols ? (uint32_t)s.L : (uint32_t)(1 + k),
                              cols ? (uint32_t)k : (uint32_t)P - 1, "act", &sh, &len, e)) != 0)
            break;
        if (cols) {
            int q0 = (int)split_at(H, P, k), qw = (int)split_at(H, P, k + 1) - q0;
            for (int r = 0; len == (size_t)B * qw * 4 && r < B; r++)
                memcpy(out + (size_t)r * H + q0, sh.values + (size_t)r * qw, (size_t)qw * 4);
        } else {
            memcpy(out + split_at(B, (int)s.M, k) * H, sh.values, len);
        }
        flc_shard_release(&sh);
    }
    c->rep->wall_ms = flc_job_ms(t0);
    cJSON *mt = c->rep->metrics;
    cJSON_AddStringToObject(mt, "split", cols ? "columns" : "layers");
    cJSON_AddNumberToObject(mt, "width", H);
    cJSON_AddNumberToObject(mt, "layers", (double)s.L);
    cJSON_AddNumberToObject(mt, "samples", B);
    cJSON_AddNumberToObject(mt, "micro_batches", (double)s.M);
    cJSON_AddNumberToObject(mt, "model_mb", (double)s.L * ((double)H * H + H) * 4 / 1048576.0);
    cJSON_AddNumberToObject(mt, "weights_mb_per_function",
                            (double)s.L * ((double)H * H + H) * 4 / 1048576.0 / P);
    cJSON_AddNumberToObject(mt, "latency_ms", c->rep->wall_ms);
    cJSON_AddNumberToObject(mt, "throughput_samples_s", B / (c->rep->wall_ms / 1000));
    if (rc == FLC_OK && o->check) {
        uint64_t t1 = flc_now_ns();
        if (forward_one(&s, in, ref) != 0)
            rc = flc_err_set(e, FLC_ENOMEM, "infer: out of memory for the check");
        c->rep->single_ms = flc_job_ms(t1);
        double maxref = 0, maxdiff = 0;
        for (size_t k = 0; rc == FLC_OK && k < n; k++) {
            double d = fabs((double)out[k] - ref[k]), r = fabs((double)ref[k]);
            maxdiff = d > maxdiff || d != d ? (d != d ? INFINITY : d) : maxdiff;
            maxref = r > maxref ? r : maxref;
        }
        double rel = maxref > 0 ? maxdiff / maxref : maxdiff;
        cJSON_AddNumberToObject(mt, "max_rel_error", rel);
        c->rep->checked = rc == FLC_OK;
        c->rep->check_ok = rc == FLC_OK && rel <= INF_TOL;
        snprintf(c->rep->check, sizeof c->rep->check, "max relative error %.3g against one "
                 "process's forward pass (bound %g)", rel, INF_TOL);
    }
    free(in);
    free(out);
    free(ref);
    flc_job_events_free(ev, (size_t)P);
    free(ev);
    free(names);
    return rc;
}
