/* Caching policies on small traces with known answers: the order in which
 * lru, window:K and workload spill, what each re-warms on a miss, what
 * workload prefetches, and the spec parser. No Redis: the policy interface
 * alone, driven the way the store drives it. */
#include <stdio.h>
#include <string.h>

#include "policies/policy.h"
#include "tests/harness.h"

static flc_obj_t upd(uint32_t round, const char *client)
{
    flc_obj_t o = {.round = round, .kind = FLC_OBJ_UPDATE, .bytes = 100};
    snprintf(o.job, sizeof o.job, "job");
    snprintf(o.client, sizeof o.client, "%s", client);
    return o;
}

static flc_obj_t mrg(uint32_t round)
{
    flc_obj_t o = {.round = round, .kind = FLC_OBJ_MERGED, .bytes = 100};
    snprintf(o.job, sizeof o.job, "job");
    return o;
}

/* "r1/c2 r1/c1 ..." of the victims, for messages and comparisons. */
static void names(const flc_obj_t *v, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%sr%u/%s", i ? " " : "", v[i].round,
                              v[i].kind == FLC_OBJ_MERGED ? "agg" : v[i].client);
}

TEST(lru)
{
    flc_policy_t *p = flc_pol_lru_new();
    flc_obj_t a = upd(1, "a"), b = upd(1, "b"), c = upd(1, "c"), d = upd(1, "d");
    p->ops->on_put(p, &a);
    p->ops->on_put(p, &b);
    p->ops->on_put(p, &c);
    p->ops->on_put(p, &d);
    p->ops->on_get(p, &a, FLC_QC_OTHER, 1);
    flc_obj_t v[8];
    char got[256];
    size_t n = p->ops->choose_victims(p, 150, v, 8);
    names(v, n, got, sizeof got);
    CHECK(strcmp(got, "r1/b r1/c") == 0, "lru: 150 bytes from a,b,c,d after reading a: %s", got);
    n = p->ops->choose_victims(p, 10000, v, 8);
    names(v, n, got, sizeof got);
    CHECK(strcmp(got, "r1/b r1/c r1/d r1/a") == 0, "lru: full order b c d a: %s", got);
    p->ops->on_moved(p, &b, 1);
    CHECK(flc_pol_is_hot(p, &b) == 0 && flc_pol_is_hot(p, &a) == 1, "lru: b is cold, a hot");
    uint64_t hot, cold;
    p->ops->bytes(p, &hot, &cold);
    CHECK(hot == 300 && cold == 100, "lru: 300 hot bytes, 100 cold (%llu, %llu)",
          (unsigned long long)hot, (unsigned long long)cold);
    CHECK(p->ops->on_get(p, &b, FLC_QC_ROUND, 0) == 1, "lru: re-warms every miss");
    n = p->ops->choose_victims(p, 100, v, 8);
    names(v, n, got, sizeof got);
    CHECK(strcmp(got, "r1/c") == 0, "lru: after that, c goes first: %s", got);
    p->ops->on_moved(p, &c, -1);
    CHECK(flc_pol_is_hot(p, &c) == -1 && flc_pol_count(p) == 3, "lru: deleted c is forgotten");
    flc_pol_free(p);
}

TEST(window)
{
    flc_policy_t *p = flc_pol_window_new(2);
    CHECK(strcmp(p->spec, "window:2") == 0, "window: spec is window:2");
    for (uint32_t r = 1; r <= 4; r++) {
        flc_obj_t c1 = upd(r, "c1"), c2 = upd(r, "c2"), m = mrg(r);
        p->ops->on_put(p, &c1);
        p->ops->on_put(p, &c2);
        p->ops->on_put(p, &m);
        p->ops->on_round_closed(p, "job", r);
    }
    flc_obj_t r1c1 = upd(1, "c1");
    p->ops->on_get(p, &r1c1, FLC_QC_CLIENT, 1);
    flc_obj_t v[16];
    char got[512];
    size_t n = p->ops->choose_victims(p, 1u << 30, v, 16);
    names(v, n, got, sizeof got);
    CHECK(strcmp(got, "r1/c2 r1/c1 r2/c1 r2/c2 r3/c1 r3/c2 r4/c1 r4/c2 r1/agg r2/agg r3/agg "
                      "r4/agg") == 0,
          "window:2: old rounds oldest first, then the window, merged last: %s", got);
    n = p->ops->choose_victims(p, 250, v, 16);
    CHECK(n == 3, "window:2: 250 bytes need three 100-byte victims (%zu)", n);
    flc_obj_t r4c1 = upd(4, "c1"), m1 = mrg(1);
    CHECK(p->ops->on_get(p, &r1c1, FLC_QC_CLIENT, 0) == 0, "window:2: a round-1 miss stays cold");
    CHECK(p->ops->on_get(p, &r4c1, FLC_QC_ROUND, 0) == 1, "window:2: a round-4 miss is re-warmed");
    CHECK(p->ops->on_get(p, &m1, FLC_QC_AGGREGATE, 0) == 1, "window:2: merged shards re-warm");
    /* Round 5 moves the window: round 3 leaves it. */
    flc_obj_t r5 = upd(5, "c1");
    p->ops->on_put(p, &r5);
    flc_obj_t r3c1 = upd(3, "c1");
    CHECK(p->ops->on_get(p, &r3c1, FLC_QC_ROUND, 0) == 0,
          "window:2: after round 5, round 3 is outside the window");
    flc_pol_free(p);
}

TEST(workload)
{
    flc_policy_t *p = flc_pol_workload_new();
    const char *clients[] = {"c0", "c1", "c2", "c3"};
    for (uint32_t r = 1; r <= 5; r++) {
        for (int c = 0; c < 4; c++) {
            flc_obj_t o = upd(r, clients[c]);
            p->ops->on_put(p, &o);
        }
        flc_obj_t m = mrg(r);
        p->ops->on_put(p, &m);
        p->ops->on_round_closed(p, "job", r);
    }
    /* The mix: c1's history twice with a one-off c2 scan between, and
     * clustering over the latest round. */
    const char *scan[] = {"c1", "c2", "c1"};
    for (int q = 0; q < 3; q++)
        for (uint32_t r = 1; r <= 5; r++) {
            flc_obj_t o = upd(r, scan[q]);
            p->ops->on_get(p, &o, FLC_QC_CLIENT, 1);
        }
    for (int c = 0; c < 4; c++) {
        flc_obj_t o = upd(5, clients[c]);
        p->ops->on_get(p, &o, FLC_QC_ROUND, 1);
    }
    flc_obj_t v[32];
    char got[1024];
    size_t n = p->ops->choose_victims(p, 9 * 100, v, 32);
    names(v, n, got, sizeof got);
    /* Rounds 1-4 of c0, c2, c3 are neither the newest round nor hot: they go
     * first, least recently used first (c0 and c3 were only written; c2 was
     * read once). */
    CHECK(strcmp(got, "r1/c0 r1/c3 r2/c0 r2/c3 r3/c0 r3/c3 r4/c0 r4/c3 r1/c2") == 0,
          "workload: cold clients' old updates go first: %s", got);
    n = p->ops->choose_victims(p, 1u << 30, v, 32);
    int pos_c1 = -1, pos_latest = -1, pos_agg = -1;
    for (size_t i = 0; i < n; i++) {
        if (v[i].kind == FLC_OBJ_MERGED && pos_agg < 0)
            pos_agg = (int)i;
        else if (v[i].kind == FLC_OBJ_UPDATE && strcmp(v[i].client, "c1") == 0 && pos_c1 < 0)
            pos_c1 = (int)i;
        else if (v[i].kind == FLC_OBJ_UPDATE && v[i].round == 5 && pos_latest < 0)
            pos_latest = (int)i;
    }
    /* No history queries in this mix: merged shards rank above the cold
     * clients' old updates but below what the mix reads. */
    CHECK(pos_agg == 12 && pos_c1 > pos_agg && pos_latest > pos_agg && n == 25,
          "workload: cold updates, then merged, then hot client c1 and the newest round "
          "(%d %d %d)",
          pos_c1, pos_latest, pos_agg);
    flc_obj_t c1r1 = upd(1, "c1"), c2r1 = upd(1, "c2"), c3r5 = upd(5, "c3"), m2 = mrg(2);
    p->ops->on_moved(p, &c1r1, 1);
    p->ops->on_moved(p, &c2r1, 1);
    n = p->ops->prefetch(p, 1u << 20, v, 32);
    names(v, n, got, sizeof got);
    CHECK(strcmp(got, "r1/c1") == 0, "workload: prefetches the hot client's cold update: %s",
          got);
    CHECK(p->ops->prefetch(p, 50, v, 32) == 0, "workload: prefetch respects its byte budget");
    flc_obj_t c0r1 = upd(1, "c0");
    p->ops->on_moved(p, &c0r1, 1);
    CHECK(p->ops->on_get(p, &c0r1, FLC_QC_CLIENT, 0) == 0,
          "workload: a first read of a cold client's old update is not re-warmed");
    CHECK(p->ops->on_get(p, &c2r1, FLC_QC_CLIENT, 0) == 1,
          "workload: c2, read by a second client query now, is re-warmed");
    CHECK(p->ops->on_get(p, &c1r1, FLC_QC_CLIENT, 0) == 1,
          "workload: the hot client's update is re-warmed");
    CHECK(p->ops->on_get(p, &c3r5, FLC_QC_ROUND, 0) == 1,
          "workload: a latest-round update is re-warmed");
    CHECK(p->ops->on_get(p, &m2, FLC_QC_AGGREGATE, 0) == 1, "workload: merged shards re-warm");
    flc_pol_free(p);
}

TEST(specs)
{
    flc_err_t err = {0};
    const char *good[] = {"lru", "window:3", "workload"};
    for (int i = 0; i < 3; i++) {
        flc_policy_t *p = flc_pol_new(good[i], &err);
        CHECK(p && strcmp(p->spec, good[i]) == 0, "spec '%s' makes that policy", good[i]);
        flc_pol_free(p);
    }
    const char *bad[] = {"window:0", "window:x", "lfu", ""};
    for (int i = 0; i < 4; i++)
        CHECK(flc_pol_new(bad[i], &err) == NULL && err.code == FLC_EINVAL,
              "spec '%s' is refused: %s", bad[i], err.msg);
    flc_pol_free(NULL);
}

TEST_LIST(TEST_ENTRY(lru), TEST_ENTRY(window), TEST_ENTRY(workload), TEST_ENTRY(specs))
