/* The case runner (a fork per case, TAP output), the checks, and the
 * redis-server fixture for the tests (harness.h says how to write a test).
 *
 * Why a process per case, as libuv's runner does: a failed CHECK can simply
 * end the process, a crash or a sanitizer report is charged to the one case
 * that caused it, the cases cannot lean on each other's memory, and whatever
 * a case started (function processes, servers) dies with its process group.
 * The counts the children make are kept in a shared anonymous mapping so the
 * runner can sum them up at the end. */
#include "tests/harness.h"

#include "cache/store.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define SKIP_EXIT 77            /* a case's exit code for "skipped" (as automake's) */
#define CASE_TIMEOUT_S 280      /* below ctest's 300 s for the file; FLC_TEST_TIMEOUT overrides */

/* What the children write and the runner reads (one case runs at a time). */
typedef struct shared {
    int checks, failed; /* checks in the running case */
    char skip[256];     /* why the running case skipped */
} shared_t;

static shared_t *g_sh;
static shared_t g_local; /* until flc_t_main maps the shared one */
static int g_in_case;    /* 1 in a case's process: failures end the case, not the file */

typedef struct tracked {
    void *obj;
    void (*stop)(void *obj);
    pid_t owner;
} tracked_t;

static tracked_t g_tracked[16];
static size_t g_ntracked;

static shared_t *sh(void)
{
    return g_sh ? g_sh : &g_local;
}

void flc_t_track(void *obj, void (*stop)(void *obj))
{
    if (g_ntracked < sizeof g_tracked / sizeof g_tracked[0])
        g_tracked[g_ntracked++] = (tracked_t){obj, stop, getpid()};
}

void flc_t_untrack(void *obj)
{
    for (size_t i = 0; i < g_ntracked; i++)
        if (g_tracked[i].obj == obj) {
            g_tracked[i] = g_tracked[--g_ntracked];
            return;
        }
}

/* Stops, newest first, what this process started and still tracks. */
static void stop_tracked(void)
{
    pid_t me = getpid();
    while (g_ntracked > 0) {
        tracked_t t = g_tracked[--g_ntracked];
        if (t.owner == me)
            t.stop(t.obj);
    }
}

/* Ends a failed case (or, in the runner, the file) after stopping what it
 * started. _exit: the case is already failed, and the leak report of a case
 * cut short would only list what it never got to free. */
static void __attribute__((noreturn)) end_failed(void)
{
    stop_tracked();
    fflush(stdout);
    fflush(stderr);
    _exit(1);
}

static int vcheck(int ok, int fatal, const char *file, int line, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    __atomic_fetch_add(&sh()->checks, 1, __ATOMIC_RELAXED); /* cases may check from threads */
    if (ok) {
        printf("    ok - %s\n", msg);
    } else {
        __atomic_fetch_add(&sh()->failed, 1, __ATOMIC_RELAXED);
        printf("    not ok - %s (%s:%d)\n", msg, file, line);
    }
    fflush(stdout);
    if (!ok && fatal) {
        if (!g_in_case)
            printf("Bail out! a check in the shared fixture failed\n");
        end_failed();
    }
    return ok;
}

int flc_t_check(int ok, int fatal, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vcheck(ok, fatal, file, line, fmt, ap);
    va_end(ap);
    return ok;
}

void flc_t_fatal(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    __atomic_fetch_add(&sh()->failed, 1, __ATOMIC_RELAXED);
    if (g_in_case)
        printf("    not ok - fatal: %s\n", msg);
    else
        printf("Bail out! %s\n", msg);
    end_failed();
}

void flc_t_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sh()->skip, sizeof sh()->skip, fmt, ap);
    va_end(ap);
    printf("    # SKIP %s\n", sh()->skip);
    stop_tracked();
    fflush(stdout);
    fflush(stderr);
    _exit(SKIP_EXIT);
}

/* The child's side of one case. A case that returns exits through exit(),
 * so a sanitizer build reports the case's own leaks (and fails it). */
static void __attribute__((noreturn)) run_case(const flc_t_case_t *c, unsigned timeout_s)
{
    setpgid(0, 0); /* so the runner can kill whatever this case starts */
    g_in_case = 1;
    alarm(timeout_s);
    c->fn();
    stop_tracked();
    if (sh()->checks == 0) {
        printf("    not ok - the case made no check\n");
        sh()->failed++;
    }
    fflush(stdout);
    exit(sh()->failed ? 1 : 0);
}

static void usage(FILE *to, const char *prog)
{
    fprintf(to,
            "usage: %s [--list] [--no-fork] [case ...]\n"
            "  runs the named cases (all without names), each in its own process, as TAP\n"
            "  --list     prints the case names\n"
            "  --no-fork  runs the cases in this process (for a debugger); a failure ends the run\n",
            prog);
}

int flc_t_main(int argc, char **argv, const flc_t_case_t *cases, size_t n, void (*setup)(void),
               void (*teardown)(void))
{
    size_t *pick = calloc((size_t)argc + n, sizeof *pick);
    size_t npick = 0;
    int nofork = 0;
    if (pick == NULL)
        return 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0) {
            for (size_t k = 0; k < n; k++)
                printf("%s\n", cases[k].name);
            free(pick);
            return 0;
        }
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout, argv[0]);
            free(pick);
            return 0;
        }
        if (strcmp(argv[i], "--no-fork") == 0) {
            nofork = 1;
            continue;
        }
        size_t k = 0;
        while (k < n && strcmp(cases[k].name, argv[i]) != 0)
            k++;
        if (k == n) {
            fprintf(stderr, "%s: no case named '%s' (--list prints them)\n", argv[0], argv[i]);
            if (argv[i][0] == '-')
                usage(stderr, argv[0]);
            free(pick);
            return 2;
        }
        pick[npick++] = k;
    }
    if (npick == 0)
        for (size_t k = 0; k < n; k++)
            pick[npick++] = k;

    g_sh = mmap(NULL, sizeof *g_sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_sh == MAP_FAILED) {
        printf("Bail out! mmap: %s\n", strerror(errno));
        free(pick);
        return 1;
    }
    const char *to = getenv("FLC_TEST_TIMEOUT");
    unsigned timeout_s = to && atoi(to) > 0 ? (unsigned)atoi(to) : CASE_TIMEOUT_S;

    printf("1..%zu\n", npick);
    if (setup)
        setup();
    int checks = g_sh->checks, check_failed = g_sh->failed; /* the setup's own checks */
    size_t passed = 0, skipped = 0;
    char failed_names[1024] = "";
    for (size_t i = 0; i < npick; i++) {
        const flc_t_case_t *c = &cases[pick[i]];
        memset(g_sh, 0, sizeof *g_sh);
        printf("# %s\n", c->name);
        fflush(stdout);
        fflush(stderr);
        int st = 0;
        if (nofork) {
            g_in_case = 1;
            c->fn();
            g_in_case = 0;
        } else {
            pid_t pid = fork();
            if (pid < 0) {
                printf("Bail out! fork: %s\n", strerror(errno));
                break;
            }
            if (pid == 0)
                run_case(c, timeout_s);
            setpgid(pid, pid); /* also here: no race with the child's own call */
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
            kill(-pid, SIGKILL); /* what the case started and left running */
        }
        checks += g_sh->checks;
        check_failed += g_sh->failed;
        if (WIFEXITED(st) && WEXITSTATUS(st) == SKIP_EXIT && g_sh->skip[0]) {
            printf("ok %zu - %s # SKIP %s\n", i + 1, c->name, g_sh->skip);
            skipped++;
        } else if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && g_sh->failed == 0) {
            printf("ok %zu - %s\n", i + 1, c->name);
            passed++;
        } else {
            printf("not ok %zu - %s\n", i + 1, c->name);
            if (WIFSIGNALED(st))
                printf("# %s: killed by signal %d (%s)%s\n", c->name, WTERMSIG(st),
                       strsignal(WTERMSIG(st)),
                       WTERMSIG(st) == SIGALRM ? ", the case's time limit" : "");
            else if (WEXITSTATUS(st) != 1)
                printf("# %s: exit status %d\n", c->name, WEXITSTATUS(st));
            size_t len = strlen(failed_names);
            snprintf(failed_names + len, sizeof failed_names - len, " %s", c->name);
        }
        fflush(stdout);
    }
    if (teardown)
        teardown();
    size_t failed = npick - passed - skipped;
    printf("# %zu cases: %zu passed, %zu failed, %zu skipped; %d checks, %d failed\n", npick,
           passed, failed, skipped, checks, check_failed);
    if (failed)
        printf("# failed:%s\n", failed_names);
    fflush(stdout);
    munmap(g_sh, sizeof *g_sh);
    g_sh = NULL;
    free(pick);
    return failed == 0 ? 0 : 1;
}

static void fixture_stop_tracked(void *fx)
{
    flc_fixture_stop(fx);
}

void flc_fixture_start(flc_fixture_t *fx, size_t maxmemory)
{
    signal(SIGPIPE, SIG_IGN); /* as every store user should (cache/store.h) */
    flc_err_t err = {0};
    flc_embed_opts_t o = {.tcp_port = -1, .maxmemory = maxmemory};
    fx->srv = flc_embed_start(&o, &err);
    if (fx->srv == NULL)
        flc_t_fatal("cannot start redis-server for the test: %s", flc_err_msg(&err));
    fx->owner = getpid();
    fx->unix_url = flc_embed_url(fx->srv);
    fx->tcp_url = flc_embed_tcp_url(fx->srv);
    flc_t_track(fx, fixture_stop_tracked);
    printf("%s# redis-server pid %d at %s and %s\n", g_in_case ? "    " : "",
           (int)flc_embed_pid(fx->srv), fx->unix_url, fx->tcp_url);
}

void flc_fixture_stop(flc_fixture_t *fx)
{
    if (fx->srv == NULL || fx->owner != getpid())
        return; /* a case's process never stops the runner's server */
    flc_t_untrack(fx);
    flc_embed_stop(fx->srv);
    fx->srv = NULL;
}

flc_store_t *flc_fixture_open(const flc_fixture_t *fx, const flc_store_opts_t *o)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx->unix_url, o, &e);
    if (s == NULL)
        flc_t_fatal("open %s: %s", fx->unix_url, e.msg);
    return s;
}

void flc_t_fill(float *v, size_t n, unsigned seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v[i] = (float)((double)(s >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
    }
}

int flc_t_run(const char *cmdline, char *out, size_t cap)
{
    char *full = malloc(strlen(cmdline) + 8);
    if (full == NULL)
        flc_t_fatal("out of memory");
    sprintf(full, "%s 2>&1", cmdline);
    FILE *p = popen(full, "r");
    free(full);
    if (p == NULL)
        flc_t_fatal("cannot run '%s'", cmdline);
    size_t n = 0;
    if (cap > 0) {
        n = fread(out, 1, cap - 1, p);
        out[n] = '\0';
    }
    char sink[4096]; /* drain what did not fit, so the child never blocks */
    while (fread(sink, 1, sizeof sink, p) > 0) {
    }
    int st = pclose(p);
    if (st == -1)
        return -1;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

const char *flc_t_build_dir(void)
{
    const char *d = getenv("FLCACHE_BUILD_DIR");
    return d && *d ? d : ".";
}

const char *flc_t_source_dir(void)
{
    const char *d = getenv("FLCACHE_SOURCE_DIR");
    return d && *d ? d : ".";
}
