/* Starting, watching and stopping a private redis-server.
 *
 * fork + exec rather than posix_spawn because the child must call
 * prctl(PR_SET_PDEATHSIG) before exec: that is what guarantees no orphaned
 * server when flcache is killed with SIGKILL. Readiness is checked by
 * connecting and sending PING; that short start-up loop is the only place
 * flcache polls, since a process that has not yet bound its socket cannot
 * notify anyone. */
#include "cache/embed.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "base/clock.h"

#ifndef FLC_REDIS_SERVER_PATH
#define FLC_REDIS_SERVER_PATH "/usr/bin/redis-server"
#endif

struct flc_embed {
    pid_t pid;
    int port;
    int own_dir; /* we made dir and remove it on stop */
    flc_embed_opts_t opts;
    char dir[256];
    char conf[160]; /* the server's MALLOC_CONF, "" for none of ours */
    char sock[300];
    char log[300];
    char url[320];
    char tcp_url[64];
    char bin[512]; /* the server binary, kept for flc_embed_restart */
};

/* For the async-signal-safe emergency stop: plain copies, no pointers chasing. */
static volatile sig_atomic_t g_emerg_pid;
static char g_emerg_sock[300], g_emerg_log[300], g_emerg_dir[256];
static volatile int g_emerg_own_dir;

int flc_embed_unused_port(flc_err_t *err)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return flc_err_set(err, FLC_EIO, "socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        int e = errno;
        close(fd);
        return flc_err_set(err, FLC_EIO, "cannot find a free loopback port: %s", strerror(e));
    }
    close(fd);
    return ntohs(a.sin_port);
}

int flc_embed_private_dir(const char *dir, flc_err_t *err)
{
    if (mkdir(dir, 0700) == 0)
        return FLC_OK; /* ours, made now: the mode is 0700 less the umask */
    if (errno != EEXIST)
        return flc_err_set(err, FLC_EIO, "cannot create %s: %s", dir, strerror(errno));
    struct stat st;
    if (lstat(dir, &st) != 0)
        return flc_err_set(err, FLC_EIO, "cannot inspect %s: %s", dir, strerror(errno));
    if (S_ISLNK(st.st_mode))
        return flc_err_set(err, FLC_EINVAL,
                           "%s is a symbolic link, not a private directory: remove it or "
                           "choose another directory",
                           dir);
    if (!S_ISDIR(st.st_mode))
        return flc_err_set(err, FLC_EINVAL, "%s exists and is not a directory", dir);
    if (st.st_uid != geteuid())
        return flc_err_set(err, FLC_EINVAL,
                           "%s is owned by uid %u, not by you (uid %u): refusing to use it; "
                           "remove it or choose another directory",
                           dir, (unsigned)st.st_uid, (unsigned)geteuid());
    if ((st.st_mode & 077) != 0)
        return flc_err_set(err, FLC_EINVAL,
                           "%s has mode %04o: others can use it, refusing (it must be 0700: "
                           "chmod 700 it, or remove it)",
                           dir, (unsigned)(st.st_mode & 07777));
    return FLC_OK;
}

const char *flc_embed_server_bin(const flc_embed_opts_t *opts)
{
    return opts && opts->server_bin && *opts->server_bin ? opts->server_bin
                                                         : FLC_REDIS_SERVER_PATH;
}

static int ping_once(const char *sock)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectUnixWithTimeout(sock, tv);
    if (c == NULL)
        return 0;
    int ok = 0;
    if (!c->err) {
        redisReply *r = redisCommand(c, "PING");
        ok = r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
        if (r)
            freeReplyObject(r);
    }
    redisFree(c);
    return ok;
}

/* jemalloc's options for the server when the caller names none: freed
 * pages are kept 5 s, then given back lazily (MADV_FREE: the kernel takes
 * them only when it needs memory; a page used again before costs nothing)
 * instead of MADV_DONTNEED after 10 s. A store's traffic frees and
 * allocates the same sizes round after round (updates, merged shards, the
 * reply buffers of every read), and on these VMs each page given back
 * costs a fault to take again: bench/queries, 25 MB updates, a query read
 * its round at 0.3-0.4 GB/s with jemalloc's purging and 1.0-1.2 GB/s
 * keeping every page (raw GETs of the same bytes 1.9-2.4 GB/s). Keeping
 * every page for good is not safe: jemalloc reused too little of what it
 * kept in bench/cluster's query case and each server grew to 8 GB
 * (scripts/testbed.sh has the numbers of each setting). */
#define EMBED_MALLOC_CONF "dirty_decay_ms:5000,muzzy_decay_ms:-1"

/* The server's environment: this process's, with MALLOC_CONF set to conf
 * (any of ours dropped), or unchanged for conf "" (jemalloc's defaults or
 * what the caller's environment says). malloc'd array, strings borrowed
 * (conf_kv holds the new entry); NULL when out of memory. */
static char **server_env(const char *conf, char *conf_kv, size_t cap)
{
    extern char **environ;
    size_t n = 0;
    while (environ[n] != NULL)
        n++;
    char **env = malloc((n + 2) * sizeof *env);
    if (env == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (*conf == '\0' || strncmp(environ[i], "MALLOC_CONF=", 12) != 0)
            env[k++] = environ[i];
    if (*conf != '\0') {
        snprintf(conf_kv, cap, "MALLOC_CONF=%s", conf);
        env[k++] = conf_kv;
    }
    env[k] = NULL;
    return env;
}

static int spawn_server(flc_embed_t *e, flc_err_t *err)
{
    const char *bin = e->bin;
    if (access(bin, X_OK) != 0)
        return flc_err_set(err, FLC_EIO,
                           "redis-server not found at %s: install the Debian package "
                           "'redis-server' or set FLCACHE_REDIS_SERVER",
                           bin);
    char port[16], maxmem[32];
    snprintf(port, sizeof port, "%d", e->port);
    snprintf(maxmem, sizeof maxmem, "%zu", e->opts.maxmemory);
    const char *argv[] = {bin,
                          "--port", port,
                          "--bind", "127.0.0.1",
                          "--unixsocket", e->sock,
                          "--unixsocketperm", "700",
                          /* No RDB snapshots either way: with the AOF they would
                           * write the whole dataset again (a fork, copy-on-write
                           * of every model update) for nothing the AOF (its
                           * rewrites start from an RDB preamble) does not keep. */
                          "--save", "",
                          "--appendonly", e->opts.persist ? "yes" : "no",
                          /* At most ~1 s of writes lost on a crash of the machine,
                           * without an fsync per command. */
                          "--appendfsync", "everysec",
                          "--dir", e->dir,
                          "--logfile", e->log,
                          "--daemonize", "no",
                          "--maxmemory", maxmem,
                          /* The store keeps usage under maxmemory itself and
                           * spills before it evicts; Redis must never drop keys
                           * on its own, so it refuses writes instead. */
                          "--maxmemory-policy", "noeviction",
                          "--protected-mode", "no",
                          NULL};
    /* built before the fork: the child of a threaded process may only
     * call async-signal-safe functions before exec */
    char conf_kv[200];
    char **env = server_env(e->conf, conf_kv, sizeof conf_kv);
    if (env == NULL)
        return flc_err_set(err, FLC_ENOMEM, "out of memory");
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        free(env);
        return flc_err_set(err, FLC_EIO, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        if (e->opts.detach) {
            setsid();
        } else {
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent) /* parent died before prctl took effect */
                _exit(127);
        }
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execve(bin, (char *const *)argv, env);
        _exit(127);
    }
    free(env);
    e->pid = pid;
    /* Registered before the PING wait: a Ctrl-C during start-up must clean
     * up too (test_cli caught the gap under ASan's slower start). */
    if (!e->opts.detach) {
        g_emerg_own_dir = e->own_dir;
        memcpy(g_emerg_sock, e->sock, sizeof g_emerg_sock);
        memcpy(g_emerg_log, e->log, sizeof g_emerg_log);
        memcpy(g_emerg_dir, e->dir, sizeof g_emerg_dir);
        atomic_signal_fence(memory_order_seq_cst); /* paths before the pid a handler reads */
        g_emerg_pid = e->pid;
    }
    unsigned limit = e->opts.start_timeout_ms ? e->opts.start_timeout_ms : 5000;
    uint64_t t0 = flc_now_ns();
    for (;;) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            e->pid = 0;
            if (g_emerg_pid == pid)
                g_emerg_pid = 0;
            return flc_err_set(err, FLC_EIO, "redis-server exited during start-up (see %s)",
                               e->log);
        }
        if (ping_once(e->sock))
            break;
        if (flc_now_ns() - t0 > (uint64_t)limit * 1000000ull) {
            if (g_emerg_pid == pid)
                g_emerg_pid = 0;
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            e->pid = 0;
            return flc_err_set(err, FLC_ETIMEOUT,
                               "redis-server did not answer PING on %s within %u ms", e->sock,
                               limit);
        }
        flc_sleep_ms(10);
    }
    return FLC_OK;
}

flc_embed_t *flc_embed_start(const flc_embed_opts_t *opts, flc_err_t *err)
{
    flc_embed_t *e = calloc(1, sizeof *e);
    if (e == NULL) {
        flc_err_set(err, FLC_ENOMEM, "out of memory");
        return NULL;
    }
    if (opts)
        e->opts = *opts;
    const char *bin = flc_embed_server_bin(&e->opts);
    if ((size_t)snprintf(e->bin, sizeof e->bin, "%s", bin) >= sizeof e->bin) {
        flc_err_set(err, FLC_EINVAL, "redis-server path %.64s... is too long", bin);
        free(e);
        return NULL;
    }
    if (e->opts.dir) {
        snprintf(e->dir, sizeof e->dir, "%s", e->opts.dir);
        if (flc_embed_private_dir(e->dir, err) != FLC_OK) {
            free(e);
            return NULL;
        }
    } else {
        const char *tmp = e->opts.tmpdir;
        snprintf(e->dir, sizeof e->dir, "%s/flcache-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (mkdtemp(e->dir) == NULL) {
            flc_err_set(err, FLC_EIO, "cannot create a temp dir in %s: %s",
                        tmp && *tmp ? tmp : "/tmp", strerror(errno));
            free(e);
            return NULL;
        }
        e->own_dir = 1;
    }
    const char *conf = e->opts.malloc_conf ? e->opts.malloc_conf : EMBED_MALLOC_CONF;
    if ((size_t)snprintf(e->conf, sizeof e->conf, "%s", strcmp(conf, "default") ? conf : "") >=
        sizeof e->conf) {
        flc_err_set(err, FLC_EINVAL, "MALLOC_CONF for redis-server over %zu characters",
                    sizeof e->conf - 1);
        if (e->own_dir)
            rmdir(e->dir);
        free(e);
        return NULL;
    }
    /* These point into the caller's memory; dir[], bin[] and conf[] hold them. */
    e->opts.dir = e->opts.tmpdir = e->opts.server_bin = e->opts.malloc_conf = NULL;
    snprintf(e->sock, sizeof e->sock, "%s/redis.sock", e->dir);
    snprintf(e->log, sizeof e->log, "%s/redis.log", e->dir);
    snprintf(e->url, sizeof e->url, "unix://%s", e->sock);
    if (e->opts.tcp_port < 0) {
        int p = flc_embed_unused_port(err);
        if (p < 0) {
            flc_embed_stop(e);
            return NULL;
        }
        e->port = p;
    } else {
        e->port = e->opts.tcp_port;
    }
    if (e->port > 0)
        snprintf(e->tcp_url, sizeof e->tcp_url, "redis://127.0.0.1:%d", e->port);
    if (spawn_server(e, err) != FLC_OK) {
        flc_embed_stop(e);
        return NULL;
    }
    return e;
}

const char *flc_embed_url(const flc_embed_t *e)
{
    return e->url;
}

const char *flc_embed_tcp_url(const flc_embed_t *e)
{
    return e->port > 0 ? e->tcp_url : NULL;
}

int flc_embed_port(const flc_embed_t *e)
{
    return e->port;
}

pid_t flc_embed_pid(const flc_embed_t *e)
{
    return e->pid;
}

const char *flc_embed_dir(const flc_embed_t *e)
{
    return e->dir;
}

int flc_embed_kill(flc_embed_t *e)
{
    if (e->pid <= 0)
        return FLC_EINVAL;
    if (g_emerg_pid == e->pid) /* before reaping: a recycled pid is never signalled */
        g_emerg_pid = 0;
    kill(e->pid, SIGKILL);
    waitpid(e->pid, NULL, 0);
    e->pid = 0;
    unlink(e->sock);
    return FLC_OK;
}

int flc_embed_restart(flc_embed_t *e, flc_err_t *err)
{
    if (e->pid > 0)
        flc_embed_kill(e);
    return spawn_server(e, err);
}

void flc_embed_stop(flc_embed_t *e)
{
    if (e == NULL)
        return;
    if (e->pid > 0) {
        if (g_emerg_pid == e->pid) /* before reaping: a recycled pid is never signalled */
            g_emerg_pid = 0;
        kill(e->pid, SIGTERM);
        uint64_t t0 = flc_now_ns();
        while (waitpid(e->pid, NULL, WNOHANG) == 0) {
            if (flc_now_ns() - t0 > 2000000000ull) {
                kill(e->pid, SIGKILL);
                waitpid(e->pid, NULL, 0);
                break;
            }
            flc_sleep_ms(5);
        }
    }
    if (e->own_dir) {
        unlink(e->sock);
        unlink(e->log);
        rmdir(e->dir);
    }
    free(e);
}

void flc_embed_forget(flc_embed_t *e)
{
    free(e);
}

void flc_embed_emergency_stop(void)
{
    pid_t pid = (pid_t)g_emerg_pid;
    if (pid <= 0)
        return;
    g_emerg_pid = 0;
    atomic_signal_fence(memory_order_seq_cst); /* the paths were written before the pid */
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    if (g_emerg_own_dir) {
        unlink(g_emerg_sock);
        unlink(g_emerg_log);
        rmdir(g_emerg_dir);
    }
}
