/* `flcache run WORKLOAD`: the serverless workloads beside FL (issue 19,
 * jobs/job.h, docs/workloads.md) on the local function platform, with the
 * intermediate data in the cache. Prints a progress line, the summary table
 * (per function: compute, communication, peak memory, cost) and the result
 * check against one process; --json prints the report as one object. Exit 0
 * only when every function succeeded and the check passed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "cli/config.h"
#include "cli/opt.h"
#include "cli/platform.h"
#include "jobs/job.h"
#include "runtime/cost.h"
#include "runtime/pool.h"

typedef struct run_opts {
    flc_job_opts_t j;
    long long seed;
    int memory_mb;
    int timeout_s;
    double price;
    int json;
    int quiet;
    int no_check;
    char job[128];
} run_opts_t;

static const char *const infer_splits[] = {"layers", "columns", NULL};

static const flc_opt_t options[] = {
    {.name = "WORKLOAD", .type = FLC_OPT_STR, FLC_OPT_AT(run_opts_t, j.workload),
     .choices = flc_job_workloads, .flags = FLC_OPT_POSITIONAL | FLC_OPT_REQUIRED,
     .help = "wordcount, matmul, conv, mandelbrot, forest or infer"},
    {.name = "workers", .type = FLC_OPT_INT, .meta = "W", FLC_OPT_AT(run_opts_t, j.workers),
     .imin = 1, .imax = 1024, .help = "functions (mappers, grid cells, row slabs, ...)"},
    {.name = "size", .type = FLC_OPT_INT, .meta = "N", FLC_OPT_AT(run_opts_t, j.size),
     .imin = 0, .imax = 1LL << 40, .def = "the workload's",
     .help = "wordcount: corpus bytes (default all); matmul: N of N x N (1024, at most "
             "8192); conv: image side (512); mandelbrot: width (1024); forest: training "
             "images (5000); infer: layer width (1024)"},
    {.name = "reducers", .type = FLC_OPT_INT, .meta = "R", FLC_OPT_AT(run_opts_t, j.reducers),
     .imin = 0, .imax = 4096, .def = "W", .help = "wordcount: reducer partitions"},
    {.name = "corpus", .type = FLC_OPT_STR, .meta = "PATH", FLC_OPT_AT(run_opts_t, j.corpus),
     .def = "/usr/share/games/fortunes (Debian package fortunes)",
     .help = "wordcount: a text file or a directory of them"},
    {.name = "top", .type = FLC_OPT_INT, .meta = "K", FLC_OPT_AT(run_opts_t, j.top),
     .imin = 0, .imax = 100000, .help = "wordcount: most frequent words shown"},
    {.name = "batch", .type = FLC_OPT_INT, .meta = "B", FLC_OPT_AT(run_opts_t, j.batch),
     .imin = 1, .imax = 65536, .help = "conv: images in the batch; infer: samples"},
    {.name = "layers", .type = FLC_OPT_INT, .meta = "L", FLC_OPT_AT(run_opts_t, j.layers),
     .imin = 0, .imax = 4096, .def = "8", .help = "infer: MLP layers of width --size"},
    {.name = "split", .type = FLC_OPT_STR, .meta = "HOW", FLC_OPT_AT(run_opts_t, j.split),
     .choices = infer_splits, .def = "layers",
     .help = "infer: layers (a pipeline of stages) or columns (tensor-parallel)"},
    {.name = "micro", .type = FLC_OPT_INT, .meta = "M", FLC_OPT_AT(run_opts_t, j.micro),
     .imin = 0, .imax = 1 << 20, .def = "W",
     .help = "infer with layers: micro-batches the pipeline overlaps"},
    {.name = "tiles", .type = FLC_OPT_INT, .meta = "T", FLC_OPT_AT(run_opts_t, j.tiles),
     .imin = 1, .imax = 256, .help = "mandelbrot: tiles per side (T x T tiles)"},
    {.name = "iters", .type = FLC_OPT_INT, .meta = "I", FLC_OPT_AT(run_opts_t, j.iters),
     .imin = 1, .imax = 65535, .help = "mandelbrot: maximum iterations"},
    {.name = "dynamic", .type = FLC_OPT_FLAG, FLC_OPT_AT(run_opts_t, j.dynamic),
     .help = "mandelbrot: functions take tiles from a queue in the cache instead of a "
             "fixed share"},
    {.name = "png", .type = FLC_OPT_STR, .meta = "FILE", FLC_OPT_AT(run_opts_t, j.png),
     .def = "none", .help = "mandelbrot: write the image (PNG; PGM when FILE ends in .pgm)"},
    {.name = "trees", .type = FLC_OPT_INT, .meta = "T", FLC_OPT_AT(run_opts_t, j.trees),
     .imin = 1, .imax = 100000, .help = "forest: trees in all"},
    {.name = "depth", .type = FLC_OPT_INT, .meta = "D", FLC_OPT_AT(run_opts_t, j.depth),
     .imin = 1, .imax = 64, .help = "forest: maximum tree depth"},
    {.name = "data", .type = FLC_OPT_STR, .meta = "DIR", FLC_OPT_AT(run_opts_t, j.data_dir),
     .def = "$FLCACHE_DATA_DIR, else the Debian package dataset-fashion-mnist",
     .help = "forest: Fashion-MNIST IDX gzip files"},
    {.name = "seed", .type = FLC_OPT_INT, .meta = "S", FLC_OPT_AT(run_opts_t, seed),
     .imin = 0, .imax = 1LL << 53, .help = "seed of the inputs and the forest"},
    {.name = "job", .type = FLC_OPT_STR, .meta = "NAME", FLC_OPT_AT(run_opts_t, j.job),
     .def = "run-<time>-<pid>", .help = "job name of the intermediate data (removed at the end)"},
    {.name = "no-check", .type = FLC_OPT_FLAG, FLC_OPT_AT(run_opts_t, no_check),
     .help = "skip the single-process computation and the comparison"},
    {.name = "memory", .type = FLC_OPT_INT, .meta = "MB", FLC_OPT_AT(run_opts_t, memory_mb),
     .imin = 64, .imax = 1048576,
     .help = "memory of each function: enforced by the platform and used for the cost"},
    {.name = "price", .type = FLC_OPT_NUM, .meta = "USD", FLC_OPT_AT(run_opts_t, price),
     .min = 0, .min_open = 1, .def = FLC_OPT_STRING(FLC_LAMBDA_X86_PRICE_GB_S) ", AWS Lambda x86",
     .help = "price per GB-second"},
    {.name = "timeout", .type = FLC_OPT_INT, .meta = "SEC", FLC_OPT_AT(run_opts_t, timeout_s),
     .imin = 1, .imax = 86400, .help = "limit of each function invocation"},
    {.name = "json", .type = FLC_OPT_FLAG, FLC_OPT_AT(run_opts_t, json),
     .help = "print the report as one JSON object on stdout"},
    FLC_CLI_PLATFORM_OPTION,
    {.name = "quiet", .type = FLC_OPT_FLAG, FLC_OPT_AT(run_opts_t, quiet),
     .help = "no progress line on stderr"},
    {0},
};

static const flc_opt_cmd_t run_cmd = {
    .prog = "flcache run",
    .synopsis = "WORKLOAD [--workers W] [--size N] [workload options] [--json]",
    .about =
        "Runs one of the classic serverless workloads on W functions of the local\n"
        "platform, their intermediate data in the cache (one hash tag per partition):\n"
        "  wordcount   MapReduce word count of a Debian text corpus, shuffle in the cache\n"
        "  matmul      C = A x B blocked over a grid of functions (OpenBLAS sgemm)\n"
        "  conv        2-D convolution of an image batch split by rows with halos\n"
        "  mandelbrot  tiles rendered by functions (static or --dynamic), assembled to PNG\n"
        "  forest      random forest: functions train trees, a combiner votes\n"
        "  infer       an MLP's forward pass split by layers (pipeline) or columns\n"
        "Every run is checked against the same computation in one process\n"
        "(docs/workloads.md).\n",
    .epilog = FLC_CLI_ENV_HELP
    "exit codes: 0 ran and the check passed, 1 runtime error or failed check, 2 usage error\n",
    .opts = options,
};

int flc_cmd_run(int argc, char **argv)
{
    run_opts_t o;
    memset(&o, 0, sizeof o);
    flc_job_opts_init(&o.j);
    o.seed = (long long)o.j.seed;
    o.j.data_dir = flc_config_program()->data_dir;
    o.memory_mb = 1024;
    o.timeout_s = 900;
    o.price = FLC_LAMBDA_X86_PRICE_GB_S;
    int rc;
    if (!flc_opt_parse(&run_cmd, argc, argv, &o, sizeof o, &rc))
        return rc;
    char jobbuf[128];
    o.j.job = flc_cli_job_name(o.j.job, "run", jobbuf, sizeof jobbuf);
    o.j.seed = (uint64_t)o.seed;
    o.j.check = !o.no_check;
    o.j.progress = !o.quiet && !o.json;
    flc_cli_conn_t conn;
    if ((rc = flc_cli_connect(&conn, flc_config_program(), NULL)) != FLC_EXIT_OK)
        return rc;
    o.j.redis = conn.url;
    /* Every function of a phase runs at once (reducers wait for nothing,
     * but the platform's concurrency is the W of the run). */
    flc_pool_t *pool = flc_cli_pool_start("run", &conn, (unsigned)o.j.workers,
                                          (unsigned)o.memory_mb, (unsigned)o.timeout_s, o.price);
    if (pool == NULL) {
        flc_cli_disconnect(&conn);
        return FLC_EXIT_RUNTIME;
    }
    flc_job_report_t rep;
    flc_err_t e = {0};
    int jr = flc_job_run(&o.j, pool, conn.store, &rep, &e);
    flc_pool_free(pool);
    flc_cli_disconnect(&conn);
    if (o.json) {
        cJSON *j = flc_job_report_json(&rep);
        if (jr != FLC_OK)
            cJSON_AddStringToObject(j, "error", flc_err_msg(&e));
        flc_cli_print_json(j, 1);
        cJSON_Delete(j);
    } else if (jr == FLC_OK) {
        flc_job_report_print(&rep, stdout);
    }
    if (jr != FLC_OK)
        flc_cli_error("run", "%s", flc_err_msg(&e));
    rc = jr != FLC_OK || (rep.checked && !rep.check_ok) ? FLC_EXIT_RUNTIME : FLC_EXIT_OK;
    if (jr == FLC_OK && rep.checked && !rep.check_ok)
        flc_cli_error("run", "check failed: %s", rep.check);
    flc_job_report_clear(&rep);
    return rc;
}
