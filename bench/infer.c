/* bench/infer: `flcache run infer` latency and throughput against the
 * number of partitions, pipeline (--split layers) and tensor-parallel
 * (--split columns), P = 1, 2, 4, 8. One JSON line per run: latency_ms (the
 * batch's wall time), throughput_samples_s, compute_ms and comm_ms summed
 * over the functions, peak_rss_mb (largest function), weights_mb_per_function,
 * cost_usd, max_rel_error and check_ok. Default: 8 layers of 2048 (128 MB of
 * weights), 64 samples, functions of 256 MB (P = 1 cannot hold the model:
 * its line says so); --tiny: 8 layers of 512, 16 samples. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bench/bench_util.h"

static double num(const cJSON *o, const char *k)
{
    const cJSON *it = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(it) ? it->valuedouble : 0;
}

int main(int argc, char **argv)
{
    bench_config();
    int tiny = argc > 1 && strcmp(argv[1], "--tiny") == 0;
    char self[PATH_MAX], flcache[PATH_MAX + 16];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    snprintf(flcache, sizeof flcache, "%s/../flcache", self);
    const char *shape = tiny ? "--size 512 --layers 8 --batch 16 --memory 256"
                             : "--size 2048 --layers 8 --batch 64 --memory 256";
    static const char *const splits[] = {"layers", "columns"};
    static const int ps[] = {1, 2, 4, 8};
    static char out[1 << 20];
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < 4; i++) {
            char cmd[PATH_MAX + 1024], name[64];
            snprintf(cmd, sizeof cmd, "%s run infer --workers %d --split %s %s --json 2>/dev/null",
                     flcache, ps[i], splits[s], shape);
            int rc = bench_run(cmd, out, sizeof out);
            cJSON *j = cJSON_Parse(out);
            snprintf(name, sizeof name, "%s/P%d", splits[s], ps[i]);
            cJSON *l = bench_line("infer", name);
            cJSON_AddStringToObject(l, "split", splits[s]);
            cJSON_AddNumberToObject(l, "partitions", ps[i]);
            cJSON_AddStringToObject(l, "shape", shape);
            const cJSON *m = cJSON_GetObjectItem(j, "metrics");
            cJSON_AddBoolToObject(l, "ok", rc == 0 && j != NULL);
            if (j == NULL || rc != 0) {
                const char *err = cJSON_GetStringValue(cJSON_GetObjectItem(j, "error"));
                cJSON_AddStringToObject(l, "error", err ? err : "no report");
            }
            if (m != NULL) {
                cJSON_AddNumberToObject(l, "latency_ms", num(m, "latency_ms"));
                cJSON_AddNumberToObject(l, "throughput_samples_s",
                                        num(m, "throughput_samples_s"));
                cJSON_AddNumberToObject(l, "weights_mb_per_function",
                                        num(m, "weights_mb_per_function"));
                cJSON_AddNumberToObject(l, "max_rel_error", num(m, "max_rel_error"));
            }
            if (j != NULL) {
                cJSON_AddNumberToObject(l, "single_ms", num(j, "single_ms"));
                cJSON_AddNumberToObject(l, "compute_ms", num(j, "compute_ms"));
                cJSON_AddNumberToObject(l, "comm_ms", num(j, "comm_ms"));
                cJSON_AddNumberToObject(l, "peak_rss_mb", num(j, "peak_rss_kb") / 1024);
                cJSON_AddNumberToObject(l, "cost_usd", num(j, "cost_usd"));
                cJSON_AddBoolToObject(l, "check_ok",
                                      cJSON_IsTrue(cJSON_GetObjectItem(j, "check_ok")));
            }
            bench_emit(l);
            cJSON_Delete(j);
        }
    return 0;
}
