/* The test harness: named cases that each run in their own process, checks
 * that print what they checked, TAP output, and fixtures that run real
 * servers (redis-server, s3rver) for the cases.
 *
 * How to write a test (tests/test_<module>.c, one ctest test per file):
 *
 *   #include "tests/harness.h"
 *
 *   TEST(sum_small) {                        // a case: small, named for what it checks
 *       CHECK(1 + 2 == 3, "sum of 1 and 2 is 3");      // fails -> the case ends here
 *       EXPECT(2 + 2 == 4, "sum of 2 and 2 is 4");     // fails -> case fails, goes on
 *   }
 *
 *   TEST_LIST(TEST_ENTRY(sum_small), ...)    // at the end: the cases in order; defines main()
 *
 * A file whose cases share a server starts it once, in the runner, before the
 * cases, and stops it after them (also when a case failed or crashed):
 *
 *   static flc_fixture_t fx;
 *   static void setup(void) { flc_fixture_start(&fx, 0); }
 *   static void teardown(void) { flc_fixture_stop(&fx); }
 *   TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(put_get_tcp), ...)
 *
 * Each case runs in a forked child, in its own process group: a failed CHECK,
 * a crash or a sanitizer report ends that case only (`not ok 3 - name`), the
 * other cases still run, and whatever the case started is killed after it.
 * So state does not carry from one case to the next in memory; what a case
 * needs (keys written in the shared server, files) it makes itself, through a
 * helper when several cases need the same thing. A case that needs a server
 * of its own (one it kills, or with other options) starts it inside the case
 * with flc_fixture_start and stops it at its end; if the case fails first,
 * the harness stops it. A fixture only stops from the process that started
 * it: a case calling flc_fixture_stop on the shared fixture does nothing.
 *
 * Output is TAP: "1..N", then per case the checks, indented ("    ok - sum of
 * 1 and 2 is 3"), then "ok 1 - sum_small" or "not ok 1 - sum_small"; a final
 * "# ..." summary. The exit code is 0 iff every case passed (or skipped).
 *
 *   build/tests/test_store                   all cases
 *   build/tests/test_store put_get_tcp ...   only those (unknown name: exit 2)
 *   build/tests/test_store --list            the case names
 *   build/tests/test_store --no-fork name    in this process, for a debugger
 *
 * A case that runs longer than FLC_TEST_TIMEOUT seconds (default 280, under
 * ctest's 300 for the file) is killed and reported. flc_t_skip("why") ends a
 * case as skipped (a server that cannot be had); a case that made no check
 * at all fails. Run from ctest, FLCACHE_BUILD_DIR and FLCACHE_SOURCE_DIR are
 * set; by hand, set FLCACHE_BUILD_DIR=build for the tests that run binaries.
 *
 * A file that needs its own main() (test_simulate re-runs itself as a
 * function binary) builds the table itself and calls flc_t_main(). */
#ifndef FLC_TESTS_HARNESS_H
#define FLC_TESTS_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

#include "cache/embed.h"

/* ---- cases ---- */

typedef struct flc_t_case {
    const char *name;
    void (*fn)(void);
} flc_t_case_t;

#define TEST(name) static void flc_test_##name(void)
#define TEST_ENTRY(name) {#name, flc_test_##name}

/* Defines main(): runs the cases listed (TEST_ENTRY(name), ...) in order. */
#define TEST_LIST(...) TEST_LIST_SHARED(NULL, NULL, __VA_ARGS__)

/* The same, with a shared fixture: setup() runs once before the cases and
 * teardown() once after them, in the runner process (either may be NULL). */
#define TEST_LIST_SHARED(setup, teardown, ...)                                                 \
    int main(int argc, char **argv)                                                            \
    {                                                                                          \
        static const flc_t_case_t flc_t_cases_[] = {__VA_ARGS__};                             \
        return flc_t_main(argc, argv, flc_t_cases_,                                            \
                          sizeof flc_t_cases_ / sizeof flc_t_cases_[0], setup, teardown);      \
    }

/* Parses argv (case names, --list), runs the chosen cases each in a forked
 * child and prints TAP. Returns the process exit code: 0 when every case
 * passed, 1 when one failed, 2 for an unknown case name or bad usage. */
int flc_t_main(int argc, char **argv, const flc_t_case_t *cases, size_t n, void (*setup)(void),
               void (*teardown)(void));

/* ---- checks ---- */

/* Prints "    ok - what" or "    not ok - what (file:line)" and returns ok.
 * With fatal set, a failure ends the running case. */
int flc_t_check(int ok, int fatal, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* CHECK: the case cannot go on without it; a failure ends the case.
 * EXPECT: one of many independent values; a failure marks the case failed
 * and it goes on, so one run shows every wrong value. Both return cond. */
#define CHECK(cond, ...) flc_t_check(!!(cond), 1, __FILE__, __LINE__, __VA_ARGS__)
#define EXPECT(cond, ...) flc_t_check(!!(cond), 0, __FILE__, __LINE__, __VA_ARGS__)

/* Ends the running case as failed with a message (for set-up failures); in
 * the runner (a shared fixture's setup) it ends the whole file ("Bail out!"). */
void flc_t_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Ends the running case as skipped, saying why ("ok 3 - name # SKIP why"). */
void flc_t_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* ---- fixtures ---- */

typedef struct flc_fixture {
    flc_embed_t *srv;
    const char *unix_url; /* unix:///.../redis.sock */
    const char *tcp_url;  /* redis://127.0.0.1:<port> */
    pid_t owner;          /* the process that started it; only it stops it */
} flc_fixture_t;

/* Starts a redis-server (unix socket and a free loopback TCP port); fatal on
 * failure. maxmemory 0 = none. */
void flc_fixture_start(flc_fixture_t *fx, size_t maxmemory);

/* Stops it, if this process started it; otherwise (a case stopping the
 * shared fixture) nothing happens. */
void flc_fixture_stop(flc_fixture_t *fx);

/* A store on the fixture's unix socket with options o (NULL: defaults);
 * fatal, naming the URL and why, when it cannot be opened. */
struct flc_store;
struct flc_store_opts;
struct flc_store *flc_fixture_open(const flc_fixture_t *fx, const struct flc_store_opts *o);

/* A real S3-protocol server for the cold-tier tests (harness_s3rver.c):
 * s3rver (npm), installed by scripts/s3rver.sh, on a free loopback port with
 * its own data directory. */
typedef struct flc_s3rver {
    pid_t pid;
    int port;
    char dir[64];
    char url[64]; /* http://127.0.0.1:<port> */
    pid_t owner;
} flc_s3rver_t;

/* Installs (when needed) and starts s3rver. Returns 0, or -1 with the reason
 * in why (the caller skips, saying it). */
int flc_s3rver_start(flc_s3rver_t *s, char *why, size_t whylen);
void flc_s3rver_stop(flc_s3rver_t *s);

/* A multi-node Redis Cluster on this machine (harness_testbed.c): network
 * namespaces, a bridge and tc-shaped links made by scripts/testbed.sh, which
 * needs root. Nodes are n1 .. n<nodes>; "client" is the namespace for
 * drivers. Cases run commands in it with flc_testbed_sh(tb, ..., "exec client
 * redis-cli ..."). */
#define FLC_TESTBED_MAX_NODES 32

typedef struct flc_testbed {
    char name[16];      /* prefix of its namespaces: <name>-n1, <name>-client */
    char dir[96];       /* its state directory */
    char script[512];   /* scripts/testbed.sh */
    char seed[160];     /* redis://:<password>@<n1's address>:6379 */
    char password[64];
    char client_ns[32]; /* ip netns exec <client_ns> CMD runs CMD as a client */
    int masters, replicas, nodes;
    char addr[FLC_TESTBED_MAX_NODES + 1][16]; /* addr[k]: node nk's address; addr[0] the client's */
    pid_t owner;
    int home_ns;        /* fd of the network namespace flc_testbed_up ran in */
} flc_testbed_t;

/* One line of `testbed.sh status`. */
typedef struct flc_testbed_node {
    char name[16];  /* n1, n2, ... */
    char ns[32];
    char addr[16];
    char role[32];  /* master, replica:<master's name>, or - when down */
    char slots[96]; /* 0-5460 (comma-separated ranges), - when none */
    int pid;        /* 0 when not running */
    int up;         /* the server answers on its socket */
    int link_up;
} flc_testbed_node_t;

/* Whether this process can make a testbed: 1, or 0 with the reason in why
 * (not root, and CI is not "true": there a missing testbed is a failure, so
 * this says 1 and flc_testbed_up fails loudly). A shared fixture's setup
 * calls it and, on 0, has its cases skip with the reason. */
int flc_testbed_usable(char *why, size_t whylen);

/* Brings up a testbed of masters x (1 + replicas) nodes with node links at
 * rate ("10gbit", "200mbit"), waits for cluster_state:ok and fills tb; the
 * name is unique to this process. Skips the case when flc_testbed_usable says
 * no; fatal (naming what failed, with the script's output) otherwise. */
void flc_testbed_up(flc_testbed_t *tb, int masters, int replicas, const char *rate);

/* Removes everything the testbed made, if this process brought it up. It
 * first returns this process to the namespace flc_testbed_up ran in: with
 * --no-fork the cases joined the client namespace in the runner itself, and
 * `down` kills every process in the testbed's namespaces. */
void flc_testbed_down(flc_testbed_t *tb);

/* Moves the calling process into tb's client namespace, where the node
 * addresses are: 0, or -1 with the reason in err. */
int flc_testbed_join_client(const flc_testbed_t *tb, char *err, size_t cap);

/* The start of a case on a shared testbed: skips it with skip_why when the
 * runner could not make one (flc_testbed_usable), fails it when the testbed
 * is not up, ignores SIGPIPE (a write to a killed node is EPIPE, not death)
 * and moves the case's process into the client namespace. */
void flc_testbed_case(const flc_testbed_t *tb, const char *skip_why);

/* Runs `testbed.sh --name <name> --state-dir <dir> <printf args>` (output
 * into out as flc_t_run) and returns its exit code. */
int flc_testbed_sh(const flc_testbed_t *tb, char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Parses `testbed.sh status` into nodes[0 .. max); returns how many, or -1
 * when status fails. state (may be NULL, cap 64) gets "cluster_state:ok" or
 * what n1 says instead. */
int flc_testbed_status(const flc_testbed_t *tb, flc_testbed_node_t *nodes, int max, char *state);

/* For fixtures: while tracked, obj is stopped with stop(obj) if the case (or
 * the runner's setup) that started it ends by a failure. */
void flc_t_track(void *obj, void (*stop)(void *obj));
void flc_t_untrack(void *obj);

/* ---- helpers ---- */

/* Fills v[0..n) with reproducible pseudo-random floats in [-1, 1). */
void flc_t_fill(float *v, size_t n, unsigned seed);

/* Runs a shell command line (stdout and stderr together into out, NUL
 * terminated, truncated to cap) and returns its exit code, or 128+signal.
 */
int flc_t_run(const char *cmdline, char *out, size_t cap);

/* $FLCACHE_BUILD_DIR (set by ctest), or "." */
const char *flc_t_build_dir(void);

/* $FLCACHE_SOURCE_DIR (set by ctest), or "." */
const char *flc_t_source_dir(void);

#endif
