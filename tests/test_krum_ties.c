/* Deterministic Krum (issue 17 point 5): two clients send the same, most
 * central update, so their Krum scores tie exactly (integer values: every
 * sum is exact). The one with the lower client id must be chosen whatever
 * the order of the expected list, the arrival order, and the number of
 * shards: before, one shard took the first to arrive and several shards the
 * first in the expected list. Against a real redis-server. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aggregator/reduce_scatter.h"
#include "tests/harness.h"

#define K 8      /* clients: a power of two keeps the centring exact */
#define DIM 64

static flc_fixture_t g_fx;
/* Expected list and arrival order put t1 before t0. */
static const char *g_names[K] = {"t1", "t0", "o2", "o3", "o4", "o5", "o6", "o7"};
static float g_u[K][DIM];

typedef struct marg {
    const char *job;
    uint32_t shard, S;
    int rc;
    char chosen[64];
} marg_t;

static void *merger(void *p)
{
    marg_t *a = p;
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(g_fx.unix_url, NULL, &e);
    flc_rs_merger_cfg_t c = {.job = a->job, .round = 1, .shard = a->shard, .num_shards = a->S,
                             .model_size = DIM, .expected = g_names, .n_expected = K,
                             .deadline_ms = 10000, .readers = 1};
    flc_merge_rule_init(&c.rule, "krum", NULL);
    flc_rs_report_t rep;
    a->rc = flc_rs_merger_run(s, &c, &rep, &e);
    if (a->rc)
        printf("# merger: %s\n", e.msg);
    else if (rep.participants.n == 1)
        snprintf(a->chosen, sizeof a->chosen, "%s", rep.participants.items[0]);
    flc_rs_report_free(&rep);
    flc_store_close(s);
    return NULL;
}

/* One Krum round of job over S shards; the clients push in g_names order
 * (t1 first) after the mergers wait. Returns the choice of shard 0 and
 * checks every shard agreed. */
static void krum_round(const char *job, uint32_t S, char *chosen, size_t cap, int *agree)
{
    pthread_t th[4];
    marg_t ma[4];
    for (uint32_t k = 0; k < S; k++) {
        ma[k] = (marg_t){.job = job, .shard = k, .S = S};
        pthread_create(&th[k], NULL, merger, &ma[k]);
    }
    usleep(200 * 1000); /* the mergers block before anyone arrives */
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(g_fx.unix_url, NULL, &e);
    if (s == NULL)
        flc_t_fatal("connect: %s", e.msg);
    for (int i = 0; i < K; i++) {
        flc_rs_push_cfg_t pc = {.job = job, .round = 1, .client = g_names[i], .num_shards = S,
                                .model_size = DIM, .num_samples = 1};
        if (flc_rs_push(s, &pc, g_u[i], &e) != 0)
            flc_t_fatal("push: %s", e.msg);
        usleep(20 * 1000);
    }
    flc_store_close(s);
    *agree = 1;
    for (uint32_t k = 0; k < S; k++) {
        pthread_join(th[k], NULL);
        *agree &= ma[k].rc == 0 && strcmp(ma[k].chosen, ma[0].chosen) == 0;
    }
    snprintf(chosen, cap, "%s", ma[0].chosen);
}

static void setup(void)
{
    flc_fixture_start(&g_fx, 0);
    /* t0 = t1 = the centre; o_j = centre + (j + 1) e_j: distinct distances. */
    for (int i = 0; i < K; i++)
        for (int x = 0; x < DIM; x++)
            g_u[i][x] = (float)(x % 5) - 2.0f;
    for (int j = 2; j < K; j++)
        g_u[j][j * 7] += (float)(j + 1);
}

static void teardown(void)
{
    flc_fixture_stop(&g_fx);
}

TEST(one_shard_lower_id)
{
    char chosen[64];
    int agree;
    krum_round("kt1", 1, chosen, sizeof chosen, &agree);
    printf("# one shard chose %s\n", chosen);
    CHECK(agree && strcmp(chosen, "t0") == 0,
          "one shard, t1 arrives first and is listed first: Krum chooses t0 (lower client id) "
          "of the tied pair");
}

TEST(three_shards_lower_id)
{
    char chosen[64];
    int agree;
    krum_round("kt3", 3, chosen, sizeof chosen, &agree);
    printf("# three shards chose %s\n", chosen);
    CHECK(agree && strcmp(chosen, "t0") == 0,
          "three shards, t1 listed first: every shard chooses t0, as one shard does");
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(one_shard_lower_id),
                 TEST_ENTRY(three_shards_lower_id))
