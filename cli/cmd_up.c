/* `flcache up` / `flcache down`: a long-lived private redis-server for a
 * series of commands, so their rounds accumulate in one cache. The server
 * lives in a per-user directory (default /tmp/flcache-up-<uid>) holding its
 * socket, log and pid file; `up` is idempotent (an answering server is reused).
 *
 * History is what the cache is kept for, so the server is persistent unless
 * told otherwise (--no-persist): an append-only file in DIR/appendonlydir,
 * fsync'd every second, which a later `up` in the same DIR loads again (after
 * `down`, a crash or a reboot). `down` keeps it; `down --purge` removes it.
 *
 * The directory is trusted only when it is private (flc_embed_private_dir:
 * made 0700 by us, or an existing one we own with no group/other access),
 * since whoever can write in it could plant a socket of their own, a
 * symlinked pid or log file, or a pid file naming any process. The pid file
 * is created with O_EXCL | O_NOFOLLOW and records "PID START EXE": the
 * server's start time (clock ticks after boot, /proc/PID/stat field 22) and
 * its binary (/proc/PID/exe). `down` signals the pid only when all three
 * still match and EXE is the redis-server binary flcache runs; it holds a
 * pidfd across the check and the signal, so a pid recycled in between is
 * never signalled. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/clock.h"
#include "cli/cli.h"
#include "cli/opt.h"

typedef struct up_opts {
    const char *dir;
    int port;               /* 0: unix socket only */
    size_t maxmem;          /* 0: no limit */
    int no_persist;         /* up: no append-only file */
    int purge;              /* down: remove the append-only file too */
    char default_dir[256];
} up_opts_t;

#define DIR_OPTION                                                                  \
    {.name = "dir", .type = FLC_OPT_STR, .meta = "DIR", FLC_OPT_AT(up_opts_t, dir), \
     .help = "where socket, log and pid live"}

static const flc_opt_t up_options[] = {
    DIR_OPTION,
    {.name = "port", .type = FLC_OPT_INT, .meta = "N", FLC_OPT_AT(up_opts_t, port), .imin = 1,
     .imax = 65535, .def = "unix socket only", .help = "also listen on 127.0.0.1:N"},
    {.name = "maxmemory", .type = FLC_OPT_INT, .meta = "BYTES", FLC_OPT_AT(up_opts_t, maxmem),
     .imin = 0, .imax = LLONG_MAX, .def = "none", .help = "memory limit of the server"},
    {.name = "no-persist", .type = FLC_OPT_FLAG, FLC_OPT_AT(up_opts_t, no_persist),
     .help = "keep nothing on disk: the jobs are lost when the server stops"},
    {0},
};

static const flc_opt_t down_options[] = {
    DIR_OPTION,
    {.name = "purge", .type = FLC_OPT_FLAG, FLC_OPT_AT(up_opts_t, purge),
     .help = "also delete the server's append-only file: every job it kept"},
    {0},
};

static const flc_opt_cmd_t up_cmd = {
    .prog = "flcache up",
    .synopsis = "[--dir DIR] [--port N] [--maxmemory BYTES] [--no-persist]",
    .about =
        "Starts a redis-server that outlives the command and prints the line to\n"
        "export so later commands use it:\n"
        "  eval \"$(flcache up)\"   # sets FLCACHE_REDIS\n"
        "The server is persistent: it keeps an append-only file in DIR/appendonlydir\n"
        "(fsync every second: a crash loses at most about one second of writes; no\n"
        "RDB snapshots), and `flcache up` with the same DIR after `flcache down`, a\n"
        "crash or a reboot loads every job again. The default DIR is under /tmp,\n"
        "which many systems empty at boot: keep history across reboots with --dir on\n"
        "a persistent disk. --no-persist keeps nothing on disk. (Without FLCACHE_REDIS\n"
        "each command starts its own throwaway server instead, never persistent.)\n"
        "A server already answering in DIR is reused. `flcache down` stops it. DIR\n"
        "must be private: up creates it with mode 0700, and refuses an existing one\n"
        "that is a link, is not yours or that others can use.\n",
    .opts = up_options,
};

static const flc_opt_cmd_t down_cmd = {
    .prog = "flcache down",
    .synopsis = "[--dir DIR] [--purge]",
    .about = "Stops the redis-server started by `flcache up` and removes its socket, log\n"
             "and pid file. Its append-only file (DIR/appendonlydir) stays, so the next\n"
             "`flcache up --dir DIR` finds every job again; --purge deletes it too.\n"
             "The directory itself goes once nothing is left in it.\n",
    .opts = down_options,
};

static void default_dir(char *out, size_t n)
{
    const char *tmp = flc_config_program()->tmpdir; /* TMPDIR */
    snprintf(out, n, "%s/flcache-up-%u", tmp && *tmp ? tmp : "/tmp", (unsigned)getuid());
}

/* The options of up or down; the default DIR is per user. */
static int parse(const flc_opt_cmd_t *cmd, int argc, char **argv, up_opts_t *o, int *rc)
{
    memset(o, 0, sizeof *o);
    default_dir(o->default_dir, sizeof o->default_dir);
    o->dir = o->default_dir;
    return flc_opt_parse(cmd, argc, argv, o, sizeof *o, rc);
}

/* The identity of a running process: start time and binary. FLC_ENOTFOUND
 * when no process has that pid. */
static int proc_identity(int pid, unsigned long long *start, char *exe, size_t cap,
                         flc_err_t *err)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return errno == ENOENT ? flc_err_set(err, FLC_ENOTFOUND, "no process %d", pid)
                               : flc_err_set(err, FLC_EIO, "cannot read %s: %s", path,
                                             strerror(errno));
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "PID (COMM) STATE ..." where COMM may hold spaces and ')': fields
     * are counted from the last ')'; it ends field 2. */
    char *p = strrchr(buf, ')');
    for (int field = 2; p != NULL && field < 22; field++)
        p = strchr(p + 1, ' ');
    char *end = NULL;
    *start = p != NULL ? strtoull(p + 1, &end, 10) : 0;
    if (p == NULL || end == p + 1)
        return flc_err_set(err, FLC_EIO, "cannot read the start time of pid %d from %s", pid,
                           path);
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    ssize_t len = readlink(path, exe, cap - 1);
    if (len < 0)
        return flc_err_set(err, FLC_EIO, "cannot see which program pid %d runs (%s: %s)", pid,
                           path, strerror(errno));
    exe[len] = '\0';
    return FLC_OK;
}

/* A file of ours in the private dir that must not be a link or another
 * user's: a stale regular one is fine (unlink_stale removes it). */
static int check_own_file(const char *path, int unlink_stale, flc_err_t *err)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? FLC_OK
                               : flc_err_set(err, FLC_EIO, "cannot inspect %s: %s", path,
                                             strerror(errno));
    if (S_ISLNK(st.st_mode))
        return flc_err_set(err, FLC_EINVAL, "%s is a symbolic link: refusing to follow it", path);
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid())
        return flc_err_set(err, FLC_EINVAL, "%s is not a regular file of yours: refusing it",
                           path);
    if (unlink_stale && unlink(path) != 0)
        return flc_err_set(err, FLC_EIO, "cannot remove the stale %s: %s", path,
                           strerror(errno));
    return FLC_OK;
}

int flc_cmd_up(int argc, char **argv)
{
    up_opts_t u;
    int rc;
    if (!parse(&up_cmd, argc, argv, &u, &rc))
        return rc;
    const char *dir = u.dir;
    flc_err_t err = {0};
    if (flc_embed_private_dir(dir, &err) != FLC_OK) {
        flc_cli_error("up", "%s", flc_err_msg(&err));
        return FLC_EXIT_RUNTIME;
    }
    char sock[300], pidf[300], logf[300];
    snprintf(sock, sizeof sock, "%s/redis.sock", dir);
    snprintf(pidf, sizeof pidf, "%s/redis.pid", dir);
    snprintf(logf, sizeof logf, "%s/redis.log", dir);
    char url[320];
    snprintf(url, sizeof url, "unix://%s", sock);
    flc_store_t *probe = access(sock, F_OK) == 0 ? flc_store_open(url, NULL, &err) : NULL;
    if (probe) {
        flc_store_close(probe);
        printf("export FLCACHE_REDIS=%s\n", url);
        fprintf(stderr, "flcache up: already running at %s\n", url);
        return FLC_EXIT_OK;
    }
    flc_err_clear(&err); /* a socket that does not answer is stale, not an error */
    /* No server answers: a pid file left is stale. redis-server opens its
     * log with fopen (following links), so the log is checked too. */
    if (check_own_file(pidf, 1, &err) != FLC_OK || check_own_file(logf, 0, &err) != FLC_OK) {
        flc_cli_error("up", "%s", flc_err_msg(&err));
        return FLC_EXIT_RUNTIME;
    }
    int fd = open(pidf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        flc_cli_error("up", "cannot create %s: %s", pidf, strerror(errno));
        return FLC_EXIT_RUNTIME;
    }
    /* A persistent server first loads its append-only file (answering
     * LOADING meanwhile): a big history may take longer than the 5 s a
     * fresh server gets. */
    flc_embed_opts_t o = {.tcp_port = u.port, .maxmemory = u.maxmem, .dir = dir, .detach = 1,
                          .persist = !u.no_persist,
                          .start_timeout_ms = u.no_persist ? 0 : 600000};
    flc_config_embed_opts(flc_config_program(), &o); /* FLCACHE_REDIS_SERVER */
    flc_embed_t *e = flc_embed_start(&o, &err);
    unsigned long long start = 0;
    char exe[PATH_MAX];
    if (e != NULL && proc_identity((int)flc_embed_pid(e), &start, exe, sizeof exe, &err) == 0 &&
        dprintf(fd, "%d %llu %s\n", (int)flc_embed_pid(e), start, exe) < 0)
        flc_err_set(&err, FLC_EIO, "cannot write %s: %s", pidf, strerror(errno));
    if (close(fd) != 0 && err.code == 0)
        flc_err_set(&err, FLC_EIO, "cannot write %s: %s", pidf, strerror(errno));
    if (e == NULL || err.code != 0) {
        flc_embed_stop(e); /* a server down could not identify is not left running */
        unlink(pidf);
        flc_cli_error("up", "%s", flc_err_msg(&err));
        return FLC_EXIT_RUNTIME;
    }
    printf("export FLCACHE_REDIS=%s\n", flc_embed_url(e));
    if (flc_embed_tcp_url(e))
        fprintf(stderr, "flcache up: also listening at %s\n", flc_embed_tcp_url(e));
    fprintf(stderr, "flcache up: redis-server pid %d in %s (%s); stop it with `flcache down`\n",
            (int)flc_embed_pid(e), dir,
            u.no_persist ? "not persistent" : "persistent: appendonlydir, fsync every second");
    flc_embed_forget(e); /* the server outlives us */
    return FLC_EXIT_OK;
}

/* pidfd_open(2) through syscall(2): Debian 12's headers may lack the
 * wrapper. -1 (ENOSYS on old kernels) makes down fall back to kill(2). */
static int pidfd_open_(int pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

static int signal_pid(int pidfd, int pid, int sig)
{
#ifdef SYS_pidfd_send_signal
    if (pidfd >= 0)
        return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
#endif
    return kill(pid, sig);
}

/* Reads "PID START EXE" from the pid file without following a link, and
 * checks that PID is still that process and EXE the redis-server binary.
 * On success *pidfd (or -1) pins the process for the signal.
 * FLC_ENOTFOUND: the server is already gone. */
static int verify_server(const char *pidf, int *pid_out, int *pidfd, flc_err_t *err)
{
    *pidfd = -1;
    *pid_out = 0;
    int fd = open(pidf, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT
                   ? flc_err_set(err, FLC_EINVAL, "no server started by `flcache up` (no %s)",
                                 pidf)
               : errno == ELOOP
                   ? flc_err_set(err, FLC_EINVAL, "%s is a symbolic link: refusing to follow it",
                                 pidf)
                   : flc_err_set(err, FLC_EIO, "cannot open %s: %s", pidf, strerror(errno));
    struct stat st;
    char text[PATH_MAX + 64];
    ssize_t n = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid()
                    ? read(fd, text, sizeof text - 1)
                    : -2;
    close(fd);
    if (n == -2)
        return flc_err_set(err, FLC_EINVAL, "%s is not a regular file of yours: refusing it",
                           pidf);
    text[n > 0 ? n : 0] = '\0';
    int pid = 0;
    unsigned long long start = 0;
    char exe[PATH_MAX] = "";
    int got = sscanf(text, "%d %llu %4095s", &pid, &start, exe);
    *pid_out = pid;
    if (got < 1 || pid <= 1)
        return flc_err_set(err, FLC_EINVAL, "%s names no process", pidf);
    if (got < 3)
        return flc_err_set(err, FLC_EINVAL,
                           "%s names pid %d without the start time and binary `flcache up` "
                           "records: not signalling it (stop that server yourself)",
                           pidf, pid);
    /* Pin the process first, then check it: what is signalled is what was
     * checked, even if the pid is recycled in between. */
    *pidfd = pidfd_open_(pid);
    if (*pidfd < 0 && errno == ESRCH)
        return flc_err_set(err, FLC_ENOTFOUND, "pid %d is gone", pid);
    unsigned long long now_start = 0;
    char now_exe[PATH_MAX], want[PATH_MAX];
    int rc = proc_identity(pid, &now_start, now_exe, sizeof now_exe, err);
    if (rc == FLC_ENOTFOUND)
        return rc;
    if (rc != FLC_OK)
        return flc_err_wrap(err, "not signalling pid %d: ", pid);
    flc_embed_opts_t o = {0};
    flc_config_embed_opts(flc_config_program(), &o); /* FLCACHE_REDIS_SERVER */
    const char *bin = flc_embed_server_bin(&o);
    if (realpath(bin, want) == NULL)
        snprintf(want, sizeof want, "%s", bin);
    if (now_start != start)
        return flc_err_set(err, FLC_EINVAL,
                           "pid %d is not the redis-server `flcache up` started (it started at "
                           "tick %llu, %s says %llu): not signalling it",
                           pid, now_start, pidf, start);
    if (strcmp(now_exe, exe) != 0)
        return flc_err_set(err, FLC_EINVAL,
                           "pid %d runs %s, not the %s `flcache up` started: not signalling it",
                           pid, now_exe, exe);
    if (strcmp(exe, want) != 0)
        return flc_err_set(err, FLC_EINVAL,
                           "pid %d runs %s, which is not the redis-server binary (%s): not "
                           "signalling it",
                           pid, exe, want);
    return FLC_OK;
}

/* Deletes DIR/appendonlydir (the server's append-only files: plain files,
 * no subdirectories) without following a link. Returns how many files went,
 * or -1 with errno. */
static int purge_aof(const char *dir)
{
    char path[320];
    snprintf(path, sizeof path, "%s/appendonlydir", dir);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return -1;
    }
    int n = 0, bad = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0)
            n++;
        else
            bad = errno;
    }
    closedir(d);
    if (bad != 0 || rmdir(path) != 0) {
        errno = bad ? bad : errno;
        return -1;
    }
    return n;
}

int flc_cmd_down(int argc, char **argv)
{
    up_opts_t u;
    int rc;
    if (!parse(&down_cmd, argc, argv, &u, &rc))
        return rc;
    const char *dir = u.dir;
    flc_err_t err = {0};
    struct stat st;
    if (lstat(dir, &st) != 0) {
        flc_cli_error("down", "no server started by `flcache up` in %s (%s)", dir,
                      strerror(errno));
        return FLC_EXIT_RUNTIME;
    }
    if (flc_embed_private_dir(dir, &err) != FLC_OK) {
        flc_cli_error("down", "%s", flc_err_msg(&err));
        return FLC_EXIT_RUNTIME;
    }
    char path[320];
    snprintf(path, sizeof path, "%s/redis.pid", dir);
    int pid = 0, pidfd = -1;
    /* No server to stop, but its history to delete: --purge goes on. */
    int stopped = u.purge && lstat(path, &st) != 0 && errno == ENOENT;
    rc = stopped ? FLC_ENOTFOUND : verify_server(path, &pid, &pidfd, &err);
    if (rc != FLC_OK && rc != FLC_ENOTFOUND) {
        if (pidfd >= 0)
            close(pidfd);
        flc_cli_error("down", "%s", flc_err_msg(&err));
        return FLC_EXIT_RUNTIME;
    }
    if (rc == FLC_OK) {
        if (signal_pid(pidfd, pid, SIGTERM) != 0 && errno != ESRCH) {
            flc_cli_error("down", "cannot stop pid %d: %s", pid, strerror(errno));
            if (pidfd >= 0)
                close(pidfd);
            return FLC_EXIT_RUNTIME;
        }
        /* The pidfd turns readable when the process exits; without one,
         * poll kill(pid, 0). At most 2 s either way. */
        if (pidfd >= 0) {
            struct pollfd p = {.fd = pidfd, .events = POLLIN};
            poll(&p, 1, 2000);
        } else {
            for (int i = 0; i < 200 && kill(pid, 0) == 0; i++)
                flc_sleep_ms(10);
        }
    }
    if (pidfd >= 0)
        close(pidfd);
    unlink(path);
    snprintf(path, sizeof path, "%s/redis.sock", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/redis.log", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/appendonlydir", dir);
    int kept = 0;
    if (u.purge) {
        int n = purge_aof(dir);
        if (n < 0) {
            flc_cli_error("down", "cannot delete %s: %s", path, strerror(errno));
            return FLC_EXIT_RUNTIME;
        }
        if (n > 0)
            fprintf(stderr, "flcache down: deleted %s (%d files): its jobs are gone\n", path, n);
    } else {
        kept = lstat(path, &st) == 0;
    }
    rmdir(dir); /* fails, as it should, while the append-only file is kept */
    if (stopped)
        fprintf(stderr, "flcache down: no server was running in %s\n", dir);
    else if (rc == FLC_ENOTFOUND)
        fprintf(stderr, "flcache down: redis-server pid %d had already stopped; removed %s\n",
                pid, dir);
    else
        fprintf(stderr, "flcache down: stopped redis-server pid %d\n", pid);
    if (kept)
        fprintf(stderr, "flcache down: its jobs stay in %s: `flcache up --dir %s` loads them "
                "again (`flcache down --purge` deletes them)\n", path, dir);
    return FLC_EXIT_OK;
}
