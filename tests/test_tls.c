/* rediss:// (cache/tls.h) against redis-server's TLS port: a test CA and
 * certificates made with openssl in a temporary directory, a redis-server
 * with only a TLS port (--port 0 --tls-port N) and a password, and the
 * store over it: a multi-chunk value bit-exact; a wrong CA and a wrong
 * name refused before anything is sent; plaintext to the TLS port and TLS
 * to a plaintext port failing fast with a sentence; a server that wants a
 * client certificate (none, a stranger's, the right one; optional); a
 * connection the server drops; proxy threads that end
 * with their connections; a 3-master Redis Cluster over TLS whose redirects
 * and map go to TLS endpoints. No message may show the password. */
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "cache/store.h"
#include "cache/store_ops.h"
#include "cache/store_raw.h"
#include "cache/url.h"
#include "tests/harness.h"

#define PW "Tls5ecretPw"

static char g_dir[64];        /* certificates, server dirs */
static int g_port;            /* the TLS-only server */
static pid_t g_srv = -1;

/* A loopback TCP port nobody listens on now (nor on port + 10000 when
 * bus is set: a cluster node's bus port). */
static int free_port(int bus)
{
    for (int tries = 0; tries < 200; tries++) {
        int ports[2] = {0, 0};
        int fds[2] = {-1, -1}, ok = 1;
        for (int k = 0; k < (bus ? 2 : 1); k++) {
            fds[k] = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a = {.sin_family = AF_INET,
                                    .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                    .sin_port = htons((uint16_t)(k ? ports[0] + 10000 : 0))};
            socklen_t al = sizeof a;
            if (bind(fds[k], (struct sockaddr *)&a, sizeof a) != 0 ||
                getsockname(fds[k], (struct sockaddr *)&a, &al) != 0)
                ok = 0;
            ports[k] = ntohs(a.sin_port);
            if (!ok || (bus && k == 0 && ports[0] > 55000))
                ok = 0;
            if (!ok)
                break;
        }
        for (int k = 0; k < 2; k++)
            if (fds[k] >= 0)
                close(fds[k]);
        if (ok)
            return ports[0];
    }
    flc_t_fatal("no free loopback port");
}

/* Starts redis-server (in the caller's process group: a case that fails
 * takes it with it) with the TLS port only and the test certificates;
 * extra: more "--option value" words (space separated, no quoting). Waits
 * until the port accepts. */
static pid_t start_tls_server(int port, const char *name, const char *extra)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "exec redis-server --port 0 --tls-port %d --bind 127.0.0.1 127.0.0.2 --tls-cert-file %s/srv.pem "
             "--tls-key-file %s/srv.key --tls-ca-cert-file %s/ca.pem --requirepass " PW
             " --save '' --appendonly no --dir %s/%s --logfile %s/%s.log %s",
             port, g_dir, g_dir, g_dir, g_dir, name, g_dir, name, extra ? extra : "");
    char mk[256];
    snprintf(mk, sizeof mk, "mkdir -p %s/%s", g_dir, name);
    char out[256];
    flc_t_run(mk, out, sizeof out);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                .sin_port = htons((uint16_t)port)};
        int up = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (up)
            return pid;
        flc_sleep_ms(10);
    }
    kill(pid, SIGKILL);
    flc_t_fatal("redis-server with TLS port %d did not start (see %s/%s.log)", port, g_dir,
                name);
}

static void stop_server(pid_t pid)
{
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN); /* as every store user should (cache/store.h) */
    snprintf(g_dir, sizeof g_dir, "/tmp/flc-tls-XXXXXX");
    if (mkdtemp(g_dir) == NULL)
        flc_t_fatal("mkdtemp failed");
    /* A CA, another CA nobody trusts, a server certificate for localhost
     * and 127.0.0.1, and a client certificate. EC keys: fast to make. */
    char cmd[3072], out[4096];
    const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    snprintf(cmd, sizeof cmd,
             "(cd %s && "
             "openssl req -x509 %s -keyout ca.key -out ca.pem -days 2 -subj /CN=flc-test-ca && "
             "openssl req -x509 %s -keyout ca2.key -out ca2.pem -days 2 -subj /CN=flc-other-ca && "
             "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.cnf && "
             "openssl req %s -keyout srv.key -out srv.csr -subj /CN=localhost && "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out srv.pem -days 2 -extfile san.cnf && "
             "openssl req %s -keyout cli.key -out cli.csr -subj /CN=flc-client && "
             "openssl x509 -req -in cli.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out cli.pem -days 2 && "
             "openssl req %s -keyout cli2.key -out cli2.csr -subj /CN=flc-stranger && "
             "openssl x509 -req -in cli2.csr -CA ca2.pem -CAkey ca2.key -CAcreateserial "
             "-out cli2.pem -days 2) 2>&1",
             g_dir, ec, ec, ec, ec, ec);
    if (flc_t_run(cmd, out, sizeof out) != 0)
        flc_t_fatal("openssl could not make the test certificates: %s", out);
    g_port = free_port(0);
    g_srv = start_tls_server(g_port, "one", "--tls-auth-clients no");
    printf("# redis-server pid %d, TLS only on 127.0.0.1:%d, certificates in %s\n", (int)g_srv,
           g_port, g_dir);
}

static void teardown(void)
{
    stop_server(g_srv);
    char cmd[128], out[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    flc_t_run(cmd, out, sizeof out);
}

/* rediss:// to the shared server by host (localhost or 127.0.0.1), with
 * more query options after the CA. */
static const char *url_of(const char *host, int port, const char *ca, const char *more)
{
    static char u[1024];
    snprintf(u, sizeof u, "rediss://:" PW "@%s:%d/0?cacert=%s/%s%s", host, port, g_dir, ca,
             more ? more : "");
    return u;
}

static void no_password(const char *msg, const char *where)
{
    EXPECT(strstr(msg, PW) == NULL, "%s: the message does not show the password", where);
}

TEST(round_trip_multi_chunk)
{
    flc_store_opts_t o = {.chunk_bytes = 64 * 1024};
    flc_err_t e = {0};
    flc_store_t *st = flc_store_open(url_of("localhost", g_port, "ca.pem", NULL), &o, &e);
    CHECK(st != NULL, "rediss://localhost:%d opens with the test CA (%s)", g_port,
          st ? "ok" : e.msg);
    char expect[128];
    snprintf(expect, sizeof expect, "rediss://:***@localhost:%d", g_port);
    EXPECT(strcmp(flc_store_url(st), expect) == 0, "its URL reads %s", flc_store_url(st));
    /* 1.2 MB: 19 chunks of 64 KB, so the proxy carries pipelined writes. */
    const uint64_t n = 300000;
    float *v = malloc(n * sizeof *v);
    flc_t_fill(v, n, 7);
    v[0] = -0.0f;
    flc_shard_t sh = {.round = 1, .num_shards = 1, .count = n, .model_size = n, .values = v,
                      .weight = 2.5, .num_samples = 25};
    snprintf(sh.job, sizeof sh.job, "tls");
    snprintf(sh.client, sizeof sh.client, "c1");
    int rc = flc_store_put_update(st, &sh);
    CHECK(rc == 0, "put of %llu floats over TLS (%s)", (unsigned long long)n,
          rc ? flc_store_errstr(st) : "ok");
    flc_shard_t got = {0};
    rc = flc_store_get_update(st, "tls", 1, 0, "c1", &got, NULL, 0);
    CHECK(rc == 0 && got.count == n && memcmp(got.values, v, n * sizeof *v) == 0,
          "get of %llu floats over TLS is bit-exact", (unsigned long long)n);
    EXPECT(got.weight == 2.5 && got.num_samples == 25, "header fields survive");
    flc_shard_release(&got);
    free(v);
    /* Blocking waits: the socket timeout works through the socketpair. */
    char el[64] = "";
    CHECK(flc_store_notify(st, "tls", 1, 0, "done", "m7", 1) == 0, "notify over TLS");
    EXPECT(flc_store_wait(st, "tls", 1, 0, "done", 1000, el, sizeof el) == 0 &&
               strcmp(el, "m7") == 0,
           "wait over TLS pops what notify pushed ('%s')", el);
    uint64_t t0 = flc_now_ns();
    rc = flc_store_wait(st, "tls", 1, 0, "done", 300, el, sizeof el);
    double ms = (double)(flc_now_ns() - t0) / 1e6;
    EXPECT(rc == FLC_ETIMEOUT && ms >= 250 && ms < 2000,
           "an empty wait of 300 ms times out over TLS (rc %d after %.0f ms)", rc, ms);
    EXPECT(flc_store_ping(st) == 0, "the connection still answers after the timed-out wait");
    flc_store_close(st);
    st = flc_store_open(url_of("127.0.0.1", g_port, "ca.pem", NULL), NULL, &e);
    EXPECT(st != NULL && flc_store_ping(st) == 0,
           "by IP address: the certificate's IP 127.0.0.1 verifies (%s)", st ? "ok" : e.msg);
    flc_store_close(st);
}

/* Opens url, which must fail with code; the message must hold every one
 * of the NULL-terminated words and not the password. */
static void refused(const char *what, const char *url, const flc_store_opts_t *o, int code, ...)
{
    flc_err_t e = {0};
    uint64_t t0 = flc_now_ns();
    flc_store_t *st = flc_store_open(url, o, &e);
    double s = (double)(flc_now_ns() - t0) / 1e9;
    CHECK(st == NULL, "%s: refused", what);
    printf("    # %s: [%d] %s (%.2f s)\n", what, e.code, e.msg, s);
    EXPECT(e.code == code, "%s: code %d (got %d)", what, code, e.code);
    EXPECT(s < 3.0, "%s: within 3 s, no hang (%.2f s)", what, s);
    va_list ap;
    va_start(ap, code);
    for (const char *w; (w = va_arg(ap, const char *)) != NULL;)
        EXPECT(strstr(e.msg, w) != NULL, "%s: the message says '%s'", what, w);
    va_end(ap);
    no_password(e.msg, what);
}

/* AUTH calls the server counted since the last CONFIG RESETSTAT. */
static long auth_calls(flc_store_t *st)
{
    redisReply *r;
    if (flc_store_commandf(st, &r, "INFO commandstats") != 0)
        return -1;
    const char *p = r->type == REDIS_REPLY_STRING ? strstr(r->str, "cmdstat_auth:calls=") : NULL;
    long n = p ? atol(p + strlen("cmdstat_auth:calls=")) : 0;
    freeReplyObject(r);
    return n;
}

TEST(wrong_ca_sends_nothing)
{
    flc_err_t e = {0};
    flc_store_t *good = flc_store_open(url_of("localhost", g_port, "ca.pem", NULL), NULL, &e);
    CHECK(good != NULL, "a connection with the right CA (%s)", good ? "ok" : e.msg);
    redisReply *r;
    CHECK(flc_store_commandf(good, &r, "CONFIG RESETSTAT") == 0, "CONFIG RESETSTAT");
    freeReplyObject(r);
    char where[64];
    snprintf(where, sizeof where, "localhost:%d", g_port);
    refused("a CA that did not sign the server's certificate",
            url_of("localhost", g_port, "ca2.pem", NULL), NULL, FLC_EAUTH,
            "certificate verify failed", where, "ca2.pem", (char *)NULL);
    EXPECT(auth_calls(good) == 0, "the server saw no AUTH from it (nothing was sent)");
    flc_store_close(good);
    char url[1024];
    snprintf(url, sizeof url, "rediss://:" PW "@localhost:%d", g_port);
    refused("no cacert=: the system's CAs do not know the test CA", url, NULL, FLC_EAUTH,
            "certificate verify failed", "the system's", (char *)NULL);
    refused("a CA file that does not exist", url_of("localhost", g_port, "nope.pem", NULL), NULL,
            FLC_EINVAL, "nope.pem", "No such file", (char *)NULL);
}

TEST(wrong_name_refused)
{
    refused("sni=cache.example.org: the certificate is for localhost and 127.0.0.1",
            url_of("127.0.0.1", g_port, "ca.pem", "&sni=cache.example.org"), NULL, FLC_EAUTH,
            "hostname mismatch", "cache.example.org", (char *)NULL);
    /* The certificate names 127.0.0.1, not 127.0.0.2 (same server). */
    refused("by 127.0.0.2, an address the certificate does not name",
            url_of("127.0.0.2", g_port, "ca.pem", NULL), NULL, FLC_EAUTH,
            "IP address mismatch", "127.0.0.2", (char *)NULL);
    flc_err_t e = {0};
    flc_store_t *st =
        flc_store_open(url_of("127.0.0.1", g_port, "ca.pem", "&sni=localhost"), NULL, &e);
    EXPECT(st != NULL && flc_store_ping(st) == 0,
           "by IP with sni=localhost: the name the certificate has verifies (%s)",
           st ? "ok" : e.msg);
    flc_store_close(st);
}

TEST(plaintext_and_tls_mixed_up)
{
    char url[256], where[64];
    snprintf(url, sizeof url, "redis://:" PW "@127.0.0.1:%d", g_port);
    refused("plaintext redis:// to the TLS port", url, NULL, FLC_ECONN, "rediss://",
            (char *)NULL);
    flc_fixture_t plain;
    flc_fixture_start(&plain, 0);
    int pport = atoi(strrchr(plain.tcp_url, ':') + 1);
    snprintf(url, sizeof url, "rediss://:" PW "@127.0.0.1:%d?cacert=%s/ca.pem", pport, g_dir);
    snprintf(where, sizeof where, "127.0.0.1:%d", pport);
    flc_store_opts_t o = {.connect_timeout_ms = 1500};
    /* redis-server reads the ClientHello as an inline command and waits
     * for its end of line: the handshake's deadline ends it. */
    refused("rediss:// to a plaintext port", url, &o, FLC_ETIMEOUT, "TLS handshake", where,
            "not a TLS port", (char *)NULL);
    flc_fixture_stop(&plain);
}

TEST(client_certificate)
{
    int port = free_port(0);
    pid_t srv = start_tls_server(port, "mtls", "--tls-auth-clients yes");
    char where[64];
    snprintf(where, sizeof where, "localhost:%d", port);
    refused("a server that requires a client certificate, given none",
            url_of("localhost", port, "ca.pem", NULL), NULL, FLC_EAUTH, "client certificate",
            where, "certificate required", (char *)NULL);
    char more[256];
    snprintf(more, sizeof more, "&cert=%s/cli2.pem&key=%s/cli2.key", g_dir, g_dir);
    refused("a client certificate from a CA the server does not trust",
            url_of("localhost", port, "ca.pem", more), NULL, FLC_EAUTH,
            "refused the client certificate", where, (char *)NULL);
    flc_err_t e = {0};
    snprintf(more, sizeof more, "&cert=%s/cli.pem&key=%s/cli.key", g_dir, g_dir);
    uint64_t t0 = flc_now_ns();
    flc_store_t *st = flc_store_open(url_of("localhost", port, "ca.pem", more), NULL, &e);
    double ms = (double)(flc_now_ns() - t0) / 1e6;
    EXPECT(st != NULL && flc_store_ping(st) == 0, "with cert= and key=: PING (%s)",
           st ? "ok" : e.msg);
    EXPECT(ms < 150, "accepted without waiting out the verdict window (%.1f ms)", ms);
    flc_store_close(st);
    stop_server(srv);
    /* tls-auth-clients optional: asked, not required, no certificate. */
    port = free_port(0);
    srv = start_tls_server(port, "opt", "--tls-auth-clients optional");
    t0 = flc_now_ns();
    st = flc_store_open(url_of("localhost", port, "ca.pem", NULL), NULL, &e);
    ms = (double)(flc_now_ns() - t0) / 1e6;
    EXPECT(st != NULL && flc_store_ping(st) == 0,
           "tls-auth-clients optional, no certificate: PING (%s)", st ? "ok" : e.msg);
    EXPECT(ms < 150, "the server's session ticket ends the wait for its verdict (%.1f ms)", ms);
    flc_store_close(st);
    stop_server(srv);
}

static int thread_count(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    for (struct dirent *de; d && (de = readdir(d)) != NULL;)
        n += de->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

TEST(dropped_connection_and_threads)
{
    int before = thread_count(), rc;
    flc_err_t e = {0};
    flc_store_t *st[4];
    for (int i = 0; i < 4; i++) {
        st[i] = flc_store_open(url_of("localhost", g_port, "ca.pem", NULL), NULL, &e);
        CHECK(st[i] != NULL, "connection %d opens", i);
    }
    EXPECT(thread_count() == before + 4, "one proxy thread per connection (%d -> %d)", before,
           thread_count());
    /* The server drops store 0's connection: its next call fails with a
     * sentence, the one after reconnects. */
    long long id = -1;
    rc = flc_store_conn_id(st[0], &id);
    CHECK(rc == 0 && id >= 0, "store 0's CLIENT ID is %lld", id);
    redisReply *r;
    CHECK(flc_store_commandf(st[1], &r, "CLIENT KILL ID %lld", id) == 0, "CLIENT KILL ID %lld",
          id);
    freeReplyObject(r);
    rc = flc_store_ping(st[0]);
    printf("    # PING after the kill: %d %s\n", rc, rc ? flc_store_errstr(st[0]) : "");
    EXPECT(rc == FLC_ECONN, "PING on the dropped connection: FLC_ECONN, no hang");
    no_password(flc_store_errstr(st[0]), "dropped connection");
    EXPECT(flc_store_ping(st[0]) == 0, "the next PING reconnects over TLS");
    for (int i = 0; i < 4; i++)
        flc_store_close(st[i]);
    int after = thread_count();
    for (int i = 0; i < 100 && after != before; i++, after = thread_count())
        flc_sleep_ms(10);
    EXPECT(after == before, "closing the stores ends their proxy threads (%d left, %d before)",
           after, before);
}

TEST(url_options)
{
    flc_url_t u, v;
    flc_err_t e = {0};
    CHECK(flc_url_parse("rediss://u:p@h.example:6380/2?cacert=/a%20b/ca.pem&cert=/c.pem"
                        "&key=/k.pem&sni=n.example&cluster=yes",
                        &u, &e) == 0,
          "a rediss:// URL with every option parses (%s)", e.msg);
    EXPECT(u.tls == 1 && u.port == 6380 && u.db == 2 && strcmp(u.cacert, "/a b/ca.pem") == 0 &&
               strcmp(u.cert, "/c.pem") == 0 && strcmp(u.key, "/k.pem") == 0 &&
               strcmp(u.sni, "n.example") == 0 && u.cluster == FLC_URL_CLUSTER_YES,
           "tls, port, db, cacert (decoded), cert, key, sni, cluster");
    char out[1200];
    CHECK(flc_url_format(&u, out, sizeof out) == 0 && flc_url_parse(out, &v, &e) == 0,
          "formats as %s and parses back", out);
    EXPECT(v.tls && strcmp(v.cacert, u.cacert) == 0 && strcmp(v.sni, u.sni) == 0 &&
               strcmp(v.password, "p") == 0,
           "the TLS settings survive the round trip");
    flc_url_t node = {.kind = FLC_URL_TCP, .port = 7000};
    snprintf(node.host, sizeof node.host, "10.0.0.9");
    flc_url_copy_security(&node, &u);
    EXPECT(node.tls && strcmp(node.cacert, u.cacert) == 0 && strcmp(node.host, "10.0.0.9") == 0,
           "flc_url_copy_security carries TLS to a node URL, keeping its host");
    EXPECT(flc_url_parse("redis://h:1?cacert=/ca.pem", &u, &e) == FLC_EINVAL &&
               strstr(e.msg, "rediss://") != NULL,
           "cacert= on redis:// is refused (%s)", e.msg);
    EXPECT(flc_url_parse("rediss://h:1?insecure=yes", &u, &e) == FLC_EINVAL &&
               strstr(e.msg, "always verified") != NULL,
           "insecure= is refused: no way to turn verification off (%s)", e.msg);
    EXPECT(flc_url_parse("rediss://h:1?key=/k.pem", &u, &e) == FLC_EINVAL,
           "key= without cert= is refused");
    EXPECT(flc_url_parse("redis://h:1", &u, &e) == 0 && u.tls == 0, "redis:// is not TLS");
}

/* ---- a Redis Cluster over TLS ---- */

TEST(cluster_over_tls)
{
    enum { NN = 3 };
    int port[NN];
    pid_t pid[NN];
    char extra[512], name[16], cmd[2048], out[8192];
    for (int i = 0; i < NN; i++) {
        port[i] = free_port(1);
        snprintf(name, sizeof name, "cl%d", i);
        snprintf(extra, sizeof extra,
                 "--tls-auth-clients no --cluster-enabled yes --tls-cluster yes "
                 "--tls-replication yes --masterauth " PW " --cluster-config-file %s/%s/nodes.conf",
                 g_dir, name);
        pid[i] = start_tls_server(port[i], name, extra);
    }
    snprintf(cmd, sizeof cmd,
             "redis-cli --tls --cacert %s/ca.pem -a " PW " --no-auth-warning --cluster create "
             "127.0.0.1:%d 127.0.0.1:%d 127.0.0.1:%d --cluster-replicas 0 --cluster-yes",
             g_dir, port[0], port[1], port[2]);
    int rc = flc_t_run(cmd, out, sizeof out);
    if (rc != 0) {
        for (int i = 0; i < NN; i++)
            stop_server(pid[i]);
        CHECK(rc == 0, "redis-cli --cluster create over TLS: %.300s", out);
    }
    /* Wait until every node agrees (cluster_state:ok on each). */
    int ok = 0;
    for (int t = 0; t < 100 && !ok; t++) {
        ok = 1;
        for (int i = 0; i < NN && ok; i++) {
            snprintf(cmd, sizeof cmd,
                     "redis-cli --tls --cacert %s/ca.pem -a " PW
                     " --no-auth-warning -p %d cluster info | grep -q cluster_state:ok",
                     g_dir, port[i]);
            ok = flc_t_run(cmd, out, sizeof out) == 0;
        }
        if (!ok)
            flc_sleep_ms(100);
    }
    EXPECT(ok, "3 masters over TLS say cluster_state:ok");
    /* Seeded by one node, the store reaches the others by the map and by
     * MOVED: their TLS ports, verified by the test CA. */
    flc_err_t e = {0};
    flc_store_t *st = flc_store_open(url_of("127.0.0.1", port[0], "ca.pem", NULL), NULL, &e);
    CHECK(st != NULL, "rediss:// to one node opens the cluster (%s)", st ? "ok" : e.msg);
    float v[5000];
    flc_t_fill(v, 5000, 3);
    int bad = 0;
    for (unsigned s = 0; s < 6; s++) { /* shards of one job land on several nodes */
        flc_shard_t sh = {.round = 1, .shard = s, .num_shards = 6, .offset = s * 5000ull,
                          .count = 5000, .model_size = 30000, .values = v, .weight = 1};
        snprintf(sh.job, sizeof sh.job, "tlsc");
        snprintf(sh.client, sizeof sh.client, "c%u", s);
        flc_shard_t got = {0};
        if (flc_store_put_update(st, &sh) != 0 ||
            flc_store_get_update(st, "tlsc", 1, s, sh.client, &got, NULL, 0) != 0 ||
            got.count != 5000 || memcmp(got.values, v, sizeof v) != 0) {
            printf("    # shard %u: %s\n", s, flc_store_errstr(st));
            bad++;
        }
        flc_shard_release(&got);
    }
    EXPECT(bad == 0, "6 shards of a job written and read back bit-exact across the nodes");
    /* Where did they go: the nodes' own key counts (over TLS, redis-cli). */
    int holding = 0;
    for (int i = 0; i < NN; i++) {
        snprintf(cmd, sizeof cmd,
                 "redis-cli --tls --cacert %s/ca.pem -a " PW " --no-auth-warning -p %d dbsize",
                 g_dir, port[i]);
        holding += flc_t_run(cmd, out, sizeof out) == 0 && atoi(out) > 0;
    }
    EXPECT(holding >= 2, "the keys are on %d of the 3 nodes (reached by their TLS ports)",
           holding);
    /* A node dies: the writes to its slots fail naming it by address (a
     * TLS context carries its host like a TCP one), the others go on. */
    stop_server(pid[2]);
    pid[2] = -1;
    char dead[32], msg[256] = "";
    snprintf(dead, sizeof dead, "127.0.0.1:%d", port[2]);
    int failed = 0;
    uint64_t t0 = flc_now_ns();
    for (unsigned s = 0; s < 6; s++) {
        flc_shard_t sh = {.round = 2, .shard = s, .num_shards = 6, .offset = s * 5000ull,
                          .count = 5000, .model_size = 30000, .values = v, .weight = 1};
        snprintf(sh.job, sizeof sh.job, "tlsc");
        snprintf(sh.client, sizeof sh.client, "c%u", s);
        if (flc_store_put_update(st, &sh) != 0) {
            snprintf(msg, sizeof msg, "%s", flc_store_errstr(st));
            if (++failed == 2)
                break; /* the second one waited out the cluster's deadline */
        }
    }
    double secs = (double)(flc_now_ns() - t0) / 1e9;
    printf("    # %d puts failed in %.2f s; last: %s\n", failed, secs, msg);
    EXPECT(failed == 2, "with node 3 (%s) dead, the puts to its slots fail", dead);
    EXPECT(strstr(msg, dead) != NULL && strstr(msg, "(null)") == NULL,
           "the reconnect's failure names the dead node %s", dead);
    no_password(msg, "dead node");
    flc_store_close(st);
    /* With the wrong CA, no node is reached. */
    refused("the cluster with a wrong CA", url_of("127.0.0.1", port[1], "ca2.pem", "&cluster=yes"),
            NULL, FLC_EAUTH, "certificate verify failed", (char *)NULL);
    for (int i = 0; i < NN; i++)
        stop_server(pid[i]);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(url_options), TEST_ENTRY(round_trip_multi_chunk),
                 TEST_ENTRY(wrong_ca_sends_nothing), TEST_ENTRY(wrong_name_refused),
                 TEST_ENTRY(plaintext_and_tls_mixed_up), TEST_ENTRY(client_certificate),
                 TEST_ENTRY(dropped_connection_and_threads), TEST_ENTRY(cluster_over_tls))
