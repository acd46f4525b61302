/* The options of every flcache command, as cli/opt.h parses them: --help
 * lists each command's options with their defaults; every usage error
 * (unknown option, missing value, not a number, out of range) exits 2 with
 * the one wording that names the option and points at --help; the checks
 * the review asked for (query --k 0, query --rounds 1:-1, simulate --krum-f
 * beyond K-3); and cheap valid runs still work. Usage errors are found
 * before any cache is touched, so most cases start nothing. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness.h"

static char g_bin[1024], g_fn[1024];
static char g_out[65536];

/* Runs `flcache <args>` (or flcache-fn with fn) without FLCACHE_REDIS;
 * output (stdout and stderr) in g_out. */
static int run_bin(const char *bin, const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "env -u FLCACHE_REDIS %s %s", bin, args);
    return flc_t_run(cmd, g_out, sizeof g_out);
}

static int run(const char *args)
{
    return run_bin(g_bin, args);
}

static int has(const char *s)
{
    return strstr(g_out, s) != NULL;
}

/* Checks that `flcache <args>` is a usage error: exit 2 and the message
 * "flcache <cmd>: <msg> (see flcache <cmd> --help)". */
static void usage_error(const char *cmd, const char *args, const char *msg)
{
    char full[512], line[1024];
    snprintf(full, sizeof full, "%s %s", cmd, args);
    snprintf(line, sizeof line, "flcache %s: %s (see flcache %s --help)", cmd, msg, cmd);
    int rc = run(full);
    int ok = rc == 2 && has(line);
    if (!ok)
        fprintf(stderr, "# it said: %s", g_out);
    EXPECT(ok, "`flcache %s` exits 2 saying \"%s\" (exit %d)", full, line, rc);
}

TEST(help)
{
    int rc = run("simulate --help");
    EXPECT(rc == 0 && has("usage: flcache simulate") && has("--per-round K") &&
              has("clients sampled per round (default 10)") && has("(default fedavg)") &&
              has("multi-krum") && has("uniform:LO:HI") && has("label-flip") &&
              has("(default 0.0000166667, AWS Lambda x86)") && has("FLCACHE_FN") &&
              has("exit codes: 0 every round ran"),
          "simulate --help: options with defaults, strategies, stragglers, faults, "
          "environment, exit codes");
    rc = run("train --help");
    EXPECT(rc == 0 && has("--workers W") && has("worker functions (default 4)") &&
              has("--comm C") && has("(default reduce-scatter)") && has("--step-timeout MS") &&
              has("(default 120000)") && has("--hidden N") && has("(default 128)") &&
              has("(default 64)"),
          "train --help lists its options with their defaults");
    rc = run("query --help");
    EXPECT(rc == 0 && has("usage: flcache query KIND") && has("kinds:") && has("schedule") &&
              has("--job J") && has("--rounds A:B") && has("clusters (default 2)") &&
              has("--threads T") && has("(default one per node)"),
          "query --help lists kinds, options and defaults");
    rc = run("store --help");
    EXPECT(rc == 0 && has("usage: flcache store stats") && has("--json"),
          "store --help explains stats and --json");
    rc = run("up --help");
    EXPECT(rc == 0 && has("--dir DIR") && has("--port N") && has("--maxmemory BYTES") &&
              has("(default none)"),
          "up --help lists --dir, --port, --maxmemory with defaults");
    rc = run("down --help");
    EXPECT(rc == 0 && has("--dir DIR") && !has("--port"), "down --help lists only --dir");
    rc = run("version --help");
    EXPECT(rc == 0 && has("usage: flcache version"), "version --help exits 0");
    rc = run_bin(g_fn, "--help");
    EXPECT(rc == 0 && has("--local") && has("EVENT") && has("echo") && has("worker") &&
              has("client") && has("aggregator") && has("query") && !has("probe"),
          "flcache-fn --help lists --local, EVENT and all five roles (no test-only probe)");
}

TEST(usage_errors)
{
    static const char *const cmds[] = {"train", "simulate", "query", "store", "up", "down",
                                       "version", "report"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        usage_error(cmds[i], "--foo", "unknown option '--foo'");
    usage_error("simulate", "--job", "--job needs a value");
    usage_error("query", "history --job j --k", "--k needs a value");
    usage_error("simulate", "--per-round x",
                "--per-round needs an integer in 1..10000000, not 'x'");
    usage_error("train", "--lr abc", "--lr needs a number > 0, not 'abc'");
    usage_error("train", "--workers 0", "--workers needs an integer in 1..1024, not '0'");
    usage_error("simulate", "--dropout 1", "--dropout needs a number in [0, 1), not '1'");
    usage_error("simulate", "--rounds 2.5", "--rounds needs an integer in 1..1000000, not '2.5'");
    usage_error("up", "--port 70000", "--port needs an integer in 1..65535, not '70000'");
    usage_error("simulate", "--strategy fedsgd",
                "--strategy needs fedavg, fedprox, fedadam, fedyogi, median, trimmed-mean, "
                "krum or multi-krum, not 'fedsgd'");
    usage_error("train", "--model cnn", "--model needs softmax or mlp, not 'cnn'");
    usage_error("simulate", "--per 3", "unknown option '--per'");  /* no abbreviations */
    usage_error("simulate", "--json=1", "--json takes no value");
    usage_error("store", "stats extra", "unexpected argument 'extra'");
    usage_error("store", "", "missing SUBCOMMAND (stats, ls, rm or expire)");
    usage_error("query", "bogus --job j", "KIND needs history, client, norms, similarity, "
                "outliers, clusters, personalize, contribution, schedule, accuracy, incentives "
                "or faults, not 'bogus'");
    usage_error("query", "history", "missing --job J");
    usage_error("report", "-o x.html", "missing --job J");
    /* what cannot run on a remote platform is refused before anything starts */
    usage_error("train", "--comm ps --platform lambda",
                "--comm ps runs its parameter server here, which workers on --platform lambda "
                "cannot reach; use --comm reduce-scatter or allreduce-one there");
    usage_error("simulate", "--inproc --platform openwhisk",
                "--inproc runs the clients as threads here; it cannot be combined with "
                "--platform openwhisk");
    int rc = run_bin(g_fn, "--bogus");
    EXPECT(rc == 2 && has("flcache-fn: unknown option '--bogus' (see flcache-fn --help)"),
          "flcache-fn --bogus: exit 2, the same wording (exit %d)", rc);
    rc = run_bin(g_fn, "notjson");
    EXPECT(rc == 2 && has("flcache-fn: EVENT needs a JSON object"),
          "flcache-fn with a non-JSON event: exit 2 (exit %d)", rc);
}

TEST(review_fixes)
{
    /* k-means needs K in 1..n and schedule at least one client. */
    usage_error("query", "clusters --job j --round 1 --k 0",
                "--k needs an integer in 1..100000000, not '0'");
    /* Round numbers are uint32, 0 is a job's initial model. */
    usage_error("query", "history --job j --rounds 1:-1",
                "--rounds needs A:B, round numbers in 0..4294967295 with A <= B, not '1:-1'");
    usage_error("query", "history --job j --rounds 3:2",
                "--rounds needs A:B, round numbers in 0..4294967295 with A <= B, not '3:2'");
    usage_error("query", "history --job j --rounds 1:4294967296",
                "--rounds needs A:B, round numbers in 0..4294967295 with A <= B, "
                "not '1:4294967296'");
    int rc = run("query history --job nojob --rounds 0:3");
    EXPECT(rc != 2, "--rounds 0:3 is not a usage error (exit %d)", rc);
    /* Krum scores each update by its K-f-2 nearest neighbours: f <= K-3. */
    usage_error("simulate", "--strategy krum --per-round 10 --krum-f 8",
                "--krum-f needs an integer in 0..7 (K-3, K = --per-round 10), not '8'");
    usage_error("simulate", "--krum-f 4 --strategy multi-krum --per-round 6",
                "--krum-f needs an integer in 0..3 (K-3, K = --per-round 6), not '4'");
    /* f = K-3 passes the Krum check (--clients 5 then stops the run: K > N). */
    rc = run("simulate --strategy krum --krum-f 9 --per-round 12 --clients 5");
    EXPECT(rc == 2 && !has("--krum-f") && has("per-round must be in 1..5"),
          "--krum-f 9 given before --per-round 12 passes: checked after all options");
    rc = run("simulate --strategy fedavg --krum-f 50 --clients 5");
    EXPECT(rc == 2 && !has("--krum-f"), "--krum-f is not checked against K without Krum");
}

TEST(valid_runs)
{
    int rc = run("version");
    EXPECT(rc == 0 && has("flcache") && has("hiredis"), "version still prints the versions");
    rc = run("store stats --json");
    EXPECT(rc == 0 && has("\"keys\""), "store stats --json runs on a private server (exit %d)",
          rc);
    rc = run("store -- stats");
    EXPECT(rc == 0 && has("keys"), "store -- stats: words after -- are arguments (exit %d)", rc);
}

/* The binaries the cases run, found once in the runner. */
static void setup(void)
{
    snprintf(g_bin, sizeof g_bin, "%s/flcache", flc_t_build_dir());
    snprintf(g_fn, sizeof g_fn, "%s/flcache-fn", flc_t_build_dir());
    if (access(g_bin, X_OK) != 0 || access(g_fn, X_OK) != 0)
        flc_t_fatal("%s or %s is not built", g_bin, g_fn);
}

TEST_LIST_SHARED(setup, NULL, TEST_ENTRY(help), TEST_ENTRY(usage_errors),
                 TEST_ENTRY(review_fixes), TEST_ENTRY(valid_runs))
