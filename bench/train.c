/* bench/train: synchronous SGD on W worker functions (the local pool, real
 * flcache-fn processes, one redis-server), W = 1, 2, 4, 8, with the gradient
 * exchanged by reduce-scatter (S = W shards, worker k merges shard k) and by
 * allreduce-to-one (worker 0 merges everything) and by a parameter server
 * (--comm ps: a server thread of this process holds the model, workers push
 * and pull over a unix socket; workers/ps.h). One JSON line per run:
 *   epoch_s            worker 0's wall time for one epoch (test evaluation
 *                      included, data loading and process start excluded)
 *   step_ms            mean step time of worker 0
 *   compute_ms/comm_ms per worker and epoch, averaged over workers
 *                      (comm includes waiting for the slowest worker); of
 *                      comm: merge_ms (this worker's merger working),
 *                      merger_wait_ms (it waiting for arrivals),
 *                      cleanup_ms (deleting old step rounds)
 *   cost_per_epoch_usd W x epoch_s x memory GB x price (what the epoch
 *                      keeps W functions busy)
 *   billed_usd         what the platform billed for the whole invocations
 *   speedup_vs_w1      epoch_s of W = 1 (same mode) / epoch_s
 *   ratio_to_rs        allreduce-one and ps lines: epoch_s / reduce-scatter
 *                      epoch_s; same_model_as_rs: the checksums agree
 *   floor_ms           the exchange's fixed floor (issue 14 goal 3), measured
 *                      in the same run right after the training, on this
 *                      program's idle connection: five sequential round
 *                      trips with the step's real payloads, each the median
 *                      of FLOOR_REPS: the push (the S shards of one
 *                      gradient, pipelined SETs), the merger's wake (a BLPOP
 *                      that finds its token), the merged write (one SET of
 *                      the largest shard), the reader's wake, the pull (the
 *                      S merged shards, pipelined GETs); floor_parts_ms
 *                      lists the five
 *   step_comm_ms       comm_ms / steps_per_epoch: one step's exchange
 *   step_comm_over_floor  step_comm_ms / floor_ms (goal: <= 3 at W = 1, 4)
 *   cmds_per_step      Redis commands per step and worker (INFO
 *                      commandstats around the training: loading, barrier
 *                      and evaluation included), cmds_by_name the biggest
 * The number of steps per epoch falls as W grows (per-worker batch fixed),
 * so epoch_s measures how the exchange scales. The machine's cores are
 * shared by all W workers and Redis: with more workers than cores the
 * numbers show contention, not a cluster.
 *
 * Usage: bench/train [--full] [--model softmax|mlp] [--subset N] [--epochs E]
 *                    [--batch B] [--workers 1,2,4,8] [--memory MB]
 * Default: mlp on the first 8000 training samples, 1 epoch, batch 64 per
 * worker, 2000 test samples; --full uses all 60000 / 10000. FLCACHE_REDIS
 * points at a server, else a private one is started; FLCACHE_FN at the
 * function binary, else ../flcache-fn next to this program. */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aggregator/reduce_scatter.h"
#include "base/clock.h"
#include "bench/bench_floor.h"
#include "bench/bench_util.h"
#include "cache/embed.h"
#include "cache/store.h"
#include "cache/store_raw.h"
#include "cli/config.h"
#include "runtime/cost.h"
#include "runtime/pool.h"
#include "workers/ps.h"
#include "workers/sgd_worker.h"

#define MAXW 64

typedef struct run_out {
    int ok, same;
    double epoch_s, step_ms, compute_ms, comm_ms, merge_ms, wait_ms, cleanup_ms, acc, billed, cost_epoch;
    double steps_per_epoch, nparams;
    double cmds;       /* Redis commands during the training (INFO commandstats) */
    cJSON *cmds_by;    /* per command name */
    char sum[32];
    char err[300];
} run_out_t;

/* The parameter server of a ps run, on a thread of this process. */
typedef struct ps_thread {
    pthread_t t;
    int lfd, workers, rc;
    uint32_t steps;
    char addr[160];
    flc_err_t e;
} ps_thread_t;

static void *ps_main(void *arg)
{
    ps_thread_t *p = arg;
    p->rc = flc_ps_serve(p->lfd, p->workers, 120000, &p->steps, &p->e);
    return NULL;
}

static void die(const char *what, const char *msg)
{
    bench_die("bench/train", what, msg);
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *it = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(it) ? it->valuedouble : 0;
}

static double metric(const Flcache__RoundMeta *m, const char *k)
{
    for (size_t i = 0; i < m->n_metrics; i++)
        if (strcmp(m->metrics[i]->key, k) == 0)
            return m->metrics[i]->value;
    return 0;
}

/* Redis commands since the last CONFIG RESETSTAT: the total, and per
 * command name into *by (an object; NULL: not wanted). */
static double command_stats(flc_store_t *s, cJSON **by)
{
    redisReply *r;
    if (flc_store_commandf(s, &r, "INFO commandstats") != 0)
        die("INFO commandstats", flc_store_errstr(s));
    double total = 0;
    if (by)
        *by = cJSON_CreateObject();
    for (const char *p = r->type == REDIS_REPLY_STRING ? r->str : ""; (p = strstr(p, "cmdstat_"));) {
        char name[64];
        double calls = 0;
        if (sscanf(p, "cmdstat_%63[^:]:calls=%lf", name, &calls) == 2 &&
            strcmp(name, "info") != 0 && strcmp(name, "config") != 0) {
            total += calls;
            if (by)
                cJSON_AddNumberToObject(*by, name, calls);
        }
        p += 8;
    }
    freeReplyObject(r);
    return total;
}

static void reset_stats(flc_store_t *s)
{
    redisReply *r;
    if (flc_store_commandf(s, &r, "CONFIG RESETSTAT") != 0)
        die("CONFIG RESETSTAT", flc_store_errstr(s));
    freeReplyObject(r);
}

/* Trains once with c (rank set per worker) and measures it. */
static run_out_t run(flc_pool_t *pool, flc_store_t *s, const flc_sgd_cfg_t *c)
{
    run_out_t o = {.ok = 1, .same = 1};
    int W = c->workers;
    cJSON *evs[MAXW];
    flc_inv_rec_t recs[MAXW];
    memset(recs, 0, sizeof recs);
    for (int k = 0; k < W; k++) {
        flc_sgd_cfg_t ck = *c;
        ck.rank = k;
        evs[k] = flc_sgd_cfg_to_json(&ck);
    }
    flc_err_t e = {0};
    reset_stats(s);
    if (flc_pool_invoke_json(pool, (const cJSON *const *)evs, (size_t)W, recs, &e) != 0)
        die("pool", flc_err_msg(&e));
    o.cmds = command_stats(s, &o.cmds_by);
    const char *sum0 = NULL;
    for (int k = 0; k < W; k++) {
        const cJSON *res = flc_inv_result(&recs[k]);
        o.billed += recs[k].cost_usd;
        if (recs[k].status != FLC_INV_OK || res == NULL) {
            if (o.ok)
                snprintf(o.err, sizeof o.err, "worker %d: %.270s", k, recs[k].error);
            o.ok = 0;
            continue;
        }
        const char *sum = cJSON_GetStringValue(cJSON_GetObjectItem(res, "checksum"));
        if (sum0 == NULL) {
            sum0 = sum;
            snprintf(o.sum, sizeof o.sum, "%s", sum ? sum : "");
        }
        else if (sum == NULL || strcmp(sum, sum0) != 0)
            o.same = 0;
        double E = c->epochs;
        o.compute_ms += (num(res, "compute_ms") - num(res, "load_ms") - num(res, "eval_ms")) /
                        E / W;
        o.comm_ms += num(res, "comm_ms") / E / W;
        o.merge_ms += num(res, "merge_ms") / E / W;
        o.wait_ms += num(res, "wait_ms") / E / W;
        o.cleanup_ms += num(res, "cleanup_ms") / E / W;
        if (k == 0) {
            o.acc = num(res, "accuracy");
            o.steps_per_epoch = num(res, "steps_per_epoch");
            o.nparams = num(res, "nparams");
        }
    }
    for (int ep = 1; o.ok && ep <= c->epochs; ep++) {
        Flcache__RoundMeta *m = NULL;
        if (flc_store_get_round_meta(s, c->job, (uint32_t)ep, &m) != FLC_OK)
            die("epoch metadata", flc_store_errstr(s));
        o.epoch_s += m->round_ms / 1000 / c->epochs;
        o.step_ms += metric(m, "step_ms_mean") / c->epochs;
        o.cost_epoch += m->cost_usd / c->epochs;
        flcache__round_meta__free_unpacked(m, NULL);
    }
    flc_sgd_cleanup(s, c->job, NULL);
    for (int k = 0; k < W; k++) {
        cJSON_Delete(evs[k]);
        flc_inv_rec_clear(&recs[k]);
    }
    return o;
}


int main(int argc, char **argv)
{
    bench_config();
    signal(SIGPIPE, SIG_IGN);
    const char *model = "mlp";
    size_t subset = 8000, test_subset = 2000, batch = 64;
    int epochs = 1, ws[16] = {1, 2, 4, 8}, nw = 4;
    unsigned memory = 1024;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--full") == 0) {
            subset = test_subset = 0;
        } else if (strcmp(a, "--model") == 0 && v) {
            model = v, i++;
        } else if (strcmp(a, "--subset") == 0 && v) {
            subset = strtoul(v, NULL, 10), i++;
        } else if (strcmp(a, "--epochs") == 0 && v) {
            epochs = atoi(v), i++;
        } else if (strcmp(a, "--batch") == 0 && v) {
            batch = strtoul(v, NULL, 10), i++;
        } else if (strcmp(a, "--memory") == 0 && v) {
            memory = (unsigned)atoi(v), i++;
        } else if (strcmp(a, "--workers") == 0 && v) {
            nw = 0;
            for (char *p = argv[++i]; *p && nw < 16;) {
                ws[nw] = (int)strtol(p, &p, 10);
                if (ws[nw] < 1 || ws[nw] > MAXW)
                    die("--workers", "each W must be 1..64");
                nw++;
                if (*p == ',')
                    p++;
                else if (*p)
                    die("--workers", "expected a list like 1,2,4,8");
            }
        } else {
            fprintf(stderr, "usage: bench/train [--full] [--model softmax|mlp] [--subset N] "
                            "[--epochs E] [--batch B] [--workers 1,2,4,8] [--memory MB]\n");
            return 2;
        }
    }
    int maxw = 1;
    for (int i = 0; i < nw; i++)
        maxw = ws[i] > maxw ? ws[i] : maxw;

    flc_err_t e = {0};
    flc_embed_t *srv = NULL;
    const char *url = flc_config_program()->redis; /* FLCACHE_REDIS */
    if (url == NULL) {
        if ((srv = flc_embed_start(NULL, &e)) == NULL)
            die("redis-server", flc_err_msg(&e));
        url = flc_embed_url(srv);
    }
    flc_store_t *s = flc_store_open(url, bench_store_opts(), &e);
    if (s == NULL)
        die("store", flc_err_msg(&e));
    char fn[PATH_MAX];
    bench_fn_path(fn, sizeof fn);
    static const char *const env[] = {"OPENBLAS_NUM_THREADS=1", NULL};
    flc_pool_cfg_t pc;
    flc_pool_cfg_init(&pc);
    pc.fn_path = fn;
    pc.memory_mb = memory;
    pc.concurrency = (unsigned)maxw;
    pc.timeout_ms = 1800000;
    pc.env = env;
    flc_config_pool_cfg(flc_config_program(), &pc); /* FLCACHE_POOL_MEM */
    flc_pool_t *pool = flc_pool_new(&pc, &e);
    if (pool == NULL)
        die("pool", flc_err_msg(&e));

    double base_rs = 0, base_one = 0, base_ps = 0;
    for (int i = 0; i < nw; i++) {
        double rs_epoch = 0;
        char rs_sum[32] = "";
        for (int comm = FLC_SGD_COMM_RS; comm <= FLC_SGD_COMM_PS; comm++) {
            char job[64], name[64];
            snprintf(job, sizeof job, "bench-train-%d-%d", ws[i], comm);
            snprintf(name, sizeof name, "%s/W%d/%s", model, ws[i], flc_sgd_comm_name(comm));
            flc_sgd_cfg_t c;
            flc_sgd_cfg_init(&c);
            c.job = job;
            c.workers = ws[i];
            c.model = model;
            c.epochs = epochs;
            c.batch = batch;
            c.comm = comm;
            c.subset = subset;
            c.test_subset = test_subset;
            c.redis = url;
            c.memory_mb = memory;
            c.price_per_gb_s = FLC_LAMBDA_X86_PRICE_GB_S;
            if (flc_sgd_cfg_finish(&c, &e) != FLC_OK)
                die("config", flc_err_msg(&e));
            ps_thread_t ps = {.workers = ws[i]};
            if (comm == FLC_SGD_COMM_PS) {
                char want[128];
                snprintf(want, sizeof want, "unix:/tmp/flc-bench-ps-%d.sock", (int)getpid());
                if ((ps.lfd = flc_ps_listen(want, ps.addr, sizeof ps.addr, &e)) < 0)
                    die("ps", flc_err_msg(&e));
                pthread_create(&ps.t, NULL, ps_main, &ps);
                c.ps = ps.addr;
            }
            run_out_t o = run(pool, s, &c);
            if (comm == FLC_SGD_COMM_PS) {
                pthread_join(ps.t, NULL);
                close(ps.lfd);
                unlink(ps.addr + 5);
                if (ps.rc != FLC_OK && o.ok) {
                    o.ok = 0;
                    snprintf(o.err, sizeof o.err, "%.290s", ps.e.msg);
                }
            }
            cJSON *l = bench_line("train", name);
            cJSON_AddStringToObject(l, "model", model);
            cJSON_AddNumberToObject(l, "workers", ws[i]);
            cJSON_AddStringToObject(l, "comm", flc_sgd_comm_name(comm));
            cJSON_AddNumberToObject(l, "num_shards", c.num_shards);
            cJSON_AddNumberToObject(l, "train_samples", subset ? (double)subset : 60000);
            cJSON_AddNumberToObject(l, "batch_per_worker", (double)batch);
            cJSON_AddBoolToObject(l, "ok", o.ok && o.same);
            if (!o.ok) {
                cJSON_Delete(o.cmds_by);
                cJSON_AddStringToObject(l, "error", o.err);
                bench_emit(l);
                continue;
            }
            double *base = comm == FLC_SGD_COMM_RS    ? &base_rs
                           : comm == FLC_SGD_COMM_ONE ? &base_one
                                                      : &base_ps;
            if (*base == 0 && ws[i] == 1)
                *base = o.epoch_s;
            cJSON_AddNumberToObject(l, "steps_per_epoch", o.steps_per_epoch);
            cJSON_AddNumberToObject(l, "epoch_s", o.epoch_s);
            cJSON_AddNumberToObject(l, "step_ms", o.step_ms);
            cJSON_AddNumberToObject(l, "compute_ms", o.compute_ms);
            cJSON_AddNumberToObject(l, "comm_ms", o.comm_ms);
            cJSON_AddNumberToObject(l, "merge_ms", o.merge_ms);
            cJSON_AddNumberToObject(l, "merger_wait_ms", o.wait_ms);
            cJSON_AddNumberToObject(l, "cleanup_ms", o.cleanup_ms);
            if (comm != FLC_SGD_COMM_PS && o.steps_per_epoch > 0) {
                double part[5];
                double fl = bench_exchange_floor(s, (uint64_t)o.nparams + 1, c.num_shards, part);
                double step_comm = o.comm_ms / o.steps_per_epoch;
                cJSON_AddNumberToObject(l, "floor_ms", fl);
                cJSON_AddItemToObject(l, "floor_parts_ms", cJSON_CreateDoubleArray(part, 5));
                cJSON_AddNumberToObject(l, "step_comm_ms", step_comm);
                cJSON_AddNumberToObject(l, "step_comm_over_floor", step_comm / fl);
            }
            double steps_all = o.steps_per_epoch * epochs * ws[i];
            if (steps_all > 0)
                cJSON_AddNumberToObject(l, "cmds_per_step", o.cmds / steps_all);
            if (o.cmds_by != NULL && steps_all > 0) {
                /* per step and worker, the commands that make most of it */
                cJSON *by = cJSON_CreateObject();
                for (cJSON *it = o.cmds_by->child; it; it = it->next)
                    if (it->valuedouble / steps_all >= 0.05)
                        cJSON_AddNumberToObject(by, it->string, it->valuedouble / steps_all);
                cJSON_AddItemToObject(l, "cmds_by_name", by);
            }
            cJSON_AddNumberToObject(l, "comm_fraction",
                                    o.compute_ms + o.comm_ms > 0
                                        ? o.comm_ms / (o.compute_ms + o.comm_ms)
                                        : 0);
            cJSON_AddNumberToObject(l, "cost_per_epoch_usd", o.cost_epoch);
            cJSON_AddNumberToObject(l, "billed_usd", o.billed);
            cJSON_AddNumberToObject(l, "accuracy", o.acc);
            cJSON_AddBoolToObject(l, "identical_models", o.same);
            if (*base > 0)
                cJSON_AddNumberToObject(l, "speedup_vs_w1", *base / o.epoch_s);
            if (comm == FLC_SGD_COMM_RS) {
                rs_epoch = o.epoch_s;
                snprintf(rs_sum, sizeof rs_sum, "%s", o.sum);
            } else if (rs_epoch > 0) {
                cJSON_AddNumberToObject(l, "ratio_to_rs", o.epoch_s / rs_epoch);
                cJSON_AddBoolToObject(l, "same_model_as_rs", strcmp(o.sum, rs_sum) == 0);
            }
            cJSON_Delete(o.cmds_by);
            bench_emit(l);
        }
    }
    flc_pool_free(pool);
    flc_store_close(s);
    flc_embed_stop(srv);
    return 0;
}
