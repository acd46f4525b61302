/* --rule SPEC (issue 16 point 4): every rule of the README's rule table runs
 * a simulated round when named with --rule (the rule names are read from
 * the README itself, so a row added there without support fails here), the
 * round's metadata records the rule the spec asked for, and bad specs are
 * usage errors that name the unknown rule, key or value, for simulate and
 * train alike. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "aggregator/merge.h"
#include "cache/store.h"
#include "clients/sim.h"
#include "tests/harness.h"

static flc_fixture_t fx;
static char g_bin[1024];
static char g_out[65536];

/* Rule names of the README's "## Merge rules" table (first column, each
 * `name` in backticks), into names[]; returns how many. */
static int readme_rules(char names[][32], int cap)
{
    const char *src = getenv("FLCACHE_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/README.md", src ? src : ".");
    FILE *f = fopen(path, "r");
    if (f == NULL)
        flc_t_fatal("cannot read %s (set FLCACHE_SOURCE_DIR)", path);
    char line[2048];
    int in = 0, n = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "## Merge rules", 14) == 0)
            in = 1;
        else if (in && strncmp(line, "## ", 3) == 0)
            break;
        if (!in || strncmp(line, "| `", 3) != 0)
            continue;
        char *end = strchr(line + 1, '|'); /* end of the first column */
        for (char *p = line; end && (p = strchr(p, '`')) && p < end && n < cap;) {
            char *q = strchr(p + 1, '`');
            if (q == NULL || q - p - 1 >= 32)
                break;
            memcpy(names[n], p + 1, (size_t)(q - p - 1));
            names[n++][q - p - 1] = '\0';
            p = q + 1;
        }
    }
    fclose(f);
    return n;
}

TEST(every_readme_rule_runs)
{
    char names[32][32];
    int n = readme_rules(names, 32);
    CHECK(n >= 11, "the README's rule table names %d rules", n);
    int all = 1;
    for (int i = 0; i < n; i++) {
        flc_sim_cfg_t c;
        flc_sim_cfg_init(&c);
        char job[48];
        snprintf(job, sizeof job, "rs-%.28s", names[i]);
        c.job = job;
        c.clients = 7;
        c.per_round = 7; /* bulyan's default f = (7-3)/4 = 1 needs 7 */
        c.rounds = 2;
        c.synthetic_params = 300;
        c.num_shards = 2;
        c.seed = 5;
        c.redis = fx.unix_url;
        c.rule = names[i];
        flc_sim_result_t r = {0};
        flc_err_t e = {0};
        flc_sim_clear(c.redis, NULL, job, &e);
        int rc = flc_sim_run(&c, NULL, NULL, &r, &e);
        Flcache__RoundMeta *m = NULL;
        flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
        int got = s && flc_store_get_round_meta(s, job, 2, &m) == 0 && m && m->rule;
        flc_merge_rule_t want;
        char spec[256];
        flc_merge_rule_parse(&want, names[i], NULL);
        flc_merge_rule_format(&want, spec, sizeof spec);
        int ok = rc == 0 && r.nrounds == 2 && r.rounds[1].merged && got &&
                 strcmp(m->rule, spec) == 0;
        EXPECT(ok, "--rule %s: 2 rounds merged over 2 shards, round 2 recorded as '%s' (%s)",
               names[i], got ? m->rule : "?", rc ? flc_err_msg(&e) : "ok");
        all &= ok;
        if (m)
            flcache__round_meta__free_unpacked(m, NULL);
        flc_store_close(s);
        flc_sim_result_free(&r);
    }
    CHECK(all, "every rule of the README's table works as --rule");
}

static int run(const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "env -u FLCACHE_REDIS %s %s", g_bin, args);
    return flc_t_run(cmd, g_out, sizeof g_out);
}

static void usage_error(const char *args, const char *msg)
{
    int rc = run(args);
    int ok = rc == 2 && strstr(g_out, msg) != NULL;
    if (!ok)
        printf("# it said: %s", g_out);
    EXPECT(ok, "`flcache %s` exits 2 saying \"%s\" (exit %d)", args, msg, rc);
}

TEST(bad_specs_refused)
{
    usage_error("simulate --rule nope", "unknown merge rule 'nope'");
    usage_error("simulate --rule bulyan:m=2", "parameter 'm' does not apply");
    usage_error("simulate --rule fedadam:tau=-1", "tau = -1 is out of range (must be > 0)");
    usage_error("simulate --rule fedavgm:speed=2", "unknown parameter 'speed'");
    usage_error("simulate --rule median:clip=x", "'x' is not a number");
    usage_error("simulate --rule krum --strategy median", "--strategy median and --rule krum");
    usage_error("simulate --rule mean --server-lr 0.1", "--server-lr sets a parameter");
    usage_error("simulate --rule bulyan:f=2 --per-round 10",
                "f = 2 needs at least 11 updates (4f + 3), got 10");
    usage_error("train --rule median:f=1", "parameter 'f' does not apply");
    usage_error("train --rule krum --workers 2", "needs at least 3 updates, got 2");
    int rc = run("simulate --help");
    EXPECT(rc == 0 && strstr(g_out, "--rule SPEC") && strstr(g_out, "bulyan"),
           "simulate --help lists --rule SPEC with bulyan");
    rc = run("train --help");
    EXPECT(rc == 0 && strstr(g_out, "--rule SPEC"), "train --help lists --rule SPEC");
}

/* The aggregator event's "rule" takes the same specs, as a string or as an
 * object, and refuses the same typos. */
TEST(aggregator_event_rule)
{
    flc_merge_rule_t r;
    flc_err_t e = {0};
    cJSON *j = cJSON_Parse("{\"rule\":\"bulyan\",\"f\":1}");
    EXPECT(flc_merge_rule_from_json(&r, j, &e) == 0 && r.kind == FLC_MERGE_BULYAN && r.f == 1,
           "{\"rule\":\"bulyan\",\"f\":1} is Bulyan with f = 1 (%s)", e.msg);
    cJSON_Delete(j);
    j = cJSON_CreateString("mean:clip=1,noise=0.8");
    EXPECT(flc_merge_rule_from_json(&r, j, &e) == 0 && r.noise == 0.8 && r.clip == 1,
           "\"mean:clip=1,noise=0.8\" as a string (%s)", e.msg);
    cJSON_Delete(j);
    j = cJSON_Parse("{\"rule\":\"mean\",\"noise\":1}");
    EXPECT(flc_merge_rule_from_json(&r, j, &e) == FLC_EINVAL && strstr(e.msg, "noise needs clip"),
           "noise without clip refused in an event too: %s", e.msg);
    cJSON_Delete(j);
}

/* train --rule: the workers' gradients merged with Bulyan (f = 0: 3 workers
 * suffice), one epoch on a small subset; every worker ends with the same
 * model, as with the default mean. */
TEST(train_with_rule)
{
    int rc = run("train --workers 3 --rule bulyan:f=0 --epochs 1 --subset 600 "
                 "--test-subset 200 --json --quiet");
    EXPECT(rc == 0 && strstr(g_out, "\"ok\":true") && strstr(g_out, "\"identical_models\":true"),
           "flcache train --rule bulyan:f=0 with 3 workers: exit %d, identical models", rc);
    if (rc != 0)
        printf("# it said: %.400s\n", g_out);
}

static void setup(void)
{
    snprintf(g_bin, sizeof g_bin, "%s/flcache", flc_t_build_dir());
    if (access(g_bin, X_OK) != 0)
        flc_t_fatal("%s is not built", g_bin);
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(every_readme_rule_runs),
                 TEST_ENTRY(bad_specs_refused), TEST_ENTRY(aggregator_event_rule),
                 TEST_ENTRY(train_with_rule))
