/* bench_round.c - the threaded reduce-scatter round of bench_round.h. */
#include "bench/bench_round.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/reduce_scatter.h"
#include "base/clock.h"
#include "bench/bench_util.h"
#include "cache/store_ops.h"
#include "cache/store_raw.h"

#define MAX_THREADS 128

static double since(const bench_round_t *c)
{
    return (double)(flc_now_ns() - c->t0_ns) / 1e6;
}

void bench_round_phases(const bench_round_t *c, char *buf, size_t cap)
{
    double op = 0, pu = 0, pl = 0, me = 0, mm = 0, op0 = 1e18, pu0 = 1e18, me0 = 1e18, pl0 = 1e18;
    for (uint32_t i = 0; i < c->W && i < MAX_THREADS; i++) {
        op = c->opened_ms[i] > op ? c->opened_ms[i] : op;
        pu = c->pushed_ms[i] > pu ? c->pushed_ms[i] : pu;
        pl = c->pulled_ms[i] > pl ? c->pulled_ms[i] : pl;
        op0 = c->opened_ms[i] < op0 ? c->opened_ms[i] : op0;
        pu0 = c->pushed_ms[i] < pu0 ? c->pushed_ms[i] : pu0;
        pl0 = c->pulled_ms[i] < pl0 ? c->pulled_ms[i] : pl0;
    }
    for (uint32_t k = 0; k < c->S && k < MAX_THREADS; k++) {
        me = c->merged_ms[k] > me ? c->merged_ms[k] : me;
        mm = c->merge_ms[k] > mm ? c->merge_ms[k] : mm;
        me0 = c->merged_ms[k] < me0 ? c->merged_ms[k] : me0;
    }
    /* first-last of each phase's ends: a wide spread is work that queued */
    snprintf(buf, cap, "opened %.0f-%.0f, pushed %.0f-%.0f, merged %.0f-%.0f (longest merge %.0f), "
             "pulled %.0f-%.0f ms", op0, op, pu0, pu, me0 > me ? 0 : me0, me, mm, pl0, pl);
}

void *bench_round_contributor(void *p)
{
    bench_round_arg_t *a = p;
    bench_round_t *c = a->c;
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(c->url, bench_store_opts(), &e);
    c->opened_ms[a->i] = since(c);
    flc_rs_push_cfg_t pc = {.job = "bench", .round = c->round, .client = c->names[a->i],
                            .num_shards = c->S, .model_size = c->n, .num_samples = 1 + a->i};
    int rc = s == NULL || flc_rs_push(s, &pc, c->u[a->i], &e) != 0;
    c->pushed_ms[a->i] = since(c);
    if (rc == 0 &&
        flc_rs_pull(s, "bench", c->round, c->S, c->n, 120000, c->model[a->i], &e) != 0)
        rc = 1;
    c->pulled_ms[a->i] = since(c);
    if (rc) {
        fprintf(stderr, "%s: contributor %u: %s\n", c->tag, a->i, flc_err_msg(&e));
        c->failed = 1;
    }
    flc_store_close(s);
    return NULL;
}

void *bench_round_merger(void *p)
{
    bench_round_arg_t *a = p;
    bench_round_t *c = a->c;
    flc_err_t e = {0};
    /* Placed: into the shard owner's namespace before the store's sockets
     * are made, so they live there and reach the owner over its socket. */
    flc_store_opts_t o = *bench_store_opts();
    flc_store_t *s = NULL;
    if (c->place.enter == NULL || c->place.enter(c->place.user, c->node[a->i], &o, &e) == 0)
        s = flc_store_open(c->url, &o, &e);
    flc_rs_merger_cfg_t mc = {.job = "bench", .round = c->round, .shard = a->i,
                              .num_shards = c->S, .model_size = c->n, .expected = c->names,
                              .n_expected = c->W, .deadline_ms = 120000, .readers = c->W};
    flc_merge_rule_init(&mc.rule, "fedavg", NULL);
    flc_rs_report_t rep = {0};
    if (s == NULL || flc_rs_merger_run(s, &mc, &rep, &e) != 0) {
        fprintf(stderr, "%s: merger %u: %s\n", c->tag, a->i, flc_err_msg(&e));
        c->failed = 1;
    }
    c->merged_ms[a->i] = since(c);
    c->merge_ms[a->i] = rep.merge_ms;
    flc_rs_report_free(&rep);
    flc_store_close(s);
    return NULL;
}

/* c->node[k] = the node owning shard k of this round (the slot map of a
 * store opened where the caller runs). */
static int find_owners(bench_round_t *c)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(c->url, bench_store_opts(), &e);
    if (s == NULL) {
        fprintf(stderr, "%s: shard owners: %s\n", c->tag, flc_err_msg(&e));
        return -1;
    }
    free(c->node);
    c->node = calloc(c->S ? c->S : 1, sizeof *c->node);
    int rc = c->node ? 0 : -1;
    /* the driver begins the job: its shard tags follow from S (schema 2) */
    if (rc == 0 && (rc = flc_store_job_begin(s, "bench", c->S)) != 0)
        fprintf(stderr, "%s: beginning the job: %s\n", c->tag, flc_store_errstr(s));
    for (uint32_t k = 0; rc == 0 && k < c->S; k++) {
        flc_store_node_t nd;
        if ((rc = flc_store_shard_node(s, "bench", c->round, k, &nd)) != 0)
            fprintf(stderr, "%s: the owner of shard %u: %s\n", c->tag, k, flc_store_errstr(s));
        else
            snprintf(c->node[k], sizeof c->node[k], "%s", nd.addr);
    }
    flc_store_close(s);
    return rc;
}

double bench_round_run(bench_round_t *c, int with_mergers, void *(*contributor)(void *))
{
    pthread_t th[MAX_THREADS];
    bench_round_arg_t args[MAX_THREADS];
    uint32_t nm = with_mergers ? c->S : 0, nt = 0;
    if (nm + c->W > MAX_THREADS) {
        fprintf(stderr, "%s: %u threads, at most %d\n", c->tag, nm + c->W, MAX_THREADS);
        c->failed = 1;
        return 0;
    }
    if (nm > 0 && c->place.enter != NULL && find_owners(c) != 0) {
        c->failed = 1;
        return 0;
    }
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT), sigaddset(&block, SIGTERM), sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    uint64_t t0 = flc_now_ns();
    c->t0_ns = t0;
    for (uint32_t k = 0; k < nm; k++) {
        args[nt] = (bench_round_arg_t){c, k};
        pthread_create(&th[nt], NULL, bench_round_merger, &args[nt]);
        nt++;
    }
    for (uint32_t i = 0; i < c->W; i++) {
        args[nt] = (bench_round_arg_t){c, i};
        pthread_create(&th[nt], NULL, contributor ? contributor : bench_round_contributor,
                       &args[nt]);
        nt++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    for (uint32_t t = 0; t < nt; t++)
        pthread_join(th[t], NULL);
    return (double)(flc_now_ns() - t0) / 1e9;
}

int bench_raw_chunks(flc_store_t *s, const char *cmd, const char *prefix, size_t k0, size_t k1,
                     size_t bytes, const char *src, char *dst)
{
    size_t chunk = FLC_STORE_CHUNK_DEFAULT;
    for (size_t k = k0; k < k1; k += BENCH_RAW_BATCH) {
        size_t nb = k1 - k < BENCH_RAW_BATCH ? k1 - k : BENCH_RAW_BATCH;
        char keys[BENCH_RAW_BATCH][64];
        const char *argv[BENCH_RAW_BATCH][3];
        size_t lens[BENCH_RAW_BATCH][3];
        const char *const *av[BENCH_RAW_BATCH];
        const size_t *lv[BENCH_RAW_BATCH];
        int ac[BENCH_RAW_BATCH];
        redisReply *out[BENCH_RAW_BATCH];
        for (size_t b = 0; b < nb; b++) {
            size_t at = (k + b) * chunk, len = bytes - at < chunk ? bytes - at : chunk;
            snprintf(keys[b], sizeof keys[b], "%s:%zu", prefix, k + b);
            argv[b][0] = cmd, argv[b][1] = keys[b];
            argv[b][2] = src ? src + (at - k0 * chunk) : NULL;
            lens[b][0] = strlen(cmd), lens[b][1] = strlen(keys[b]), lens[b][2] = len;
            ac[b] = src ? 3 : 2;
            av[b] = argv[b];
            lv[b] = lens[b];
        }
        if (flc_store_pipeline_bin(s, nb, ac, av, lv, out) != 0)
            return -1;
        int bad = 0;
        for (size_t b = 0; b < nb; b++) {
            if (dst && out[b]->type == REDIS_REPLY_STRING)
                memcpy(dst + (k + b - k0) * chunk, out[b]->str, (size_t)out[b]->len);
            bad |= out[b]->type == REDIS_REPLY_ERROR;
            freeReplyObject(out[b]);
        }
        if (bad)
            return -1;
    }
    return 0;
}
