/* `flcache up` / `flcache down` in a directory someone else may control
 * (issue 13, finding 7): up must use only a private directory (created 0700,
 * or an existing one owned by the user with no group/other access), must not
 * write through a planted symlink, and down must signal only the
 * redis-server up started (pid, start time and binary recorded by up), never
 * whatever pid a file names. Every case runs the real `flcache` binary with
 * --dir in its own temp directory and cleans up what a wrong run started. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "tests/harness.h"

static char g_bin[1024];
static char g_out[16384];
static char g_base[128]; /* this case's temp directory */

static char g_root[64]; /* the runner's temp directory, removed at the end */

/* Each case (its own process) works in a fresh directory under g_root. */
static void case_base(void)
{
    snprintf(g_base, sizeof g_base, "%s/case-XXXXXX", g_root);
    CHECK(mkdtemp(g_base) != NULL, "temp directory %s", g_base);
}

static int run(const char *verb, const char *dir)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "env -u FLCACHE_REDIS %s %s --dir %s", g_bin, verb, dir);
    int rc = flc_t_run(cmd, g_out, sizeof g_out);
    fprintf(stderr, "# flcache %s --dir %s: exit %d: %s", verb, dir, rc, g_out);
    return rc;
}

static int has(const char *s)
{
    return strstr(g_out, s) != NULL;
}

/* The first number in path, or 0. */
static int pid_in(const char *path)
{
    FILE *f = fopen(path, "r");
    int pid = 0;
    if (f != NULL) {
        if (fscanf(f, "%d", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return pid;
}

static int alive(pid_t pid)
{
    return pid > 0 && kill(pid, 0) == 0;
}

/* A server a wrong run of up left behind: killed so the test ends clean. */
static void kill_leftover(const char *pidfile)
{
    int pid = pid_in(pidfile);
    if (pid > 1 && alive(pid)) {
        fprintf(stderr, "# killing leftover server pid %d (named in %s)\n", pid, pidfile);
        kill(pid, SIGKILL);
    }
}

/* The start time (clock ticks after boot, /proc/PID/stat field 22), or 0. */
static unsigned long long start_time(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long long t = 0;
    if (p == NULL)
        return 0;
    p++;
    for (int field = 3; field < 22 && p != NULL; field++) /* p is before field 3 */
        p = strchr(p + 1, ' ');
    if (p != NULL)
        t = strtoull(p + 1, NULL, 10);
    return t;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "write %s", path);
    fputs(text, f);
    fclose(f);
}

TEST(private_round_trip)
{
    case_base();
    char dir[200], pidf[256];
    snprintf(dir, sizeof dir, "%s/up", g_base);
    snprintf(pidf, sizeof pidf, "%s/redis.pid", dir);
    int rc = run("up", dir);
    CHECK(rc == 0 && has("export FLCACHE_REDIS=unix://"), "up in a new directory starts a server");
    struct stat st;
    CHECK(lstat(dir, &st) == 0, "the directory exists");
    EXPECT(S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0700 && st.st_uid == getuid(),
           "up created it private: mode %04o (0700), owner %u (%u)", st.st_mode & 07777,
           (unsigned)st.st_uid, (unsigned)getuid());
    CHECK(lstat(pidf, &st) == 0, "the pid file exists");
    EXPECT(S_ISREG(st.st_mode) && (st.st_mode & 077) == 0,
           "the pid file is a regular file no one else can read or write (mode %04o)",
           st.st_mode & 07777);
    int pid = pid_in(pidf);
    CHECK(alive(pid), "the server (pid %d) runs", pid);
    /* A second up reuses it. */
    rc = run("up", dir);
    EXPECT(rc == 0 && has("already running"), "a second up reuses the running server");
    rc = run("down --purge", dir); /* --purge: the append-only file too (issue 13) */
    EXPECT(rc == 0, "down stops it");
    for (int i = 0; i < 200 && alive(pid); i++)
        flc_sleep_ms(10);
    EXPECT(!alive(pid), "the server pid %d is gone", pid);
    EXPECT(access(dir, F_OK) != 0, "down removed %s", dir);
    if (alive(pid))
        kill(pid, SIGKILL);
}

/* A server that died (SIGKILL) leaves its pid file: up replaces it, and
 * down over it removes the files without signalling anyone. */
TEST(stale_after_crash)
{
    case_base();
    char dir[200], pidf[256];
    snprintf(dir, sizeof dir, "%s/up", g_base);
    snprintf(pidf, sizeof pidf, "%s/redis.pid", dir);
    CHECK(run("up", dir) == 0, "up starts a server");
    int pid = pid_in(pidf);
    CHECK(alive(pid), "its pid %d runs", pid);
    kill(pid, SIGKILL);
    for (int i = 0; i < 200 && alive(pid); i++)
        flc_sleep_ms(10);
    int rc = run("up", dir);
    int pid2 = pid_in(pidf);
    EXPECT(rc == 0 && pid2 != pid && alive(pid2),
           "up after the crash replaces the stale pid file: new server %d (exit %d)", pid2, rc);
    EXPECT(run("down", dir) == 0, "down stops the new one");
    if (alive(pid2))
        kill(pid2, SIGKILL);
    CHECK(run("up", dir) == 0, "up again");
    pid = pid_in(pidf);
    kill(pid, SIGKILL);
    for (int i = 0; i < 200 && alive(pid); i++)
        flc_sleep_ms(10);
    rc = run("down --purge", dir);
    EXPECT(rc == 0 && has("already stopped") && access(dir, F_OK) != 0,
           "down after a crash says the server had stopped and removes %s (exit %d)", dir, rc);
}

TEST(dir_mode_0777)
{
    case_base();
    char dir[200], pidf[256], sock[256];
    snprintf(dir, sizeof dir, "%s/up", g_base);
    snprintf(pidf, sizeof pidf, "%s/redis.pid", dir);
    snprintf(sock, sizeof sock, "%s/redis.sock", dir);
    CHECK(mkdir(dir, 0700) == 0 && chmod(dir, 0777) == 0, "a world-writable %s", dir);
    int rc = run("up", dir);
    int refused = rc == 1 && has(dir) && has("0777") && access(sock, F_OK) != 0;
    kill_leftover(pidf);
    EXPECT(refused, "up refuses a mode-0777 directory, naming it and its mode, and starts "
                    "nothing (exit %d)", rc);
    rc = run("down", dir);
    EXPECT(rc == 1 && has(dir) && has("0777"), "down refuses it too (exit %d)", rc);
}

TEST(dir_other_owner)
{
    if (geteuid() != 0)
        flc_t_skip("needs root to give a directory to another user");
    case_base();
    char dir[200], pidf[256], sock[256];
    snprintf(dir, sizeof dir, "%s/up", g_base);
    snprintf(pidf, sizeof pidf, "%s/redis.pid", dir);
    snprintf(sock, sizeof sock, "%s/redis.sock", dir);
    CHECK(mkdir(dir, 0700) == 0 && chown(dir, 65534, 65534) == 0,
          "%s mode 0700 owned by uid 65534", dir);
    int rc = run("up", dir);
    int refused = rc == 1 && has(dir) && has("owned by uid 65534") && access(sock, F_OK) != 0;
    kill_leftover(pidf);
    EXPECT(refused, "up refuses a directory owned by someone else, naming it and the owner "
                    "(exit %d)", rc);
    /* A symlink to a private directory is not that directory. */
    char link[200], real[200];
    snprintf(real, sizeof real, "%s/real", g_base);
    snprintf(link, sizeof link, "%s/link", g_base);
    CHECK(mkdir(real, 0700) == 0 && symlink(real, link) == 0, "%s -> %s", link, real);
    rc = run("up", link);
    snprintf(pidf, sizeof pidf, "%s/redis.pid", real);
    refused = rc == 1 && has(link) && has("symbolic link");
    kill_leftover(pidf);
    EXPECT(refused, "up refuses a directory that is a symbolic link (exit %d)", rc);
}

TEST(pid_file_symlink)
{
    case_base();
    char dir[200], pidf[256], victim[200], got[64] = "";
    snprintf(dir, sizeof dir, "%s/up", g_base);
    snprintf(pidf, sizeof pidf, "%s/redis.pid", dir);
    snprintf(victim, sizeof victim, "%s/victim", g_base);
    CHECK(mkdir(dir, 0700) == 0, "private %s", dir);
    write_file(victim, "precious\n");
    CHECK(symlink(victim, pidf) == 0, "planted %s -> %s", pidf, victim);
    int rc = run("up", dir);
    FILE *f = fopen(victim, "r");
    if (f != NULL) {
        if (fgets(got, sizeof got, f) == NULL)
            got[0] = '\0';
        fclose(f);
    }
    kill_leftover(victim); /* today's up writes the server's pid there */
    EXPECT(strcmp(got, "precious\n") == 0, "the link's target is untouched (it holds '%.20s')",
           got);
    EXPECT(rc == 1 && has(pidf) && has("symbolic link"),
           "up refuses the planted pid file, naming it (exit %d)", rc);
}

/* Forks `sleep 60`: an unrelated process a pid file could name. */
static pid_t start_sleep(void)
{
    pid_t pid = fork();
    if (pid < 0)
        flc_t_fatal("fork: %s", strerror(errno));
    if (pid == 0) {
        execlp("sleep", "sleep", "60", (char *)NULL);
        _exit(127);
    }
    flc_sleep_ms(50); /* exec done: /proc/PID/exe is sleep's */
    return pid;
}

/* down over a pid file naming that process, in the given format. */
static void down_must_spare(const char *dir, const char *pidf, pid_t victim, const char *text,
                            const char *what)
{
    write_file(pidf, text);
    chmod(pidf, 0600);
    int rc = run("down", dir);
    flc_sleep_ms(100);
    int spared = waitpid(victim, NULL, WNOHANG) == 0 && alive(victim);
    char pidtext[32];
    snprintf(pidtext, sizeof pidtext, "%d", (int)victim);
    EXPECT(spared && rc == 1 && has(pidtext),
           "down over a pid file %s leaves pid %d alive and says so (exit %d)", what,
           (int)victim, rc);
}

TEST(down_foreign_pid)
{
    case_base();
    char dir[200], pidf[256], text[PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s/up", g_base);
    snprintf(pidf, sizeof pidf, "%s/redis.pid", dir);
    CHECK(mkdir(dir, 0700) == 0, "private %s", dir);
    pid_t victim = start_sleep();
    unsigned long long t = start_time(victim);
    CHECK(t > 0, "sleep pid %d started at tick %llu", (int)victim, t);
    char redis[PATH_MAX];
    if (realpath("/usr/bin/redis-server", redis) == NULL)
        snprintf(redis, sizeof redis, "/usr/bin/redis-server");

    snprintf(text, sizeof text, "%d\n", (int)victim);
    down_must_spare(dir, pidf, victim, text, "holding only a pid (today's format)");
    snprintf(text, sizeof text, "%d %llu %s\n", (int)victim, t + 1, redis);
    down_must_spare(dir, pidf, victim, text, "with the wrong start time");
    snprintf(text, sizeof text, "%d %llu %s\n", (int)victim, t, "/usr/bin/sleep");
    down_must_spare(dir, pidf, victim, text, "naming another binary than redis-server");
    snprintf(text, sizeof text, "%d %llu %s\n", (int)victim, t, redis);
    down_must_spare(dir, pidf, victim, text, "whose pid runs no redis-server");
    kill(victim, SIGKILL);
    waitpid(victim, NULL, 0);
}

static void setup(void)
{
    snprintf(g_bin, sizeof g_bin, "%s/flcache", flc_t_build_dir());
    if (access(g_bin, X_OK) != 0)
        flc_t_fatal("%s is not built", g_bin);
    snprintf(g_root, sizeof g_root, "/tmp/flc-upsafe-XXXXXX");
    if (mkdtemp(g_root) == NULL)
        flc_t_fatal("cannot create a temp directory: %s", strerror(errno));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_root);
    if (system(cmd) != 0)
        fprintf(stderr, "# could not remove %s\n", g_root);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(private_round_trip), TEST_ENTRY(stale_after_crash),
                 TEST_ENTRY(dir_mode_0777),
                 TEST_ENTRY(dir_other_owner), TEST_ENTRY(pid_file_symlink),
                 TEST_ENTRY(down_foreign_pid))
