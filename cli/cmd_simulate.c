/* `flcache simulate`: federated learning with many simulated clients.
 *
 * Builds the simulation config from the options, runs each sampled client
 * as a `client` function on the local platform (runtime/pool.h; or as
 * threads of this process with --inproc), and drives the rounds with
 * clients/sim.h: a progress line per round on stderr, then a final table
 * (or one JSON object with --json). Every round's record stays in the cache
 * under the job name. Exit 0 when every round ran, 1 on a runtime error, 2
 * on a usage error. */
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
#include "cli/sim_pool.h"
#include "clients/client.h"
#include "clients/sim.h"
#include "runtime/cost.h"
#include "runtime/pool.h"
#include "runtime/pool_proc.h"
#include "workers/data.h"

int flc_cmd_simulate(int argc, char **argv);

static void usage(FILE *f)
{
    fprintf(f,
"usage: flcache simulate [--clients N] [--per-round K] [--rounds R] [--alpha A]\n"
"                        [--local-epochs E] [--strategy S] [--model softmax|mlp]\n"
"                        [--mu M] [--lr L] [--batch B] [--dropout P]\n"
"                        [--straggler-ms DIST] [--deadline-ms MS]\n"
"                        [--faulty FRAC --fault sign-flip|label-flip|noise]\n"
"                        [--seed S] [--job NAME] [--json] [more options below]\n"
"\n"
"Simulates federated learning on Fashion-MNIST: the training set is split over N\n"
"clients with a Dirichlet(alpha) label split (small alpha: each client sees few\n"
"classes; large alpha: close to IID). Each round samples K clients (seeded), runs\n"
"each as a `client` function that trains the global model on its own samples for\n"
"E local epochs and pushes its delta to the cache, merges the deltas next to the\n"
"data with the strategy's rule (reduce-scatter mergers, streaming for fedavg,\n"
"fedprox and the server optimizers), steps the global model and evaluates it on\n"
"the test set. Every round is recorded in the cache: participants, missing,\n"
"rejected, per-client samples, loss, update norm, duration and ground truth,\n"
"test accuracy and loss, hyperparameters, timings, bytes moved and cost.\n"
"\n"
"options:\n"
"  --clients N        clients the data is split over (default 100)\n"
"  --per-round K      clients sampled per round (default 10)\n"
"  --rounds R         rounds (default 50)\n"
"  --alpha A          Dirichlet concentration of the label split (default 0.5)\n"
"  --local-epochs E   passes over its own data each client makes (default 1)\n"
"  --strategy S       fedavg     sample-weighted mean of the client deltas\n"
"                     fedprox    fedavg, clients add mu/2 ||w - w_global||^2\n"
"                     fedadam    server Adam step on the mean delta (--server-lr)\n"
"                     fedyogi    server Yogi step on the mean delta (--server-lr)\n"
"                     median     coordinate-wise median of the deltas\n"
"                     trimmed-mean  coordinate-wise mean without the --trim\n"
"                                fraction of extremes on each side\n"
"                     krum       the delta closest to its k-f-2 neighbours (--krum-f)\n"
"                     multi-krum mean of the k-f deltas with the best Krum scores\n"
"                     (default fedavg)\n"
"  --model M          softmax (multinomial logistic regression) or mlp (one\n"
"                     hidden ReLU layer, --hidden units, default %d)\n"
"  --mu M             FedProx proximal weight (default 0.01 with fedprox, else 0)\n"
"  --lr L             client SGD learning rate (default 0.1 softmax, 0.05 mlp)\n"
"  --batch B          client minibatch (default 32)\n"
"  --server-lr ETA    fedadam/fedyogi server learning rate (default 0.03)\n"
"  --trim T           trimmed-mean fraction cut per side (default 0.2)\n"
"  --krum-f F         Byzantine clients Krum tolerates (default (k-3)/2)\n"
"  --dropout P        probability a sampled client drops out and never reports\n"
"                     (default 0); it is listed as missing\n"
"  --straggler-ms D   delay of each client before it pushes: none, fixed:MS,\n"
"                     uniform:LO:HI, exp:MEAN, slow:FRAC:MS (a fraction FRAC of\n"
"                     the sampled clients waits MS) (default none)\n"
"  --deadline-ms MS   the round closes MS after it starts; later updates are\n"
"                     rejected as late but kept in the cache for queries\n"
"                     (default: wait for every client). The deadline counts\n"
"                     from the round's start, so use --concurrency >= K with it.\n"
"  --faulty FRAC      fraction of the N clients that are faulty (default 0)\n"
"  --fault F          what faulty clients do: sign-flip (push -scale x delta),\n"
"                     label-flip (train on label 9-y), noise (push Gaussian noise\n"
"                     of scale x the delta's norm) (default sign-flip)\n"
"  --fault-scale X    scale of sign-flip and noise (default 4)\n"
"  --seed S           seed of the split, sampling, faults, init (default 1)\n"
"  --shards S         reduce-scatter shards of the model (default 1)\n"
"  --job NAME         job name in the cache (default sim-<time>-<pid>); global\n"
"                     models are stored as job NAME.g, round r (0 = initial)\n"
"  --subset N         split only the first N training samples (default all)\n"
"  --test-subset N    evaluate on the first N test samples (default all 10000)\n"
"  --data DIR         Fashion-MNIST IDX gzip files (default $FLCACHE_DATA_DIR or\n"
"                     %s)\n"
"  --concurrency C    client functions running at once (default min(K, 16))\n"
"  --memory MB        memory of each function, enforced and billed (default 1024)\n"
"  --price USD        price per GB-second (default %g, AWS Lambda x86)\n"
"  --timeout SEC      longest a round may take (default 600)\n"
"  --inproc           run clients as threads of this process instead of functions\n"
"  --json             print the result as one JSON object on stdout\n"
"  --quiet            no progress lines\n"
"\n"
"environment: FLCACHE_REDIS (the cache; unset: a private redis-server for the\n"
"run), FLCACHE_FN (the flcache-fn binary; default: next to flcache).\n"
"exit codes: 0 every round ran, 1 runtime error, 2 usage error\n",
            128, FLC_FASHION_DIR, FLC_LAMBDA_X86_PRICE_GB_S);
}

typedef struct opts {
    flc_sim_cfg_t c;
    unsigned concurrency, memory_mb, timeout_s;
    double price;
    int json, quiet, inproc;
    char job[64];
} opts_t;

static int bad_value(const char *opt, const char *v, const char *what)
{
    flc_cli_error("simulate", "%s needs %s, not '%s'", opt, what, v ? v : "");
    return 1;
}

static int get_int(const char *opt, const char *v, long long min, long long max, long long *out)
{
    return flc_cli_opt_int("simulate", opt, v, min, max, out) != 0;
}

static int get_num(const char *opt, const char *v, double min, double *out)
{
    return flc_cli_opt_num("simulate", opt, v, min, 0, out) != 0;
}

static int parse(int argc, char **argv, opts_t *o)
{
    flc_sim_cfg_init(&o->c);
    o->memory_mb = 1024;
    o->timeout_s = 600;
    o->price = FLC_LAMBDA_X86_PRICE_GB_S;
    int fault_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n = 0;
        int bad = 0, takes = 1;
        if (strcmp(a, "--clients") == 0) {
            bad = get_int(a, v, 1, 10000000, &n);
            o->c.clients = (int)n;
        } else if (strcmp(a, "--per-round") == 0) {
            bad = get_int(a, v, 1, 10000000, &n);
            o->c.per_round = (int)n;
        } else if (strcmp(a, "--rounds") == 0) {
            bad = get_int(a, v, 1, 1000000, &n);
            o->c.rounds = (int)n;
        } else if (strcmp(a, "--alpha") == 0) {
            bad = get_num(a, v, 1e-12, &o->c.alpha);
        } else if (strcmp(a, "--local-epochs") == 0) {
            bad = get_int(a, v, 1, 10000, &n);
            o->c.local_epochs = (int)n;
        } else if (strcmp(a, "--strategy") == 0) {
            o->c.strategy = flc_sim_strategy_parse(v);
            if ((bad = o->c.strategy < 0))
                bad_value(a, v, "fedavg, fedprox, fedadam, fedyogi, median, trimmed-mean, krum or "
                                    "multi-krum");
        } else if (strcmp(a, "--model") == 0) {
            o->c.model = v;
            if ((bad = v == NULL || (strcmp(v, "softmax") && strcmp(v, "mlp"))))
                bad_value(a, v, "softmax or mlp");
        } else if (strcmp(a, "--hidden") == 0) {
            bad = get_int(a, v, 1, 65536, &n);
            o->c.hidden = (size_t)n;
        } else if (strcmp(a, "--mu") == 0) {
            bad = get_num(a, v, 0, &o->c.mu);
        } else if (strcmp(a, "--lr") == 0) {
            bad = get_num(a, v, 1e-12, &o->c.lr);
        } else if (strcmp(a, "--batch") == 0) {
            bad = get_int(a, v, 1, 65536, &n);
            o->c.batch = (size_t)n;
        } else if (strcmp(a, "--server-lr") == 0) {
            bad = get_num(a, v, 1e-12, &o->c.server_lr);
        } else if (strcmp(a, "--trim") == 0) {
            bad = get_num(a, v, 1e-12, &o->c.trim);
        } else if (strcmp(a, "--krum-f") == 0) {
            bad = get_int(a, v, 0, 1000000, &n);
            o->c.krum_f = (int)n;
        } else if (strcmp(a, "--dropout") == 0) {
            bad = get_num(a, v, 0, &o->c.dropout);
        } else if (strcmp(a, "--straggler-ms") == 0) {
            o->c.straggler = v;
            if ((bad = v == NULL))
                bad_value(a, v, "a distribution");
        } else if (strcmp(a, "--deadline-ms") == 0) {
            bad = get_int(a, v, 1, 86400000, &n);
            o->c.deadline_ms = (unsigned)n;
        } else if (strcmp(a, "--faulty") == 0) {
            bad = get_num(a, v, 0, &o->c.faulty);
        } else if (strcmp(a, "--fault") == 0) {
            o->c.fault = flc_fault_parse(v);
            fault_given = 1;
            if ((bad = o->c.fault <= FLC_FAULT_NONE))
                bad_value(a, v, "sign-flip, label-flip or noise");
        } else if (strcmp(a, "--fault-scale") == 0) {
            bad = get_num(a, v, 1e-12, &o->c.fault_scale);
        } else if (strcmp(a, "--seed") == 0) {
            bad = get_int(a, v, 0, (1LL << 53), &n);
            o->c.seed = (uint64_t)n;
        } else if (strcmp(a, "--shards") == 0) {
            bad = get_int(a, v, 1, 4096, &n);
            o->c.num_shards = (uint32_t)n;
        } else if (strcmp(a, "--job") == 0) {
            o->c.job = v;
            if ((bad = v == NULL))
                bad_value(a, v, "a name");
        } else if (strcmp(a, "--subset") == 0) {
            bad = get_int(a, v, 0, 100000000, &n);
            o->c.subset = (size_t)n;
        } else if (strcmp(a, "--test-subset") == 0) {
            bad = get_int(a, v, 0, 100000000, &n);
            o->c.test_subset = (size_t)n;
        } else if (strcmp(a, "--data") == 0) {
            o->c.data_dir = v;
            if ((bad = v == NULL))
                bad_value(a, v, "a directory");
        } else if (strcmp(a, "--concurrency") == 0) {
            bad = get_int(a, v, 1, 1024, &n);
            o->concurrency = (unsigned)n;
        } else if (strcmp(a, "--memory") == 0) {
            bad = get_int(a, v, 128, 1048576, &n);
            o->memory_mb = (unsigned)n;
        } else if (strcmp(a, "--price") == 0) {
            bad = get_num(a, v, 0, &o->price);
        } else if (strcmp(a, "--timeout") == 0) {
            bad = get_int(a, v, 1, 86400, &n);
            o->timeout_s = (unsigned)n;
        } else if (strcmp(a, "--inproc") == 0) {
            o->inproc = 1, takes = 0;
        } else if (strcmp(a, "--json") == 0) {
            o->json = 1, takes = 0;
        } else if (strcmp(a, "--quiet") == 0) {
            o->quiet = 1, takes = 0;
        } else {
            flc_cli_error("simulate", "unknown option '%s'", a);
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "Run `flcache simulate --help` for the options.\n");
            return FLC_EXIT_USAGE;
        }
        i += takes;
    }
    if (fault_given && o->c.faulty == 0) {
        flc_cli_error("simulate", "--fault needs --faulty FRAC (the fraction of faulty clients)");
        return FLC_EXIT_USAGE;
    }
    if (o->c.job == NULL || strcmp(o->c.job, "sim") == 0) {
        snprintf(o->job, sizeof o->job, "sim-%llu-%d",
                 (unsigned long long)(flc_wall_ms() / 1000), (int)getpid());
        o->c.job = o->job;
    }
    if (o->concurrency == 0)
        o->concurrency = o->c.per_round < 16 ? (unsigned)o->c.per_round : 16;
    o->c.memory_mb = o->memory_mb;
    o->c.price_per_gb_s = o->price > 0 ? o->price : 1e-30;
    o->c.round_timeout_ms = o->timeout_s * 1000u;
    /* Check the config now (usage errors) with a placeholder cache URL. */
    flc_sim_cfg_t check = o->c;
    check.redis = "unix:///placeholder";
    flc_err_t e = {0};
    if (flc_sim_cfg_finish(&check, &e) != FLC_OK) {
        flc_cli_error("simulate", "%s", flc_err_msg(&e));
        return FLC_EXIT_USAGE;
    }
    return FLC_EXIT_OK;
}

static void find_fn(char *out, size_t len)
{
    const char *env = flc_config_program()->fn_path; /* FLCACHE_FN */
    if (env != NULL) {
        snprintf(out, len, "%s", env);
        return;
    }
    char self[PATH_MAX - 16];
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

/* ---- output ---- */

static void fmt_dur(char *out, size_t len, double s)
{
    if (s < 0 || !isfinite(s))
        snprintf(out, len, "?");
    else if (s < 60)
        snprintf(out, len, "%.0fs", s);
    else if (s < 3600)
        snprintf(out, len, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else
        snprintf(out, len, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

static void progress(const flc_sim_round_t *r, int rounds, double elapsed, void *user)
{
    const opts_t *o = user;
    if (o->quiet)
        return;
    char eta[32];
    /* The first round pays the cold starts: estimate from the later ones. */
    static double first_s = -1;
    if (r->round == 1)
        first_s = elapsed;
    double per = r->round > 1 && first_s >= 0 ? (elapsed - first_s) / (r->round - 1)
                                              : elapsed / r->round;
    fmt_dur(eta, sizeof eta, per * (rounds - (int)r->round));
    fprintf(stderr, "round %*u/%d  acc %6.2f%%  loss %.4f  participants %zu/%zu", 
            rounds >= 100 ? 3 : 2, r->round, rounds, r->accuracy * 100, r->loss,
            r->participants, r->sampled);
    if (r->missing || r->rejected)
        fprintf(stderr, " (missing %zu, rejected %zu)", r->missing, r->rejected);
    fprintf(stderr, "  %.2fs  ETA %s\n", r->round_ms / 1000, eta);
}

/* Peak resident set of this process (driver and mergers) in MiB. */
static double self_peak_mb(void)
{
    return (double)flc_proc_status_kb(getpid(), "VmHWM") / 1024;
}

static void table(const opts_t *o, const flc_sim_result_t *r)
{
    const flc_sim_cfg_t *c = &o->c;
    char buf[32];
    printf("job %s: %s, %s (%zu parameters), N=%d K=%d alpha=%g E=%d, %zu clients with data",
           c->job, flc_sim_strategy_name(c->strategy), c->model, r->nparams, c->clients,
           c->per_round, c->alpha, c->local_epochs, r->eligible);
    if (r->faulty_clients)
        printf(", %zu faulty (%s)", r->faulty_clients, flc_fault_name(c->fault));
    printf("\n\n%6s %8s %8s %8s %6s %6s %6s %6s %6s %9s %10s %11s\n", "round", "acc%", "loss",
           "train", "part", "miss", "rej", "late", "drop", "round_ms", "MiB", "cost_usd");
    size_t step = r->nrounds > 25 ? (r->nrounds + 19) / 20 : 1;
    printf("%6s %8.2f %8.4f %8s %6s %6s %6s %6s %6s %9s %10s %11s\n", "init",
           r->init_accuracy * 100, r->init_loss, "-", "-", "-", "-", "-", "-", "-", "-", "-");
    for (size_t i = 0; i < r->nrounds; i++) {
        const flc_sim_round_t *x = &r->rounds[i];
        if (i % step != step - 1 && i + 1 != r->nrounds && i != 0)
            continue;
        char train[16] = "-";
        if (x->train_loss >= 0)
            snprintf(train, sizeof train, "%.4f", x->train_loss);
        printf("%6u %8.2f %8.4f %8s %6zu %6zu %6zu %6zu %6zu %9.0f %10.2f %11.6f\n", x->round,
               x->accuracy * 100, x->loss, train, x->participants, x->missing,
               x->rejected, x->late, x->dropped, x->round_ms, (double)x->bytes / 1048576.0,
               x->cost_usd);
    }
    double best = -1;
    size_t best_r = 0;
    for (size_t i = 0; i < r->nrounds; i++)
        if (r->rounds[i].accuracy > best)
            best = r->rounds[i].accuracy, best_r = r->rounds[i].round;
    flc_cli_bytes(buf, sizeof buf, (double)r->bytes);
    printf("\nfinal accuracy %.2f%% (best %.2f%% at round %zu), %zu rounds in %.1f s, %s "
           "moved through the cache, cost $%.6f\n",
           r->nrounds ? r->rounds[r->nrounds - 1].accuracy * 100 : 0, best * 100, best_r,
           r->nrounds, r->wall_ms / 1000, buf, r->cost_usd);
    printf("driver peak memory %.1f MiB (%s)\n", self_peak_mb(),
           o->inproc ? "with the in-process clients" : "mergers included, client functions not");
    printf("history: rounds 1..%zu of job %s (RoundMeta, ModelUpdate per client, updates); "
           "global models: job %s.g\n", r->nrounds, c->job, c->job);
}

int flc_cmd_simulate(int argc, char **argv)
{
    if (flc_cli_wants_help(argc, argv)) {
        usage(stdout);
        return FLC_EXIT_OK;
    }
    opts_t o;
    memset(&o, 0, sizeof o);
    int rc = parse(argc, argv, &o);
    if (rc != FLC_EXIT_OK)
        return rc;
    flc_cli_conn_t conn;
    if ((rc = flc_cli_connect(&conn, flc_config_program(), NULL)) != FLC_EXIT_OK)
        return rc;
    o.c.redis = conn.url;
    flc_err_t e = {0};
    flc_pool_t *pool = NULL;
    if (!o.inproc) {
        char fn[PATH_MAX];
        find_fn(fn, sizeof fn);
        static const char *const env[] = {"OPENBLAS_NUM_THREADS=1", NULL};
        flc_pool_cfg_t pc;
        flc_pool_cfg_init(&pc);
        pc.fn_path = fn;
        pc.memory_mb = o.memory_mb;
        pc.timeout_ms = o.timeout_s * 1000u;
        pc.concurrency = o.concurrency;
        pc.max_warm = o.concurrency;
        pc.price_per_gb_s = o.price;
        pc.env = env;
        flc_config_pool_cfg(flc_config_program(), &pc); /* FLCACHE_POOL_MEM */
        if ((pool = flc_pool_new(&pc, &e)) == NULL) {
            flc_cli_error("simulate", "cannot start the function platform: %s", flc_err_msg(&e));
            flc_cli_disconnect(&conn);
            return FLC_EXIT_RUNTIME;
        }
        o.c.invoke = flc_sim_pool_invoke;
        o.c.invoke_user = pool;
    } else {
        o.c.invoke = flc_sim_invoke_inproc;
        o.c.invoke_user = &o.concurrency;
    }
    if (flc_sim_clear(conn.url, o.c.job, &e) != FLC_OK)
        flc_cli_error("simulate", "cannot clear an earlier run of %s: %s", o.c.job,
                      flc_err_msg(&e));
    flc_sim_result_t res;
    rc = flc_sim_run(&o.c, progress, &o, &res, &e);
    if (rc != FLC_OK)
        flc_cli_error("simulate", "%s", flc_err_msg(&e));
    if (res.nrounds > 0 || rc == FLC_OK) {
        flc_sim_cfg_t shown = o.c;
        flc_sim_cfg_finish(&shown, &e);
        o.c = shown;
        if (o.json) {
            cJSON *j = flc_sim_result_json(&o.c, &res);
            cJSON_AddNumberToObject(j, "driver_peak_rss_mb", self_peak_mb());
            char *t = j ? cJSON_PrintUnformatted(j) : NULL;
            if (t)
                printf("%s\n", t);
            cJSON_free(t);
            cJSON_Delete(j);
        } else {
            table(&o, &res);
        }
    }
    flc_sim_result_free(&res);
    flc_pool_free(pool);
    flc_cli_disconnect(&conn);
    return rc == FLC_OK ? FLC_EXIT_OK : FLC_EXIT_RUNTIME;
}
