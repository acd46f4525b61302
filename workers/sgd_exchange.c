/* How SGD workers talk through the cache: the start barrier that lines
 * them up after loading, and each step's exchange of gradients with the
 * reduce-scatter protocol (push, run the mergers this worker owns, pull),
 * which also deletes step rounds every worker has read. See sgd_worker.h
 * for the key scheme. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "aggregator/reduce_scatter.h"
#include "base/clock.h"
#include "cache/keys.h"
#include "cache/store.h"
#include "cache/store_failover.h"
#include "cache/store_ops.h"
#include "workers/ps.h"
#include "workers/sgd_worker_internal.h"

/* Waits until all W workers have loaded their data, so that the first
 * step's exchange does not count the slowest loader as communication: each
 * worker INCRs :ready of round 0, shard 0 of J/steps, the one that makes
 * it W pushes W tokens on its :go, and every worker BLPOPs one (steps start
 * at round 1, so round 0 is free for this). */
int sgd_start_barrier(sgd_worker_t *w, flc_err_t *e)
{
    long long n;
    int rc = flc_store_barrier_incr(w->s, w->steps_job, 0, 0, LAST_ROUNDS_TTL_MS, &n);
    if (rc != FLC_OK)
        return flc_err_set(e, rc, "start barrier: %s", flc_store_errstr(w->s));
    if (n == w->c.workers) {
        if (flc_store_barrier_release(w->s, w->steps_job, 0, 0, (unsigned)w->c.workers) !=
            FLC_OK)
            return flc_err_set(e, flc_store_error(w->s)->code, "start barrier: %s",
                               flc_store_errstr(w->s));
    } else if (n < 1 || n > w->c.workers) {
        return flc_err_set(e, FLC_EDATA, "start barrier of job %s counted %lld workers of %d: "
                           "is another training with this job name running?", w->c.job, n,
                           w->c.workers);
    }
    rc = flc_store_barrier_wait(w->s, w->steps_job, 0, 0, w->c.step_timeout_ms);
    if (rc == FLC_ETIMEOUT)
        return flc_err_set(e, rc, "start barrier: not all %d workers of job %s started within "
                           "%u ms", w->c.workers, w->c.job, w->c.step_timeout_ms);
    if (rc != FLC_OK)
        return flc_err_set(e, rc, "start barrier: %s", flc_store_errstr(w->s));
    return FLC_OK;
}

/* Runs the merger of one shard of step g and refuses a partial merge. The
 * merger takes this worker's own gradient from memory (it was not pushed
 * for this shard) and leaves the merged shard in w->merged (not read
 * back); norm is the gradient's L2 norm, what its frames would carry. */
static int merge_shard(sgd_worker_t *w, uint32_t g, uint32_t shard, double norm, flc_err_t *e)
{
    const flc_sgd_cfg_t *c = &w->c;
    uint64_t off, cnt;
    flc_rs_shard_range(w->nparams + 1, c->num_shards, shard, &off, &cnt);
    flc_rs_merger_cfg_t mc = {.job = w->steps_job, .round = g, .shard = shard,
                           .num_shards = c->num_shards, .model_size = w->nparams + 1,
                           .expected = (const char *const *)w->names,
                           .n_expected = (size_t)c->workers, .deadline_ms = c->step_timeout_ms,
                           .readers = (unsigned)c->workers,
                           .ephemeral = 1}; /* a step: deleted two steps later, never queried */
    flc_rs_own_t own = {.client = w->name, .update = w->grad + off,
                        .weight = c->batch ? (double)c->batch : 1.0, .norm = norm,
                        .merged_out = w->merged + off};
    if (flc_merge_rule_parse(&mc.rule, c->rule ? c->rule : "mean", e) != FLC_OK)
        return e->code;
    flc_rs_report_t rep;
    uint64_t fo = flc_store_failovers(w->s);
    int rc = flc_rs_merger_run_own(w->s, &mc, &own, &rep, e);
    if (rc == FLC_ECONN && flc_store_fails_over(w->s) && rep.wait_ms == 0 &&
        rep.participants.n == 0) {
        /* Cut by a failover before it waited for anything (its lock or
         * its first look at the shard): once more, through the new map. */
        flc_rs_report_free(&rep);
        rc = flc_rs_merger_run_own(w->s, &mc, &own, &rep, e);
    }
    if (rc != FLC_OK && rep.wait_ms == 0) {
        /* A merger that failed before it started tells no reader: they
         * would wait for this shard until their pull's timeout (two step
         * timeouts). The error goes to them now (extra tokens are harmless:
         * a reader takes one, and the round is deleted later). */
        char token[300];
        snprintf(token, sizeof token, "error: %s", e->msg);
        flc_store_notify(w->s, w->steps_job, g, shard, "done", token, (unsigned)c->workers);
    }
    w->r->merge_ms += rep.merge_ms;
    w->r->wait_ms += rep.wait_ms;
    if (rc == FLC_OK && rep.missing.n > 0 && flc_store_failovers(w->s) != fo) {
        /* The shard's node was replaced during the step: a worker's
         * acknowledged update can have gone with it (the merger took every
         * update the new node holds, aggregator/rs_recover.c). Name all. */
        char names[256] = "";
        for (size_t i = 0; i < rep.missing.n; i++) {
            size_t l = strlen(names);
            if (l + strlen(rep.missing.items[i]) + 8 < sizeof names)
                snprintf(names + l, sizeof names - l, "%s%s", l ? ", " : "",
                         rep.missing.items[i]);
        }
        rc = flc_err_set(e, FLC_EDATA, "step %u, shard %u: update(s) of %s lost in a failover "
                         "(the shard's master was replaced during the step; waited %u ms); "
                         "synchronous SGD cannot go on", g, shard, names, c->step_timeout_ms);
    }
    if (rc == FLC_OK && (rep.missing.n > 0 || rep.rejected.n > 0))
        rc = flc_err_set(e, FLC_EDATA, "step %u, shard %u: %zu worker(s) missing (first: %s) "
                         "and %zu rejected (first: %s) after %u ms; synchronous SGD cannot go on",
                         g, shard, rep.missing.n, rep.missing.n ? rep.missing.items[0] : "-",
                         rep.rejected.n, rep.rejected.n ? rep.rejected.items[0] : "-",
                         c->step_timeout_ms);
    flc_rs_report_free(&rep);
    return rc;
}

/* Deletes step round g. flc_store_delete_round finds the round's keys
 * from its indexes and unlinks them in one pipelined round trip, so the
 * step's critical path pays about S + 4 round trips for it, and the list of
 * what a round consists of lives in one place (cache/store_meta.c). */
static int drop_step_round(sgd_worker_t *w, uint32_t g)
{
    const char *const *names = (const char *const *)w->names;
    int W = w->c.workers;
    int rc = flc_store_drop_known_round(w->s, w->steps_job, g, w->c.num_shards, names,
                                        (size_t)W, 0);
    /* Cut by a failover: the store follows the new map; once more (a
     * round deleted twice is deleted). */
    if (rc == FLC_ECONN && flc_store_fails_over(w->s))
        rc = flc_store_drop_known_round(w->s, w->steps_job, g, w->c.num_shards, names,
                                        (size_t)W, 0);
    return rc;
}

/* A push that went through a failover (this worker's store saw a node
 * replaced): the acknowledged part of it may have gone with the dead
 * master. The worker knows its own gradient, so it checks each shard and
 * pushes again when one is missing (a repeated arrival counts once). What
 * a failover takes after this check is named by the merger's timeout
 * (merge_shard). */
static int repush_if_lost(sgd_worker_t *w, uint32_t g, const flc_rs_push_cfg_t *pc,
                          const unsigned char *skip, flc_err_t *e)
{
    const char *me[] = {w->name};
    for (uint32_t sh = 0; sh < w->c.num_shards; sh++) {
        if (skip[sh])
            continue; /* not pushed: its merger is this worker */
        unsigned char present = 0;
        if (flc_store_updates_present(w->s, w->steps_job, g, sh, me, 1, &present) != FLC_OK)
            return flc_err_set(e, flc_store_error(w->s)->code, "step %u: checking the push of "
                               "%s after a failover: %s", g, w->name, flc_store_errstr(w->s));
        if (!present) {
            int rc = flc_rs_push_skip(w->s, pc, skip, w->grad, e);
            return rc == FLC_OK ? FLC_OK
                                : flc_err_wrap(e, "step %u, push of %s again after a failover: ",
                                               g, w->name);
        }
    }
    return FLC_OK;
}

/* One exchange: push the gradient (+ loss), merge the shards this worker
 * owns, pull the mean into w->merged, then delete an old step round when it
 * is this worker's turn. */
/* comm ps (workers/ps.h): the first step connects and hands the server the
 * initial model; every step pushes the gradient and takes the model back. */
static int ps_exchange(sgd_worker_t *w, uint32_t g, flc_err_t *e)
{
    const flc_sgd_cfg_t *c = &w->c;
    if (w->ps_fd < 0) {
        if (c->ps == NULL)
            return flc_err_set(e, FLC_EINVAL, "worker %d: comm ps without a server address "
                               "(event field 'ps')", c->rank);
        int fd = flc_ps_connect(c->ps, c->rank, c->workers, w->w, w->nparams, (float)c->lr,
                                c->step_timeout_ms, e);
        if (fd < 0)
            return fd;
        w->ps_fd = fd;
    }
    return flc_ps_step(w->ps_fd, g, w->grad, w->nparams, w->w, &w->merged[w->nparams],
                       2 * c->step_timeout_ms, e);
}

int sgd_exchange(sgd_worker_t *w, uint32_t g, flc_err_t *e)
{
    const flc_sgd_cfg_t *c = &w->c;
    if (c->comm == FLC_SGD_COMM_PS)
        return ps_exchange(w, g, e);
    /* The shards this worker merges are not pushed nor pulled: its merger
     * takes the gradient from memory and leaves the mean in w->merged. */
    unsigned char *mine = w->mine;
    for (uint32_t sh = 0; sh < c->num_shards; sh++)
        mine[sh] = sh % (uint32_t)c->workers == (uint32_t)c->rank;
    flc_rs_push_cfg_t pc = {.job = w->steps_job, .round = g, .client = w->name,
                            .num_shards = c->num_shards, .model_size = w->nparams + 1,
                            .num_samples = c->batch};
    uint64_t fo = flc_store_failovers(w->s);
    int rc = flc_rs_push_skip(w->s, &pc, mine, w->grad, e);
    if (rc != FLC_OK)
        return flc_err_wrap(e, "step %u, push of %s: ", g, w->name);
    if (flc_store_failovers(w->s) != fo && (rc = repush_if_lost(w, g, &pc, mine, e)) != FLC_OK)
        return rc;
    /* What the frames would carry (flc_rs_push computes the same). */
    double norm = sqrt(flc_merge_sumsq(w->grad, w->nparams + 1));
    for (uint32_t sh = (uint32_t)c->rank; sh < c->num_shards; sh += (uint32_t)c->workers)
        if ((rc = merge_shard(w, g, sh, norm, e)) != FLC_OK)
            return rc;
    rc = flc_rs_pull_except(w->s, w->steps_job, g, c->num_shards, w->nparams + 1,
                            2 * c->step_timeout_ms, mine, w->merged, e);
    if (rc != FLC_OK)
        return flc_err_wrap(e, "step %u, pull by %s: ", g, w->name);
    /* Everyone pushed g only after pulling g-1: round g-2 is read by all. */
    if (g > 2 && g % (uint32_t)c->workers == (uint32_t)c->rank) {
        uint64_t t0 = flc_now_ns();
        rc = drop_step_round(w, g - 2);
        w->r->cleanup_ms += sgd_ms_since(t0);
        if (rc != FLC_OK)
            return flc_err_set(e, rc, "step %u: deleting step round %u: %s", g, g - 2,
                               flc_store_errstr(w->s));
    }
    return FLC_OK;
}
