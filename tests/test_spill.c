/* The store with a cold tier against a real redis-server with maxmemory and
 * noeviction: writing more than fits never fails and keeps used_memory under
 * the limit (the store spills, Redis never has to refuse), every update reads
 * back bit-exact (hot or fetched back), hit rates per query class add up, a
 * corrupt cold object is FLC_ECHECKSUM and never data, deletes reach the cold
 * tier, and a process SIGKILLed in the middle of spilling loses no update.
 * One shared server; each case empties it, takes a fresh cold directory and
 * writes the rounds itself (fill_rounds), so no case reads another's data. */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache/store.h"
#include "cache/store_raw.h"
#include "policies/policy.h"
#include "tests/harness.h"

#define JOB "spilljob"
#define ROUNDS 6
#define CLIENTS 8
#define MAXMEM (3u << 20)

/* Update of client c in round r: 16 KB (one string) for even clients,
 * 160 KB (a hash of chunks at the 16 KB chunk size set below) for odd ones. */
static uint64_t count_of(int c)
{
    return c % 2 ? 40960 : 4096;
}

static void make(flc_shard_t *sh, uint32_t r, int c, float *v)
{
    memset(sh, 0, sizeof *sh);
    snprintf(sh->job, sizeof sh->job, JOB);
    snprintf(sh->client, sizeof sh->client, "c%d", c);
    sh->round = r;
    sh->num_shards = 1;
    sh->count = sh->model_size = count_of(c);
    sh->weight = 1;
    flc_t_fill(v, sh->count, r * 100 + (unsigned)c);
    sh->values = v;
}

static flc_store_t *open_store(const flc_fixture_t *fx)
{
    flc_err_t err;
    flc_store_opts_t o = {.chunk_bytes = 16384};
    flc_store_t *s = flc_store_open(fx->unix_url, &o, &err);
    if (s == NULL)
        flc_t_fatal("open store: %s", err.msg);
    return s;
}

static size_t count_files(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        n += e->d_name[0] != '.' && strstr(e->d_name, ".tmp.") == NULL;
    if (d)
        closedir(d);
    return n;
}

/* Reads every update back through a store with the tier attached and
 * compares it with what was written. Returns the number that matched. */
static int verify_all(flc_store_t *s, float *want, float *got)
{
    int ok = 0;
    for (uint32_t r = 1; r <= ROUNDS; r++)
        for (int c = 0; c < CLIENTS; c++) {
            char cl[16];
            snprintf(cl, sizeof cl, "c%d", c);
            flc_shard_t sh, out;
            make(&sh, r, c, want);
            int rc = flc_store_get_update(s, JOB, r, 0, cl, &out, got, 40960);
            if (rc == FLC_OK && out.count == sh.count &&
                memcmp(got, want, sh.count * sizeof(float)) == 0)
                ok++;
            else
                printf("    # round %u client %s: rc %d: %s\n", r, cl, rc, flc_store_errstr(s));
        }
    return ok;
}

static flc_fixture_t fx;

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    flc_fixture_start(&fx, MAXMEM);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

/* What a case works on: the emptied server through a store with an lru tier
 * over a new cold directory, and buffers for one update. */
typedef struct spill_env {
    char dir[32];
    char url[128];
    flc_cold_t *cold;
    flc_policy_t *pol;
    flc_store_t *s;
    float *v, *got;
} spill_env_t;

static void env_open(spill_env_t *en)
{
    snprintf(en->dir, sizeof en->dir, "/tmp/flc-spill-XXXXXX");
    if (mkdtemp(en->dir) == NULL)
        flc_t_fatal("mkdtemp failed");
    snprintf(en->url, sizeof en->url, "file://%s", en->dir);
    flc_err_t err;
    flc_cold_opts_t co = {.no_fsync = 1};
    en->cold = flc_cold_open(en->url, &co, &err);
    if (en->cold == NULL)
        flc_t_fatal("cold: %s", err.msg);
    en->pol = flc_pol_lru_new();
    en->s = open_store(&fx);
    redisReply *r = NULL;
    if (flc_store_commandf(en->s, &r, "FLUSHALL") != 0)
        flc_t_fatal("FLUSHALL: %s", flc_store_errstr(en->s));
    freeReplyObject(r);
    CHECK(flc_store_attach_tier(en->s, en->cold, en->pol, NULL) == FLC_OK, "tier attached (%s)",
          flc_store_errstr(en->s));
    en->v = malloc(40960 * sizeof(float));
    en->got = malloc(40960 * sizeof(float));
}

static void env_close(spill_env_t *en)
{
    flc_store_close(en->s);
    flc_pol_free(en->pol);
    flc_cold_close(en->cold);
    free(en->v);
    free(en->got);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", en->dir);
    flc_t_run(cmd, NULL, 0);
}

/* 6 rounds x 8 clients, 0.7 MB a round: 4.2 MB into a 3 MB Redis, with a
 * merged shard a round. Returns the failed puts; *peak is the highest
 * used_memory seen after a round. */
static int fill_rounds(spill_env_t *en, uint64_t *peak)
{
    int put_fail = 0;
    *peak = 0;
    for (uint32_t r = 1; r <= ROUNDS; r++) {
        for (int c = 0; c < CLIENTS; c++) {
            flc_shard_t sh;
            make(&sh, r, c, en->v);
            if (flc_store_put_update(en->s, &sh) != FLC_OK) {
                put_fail++;
                printf("    # put r%u c%d: %s\n", r, c, flc_store_errstr(en->s));
            }
        }
        flc_shard_t m;
        make(&m, r, 0, en->v);
        m.client[0] = '\0';
        put_fail += flc_store_put_merged(en->s, &m) != FLC_OK;
        flc_store_stats_t st;
        flc_store_stats(en->s, &st);
        *peak = st.used_memory > *peak ? st.used_memory : *peak;
    }
    return put_fail;
}

TEST(puts_spill_under_maxmemory)
{
    spill_env_t en;
    env_open(&en);
    uint64_t peak;
    int put_fail = fill_rounds(&en, &peak);
    flc_tier_stats_t ts;
    flc_store_tier_stats(en.s, &ts);
    EXPECT(put_fail == 0, "every put of 4.2 MB into a %u-byte Redis succeeded", MAXMEM);
    EXPECT(peak <= MAXMEM, "used_memory peaked at %llu, under maxmemory %u",
           (unsigned long long)peak, MAXMEM);
    EXPECT(ts.spills > 0 && ts.spill_bytes > (1u << 20),
           "the store spilled %llu objects (%llu bytes)", (unsigned long long)ts.spills,
           (unsigned long long)ts.spill_bytes);
    EXPECT(count_files(en.dir) == ts.spills, "the cold directory holds one object per spill (%zu)",
           count_files(en.dir));
    env_close(&en);
}

/* Everything reads back bit-exact; the early rounds from the cold tier. */
TEST(reads_back_bit_exact)
{
    spill_env_t en;
    env_open(&en);
    uint64_t peak;
    CHECK(fill_rounds(&en, &peak) == 0, "6 rounds of 8 clients written");
    flc_tier_stats_t ts;
    flc_store_set_query_class(en.s, FLC_QC_CLIENT);
    int ok = verify_all(en.s, en.v, en.got);
    EXPECT(ok == ROUNDS * CLIENTS, "all %d updates read back bit-exact (%d)", ROUNDS * CLIENTS,
           ok);
    flc_store_tier_stats(en.s, &ts);
    /* (lru reading rounds in order through a cache of about two rounds is
     * its textbook worst case: every read may miss.) */
    EXPECT(ts.misses[FLC_QC_CLIENT] > 0 &&
               ts.hits[FLC_QC_CLIENT] + ts.misses[FLC_QC_CLIENT] == ROUNDS * CLIENTS,
           "client-class reads: %llu hits + %llu misses = %d",
           (unsigned long long)ts.hits[FLC_QC_CLIENT],
           (unsigned long long)ts.misses[FLC_QC_CLIENT], ROUNDS * CLIENTS);
    {
        flc_shard_t again;
        uint64_t h0 = ts.hits[FLC_QC_CLIENT];
        flc_store_get_update(en.s, JOB, ROUNDS, 0, "c7", &again, en.got, 40960);
        flc_tier_stats_t t2;
        flc_store_tier_stats(en.s, &t2);
        EXPECT(t2.hits[FLC_QC_CLIENT] == h0 + 1, "the last update read (re-warmed) is a hit now");
    }
    EXPECT(ts.fetches >= ts.misses[FLC_QC_CLIENT] && ts.rewarms > 0,
           "misses were fetched (%llu) and lru re-warmed some (%llu)",
           (unsigned long long)ts.fetches, (unsigned long long)ts.rewarms);
    flc_shard_t mo;
    flc_store_set_query_class(en.s, FLC_QC_AGGREGATE);
    EXPECT(flc_store_get_merged(en.s, JOB, 1, 0, &mo, en.got, 40960) == FLC_OK &&
               mo.count == 4096,
           "merged shard of round 1 reads back (%s)", flc_store_errstr(en.s));
    env_close(&en);
}

/* Spills round 2 of c3 on request (or finds it already cold) and returns
 * the path of its cold object in path. */
static void spill_c3_round2(spill_env_t *en, char *path, size_t cap)
{
    flc_obj_t o = {.round = 2, .kind = FLC_OBJ_UPDATE, .num_shards = 1};
    snprintf(o.job, sizeof o.job, JOB);
    snprintf(o.client, sizeof o.client, "c3");
    int rc = flc_store_spill(en->s, &o);
    if (rc == FLC_ENOTFOUND)
        rc = FLC_OK; /* already cold */
    CHECK(rc == FLC_OK, "round 2 of c3 spilled on request (%s)", flc_store_errstr(en->s));
    char key[FLC_KEY_MAX];
    flc_obj_key(&o, key);
    flc_cold_locate(en->cold, key, path, cap);
}

/* A corrupt cold object is an error, never data. */
TEST(corrupt_cold_object)
{
    spill_env_t en;
    env_open(&en);
    uint64_t peak;
    CHECK(fill_rounds(&en, &peak) == 0, "6 rounds of 8 clients written");
    char path[1200];
    spill_c3_round2(&en, path, sizeof path);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL, "cold object of round 2 of c3 is at %s", path);
    fseek(f, 5000, SEEK_SET);
    fputc('X', f);
    fclose(f);
    en.got[0] = 12345.0f;
    flc_shard_t bad = {0};
    int rc = flc_store_get_update(en.s, JOB, 2, 0, "c3", &bad, en.got, 40960);
    CHECK(rc == FLC_ECHECKSUM && bad.values == NULL,
          "a corrupt cold object is FLC_ECHECKSUM, out untouched (%d: %s)", rc,
          flc_store_errstr(en.s));
    env_close(&en);
}

/* Deleting an update deletes its cold copy: it cannot come back. */
TEST(delete_reaches_cold_tier)
{
    spill_env_t en;
    env_open(&en);
    uint64_t peak;
    CHECK(fill_rounds(&en, &peak) == 0, "6 rounds of 8 clients written");
    char path[1200];
    spill_c3_round2(&en, path, sizeof path);
    flc_shard_t bad = {0};
    CHECK(flc_store_del_update(en.s, JOB, 2, 0, "c3") == FLC_OK, "delete round 2 of c3");
    int rc = flc_store_get_update(en.s, JOB, 2, 0, "c3", &bad, en.got, 40960);
    EXPECT(rc == FLC_ENOTFOUND && access(path, F_OK) != 0,
           "a deleted update is gone from both tiers (%d)", rc);
    flc_shard_t re;
    make(&re, 2, 3, en.v);
    CHECK(flc_store_put_update(en.s, &re) == FLC_OK, "round 2 of c3 written again");
    flc_tier_stats_t ts;
    flc_store_tier_stats(en.s, &ts);
    flc_store_tier_flush(en.s);
    flc_tier_stats_t shared;
    rc = flc_store_tier_read(en.s, &shared);
    EXPECT(rc == FLC_OK && shared.spills >= ts.spills && shared.spills > 0,
           "the shared counters in fl:tier have the spills (%llu)",
           (unsigned long long)shared.spills);
    env_close(&en);
}

/* Kill a spiller mid-way, three times: nothing may be lost. */
TEST(killed_spillers_lose_nothing)
{
    spill_env_t en;
    env_open(&en);
    uint64_t peak;
    CHECK(fill_rounds(&en, &peak) == 0, "6 rounds of 8 clients written");
    flc_store_close(en.s); /* the spillers and the checkers below have their own */
    en.s = NULL;
    int delays_ms[] = {3, 15, 40};
    uint64_t cold_reads = 0;
    flc_err_t err;
    for (int k = 0; k < 3; k++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            flc_cold_opts_t slow = {0}; /* fsync on: spills take real time */
            flc_cold_t *cc = flc_cold_open(en.url, &slow, &err);
            flc_policy_t *pp = flc_pol_lru_new();
            flc_store_t *cs = open_store(&fx);
            flc_store_attach_tier(cs, cc, pp, NULL);
            for (uint32_t r = 1; r <= ROUNDS; r++)
                flc_store_track_round(cs, JOB, r);
            for (;;) /* spill everything, over and over (re-warmed by the parent) */
                if (flc_store_make_room(cs, 1ull << 40) != FLC_OK)
                    usleep(1000);
        }
        struct timespec ts2 = {0, delays_ms[k] * 1000000L};
        nanosleep(&ts2, NULL);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        EXPECT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
               "spiller %d was killed after %d ms", k + 1, delays_ms[k]);
        flc_store_t *ps = open_store(&fx);
        flc_policy_t *pp = flc_pol_lru_new();
        flc_store_attach_tier(ps, en.cold, pp, NULL);
        int ok = verify_all(ps, en.v, en.got);
        flc_tier_stats_t kt;
        flc_store_tier_stats(ps, &kt);
        cold_reads += kt.misses[FLC_QC_OTHER];
        EXPECT(ok == ROUNDS * CLIENTS,
               "after killing spiller %d: all %d updates intact (%d; %llu read from the cold "
               "tier)", k + 1, ROUNDS * CLIENTS, ok, (unsigned long long)kt.misses[FLC_QC_OTHER]);
        flc_store_close(ps);
        flc_pol_free(pp);
    }
    EXPECT(cold_reads > 0, "the spillers had moved updates out of Redis before they died (%llu)",
           (unsigned long long)cold_reads);
    env_close(&en);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(puts_spill_under_maxmemory),
                 TEST_ENTRY(reads_back_bit_exact), TEST_ENTRY(corrupt_cold_object),
                 TEST_ENTRY(delete_reaches_cold_tier), TEST_ENTRY(killed_spillers_lose_nothing))
