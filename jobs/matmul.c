/* matmul: C = A x B (float32, N x N) blocked over a p x q grid of functions
 * (p*q = W, p the largest divisor of W up to sqrt(W)). The driver stores A's
 * row block i (N/p rows) under partition i and B's column block j (N x N/q,
 * contiguous) under partition j; function (i,j) reads both, computes its
 * block of C with one OpenBLAS sgemm and stores it under partition i*q+j.
 * The driver assembles C and compares it with one sgemm of the whole
 * product in this process (max relative error, normwise: max|C - C1| /
 * max|C1|), and reports GFLOP/s of both. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/event.h"
#include "jobs/job_internal.h"

#define MM_TOL 1e-4 /* float32 sums of N products in another order */

/* A seeded matrix of uniform values in [-1, 1). */
static void fill(float *m, size_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        m[i] = (float)((double)(s >> 11) / 4503599627370496.0 - 1.0);
    }
}

static void grid(int W, int *p, int *q)
{
    int best = 1;
    for (int d = 1; d * d <= W; d++)
        if (W % d == 0)
            best = d;
    *p = best;
    *q = W / best;
}

/* Rows [r0, r1) of a block split of n into k parts. */
static void split(long long n, int k, int i, long long *r0, long long *r1)
{
    *r0 = n * i / k;
    *r1 = n * (i + 1) / k;
}

int flc_job_matmul_block(flc_job_task_t *f, cJSON **res, flc_err_t *e)
{
    long long N, i, j, p, q, threads;
    if (flc_ev_need_int(f->ev, "n", 1, 65536, &N, e) ||
        flc_ev_need_int(f->ev, "i", 0, 65536, &i, e) ||
        flc_ev_need_int(f->ev, "j", 0, 65536, &j, e) ||
        flc_ev_need_int(f->ev, "p", 1, 65536, &p, e) ||
        flc_ev_need_int(f->ev, "q", 1, 65536, &q, e) ||
        flc_ev_opt_int(f->ev, "blas_threads", 0, 256, 0, &threads, e))
        return e->code;
    if (threads > 0)
        openblas_set_num_threads((int)threads);
    long long a0, a1, b0, b1;
    split(N, (int)p, (int)i, &a0, &a1);
    split(N, (int)q, (int)j, &b0, &b1);
    size_t rows = (size_t)(a1 - a0), cols = (size_t)(b1 - b0);
    flc_shard_t A, B;
    size_t la, lb;
    int rc = flc_job_get(&f->x, 0, (uint32_t)i, "a", &A, &la, e);
    if (rc != FLC_OK)
        return rc;
    if ((rc = flc_job_get(&f->x, 0, (uint32_t)j, "b", &B, &lb, e)) != FLC_OK) {
        flc_shard_release(&A);
        return rc;
    }
    if (la != rows * (size_t)N * 4 || lb != (size_t)N * cols * 4)
        rc = flc_err_set(e, FLC_EDIM, "block (%lld,%lld): A block has %zu bytes, B block %zu; "
                         "expected %zu and %zu", i, j, la, lb, rows * (size_t)N * 4,
                         (size_t)N * cols * 4);
    float *C = rc == FLC_OK ? malloc(rows * cols * sizeof *C + 4) : NULL;
    if (rc == FLC_OK && C == NULL)
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory for block (%lld,%lld)", i, j);
    if (rc == FLC_OK) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, (int)N,
                    1.0f, A.values, (int)N, B.values, (int)cols, 0.0f, C, (int)cols);
        rc = flc_job_put(&f->x, 1, (uint32_t)(i * q + j), "c", C, rows * cols * 4, e);
    }
    free(C);
    flc_shard_release(&A);
    flc_shard_release(&B);
    if (rc == FLC_OK)
        *res = cJSON_CreateObject();
    return rc;
}

int flc_job_matmul(flc_job_ctx_t *c, flc_err_t *e)
{
    const flc_job_opts_t *o = c->o;
    long long N = o->size > 0 ? o->size : 1024;
    if (N > 8192)
        return flc_err_set(e, FLC_EINVAL, "matmul: --size %lld is over 8192", N);
    int W = o->workers, p, q;
    grid(W, &p, &q);
    if (p > N || q > N)
        return flc_err_set(e, FLC_EINVAL, "matmul: %d functions for a %lld x %lld matrix", W,
                           N, N);
    c->x.nparts = (uint32_t)W;
    size_t nn = (size_t)N * (size_t)N;
    float *A = malloc(nn * 4), *B = malloc(nn * 4), *C = malloc(nn * 4), *blk = malloc(nn * 4);
    cJSON **ev = calloc((size_t)W, sizeof *ev);
    char(*names)[48] = calloc((size_t)W, sizeof *names);
    int rc = A && B && C && blk && ev && names
                 ? FLC_OK
                 : flc_err_set(e, FLC_ENOMEM, "matmul: out of memory for N = %lld", N);
    if (rc == FLC_OK) {
        fill(A, nn, o->seed);
        fill(B, nn, o->seed + 1);
    }
    uint64_t t0 = flc_now_ns();
    /* The inputs go to the cache first: in a real deployment they would be
     * there already, but their upload is part of what the run costs. */
    for (int i = 0; rc == FLC_OK && i < p; i++) {
        long long r0, r1;
        split(N, p, i, &r0, &r1);
        rc = flc_job_put(&c->x, 0, (uint32_t)i, "a", A + r0 * N, (size_t)(r1 - r0) * N * 4, e);
    }
    for (int j = 0; rc == FLC_OK && j < q; j++) {
        long long c0, c1;
        split(N, q, j, &c0, &c1);
        size_t cols = (size_t)(c1 - c0);
        for (long long r = 0; r < N; r++)
            memcpy(blk + r * cols, B + r * N + c0, cols * 4);
        rc = flc_job_put(&c->x, 0, (uint32_t)j, "b", blk, (size_t)N * cols * 4, e);
    }
    for (int k = 0; rc == FLC_OK && k < W; k++) {
        ev[k] = flc_job_event(c, "matmul.block");
        cJSON_AddNumberToObject(ev[k], "n", (double)N);
        cJSON_AddNumberToObject(ev[k], "i", k / q);
        cJSON_AddNumberToObject(ev[k], "j", k % q);
        cJSON_AddNumberToObject(ev[k], "p", p);
        cJSON_AddNumberToObject(ev[k], "q", q);
        snprintf(names[k], sizeof names[k], "block %d,%d", k / q, k % q);
    }
    if (rc == FLC_OK)
        rc = flc_job_phase(c, "blocks", ev, names, (size_t)W, NULL, e);
    for (int k = 0; rc == FLC_OK && k < W; k++) {
        long long r0, r1, c0, c1;
        split(N, p, k / q, &r0, &r1);
        split(N, q, k % q, &c0, &c1);
        flc_shard_t sh;
        size_t len, cols = (size_t)(c1 - c0);
        if ((rc = flc_job_get(&c->x, 1, (uint32_t)k, "c", &sh, &len, e)) != FLC_OK)
            break;
        if (len != (size_t)(r1 - r0) * cols * 4)
            rc = flc_err_set(e, FLC_EDIM, "block %d of C: %zu bytes", k, len);
        for (long long r = 0; rc == FLC_OK && r < r1 - r0; r++)
            memcpy(C + (r0 + r) * N + c0, (const float *)sh.values + r * (long long)cols, cols * 4);
        flc_shard_release(&sh);
    }
    c->rep->wall_ms = flc_job_ms(t0);
    double flop = 2.0 * (double)N * (double)N * (double)N;
    if (rc == FLC_OK) {
        cJSON *m = c->rep->metrics;
        cJSON_AddNumberToObject(m, "n", (double)N);
        char g[32];
        snprintf(g, sizeof g, "%d x %d", p, q);
        cJSON_AddStringToObject(m, "grid", g);
        cJSON_AddNumberToObject(m, "gflops", flop / (c->rep->wall_ms * 1e6));
    }
    if (rc == FLC_OK && o->check) {
        uint64_t t1 = flc_now_ns();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)N, (int)N, 1.0f, A,
                    (int)N, B, (int)N, 0.0f, blk, (int)N);
        c->rep->single_ms = flc_job_ms(t1);
        double maxref = 0, maxdiff = 0;
        for (size_t k = 0; k < nn; k++) {
            double d = fabs((double)C[k] - (double)blk[k]), r = fabs((double)blk[k]);
            if (d > maxdiff || d != d)
                maxdiff = d != d ? INFINITY : d;
            if (r > maxref)
                maxref = r;
        }
        double rel = maxref > 0 ? maxdiff / maxref : maxdiff;
        cJSON_AddNumberToObject(c->rep->metrics, "gflops_one_process",
                                flop / (c->rep->single_ms * 1e6));
        cJSON_AddNumberToObject(c->rep->metrics, "max_rel_error", rel);
        c->rep->checked = 1;
        c->rep->check_ok = rel <= MM_TOL;
        snprintf(c->rep->check, sizeof c->rep->check,
                 "max relative error %.3g against one sgemm (bound %g)", rel, MM_TOL);
    }
    free(A);
    free(B);
    free(C);
    free(blk);
    flc_job_events_free(ev, (size_t)W);
    free(ev);
    free(names);
    return rc;
}
