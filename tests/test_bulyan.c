/* Bulyan (El Mhamdi et al. 2018) on hand-made vectors: flcache's merge against
 * a direct implementation of the paper's definition written here (plain
 * loops, exact on small integers), in memory and through reduce-scatter
 * rounds on a real redis-server with 1, 3 and 5 shards, the roster in a
 * shuffled order and clients arriving in whatever order their threads run:
 * the answer must be the same bits every time (ties go to the lower client
 * id), and the clients Bulyan leaves out are rejected by name. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/reduce_scatter.h"
#include "tests/harness.h"

#define K 7  /* clients; f = 1: theta = 5, beta = 3 */
#define N 11 /* coordinates; no shard count here divides it */

static flc_fixture_t g_fx;
static const char *g_ids[K] = {"c0", "c1", "c2", "c3", "c4", "c5", "c6"};
static float g_u[K][N];

/* Small integers in [0, 4] (many exact ties), c5 and c6 far away (the
 * Byzantine pair), c1 a copy of c3 (a tie in Krum scores). */
static void make_updates(void)
{
    unsigned x = 12345;
    for (int i = 0; i < K; i++)
        for (int c = 0; c < N; c++) {
            x = x * 1103515245u + 12345u;
            g_u[i][c] = (float)((x >> 16) % 5);
        }
    memcpy(g_u[1], g_u[3], sizeof g_u[1]);
    for (int c = 0; c < N; c++) {
        g_u[5][c] += 40.0f;
        g_u[6][c] = -30.0f + (float)c;
    }
}

/* ---- the paper's definition, directly ------------------------------------ */

static double dist2(int i, int j)
{
    double s = 0;
    for (int c = 0; c < N; c++) {
        double d = (double)g_u[i][c] - (double)g_u[j][c];
        s += d * d;
    }
    return s;
}

/* Krum over the set `in`: the member whose q = max(1, |in|-f-2) nearest
 * other members are closest in sum; lowest client index wins a tie. */
static int krum_of(const int *in, int nin, int f)
{
    int q = nin - f - 2 >= 1 ? nin - f - 2 : 1;
    if (q > nin - 1)
        q = nin - 1;
    int best = -1;
    double best_s = 0;
    for (int a = 0; a < nin; a++) {
        double d[K];
        int nd = 0;
        for (int b = 0; b < nin; b++)
            if (b != a)
                d[nd++] = dist2(in[a], in[b]);
        for (int x = 0; x < nd; x++) /* selection sort, ascending */
            for (int y = x + 1; y < nd; y++)
                if (d[y] < d[x]) {
                    double t = d[x];
                    d[x] = d[y], d[y] = t;
                }
        double s = 0;
        for (int x = 0; x < q; x++)
            s += d[x];
        if (best < 0 || s < best_s || (s == best_s && in[a] < in[best]))
            best = a, best_s = s;
    }
    return best;
}

/* Bulyan with f: selection set by theta = K - 2f recursive Krum, then per
 * coordinate the mean of the beta = theta - 2f values closest to the median
 * of the selection (ties: lower client index). sel gets the selection. */
static void bulyan_ref(int f, double *out, int *sel)
{
    int in[K], nin = K, theta = K - 2 * f, beta = theta - 2 * f;
    for (int i = 0; i < K; i++)
        in[i] = i;
    for (int t = 0; t < theta; t++) {
        int a = krum_of(in, nin, f);
        sel[t] = in[a];
        in[a] = in[--nin];
        for (int x = 0; x < nin; x++) /* keep in sorted so index order means id order */
            for (int y = x + 1; y < nin; y++)
                if (in[y] < in[x]) {
                    int tmp = in[x];
                    in[x] = in[y], in[y] = tmp;
                }
    }
    for (int c = 0; c < N; c++) {
        double v[K], med;
        for (int t = 0; t < theta; t++)
            v[t] = g_u[sel[t]][c];
        for (int x = 0; x < theta; x++)
            for (int y = x + 1; y < theta; y++)
                if (v[y] < v[x]) {
                    double tmp = v[x];
                    v[x] = v[y], v[y] = tmp;
                }
        med = theta % 2 ? v[theta / 2] : (v[theta / 2 - 1] + v[theta / 2]) / 2;
        unsigned char took[K] = {0};
        double sum = 0;
        for (int b = 0; b < beta; b++) {
            int pick = -1;
            for (int t = 0; t < theta; t++) {
                if (took[t])
                    continue;
                double d = fabs(g_u[sel[t]][c] - med);
                double dp = pick < 0 ? 0 : fabs(g_u[sel[pick]][c] - med);
                if (pick < 0 || d < dp || (d == dp && sel[t] < sel[pick]))
                    pick = t;
            }
            took[pick] = 1;
            sum += g_u[sel[pick]][c];
        }
        out[c] = sum / beta;
    }
}

/* ---- in memory ------------------------------------------------------------ */

TEST(bulyan_in_memory_matches_paper)
{
    make_updates();
    double ref[N];
    int sel[K];
    bulyan_ref(1, ref, sel);
    printf("# reference selection:");
    for (int t = 0; t < K - 2; t++)
        printf(" %s", g_ids[sel[t]]);
    printf("\n");
    CHECK(sel[0] == 1, "c1 and its twin c3 tie for the best Krum score: c1, the lower id, wins");
    const float *u[K];
    for (int i = 0; i < K; i++)
        u[i] = g_u[i];
    flc_merge_rule_t r;
    flc_err_t e = {0};
    CHECK(flc_merge_rule_parse(&r, "bulyan", &e) == 0 && r.kind == FLC_MERGE_BULYAN,
          "'bulyan' parses (%s)", e.msg);
    float out[N];
    unsigned char used[K];
    flc_merge_batch_t b = {.u = u, .k = K, .n = N};
    flc_merge_info_t info = {.used = used};
    CHECK(flc_merge_run(&r, NULL, &b, out, &info, &e) == 0, "bulyan merges 7 updates (%s)",
          e.msg);
    double worst = 0;
    for (int c = 0; c < N; c++)
        worst = fmax(worst, fabs(out[c] - (float)ref[c]));
    EXPECT(worst == 0, "every coordinate equals the paper's definition (max diff %g)", worst);
    int same = 1;
    for (int i = 0; i < K; i++) {
        int in_ref = 0;
        for (int t = 0; t < K - 2; t++)
            in_ref |= sel[t] == i;
        same &= in_ref == used[i];
    }
    EXPECT(same && !used[5] && !used[6], "selection = the reference's; c5 and c6 left out");
    flc_merge_rule_t r2;
    EXPECT(flc_merge_rule_parse(&r2, "bulyan:f=2", &e) == 0 &&
               flc_merge_run(&r2, NULL, &b, out, NULL, &e) == FLC_EINVAL &&
               strstr(e.msg, "4f + 3") != NULL,
           "f = 2 with 7 updates refused: %s", e.msg);
    EXPECT(flc_merge_rule_parse(&r2, "bulyan:m=2", &e) == FLC_EINVAL && strstr(e.msg, "'m'"),
           "parameter m refused for bulyan: %s", e.msg);
}

/* ---- through reduce-scatter ----------------------------------------------- */

typedef struct arg {
    uint32_t S, shard, round;
    int who;
    const char *job;
    const char *const *roster;
    float model[N];
    flc_rs_report_t rep;
    int rc;
    char err[256];
} arg_t;

static flc_store_t *open_store(void)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(g_fx.unix_url, NULL, &e);
    if (s == NULL)
        flc_t_fatal("connect: %s", flc_err_msg(&e));
    return s;
}

static void *client(void *p)
{
    arg_t *a = p;
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    flc_rs_push_cfg_t c = {.job = a->job, .round = a->round, .client = g_ids[a->who],
                           .num_shards = a->S, .model_size = N, .num_samples = 1};
    a->rc = flc_rs_push(s, &c, g_u[a->who], &e);
    if (a->rc == 0)
        a->rc = flc_rs_pull(s, a->job, a->round, a->S, N, 20000, a->model, &e);
    snprintf(a->err, sizeof a->err, "%s", e.msg);
    flc_store_close(s);
    return NULL;
}

static void *merger(void *p)
{
    arg_t *a = p;
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    flc_rs_merger_cfg_t cfg = {.job = a->job, .round = a->round, .shard = a->shard,
                               .num_shards = a->S, .model_size = N, .expected = a->roster,
                               .n_expected = K, .deadline_ms = 20000, .readers = K};
    flc_merge_rule_init(&cfg.rule, "bulyan", NULL);
    a->rc = flc_rs_merger_run(s, &cfg, &a->rep, &e);
    snprintf(a->err, sizeof a->err, "%s", e.msg);
    flc_store_close(s);
    return NULL;
}

TEST(bulyan_sharded_same_bits_any_order)
{
    make_updates();
    double ref[N];
    int sel[K];
    bulyan_ref(1, ref, sel);
    /* The roster in a shuffled order (c3 before its twin c1, so a tie broken
     * by roster position would pick c3); clients start in another order. */
    static const char *roster[K] = {"c4", "c3", "c6", "c0", "c1", "c5", "c2"};
    static const int start[K] = {6, 3, 1, 5, 0, 2, 4};
    static const uint32_t shards[] = {1, 3, 5};
    float first[N];
    for (size_t t = 0; t < 3; t++) {
        uint32_t S = shards[t];
        char job[32];
        snprintf(job, sizeof job, "bul%u", S);
        arg_t ca[K], ma[5];
        pthread_t ct[K], mt[5];
        for (uint32_t k = 0; k < S; k++) {
            ma[k] = (arg_t){.S = S, .shard = k, .round = 1, .job = job, .roster = roster};
            pthread_create(&mt[k], NULL, merger, &ma[k]);
        }
        for (int i = 0; i < K; i++) {
            ca[i] = (arg_t){.S = S, .round = 1, .who = start[i], .job = job};
            pthread_create(&ct[i], NULL, client, &ca[i]);
        }
        int bad = 0;
        for (int i = 0; i < K; i++) {
            pthread_join(ct[i], NULL);
            if (ca[i].rc)
                printf("# client %s: %s\n", g_ids[ca[i].who], ca[i].err), bad = 1;
        }
        size_t rejected = 0;
        int named = 1;
        for (uint32_t k = 0; k < S; k++) {
            pthread_join(mt[k], NULL);
            if (ma[k].rc)
                printf("# merger %u: %s\n", k, ma[k].err), bad = 1;
            rejected += ma[k].rep.rejected.n;
            for (size_t x = 0; x < ma[k].rep.rejected.n; x++) {
                const char *line = ma[k].rep.rejected.items[x];
                named &= (strncmp(line, "c5:", 3) == 0 || strncmp(line, "c6:", 3) == 0) &&
                         strstr(line, "not selected by bulyan") != NULL;
            }
            flc_rs_report_free(&ma[k].rep);
        }
        CHECK(!bad, "S = %u: every push, merge and pull succeeded", S);
        double worst = 0;
        for (int c = 0; c < N; c++)
            worst = fmax(worst, fabs(ca[0].model[c] - (float)ref[c]));
        EXPECT(worst == 0, "S = %u: the pulled model equals the paper's Bulyan (max diff %g)", S,
               worst);
        EXPECT(rejected == 2 * S && named,
               "S = %u: c5 and c6 rejected as 'not selected by bulyan' by every shard (%zu)", S,
               rejected);
        if (t == 0)
            memcpy(first, ca[0].model, sizeof first);
        else
            EXPECT(memcmp(first, ca[0].model, sizeof first) == 0,
                   "S = %u: the same bits as with 1 shard", S);
    }
}

static void setup(void)
{
    flc_fixture_start(&g_fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&g_fx);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(bulyan_in_memory_matches_paper),
                 TEST_ENTRY(bulyan_sharded_same_bits_any_order))
