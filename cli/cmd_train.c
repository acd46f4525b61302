/* `flcache train`: synchronous data-parallel SGD on W worker functions.
 *
 * The driver starts W flcache-fn "worker" invocations on the local platform
 * (runtime/pool.h) at once (they must all run together: every step waits for
 * all of them), follows worker 0's progress records by BLPOP on the job's
 * progress list (workers/sgd_worker.h), and when every worker has returned
 * prints the summary: test accuracy, time per epoch, compute/communication
 * split, cost at the configured memory size, and whether every worker ended
 * with the same model (checksums). Exit 0 only when training succeeded and
 * the models are identical. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/clock.h"
#include "cli/cli.h"
#include "cli/opt.h"
#include "cli/platform.h"
#include "cli/resume_args.h"
#include "cli/rule_opt.h"
#include "cli/train.h"
#include "ml/dataset_idx.h"
#include "ml/model.h"
#include "runtime/cost.h"
#include "runtime/pool.h"
#include "workers/sgd_worker.h"


static const char *const comms[] = {"reduce-scatter", "allreduce-one", "ps", NULL};

/* --comm: the option parser's choice callback (value or -1). */
static int comm_parse(const char *v)
{
    int c;
    return flc_sgd_comm_parse(v, &c) == FLC_OK ? c : -1;
}

/* --ttl DURATION */
static int ttl_parse(const char *v, void *dest, const char **need)
{
    *need = "a duration like 90m, 12h, 7d or 2w";
    flc_train_opts_t *o = dest;
    return flc_cli_duration_ms(v, &o->ttl_ms) == 0 && o->ttl_ms > 0 ? 0 : -1;
}

static const flc_opt_t options[] = {
    {.name = "workers", .type = FLC_OPT_INT, .meta = "W", FLC_OPT_AT(flc_train_opts_t, cfg.workers),
     .imin = 1, .imax = 1024, .help = "worker functions"},
    FLC_OPT_MODEL_OPTIONS(flc_train_opts_t, cfg),
    {.name = "epochs", .type = FLC_OPT_INT, .meta = "E", FLC_OPT_AT(flc_train_opts_t, cfg.epochs),
     .imin = 1, .imax = 100000, .help = "passes over the training set"},
    {.name = "batch", .type = FLC_OPT_INT, .meta = "B", FLC_OPT_AT(flc_train_opts_t, cfg.batch),
     .imin = 1, .imax = 65536, .help = "minibatch per worker (effective: B x W)"},
    {.name = "lr", .type = FLC_OPT_NUM, .meta = "L", FLC_OPT_AT(flc_train_opts_t, cfg.lr),
     .min = 0, .min_open = 1,
     .def = FLC_OPT_STRING(FLC_SGD_LR_SOFTMAX) " for softmax, "
            FLC_OPT_STRING(FLC_SGD_LR_MLP) " for mlp",
     .help = "learning rate"},
    {.name = "init", .type = FLC_OPT_STR, .meta = "FILE", FLC_OPT_AT(flc_train_opts_t, cfg.init),
     .def = "seeded initialization",
     .help = "start from the model in FILE (.npy or .safetensors, as `flcache export` "
             "writes; every worker reads it, so a path they all see)"},
    {.name = "rule", .type = FLC_OPT_STR, .meta = "SPEC", FLC_OPT_AT(flc_train_opts_t, cfg.rule),
     .def = "mean",
     .help = "how the W gradients of a step are merged, as a spec of the README's rule "
             "table (e.g. median, trimmed-mean:trim=0.25, krum:f=1, bulyan)"},
    {.name = "comm", .type = FLC_OPT_CHOICE, .meta = "C", FLC_OPT_AT(flc_train_opts_t, cfg.comm),
     .choices = comms, .parse = comm_parse,
     .help = "reduce-scatter: the model is cut into W shards and worker k merges shard k; "
             "allreduce-one: worker 0 merges the whole gradient; ps: a server process "
             "holds the model, workers push gradients, pull the model"},
    {.name = "ps-addr", .type = FLC_OPT_STR, .meta = "ADDR", FLC_OPT_AT(flc_train_opts_t, ps_addr),
     .def = "unix socket in a new temp dir",
     .help = "--comm ps: where the server listens, unix:PATH or tcp:127.0.0.1:PORT (0: any)"},
    {.name = "shards", .type = FLC_OPT_INT, .meta = "S",
     FLC_OPT_AT(flc_train_opts_t, cfg.num_shards), .imin = 1, .imax = 65536,
     .def = "W; worker k merges the shards s with s % W == k", .help = "reduce-scatter shards"},
    {.name = "ttl", .type = FLC_OPT_CUSTOM, .meta = "DURATION", .custom = ttl_parse,
     .def = "none: kept until `flcache store rm`", .help = FLC_CLI_TTL_HELP},
    {.name = "subset", .type = FLC_OPT_INT, .meta = "N", FLC_OPT_AT(flc_train_opts_t, cfg.subset),
     .imin = 0, .imax = 100000000, .def = "all 60000",
     .help = "train on the first N training samples"},
    {.name = "test-subset", .type = FLC_OPT_INT, .meta = "N",
     FLC_OPT_AT(flc_train_opts_t, cfg.test_subset), .imin = 0, .imax = 100000000,
     .def = "all 10000", .help = "evaluate on the first N test samples"},
    {.name = "data", .type = FLC_OPT_STR, .meta = "DIR", FLC_OPT_AT(flc_train_opts_t, cfg.data_dir),
     .def = "$FLCACHE_DATA_DIR, else " FLC_FASHION_DIR " from the Debian package "
            "dataset-fashion-mnist",
     .help = "Fashion-MNIST IDX gzip files"},
    {.name = "job", .type = FLC_OPT_STR, .meta = "NAME", FLC_OPT_AT(flc_train_opts_t, cfg.job),
     .def = "train-<time>-<pid>",
     .help = "job name in the cache; epoch e is round e of NAME, step exchanges use "
             "NAME/steps"},
    {.name = "resume", .type = FLC_OPT_STR, .meta = "JOB", FLC_OPT_AT(flc_train_opts_t, resume),
     .def = "a new run",
     .help = "continue job JOB from its last closed epoch (a run that stopped, was killed, or "
             "asks more --epochs: the job's total): its options and model come from the "
             "cache, options given here are added (those that change the result are "
             "refused), and the result is bit-identical to an uninterrupted run"},
    {.name = "seed", .type = FLC_OPT_INT, .meta = "S", FLC_OPT_AT(flc_train_opts_t, cfg.seed),
     .imin = 0, .imax = 1LL << 53, .help = "seed of the model init, data split and shuffles"},
    {.name = "memory", .type = FLC_OPT_INT, .meta = "MB", FLC_OPT_AT(flc_train_opts_t, memory_mb),
     .imin = 64, .imax = 1048576,
     .help = "memory of each worker function: enforced by the platform and used for the cost"},
    {.name = "price", .type = FLC_OPT_NUM, .meta = "USD", FLC_OPT_AT(flc_train_opts_t, price),
     .min = 0, .min_open = 1, .def = FLC_OPT_STRING(FLC_LAMBDA_X86_PRICE_GB_S) ", AWS Lambda x86",
     .help = "price per GB-second"},
    {.name = "timeout", .type = FLC_OPT_INT, .meta = "SEC", FLC_OPT_AT(flc_train_opts_t, timeout_s),
     .imin = 1, .imax = 86400, .help = "limit of each worker invocation"},
    {.name = "step-timeout", .type = FLC_OPT_INT, .meta = "MS",
     FLC_OPT_AT(flc_train_opts_t, cfg.step_timeout_ms), .imin = 1, .imax = 86400000,
     .help = "how long a step waits for the slowest worker before the training fails"},
    {.name = "json", .type = FLC_OPT_FLAG, FLC_OPT_AT(flc_train_opts_t, json),
     .help = "print the summary as one JSON object on stdout"},
    FLC_CLI_PLATFORM_OPTION,
    {.name = "quiet", .type = FLC_OPT_FLAG, FLC_OPT_AT(flc_train_opts_t, quiet),
     .help = "no progress line on stderr"},
    {0},
};

static const flc_opt_cmd_t train_cmd = {
    .prog = "flcache train",
    .synopsis =
        "[--workers W] [--model softmax|mlp] [--hidden N] [--epochs E]\n"
        "                     [--batch B] [--lr L] [--comm reduce-scatter|allreduce-one|ps]\n"
        "                     [--subset N] [--data DIR] [--job NAME] [--seed S]\n"
        "                     [--memory MB] [--json] [more options below]",
    .about =
        "Trains a model on Fashion-MNIST with synchronous data-parallel SGD on W worker\n"
        "functions (LambdaML style). Each worker owns an IID part of the training set;\n"
        "at every step each computes its minibatch gradient, the workers average their\n"
        "gradients through the cache with reduce-scatter, and all apply the same mean,\n"
        "so every worker ends with the same model. Worker 0 evaluates test accuracy after\n"
        "every epoch and stores the epoch's metadata as round <epoch> of job NAME.\n",
    .epilog =
        FLC_CLI_ENV_HELP
        "exit codes: 0 trained and every worker holds the same model, 1 runtime error,\n"
        "2 usage error\n",
    .opts = options,
};

/* Parses argv into *o. Returns 1 to go on, else 0 with the exit code in
 * *rc (help printed, or a usage error). */
static int parse(int argc, char **argv, flc_train_opts_t *o, int *rc)
{
    flc_sgd_cfg_init(&o->cfg);
    o->cfg.data_dir = flc_config_program()->data_dir; /* FLCACHE_DATA_DIR; --data wins */
    o->cfg.workers = 4;
    o->cfg.epochs = 10;
    o->cfg.batch = FLC_SGD_BATCH_DEFAULT; /* what cfg_finish fills in, shown by --help */
    o->cfg.step_timeout_ms = FLC_SGD_STEP_TIMEOUT_DEFAULT;
    o->memory_mb = 1024;
    o->price = FLC_LAMBDA_X86_PRICE_GB_S;
    o->timeout_s = 3600;
    if (!flc_opt_parse(&train_cmd, argc, argv, o, sizeof *o, rc))
        return 0;
    if (o->cfg.rule != NULL &&
        !flc_cli_rule_check(&train_cmd, o->cfg.rule, -1, o->cfg.workers, 0, 0, -1)) {
        *rc = FLC_EXIT_USAGE;
        return 0;
    }
    if (o->cfg.init != NULL) {
        char *abs = realpath(o->cfg.init, NULL);
        if (abs == NULL || strlen(abs) >= sizeof o->init) {
            *rc = flc_opt_usage_error(&train_cmd, "--init %s: no such file", o->cfg.init);
            free(abs);
            return 0;
        }
        snprintf(o->init, sizeof o->init, "%s", abs);
        free(abs);
        o->cfg.init = o->init;
    }
    o->cfg.job = flc_cli_job_name(o->cfg.job, "train", o->job, sizeof o->job);
    o->cfg.memory_mb = o->memory_mb;
    o->cfg.price_per_gb_s = o->price;
    flc_err_t e = {0};
    flc_sgd_cfg_t check = o->cfg;
    if (flc_sgd_cfg_finish(&check, &e) != FLC_OK) {
        *rc = flc_opt_usage_error(&train_cmd, "%s", flc_err_msg(&e));
        return 0;
    }
    o->cfg = check;
    if (o->cfg.comm == FLC_SGD_COMM_PS && flc_cli_platform() != FLC_PLATFORM_LOCAL) {
        /* The server is a process of this machine: remote functions cannot
         * reach its socket. */
        *rc = flc_opt_usage_error(&train_cmd, "--comm ps runs its parameter server here, which "
                                  "workers on --platform %s cannot reach; use --comm "
                                  "reduce-scatter or allreduce-one there",
                                  flc_platform_name(flc_cli_platform()));
        return 0;
    }
    return 1;
}

/* Checks that the data can be read before W functions start, so a wrong
 * --data fails at once with the loader's message (naming the path). */
static int check_data(const flc_sgd_cfg_t *c)
{
    flc_err_t e = {0};
    flc_dataset_t *ds = NULL;
    for (int train = 1; train >= 0; train--) {
        if (flc_data_load_fashion(c->data_dir, train, 1, &ds, &e) != FLC_OK) {
            flc_cli_error("train", "%s", flc_err_msg(&e));
            return FLC_EXIT_RUNTIME;
        }
        flc_data_free(ds);
        ds = NULL;
    }
    return FLC_EXIT_OK;
}

/* Starts the W workers, follows progress until all returned, fills run. */
static int run_workers(flc_cli_conn_t *conn, const flc_train_opts_t *o, flc_train_run_t *run,
                       const char *ps_addr)
{
    if (flc_train_signal())
        return FLC_EXIT_RUNTIME; /* interrupted before anything started */
    int W = o->cfg.workers;
    flc_err_t e = {0};
    /* All W at once, or the first step never completes. */
    flc_pool_t *pool = flc_cli_pool_start("train", conn, (unsigned)W, o->memory_mb,
                                          o->timeout_s, o->price);
    if (pool == NULL)
        return FLC_EXIT_RUNTIME;
    char **events = calloc((size_t)W, sizeof *events);
    run->recs = calloc((size_t)W, sizeof *run->recs);
    int rc = events && run->recs ? FLC_EXIT_OK : FLC_EXIT_RUNTIME;
    for (int k = 0; rc == FLC_EXIT_OK && k < W; k++) {
        flc_sgd_cfg_t c = o->cfg;
        c.rank = k;
        c.redis = conn->url;
        c.ps = ps_addr;
        cJSON *ev = flc_sgd_cfg_to_json(&c);
        events[k] = ev ? cJSON_PrintUnformatted(ev) : NULL;
        cJSON_Delete(ev);
        if (events[k] == NULL)
            rc = FLC_EXIT_RUNTIME;
    }
    run->t0 = flc_now_s();
    flc_batch_t *b = NULL;
    if (rc == FLC_EXIT_OK &&
        (b = flc_pool_start(pool, (const char *const *)events, (size_t)W, run->recs, &e)) ==
            NULL) {
        flc_cli_error("train", "cannot start the workers: %s", flc_err_msg(&e));
        rc = FLC_EXIT_RUNTIME;
    }
    run->pool = pool;
    if (b != NULL) {
        flc_train_follow(conn->store, o, run, b, (size_t)W); /* waits for and frees b */
    }
    run->wall_s = flc_now_s() - run->t0;
    for (int k = 0; events && k < W; k++)
        cJSON_free(events[k]);
    free(events);
    flc_pool_free(pool);
    run->pool = NULL;
    return rc;
}

/* After SIGINT/SIGTERM: the workers are stopped; remove the job's step
 * keys (never its epochs' RoundMeta) and say so. */
static void interrupted(flc_cli_conn_t *conn, const flc_train_opts_t *o)
{
    int sig = flc_train_signal();
    flc_err_t e = {0};
    uint64_t keys = 0;
    if (conn->embedded != NULL) { /* a private server: its keys go with it */
        fprintf(stderr, "flcache train: interrupted by %s: stopped the %d workers\n",
                sig == SIGINT ? "SIGINT" : "SIGTERM", o->cfg.workers);
        return;
    }
    if (flc_train_clean_steps(conn->store, o->cfg.job, &keys, &e) == FLC_OK)
        fprintf(stderr, "flcache train: interrupted by %s: stopped the %d workers, removed %llu "
                "step keys of job %s (its finished epochs' records stay)\n",
                sig == SIGINT ? "SIGINT" : "SIGTERM", o->cfg.workers,
                (unsigned long long)keys, o->cfg.job);
    else
        fprintf(stderr, "flcache train: interrupted by %s: stopped the %d workers; cannot "
                "remove the step keys of job %s: %s (they expire within %llu s)\n",
                sig == SIGINT ? "SIGINT" : "SIGTERM", o->cfg.workers, o->cfg.job,
                flc_err_msg(&e),
                (unsigned long long)((2ull * o->cfg.step_timeout_ms + 600000ull) / 1000));
}

int flc_cmd_train(int argc, char **argv)
{
    flc_train_opts_t o;
    memset(&o, 0, sizeof o);
    int rc;
    if (!parse(argc, argv, &o, &rc))
        return rc;
    if ((rc = check_data(&o.cfg)) != FLC_EXIT_OK)
        return rc;
    if (o.resume != NULL) { /* the job the guard cleans up after */
        snprintf(o.job, sizeof o.job, "%s", o.resume);
        o.cfg.job = o.job;
    }
    /* Before the connection and the pool start threads: the guard forks
     * its janitor. */
    flc_train_guard_t guard;
    flc_train_guard_start(&guard, flc_config_program(), o.cfg.job, o.cfg.step_timeout_ms);
    flc_train_ps_t ps = {0}; /* --comm ps: forked before any thread too */
    if (o.cfg.comm == FLC_SGD_COMM_PS &&
        flc_train_ps_start(&ps, o.ps_addr, o.cfg.workers, 2 * o.cfg.step_timeout_ms) !=
            FLC_EXIT_OK) {
        flc_train_guard_end(&guard);
        return FLC_EXIT_RUNTIME;
    }
    flc_cli_conn_t conn;
    if ((rc = flc_cli_connect(&conn, flc_config_program(), NULL)) != FLC_EXIT_OK) {
        flc_train_ps_stop(&ps, 0);
        flc_train_guard_end(&guard);
        return rc;
    }
    flc_err_t e = {0};
    /* --resume: the job's stored arguments first (workers/sgd_resume.c
     * keeps them in its checkpoint), this run's after them. */
    char **argv2 = NULL, *stored = NULL, *argj = NULL;
    void *keep = NULL;
    int argc2 = argc, last = 0;
    if (o.resume != NULL) {
        char job[64];
        snprintf(job, sizeof job, "%s", o.resume);
        if (flc_sgd_resume_args(conn.store, job, &stored, &last, &e) != FLC_OK ||
            flc_cli_resume_argv(stored, argc, argv, &argc2, &argv2, &keep) != 0) {
            flc_cli_error("train", "cannot resume: %s", e.code ? flc_err_msg(&e)
                                                               : "no stored arguments");
            rc = FLC_EXIT_RUNTIME;
        } else {
            memset(&o, 0, sizeof o);
            if (parse(argc2, argv2, &o, &rc)) {
                snprintf(o.job, sizeof o.job, "%s", job);
                o.cfg.job = o.job;
                o.cfg.resume_after = last;
                if (last >= o.cfg.epochs) {
                    flc_cli_error("train", "job '%s' already ran %d epochs: ask more with "
                                  "--epochs (the job's total)", job, last);
                    rc = FLC_EXIT_RUNTIME;
                } else
                fprintf(stderr, "flcache train: resuming job %s after epoch %d, its last "
                        "closed epoch, up to epoch %d\n", job, last, o.cfg.epochs);
            }
        }
        if (rc != FLC_EXIT_OK) {
            flc_cli_resume_free(argv2, keep), free(stored);
            flc_cli_disconnect(&conn);
            flc_train_guard_end(&guard);
            return rc;
        }
    }
    o.cfg.resume_args = argj = flc_cli_resume_json(argv2 ? argc2 : argc, argv2 ? argv2 : argv);
    /* Step rounds left by an earlier run of the same job would confuse the
     * mergers (a resumed job's too: the killed run's steps); epoch metadata
     * is simply overwritten. */
    if (flc_sgd_cleanup(conn.store, o.cfg.job, &e) != FLC_OK) {
        flc_cli_error("train", "%s", flc_err_msg(&e));
        flc_cli_disconnect(&conn);
        flc_train_ps_stop(&ps, 0);
        flc_train_guard_end(&guard);
        flc_cli_resume_free(argv2, keep), free(stored), free(argj);
        return FLC_EXIT_RUNTIME;
    }
    flc_train_run_t run;
    memset(&run, 0, sizeof run);
    run.failed = -1;
    run.guard = &guard;
    rc = run_workers(&conn, &o, &run, ps.pid ? ps.addr : NULL);
    if (ps.pid && !flc_train_ps_stop(&ps, rc == FLC_EXIT_OK && run.failed < 0) &&
        rc == FLC_EXIT_OK && run.failed < 0)
        flc_cli_error("train", "the parameter server did not end cleanly");
    if (flc_train_signal()) {
        interrupted(&conn, &o);
        rc = FLC_EXIT_RUNTIME;
    } else {
        if (rc == FLC_EXIT_OK)
            rc = flc_train_report(conn.store, &o, &run);
        /* After a failed worker the others were killed a moment ago: what
         * they had sent may still reach the server, so the whole series is
         * swept (twice) as after an interruption. */
        uint64_t keys = 0;
        if ((run.failed >= 0 ? flc_train_clean_steps(conn.store, o.cfg.job, &keys, &e)
                             : flc_sgd_cleanup(conn.store, o.cfg.job, &e)) != FLC_OK)
            flc_cli_error("train", "%s", flc_err_msg(&e));
    }
    if (o.ttl_ms && flc_cli_job_ttl("train", conn.store, o.cfg.job, o.ttl_ms) != FLC_EXIT_OK)
        rc = FLC_EXIT_RUNTIME;
    if (rc == FLC_EXIT_OK)
        flc_cli_report_hint(o.json ? stderr : stdout, &conn, o.cfg.job);
    for (int k = 0; run.recs && k < o.cfg.workers; k++)
        flc_inv_rec_clear(&run.recs[k]);
    free(run.recs);
    flc_cli_disconnect(&conn);
    flc_cli_resume_free(argv2, keep), free(stored), free(argj);
    flc_train_guard_end(&guard); /* dies of a caught signal here */
    return rc;
}
