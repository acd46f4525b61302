/* The test harness: checks that print what they checked, and a fixture that
 * runs a real redis-server for the test (unix socket in a temp dir and a free
 * loopback TCP port), stopped at the end.
 *
 *   CHECK(x == 3, "sum of 1 and 2 is 3");  -> "ok - sum of 1 and 2 is 3"
 *   return flc_t_done();                    -> exit code 0 iff all passed */
#ifndef FLC_TESTS_HARNESS_H
#define FLC_TESTS_HARNESS_H

#include <stddef.h>

#include "cache/embed.h"

int flc_t_check(int ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define CHECK(cond, ...) flc_t_check(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

/* Prints a summary comment and returns the process exit code. */
int flc_t_done(void);

/* Number of failed checks so far. */
int flc_t_failed(void);

/* Stops the test at once with a message (for set-up failures). */
void flc_t_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

typedef struct flc_fixture {
    flc_embed_t *srv;
    const char *unix_url; /* unix:///.../redis.sock */
    const char *tcp_url;  /* redis://127.0.0.1:<port> */
} flc_fixture_t;

/* Starts a redis-server for the test; fatal on failure. maxmemory 0 = none. */
void flc_fixture_start(flc_fixture_t *fx, size_t maxmemory);
void flc_fixture_stop(flc_fixture_t *fx);

/* Fills v[0..n) with reproducible pseudo-random floats in [-1, 1). */
void flc_t_fill(float *v, size_t n, unsigned seed);

/* Runs a shell command line (stdout and stderr together into out, NUL
 * terminated, truncated to cap) and returns its exit code, or 128+signal.
 */
int flc_t_run(const char *cmdline, char *out, size_t cap);

/* $FLCACHE_BUILD_DIR (set by ctest), or "." */
const char *flc_t_build_dir(void);

#endif
