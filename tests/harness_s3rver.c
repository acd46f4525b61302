/* The S3 server fixture for the cold-tier tests: s3rver (npm), installed by
 * scripts/s3rver.sh, started on a free loopback port with its own data
 * directory, killed at the end. It runs in its own process group (node starts
 * children of its own), so the harness tracks it to kill it when the case
 * that started it fails. */
#include "tests/harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int reachable(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void stop_tracked(void *s)
{
    flc_s3rver_stop(s);
}

int flc_s3rver_start(flc_s3rver_t *s, char *why, size_t whylen)
{
    memset(s, 0, sizeof *s);
    const char *src = getenv("FLCACHE_SOURCE_DIR");
    char cmd[600], out[1024];
    snprintf(cmd, sizeof cmd, "timeout 300 sh '%s/scripts/s3rver.sh' install", src ? src : ".");
    int rc = flc_t_run(cmd, out, sizeof out);
    out[strcspn(out, "\n")] = rc == 0 ? '\0' : out[strcspn(out, "\n")];
    if (rc != 0) {
        snprintf(why, whylen, "s3rver cannot be installed (scripts/s3rver.sh exit %d: %.300s)",
                 rc, out);
        return -1;
    }
    char bin[1024];
    snprintf(bin, sizeof bin, "%s", out);
    flc_err_t err;
    s->port = flc_embed_unused_port(&err);
    if (s->port <= 0) {
        snprintf(why, whylen, "no free port: %s", err.msg);
        return -1;
    }
    snprintf(s->dir, sizeof s->dir, "/tmp/flc-s3rver-XXXXXX");
    if (mkdtemp(s->dir) == NULL) {
        snprintf(why, whylen, "mkdtemp failed");
        return -1;
    }
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    fflush(stdout);
    s->pid = fork();
    if (s->pid == 0) {
        setpgid(0, 0);
        if (freopen("/dev/null", "w", stdout) == NULL)
            _exit(127);
        execl(bin, bin, "-d", s->dir, "-a", "127.0.0.1", "-p", port, "-s", (char *)NULL);
        _exit(127);
    }
    s->owner = getpid();
    flc_t_track(s, stop_tracked);
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", s->port);
    for (int i = 0; i < 300; i++) { /* node starts in ~0.5 s; allow 15 s on a busy machine */
        if (reachable(s->port))
            return 0;
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            snprintf(why, whylen, "s3rver (%.300s) exited at start with status %d", bin, st);
            s->pid = 0;
            flc_s3rver_stop(s);
            return -1;
        }
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    snprintf(why, whylen, "s3rver did not listen on port %d within 15 s", s->port);
    flc_s3rver_stop(s);
    return -1;
}

void flc_s3rver_stop(flc_s3rver_t *s)
{
    if (s->owner != getpid())
        return; /* a case's process never stops the runner's server */
    flc_t_untrack(s);
    if (s->pid > 0) {
        kill(-s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
    if (s->dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
        flc_t_run(cmd, NULL, 0);
        s->dir[0] = '\0';
    }
}
