/* `flcache simulate`'s options: the option table with its --help text,
 * and their reading into the simulation config with the checks that need
 * several options at once (usage errors, exit 2, before anything runs).
 * Apart from cmd_simulate.c because the table is most of the command's
 * text and changes with every new option, not with how a run goes. */
#include <stdint.h>

#include "cli/cli.h"
#include "cli/cmd_simulate.h"
#include "cli/opt.h"
#include "cli/platform.h"
#include "cli/rule_opt.h"
#include "clients/client.h"
#include "ml/dataset_idx.h"
#include "ml/model.h"
#include "runtime/cost.h"

static const char *const strategies[] = {"fedavg",       "fedprox", "fedadam",    "fedyogi",
                                         "median",       "trimmed-mean", "krum", "multi-krum",
                                         NULL};
static const char *const faults[] = {"sign-flip", "label-flip", "noise", NULL};
static const char *const modes[] = {"sync", "async", "sync-clock", NULL};

/* --strategy: the option parser's choice callback (value or -1). */
static int strategy_parse(const char *v)
{
    int s;
    return flc_sim_strategy_parse(v, &s) == FLC_OK ? s : -1;
}

/* --fault: a kind of fault; "none" is what --faulty 0 means already. */
static int fault_parse(const char *v)
{
    int f;
    return flc_client_fault_parse(v, &f) == FLC_OK && f > FLC_FAULT_NONE ? f : -1;
}

/* --ttl DURATION */
static int ttl_parse(const char *v, void *dest, const char **need)
{
    *need = "a duration like 90m, 12h, 7d or 2w";
    flc_simulate_opts_t *o = dest;
    return flc_cli_duration_ms(v, &o->ttl_ms) == 0 && o->ttl_ms > 0 ? 0 : -1;
}

static const flc_opt_t options[] = {
    {.name = "clients", .type = FLC_OPT_INT, .meta = "N",
     FLC_OPT_AT(flc_simulate_opts_t, c.clients),
     .imin = 1, .imax = 10000000, .help = "clients the data is split over"},
    {.name = "per-round", .type = FLC_OPT_INT, .meta = "K",
     FLC_OPT_AT(flc_simulate_opts_t, c.per_round),
     .imin = 1, .imax = 10000000, .help = "clients sampled per round"},
    {.name = "rounds", .type = FLC_OPT_INT, .meta = "R", FLC_OPT_AT(flc_simulate_opts_t, c.rounds),
     .imin = 1, .imax = 1000000, .help = "rounds"},
    {.name = "alpha", .type = FLC_OPT_NUM, .meta = "A", FLC_OPT_AT(flc_simulate_opts_t, c.alpha),
     .min = 0, .min_open = 1, .help = "Dirichlet concentration of the label split"},
    {.name = "local-epochs", .type = FLC_OPT_INT, .meta = "E",
     FLC_OPT_AT(flc_simulate_opts_t, c.local_epochs), .imin = 1, .imax = 10000,
     .help = "passes over its own data each client makes"},
    {.name = "strategy", .type = FLC_OPT_CHOICE, .meta = "S",
     FLC_OPT_AT(flc_simulate_opts_t, c.strategy), .choices = strategies, .parse = strategy_parse,
     .help = "fedavg     sample-weighted mean of the client deltas\n"
             "fedprox    fedavg, clients add mu/2 ||w - w_global||^2\n"
             "fedadam    server Adam step on the mean delta (--server-lr)\n"
             "fedyogi    server Yogi step on the mean delta (--server-lr)\n"
             "median     coordinate-wise median of the deltas\n"
             "trimmed-mean  coordinate-wise mean without the --trim\n"
             "           fraction of extremes on each side\n"
             "krum       delta closest to its k-f-2 neighbours (--krum-f)\n"
             "multi-krum mean of the k-f deltas with the best Krum scores"},
    {.name = "init", .type = FLC_OPT_STR, .meta = "FILE", FLC_OPT_AT(flc_simulate_opts_t, c.init),
     .def = "seeded initialization",
     .help = "start from the model in FILE (.npy or .safetensors, as `flcache export` "
             "writes it); its length must be the model's parameter count"},
    {.name = "dp-quantile", .type = FLC_OPT_NUM, .meta = "Q",
     FLC_OPT_AT(flc_simulate_opts_t, c.dp_quantile),
     .min = 0, .max = 1, .min_open = 1, .max_open = 1, .def = "off: fixed clip",
     .help = "adaptive clipping (Andrew et al. 2021): the --rule's clip=C starts the clip "
             "norm, which then follows the Q-quantile of the update norms"},
    {.name = "ldp-clip", .type = FLC_OPT_NUM, .meta = "C",
     FLC_OPT_AT(flc_simulate_opts_t, c.ldp_clip), .min = 0, .def = "0: off",
     .help = "local differential privacy: each client clips its update to L2 norm C "
             "before it pushes"},
    {.name = "ldp-noise", .type = FLC_OPT_NUM, .meta = "SIGMA",
     FLC_OPT_AT(flc_simulate_opts_t, c.ldp_noise), .min = 0, .def = "0: off",
     .help = "local DP: each client then adds Gaussian noise of sd SIGMA x C; epsilon per "
             "round in the round metadata"},
    {.name = "rule", .type = FLC_OPT_STR, .meta = "SPEC", FLC_OPT_AT(flc_simulate_opts_t, c.rule),
     .def = "the strategy's rule",
     .help = "the merge rule as a spec of the README's rule table: NAME or "
             "NAME:key=value,... (fedavg, mean, fedavgm, fedadam, fedyogi, fedadagrad, "
             "median, trimmed-mean, krum, multi-krum, bulyan; e.g. bulyan:f=1, "
             "fedavgm:server_lr=1,momentum=0.9); with it --strategy only says how clients "
             "train (fedavg or fedprox)"},
    {.name = "encoding", .type = FLC_OPT_STR, .meta = "E",
     FLC_OPT_AT(flc_simulate_opts_t, c.encoding), .def = "f32",
     .help = "how clients encode their updates: f32, fp16, bf16, int8 (a scale per 256 "
             "elements) or topk:FRACTION (the largest FRACTION of each shard, <= 0.5, the "
             "rest carried to the next round in the cache: error feedback); docs/simulate.md"},
    FLC_OPT_MODEL_OPTIONS(flc_simulate_opts_t, c),
    {.name = "mu", .type = FLC_OPT_NUM, .meta = "M",
     FLC_OPT_AT(flc_simulate_opts_t, c.mu), .min = 0,
     .def = "0.01 with fedprox, else 0", .help = "FedProx proximal weight"},
    {.name = "lr", .type = FLC_OPT_NUM, .meta = "L",
     FLC_OPT_AT(flc_simulate_opts_t, c.lr), .min = 0,
     .min_open = 1, .def = "0.1 softmax, 0.05 mlp", .help = "client SGD learning rate"},
    {.name = "batch", .type = FLC_OPT_INT, .meta = "B", FLC_OPT_AT(flc_simulate_opts_t, c.batch),
     .imin = 1, .imax = 65536, .def = "32", .help = "client minibatch"},
    {.name = "server-lr", .type = FLC_OPT_NUM, .meta = "ETA",
     FLC_OPT_AT(flc_simulate_opts_t, c.server_lr),
     .min = 0, .min_open = 1, .def = "0.03", .help = "fedadam/fedyogi server learning rate"},
    {.name = "trim", .type = FLC_OPT_NUM, .meta = "T",
     FLC_OPT_AT(flc_simulate_opts_t, c.trim), .min = 0,
     .max = 0.5, .min_open = 1, .max_open = 1, .def = "0.2",
     .help = "trimmed-mean fraction cut per side"},
    {.name = "krum-f", .type = FLC_OPT_INT, .meta = "F", FLC_OPT_AT(flc_simulate_opts_t, c.krum_f),
     .imin = 0, .imax = 1000000, .def = "(k-3)/2",
     .help = "Byzantine clients Krum tolerates; at most K-3, so Krum keeps a neighbour"},
    {.name = "dropout", .type = FLC_OPT_NUM, .meta = "P",
     FLC_OPT_AT(flc_simulate_opts_t, c.dropout), .min = 0, .max = 1, .max_open = 1,
     .help = "probability a sampled client drops out and never reports; it is listed as "
             "missing"},
    {.name = "straggler-ms", .type = FLC_OPT_STR, .meta = "D",
     FLC_OPT_AT(flc_simulate_opts_t, c.straggler), .def = "none",
     .help = "delay of each client before it pushes: none, fixed:MS, uniform:LO:HI, exp:MEAN, "
             "slow:FRAC:MS (a fraction FRAC of the sampled clients waits MS)"},
    {.name = "deadline-ms", .type = FLC_OPT_INT, .meta = "MS",
     FLC_OPT_AT(flc_simulate_opts_t, c.deadline_ms), .imin = 1, .imax = 86400000,
     .def = "none: wait for every client",
     .help = "the round closes MS after it starts; later updates are rejected as late but "
             "kept in the cache for queries. The deadline counts from the round's start, so "
             "use --concurrency >= K with it."},
    {.name = "faulty", .type = FLC_OPT_NUM, .meta = "FRAC",
     FLC_OPT_AT(flc_simulate_opts_t, c.faulty),
     .min = 0, .max = 1, .help = "fraction of the N clients that are faulty"},
    {.name = "fault", .type = FLC_OPT_CHOICE, .meta = "F", FLC_OPT_AT(flc_simulate_opts_t, fault),
     .choices = faults, .parse = fault_parse, .def = "sign-flip",
     .help = "what faulty clients do: sign-flip (push -scale x delta), label-flip (train on "
             "label 9-y), noise (push Gaussian noise of scale x the delta's norm)"},
    {.name = "fault-scale", .type = FLC_OPT_NUM, .meta = "X",
     FLC_OPT_AT(flc_simulate_opts_t, c.fault_scale), .min = 0, .min_open = 1, .def = "4",
     .help = "scale of sign-flip and noise"},
    {.name = "seed", .type = FLC_OPT_INT, .meta = "S",
     FLC_OPT_AT(flc_simulate_opts_t, c.seed), .imin = 0,
     .imax = 1LL << 53, .help = "seed of the split, sampling, faults, init"},
    {.name = "shards", .type = FLC_OPT_INT, .meta = "S",
     FLC_OPT_AT(flc_simulate_opts_t, c.num_shards),
     .imin = 1, .imax = 4096, .def = "1", .help = "reduce-scatter shards of the model"},
    {.name = "job", .type = FLC_OPT_STR, .meta = "NAME", FLC_OPT_AT(flc_simulate_opts_t, c.job),
     .def = "sim-<time>-<pid>",
     .help = "job name in the cache; global models are stored as job NAME/g, round r "
             "(0 = initial)"},
    {.name = "resume", .type = FLC_OPT_STR, .meta = "JOB", FLC_OPT_AT(flc_simulate_opts_t, resume),
     .def = "a new run",
     .help = "continue job JOB from its last closed round (a run that stopped, was killed, or "
             "asks more --rounds: the job's total): its options, global model, server "
             "optimizer and sampling state come from the cache, options given here are added "
             "(those that change the result are refused), and the result is bit-identical to "
             "an uninterrupted run"},
    {.name = "ttl", .type = FLC_OPT_CUSTOM, .meta = "DURATION", .custom = ttl_parse,
     .def = "none: kept until `flcache store rm`", .help = FLC_CLI_TTL_HELP},
    {.name = "subset", .type = FLC_OPT_INT, .meta = "N", FLC_OPT_AT(flc_simulate_opts_t, c.subset),
     .imin = 0, .imax = 100000000, .def = "all",
     .help = "split only the first N training samples"},
    {.name = "test-subset", .type = FLC_OPT_INT, .meta = "N",
     FLC_OPT_AT(flc_simulate_opts_t, c.test_subset),
     .imin = 0, .imax = 100000000, .def = "all 10000",
     .help = "evaluate on the first N test samples"},
    {.name = "data", .type = FLC_OPT_STR, .meta = "DIR",
     FLC_OPT_AT(flc_simulate_opts_t, c.data_dir),
     .def = "$FLCACHE_DATA_DIR or " FLC_FASHION_DIR, .help = "Fashion-MNIST IDX gzip files"},
    {.name = "concurrency", .type = FLC_OPT_INT, .meta = "C",
     FLC_OPT_AT(flc_simulate_opts_t, concurrency),
     .imin = 1, .imax = 1024, .def = "min(K, 16)", .help = "client functions running at once"},
    {.name = "memory", .type = FLC_OPT_INT, .meta = "MB",
     FLC_OPT_AT(flc_simulate_opts_t, memory_mb),
     .imin = 128, .imax = 1048576, .help = "memory of each function, enforced and billed"},
    {.name = "price", .type = FLC_OPT_NUM, .meta = "USD",
     FLC_OPT_AT(flc_simulate_opts_t, price), .min = 0,
     .def = FLC_OPT_STRING(FLC_LAMBDA_X86_PRICE_GB_S) ", AWS Lambda x86",
     .help = "price per GB-second"},
    {.name = "timeout", .type = FLC_OPT_INT, .meta = "SEC",
     FLC_OPT_AT(flc_simulate_opts_t, timeout_s),
     .imin = 1, .imax = 86400, .help = "longest a round may take"},
    {.name = "mode", .type = FLC_OPT_CHOICE, .meta = "M", FLC_OPT_AT(flc_simulate_opts_t, mode),
     .choices = modes, .def = "sync",
     .help = "sync        rounds of K clients on the wall clock\n"
             "async       FedBuff: C clients train at once on a simulated clock (local time:\n"
             "            1 ms per sample and epoch plus --straggler-ms), each arrival is\n"
             "            folded with its staleness weight, a server step every --buffer\n"
             "            arrivals; --rounds counts server steps (versions)\n"
             "sync-clock  FedAvg rounds on the same simulated clock (async's baseline)"},
    {.name = "staleness", .type = FLC_OPT_STR, .meta = "F",
     FLC_OPT_AT(flc_simulate_opts_t, a.staleness), .def = "constant",
     .help = "async: weight of a delta that missed tau versions: constant (1), poly:A "
             "((1+tau)^-A; FedBuff uses poly:0.5), hinge:A,B (1 up to B, then "
             "1/(A(tau-B)+1))"},
    {.name = "max-staleness", .type = FLC_OPT_INT, .meta = "T",
     FLC_OPT_AT(flc_simulate_opts_t, a.max_staleness), .imin = 0, .imax = 1000000, .def = "none",
     .help = "async: refuse deltas more than T versions old (stored and recorded as "
             "rejected, kept for queries, not merged)"},
    {.name = "buffer", .type = FLC_OPT_INT, .meta = "K", FLC_OPT_AT(flc_simulate_opts_t, buffer),
     .imin = 1, .imax = 10000000, .def = "--per-round",
     .help = "async: arrivals folded per server step"},
    {.name = "memory-budget", .type = FLC_OPT_INT, .meta = "MB",
     FLC_OPT_AT(flc_simulate_opts_t, memory_budget_mb), .imin = 1, .imax = 1048576, .def = "64",
     .help = "MiB of updates each merger holds at once to derive the round's statistics "
             "(Gram partials, read in blocks of coordinates to fit)"},
    {.name = "inproc", .type = FLC_OPT_FLAG, FLC_OPT_AT(flc_simulate_opts_t, inproc),
     .help = "run clients as threads of this process instead of functions"},
    {.name = "json", .type = FLC_OPT_FLAG, FLC_OPT_AT(flc_simulate_opts_t, json),
     .help = "print the result as one JSON object on stdout"},
    {.name = "quiet", .type = FLC_OPT_FLAG,
     FLC_OPT_AT(flc_simulate_opts_t, quiet), .help = "no progress lines"},
    FLC_CLI_PLATFORM_OPTION,
    {0},
};

static const flc_opt_cmd_t simulate_cmd = {
    .prog = "flcache simulate",
    .synopsis =
        "[--clients N] [--per-round K] [--rounds R] [--alpha A]\n"
        "                        [--local-epochs E] [--strategy S] [--model softmax|mlp]\n"
        "                        [--mu M] [--lr L] [--batch B] [--dropout P]\n"
        "                        [--straggler-ms DIST] [--deadline-ms MS]\n"
        "                        [--faulty FRAC --fault sign-flip|label-flip|noise]\n"
        "                        [--seed S] [--job NAME] [--json] [more options below]",
    .about =
        "Simulates federated learning on Fashion-MNIST: the training set is split over N\n"
        "clients with a Dirichlet(alpha) label split (small alpha: each client sees few\n"
        "classes; large alpha: close to IID). Each round samples K clients (seeded), runs\n"
        "each as a `client` function that trains the global model on its own samples for\n"
        "E local epochs and pushes its delta to the cache, merges the deltas next to the\n"
        "data with the strategy's rule (reduce-scatter mergers, streaming for fedavg,\n"
        "fedprox and the server optimizers), steps the global model and evaluates it on\n"
        "the test set. Every round is recorded in the cache: participants, missing,\n"
        "rejected, per-client samples, loss, update norm, duration and ground truth,\n"
        "test accuracy and loss, hyperparameters, timings, bytes moved and cost.\n",
    .epilog =
        FLC_CLI_ENV_HELP
        "FLCACHE_NODES (host:port=netns:/redis.sock,...; `scripts/testbed.sh env` prints\n"
        "it): on a Redis Cluster, each shard's merger runs next to the node owning the\n"
        "shard, in its network namespace, over its unix socket (docs/cluster.md).\n"
        "exit codes: 0 every round ran, 1 runtime error, 2 usage error\n",
    .opts = options,
};

/* Reads the options into *o and checks them together. Returns 1 to go on,
 * else 0 with the exit code in *rc (help printed, or a usage error). */
int flc_simulate_parse(int argc, char **argv, flc_simulate_opts_t *o, int *rc)
{
    flc_sim_cfg_init(&o->c);
    o->c.data_dir = flc_config_program()->data_dir; /* FLCACHE_DATA_DIR; --data wins */
    o->memory_mb = 1024;
    o->timeout_s = 600;
    o->price = FLC_LAMBDA_X86_PRICE_GB_S;
    o->fault = -1;
    o->a.max_staleness = -1;
    if (!flc_opt_parse(&simulate_cmd, argc, argv, o, sizeof *o, rc))
        return 0;
    *rc = FLC_EXIT_USAGE;
    if (o->fault >= 0 && o->c.faulty == 0) {
        flc_opt_usage_error(&simulate_cmd,
                            "--fault needs --faulty FRAC (the fraction of faulty clients)");
        return 0;
    }
    o->c.fault = o->fault >= 0 ? o->fault : FLC_FAULT_NONE;
    if (o->c.rule != NULL && !flc_cli_rule_check(&simulate_cmd, o->c.rule, o->c.strategy,
                                                 o->c.per_round, o->c.server_lr, o->c.trim,
                                                 o->c.krum_f))
        return 0;
    /* Krum scores each update by its k-f-2 nearest neighbours
     * (aggregator/merge_krum.c): f <= K-3 leaves at least one. */
    int krum = o->c.strategy == FLC_SIM_KRUM || o->c.strategy == FLC_SIM_MULTI_KRUM;
    if (krum && o->c.krum_f >= 0 && o->c.krum_f > o->c.per_round - 3) {
        if (o->c.per_round < 3)
            flc_opt_usage_error(&simulate_cmd, "--krum-f needs --per-round 3 or more with %s, "
                                "not %d", flc_sim_strategy_name(o->c.strategy), o->c.per_round);
        else
            flc_opt_usage_error(&simulate_cmd, "--krum-f needs an integer in 0..%d (K-3, "
                                "K = --per-round %d), not '%d'", o->c.per_round - 3,
                                o->c.per_round, o->c.krum_f);
        return 0;
    }
    o->c.job = flc_cli_job_name(o->c.job, "sim", o->job, sizeof o->job);
    if (o->inproc && flc_cli_platform() != FLC_PLATFORM_LOCAL) {
        flc_opt_usage_error(&simulate_cmd, "--inproc runs the clients as threads here; it "
                            "cannot be combined with --platform %s",
                            flc_platform_name(flc_cli_platform()));
        return 0;
    }
    o->a.mode = (flc_async_mode_t)o->mode;
    if (o->a.mode == FLC_ASYNC_MODE_SYNC &&
        (o->buffer || o->a.staleness || o->a.max_staleness >= 0)) {
        flc_opt_usage_error(&simulate_cmd, "--buffer, --staleness and --max-staleness need "
                            "--mode async");
        return 0;
    }
    flc_async_stale_t st;
    flc_err_t se = {0};
    if (flc_async_stale_parse(o->a.staleness, &st, &se) != FLC_OK) {
        flc_opt_usage_error(&simulate_cmd, "--staleness: %s", flc_err_msg(&se));
        return 0;
    }
    o->a.buffer = (size_t)o->buffer;
    if (o->a.mode != FLC_ASYNC_MODE_SYNC && flc_async_cfg_check(&o->c, &o->a, &se) != FLC_OK) {
        flc_opt_usage_error(&simulate_cmd, "--mode %s: %s", flc_async_mode_name(o->a.mode),
                            flc_err_msg(&se));
        return 0;
    }
    if (o->a.mode != FLC_ASYNC_MODE_SYNC) {
        /* --concurrency is how many train at once (simulated); the functions
         * that run a buffer's clients are at most 16 as in sync mode. */
        o->a.concurrency = o->concurrency;
        unsigned k = o->buffer ? (unsigned)o->buffer : (unsigned)o->c.per_round;
        o->concurrency = o->concurrency && o->concurrency < k ? o->concurrency : k;
        o->concurrency = o->concurrency < 16 ? o->concurrency : 16;
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
        flc_opt_usage_error(&simulate_cmd, "%s", flc_err_msg(&e));
        return 0;
    }
    *rc = FLC_EXIT_OK;
    return 1;
}
