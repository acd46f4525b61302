/* `flcache aggregate`: runs the C mergers of one round of a job whose
 * contributors are outside flcache (the Python package python/flcache, a
 * PyTorch client, any program that writes the shard frames of
 * docs/protocol.md).
 *
 * One thread per shard runs flc_rs_merger_run, the merge code the
 * simulation's merger threads and the `aggregator` function run, each on its
 * own store (a store is one connection). The command writes the round's
 * indexes and roster, waits for the expected clients' arrivals (BLPOP, no
 * polling) until all arrived or the deadline, writes the merged shards, the
 * RoundMeta and the done tokens readers wait on, and optionally the Gram
 * partials queries read. It prints one JSON report per round on stdout.
 *
 * Why a command and not a long-lived server: the caller (a training script)
 * knows which clients it sampled for a round; starting the mergers with that
 * roster is one line, and a round's mergers hold nothing worth keeping
 * between rounds for the stateless rules (server optimizers keep their state
 * in the cache, fl:{T}:opt). The cache must be a real one (FLCACHE_REDIS):
 * a private server would vanish with the command. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aggregator/reduce_scatter.h"
#include "base/clock.h"
#include "cli/cli.h"
#include "cli/opt.h"

typedef struct agg_opts {
    const char *job;
    long long round;
    const char *expect;     /* comma-separated client names */
    long long shards;
    long long model_size;
    const char *rule;
    long long deadline_ms;
    long long readers;
    int derive_stats;
} agg_opts_t;

static const flc_opt_t options[] = {
    {.name = "job", .type = FLC_OPT_STR, .meta = "J", FLC_OPT_AT(agg_opts_t, job),
     .flags = FLC_OPT_REQUIRED, .help = "the job (required)"},
    {.name = "round", .type = FLC_OPT_INT, .meta = "R", FLC_OPT_AT(agg_opts_t, round),
     .imin = 1, .imax = 4294967295LL, .def = "", .flags = FLC_OPT_REQUIRED,
     .help = "the round to merge (required)"},
    {.name = "expect", .type = FLC_OPT_STR, .meta = "C1,C2,...",
     FLC_OPT_AT(agg_opts_t, expect), .flags = FLC_OPT_REQUIRED,
     .help = "the round's expected clients, comma-separated (required)"},
    {.name = "model-size", .type = FLC_OPT_INT, .meta = "N",
     FLC_OPT_AT(agg_opts_t, model_size), .imin = 1, .imax = 9000000000000000LL,
     .def = "", .flags = FLC_OPT_REQUIRED, .help = "floats in the flat model (required)"},
    {.name = "shards", .type = FLC_OPT_INT, .meta = "S", FLC_OPT_AT(agg_opts_t, shards),
     .imin = 1, .imax = 65536, .help = "shards of the job (one merger thread each)"},
    {.name = "rule", .type = FLC_OPT_STR, .meta = "RULE", FLC_OPT_AT(agg_opts_t, rule),
     .help = "merge rule, e.g. fedavg, median, trimmed-mean:trim=0.2"},
    {.name = "deadline-ms", .type = FLC_OPT_INT, .meta = "MS",
     FLC_OPT_AT(agg_opts_t, deadline_ms), .imin = 1, .imax = 86400000,
     .help = "merge who arrived after this long"},
    {.name = "readers", .type = FLC_OPT_INT, .meta = "N", FLC_OPT_AT(agg_opts_t, readers),
     .imin = 0, .imax = 1000000, .def = "the expected clients",
     .help = "done tokens per shard: one per pull_model that will read the round"},
    {.name = "derive-stats", .type = FLC_OPT_FLAG, FLC_OPT_AT(agg_opts_t, derive_stats),
     .help = "cache each shard's Gram partial for queries after the merge"},
    {0},
};

static const flc_opt_cmd_t agg_cmd = {
    .prog = "flcache aggregate",
    .synopsis = "--job J --round R --expect C1,C2,... --model-size N [options]",
    .about =
        "Runs the mergers of one round of a job whose clients push from outside\n"
        "flcache (python/flcache, docs/protocol.md): one thread per shard waits for\n"
        "the expected clients' arrivals, merges them with the rule, writes the\n"
        "merged model, the round's metadata and the done tokens pull_model waits on.\n"
        "Start it before or after the clients push; it returns when the round is\n"
        "merged and prints the round's report as JSON.\n",
    .epilog = "The cache is FLCACHE_REDIS, which must be set (see `flcache --help`).\n"
              "exit codes: 0 merged, 1 runtime error (no update merged, cache), 2 usage\n",
    .opts = options,
};

typedef struct merger_job {
    flc_rs_merger_cfg_t cfg;
    const flc_store_cfg_t *sc;
    flc_rs_report_t rep;
    flc_err_t err;
    int rc, have_rep;
} merger_job_t;

static void *merger_main(void *arg)
{
    merger_job_t *m = arg;
    flc_store_t *s = flc_store_open_cfg(m->sc, NULL, &m->err);
    if (s == NULL) {
        m->rc = m->err.code ? m->err.code : FLC_ECONN;
        return NULL;
    }
    m->rc = flc_rs_merger_run(s, &m->cfg, &m->rep, &m->err);
    m->have_rep = 1;
    flc_store_close(s);
    return NULL;
}

/* Splits the comma list into names (new array of new strings in *out). */
static int split_names(const char *list, char ***out, size_t *n)
{
    size_t cap = 1;
    for (const char *p = list; *p; p++)
        cap += *p == ',';
    char **v = calloc(cap, sizeof *v);
    char *copy = strdup(list);
    if (v == NULL || copy == NULL) {
        free(v), free(copy);
        return FLC_ENOMEM;
    }
    size_t k = 0;
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (*t)
            v[k++] = strdup(t);
    free(copy);
    *out = v;
    *n = k;
    return FLC_OK;
}

static cJSON *names_json(const flc_strlist_t *l)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < l->n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(l->items[i]));
    return a;
}

static cJSON *report_json(const merger_job_t *m)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "shard", m->cfg.shard);
    if (m->rc != FLC_OK)
        cJSON_AddStringToObject(o, "error", m->err.msg);
    if (m->have_rep && m->rc == FLC_OK) {
        cJSON_AddItemToObject(o, "participants", names_json(&m->rep.participants));
        cJSON_AddItemToObject(o, "missing", names_json(&m->rep.missing));
        cJSON_AddItemToObject(o, "rejected", names_json(&m->rep.rejected));
        cJSON_AddNumberToObject(o, "duplicates", (double)m->rep.duplicates);
        cJSON_AddNumberToObject(o, "bytes_read", (double)m->rep.bytes_read);
        cJSON_AddNumberToObject(o, "wait_ms", m->rep.wait_ms);
        cJSON_AddNumberToObject(o, "merge_ms", m->rep.merge_ms);
    }
    return o;
}

int flc_cmd_aggregate(int argc, char **argv)
{
    agg_opts_t o = {.shards = 1, .rule = "fedavg", .deadline_ms = 60000};
    int rc;
    if (!flc_opt_parse(&agg_cmd, argc, argv, &o, sizeof o, &rc))
        return rc;
    const flc_config_t *pc = flc_config_program();
    if (pc->redis == NULL || pc->redis[0] == '\0') {
        flc_cli_error("aggregate", "FLCACHE_REDIS is not set: the clients and the mergers "
                                   "must share a cache (start one with `flcache up`)");
        return FLC_EXIT_USAGE;
    }
    if (o.model_size < o.shards)
        return flc_opt_usage_error(&agg_cmd, "a model of %lld floats cannot be split into "
                                   "%lld shards", o.model_size, o.shards);
    flc_err_t e = {0};
    flc_merge_rule_t rule;
    if (flc_merge_rule_parse(&rule, o.rule, &e) != FLC_OK)
        return flc_opt_usage_error(&agg_cmd, "--rule: %s", e.msg);
    char **names = NULL;
    size_t nn = 0;
    if (split_names(o.expect, &names, &nn) != FLC_OK) {
        flc_cli_error("aggregate", "out of memory");
        return FLC_EXIT_RUNTIME;
    }
    for (size_t i = 0; i < nn; i++)
        if (flc_name_check(names[i], "client", &e) != FLC_OK) {
            rc = flc_opt_usage_error(&agg_cmd, "--expect: %s", e.msg);
            goto out;
        }
    if (nn == 0) {
        rc = flc_opt_usage_error(&agg_cmd, "--expect names no client");
        goto out;
    }
    if (flc_name_check_job(o.job, &e) != FLC_OK) {
        rc = flc_opt_usage_error(&agg_cmd, "--job: %s", e.msg);
        goto out;
    }

    flc_store_cfg_t sc;
    flc_cold_opts_t cold;
    flc_config_store_cfg(pc, &sc, &cold);
    size_t S = (size_t)o.shards;
    merger_job_t *jobs = calloc(S, sizeof *jobs);
    pthread_t *th = calloc(S, sizeof *th);
    if (jobs == NULL || th == NULL) {
        free(jobs), free(th);
        flc_cli_error("aggregate", "out of memory");
        rc = FLC_EXIT_RUNTIME;
        goto out;
    }
    uint64_t t0 = flc_now_ns();
    for (size_t k = 0; k < S; k++) {
        jobs[k].sc = &sc;
        jobs[k].cfg = (flc_rs_merger_cfg_t){
            .job = o.job, .round = (uint32_t)o.round, .shard = (uint32_t)k,
            .num_shards = (uint32_t)S, .model_size = (uint64_t)o.model_size, .rule = rule,
            .expected = (const char *const *)names, .n_expected = nn,
            .deadline_ms = (unsigned)o.deadline_ms, .readers = (unsigned)o.readers,
            .derive_stats = o.derive_stats};
        if (pthread_create(&th[k], NULL, merger_main, &jobs[k]) != 0) {
            jobs[k].rc = flc_err_set(&jobs[k].err, FLC_ENOMEM, "cannot start merger thread");
            th[k] = 0;
        }
    }
    int failed = 0;
    cJSON *shards = cJSON_CreateArray();
    for (size_t k = 0; k < S; k++) {
        if (th[k])
            pthread_join(th[k], NULL);
        if (jobs[k].rc != FLC_OK) {
            flc_cli_error("aggregate", "shard %zu: %s", k, jobs[k].err.msg);
            failed = 1;
        }
        cJSON_AddItemToArray(shards, report_json(&jobs[k]));
        if (jobs[k].have_rep)
            flc_rs_report_free(&jobs[k].rep);
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "job", o.job);
    cJSON_AddNumberToObject(out, "round", (double)o.round);
    cJSON_AddStringToObject(out, "rule", o.rule);
    cJSON_AddNumberToObject(out, "elapsed_ms", (double)(flc_now_ns() - t0) / 1e6);
    cJSON_AddItemToObject(out, "shards", shards);
    flc_cli_print_json(out, 0);
    cJSON_Delete(out);
    free(jobs);
    free(th);
    rc = failed ? FLC_EXIT_RUNTIME : FLC_EXIT_OK;
out:
    for (size_t i = 0; i < nn; i++)
        free(names[i]);
    free(names);
    return rc;
}
