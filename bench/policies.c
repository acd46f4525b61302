/* bench/policies: each caching policy side by side on the same mixed query
 * trace over a job larger than the cache.
 *
 * For each policy a fresh redis-server gets maxmemory = its empty footprint
 * + 10% of the job's bytes, and a fresh cold tier (file:// in /tmp, or
 * $FLCACHE_COLD for a real object store). The job is written round by round
 * (clients' updates, then the merged model, which closes the round); after
 * each round the trace asks, in a seeded random order:
 *   2 round queries on the newest round      (clustering, outliers)
 *   1 round query on a random older round    with probability 0.3 (debugging)
 *   3 client queries, client history over every round so far; 70% of them
 *     about a few "watched" clients, the rest about any client
 *   1 aggregate query, merged models of the last 10 rounds (history)
 * Each query is timed as a whole (all its reads). One JSON line per policy:
 * hit rate (all reads and per query class), p50/p99 query latency, cold-tier
 * bytes read and requests, spills, and an estimated monthly cost from
 * bench/prices.json (cache GB-hours + object-store requests, transfer and
 * storage); ratios are to lru measured in the same run. A text table goes
 * to stderr.
 *
 * Usage: bench/policies [prices.json] [--quick]
 *   FLCACHE_BENCH_ROUNDS (30), FLCACHE_BENCH_CLIENTS (40), FLCACHE_BENCH_FLOATS
 *   (16384 floats = 64 KB per update), FLCACHE_BENCH_FSYNC=1 to fsync spills. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "bench/bench_util.h"
#include "cli/config.h"
#include "cache/embed.h"
#include "cache/store.h"
#include "policies/policy.h"

#define JOB "benchjob"
#define WATCHED 2

typedef struct prices {
    double cache_gb_hour, put_1000, get_1000, gb_month, transfer_gb, replays;
    char source[300];
} prices_t;

typedef struct result {
    char policy[32];
    double hit, hit_qc[FLC_QC_COUNT], p50, p99, cost, cost_cache, cost_store;
    uint64_t cold_bytes_read, cold_gets, cold_puts, spills, reads, rewarms, prefetches;
    uint64_t peak_used, maxmem;
} result_t;

static int env_int(const char *name, int def)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : def;
}

static void die(const char *what, const char *msg)
{
    bench_die("bench/policies", what, msg);
}

static void load_prices(prices_t *p, const char *path)
{
    *p = (prices_t){0.125, 0.005, 0.0004, 0.023, 0.0, 720, "built-in defaults"};
    const char *tries[] = {path, getenv("FLCACHE_PRICES"), "bench/prices.json",
                           "../bench/prices.json", "../../bench/prices.json"};
    for (size_t i = 0; i < sizeof tries / sizeof *tries; i++) {
        if (tries[i] == NULL)
            continue;
        FILE *f = fopen(tries[i], "rb");
        if (f == NULL)
            continue;
        char buf[8192];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        cJSON *j = cJSON_Parse(buf);
        if (j == NULL)
            die(tries[i], "not valid JSON");
        struct { const char *k; double *v; } f2[] = {
            {"cache_gb_hour", &p->cache_gb_hour}, {"s3_put_per_1000", &p->put_1000},
            {"s3_get_per_1000", &p->get_1000},   {"s3_gb_month", &p->gb_month},
            {"s3_transfer_gb", &p->transfer_gb}, {"replays_per_month", &p->replays}};
        for (size_t k = 0; k < sizeof f2 / sizeof *f2; k++) {
            cJSON *x = cJSON_GetObjectItemCaseSensitive(j, f2[k].k);
            if (cJSON_IsNumber(x))
                *f2[k].v = x->valuedouble;
        }
        cJSON_Delete(j);
        snprintf(p->source, sizeof p->source, "%s", tries[i]);
        return;
    }
}

/* A small seeded generator, so every policy replays the same trace. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static double ms_since(uint64_t t0)
{
    return (double)(flc_now_ns() - t0) / 1e6;
}

static void read_update(flc_store_t *s, uint32_t r, int c, float *buf, size_t cap)
{
    char cl[16];
    snprintf(cl, sizeof cl, "c%d", c);
    flc_shard_t out;
    if (flc_store_get_update(s, JOB, r, 0, cl, &out, buf, cap) != FLC_OK)
        die("read", flc_store_errstr(s));
}

static void run(const char *spec, int rounds, int clients, size_t floats, const prices_t *pr,
                result_t *res)
{
    memset(res, 0, sizeof *res);
    snprintf(res->policy, sizeof res->policy, "%s", spec);
    uint64_t upd_bytes = floats * sizeof(float) + 100;
    uint64_t job_bytes = (uint64_t)rounds * (clients + 1) * upd_bytes;

    /* Measure the empty footprint, then give Redis 10% of the job on top. */
    flc_err_t err;
    flc_embed_t *probe = flc_embed_start(NULL, &err);
    if (probe == NULL)
        die("redis-server", err.msg);
    flc_store_t *ps = flc_store_open(flc_embed_url(probe), NULL, &err);
    flc_store_stats_t st;
    if (ps == NULL || flc_store_stats(ps, &st) != FLC_OK)
        die("probe", ps ? flc_store_errstr(ps) : err.msg);
    flc_store_close(ps);
    flc_embed_stop(probe);
    uint64_t maxmem = st.used_memory + job_bytes / 10;
    flc_embed_opts_t eo = {.maxmemory = maxmem};
    flc_embed_t *srv = flc_embed_start(&eo, &err);
    if (srv == NULL)
        die("redis-server", err.msg);
    flc_store_t *s = flc_store_open(flc_embed_url(srv), NULL, &err);
    if (s == NULL)
        die("store", err.msg);

    char dir[] = "/tmp/flc-bench-cold-XXXXXX";
    if (mkdtemp(dir) == NULL)
        die("mkdtemp", "failed");
    char url[128];
    snprintf(url, sizeof url, "file://%s", dir);
    const char *cold_url = flc_config_program()->cold ? flc_config_program()->cold : url;
    flc_cold_opts_t co;
    flc_config_cold_opts(flc_config_program(), &co); /* S3 bucket, region, keys */
    co.no_fsync = !env_int("FLCACHE_BENCH_FSYNC", 0);
    co.create_bucket = 1;
    flc_cold_t *cold = flc_cold_open(cold_url, &co, &err);
    if (cold == NULL)
        die("cold tier", err.msg);
    flc_policy_t *pol = flc_pol_new(spec, &err);
    if (pol == NULL)
        die("policy", err.msg);
    if (flc_store_attach_tier(s, cold, pol, NULL) != FLC_OK)
        die("attach", flc_store_errstr(s));

    float *v = malloc(floats * sizeof(float)), *buf = malloc(floats * sizeof(float));
    for (size_t i = 0; i < floats; i++)
        v[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    size_t qcap = (size_t)rounds * 8 + 16, nq = 0;
    double *lat = malloc(qcap * sizeof *lat);
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    for (int r = 1; r <= rounds; r++) {
        flc_store_set_query_class(s, FLC_QC_OTHER);
        flc_shard_t sh = {.round = (uint32_t)r, .num_shards = 1, .count = floats,
                          .model_size = floats, .weight = 1, .values = v};
        snprintf(sh.job, sizeof sh.job, JOB);
        for (int c = 0; c < clients; c++) {
            snprintf(sh.client, sizeof sh.client, "c%d", c);
            v[0] = (float)(r * 1000 + c);
            if (flc_store_put_update(s, &sh) != FLC_OK)
                die("put", flc_store_errstr(s));
        }
        sh.client[0] = '\0';
        if (flc_store_put_merged(s, &sh) != FLC_OK)
            die("put merged", flc_store_errstr(s));
        flc_store_stats(s, &st);
        res->peak_used = st.used_memory > res->peak_used ? st.used_memory : res->peak_used;

        /* The queries of this round, shuffled. */
        int kinds[8], nk = 0;
        kinds[nk++] = FLC_QC_ROUND;
        kinds[nk++] = FLC_QC_ROUND;
        if (r > 1 && rng_next(&seed) % 10 < 3)
            kinds[nk++] = -FLC_QC_ROUND; /* an older round */
        for (int i = 0; i < 3; i++)
            kinds[nk++] = FLC_QC_CLIENT;
        kinds[nk++] = FLC_QC_AGGREGATE;
        for (int i = nk - 1; i > 0; i--) {
            int j = (int)(rng_next(&seed) % (uint64_t)(i + 1)), t = kinds[i];
            kinds[i] = kinds[j];
            kinds[j] = t;
        }
        for (int q = 0; q < nk; q++) {
            uint64_t t0 = flc_now_ns();
            int k = kinds[q];
            if (k == FLC_QC_ROUND || k == -FLC_QC_ROUND) {
                flc_store_set_query_class(s, FLC_QC_ROUND);
                uint32_t rr = k > 0 ? (uint32_t)r : 1 + (uint32_t)(rng_next(&seed) % (uint64_t)(r - 1));
                for (int c = 0; c < clients; c++)
                    read_update(s, rr, c, buf, floats);
            } else if (k == FLC_QC_CLIENT) {
                flc_store_set_query_class(s, FLC_QC_CLIENT);
                int c = rng_next(&seed) % 10 < 7 ? 1 + (int)(rng_next(&seed) % WATCHED)
                                                 : (int)(rng_next(&seed) % (uint64_t)clients);
                for (int rr = 1; rr <= r; rr++)
                    read_update(s, (uint32_t)rr, c, buf, floats);
            } else {
                flc_store_set_query_class(s, FLC_QC_AGGREGATE);
                for (int rr = r > 10 ? r - 9 : 1; rr <= r; rr++) {
                    flc_shard_t out;
                    if (flc_store_get_merged(s, JOB, (uint32_t)rr, 0, &out, buf, floats) != FLC_OK)
                        die("read merged", flc_store_errstr(s));
                }
            }
            if (nq < qcap)
                lat[nq++] = ms_since(t0);
        }
    }
    flc_tier_stats_t ts;
    flc_store_tier_stats(s, &ts);
    flc_cold_stats_t cs;
    flc_cold_get_stats(cold, &cs);
    uint64_t hits = 0, misses = 0;
    for (int q = 1; q < FLC_QC_COUNT; q++) {
        hits += ts.hits[q];
        misses += ts.misses[q];
        res->hit_qc[q] = ts.hits[q] + ts.misses[q]
                             ? (double)ts.hits[q] / (double)(ts.hits[q] + ts.misses[q]) : 0;
    }
    res->reads = hits + misses;
    res->hit = res->reads ? (double)hits / (double)res->reads : 0;
    res->p50 = bench_percentile(lat, nq, 50);
    res->p99 = bench_percentile(lat, nq, 99);
    res->cold_bytes_read = cs.bytes_got;
    res->cold_gets = cs.gets;
    res->cold_puts = cs.puts;
    res->spills = ts.spills;
    res->rewarms = ts.rewarms;
    res->prefetches = ts.prefetches;
    res->maxmem = maxmem;
    /* Monthly: the cache all month, the trace's object-store traffic
     * replays_per_month times, and what it leaves stored. */
    double gb = 1024.0 * 1024.0 * 1024.0;
    res->cost_cache = (double)maxmem / gb * pr->cache_gb_hour * 730.0;
    res->cost_store = pr->replays * ((double)cs.puts / 1000.0 * pr->put_1000 +
                                     (double)cs.gets / 1000.0 * pr->get_1000 +
                                     (double)cs.bytes_got / gb * pr->transfer_gb) +
                      (double)ts.spill_bytes / gb * pr->gb_month;
    res->cost = res->cost_cache + res->cost_store;

    free(lat);
    free(v);
    free(buf);
    flc_store_close(s);
    flc_pol_free(pol);
    flc_cold_close(cold);
    flc_embed_stop(srv);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench/policies: could not remove %s\n", dir);
}

int main(int argc, char **argv)
{
    bench_config();
    signal(SIGPIPE, SIG_IGN);
    const char *prices_path = NULL;
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else
            prices_path = argv[i];
    }
    prices_t pr;
    load_prices(&pr, prices_path);
    int rounds = env_int("FLCACHE_BENCH_ROUNDS", quick ? 12 : 30);
    int clients = env_int("FLCACHE_BENCH_CLIENTS", quick ? 20 : 40);
    size_t floats = (size_t)env_int("FLCACHE_BENCH_FLOATS", 16384);
    const char *specs[] = {"lru", "window:3", "workload"};
    result_t res[3];
    for (int i = 0; i < 3; i++)
        run(specs[i], rounds, clients, floats, &pr, &res[i]);
    double job_mb = (double)rounds * (clients + 1) * (double)floats * 4 / 1048576.0;
    fprintf(stderr, "\nbench/policies: job %.1f MB (%d rounds x %d clients x %zu KB), cache 10%% "
            "(maxmemory %.1f MB), prices: %s\n", job_mb, rounds, clients, floats * 4 / 1024,
            (double)res[0].maxmem / 1048576.0, pr.source);
    fprintf(stderr, "%-10s %7s %7s %7s %7s %9s %9s %10s %8s %8s %11s\n", "policy", "hit%",
            "round%", "client%", "aggr%", "p50 ms", "p99 ms", "cold MB rd", "cold gets",
            "spills", "USD/month");
    for (int i = 0; i < 3; i++) {
        result_t *r = &res[i];
        fprintf(stderr, "%-10s %7.1f %7.1f %7.1f %7.1f %9.3f %9.3f %10.1f %8llu %8llu %11.2f\n",
                r->policy, 100 * r->hit, 100 * r->hit_qc[FLC_QC_ROUND],
                100 * r->hit_qc[FLC_QC_CLIENT], 100 * r->hit_qc[FLC_QC_AGGREGATE], r->p50, r->p99,
                (double)r->cold_bytes_read / 1048576.0, (unsigned long long)r->cold_gets,
                (unsigned long long)r->spills, r->cost);
        cJSON *j = bench_line("policies", r->policy);
        cJSON_AddNumberToObject(j, "rounds", rounds);
        cJSON_AddNumberToObject(j, "clients", clients);
        cJSON_AddNumberToObject(j, "update_bytes", (double)floats * 4);
        cJSON_AddNumberToObject(j, "job_bytes", job_mb * 1048576.0);
        cJSON_AddNumberToObject(j, "maxmemory", (double)r->maxmem);
        cJSON_AddNumberToObject(j, "peak_used_memory", (double)r->peak_used);
        cJSON_AddNumberToObject(j, "reads", (double)r->reads);
        cJSON_AddNumberToObject(j, "hit_rate", r->hit);
        cJSON_AddNumberToObject(j, "hit_rate_round", r->hit_qc[FLC_QC_ROUND]);
        cJSON_AddNumberToObject(j, "hit_rate_client", r->hit_qc[FLC_QC_CLIENT]);
        cJSON_AddNumberToObject(j, "hit_rate_aggregate", r->hit_qc[FLC_QC_AGGREGATE]);
        cJSON_AddNumberToObject(j, "p50_ms", r->p50);
        cJSON_AddNumberToObject(j, "p99_ms", r->p99);
        cJSON_AddNumberToObject(j, "cold_bytes_read", (double)r->cold_bytes_read);
        cJSON_AddNumberToObject(j, "cold_gets", (double)r->cold_gets);
        cJSON_AddNumberToObject(j, "cold_puts", (double)r->cold_puts);
        cJSON_AddNumberToObject(j, "spills", (double)r->spills);
        cJSON_AddNumberToObject(j, "rewarms", (double)r->rewarms);
        cJSON_AddNumberToObject(j, "prefetches", (double)r->prefetches);
        cJSON_AddNumberToObject(j, "monthly_usd", r->cost);
        cJSON_AddNumberToObject(j, "monthly_usd_cache", r->cost_cache);
        cJSON_AddNumberToObject(j, "monthly_usd_object_store", r->cost_store);
        cJSON_AddNumberToObject(j, "hit_rate_minus_lru", r->hit - res[0].hit);
        cJSON_AddNumberToObject(j, "p99_ratio_to_lru", res[0].p99 > 0 ? r->p99 / res[0].p99 : 0);
        bench_emit(j);
    }
    return 0;
}
