/* cpu_cgroup.c - per-instance CPU quota following memory (see cpu_cgroup.h).
 * Files are written with plain open/write: the kernel's cgroup files take
 * one value per write. */
#define _GNU_SOURCE
#include "runtime/cpu_cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct flc_cpucg {
    char path[PATH_MAX];
    int procs_fd;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned g_seq; /* groups made by this process, under g_mu */

/* 1 when word is one of the sep-separated tokens of list. */
static int has_token(const char *list, const char *word, const char *sep)
{
    size_t wl = strlen(word);
    for (const char *p = list; *p != '\0';) {
        size_t l = strcspn(p, sep);
        if (l == wl && strncmp(p, word, wl) == 0)
            return 1;
        p += l;
        p += strspn(p, sep);
    }
    return 0;
}

static int read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

/* Writes text to dir/file; 0 or -errno. */
static int write_file(const char *dir, const char *file, const char *text)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, text, strlen(text));
    int rc = n == (ssize_t)strlen(text) ? 0 : -(n < 0 ? errno : EIO);
    close(fd);
    return rc;
}

int flc_cpucg_probe(char *root, size_t cap, int *version, flc_err_t *e)
{
    FILE *f = fopen("/proc/self/mounts", "re");
    if (f == NULL)
        return flc_err_set(e, FLC_EIO, "cpu quota: cannot read /proc/self/mounts: %s",
                           strerror(errno));
    char line[1024], v1[PATH_MAX] = "", v2[PATH_MAX] = "";
    while (fgets(line, sizeof line, f) != NULL) {
        char dev[256], mnt[PATH_MAX], type[64], opts[512];
        if (sscanf(line, "%255s %4095s %63s %511s", dev, mnt, type, opts) != 4)
            continue;
        if (strcmp(type, "cgroup2") == 0 && v2[0] == '\0') {
            char path[PATH_MAX + 32], ctl[512];
            snprintf(path, sizeof path, "%s/cgroup.controllers", mnt);
            if (read_small(path, ctl, sizeof ctl) == 0 && has_token(ctl, "cpu", " \n"))
                snprintf(v2, sizeof v2, "%s", mnt);
        } else if (strcmp(type, "cgroup") == 0 && v1[0] == '\0' && has_token(opts, "cpu", ",")) {
            snprintf(v1, sizeof v1, "%s", mnt);
        }
    }
    fclose(f);
    /* The controller is bound to one hierarchy; v2 first where both show. */
    if (v2[0] != '\0') {
        *version = 2;
        snprintf(root, cap, "%s", v2);
    } else if (v1[0] != '\0') {
        *version = 1;
        snprintf(root, cap, "%s", v1);
    } else {
        return flc_err_set(e, FLC_ENOTFOUND, "cpu quota: no cgroup v1 mount with the cpu "
                           "controller and no cgroup2 mount offering cpu in /proc/self/mounts");
    }
    return FLC_OK;
}

double flc_cpucg_vcpus(unsigned memory_mb, unsigned mb_per_vcpu)
{
    double v = (double)memory_mb / (double)(mb_per_vcpu ? mb_per_vcpu : FLC_CPUCG_MB_PER_VCPU);
    return v < 0.01 ? 0.01 : v;
}

/* <root>/flcache, made once; for v2 with the cpu controller enabled for
 * its children (the root's subtree_control must offer it too). */
static int base_dir(char *base, size_t cap, int *version, flc_err_t *e)
{
    char root[PATH_MAX - 64]; /* leaves room for "/flcache" in base */
    int rc = flc_cpucg_probe(root, sizeof root, version, e);
    if (rc != FLC_OK)
        return rc;
    snprintf(base, cap, "%s/flcache", root);
    if (mkdir(base, 0755) != 0 && errno != EEXIST)
        return flc_err_set(e, FLC_EIO, "cpu quota: cannot create %s: %s (root needed)", base,
                           strerror(errno));
    if (*version == 2) {
        write_file(root, "cgroup.subtree_control", "+cpu"); /* often on already */
        int w = write_file(base, "cgroup.subtree_control", "+cpu");
        if (w != 0)
            return flc_err_set(e, FLC_EIO, "cpu quota: cannot enable cpu in "
                               "%s/cgroup.subtree_control: %s", base, strerror(-w));
    }
    return FLC_OK;
}

flc_cpucg_t *flc_cpucg_new(unsigned memory_mb, unsigned mb_per_vcpu, flc_err_t *e)
{
    char base[PATH_MAX - 32];
    int version;
    if (base_dir(base, sizeof base, &version, e) != FLC_OK)
        return NULL;
    flc_cpucg_t *g = calloc(1, sizeof *g);
    if (g == NULL) {
        flc_err_set(e, FLC_ENOMEM, "cpu quota: out of memory");
        return NULL;
    }
    g->procs_fd = -1;
    pthread_mutex_lock(&g_mu);
    unsigned n = g_seq++;
    pthread_mutex_unlock(&g_mu);
    snprintf(g->path, sizeof g->path, "%s/%d.%u", base, (int)getpid(), n);
    int made = mkdir(g->path, 0755);
    /* Another process's flc_cpucg_sweep may have removed the empty base
     * between the two mkdirs: make it again, once. */
    if (made != 0 && errno == ENOENT && base_dir(base, sizeof base, &version, e) == FLC_OK)
        made = mkdir(g->path, 0755);
    if (made != 0) {
        flc_err_set(e, FLC_EIO, "cpu quota: cannot create %s: %s", g->path, strerror(errno));
        free(g);
        return NULL;
    }
    long long quota = (long long)(flc_cpucg_vcpus(memory_mb, mb_per_vcpu) * FLC_CPUCG_PERIOD_US);
    if (quota < 1000)
        quota = 1000;
    char text[64];
    int w;
    if (version == 2) {
        snprintf(text, sizeof text, "%lld %d", quota, FLC_CPUCG_PERIOD_US);
        w = write_file(g->path, "cpu.max", text);
    } else {
        snprintf(text, sizeof text, "%d", FLC_CPUCG_PERIOD_US);
        w = write_file(g->path, "cpu.cfs_period_us", text);
        snprintf(text, sizeof text, "%lld", quota);
        if (w == 0)
            w = write_file(g->path, "cpu.cfs_quota_us", text);
    }
    char procs[PATH_MAX + 16];
    snprintf(procs, sizeof procs, "%s/cgroup.procs", g->path);
    if (w == 0 && (g->procs_fd = open(procs, O_WRONLY | O_CLOEXEC)) < 0)
        w = -errno;
    if (w != 0) {
        flc_err_set(e, FLC_EIO, "cpu quota: cannot set %s's quota of %lld us per %d us: %s",
                    g->path, quota, FLC_CPUCG_PERIOD_US, strerror(-w));
        flc_cpucg_free(g);
        return NULL;
    }
    return g;
}

int flc_cpucg_procs_fd(const flc_cpucg_t *g)
{
    return g != NULL ? g->procs_fd : -1;
}

const char *flc_cpucg_path(const flc_cpucg_t *g)
{
    return g != NULL ? g->path : "";
}

int flc_cpucg_attach(flc_cpucg_t *g, pid_t pid, flc_err_t *e)
{
    char text[32];
    snprintf(text, sizeof text, "%d", (int)pid);
    int w = write_file(g->path, "cgroup.procs", text);
    if (w != 0)
        return flc_err_set(e, FLC_EIO, "cpu quota: cannot move process %d into %s: %s",
                           (int)pid, g->path, strerror(-w));
    return FLC_OK;
}

/* rmdir, retried for up to ~50 ms while an exiting task still counts. */
static int remove_dir(const char *path)
{
    for (int i = 0; i < 50; i++) {
        if (rmdir(path) == 0 || errno == ENOENT)
            return 0;
        if (errno != EBUSY)
            return -1;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

void flc_cpucg_free(flc_cpucg_t *g)
{
    if (g == NULL)
        return;
    if (g->procs_fd >= 0)
        close(g->procs_fd);
    remove_dir(g->path);
    free(g);
}

int flc_cpucg_sweep(int all)
{
    char root[PATH_MAX], base[PATH_MAX + 16];
    int version, removed = 0;
    flc_err_t e = {0};
    if (flc_cpucg_probe(root, sizeof root, &version, &e) != FLC_OK)
        return 0;
    snprintf(base, sizeof base, "%s/flcache", root);
    DIR *d = opendir(base);
    if (d == NULL)
        return 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int owner;
        unsigned n;
        if (sscanf(de->d_name, "%d.%u", &owner, &n) != 2 || owner <= 0)
            continue;
        int mine = owner == (int)getpid();
        if (mine ? !all : (kill(owner, 0) == 0 || errno != ESRCH))
            continue;
        char path[PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", base, de->d_name);
        if (rmdir(path) == 0)
            removed++;
    }
    closedir(d);
    /* The base goes too once no group is left (anyone's: rmdir refuses
     * a directory that still has one). */
    rmdir(base);
    return removed;
}
