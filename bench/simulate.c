/* bench/simulate: the federated simulation's merge path at scale. One
 * 1M-parameter synthetic model (clients push noise deltas instead of
 * training, so the client side costs little), K = 10, 100 and 1000 clients
 * per round through a private redis-server, clients as 2 threads of this
 * process (flc_sim_invoke_inproc), one in-process streaming FedAvg merger.
 *
 * Lines (JSON, bench_util.h):
 *   case "memory-fold", K:   baseline: K updates folded into the FedAvg
 *                            accumulator in memory (no cache), updates/s
 *   case "round", K, rule:   updates_per_s = participants / round time (push,
 *                            merge, pull, records: end to end);
 *                            merge_updates_per_s = participants / the
 *                            merger's own time (reading and folding);
 *                            round_ms (mean), peak_rss_mb of this process
 *                            (driver, merger and client threads) during the
 *                            case, redis_peak_mb; ratio = updates_per_s /
 *                            the memory-fold baseline of the same K.
 *                            client_compute_ms / client_store_ms: the
 *                            clients' own compute and store time per
 *                            round, summed over clients (their results'
 *                            compute_ms, comm_ms), clients_ms the wall
 *                            time of the invocations, merge_ms the slowest
 *                            merger's reading and folding.
 * Environment: FLCACHE_BENCH_P (parameters, default 1000000),
 * FLCACHE_BENCH_KS (default "10,100,1000"), FLCACHE_BENCH_N (clients in the
 * job, default 10 x K), FLCACHE_BENCH_REPS (rounds per K, default 3; K >=
 * 1000 runs 1 unless FLCACHE_BENCH_ROUNDS says how many).
 * Issue 14's scale run (a million clients, 10,000 per round, softmax-sized
 * synthetic updates: Fashion-MNIST has 60,000 samples, so clients push
 * noise deltas of the softmax's 7,850 parameters instead of training):
 *   FLCACHE_BENCH_P=7850 FLCACHE_BENCH_KS=10000 FLCACHE_BENCH_N=1000000 \
 *   FLCACHE_BENCH_ROUNDS=3 build/bench/simulate */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aggregator/merge.h"
#include "base/clock.h"
#include "bench/bench_util.h"
#include "cache/embed.h"
#include "cache/store.h"
#include "cache/store_raw.h"
#include "cli/config.h"
#include "policies/policy.h"
#include "clients/sim.h"
#include "ml/rng.h"
#include "runtime/pool_proc.h"

static double peak_rss_mb(void)
{
    return (double)flc_proc_status_kb(getpid(), "VmHWM") / 1024;
}

/* Starts a new peak-RSS window. */
static void reset_peak(void)
{
    flc_proc_reset_hwm(getpid());
}

static double redis_peak_mb(const char *url)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(url, NULL, &e);
    redisReply *r = NULL;
    double mb = -1;
    if (s && flc_store_commandf(s, &r, "INFO memory") == 0) {
        const char *p = strstr(r->str, "used_memory_peak:");
        if (p)
            mb = atof(p + 17) / 1048576.0;
        freeReplyObject(r);
    }
    if (s && flc_store_commandf(s, &r, "MEMORY RESET-STATS") == 0) /* next case's own peak */
        freeReplyObject(r);
    flc_store_close(s);
    return mb;
}

/* The in-process invoker, adding up what the clients say they spent
 * computing and in the store (their results' compute_ms and comm_ms). */
typedef struct timed_inv {
    flc_sim_inproc_t *in;
    double compute_ms, comm_ms;
} timed_inv_t;

static int invoke_timed(void *user, cJSON *const *events, size_t n, flc_sim_inv_t *out,
                        flc_err_t *e)
{
    timed_inv_t *t = user;
    int rc = flc_sim_invoke_inproc(t->in, events, n, out, e);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!out[i].ok)
            continue;
        const cJSON *c = cJSON_GetObjectItem(out[i].result, "compute_ms");
        const cJSON *m = cJSON_GetObjectItem(out[i].result, "comm_ms");
        t->compute_ms += cJSON_IsNumber(c) ? c->valuedouble : 0;
        t->comm_ms += cJSON_IsNumber(m) ? m->valuedouble : 0;
    }
    return rc;
}

/* In-memory baseline: K folds of a P-float update into a FedAvg sum. */
static double fold_rate(size_t P, int K)

{
    flc_err_t e = {0};
    flc_merge_rule_t r;
    flc_merge_rule_init(&r, "fedavg", &e);
    flc_merge_acc_t *acc = flc_merge_acc_new(&r, P, &e);
    float *u = malloc(P * sizeof *u), *out = malloc(P * sizeof *out);
    if (acc == NULL || u == NULL || out == NULL)
        return -1;
    flc_rng_t rng;
    flc_rng_seed(&rng, 3);
    for (size_t i = 0; i < P; i++)
        u[i] = (float)((flc_rng_uniform(&rng) - 0.5) * 1e-3);
    flc_merge_acc_fold(acc, u, P, 100, -1, &e); /* warm: page in the sum */
    flc_merge_acc_reset(acc);
    int n = K < 50 ? 50 : (K > 200 ? 200 : K);
    double t0 = flc_now_s();
    for (int k = 0; k < n; k++)
        flc_merge_acc_fold(acc, u, P, 100, -1, &e);
    flc_merge_acc_finish(acc, NULL, out, &e);
    double dt = flc_now_s() - t0;
    flc_merge_acc_free(acc);
    free(u);
    free(out);
    return n / dt;
}

int main(void)
{
    bench_config();
    size_t P = getenv("FLCACHE_BENCH_P") ? strtoull(getenv("FLCACHE_BENCH_P"), NULL, 10)
                                         : 1000000;
    const char *ks = getenv("FLCACHE_BENCH_KS") ? getenv("FLCACHE_BENCH_KS") : "10,100,1000";
    int reps = bench_reps(3);
    long n_env = getenv("FLCACHE_BENCH_N") ? atol(getenv("FLCACHE_BENCH_N")) : 0;
    int rounds_env = getenv("FLCACHE_BENCH_ROUNDS") ? atoi(getenv("FLCACHE_BENCH_ROUNDS")) : 0;
    flc_err_t e = {0};
    flc_embed_t *srv = flc_embed_start(NULL, &e);
    if (srv == NULL) {
        fprintf(stderr, "simulate: %s\n", flc_err_msg(&e));
        return 1;
    }
    const char *url = flc_embed_url(srv);
    flc_sim_inproc_t threads = {.threads = 2, .store_opts = bench_store_opts()};
    int rc = 0;
    char list[256];
    snprintf(list, sizeof list, "%s", ks);
    for (char *tok = strtok(list, ","); tok && rc == 0; tok = strtok(NULL, ",")) {
        int K = atoi(tok);
        if (K < 1)
            continue;
        double base = fold_rate(P, K);
        cJSON *b = bench_line("simulate", "memory-fold");
        cJSON_AddNumberToObject(b, "K", K);
        cJSON_AddNumberToObject(b, "params", (double)P);
        cJSON_AddNumberToObject(b, "updates_per_s", base);
        cJSON_AddNumberToObject(b, "ratio", 1.0);
        bench_emit(b);

        flc_sim_cfg_t c;
        flc_sim_cfg_init(&c);
        char job[32];
        snprintf(job, sizeof job, "bench-k%d", K);
        c.job = job;
        c.clients = n_env > 0 ? (int)n_env : K * 10;
        c.per_round = K;
        c.rounds = rounds_env > 0 ? rounds_env : K >= 1000 ? 1 : reps;
        c.synthetic_params = P;
        c.keep_updates = 0;
        c.redis = url;
        c.store_opts = bench_store_opts();
        timed_inv_t timed = {.in = &threads};
        c.invoke = invoke_timed;
        c.invoke_user = &timed;
        /* With FLCACHE_COLD the driver spills by FLCACHE_POLICY, as in
         * `flcache simulate`. */
        flc_policy_t *policy = flc_config_policy(flc_config_program(), &e);
        if (policy == NULL && e.code != FLC_OK) {
            fprintf(stderr, "simulate: %s\n", flc_err_msg(&e));
            rc = 1;
            break;
        }
        c.policy = policy;
        reset_peak();
        flc_sim_result_t res;
        int run_rc = flc_sim_run(&c, NULL, NULL, &res, &e);
        flc_pol_free(policy);
        if (run_rc != 0) {
            fprintf(stderr, "simulate: K=%d: %s\n", K, flc_err_msg(&e));
            rc = 1;
            break;
        }
        double round_ms = 0, merge_ms = 0, clients_ms = 0;
        size_t parts = 0;
        for (size_t i = 0; i < res.nrounds; i++) {
            round_ms += res.rounds[i].round_ms;
            merge_ms += res.rounds[i].merge_ms;
            clients_ms += res.rounds[i].clients_ms;
            parts += res.rounds[i].participants;
        }
        cJSON *o = bench_line("simulate", "round");
        cJSON_AddNumberToObject(o, "K", K);
        cJSON_AddNumberToObject(o, "N", c.clients);
        cJSON_AddNumberToObject(o, "params", (double)P);
        cJSON_AddStringToObject(o, "rule", "fedavg");
        cJSON_AddNumberToObject(o, "rounds", (double)res.nrounds);
        cJSON_AddNumberToObject(o, "participants", (double)parts);
        cJSON_AddNumberToObject(o, "round_ms", round_ms / (double)res.nrounds);
        cJSON_AddNumberToObject(o, "updates_per_s", parts / (round_ms / 1000));
        cJSON_AddNumberToObject(o, "merge_updates_per_s", parts / (merge_ms / 1000));
        double nr = (double)res.nrounds;
        cJSON_AddNumberToObject(o, "clients_ms", clients_ms / nr);
        cJSON_AddNumberToObject(o, "merge_ms", merge_ms / nr);
        cJSON_AddNumberToObject(o, "client_compute_ms", timed.compute_ms / nr);
        cJSON_AddNumberToObject(o, "client_store_ms", timed.comm_ms / nr);
        cJSON_AddNumberToObject(o, "gb_moved_per_round",
                                (double)res.bytes / (double)res.nrounds / 1e9);
        cJSON_AddNumberToObject(o, "peak_rss_mb", peak_rss_mb());
        cJSON_AddNumberToObject(o, "redis_peak_mb", redis_peak_mb(url));
        cJSON_AddNumberToObject(o, "ratio", parts / (round_ms / 1000) / base);
        bench_emit(o);
        flc_sim_result_free(&res);
        flc_sim_clear(url, bench_store_opts(), job, &e);
    }
    flc_embed_stop(srv);
    return rc;
}
