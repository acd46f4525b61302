/* The HTTP paths against a tiny HTTP/1.1 server this test runs on
 * 127.0.0.1 (a thread, one request per connection):
 *   - flcache-fn in AWS Lambda custom-runtime mode: next / response / error
 *     with the request-id header, a warm loop over several events, and exit
 *     when the Runtime API goes away;
 *   - the remote invokers' send path: the Lambda Invoke request is really
 *     SigV4-signed by libcurl, OpenWhisk uses basic auth, and answers
 *     (ok, function error, HTTP error) map to results.
 * Nothing here contacts a non-loopback host. */
#define _GNU_SOURCE /* strcasestr */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/event.h"
#include "runtime/invoke_remote.h"
#include "tests/harness.h"

#define MAX_REQS 32

typedef struct req {
    char method[8];
    char path[512];
    char headers[4096];
    char *body;
} req_t;

typedef struct server server_t;
/* Decides the answer to r: fills status, extra header lines and body. */
typedef void (*answer_fn)(server_t *s, const req_t *r, int *status, char *hdrs, size_t hcap,
                          char *body, size_t bcap);

struct server {
    int fd, port;
    pthread_t th;
    int stop; /* set by server_stop, read by serve: atomic */
    answer_fn answer;
    pthread_mutex_t mu; /* guards reqs, nreqs, served_events, posts */
    req_t reqs[MAX_REQS];
    int nreqs;
    int served_events; /* lambda: events handed out */
    int posts;         /* lambda: responses/errors received */
};

static int read_request(int c, req_t *r)
{
    char buf[65536];
    size_t n = 0;
    char *end = NULL;
    while (end == NULL) {
        ssize_t k = read(c, buf + n, sizeof buf - 1 - n);
        if (k <= 0)
            return -1;
        n += (size_t)k;
        buf[n] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    size_t hlen = (size_t)(end - buf) + 4;
    if (sscanf(buf, "%7s %511s", r->method, r->path) != 2)
        return -1;
    size_t copy = hlen < sizeof r->headers - 1 ? hlen : sizeof r->headers - 1;
    memcpy(r->headers, buf, copy);
    r->headers[copy] = '\0';
    size_t clen = 0;
    for (char *h = strstr(buf, "\r\n"); h != NULL && h < end; h = strstr(h + 2, "\r\n"))
        if (strncasecmp(h + 2, "Content-Length:", 15) == 0)
            clen = strtoul(h + 17, NULL, 10);
    r->body = malloc(clen + 1);
    size_t have = n - hlen < clen ? n - hlen : clen;
    memcpy(r->body, buf + hlen, have);
    while (have < clen) {
        ssize_t k = read(c, r->body + have, clen - have);
        if (k <= 0)
            break;
        have += (size_t)k;
    }
    r->body[have] = '\0';
    return 0;
}

static void *serve(void *arg)
{
    server_t *s = arg;
    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
        struct pollfd pf = {.fd = s->fd, .events = POLLIN};
        if (poll(&pf, 1, 50) <= 0)
            continue;
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            continue;
        req_t r;
        memset(&r, 0, sizeof r);
        if (read_request(c, &r) == 0) {
            int status = 200;
            char hdrs[1024] = "", body[8192] = "";
            s->answer(s, &r, &status, hdrs, sizeof hdrs, body, sizeof body);
            /* Recorded before the answer goes out: a client that got its
             * answer must find its request (find_req) without a wait. */
            pthread_mutex_lock(&s->mu);
            if (s->nreqs < MAX_REQS)
                s->reqs[s->nreqs++] = r;
            else
                free(r.body);
            pthread_mutex_unlock(&s->mu);
            char head[2048];
            int hn = snprintf(head, sizeof head,
                              "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                              "Content-Length: %zu\r\nConnection: close\r\n%s\r\n",
                              status, strlen(body), hdrs);
            if (write(c, head, (size_t)hn) < 0 || write(c, body, strlen(body)) < 0)
                fprintf(stderr, "test server: write failed\n");
        }
        close(c);
    }
    return NULL;
}

static void server_start(server_t *s, answer_fn answer)
{
    memset(s, 0, sizeof *s);
    s->answer = answer;
    pthread_mutex_init(&s->mu, NULL);
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->fd, 16) != 0 ||
        getsockname(s->fd, (struct sockaddr *)&a, &al) != 0)
        flc_t_fatal("cannot listen on 127.0.0.1");
    s->port = ntohs(a.sin_port);
    pthread_create(&s->th, NULL, serve, s);
}

static void server_stop(server_t *s)
{
    if (s->fd < 0)
        return;
    __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
    pthread_join(s->th, NULL);
    close(s->fd); /* now connections are refused */
    s->fd = -1;
}

static void server_free(server_t *s)
{
    server_stop(s);
    for (int i = 0; i < s->nreqs; i++)
        free(s->reqs[i].body);
    pthread_mutex_destroy(&s->mu);
}

/* The first recorded request for method and path, or NULL. A recorded
 * entry never changes again, so the pointer may be read after the unlock. */
static const req_t *find_req(server_t *s, const char *method, const char *path)
{
    const req_t *found = NULL;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nreqs && found == NULL; i++)
        if (strcmp(s->reqs[i].method, method) == 0 && strcmp(s->reqs[i].path, path) == 0)
            found = &s->reqs[i];
    pthread_mutex_unlock(&s->mu);
    return found;
}

/* A counter of s read under its lock (the server thread writes it). */
static int locked_read(server_t *s, const int *counter)
{
    pthread_mutex_lock(&s->mu);
    int v = *counter;
    pthread_mutex_unlock(&s->mu);
    return v;
}

/* ---------- Lambda Runtime API ---------- */

static const char *g_events[] = {
    "{\"role\":\"probe\",\"x\":1}",
    "this is not json",
    "{\"role\":\"probe\",\"fail\":\"nope\"}",
};

static void lambda_api(server_t *s, const req_t *r, int *status, char *hdrs, size_t hcap,
                       char *body, size_t bcap)
{
    if (strcmp(r->method, "GET") == 0 &&
        strcmp(r->path, "/2018-06-01/runtime/invocation/next") == 0) {
        pthread_mutex_lock(&s->mu);
        int k = s->served_events++;
        pthread_mutex_unlock(&s->mu);
        int ev = k % 3;
        snprintf(hdrs, hcap,
                 "Lambda-Runtime-Aws-Request-Id: req-%d\r\n"
                 "Lambda-Runtime-Deadline-Ms: %llu\r\n"
                 "Lambda-Runtime-Trace-Id: Root=1-abc;Sampled=0\r\n",
                 k, (unsigned long long)(flc_wall_ms() + 30000));
        snprintf(body, bcap, "%s", g_events[ev]);
        return;
    }
    if (strcmp(r->method, "POST") == 0 && strncmp(r->path, "/2018-06-01/runtime/invocation/", 31) == 0) {
        pthread_mutex_lock(&s->mu);
        s->posts++;
        pthread_mutex_unlock(&s->mu);
        *status = 202;
        snprintf(body, bcap, "{\"status\":\"OK\"}");
        return;
    }
    *status = 404;
    snprintf(body, bcap, "{\"errorMessage\":\"no route\"}");
}

static pid_t spawn_fn(const char *fn, int port, const char *max_events)
{
    pid_t pid = fork();
    if (pid == 0) {
        char api[64];
        snprintf(api, sizeof api, "127.0.0.1:%d", port);
        setenv("AWS_LAMBDA_RUNTIME_API", api, 1);
        if (max_events != NULL)
            setenv("FLCACHE_LAMBDA_MAX_EVENTS", max_events, 1);
        else
            unsetenv("FLCACHE_LAMBDA_MAX_EVENTS");
        execl(fn, fn, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Waits for pid up to ms; returns its wait status or -1 (then kills it). */
static int wait_for(pid_t pid, unsigned ms)
{
    int st;
    for (unsigned t = 0; t < ms; t += 10) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return st;
        flc_sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

static char g_fn[1024]; /* the flcache-fn binary */

TEST(lambda_runtime_events)
{
    const char *fn = g_fn;
    server_t s;
    server_start(&s, lambda_api);
    pid_t pid = spawn_fn(fn, s.port, "3");
    int st = wait_for(pid, 20000);
    CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "lambda mode serves 3 events and exits 0 at FLCACHE_LAMBDA_MAX_EVENTS");
    server_stop(&s);
    CHECK(s.served_events == 3 && s.posts == 3, "3 GET next, 3 answers posted (%d, %d)",
          s.served_events, s.posts);

    const req_t *r0 = find_req(&s, "POST", "/2018-06-01/runtime/invocation/req-0/response");
    cJSON *v = r0 != NULL ? cJSON_Parse(r0->body) : NULL;
    const cJSON *echo = cJSON_GetObjectItem(cJSON_GetObjectItem(v, "result"), "echo");
    CHECK(r0 != NULL && flc_ev_bool(v, "ok", 0) && flc_ev_int(echo, "x", 0) == 1,
          "event 0: result posted to .../req-0/response echoing x=1");
    CHECK(v != NULL && cJSON_GetObjectItem(v, "compute_ms") != NULL &&
              cJSON_GetObjectItem(v, "comm_ms") != NULL,
          "the Lambda result carries compute_ms and comm_ms");
    CHECK(r0 != NULL && strcasestr(r0->headers, "Content-Type: application/json") != NULL,
          "the response is posted as JSON");
    cJSON_Delete(v);

    const req_t *r1 = find_req(&s, "POST", "/2018-06-01/runtime/invocation/req-1/error");
    v = r1 != NULL ? cJSON_Parse(r1->body) : NULL;
    CHECK(r1 != NULL && strcmp(flc_ev_str(v, "errorType", ""), "flcache.BadEvent") == 0 &&
              strstr(flc_ev_str(v, "errorMessage", ""), "not valid JSON") != NULL,
          "event 1 (not JSON): posted to .../req-1/error with errorMessage and errorType");
    CHECK(r1 != NULL &&
              strcasestr(r1->headers, "Lambda-Runtime-Function-Error-Type: flcache.BadEvent"),
          "the error post names its type in the Lambda-Runtime-Function-Error-Type header");
    cJSON_Delete(v);

    const req_t *r2 = find_req(&s, "POST", "/2018-06-01/runtime/invocation/req-2/response");
    v = r2 != NULL ? cJSON_Parse(r2->body) : NULL;
    CHECK(r2 != NULL && !flc_ev_bool(v, "ok", 1) &&
              strcmp(flc_ev_str(v, "error", ""), "probe asked to fail: nope") == 0,
          "event 2 (handler failure): ok:false posted to .../req-2/response");
    CHECK(r2 != NULL && flc_ev_int(v, "pid", 0) == pid,
          "all events ran in the same warm process %d", (int)pid);
    cJSON_Delete(v);
    server_free(&s);
}

/* Without an event cap the loop keeps going until the API is gone. */
TEST(lambda_runtime_warm_loop)
{
    server_t s;
    server_start(&s, lambda_api);
    pid_t pid = spawn_fn(g_fn, s.port, NULL);
    int posts = 0;
    for (int i = 0; i < 1000 && (posts = locked_read(&s, &s.posts)) < 4; i++)
        flc_sleep_ms(10);
    CHECK(posts >= 4, "the warm loop keeps taking events (%d answered)", posts);
    server_stop(&s);
    int st = wait_for(pid, 20000);
    CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1,
          "when the Runtime API goes away the runtime exits 1");
    server_free(&s);
}

/* ---------- remote invokers ---------- */

static void invoke_api(server_t *s, const req_t *r, int *status, char *hdrs, size_t hcap,
                       char *body, size_t bcap)
{
    if (strstr(r->path, "/functions/good/") != NULL) {
        snprintf(body, bcap, "{\"ok\":true,\"result\":{\"sum\":5},\"compute_ms\":1}");
    } else if (strstr(r->path, "/functions/bad/") != NULL) {
        snprintf(hdrs, hcap, "X-Amz-Function-Error: Unhandled\r\n");
        snprintf(body, bcap, "{\"errorMessage\":\"boom\",\"errorType\":\"flcache.BadEvent\"}");
    } else if (strstr(r->path, "/functions/") != NULL) {
        *status = 403;
        snprintf(body, bcap, "{\"message\":\"The security token included is invalid.\"}");
    } else if (strstr(r->path, "/actions/good") != NULL) {
        snprintf(body, bcap, "{\"ok\":true,\"result\":7}");
    } else {
        *status = 502;
        snprintf(body, bcap, "{\"error\":\"The action did not produce a valid response\"}");
    }
}

TEST(remote_invokers)
{
    server_t s;
    server_start(&s, invoke_api);
    char endpoint[64], host[64];
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", s.port);
    flc_lambda_cfg_t lc = {.region = "us-east-1", .access_key = "AKIDTEST",
                           .secret_key = "secret", .session_token = "tok123",
                           .endpoint = endpoint, .timeout_ms = 10000};
    cJSON *reply = NULL;
    flc_err_t e = {0};
    const char *payload = "{\"role\":\"probe\",\"n\":3}";
    int rc = flc_lambda_invoke(&lc, "good", payload, &reply, &e);
    CHECK(rc == 0 && flc_ev_bool(reply, "ok", 0) &&
              flc_ev_int(cJSON_GetObjectItem(reply, "result"), "sum", 0) == 5,
          "lambda invoke returns the function's result (%s)", rc ? e.msg : "ok");
    cJSON_Delete(reply);
    const req_t *r = find_req(&s, "POST", "/2015-03-31/functions/good/invocations");
    CHECK(r != NULL && strcmp(r->body, payload) == 0, "the payload is the request body");
    CHECK(r != NULL && strcasestr(r->headers, "Authorization: AWS4-HMAC-SHA256 "
                                              "Credential=AKIDTEST/") != NULL &&
              strstr(r->headers, "/us-east-1/lambda/aws4_request") != NULL &&
              strstr(r->headers, "Signature=") != NULL,
          "libcurl signed the request with SigV4 for us-east-1/lambda");
    CHECK(r != NULL && strcasestr(r->headers, "X-Amz-Date: ") != NULL &&
              strcasestr(r->headers, "X-Amz-Security-Token: tok123") != NULL,
          "X-Amz-Date and the session token are sent");

    rc = flc_lambda_invoke(&lc, "bad", payload, &reply, &e);
    CHECK(rc == 0 && !flc_ev_bool(reply, "ok", 1) &&
              strstr(flc_ev_str(reply, "error", ""), "boom") != NULL,
          "X-Amz-Function-Error becomes ok:false: '%s'", flc_ev_str(reply, "error", ""));
    cJSON_Delete(reply);
    rc = flc_lambda_invoke(&lc, "denied", payload, &reply, &e);
    CHECK(rc == FLC_EAUTH && reply == NULL && strstr(e.msg, "HTTP 403") != NULL &&
              strstr(e.msg, "security token") != NULL,
          "HTTP 403 is an auth error quoting AWS: '%s'", e.msg);

    snprintf(host, sizeof host, "http://127.0.0.1:%d", s.port);
    flc_ow_cfg_t oc = {.apihost = host, .auth = "user:key", .timeout_ms = 10000};
    rc = flc_ow_invoke(&oc, "good", payload, &reply, &e);
    CHECK(rc == 0 && flc_ev_int(reply, "result", 0) == 7, "openwhisk invoke returns the result");
    cJSON_Delete(reply);
    r = find_req(&s, "POST", "/api/v1/namespaces/_/actions/good?blocking=true&result=true");
    CHECK(r != NULL && strcasestr(r->headers, "Authorization: Basic dXNlcjprZXk=") != NULL,
          "openwhisk request uses basic auth for user:key");
    rc = flc_ow_invoke(&oc, "broken", payload, &reply, &e);
    CHECK(rc == 0 && !flc_ev_bool(reply, "ok", 1) &&
              strstr(flc_ev_str(reply, "error", ""), "valid response") != NULL,
          "an OpenWhisk action error (502) becomes ok:false");
    cJSON_Delete(reply);
    server_free(&s);

    /* Nobody listening any more: a connection error, named. */
    rc = flc_ow_invoke(&oc, "good", payload, &reply, &e);
    CHECK(rc == FLC_ECONN && strstr(e.msg, host) != NULL, "connection refused is named: '%s'",
          e.msg);
}

static void setup(void)
{
    const char *dir = getenv("FLCACHE_BUILD_DIR");
    snprintf(g_fn, sizeof g_fn, "%s/flcache-fn-test", dir != NULL ? dir : ".");
    if (access(g_fn, X_OK) != 0)
        flc_t_fatal("%s is not built (set FLCACHE_BUILD_DIR)", g_fn);
    signal(SIGPIPE, SIG_IGN);
}

TEST_LIST_SHARED(setup, NULL, TEST_ENTRY(lambda_runtime_events),
                 TEST_ENTRY(lambda_runtime_warm_loop), TEST_ENTRY(remote_invokers))
