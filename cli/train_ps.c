/* train_ps.c - the parameter-server process of `flcache train --comm ps`
 * (workers/ps.h): the driver listens first (so a tcp port 0 is known before
 * any worker starts), then forks the server, which serves the one training
 * on that socket and exits when every worker has closed. It dies with the
 * driver (PR_SET_PDEATHSIG), and the driver kills and reaps it whatever
 * happened to the workers. Forked before the driver starts any thread. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "cli/cli.h"
#include "cli/train.h"
#include "workers/ps.h"

int flc_train_ps_start(flc_train_ps_t *ps, const char *addr, int workers, unsigned timeout_ms)
{
    memset(ps, 0, sizeof *ps);
    char want[sizeof ps->addr];
    if (addr == NULL || *addr == '\0') {
        const char *tmp = flc_config_program()->tmpdir;
        snprintf(ps->dir, sizeof ps->dir, "%s/flcache-ps-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (mkdtemp(ps->dir) == NULL) {
            flc_cli_error("train", "parameter server: cannot create %s: %s", ps->dir,
                          strerror(errno));
            ps->dir[0] = '\0';
            return FLC_EXIT_RUNTIME;
        }
        snprintf(want, sizeof want, "unix:%s/ps.sock", ps->dir);
    } else {
        snprintf(want, sizeof want, "%s", addr);
    }
    flc_err_t e = {0};
    int lfd = flc_ps_listen(want, ps->addr, sizeof ps->addr, &e);
    if (lfd < 0) {
        flc_cli_error("train", "parameter server: %s", flc_err_msg(&e));
        return FLC_EXIT_RUNTIME;
    }
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        signal(SIGINT, SIG_IGN); /* the driver decides; it kills us */
        uint32_t steps = 0;
        uint64_t t0 = flc_now_ns();
        int rc = flc_ps_serve(lfd, workers, timeout_ms, &steps, &e);
        if (rc != FLC_OK)
            fprintf(stderr, "flcache train: %s\n", flc_err_msg(&e));
        else
            FLC_INFO("parameter server: %u steps of %d workers in %.2f s", steps, workers,
                         (double)(flc_now_ns() - t0) / 1e9);
        _exit(rc == FLC_OK ? 0 : 1);
    }
    close(lfd);
    if (pid < 0) {
        flc_cli_error("train", "parameter server: cannot fork: %s", strerror(errno));
        return FLC_EXIT_RUNTIME;
    }
    ps->pid = pid;
    return FLC_EXIT_OK;
}

int flc_train_ps_stop(flc_train_ps_t *ps, int workers_ok)
{
    int ok = 1;
    if (ps->pid > 0) {
        /* After a good run it has ended (every worker closed) or is about
         * to; after a failure it may wait for a worker that is gone. */
        int st = 0;
        pid_t r = 0;
        for (int i = 0; i < (workers_ok ? 300 : 1) && (r = waitpid(ps->pid, &st, WNOHANG)) == 0;
             i++)
            usleep(10000);
        if (r == 0) {
            kill(ps->pid, SIGKILL);
            waitpid(ps->pid, &st, 0);
            ok = 0;
        } else {
            ok = r == ps->pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
        }
        ps->pid = 0;
    }
    if (ps->dir[0] != '\0') {
        char sock[sizeof ps->dir + 16];
        snprintf(sock, sizeof sock, "%s/ps.sock", ps->dir);
        unlink(sock);
        rmdir(ps->dir);
        ps->dir[0] = '\0';
    }
    return ok;
}
