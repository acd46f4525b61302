/* ps_server.c - the parameter server of `flcache train --comm ps` (see
 * ps.h). One thread, blocking reads in rank order: a synchronous step needs
 * every worker's gradient anyway, and reading them in rank order makes the
 * server's sum order fixed (the model is the same on every run). */
#include <cblas.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "aggregator/merge.h"
#include "ml/model.h"
#include "workers/ps_internal.h"

typedef struct server {
    int W;
    int *fd;          /* by rank; -1: not connected / closed */
    size_t n;         /* parameters */
    float lr;
    float *model;     /* n */
    float *buf;       /* n + 1: one push */
    float *mean;      /* n + 1 */
    flc_merge_acc_t *acc;
} server_t;

/* Accepts connections until every rank said hello. */
static int accept_all(server_t *s, int lfd, unsigned timeout_ms, flc_err_t *e)
{
    for (int got = 0; got < s->W;) {
        struct pollfd pf = {.fd = lfd, .events = POLLIN};
        if (poll(&pf, 1, (int)timeout_ms) <= 0)
            return flc_err_set(e, FLC_ETIMEOUT, "parameter server: %d of %d workers connected "
                               "within %u ms", got, s->W, timeout_ms);
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            continue;
        int one = 1; /* TCP: replies are small writes; fails harmlessly on unix */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        flc_ps_hello_t h;
        int rc = flc_ps_read_all(fd, &h, sizeof h, timeout_ms, NULL);
        if (rc == FLC_OK && (h.tag != FLC_PS_HELLO || h.workers != (uint32_t)s->W ||
                             h.rank >= (uint32_t)s->W || s->fd[h.rank] >= 0 ||
                             (s->model != NULL && (h.nparams != s->n || h.lr != s->lr)))) {
            close(fd);
            return flc_err_set(e, FLC_EPROTO, "parameter server: a hello that does not fit "
                               "(tag %08x, rank %u of %u workers, %llu parameters, lr %g; "
                               "expected %d workers, %zu parameters)", h.tag, h.rank, h.workers,
                               (unsigned long long)h.nparams, h.lr, s->W, s->n);
        }
        if (rc == FLC_OK && s->model == NULL) {
            s->n = (size_t)h.nparams;
            s->lr = h.lr;
            s->model = malloc(s->n * sizeof(float));
            s->buf = malloc((s->n + 1) * sizeof(float));
            s->mean = malloc((s->n + 1) * sizeof(float));
            flc_merge_rule_t rule;
            if (flc_merge_rule_parse(&rule, "mean", e) != FLC_OK)
                return e->code;
            s->acc = flc_merge_acc_new(&rule, s->n + 1, e);
            if (s->model == NULL || s->buf == NULL || s->mean == NULL || s->acc == NULL)
                return flc_err_set(e, FLC_ENOMEM, "parameter server: out of memory for %zu "
                                   "parameters", s->n);
        }
        /* Every worker sends its initial model (the same seeded one); rank
         * 0's is the server's, so a --init file or seed is followed. */
        float *into = h.rank == 0 ? s->model : s->buf;
        if (rc == FLC_OK)
            rc = flc_ps_read_all(fd, into, s->n * sizeof(float), timeout_ms, NULL);
        if (rc != FLC_OK) {
            close(fd);
            return flc_err_set(e, rc, "parameter server: reading the hello of a worker failed");
        }
        s->fd[h.rank] = fd;
        got++;
    }
    return FLC_OK;
}

/* One step: every push in rank order, the mean, the step, the replies.
 * *done 1 when every worker had closed instead. */
static int step(server_t *s, uint32_t g, unsigned timeout_ms, int *done, flc_err_t *e)
{
    flc_merge_acc_reset(s->acc);
    int closed = 0;
    for (int k = 0; k < s->W; k++) {
        flc_ps_head_t h;
        int eof = 0;
        int rc = flc_ps_read_all(s->fd[k], &h, sizeof h, timeout_ms, &eof);
        if (rc == FLC_ECONN && eof) {
            closed++;
            continue;
        }
        if (rc == FLC_OK && (h.tag != FLC_PS_PUSH || h.step != g))
            return flc_err_set(e, FLC_EPROTO, "parameter server: worker %d sent tag %08x for "
                               "step %u at step %u", k, h.tag, h.step, g);
        if (rc == FLC_OK)
            rc = flc_ps_read_all(s->fd[k], s->buf, (s->n + 1) * sizeof(float), timeout_ms,
                                 NULL);
        if (rc != FLC_OK)
            return flc_err_set(e, rc, "parameter server: step %u: worker %d %s", g, k,
                               rc == FLC_ETIMEOUT ? "did not push in time" : "is gone");
        if (flc_merge_acc_fold(s->acc, s->buf, s->n + 1, 1.0, -1, e) != FLC_OK)
            return flc_err_wrap(e, "parameter server: step %u, worker %d: ", g, k);
    }
    if (closed == s->W) {
        *done = 1;
        return FLC_OK;
    }
    if (closed > 0)
        return flc_err_set(e, FLC_EDATA, "parameter server: step %u: %d of %d workers ended "
                           "before it", g, closed, s->W);
    if (flc_merge_acc_finish(s->acc, NULL, s->mean, e) != FLC_OK)
        return e->code;
    flc_model_sgd_step(s->n, s->model, s->mean, s->lr);
    flc_ps_head_t r = {FLC_PS_MODEL, g};
    for (int k = 0; k < s->W; k++) {
        int rc = flc_ps_write_all(s->fd[k], &r, sizeof r, timeout_ms);
        if (rc == FLC_OK)
            rc = flc_ps_write_all(s->fd[k], s->model, s->n * sizeof(float), timeout_ms);
        if (rc == FLC_OK)
            rc = flc_ps_write_all(s->fd[k], &s->mean[s->n], sizeof(float), timeout_ms);
        if (rc != FLC_OK)
            return flc_err_set(e, rc, "parameter server: step %u: cannot send the model to "
                               "worker %d", g, k);
    }
    return FLC_OK;
}

int flc_ps_serve(int lfd, int workers, unsigned timeout_ms, uint32_t *steps, flc_err_t *e)
{
    server_t s = {.W = workers};
    *steps = 0;
    if (workers < 1)
        return flc_err_set(e, FLC_EINVAL, "parameter server: %d workers", workers);
    s.fd = malloc((size_t)workers * sizeof *s.fd);
    if (s.fd == NULL)
        return flc_err_set(e, FLC_ENOMEM, "parameter server: out of memory");
    for (int k = 0; k < workers; k++)
        s.fd[k] = -1;
    /* The step's saxpy as the workers run it (OPENBLAS_NUM_THREADS=1): a
     * threaded saxpy cuts the vector elsewhere, and OpenBLAS's kernel
     * rounds its tail elements differently (no FMA) from its body, so the
     * model would differ from reduce-scatter's in the last bits. */
    openblas_set_num_threads(1);
    int rc = accept_all(&s, lfd, timeout_ms, e);
    int done = 0;
    for (uint32_t g = 1; rc == FLC_OK && !done; g++) {
        rc = step(&s, g, timeout_ms, &done, e);
        if (rc == FLC_OK && !done)
            *steps = g;
    }
    /* On an error every connection closes now: the workers' reads fail at
     * once instead of at their timeouts. */
    for (int k = 0; k < workers; k++)
        if (s.fd[k] >= 0)
            close(s.fd[k]);
    free(s.fd);
    free(s.model);
    free(s.buf);
    free(s.mean);
    flc_merge_acc_free(s.acc);
    return rc;
}
