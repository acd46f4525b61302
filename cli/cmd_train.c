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
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/clock.h"
#include "cli/cli.h"
#include "cli/train.h"
#include "runtime/cost.h"
#include "runtime/pool.h"
#include "workers/data.h"
#include "workers/model.h"
#include "workers/sgd_worker.h"


static void train_usage(FILE *f)
{
    fprintf(f,
            "usage: flcache train [--workers W] [--model softmax|mlp] [--hidden N] [--epochs E]\n"
            "                     [--batch B] [--lr L] [--comm reduce-scatter|allreduce-one]\n"
            "                     [--subset N] [--data DIR] [--job NAME] [--seed S]\n"
            "                     [--memory MB] [--json] [more options below]\n"
            "\n"
            "Trains a model on Fashion-MNIST with synchronous data-parallel SGD on W worker\n"
            "functions (LambdaML style). Each worker owns an IID part of the training set;\n"
            "at every step each computes its minibatch gradient, the workers average their\n"
            "gradients through the cache with reduce-scatter, and all apply the same mean,\n"
            "so every worker ends with the same model. Worker 0 evaluates test accuracy after\n"
            "every epoch and stores the epoch's metadata as round <epoch> of job NAME.\n"
            "\n"
            "options:\n"
            "  --workers W        worker functions (default 4)\n"
            "  --model M          softmax (multinomial logistic regression) or mlp\n"
            "                     (one hidden ReLU layer); default softmax\n"
            "  --hidden N         hidden units of the mlp (default %d)\n"
            "  --epochs E         passes over the training set (default 10)\n"
            "  --batch B          minibatch per worker (default %d; the effective batch is\n"
            "                     B x W)\n"
            "  --lr L             learning rate (default %g for softmax, %g for mlp)\n"
            "  --comm C           reduce-scatter: the model is cut into W shards and worker k\n"
            "                     merges shard k (default); allreduce-one: worker 0 merges the\n"
            "                     whole gradient\n"
            "  --shards S         reduce-scatter shards (default W; worker k merges the shards\n"
            "                     s with s %% W == k)\n"
            "  --subset N         train on the first N training samples (default all 60000)\n"
            "  --test-subset N    evaluate on the first N test samples (default all 10000)\n"
            "  --data DIR         Fashion-MNIST IDX gzip files (default $FLCACHE_DATA_DIR,\n"
            "                     else %s from the\n"
            "                     Debian package dataset-fashion-mnist)\n"
            "  --job NAME         job name in the cache (default train-<time>-<pid>); epoch e\n"
            "                     is round e of NAME, step exchanges use NAME.steps\n"
            "  --seed S           seed of the model init, data split and shuffles (default %d)\n"
            "  --memory MB        memory of each worker function: enforced by the platform\n"
            "                     and used for the cost (default 1024)\n"
            "  --price USD        price per GB-second (default %.10f, AWS Lambda x86)\n"
            "  --timeout SEC      limit of each worker invocation (default 3600)\n"
            "  --step-timeout MS  how long a step waits for the slowest worker before the\n"
            "                     training fails (default %u)\n"
            "  --json             print the summary as one JSON object on stdout\n"
            "  --quiet            no progress line on stderr\n"
            "\n"
            "environment: FLCACHE_REDIS (the cache; unset: a private redis-server for the\n"
            "run), FLCACHE_FN (the flcache-fn binary; default: next to flcache).\n"
            "exit codes: 0 trained and every worker holds the same model, 1 runtime error,\n"
            "2 usage error\n",
            FLC_MLP_HIDDEN_DEFAULT, FLC_SGD_BATCH_DEFAULT, FLC_SGD_LR_SOFTMAX, FLC_SGD_LR_MLP,
            FLC_FASHION_DIR, FLC_SGD_SEED_DEFAULT, FLC_LAMBDA_X86_PRICE_GB_S,
            FLC_SGD_STEP_TIMEOUT_DEFAULT);
}

/* Parses an integer option value in min..max into *out; prints why not. */
static int opt_uint(const char *opt, const char *v, unsigned long long min,
                    unsigned long long max, unsigned long long *out)
{
    long long x;
    if (flc_cli_opt_int("train", opt, v, (long long)min, (long long)max, &x) != 0)
        return -1;
    *out = (unsigned long long)x;
    return 0;
}

static int opt_double(const char *opt, const char *v, double *out)
{
    return flc_cli_opt_num("train", opt, v, 0, 1, out);
}

/* Parses argv into *o. Returns FLC_EXIT_OK, or FLC_EXIT_USAGE after
 * printing what was wrong. */
static int parse(int argc, char **argv, flc_train_opts_t *o)
{
    flc_sgd_cfg_init(&o->cfg);
    o->cfg.workers = 4;
    o->cfg.epochs = 10;
    o->memory_mb = 1024;
    o->price = FLC_LAMBDA_X86_PRICE_GB_S;
    o->timeout_s = 3600;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned long long u = 0;
        int bad = 0, takes = 1;
        if (strcmp(a, "--workers") == 0) {
            bad = opt_uint(a, v, 1, 1024, &u);
            o->cfg.workers = (int)u;
        } else if (strcmp(a, "--model") == 0) {
            o->cfg.model = v;
            bad = v == NULL || (strcmp(v, "softmax") != 0 && strcmp(v, "mlp") != 0);
            if (bad)
                flc_cli_error("train", "--model must be softmax or mlp, not '%s'", v ? v : "");
        } else if (strcmp(a, "--hidden") == 0) {
            bad = opt_uint(a, v, 1, 65536, &u);
            o->cfg.hidden = (size_t)u;
        } else if (strcmp(a, "--epochs") == 0) {
            bad = opt_uint(a, v, 1, 100000, &u);
            o->cfg.epochs = (int)u;
        } else if (strcmp(a, "--batch") == 0) {
            bad = opt_uint(a, v, 1, 65536, &u);
            o->cfg.batch = (size_t)u;
        } else if (strcmp(a, "--lr") == 0) {
            bad = opt_double(a, v, &o->cfg.lr);
        } else if (strcmp(a, "--comm") == 0) {
            o->cfg.comm = flc_sgd_comm_parse(v);
            bad = o->cfg.comm < 0;
            if (bad)
                flc_cli_error("train", "--comm must be reduce-scatter or allreduce-one, not '%s'",
                              v ? v : "");
        } else if (strcmp(a, "--shards") == 0) {
            bad = opt_uint(a, v, 1, 65536, &u);
            o->cfg.num_shards = (uint32_t)u;
        } else if (strcmp(a, "--subset") == 0) {
            bad = opt_uint(a, v, 0, 100000000, &u);
            o->cfg.subset = (size_t)u;
        } else if (strcmp(a, "--test-subset") == 0) {
            bad = opt_uint(a, v, 0, 100000000, &u);
            o->cfg.test_subset = (size_t)u;
        } else if (strcmp(a, "--data") == 0) {
            o->cfg.data_dir = v;
            if ((bad = v == NULL))
                flc_cli_error("train", "%s needs a value", a);
        } else if (strcmp(a, "--job") == 0) {
            o->cfg.job = v;
            if ((bad = v == NULL))
                flc_cli_error("train", "%s needs a value", a);
        } else if (strcmp(a, "--seed") == 0) {
            bad = opt_uint(a, v, 0, (1ULL << 53), &u);
            o->cfg.seed = u;
        } else if (strcmp(a, "--memory") == 0) {
            bad = opt_uint(a, v, 64, 1048576, &u);
            o->memory_mb = (unsigned)u;
        } else if (strcmp(a, "--price") == 0) {
            bad = opt_double(a, v, &o->price);
        } else if (strcmp(a, "--timeout") == 0) {
            bad = opt_uint(a, v, 1, 86400, &u);
            o->timeout_s = (unsigned)u;
        } else if (strcmp(a, "--step-timeout") == 0) {
            bad = opt_uint(a, v, 1, 86400000, &u);
            o->cfg.step_timeout_ms = (unsigned)u;
        } else if (strcmp(a, "--json") == 0) {
            o->json = 1, takes = 0;
        } else if (strcmp(a, "--quiet") == 0) {
            o->quiet = 1, takes = 0;
        } else {
            flc_cli_error("train", "unknown option '%s'", a);
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "Run `flcache train --help` for the options.\n");
            return FLC_EXIT_USAGE;
        }
        i += takes;
    }
    if (o->cfg.job == NULL || strcmp(o->cfg.job, "train") == 0) {
        snprintf(o->job, sizeof o->job, "train-%llu-%d",
                 (unsigned long long)(flc_wall_ms() / 1000), (int)getpid());
        o->cfg.job = o->job;
    }
    o->cfg.memory_mb = o->memory_mb;
    o->cfg.price_per_gb_s = o->price;
    flc_err_t e = {0};
    flc_sgd_cfg_t check = o->cfg;
    if (flc_sgd_cfg_finish(&check, &e) != FLC_OK) {
        flc_cli_error("train", "%s", flc_err_msg(&e));
        return FLC_EXIT_USAGE;
    }
    o->cfg = check;
    return FLC_EXIT_OK;
}

/* The function binary: $FLCACHE_FN, else flcache-fn next to this program. */
static void find_fn(char *out, size_t len)
{
    const char *env = flc_config_program()->fn_path; /* FLCACHE_FN */
    if (env != NULL) {
        snprintf(out, len, "%s", env);
        return;
    }
    char self[PATH_MAX - 16]; /* room for "/flcache-fn" in out */
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        snprintf(out, len, "flcache-fn");
        return;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    snprintf(out, len, "%s/flcache-fn", self);
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
static int run_workers(flc_cli_conn_t *conn, const flc_train_opts_t *o, flc_train_run_t *run)
{
    int W = o->cfg.workers;
    char fn[PATH_MAX];
    find_fn(fn, sizeof fn);
    static const char *const env[] = {"OPENBLAS_NUM_THREADS=1", NULL};
    flc_pool_cfg_t pc;
    flc_pool_cfg_init(&pc);
    pc.fn_path = fn;
    pc.memory_mb = o->memory_mb;
    pc.timeout_ms = o->timeout_s * 1000u;
    pc.concurrency = (unsigned)W; /* all at once, or the first step never completes */
    pc.max_warm = (unsigned)W;
    pc.price_per_gb_s = o->price;
    pc.env = env;
    flc_config_pool_cfg(flc_config_program(), &pc); /* FLCACHE_POOL_MEM */
    flc_err_t e = {0};
    flc_pool_t *pool = flc_pool_new(&pc, &e);
    if (pool == NULL) {
        flc_cli_error("train", "cannot start the function platform: %s", flc_err_msg(&e));
        return FLC_EXIT_RUNTIME;
    }
    char **events = calloc((size_t)W, sizeof *events);
    run->recs = calloc((size_t)W, sizeof *run->recs);
    int rc = events && run->recs ? FLC_EXIT_OK : FLC_EXIT_RUNTIME;
    for (int k = 0; rc == FLC_EXIT_OK && k < W; k++) {
        flc_sgd_cfg_t c = o->cfg;
        c.rank = k;
        c.redis = conn->url;
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
    if (b != NULL) {
        flc_train_follow(conn->store, o, run, b, (size_t)W); /* waits for and frees b */
    }
    run->wall_s = flc_now_s() - run->t0;
    for (int k = 0; events && k < W; k++)
        cJSON_free(events[k]);
    free(events);
    flc_pool_free(pool);
    return rc;
}

int flc_cmd_train(int argc, char **argv)
{
    if (flc_cli_wants_help(argc, argv)) {
        train_usage(stdout);
        return FLC_EXIT_OK;
    }
    flc_train_opts_t o;
    memset(&o, 0, sizeof o);
    int rc = parse(argc, argv, &o);
    if (rc != FLC_EXIT_OK)
        return rc;
    if ((rc = check_data(&o.cfg)) != FLC_EXIT_OK)
        return rc;
    flc_cli_conn_t conn;
    if ((rc = flc_cli_connect(&conn, flc_config_program(), NULL)) != FLC_EXIT_OK)
        return rc;
    flc_err_t e = {0};
    /* Step rounds left by an earlier run of the same job would confuse the
     * mergers; epoch metadata is simply overwritten. */
    if (flc_sgd_cleanup(conn.store, o.cfg.job, &e) != FLC_OK) {
        flc_cli_error("train", "%s", flc_err_msg(&e));
        flc_cli_disconnect(&conn);
        return FLC_EXIT_RUNTIME;
    }
    flc_train_run_t run;
    memset(&run, 0, sizeof run);
    rc = run_workers(&conn, &o, &run);
    if (rc == FLC_EXIT_OK)
        rc = flc_train_report(conn.store, &o, &run);
    if (flc_sgd_cleanup(conn.store, o.cfg.job, &e) != FLC_OK)
        flc_cli_error("train", "%s", flc_err_msg(&e));
    for (int k = 0; run.recs && k < o.cfg.workers; k++)
        flc_inv_rec_clear(&run.recs[k]);
    free(run.recs);
    flc_cli_disconnect(&conn);
    return rc;
}
