/* `flcache simulate`: federated learning with many simulated clients.
 *
 * Builds the simulation config from the options, runs each sampled client
 * as a `client` function on the local platform (runtime/pool.h; or as
 * threads of this process with --inproc), and drives the rounds with
 * clients/sim.h: a progress line per round on stderr, then a final table
 * (or one JSON object with --json). Every round's record stays in the cache
 * under the job name. Exit 0 when every round ran, 1 on a runtime error, 2
 * on a usage error. This file runs it; the options and --help are in
 * cmd_simulate_opts.c, the progress lines and tables in
 * cmd_simulate_report.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aggregator/query.h"
#include "cache/store_ops.h"
#include "cli/cli.h"
#include "cli/cmd_simulate.h"
#include "cli/place.h"
#include "cli/resume_args.h"
#include "cli/sim_pool.h"
#include "policies/policy.h"
#include "runtime/pool.h"

/* FLCACHE_NODES, parsed once (*out NULL when unset: nothing is placed).
 * On a cluster every master that serves slots must be in the map, or its
 * shards' mergers could not be placed: that is an error before the first
 * round, naming the node. Prints the error and returns FLC_EXIT_RUNTIME. */
static int nodes_open(const flc_config_t *cfg, flc_store_t *s, flc_cli_nodes_t **out)
{
    flc_err_t e = {0};
    if (flc_cli_nodes_parse(cfg->nodes, out, &e) != FLC_OK) {
        flc_cli_error("simulate", "%s", flc_err_msg(&e));
        return FLC_EXIT_RUNTIME;
    }
    if (*out == NULL)
        return FLC_EXIT_OK;
    flc_store_node_t *v = NULL;
    size_t n = 0;
    if (flc_store_nodes(s, &v, &n) != FLC_OK) {
        flc_cli_error("simulate", "FLCACHE_NODES: cannot list the cache's nodes: %s",
                      flc_store_errstr(s));
        flc_cli_nodes_free(*out);
        *out = NULL;
        return FLC_EXIT_RUNTIME;
    }
    int rc = FLC_EXIT_OK;
    for (size_t i = 0; i < n && rc == FLC_EXIT_OK; i++) {
        const char *ns, *sock;
        if (strcmp(v[i].role, "master") == 0 && v[i].nslots > 0 &&
            flc_cli_nodes_find(*out, v[i].addr, &ns, &sock) != FLC_OK) {
            flc_cli_error("simulate", "node %s (a master, slots %s) is not in FLCACHE_NODES: "
                          "the mergers of its shards cannot be placed next to it",
                          v[i].addr, v[i].slots);
            rc = FLC_EXIT_RUNTIME;
        }
    }
    free(v);
    if (rc != FLC_EXIT_OK) {
        flc_cli_nodes_free(*out);
        *out = NULL;
    }
    return rc;
}

int flc_cmd_simulate(int argc, char **argv)
{
    flc_simulate_opts_t o;
    memset(&o, 0, sizeof o);
    int rc;
    if (!flc_simulate_parse(argc, argv, &o, &rc))
        return rc;
    const flc_config_t *cfg = flc_config_program();
    flc_cli_conn_t conn;
    if ((rc = flc_cli_connect(&conn, cfg, NULL)) != FLC_EXIT_OK)
        return rc;
    /* The driver's, mergers' and in-process clients' stores: the
     * configuration's chunk and cold tier (FLCACHE_CHUNK, FLCACHE_COLD). */
    flc_store_opts_t so;
    flc_cold_opts_t cold;
    flc_config_store_opts(cfg, &so, &cold);
    /* --resume: the job's own arguments first (clients/sim_resume.c keeps
     * them in its checkpoint), this run's after them. */
    char **argv2 = NULL, *stored = NULL, *argj = NULL;
    void *keep = NULL;
    int argc2 = argc;
    if (o.resume != NULL) {
        flc_err_t re = {0};
        uint32_t last = 0;
        char job[64];
        snprintf(job, sizeof job, "%s", o.resume);
        if (flc_sim_resume_args(conn.url, &so, job, &stored, &last, &re) != FLC_OK) {
            flc_cli_error("simulate", "cannot resume: %s", flc_err_msg(&re));
            flc_cli_disconnect(&conn);
            return FLC_EXIT_RUNTIME;
        }
        if (flc_cli_resume_argv(stored, argc, argv, &argc2, &argv2, &keep) != 0) {
            flc_cli_error("simulate", "job %s's checkpoint holds no argument list", job);
            rc = FLC_EXIT_RUNTIME;
        }
        memset(&o, 0, sizeof o);
        if (rc != FLC_EXIT_OK || !flc_simulate_parse(argc2, argv2, &o, &rc)) {
            flc_cli_resume_free(argv2, keep), free(stored);
            flc_cli_disconnect(&conn);
            return rc;
        }
        snprintf(o.job, sizeof o.job, "%s", job);
        o.c.job = o.job;
        o.c.resume = 1;
        fprintf(stderr, "flcache simulate: resuming job %s after round %u, its last closed "
                "round, up to round %d\n", o.c.job, last, o.c.rounds);
    }
    o.c.resume_args = argj = flc_cli_resume_json(argv2 ? argc2 : argc, argv2 ? argv2 : argv);
    /* The mergers are threads of this process; their statistics read
     * within this budget (aggregator/query.h), set before they start. */
    flc_query_mem_budget_set((size_t)o.memory_budget_mb << 20);
    so.ttl_ms = o.ttl_ms; /* --ttl: what this process writes carries it at once */
    o.c.redis = conn.url;
    o.c.store_opts = &so;
    flc_cli_nodes_t *nodes = NULL;
    if ((rc = nodes_open(cfg, conn.store, &nodes)) != FLC_EXIT_OK) {
        flc_cli_disconnect(&conn);
        flc_cli_resume_free(argv2, keep), free(stored), free(argj);
        return rc;
    }
    o.c.place = flc_cli_place(nodes); /* mergers next to their shard's node */
    flc_err_t e = {0};
    /* With a cold tier the driver keeps Redis under maxmemory, spilling by
     * FLCACHE_POLICY (default: workload, which learns from the queries). */
    flc_policy_t *policy = flc_config_policy(cfg, &e);
    if (policy == NULL && e.code != FLC_OK) {
        flc_cli_error("simulate", "%s", flc_err_msg(&e));
        flc_cli_nodes_free(nodes);
        flc_cli_disconnect(&conn);
        flc_cli_resume_free(argv2, keep), free(stored), free(argj);
        return FLC_EXIT_RUNTIME;
    }
    o.c.policy = policy;
    flc_pool_t *pool = NULL;
    flc_sim_inproc_t inproc = {.threads = o.concurrency, .store_opts = &so};
    if (!o.inproc) {
        pool = flc_cli_pool_start("simulate", &conn, o.concurrency, o.memory_mb, o.timeout_s,
                                  o.price);
        if (pool == NULL) {
            flc_pol_free(policy);
            flc_cli_nodes_free(nodes);
            flc_cli_disconnect(&conn);
            flc_cli_resume_free(argv2, keep), free(stored), free(argj);
            return FLC_EXIT_RUNTIME;
        }
        o.c.invoke = flc_sim_pool_invoke;
        o.c.invoke_user = pool;
    } else {
        o.c.invoke = flc_sim_invoke_inproc;
        o.c.invoke_user = &inproc;
    }
    if (!o.c.resume && flc_sim_clear(conn.url, &so, o.c.job, &e) != FLC_OK)
        flc_cli_error("simulate", "cannot clear an earlier run of %s: %s", o.c.job,
                      flc_err_msg(&e));
    flc_sim_result_t res;
    flc_async_result_t ares = {0};
    if (o.a.mode != FLC_ASYNC_MODE_SYNC) {
        rc = flc_async_run(&o.c, &o.a, flc_simulate_progress, &o, &ares, &e);
        res = ares.sim;
    } else {
        rc = flc_sim_run(&o.c, flc_simulate_progress, &o, &res, &e);
    }
    if (rc != FLC_OK)
        flc_cli_error("simulate", "%s", flc_err_msg(&e));
    if (res.nrounds > 0 || rc == FLC_OK) {
        flc_sim_cfg_t shown = o.c;
        flc_sim_cfg_finish(&shown, &e);
        o.c = shown;
        if (o.json) {
            cJSON *j = o.a.mode != FLC_ASYNC_MODE_SYNC ? flc_async_result_json(&o.c, &o.a, &ares)
                                                       : flc_sim_result_json(&o.c, &res);
            cJSON_AddNumberToObject(j, "driver_peak_rss_mb", flc_simulate_peak_mb());
            flc_cli_print_json(j, 0);
            cJSON_Delete(j);
        } else if (o.a.mode != FLC_ASYNC_MODE_SYNC) {
            flc_simulate_async_table(&o, &ares);
        } else {
            flc_simulate_table(&o, &res);
        }
    }
    if (o.a.mode != FLC_ASYNC_MODE_SYNC)
        flc_async_result_free(&ares);
    else
        flc_sim_result_free(&res);
    if (o.ttl_ms && flc_cli_job_ttl("simulate", conn.store, o.c.job, o.ttl_ms) != FLC_EXIT_OK)
        rc = rc == FLC_OK ? FLC_EIO : rc;
    if (rc == FLC_OK)
        flc_cli_report_hint(o.json ? stderr : stdout, &conn, o.c.job);
    flc_pool_free(pool);
    flc_pol_free(policy); /* the run's stores that borrowed it are closed */
    flc_cli_nodes_free(nodes); /* so are the mergers' stores, which borrowed its strings */
    flc_cli_disconnect(&conn);
    flc_cli_resume_free(argv2, keep), free(stored), free(argj);
    return rc == FLC_OK ? FLC_EXIT_OK : FLC_EXIT_RUNTIME;
}
