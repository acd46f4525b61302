/* The roles of the function binary users deploy (issue 13, finding 8):
 * build/flcache-fn has no `probe` (the test self-check that crashes,
 * allocates, connects anywhere and creates a file at a path the event names);
 * it answers "probe" as an unknown role and does nothing, and its harmless
 * `echo` role is the deployment check. The tests' build/flcache-fn-test still
 * has the probe. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness.h"

static char g_fn[1024], g_fn_test[1024];
static char g_out[65536];

/* Runs bin with args (shell words) without FLCACHE_REDIS; output in g_out. */
static int run(const char *bin, const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "env -u FLCACHE_REDIS %s %s", bin, args);
    int rc = flc_t_run(cmd, g_out, sizeof g_out);
    fprintf(stderr, "# %s %s: exit %d: %s", bin, args, rc, g_out);
    return rc;
}

static int has(const char *s)
{
    return strstr(g_out, s) != NULL;
}

static int count(const char *s)
{
    int n = 0;
    for (const char *p = strstr(g_out, s); p != NULL; p = strstr(p + 1, s))
        n++;
    return n;
}

TEST(shipped_refuses_probe)
{
    char dir[] = "/tmp/flc-fnroles-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "temp directory %s", dir);
    char made[128], args[512];
    snprintf(made, sizeof made, "%s/made-by-probe", dir);
    /* OpenWhisk mode: one event as argv[1]. */
    snprintf(args, sizeof args, "'{\"role\":\"probe\",\"crash_once\":\"%s\"}'", made);
    int rc = run(g_fn, args);
    EXPECT(access(made, F_OK) != 0, "flcache-fn created no file at %s", made);
    EXPECT(rc == 0 && has("\"ok\":false") &&
               has("unknown role 'probe' (flcache-fn --help lists roles)"),
           "flcache-fn answers role probe with the unknown-role error (exit %d)", rc);
    /* Local mode: events on stdin. */
    snprintf(args, sizeof args,
             "--local <<'EOF'\n{\"role\":\"probe\",\"crash_once\":\"%s\"}\n"
             "{\"role\":\"probe\",\"crash\":true}\nEOF",
             made);
    rc = run(g_fn, args);
    EXPECT(access(made, F_OK) != 0 && rc == 0 &&
               count("unknown role 'probe'") == 2,
           "local mode too: two unknown-role answers, no file, no crash (exit %d)", rc);
    unlink(made);
    rmdir(dir);
    rc = run(g_fn, "--help");
    EXPECT(rc == 0 && !has("probe") && has("echo"),
           "flcache-fn --help lists echo and no probe");
}

TEST(echo)
{
    int rc = run(g_fn, "'{\"role\":\"echo\",\"x\":41}'");
    EXPECT(rc == 0 && has("\"ok\":true") && has("\"echo\":{\"role\":\"echo\",\"x\":41}") &&
               has("\"netns\":\"net:["),
           "flcache-fn's echo role answers the event and its network namespace (exit %d)", rc);
}

TEST(test_binary_has_probe)
{
    int rc = run(g_fn_test, "'{\"role\":\"probe\",\"fail\":\"on purpose\"}'");
    EXPECT(rc == 0 && has("probe asked to fail: on purpose"),
           "flcache-fn-test still runs the probe for the runtime tests (exit %d)", rc);
}

static void setup(void)
{
    snprintf(g_fn, sizeof g_fn, "%s/flcache-fn", flc_t_build_dir());
    snprintf(g_fn_test, sizeof g_fn_test, "%s/flcache-fn-test", flc_t_build_dir());
    if (access(g_fn, X_OK) != 0 || access(g_fn_test, X_OK) != 0)
        flc_t_fatal("%s or %s is not built", g_fn, g_fn_test);
}

TEST_LIST_SHARED(setup, NULL, TEST_ENTRY(shipped_refuses_probe), TEST_ENTRY(echo),
                 TEST_ENTRY(test_binary_has_probe))
