/* No password in any message (issue 13, finding 2): real connects that fail,
 * with a known password in the URL, and a grep of everything the user sees.
 * - the library's open error: refused port, wrong password (user and no
 *   user), an unreachable cluster seed, a TLS URL with a missing CA, a
 *   malformed URL, a unix socket with ?password=;
 * - the same URLs through `flcache store ls` (stderr and stdout);
 * - flcache-fn given a client event whose "redis" fails (refused, wrong
 *   password, malformed): its result JSON and stderr;
 * - a simulate through the function pool at FLCACHE_LOG=debug against a
 *   server that needs the password: the pool's and the driver's logs.
 * One shared redis-server, given a password by the cases that need one. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <unistd.h>

#include "base/log.h"
#include "cache/store.h"
#include "runtime/pool.h"
#include "cache/store_raw.h"
#include "tests/harness.h"

#define PW "Sekr1tPw42xyz"   /* never to be seen */
#define GOOD "RightPw99abc"  /* the server's, once set */

static flc_fixture_t fx;
static char g_out[262144];
static char g_sock[256];

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    flc_fixture_start(&fx, 0);
    snprintf(g_sock, sizeof g_sock, "%s", fx.unix_url + strlen("unix://"));
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

/* Runs cmd (stdout and stderr into g_out) and checks neither password is
 * in it. */
static void run_clean(const char *what, const char *cmd)
{
    int rc = flc_t_run(cmd, g_out, sizeof g_out);
    printf("    # %s: exit %d: %.300s\n", what, rc, g_out);
    EXPECT(strstr(g_out, PW) == NULL && strstr(g_out, GOOD) == NULL,
           "%s: no password in its output (%zu bytes)", what, strlen(g_out));
}

/* Gives the shared server the password GOOD for the default user (and a
 * user u with it), as a deployment would. */
static void require_password(void)
{
    flc_err_t e = {0};
    char url[400];
    snprintf(url, sizeof url, "%s?password=" GOOD, fx.unix_url);
    flc_store_t *s = flc_store_open(url, NULL, &e); /* set by an earlier case */
    if (s == NULL)
        s = flc_store_open(fx.unix_url, NULL, &e);
    CHECK(s != NULL, "connect to set the password (%s)", e.msg);
    redisReply *r;
    CHECK(flc_store_commandf(s, &r, "ACL SETUSER u on >" GOOD " ~* &* +@all") == FLC_OK,
          "user u");
    freeReplyObject(r);
    CHECK(flc_store_commandf(s, &r, "CONFIG SET requirepass " GOOD) == FLC_OK, "requirepass");
    freeReplyObject(r);
    flc_store_close(s);
}

/* URLs that fail to open, each holding PW. */
static void bad_urls(char urls[][512], size_t *n)
{
    size_t k = 0;
    snprintf(urls[k++], 512, "redis://u:" PW "@127.0.0.1:1");
    snprintf(urls[k++], 512, "redis://:" PW "@127.0.0.1:1/3");
    snprintf(urls[k++], 512, "redis://u:" PW "@127.0.0.1:1?cluster=yes");
    snprintf(urls[k++], 512, "rediss://u:" PW "@127.0.0.1:1?cacert=/nonexistent/ca.pem");
    snprintf(urls[k++], 512, "rediss://u:" PW "@127.0.0.1:1");
    snprintf(urls[k++], 512, "redis://u:" PW "@[::1:99");
    snprintf(urls[k++], 512, "unix:///nonexistent/redis.sock?password=" PW);
    snprintf(urls[k++], 512, "unix://u:" PW "@%s", g_sock);          /* wrong password */
    snprintf(urls[k++], 512, "unix://%s?password=" PW, g_sock);       /* default user */
    snprintf(urls[k++], 512, "unix://%s?password=" PW "&cluster=yes", g_sock);
    *n = k;
}

TEST(open_errors_hide_the_password)
{
    require_password();
    char urls[16][512];
    size_t n;
    bad_urls(urls, &n);
    for (size_t i = 0; i < n; i++) {
        flc_err_t e = {0};
        flc_store_t *s = flc_store_open(urls[i], NULL, &e);
        printf("    # %s\n", e.msg);
        EXPECT(s == NULL && e.code != FLC_OK, "URL %zu fails to open", i);
        EXPECT(strstr(e.msg, PW) == NULL && strstr(e.msg, GOOD) == NULL,
               "URL %zu: the error names no password", i);
        flc_store_close(s);
    }
}

TEST(cli_errors_hide_the_password)
{
    require_password();
    char urls[16][512];
    size_t n;
    bad_urls(urls, &n);
    for (size_t i = 0; i < n; i++) {
        char cmd[1500], what[64];
        snprintf(cmd, sizeof cmd, "env 'FLCACHE_REDIS=%s' %s/flcache store ls", urls[i],
                 flc_t_build_dir());
        snprintf(what, sizeof what, "flcache store ls, URL %zu", i);
        run_clean(what, cmd);
        EXPECT(strstr(g_out, "***") != NULL || strstr(g_out, "malformed") != NULL,
               "URL %zu: the error still names the URL, password masked", i);
    }
}

TEST(function_results_hide_the_password)
{
    require_password();
    char urls[3][512];
    snprintf(urls[0], 512, "redis://u:" PW "@127.0.0.1:1");
    snprintf(urls[1], 512, "unix://u:" PW "@%s", g_sock);
    snprintf(urls[2], 512, "redis://u:" PW "@[::1:99");
    for (int i = 0; i < 3; i++) {
        char cmd[2000], what[64];
        snprintf(cmd, sizeof cmd,
                 "FLCACHE_LOG=debug %s/flcache-fn '{\"role\":\"client\",\"job\":\"j\","
                 "\"round\":1,\"client\":\"c1\",\"redis\":\"%s\",\"global_job\":\"j/g\","
                 "\"num_shards\":1,\"synthetic_params\":10}'",
                 flc_t_build_dir(), urls[i]);
        snprintf(what, sizeof what, "flcache-fn client event, URL %d", i);
        run_clean(what, cmd);
        EXPECT(strstr(g_out, "\"ok\":false") != NULL, "URL %d: the result says it failed", i);
    }
}

TEST(pool_logs_hide_the_password)
{
    require_password();
    char cmd[2000];
    snprintf(cmd, sizeof cmd,
             "env FLCACHE_LOG=debug 'FLCACHE_REDIS=unix://u:" GOOD "@%s' %s/flcache simulate "
             "--per-round 3 --clients 10 --rounds 2 --subset 1000 --test-subset 200 --job "
             "sec1 --json",
             g_sock, flc_t_build_dir());
    int rc = flc_t_run(cmd, g_out, sizeof g_out);
    printf("    # simulate through the pool: exit %d, %zu bytes of output\n", rc, strlen(g_out));
    EXPECT(rc == 0, "simulate with the right password runs");
    EXPECT(strstr(g_out, GOOD) == NULL, "no password in its logs, results or JSON");
}

/* The pool itself (its logs at debug, instances' stderr forwarded, a
 * retry) running client events whose URL fails: the records' errors, the
 * replies and this process's stderr. */
TEST(pool_failures_hide_the_password)
{
    require_password();
    char log[] = "/tmp/flc-nosecret-XXXXXX";
    int fd = mkstemp(log);
    CHECK(fd >= 0, "a file for stderr");
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    flc_log_set_level(FLC_LOG_DEBUG);
    char fn[600];
    snprintf(fn, sizeof fn, "%s/flcache-fn", flc_t_build_dir());
    flc_pool_cfg_t pc;
    flc_pool_cfg_init(&pc);
    pc.fn_path = fn;
    pc.forward_stderr = 1;
    pc.retries = 1;
    pc.concurrency = 2;
    flc_err_t e = {0};
    flc_pool_t *p = flc_pool_new(&pc, &e);
    char ev[2][1024];
    snprintf(ev[0], sizeof ev[0],
             "{\"role\":\"client\",\"job\":\"j\",\"round\":1,\"client\":\"c1\","
             "\"redis\":\"unix://u:" PW "@%s\",\"global_job\":\"j/g\",\"num_shards\":1,"
             "\"synthetic_params\":10}", g_sock);
    snprintf(ev[1], sizeof ev[1],
             "{\"role\":\"client\",\"job\":\"j\",\"round\":1,\"client\":\"c2\","
             "\"redis\":\"redis://u:" PW "@127.0.0.1:1\",\"global_job\":\"j/g\","
             "\"num_shards\":1,\"synthetic_params\":10}");
    const char *evs[] = {ev[0], ev[1]};
    flc_inv_rec_t recs[2];
    memset(recs, 0, sizeof recs);
    int rc = p ? flc_pool_invoke(p, evs, 2, recs, &e) : e.code;
    flc_pool_free(p);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    CHECK(rc == FLC_OK, "the pool ran the batch (%s)", e.msg);
    for (int i = 0; i < 2; i++) {
        char *reply = recs[i].reply ? cJSON_PrintUnformatted(recs[i].reply) : NULL;
        printf("    # invocation %d: status %d, error '%s', reply %.200s\n", i, recs[i].status,
               recs[i].error, reply ? reply : "(none)");
        EXPECT(recs[i].status != FLC_INV_OK, "invocation %d failed", i);
        EXPECT(strstr(recs[i].error, PW) == NULL && (reply == NULL || strstr(reply, PW) == NULL),
               "invocation %d: neither its error nor its reply names the password", i);
        cJSON_free(reply);
        flc_inv_rec_clear(&recs[i]);
    }
    FILE *f = fopen(log, "r");
    size_t n = f ? fread(g_out, 1, sizeof g_out - 1, f) : 0;
    g_out[n] = '\0';
    if (f)
        fclose(f);
    unlink(log);
    printf("    # the pool's stderr: %zu bytes: %.400s\n", n, g_out);
    EXPECT(strstr(g_out, PW) == NULL, "no password in the pool's logs or the instances' stderr");
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(open_errors_hide_the_password),
                 TEST_ENTRY(cli_errors_hide_the_password),
                 TEST_ENTRY(function_results_hide_the_password),
                 TEST_ENTRY(pool_logs_hide_the_password),
                 TEST_ENTRY(pool_failures_hide_the_password))
