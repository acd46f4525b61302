/* JSON-line output and small statistics for the benchmarks. */
#include "bench/bench_util.h"

#include <limits.h>
#include <stdio.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "cli/config.h"

void bench_emit(cJSON *obj)
{
    char *s = cJSON_PrintUnformatted(obj);
    if (s) {
        puts(s);
        fflush(stdout);
        cJSON_free(s);
    }
    cJSON_Delete(obj);
}

cJSON *bench_line(const char *bench, const char *name)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "bench", bench);
    cJSON_AddStringToObject(o, "case", name);
    return o;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_percentile(double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    double rank = p / 100.0 * (double)(n - 1);
    size_t lo = (size_t)rank;
    size_t hi = lo + 1 < n ? lo + 1 : lo;
    double f = rank - (double)lo;
    return v[lo] * (1 - f) + v[hi] * f;
}

double bench_median(double *v, size_t n)
{
    return bench_percentile(v, n, 50);
}

static flc_store_opts_t g_store_opts;
static flc_cold_opts_t g_cold_opts;

void bench_config(void)
{
    flc_err_t e = {0};
    if (flc_config_start(FLC_LOG_OFF, &e) != 0) {
        fprintf(stderr, "bench: %s\n", flc_err_msg(&e));
        exit(2);
    }
    flc_config_store_opts(flc_config_program(), &g_store_opts, &g_cold_opts);
}

const flc_store_opts_t *bench_store_opts(void)
{
    return &g_store_opts;
}

int bench_reps(int def)
{
    const char *s = getenv("FLCACHE_BENCH_REPS");
    int r = s ? atoi(s) : 0;
    return r > 0 ? r : def;
}

int bench_case_wanted(const char *list, const char *name)
{
    if (list == NULL || *list == '\0')
        return 1;
    size_t len = strlen(name);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t l = end ? (size_t)(end - p) : strlen(p);
        if (l == len && strncmp(p, name, len) == 0)
            return 1;
        p += l + (end != NULL);
    }
    return 0;
}

void bench_env_value(const char *env, const char *key, char *dst, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "%s=", key);
    const char *p = strstr(env, pat);
    dst[0] = '\0';
    if (p == NULL)
        return;
    p += strlen(pat);
    char end = ' ';
    if (*p == '\'')
        end = *p++;
    size_t n = 0;
    while (p[n] && p[n] != end && p[n] != '\n' && n + 1 < cap)
        n++;
    memcpy(dst, p, n);
    dst[n] = '\0';
}

void bench_cpu_times(double *busy, double *all)
{
    *busy = *all = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return;
    unsigned long long v[8] = {0};
    /* user nice system idle iowait irq softirq steal */
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]) == 8) {
        double hz = (double)sysconf(_SC_CLK_TCK);
        double b = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
        *busy = b / hz;
        *all = (b + (double)(v[3] + v[4])) / hz;
    }
    fclose(f);
}

int bench_run(const char *cmd, char *out, size_t cap)
{
    FILE *f = popen(cmd, "r");
    if (f == NULL)
        return -1;
    size_t n = 0, r;
    char sink[512];
    while (out && n + 1 < cap && (r = fread(out + n, 1, cap - 1 - n, f)) > 0)
        n += r;
    while (fread(sink, 1, sizeof sink, f) > 0)
        ;
    if (out)
        out[n] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void bench_fn_path(char *out, size_t len)
{
    const char *env = flc_config_program()->fn_path; /* FLCACHE_FN */
    if (env) {
        snprintf(out, len, "%s", env);
        return;
    }
    char self[PATH_MAX - 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    snprintf(out, len, "%s/../flcache-fn", n > 0 ? self : ".");
}

void bench_die(const char *bench, const char *what, const char *msg)
{
    fprintf(stderr, "%s: %s: %s\n", bench, what, msg);
    exit(1);
}
