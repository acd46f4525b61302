/* The flcache command line as a user runs it: --help, usage errors (exit 2),
 * runtime errors (exit 1) that name what was wrong, `store stats` against the
 * embedded server (started and removed again) and against a real one holding
 * a job, `up` / `down`, and `version`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/clock.h"
#include "cache/store.h"
#include "tests/harness.h"

static char g_bin[1024];
static char g_out[65536];

static int run(const char *env, const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "env -u FLCACHE_REDIS %s %s %s", env ? env : "", g_bin, args);
    return flc_t_run(cmd, g_out, sizeof g_out);
}

TEST(usage)
{
    int rc = run(NULL, "--help");
    CHECK(rc == 0 && strstr(g_out, "commands:") && strstr(g_out, "store") &&
              strstr(g_out, "FLCACHE_REDIS") && strstr(g_out, "exit codes"),
          "--help exits 0 and lists commands, FLCACHE_REDIS and exit codes");
    rc = run(NULL, "");
    CHECK(rc == 2 && strstr(g_out, "usage:"), "no command: usage on stderr, exit 2 (got %d)", rc);
    rc = run(NULL, "frobnicate");
    CHECK(rc == 2 && strstr(g_out, "'frobnicate'"), "unknown command named, exit 2 (got %d)", rc);
    rc = run(NULL, "store stats --bogus");
    CHECK(rc == 2 && strstr(g_out, "--bogus"), "unknown option named, exit 2 (got %d)", rc);
    rc = run(NULL, "store --help");
    CHECK(rc == 0 && strstr(g_out, "stats"), "`store --help` exits 0 and explains stats");
    rc = run(NULL, "version");
    CHECK(rc == 0 && strstr(g_out, "flcache") && strstr(g_out, "hiredis"),
          "version prints flcache and library versions");
}

TEST(embedded_cache)
{
    int rc = run(NULL, "store stats --json");
    cJSON *j = rc == 0 ? cJSON_Parse(g_out) : NULL;
    const cJSON *url = cJSON_GetObjectItem(j, "cache");
    const cJSON *keys = cJSON_GetObjectItem(j, "keys");
    int ok = j && cJSON_IsString(url) && strncmp(url->valuestring, "unix://", 7) == 0 &&
             cJSON_IsNumber(keys) && keys->valuedouble == 0;
    CHECK(ok, "no FLCACHE_REDIS: stats --json from a private server on a unix socket, 0 keys");
    if (ok) {
        /* unix://localhost/tmp/flcache-XXXX/redis.sock -> its directory */
        char dir[512];
        const char *path = strchr(url->valuestring + 7, '/');
        snprintf(dir, sizeof dir, "%s", path ? path : "");
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        struct stat sb;
        CHECK(dir[0] && stat(dir, &sb) != 0, "its temp directory %s is gone after exit", dir);
    }
    cJSON_Delete(j);
    rc = run(NULL, "store stats");
    CHECK(rc == 0 && strstr(g_out, "embedded") && strstr(g_out, "keys"),
          "plain stats says the cache is embedded and empty");
}

TEST(real_server)
{
    flc_fixture_t fx;
    flc_fixture_start(&fx, 0);
    flc_err_t e = {0};
    flc_store_t *st = flc_store_open(fx.unix_url, NULL, &e);
    if (st == NULL)
        flc_t_fatal("connect: %s", flc_err_msg(&e));
    float v[100];
    flc_t_fill(v, 100, 1);
    for (uint32_t r = 3; r <= 5; r++) {
        flc_shard_t sh = {.round = r, .num_shards = 1, .count = 100, .model_size = 100,
                          .values = v, .num_samples = 10};
        snprintf(sh.job, sizeof sh.job, "cli-job");
        snprintf(sh.client, sizeof sh.client, "c1");
        if (flc_store_put_update(st, &sh) != 0)
            flc_t_fatal("put: %s", flc_store_errstr(st));
    }
    char env[600];
    snprintf(env, sizeof env, "FLCACHE_REDIS=%s", fx.tcp_url);
    int rc = run(env, "store stats --json");
    cJSON *j = rc == 0 ? cJSON_Parse(g_out) : NULL;
    const cJSON *jobs = cJSON_GetObjectItem(j, "jobs");
    const cJSON *j0 = cJSON_GetArrayItem(jobs, 0);
    CHECK(cJSON_GetArraySize(jobs) == 1 &&
              strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(j0, "job")), "cli-job") == 0 &&
              cJSON_GetNumberValue(cJSON_GetObjectItem(j0, "rounds")) == 3 &&
              cJSON_GetNumberValue(cJSON_GetObjectItem(j0, "first_round")) == 3 &&
              cJSON_GetNumberValue(cJSON_GetObjectItem(j0, "last_round")) == 5 &&
              cJSON_GetNumberValue(cJSON_GetObjectItem(j, "keys")) > 3,
          "FLCACHE_REDIS over TCP: stats lists job cli-job with rounds 3..5");
    cJSON_Delete(j);
    flc_store_close(st);
    flc_fixture_stop(&fx);

    rc = run(env, "store stats");
    CHECK(rc == 1 && strstr(g_out, "127.0.0.1"),
          "server gone: exit 1 and the message names the address (got %d)", rc);
    rc = run("FLCACHE_REDIS=unix:///nonexistent/redis.sock", "store stats");
    CHECK(rc == 1 && strstr(g_out, "/nonexistent/redis.sock"),
          "missing socket: exit 1 naming the path");
    rc = run("FLCACHE_REDIS=http://example", "store stats");
    CHECK(rc == 1 && strstr(g_out, "http"), "unsupported URL scheme named, exit 1 (got %d)", rc);
}

TEST(up_down)
{
    char dir[] = "/tmp/flcache-cli-test-XXXXXX";
    if (mkdtemp(dir) == NULL)
        flc_t_fatal("mkdtemp failed");
    char args[600];
    snprintf(args, sizeof args, "up --dir %s/srv", dir);
    int rc = run(NULL, args);
    char url[700];
    snprintf(url, sizeof url, "unix://%s/srv/redis.sock", dir);
    CHECK(rc == 0 && strstr(g_out, url), "up prints the URL %s", url);
    flc_err_t e = {0};
    flc_store_t *st = flc_store_open(url, NULL, &e);
    CHECK(st != NULL, "the server from `up` answers after the command exited");
    flc_store_close(st);
    rc = run(NULL, args);
    CHECK(rc == 0 && strstr(g_out, "already"), "a second up reuses the running server");
    snprintf(args, sizeof args, "down --dir %s/srv", dir);
    rc = run(NULL, args);
    st = flc_store_open(url, NULL, &e);
    CHECK(rc == 0 && st == NULL, "down stops it (connect now fails: %s)", e.msg);
    flc_store_close(st);
    rc = run(NULL, args);
    CHECK(rc == 1 && strstr(g_out, "no server"), "down with nothing running: exit 1, says so");
    snprintf(args, sizeof args, "down --purge --dir %s/srv", dir);
    rc = run(NULL, args); /* the append-only file `down` kept (issue 13) */
    CHECK(rc == 0 && rmdir(dir) == 0, "down --purge deletes the kept history and the directory");
}

/* Ctrl-C during a long command: the embedded redis-server and its temp
 * directory must be gone afterwards. */
TEST(ctrl_c)
{
    pid_t pid = fork();
    if (pid == 0) {
        setenv("FLCACHE_REDIS", "", 1);
        unsetenv("FLCACHE_REDIS");
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execl(g_bin, g_bin, "simulate", "--clients", "40", "--per-round", "4", "--rounds",
              "100000", "--subset", "2000", "--inproc", "--job", "ctrlc", (char *)NULL);
        _exit(127);
    }
    /* Find its redis-server child and the socket it serves. */
    pid_t rpid = 0;
    char sock[512] = "";
    for (int t = 0; t < 200 && rpid == 0; t++) {
        flc_sleep_ms(50);
        char cmd[64], out[64];
        snprintf(cmd, sizeof cmd, "pgrep -P %d redis-server", (int)pid);
        if (flc_t_run(cmd, out, sizeof out) == 0)
            rpid = (pid_t)atoi(out);
    }
    if (rpid > 0) {
        char path[64], args[4096];
        snprintf(path, sizeof path, "/proc/%d/cmdline", (int)rpid);
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(args, 1, sizeof args - 1, f) : 0;
        if (f)
            fclose(f);
        args[n] = '\0';
        /* redis-server retitles itself "redis-server unixsocket:<path>" */
        for (size_t i = 0; i < n; i++)
            if (args[i] == '\0')
                args[i] = ' ';
        const char *u = strstr(args, "unixsocket:"), *v = strstr(args, "--unixsocket ");
        if (u) /* after start-up */
            sscanf(u + 11, "%511s", sock);
        else if (v) /* still starting: its arguments as given */
            sscanf(v + 13, "%511s", sock);
    }
    flc_sleep_ms(300); /* let it get into its rounds */
    kill(pid, SIGINT);
    int st = 0;
    waitpid(pid, &st, 0);
    flc_sleep_ms(100);
    char *slash = strrchr(sock, '/');
    if (slash)
        *slash = '\0';
    struct stat sb;
    CHECK(rpid > 0 && sock[0] && (WIFSIGNALED(st) || WEXITSTATUS(st) != 0) &&
              kill(rpid, 0) != 0 && stat(sock, &sb) != 0,
          "Ctrl-C during simulate: flcache stops, its redis-server %d is gone, and so is %s",
          (int)rpid, sock);
}

static void setup(void)
{
    snprintf(g_bin, sizeof g_bin, "%s/flcache", flc_t_build_dir());
    if (access(g_bin, X_OK) != 0)
        flc_t_fatal("%s is not built", g_bin);
}

TEST_LIST_SHARED(setup, NULL, TEST_ENTRY(usage), TEST_ENTRY(embedded_cache),
                 TEST_ENTRY(real_server), TEST_ENTRY(up_down), TEST_ENTRY(ctrl_c))
