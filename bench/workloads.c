/* bench/workloads: the `flcache run` workloads (jobs/, docs/workloads.md)
 * on W = 1, 2, 4, 8 functions of the local pool (real flcache-fn
 * processes, one redis-server). One JSON line per (workload, W):
 *   wall_ms            driver: inputs to the cache, every phase, result read back
 *   single_ms          the same result computed in this process, same run
 *   ratio              wall_ms / single_ms (the price of going serverless here)
 *   speedup_vs_w1      wall_ms of W = 1 / wall_ms
 *   compute_ms/comm_ms summed over the functions; compute_comm_ratio
 *   peak_rss_mb        the largest peak resident set of any function
 *   cost_usd           what the platform billed (GB-s at --memory MB)
 *   check_ok           the result equals the single-process one (or matmul
 *                      within its bound)
 *   metrics            the workload's own (shuffle bytes, GFLOP/s, skew, ...)
 * mandelbrot runs twice per W: static and dynamic (queue) tile assignment.
 * forest adds one line with python3-sklearn's accuracy on the same data
 * (jobs/forest_sklearn.py), when it is installed.
 * The machine's cores are shared by the W functions, Redis and the
 * driver: on 2 cores speedups cap near 2 whatever the design.
 *
 * Usage: bench/workloads [--tiny] [--workers 1,2,4,8] [--only NAME]
 *                        [--memory MB]
 * Default sizes: wordcount the whole fortunes corpus, matmul N = 2048,
 * conv 16 images of 1024^2, mandelbrot 2048 wide (16 x 16 tiles, 2000
 * iterations), forest 10000 images, 32 trees of depth 14. --tiny: sizes
 * that finish in seconds (to see that it works). FLCACHE_REDIS points at a
 * server, else a private one is started; FLCACHE_FN at the function
 * binary, else ../flcache-fn next to this program. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/event.h"
#include "bench/bench_util.h"
#include "cache/embed.h"
#include "cache/store.h"
#include "cli/config.h"
#include "jobs/job.h"
#include "ml/dataset_idx.h"
#include "runtime/pool.h"

static void die(const char *what, const char *msg)
{
    bench_die("bench/workloads", what, msg);
}


typedef struct bench {
    const char *fn;
    const char *url;
    unsigned memory;
    flc_store_t *s;
} bench_t;

/* One measurement: a fresh pool (every run pays its cold starts alike). */
static int measure(bench_t *b, flc_job_opts_t *o, double w1_ms, double *wall)
{
    static const char *const env[] = {"OPENBLAS_NUM_THREADS=1", NULL};
    flc_pool_cfg_t pc;
    flc_pool_cfg_init(&pc);
    pc.fn_path = b->fn;
    pc.memory_mb = b->memory;
    pc.concurrency = (unsigned)o->workers;
    pc.timeout_ms = 3600000;
    pc.env = env;
    flc_config_pool_cfg(flc_config_program(), &pc); /* FLCACHE_POOL_MEM */
    flc_err_t e = {0};
    flc_pool_t *pool = flc_pool_new(&pc, &e);
    if (pool == NULL)
        die("pool", flc_err_msg(&e));
    char job[64];
    snprintf(job, sizeof job, "bench-%s-%d-%d", o->workload, o->workers, (int)getpid());
    o->job = job;
    o->redis = b->url;
    flc_job_report_t r;
    int rc = flc_job_run(o, pool, b->s, &r, &e);
    flc_pool_free(pool);
    cJSON *l = bench_line("workloads", o->workload);
    cJSON_AddNumberToObject(l, "workers", o->workers);
    if (strcmp(o->workload, "mandelbrot") == 0)
        cJSON_AddStringToObject(l, "assignment", o->dynamic ? "dynamic" : "static");
    if (rc != FLC_OK) {
        cJSON_AddStringToObject(l, "error", flc_err_msg(&e));
    } else {
        cJSON_AddNumberToObject(l, "wall_ms", r.wall_ms);
        cJSON_AddNumberToObject(l, "single_ms", r.single_ms);
        cJSON_AddNumberToObject(l, "ratio", r.single_ms > 0 ? r.wall_ms / r.single_ms : 0);
        cJSON_AddNumberToObject(l, "speedup_vs_w1", w1_ms > 0 ? w1_ms / r.wall_ms : 1);
        cJSON_AddNumberToObject(l, "compute_ms", r.compute_ms);
        cJSON_AddNumberToObject(l, "comm_ms", r.comm_ms);
        cJSON_AddNumberToObject(l, "compute_comm_ratio",
                                r.comm_ms > 0 ? r.compute_ms / r.comm_ms : 0);
        cJSON_AddNumberToObject(l, "peak_rss_mb", (double)r.peak_rss_kb / 1024.0);
        cJSON_AddNumberToObject(l, "cost_usd", r.cost_usd);
        cJSON_AddNumberToObject(l, "cache_mb", (double)r.cache_bytes / 1048576.0);
        cJSON_AddBoolToObject(l, "check_ok", r.checked && r.check_ok);
        cJSON_AddStringToObject(l, "check", r.check);
        cJSON *m = cJSON_Duplicate(r.metrics, 1);
        cJSON_DeleteItemFromObject(m, "top");
        cJSON_AddItemToObject(l, "metrics", m);
        *wall = r.wall_ms;
    }
    bench_emit(l);
    flc_job_report_clear(&r);
    return rc;
}

/* python3-sklearn's forest on the same data: one line. */
static void sklearn_line(const flc_job_opts_t *o)
{
    if (system("/usr/bin/python3 -c 'import sklearn' 2>/dev/null") != 0)
        return;
    char self[PATH_MAX - 64], cmd[PATH_MAX + 256];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    /* the source tree's script: FLCACHE_SOURCE_DIR, else the build dir's parent */
    const char *src = getenv("FLCACHE_SOURCE_DIR");
    long long m = o->size / 2 < 500 ? 500 : o->size / 2 > 10000 ? 10000 : o->size / 2;
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s%s/jobs/forest_sklearn.py "
             "%s %lld %lld %d %d %llu", src ? src : self, src ? "" : "/../..",
             flc_data_fashion_dir(o->data_dir), o->size, m, o->trees, o->depth,
             (unsigned long long)o->seed);
    FILE *p = popen(cmd, "r");
    char out[512] = "";
    if (p != NULL) {
        if (fgets(out, sizeof out, p) == NULL)
            out[0] = '\0';
        pclose(p);
    }
    cJSON *j = cJSON_Parse(out);
    cJSON *l = bench_line("workloads", "forest_sklearn");
    cJSON_AddNumberToObject(l, "accuracy", flc_ev_num(j, "accuracy", -1));
    cJSON_AddNumberToObject(l, "trees", o->trees);
    cJSON_AddNumberToObject(l, "max_depth", o->depth);
    cJSON_AddNumberToObject(l, "train_samples", (double)o->size);
    bench_emit(l);
    cJSON_Delete(j);
}

int main(int argc, char **argv)
{
    bench_config();
    int ws[16] = {1, 2, 4, 8}, nw = 4, tiny = 0;
    unsigned memory = 1024;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--tiny") == 0) {
            tiny = 1;
        } else if (strcmp(a, "--only") == 0 && v) {
            only = argv[++i];
        } else if (strcmp(a, "--memory") == 0 && v) {
            memory = (unsigned)atoi(argv[++i]);
        } else if (strcmp(a, "--workers") == 0 && v) {
            nw = 0;
            for (char *p = argv[++i]; *p && nw < 16;) {
                ws[nw++] = (int)strtol(p, &p, 10);
                if (*p == ',')
                    p++;
                else if (*p)
                    die("--workers", "expected a list like 1,2,4,8");
            }
        } else {
            fprintf(stderr, "usage: bench/workloads [--tiny] [--workers 1,2,4,8] "
                            "[--only NAME] [--memory MB]\n");
            return 2;
        }
    }
    flc_err_t e = {0};
    flc_embed_t *srv = NULL;
    bench_t b = {.memory = memory, .url = flc_config_program()->redis}; /* FLCACHE_REDIS */
    if (b.url == NULL) {
        if ((srv = flc_embed_start(NULL, &e)) == NULL)
            die("redis-server", flc_err_msg(&e));
        b.url = flc_embed_url(srv);
    }
    if ((b.s = flc_store_open(b.url, bench_store_opts(), &e)) == NULL)
        die("store", flc_err_msg(&e));
    char fn[PATH_MAX];
    bench_fn_path(fn, sizeof fn);
    b.fn = fn;
    int failed = 0;
    for (const char *const *w = flc_job_workloads; *w; w++) {
        if (only && strcmp(only, *w) != 0)
            continue;
        for (int dyn = 0; dyn <= (strcmp(*w, "mandelbrot") == 0); dyn++) {
            double w1 = 0;
            flc_job_opts_t o;
            for (int k = 0; k < nw; k++) {
                flc_job_opts_init(&o);
                o.workload = *w;
                o.workers = ws[k];
                o.dynamic = dyn;
                o.data_dir = flc_config_program()->data_dir;
                if (strcmp(*w, "wordcount") == 0) {
                    o.size = tiny ? 200000 : 0;
                } else if (strcmp(*w, "matmul") == 0) {
                    o.size = tiny ? 128 : 2048;
                } else if (strcmp(*w, "conv") == 0) {
                    o.size = tiny ? 64 : 1024;
                    o.batch = tiny ? 2 : 16;
                } else if (strcmp(*w, "mandelbrot") == 0) {
                    o.size = tiny ? 128 : 2048;
                    o.tiles = tiny ? 4 : 16;
                    o.iters = tiny ? 200 : 2000;
                } else {
                    o.size = tiny ? 1000 : 10000;
                    o.trees = tiny ? 8 : 32;
                    o.depth = tiny ? 8 : 14;
                }
                double wall = 0;
                if (measure(&b, &o, w1, &wall) != FLC_OK)
                    failed = 1;
                if (k == 0)
                    w1 = wall;
            }
            if (strcmp(*w, "forest") == 0)
                sklearn_line(&o);
        }
    }
    flc_store_close(b.s);
    flc_embed_stop(srv);
    return failed;
}
