/* ps.h - the parameter-server exchange of `flcache train --comm ps`
 * (issue 20, docs/training.md), LambdaML's hybrid design beside the cache
 * exchanges: one long-lived server process holds the model; at every step
 * each of the W workers pushes its gradient (+ minibatch loss) over a
 * socket, the server averages the W gradients with the same accumulator as
 * the cache's "mean" rule (aggregator/merge.h: double sums, one rounding),
 * applies w -= lr * mean with the same saxpy as the workers
 * (flc_model_sgd_step), and sends the model (+ mean loss) back to all.
 *
 * So a ps run's models equal reduce-scatter's for the same seed except for
 * the order of the double sums: the server folds in rank order, a merger in
 * arrival order (in blocks of 4). W float32 values sum exactly in a double
 * unless their exponents span more than 29 binades, so the means, and the
 * models, are bit-identical in practice; where a sum does round, the two
 * means differ by at most one float ulp (tests/test_ps.c measures both:
 * identical checksums for softmax and MLP, and 0 of 4096 means changed by
 * reversing the order of 8 updates spanning 2^-40..2^40). The server's
 * saxpy runs single-threaded as the workers' does: a threaded OpenBLAS
 * saxpy rounds other elements without FMA, which changed MLP models.
 *
 * Wire format (one machine, native byte order; every message starts with a
 * 4-byte tag): hello "FLPH" u32 rank, u32 workers, u64 nparams, f32 lr,
 * nparams f32 (the initial model); push "FLPG" u32 step, nparams+1 f32;
 * reply "FLPM" u32 step, nparams+1 f32 (model, mean loss). A worker ends by
 * closing its connection; the server returns when all have. */
#ifndef FLC_WORKERS_PS_H
#define FLC_WORKERS_PS_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

/* Opens a listening socket at addr ("unix:PATH", which is created, or
 * "tcp:127.0.0.1:PORT"; port 0 picks one, written back into bound as the
 * address workers use). Returns the descriptor, or a negative FLC_E* with
 * *e naming the address. */
int flc_ps_listen(const char *addr, char *bound, size_t cap, flc_err_t *e);

/* Serves one training on the listening socket lfd: accepts W workers'
 * hellos (within timeout_ms), then step after step until every worker
 * closed. FLC_OK when all ended at the same step; FLC_ETIMEOUT when a
 * worker did not push within timeout_ms; FLC_EDATA / FLC_EPROTO naming the
 * worker on a wrong message (the server then closes every connection, so
 * the other workers fail at once instead of waiting). *steps: steps served. */
int flc_ps_serve(int lfd, int workers, unsigned timeout_ms, uint32_t *steps, flc_err_t *e);

/* Worker side: connects to addr and sends the hello with the initial model
 * w (nparams floats). Returns the connection's descriptor or a negative
 * FLC_E*. */
int flc_ps_connect(const char *addr, int rank, int workers, const float *w, size_t nparams,
                   float lr, unsigned timeout_ms, flc_err_t *e);

/* One step: sends grad (nparams gradient + 1 loss) as step g and waits for
 * the server's reply: the new model into w (nparams), the mean loss into
 * *loss. FLC_ECONN when the server is gone, FLC_ETIMEOUT after timeout_ms. */
int flc_ps_step(int fd, uint32_t g, const float *grad, size_t nparams, float *w, float *loss,
                unsigned timeout_ms, flc_err_t *e);

/* Shared by both sides (ps_wire.c): writes / reads exactly len bytes,
 * polling up to timeout_ms for each wait. 0, FLC_ECONN (closed; *eof 1 when
 * a read found the end before any byte), FLC_ETIMEOUT or FLC_EIO. */
int flc_ps_write_all(int fd, const void *buf, size_t len, unsigned timeout_ms);
int flc_ps_read_all(int fd, void *buf, size_t len, unsigned timeout_ms, int *eof);

#endif
