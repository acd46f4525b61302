/* --ttl is applied by the store to every key written (issue 13, lifecycle):
 * a `flcache simulate --ttl 2h` killed with SIGKILL mid-run (no end-of-run
 * sweep) leaves every key of the job, indexes, per-shard records, close
 * flags, done lists, client metadata and global models included, with an
 * expiry of at most 2 h. Before, only the shards and metadata the driver's
 * own stores wrote had one: the indexes, records and the client functions'
 * keys relied on the sweep at the end of the run.
 * Clients run as functions of the pool (their events carry ttl_ms), 2 shards. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "cache/store.h"
#include "cache/store_raw.h"
#include "tests/harness.h"

#define TTL_MS 7200000LL

static flc_fixture_t fx;

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

static long long zcard(flc_store_t *s, const char *key)
{
    redisReply *r;
    if (flc_store_commandf(s, &r, "ZCARD %s", key) != FLC_OK)
        return -1;
    long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return n;
}

TEST(sigkill_leaves_every_key_with_ttl)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    CHECK(s != NULL, "connect (%s)", e.msg);
    char bin[600];
    snprintf(bin, sizeof bin, "%s/flcache", flc_t_build_dir());
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        setpgid(0, 0);
        setenv("FLCACHE_REDIS", fx.unix_url, 1);
        int null = open("/dev/null", 1);
        dup2(null, 1), dup2(null, 2);
        execl(bin, bin, "simulate", "--ttl", "2h", "--rounds", "500", "--per-round", "4",
              "--clients", "12", "--shards", "2", "--subset", "1200", "--test-subset", "100",
              "--job", "tk", "--quiet", (char *)NULL);
        _exit(127);
    }
    /* Killed once a few rounds are in: a round is then in flight. */
    long long rounds = 0;
    uint64_t until = flc_now_ns() + 60000000000ull;
    while ((rounds = zcard(s, "fl:{tk/j}:rounds")) < 4 && flc_now_ns() < until)
        flc_sleep_ms(20);
    flc_sleep_ms(37);
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    int st = 0;
    waitpid(pid, &st, 0);
    printf("    # killed after %lld rounds\n", rounds);
    CHECK(rounds >= 4 && WIFSIGNALED(st), "the run was killed mid-way by SIGKILL");
    flc_sleep_ms(200); /* its functions die with it (PR_SET_PDEATHSIG) */

    long long n = 0, bad = 0, lists = 0, bad_lists = 0;
    char cursor[32] = "0";
    do {
        redisReply *r;
        CHECK(flc_store_commandf(s, &r, "SCAN %s MATCH fl:{tk/* COUNT 1000", cursor) == FLC_OK,
              "SCAN");
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            const char *k = r->element[1]->element[i]->str;
            redisReply *t;
            if (flc_store_commandf(s, &t, "PTTL %s", k) != FLC_OK)
                flc_t_fatal("PTTL %s: %s", k, flc_store_errstr(s));
            n++;
            int arrival = strstr(k, ":a:") != NULL;
            lists += arrival;
            if (t->integer <= 0 || t->integer > TTL_MS) {
                /* Arrival lists too: the client's push script
                 * (cache/store_put.c, ARRIVE_IF_OPEN) expires its list. */
                bad_lists += arrival;
                bad++;
                printf("    # %s: PTTL %lld\n", k, t->integer);
            }
            freeReplyObject(t);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    printf("    # %lld keys of job tk, %lld without an expiry <= 2 h (%lld arrival lists, %lld "
           "of them without)\n", n, bad, lists, bad_lists);
    EXPECT(n > 50, "the killed run left keys (%lld)", n);
    EXPECT(bad == 0, "every key left has an expiry of at most 2 h (%lld have none or longer)",
           bad);
    flc_store_close(s);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(sigkill_leaves_every_key_with_ttl))
