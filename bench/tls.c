/* bench/tls: what rediss:// (cache/tls.h: a socketpair and an OpenSSL proxy
 * thread per connection) costs against plaintext TCP to the same server in
 * the same run. One redis-server listens on both a plain and a TLS port
 * (a throwaway CA and certificate made with openssl in a temporary
 * directory); 1 MB values go through
 *   store  flc_store_put_update / get_update of a 1 MB shard (chunked,
 *          pipelined: the path flcache uses)
 *   raw    one SET / GET of a 1 MB string
 * one JSON line per (case, op) with plain_gbps, tls_gbps and
 * ratio_tls_to_plain (the baseline is the plaintext run).
 *
 * Usage: bench/tls [--quick]   (FLCACHE_BENCH_REPS scales repetitions) */
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "bench/bench_util.h"
#include "cache/store.h"
#include "cache/store_ops.h"
#include "cache/store_raw.h"

#define MB (1024 * 1024)

static void die(const char *what, const char *msg)
{
    bench_die("bench/tls", what, msg);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0)
        die("port", "no free loopback port");
    close(fd);
    return ntohs(a.sin_port);
}

/* Seconds per rep of put and get: [0] put, [1] get (medians in ms). */
typedef struct {
    double gbps[2], p50_ms[2];
} result_t;

static result_t run(flc_store_t *st, int raw, const float *v, int reps)
{
    size_t n = MB / sizeof(float);
    double *t[2] = {calloc(reps, sizeof(double)), calloc(reps, sizeof(double))};
    double total[2] = {0, 0};
    float *dst = malloc(MB);
    for (int i = 0; i < reps; i++) {
        flc_shard_t sh = {.round = (uint32_t)i, .num_shards = 1, .count = n, .model_size = n,
                          .values = (float *)v};
        snprintf(sh.job, sizeof sh.job, "btls");
        snprintf(sh.client, sizeof sh.client, "w0");
        redisReply *r = NULL;
        const char *argv[] = {"SET", "btls:raw", (const char *)v};
        size_t lens[] = {3, 8, MB};
        uint64_t t0 = flc_now_ns();
        int rc = raw ? flc_store_command(st, &r, 3, argv, lens) : flc_store_put_update(st, &sh);
        if (rc != 0)
            die("put", flc_store_errstr(st));
        freeReplyObject(r);
        r = NULL;
        uint64_t t1 = flc_now_ns();
        flc_shard_t out;
        rc = raw ? flc_store_commandf(st, &r, "GET btls:raw")
                 : flc_store_get_update(st, "btls", (uint32_t)i, 0, "w0", &out, dst, n);
        uint64_t t2 = flc_now_ns();
        if (rc != 0)
            die("get", flc_store_errstr(st));
        if (raw && (r->type != REDIS_REPLY_STRING || r->len != MB || memcmp(r->str, v, MB)))
            die("get", "raw value differs");
        if (!raw && memcmp(dst, v, MB) != 0)
            die("get", "shard differs");
        freeReplyObject(r);
        if (!raw)
            flc_store_delete_round(st, "btls", (uint32_t)i);
        t[0][i] = (double)(t1 - t0) / 1e6;
        t[1][i] = (double)(t2 - t1) / 1e6;
        total[0] += t[0][i];
        total[1] += t[1][i];
    }
    result_t res;
    for (int k = 0; k < 2; k++) {
        res.gbps[k] = (double)MB * reps / (total[k] / 1e3) / 1e9;
        res.p50_ms[k] = bench_median(t[k], (size_t)reps);
        free(t[k]);
    }
    free(dst);
    return res;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    bench_config();
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    int reps = bench_reps(quick ? 5 : 100);
    char dir[] = "/tmp/flc-bench-tls-XXXXXX";
    if (mkdtemp(dir) == NULL)
        die("mkdtemp", "failed");
    char cmd[2048];
    const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    snprintf(cmd, sizeof cmd,
             "cd %s && (openssl req -x509 %s -keyout ca.key -out ca.pem -days 1 -subj /CN=b-ca "
             "&& printf 'subjectAltName=IP:127.0.0.1\\n' > san.cnf "
             "&& openssl req %s -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 "
             "&& openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out srv.pem -days 1 -extfile san.cnf) >/dev/null 2>&1",
             dir, ec, ec);
    if (system(cmd) != 0)
        die("openssl", "cannot make the certificates");
    int plain = free_port(), tls = free_port();
    pid_t pid = fork();
    if (pid == 0) {
        char p[16], t[16], cert[128], key[128], ca[128], log[128];
        snprintf(p, sizeof p, "%d", plain);
        snprintf(t, sizeof t, "%d", tls);
        snprintf(cert, sizeof cert, "%s/srv.pem", dir);
        snprintf(key, sizeof key, "%s/srv.key", dir);
        snprintf(ca, sizeof ca, "%s/ca.pem", dir);
        snprintf(log, sizeof log, "%s/redis.log", dir);
        execlp("redis-server", "redis-server", "--port", p, "--tls-port", t, "--bind",
               "127.0.0.1", "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file",
               ca, "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", dir,
               "--logfile", log, (char *)NULL);
        _exit(127);
    }
    char purl[128], turl[256];
    snprintf(purl, sizeof purl, "redis://127.0.0.1:%d", plain);
    snprintf(turl, sizeof turl, "rediss://127.0.0.1:%d?cacert=%s/ca.pem", tls, dir);
    flc_store_t *st[2] = {NULL, NULL};
    flc_err_t e = {0};
    for (int i = 0; i < 300 && (st[0] == NULL || st[1] == NULL); i++) {
        if (st[0] == NULL)
            st[0] = flc_store_open(purl, bench_store_opts(), &e);
        if (st[1] == NULL)
            st[1] = flc_store_open(turl, bench_store_opts(), &e);
        if (st[0] == NULL || st[1] == NULL)
            flc_sleep_ms(10);
    }
    if (st[0] == NULL || st[1] == NULL) {
        kill(pid, SIGKILL);
        die("open", e.msg);
    }
    float *v = malloc(MB);
    for (size_t i = 0; i < MB / sizeof(float); i++)
        v[i] = (float)i * 0.5f - 3.0f;
    const char *ops[] = {"put", "get"};
    for (int raw = 0; raw < 2; raw++) {
        run(st[0], raw, v, reps < 3 ? reps : 3); /* warm both up */
        run(st[1], raw, v, reps < 3 ? reps : 3);
        result_t p = run(st[0], raw, v, reps), t = run(st[1], raw, v, reps);
        for (int k = 0; k < 2; k++) {
            cJSON *o = bench_line("tls", raw ? "raw_1mb" : "store_1mb");
            cJSON_AddStringToObject(o, "op", ops[k]);
            cJSON_AddNumberToObject(o, "bytes", MB);
            cJSON_AddNumberToObject(o, "reps", reps);
            cJSON_AddNumberToObject(o, "plain_gbps", p.gbps[k]);
            cJSON_AddNumberToObject(o, "tls_gbps", t.gbps[k]);
            cJSON_AddNumberToObject(o, "plain_p50_ms", p.p50_ms[k]);
            cJSON_AddNumberToObject(o, "tls_p50_ms", t.p50_ms[k]);
            cJSON_AddNumberToObject(o, "ratio_tls_to_plain", t.gbps[k] / p.gbps[k]);
            bench_emit(o);
        }
    }
    free(v);
    flc_store_close(st[0]);
    flc_store_close(st[1]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench/tls: could not remove %s\n", dir);
    return 0;
}
