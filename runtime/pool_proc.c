/* Process-level helpers of the local pool (see pool_proc.h). */
#define _GNU_SOURCE /* pipe2, setns */
#include "runtime/pool_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void close_pair(int p[2])
{
    if (p[0] >= 0)
        close(p[0]);
    if (p[1] >= 0)
        close(p[1]);
}

/* What the child reports on the exec-error pipe when it cannot go on: the
 * step that failed and its errno. */
enum { STEP_EXEC, STEP_NETNS, STEP_CGROUP };
typedef struct child_err {
    int step;
    int err;
} child_err_t;

/* Enters the network namespace of the file at path: 0, or -1 with errno. */
static int enter_netns(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = setns(fd, CLONE_NEWNET);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* The child between fork and exec: async-signal-safe calls only. */
static void child(const char *path, char *const envp[], uint64_t as_limit,
                  const char *netns_path, pid_t pgid, pid_t parent, int cg_fd, int in[2],
                  int out[2], int err[2], int ex[2])
{
    child_err_t ce = {STEP_EXEC, 0};
    /* Dies with the thread that forked it (the pool's loop thread, which
     * lives until flc_pool_free has stopped every instance, or the whole
     * driver on SIGKILL): an instance never outlives its pool under init.
     * If the parent is already gone, the signal will never come: stop. */
    if (pgid >= 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        /* The pool's own process group (the parent sets it too, whoever
         * runs first): a signal handler of the driver kills the group. */
        if (setpgid(0, pgid) != 0 && pgid != 0)
            setpgid(0, 0);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &dfl, NULL);
    /* dup2 clears FD_CLOEXEC on the copies, so only 0, 1, 2 survive exec. */
    if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
        goto fail;
#ifdef SYS_close_range
    /* Descriptors other threads opened without O_CLOEXEC (sockets of the
     * driver) must not leak into instances: mark all of them close-on-exec
     * (CLOSE_RANGE_CLOEXEC = 4; ignored on kernels without it). */
    syscall(SYS_close_range, 3u, ~0u, 4u);
#endif
    /* Before exec, so everything the function opens lives in the namespace;
     * a failure ends the child: running unplaced would be a silent lie. */
    if (netns_path != NULL && enter_netns(netns_path) != 0) {
        ce.step = STEP_NETNS;
        goto fail;
    }
    /* Into its CPU quota group before exec (runtime/cpu_cgroup.h): its pid
     * in decimal, formatted without stdio. */
    if (cg_fd >= 0) {
        char num[16];
        int k = (int)sizeof num;
        for (unsigned v = (unsigned)getpid(); k > 0 && (k == (int)sizeof num || v > 0); v /= 10)
            num[--k] = (char)('0' + v % 10);
        if (write(cg_fd, num + k, sizeof num - (size_t)k) < 0) {
            ce.step = STEP_CGROUP;
            goto fail;
        }
    }
    if (as_limit > 0) {
        struct rlimit rl = {.rlim_cur = (rlim_t)as_limit, .rlim_max = (rlim_t)as_limit};
        if (setrlimit(RLIMIT_AS, &rl) != 0)
            goto fail;
    }
    char *argv[2] = {(char *)path, NULL};
    execve(path, argv, envp);
fail:
    ce.err = errno;
    ssize_t w = write(ex[1], &ce, sizeof ce);
    (void)w;
    _exit(127);
}

int flc_proc_spawn(const char *path, char *const envp[], uint64_t as_limit_bytes,
                   const char *netns_path, flc_proc_t *out, char *msg, size_t msgcap)
{
    return flc_proc_spawn_owned(path, envp, as_limit_bytes, netns_path, -1, out, msg, msgcap);
}

int flc_proc_spawn_owned(const char *path, char *const envp[], uint64_t as_limit_bytes,
                         const char *netns_path, pid_t pgid, flc_proc_t *out, char *msg,
                         size_t msgcap)
{
    return flc_proc_spawn_cg(path, envp, as_limit_bytes, netns_path, pgid, -1, out, msg, msgcap);
}

int flc_proc_spawn_cg(const char *path, char *const envp[], uint64_t as_limit_bytes,
                      const char *netns_path, pid_t pgid, int cg_fd, flc_proc_t *out,
                      char *msg, size_t msgcap)
{
    pid_t parent = getpid();
    int in[2] = {-1, -1}, o[2] = {-1, -1}, er[2] = {-1, -1}, ex[2] = {-1, -1};
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(o, O_CLOEXEC) != 0 || pipe2(er, O_CLOEXEC) != 0 ||
        pipe2(ex, O_CLOEXEC) != 0) {
        int e = errno;
        snprintf(msg, msgcap, "cannot create pipes for %s: %s", path, strerror(e));
        close_pair(in), close_pair(o), close_pair(er), close_pair(ex);
        return -e;
    }
    pid_t pid = fork();
    if (pid == 0)
        child(path, envp, as_limit_bytes, netns_path, pgid, parent, cg_fd, in, o, er, ex);
    int fe = errno;
    /* The same setpgid as the child's, so the group holds the child before
     * either returns (EACCES once it has exec'ed, ESRCH once gone: fine). */
    if (pid > 0 && pgid >= 0 && setpgid(pid, pgid != 0 ? pgid : pid) != 0 && pgid != 0)
        setpgid(pid, pid);
    close(in[0]), close(o[1]), close(er[1]), close(ex[1]);
    if (pid < 0) {
        snprintf(msg, msgcap, "cannot fork for %s: %s", path, strerror(fe));
        close(in[1]), close(o[0]), close(er[0]), close(ex[0]);
        return -fe;
    }
    /* The exec-error pipe closes on a successful exec (read returns 0) or
     * carries the child's errno. */
    child_err_t ce;
    ssize_t n;
    do {
        n = read(ex[0], &ce, sizeof ce);
    } while (n < 0 && errno == EINTR);
    close(ex[0]);
    if (n == (ssize_t)sizeof ce) {
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
        if (ce.step == STEP_CGROUP)
            snprintf(msg, msgcap, "cannot enter the CPU quota group of %s: %s", path,
                     strerror(ce.err));
        else if (ce.step == STEP_NETNS)
            snprintf(msg, msgcap, "cannot enter network namespace %s: %s", netns_path,
                     strerror(ce.err));
        else
            snprintf(msg, msgcap, "cannot run %s: %s", path, strerror(ce.err));
        close(in[1]), close(o[0]), close(er[0]);
        return ce.err > 0 ? -ce.err : -EIO;
    }
    out->pid = pid;
    pid_t g = pgid < 0 ? 0 : getpgid(pid);
    out->pgid = pgid < 0 ? 0 : g > 0 ? g : pid;
    out->in_fd = in[1];
    out->out_fd = o[0];
    out->err_fd = er[0];
    return 0;
}

uint64_t flc_proc_status_kb(pid_t pid, const char *field)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    size_t fl = strlen(field);
    for (char *line = buf; line != NULL && *line != '\0';) {
        if (strncmp(line, field, fl) == 0 && line[fl] == ':')
            return strtoull(line + fl + 1, NULL, 10);
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    return 0;
}

int flc_proc_reset_hwm(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/clear_refs", (int)pid);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = write(fd, "5", 1) == 1 ? 0 : -errno;
    close(fd);
    return rc;
}

void flc_proc_describe(int wstatus, char *buf, size_t cap)
{
    if (WIFEXITED(wstatus))
        snprintf(buf, cap, "exited with code %d", WEXITSTATUS(wstatus));
    else if (WIFSIGNALED(wstatus))
        snprintf(buf, cap, "killed by signal %d (%s)", WTERMSIG(wstatus),
                 strsignal(WTERMSIG(wstatus)));
    else
        snprintf(buf, cap, "ended with wait status %#x", (unsigned)wstatus);
}

char **flc_proc_env_new(const char *const *extra)
{
    size_t n = 0, m = 0;
    while (environ != NULL && environ[n] != NULL)
        n++;
    while (extra != NULL && extra[m] != NULL)
        m++;
    char **envp = calloc(n + m + 1, sizeof *envp);
    if (envp == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < m; i++)
        envp[k++] = strdup(extra[i]);
    for (size_t i = 0; i < n; i++) {
        /* extra settings win over the inherited ones */
        const char *eq = strchr(environ[i], '=');
        size_t nl = eq != NULL ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int dup = 0;
        for (size_t j = 0; j < m && !dup; j++)
            dup = strncmp(extra[j], environ[i], nl) == 0 && extra[j][nl] == '=';
        if (!dup)
            envp[k++] = strdup(environ[i]);
    }
    for (size_t i = 0; i < k; i++)
        if (envp[i] == NULL) {
            for (size_t j = 0; j < k; j++)
                free(envp[j]);
            free(envp);
            return NULL;
        }
    return envp;
}

void flc_proc_env_free(char **envp)
{
    if (envp == NULL)
        return;
    for (size_t i = 0; envp[i] != NULL; i++)
        free(envp[i]);
    free(envp);
}
