/* Private to the SGD worker (sgd_worker.c runs the role and the step loop,
 * sgd_exchange.c talks to the other workers through the cache,
 * sgd_record.c writes what worker 0 reports). One sgd_worker_t lives for
 * one flc_sgd_run. */
#ifndef FLC_WORKERS_SGD_WORKER_INTERNAL_H
#define FLC_WORKERS_SGD_WORKER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "base/clock.h"
#include "base/error.h"
#include "cache/keys.h"
#include "cache/store.h"
#include "ml/batcher.h"
#include "ml/dataset.h"
#include "ml/model.h"
#include "workers/sgd_worker.h"

struct cJSON;

/* Expiry of the last step rounds and the start barrier's counter, which a
 * driver may never delete. */
#define LAST_ROUNDS_TTL_MS 600000u

typedef struct sgd_worker {
    flc_sgd_cfg_t c;
    flc_store_t *s;
    char name[16];                   /* "w<rank>" */
    char steps_job[FLC_NAME_MAX + 1];
    char **names;                    /* w0..w{W-1}: expected contributors */
    flc_dataset_t *train, *test;     /* this worker's part; the test set (rank 0) */
    flc_model_t *m;
    flc_batcher_t *b;
    float *w, *grad, *merged;        /* nparams, nparams + 1, nparams + 1 */
    unsigned char *mine;             /* per shard: merged by this worker (num_shards) */
    size_t nparams, steps;           /* steps per epoch */
    double *step_ms;                 /* this epoch's step times (rank 0) */
    flc_sgd_result_t *r;
    int ps_fd;                       /* comm ps: the server connection, -1: none yet */
} sgd_worker_t;

static inline double sgd_ms_since(uint64_t t0)
{
    return (double)(flc_now_ns() - t0) / 1e6;
}

/* Epoch statistics worker 0 records. */
typedef struct sgd_epoch_stats {
    int epoch;
    double loss, acc, test_loss, compute_ms, comm_ms, merge_ms, wait_ms, eval_ms, epoch_ms;
    uint64_t started_ms, bytes_read, bytes_written;
} sgd_epoch_stats_t;

/* Waits until all W workers have loaded their data (the start barrier). */
int sgd_start_barrier(sgd_worker_t *w, flc_err_t *e);

/* One step's exchange of w->grad (gradient + loss): push, merge the shards
 * this worker owns, pull the mean into w->merged, delete an old step round
 * when it is this worker's turn. With comm ps: push to the parameter
 * server, which returns the stepped model (into w->w: the caller applies
 * no step) and the mean loss (w->merged[nparams]). */
int sgd_exchange(sgd_worker_t *w, uint32_t g, flc_err_t *e);

/* RPUSHes one progress record and frees it (best effort: progress is for
 * people, so a failure is not reported). */
void sgd_progress(sgd_worker_t *w, struct cJSON *rec);

/* Stores epoch st's RoundMeta under job c.job, round = epoch, and pushes
 * its progress record. Sorts w->step_ms. */
int sgd_put_epoch_meta(sgd_worker_t *w, const sgd_epoch_stats_t *st, flc_err_t *e);

/* Resume (sgd_resume.c). Rank 0 after epoch ep's record: the model as round
 * ep of "<job>/g", then the job's checkpoint naming ep. */
int sgd_resume_save(sgd_worker_t *w, flc_store_t *s, int ep, flc_err_t *e);

/* Before the first step of a resumed run (c.resume_after = R): every worker
 * checks the job's checkpoint against its options (FLC_EINVAL naming the
 * one that differs), loads the model of epoch R and replays its shuffles
 * of epochs 2..R. A new run's rank 0 drops an old checkpoint instead. */
int sgd_resume_load(sgd_worker_t *w, flc_store_t *s, flc_err_t *e);

#endif
