/* The key schema, version 2 (cache/keys.h, docs/architecture.md "Key
 * schema"): exact key names; a shard's tag is the same in every round and
 * holds its optimizer state; a job's shards spread evenly over equal slot
 * ranges (3 and 5 nodes, S = 4 x nodes .. 4 x nodes + 40, keys and bytes);
 * a series J/g does not collide with a user job named J.g; a job stored with
 * schema 1 and a job asked for with another shard count are refused with a
 * message that says so; and Redis ACLs on a real redis-server confine a
 * client function to its own keys and a job's credentials to its job while
 * a whole round runs. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/reduce_scatter.h"
#include "base/clock.h"
#include "cache/keys.h"
#include "cache/slot.h"
#include "cache/store_ops.h"
#include "cache/store_raw.h"
#include "tests/harness.h"

static flc_fixture_t fx;

static void setup(void)
{
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

static flc_store_t *open_url(const char *url)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(url, NULL, &e);
    if (s == NULL)
        flc_t_fatal("connect to %s: %s", url, flc_err_msg(&e));
    return s;
}

static flc_store_t *open_default(void)
{
    return open_url(fx.unix_url);
}

static uint16_t slot_of(const char *key)
{
    return flc_slot_of(key, strlen(key));
}

/* ---- names ----------------------------------------------------------------- */

TEST(exact_key_names)
{
    char k[FLC_KEY_MAX], tag[FLC_TAG_MAX];
    flc_key_job(k, "J", "schema");
    EXPECT(strcmp(k, "fl:{J/j}:schema") == 0, "schema record: %s", k);
    flc_key_job_round(k, "J", "roster", 3);
    EXPECT(strcmp(k, "fl:{J/j}:roster:3") == 0, "roster: %s", k);
    flc_key_client_meta(k, "J", "c1", 3);
    EXPECT(strcmp(k, "fl:{J/j}:c:c1:um:3") == 0, "per-update metadata: %s", k);
    flc_key_client_rounds(k, "J", "c1");
    EXPECT(strcmp(k, "fl:{J/j}:c:c1:rounds") == 0, "client history: %s", k);
    flc_key_barrier(k, "J/steps", 0, 0, "go");
    EXPECT(strcmp(k, "fl:{J/steps/j}:b:0:0:go") == 0, "start barrier: %s", k);

    flc_key_shard_tag(tag, "J", 3, 8);
    unsigned s = 99, salt = 0;
    int n = 0;
    char job[8] = "";
    sscanf(tag, "%7[^/]/s%u~%u%n", job, &s, &salt, &n);
    EXPECT(strcmp(job, "J") == 0 && s == 3 && n == (int)strlen(tag),
           "shard tag of shard 3 of 8: %s (job, '/s', shard, '~', salt)", tag);
    EXPECT(flc_slot_crc16(tag, strlen(tag)) % FLC_SLOT_COUNT == flc_key_shard_slot("J", 3, 8),
           "its slot is the target slot %u", flc_key_shard_slot("J", 3, 8));
    char want[FLC_KEY_MAX];
    flc_key_update(k, tag, 7, "c1");
    snprintf(want, sizeof want, "fl:{%s}:c:c1:u:7", tag);
    EXPECT(strcmp(k, want) == 0, "update shard: %s", k);
    flc_key_arrival(k, tag, 7, "c1");
    snprintf(want, sizeof want, "fl:{%s}:c:c1:a:7", tag);
    EXPECT(strcmp(k, want) == 0, "arrival list: %s", k);
    flc_key_shard(k, tag, 7, "agg");
    snprintf(want, sizeof want, "fl:{%s}:r:7:agg", tag);
    EXPECT(strcmp(k, want) == 0, "merged shard: %s", k);
    flc_key_opt_state(k, tag);
    snprintf(want, sizeof want, "fl:{%s}:opt", tag);
    EXPECT(strcmp(k, want) == 0, "optimizer state: %s", k);

    flc_err_t e = {0};
    EXPECT(flc_name_check("J/g", "job", &e) != 0, "a user's job name may not hold '/': %s",
           e.msg);
    EXPECT(flc_name_check_job("J/g", &e) == 0 && flc_name_check_job("J.steps", &e) == 0,
           "the store takes a series J/g and a plain name");
    EXPECT(flc_name_check_job("J/g/x", &e) != 0 && flc_name_check_job("/g", &e) != 0 &&
               flc_name_check_job("J/", &e) != 0 && flc_name_check_job("J/{g", &e) != 0,
           "but not J/g/x, /g, J/ or J/{g: %s", e.msg);
}

TEST(shard_tag_fixed_across_rounds)
{
    char tag[FLC_TAG_MAX], r0[FLC_KEY_MAX], r5[FLC_KEY_MAX], opt[FLC_KEY_MAX],
        agg[FLC_KEY_MAX], arr[FLC_KEY_MAX];
    int same = 1, prefix = 1;
    for (uint32_t s = 0; s < 12; s++) {
        flc_key_shard_tag(tag, "job", s, 12);
        flc_key_update(r0, tag, 0, "c1");
        flc_key_update(r5, tag, 5, "c2");
        flc_key_shard(agg, tag, 5, "agg");
        flc_key_arrival(arr, tag, 5, "c2");
        flc_key_opt_state(opt, tag);
        uint16_t sl = slot_of(r0);
        same &= slot_of(r5) == sl && slot_of(agg) == sl && slot_of(arr) == sl &&
                slot_of(opt) == sl && sl == flc_key_shard_slot("job", s, 12);
        prefix &= strncmp(r0, "fl:{job/", 8) == 0 && strncmp(opt, "fl:{job/", 8) == 0;
    }
    CHECK(same, "rounds 0 and 5 of each of 12 shards, their arrival lists, merged shards and "
          "optimizer state share the shard's target slot");
    CHECK(prefix, "every key of job 'job' starts with fl:{job/");
    /* The salt search runs once per (job, shard, S): the second call is a
     * table lookup. */
    uint64_t t0 = flc_now_ns();
    for (uint32_t s = 0; s < 64; s++)
        flc_key_shard_tag(tag, "fresh-job", s, 64);
    double first = (double)(flc_now_ns() - t0) / 1e6;
    t0 = flc_now_ns();
    for (uint32_t s = 0; s < 64; s++)
        flc_key_shard_tag(tag, "fresh-job", s, 64);
    double again = (double)(flc_now_ns() - t0) / 1e6;
    EXPECT(again < first, "64 shard tags: %.2f ms searched, %.3f ms from the table", first,
           again);
}

/* The slot ranges redis-cli --cluster create gives n masters. */
static void equal_ranges(int n, int lo[], int hi[])
{
    double per = 16384.0 / n, cursor = 0;
    int first = 0;
    for (int i = 0; i < n; i++) {
        int last = (int)(cursor + per - 1 + 0.5);
        if (last > 16383 || i == n - 1)
            last = 16383;
        lo[i] = first;
        hi[i] = last;
        first = last + 1;
        cursor += per;
    }
}

TEST(spread_over_equal_ranges)
{
    static const char *jobs[] = {"job", "sim-1732871234-4242", "x", "train@eu+1"};
    const uint64_t model = 1000003; /* floats: shard sizes differ by one */
    double worst_keys = 0, worst_bytes = 0;
    int bad = 0, cases = 0;
    for (int ni = 0; ni < 2; ni++) {
        int n = ni == 0 ? 3 : 5, lo[5], hi[5];
        equal_ranges(n, lo, hi);
        for (uint32_t S = 4 * n; S <= 4 * (uint32_t)n + 40; S++)
            for (size_t j = 0; j < sizeof jobs / sizeof *jobs; j++) {
                /* One round of W = 10 clients: per shard 2W + 6 keys (updates,
                 * arrival lists, agg, done, closed, merger, gram, opt) and
                 * W + 1 shard values of its size. */
                double keys[5] = {0}, bytes[5] = {0};
                for (uint32_t s = 0; s < S; s++) {
                    char tag[FLC_TAG_MAX], k[FLC_KEY_MAX];
                    flc_key_shard_tag(tag, jobs[j], s, S);
                    flc_key_shard(k, tag, 1, "agg");
                    int sl = slot_of(k), node = 0;
                    while (node < n && !(sl >= lo[node] && sl <= hi[node]))
                        node++;
                    uint64_t off, cnt;
                    flc_rs_shard_range(model, S, s, &off, &cnt);
                    keys[node] += 2 * 10 + 6;
                    bytes[node] += 11.0 * (double)cnt * 4;
                }
                double kmin = 1e18, kmax = 0, bmin = 1e18, bmax = 0;
                for (int i = 0; i < n; i++) {
                    kmin = keys[i] < kmin ? keys[i] : kmin;
                    kmax = keys[i] > kmax ? keys[i] : kmax;
                    bmin = bytes[i] < bmin ? bytes[i] : bmin;
                    bmax = bytes[i] > bmax ? bytes[i] : bmax;
                }
                double rk = kmin > 0 ? kmax / kmin : 99, rb = bmin > 0 ? bmax / bmin : 99;
                worst_keys = rk > worst_keys ? rk : worst_keys;
                worst_bytes = rb > worst_bytes ? rb : worst_bytes;
                bad += rk > 1.5 || rb > 1.5;
                cases++;
            }
    }
    CHECK(bad == 0, "%d layouts (3 and 5 equal slot ranges, S = 4n..4n+40, 4 job names): the "
          "busiest node holds at most %.3fx the keys and %.3fx the bytes of the least busy "
          "(goal <= 1.5)", cases, worst_keys, worst_bytes);
    /* Beyond what the issue asks: counts differ by at most one for 1..16
     * equal ranges, so max/min <= 1.25 once S >= 4 x nodes. */
    int over = 0;
    for (int n = 1; n <= 16; n++) {
        int lo[16], hi[16];
        equal_ranges(n, lo, hi);
        for (uint32_t S = 1; S <= 200; S++) {
            int cnt[16] = {0};
            for (uint32_t s = 0; s < S; s++) {
                int sl = flc_key_shard_slot("job", s, S), node = 0;
                while (node < n && !(sl >= lo[node] && sl <= hi[node]))
                    node++;
                cnt[node]++;
            }
            int mn = cnt[0], mx = cnt[0];
            for (int i = 1; i < n; i++) {
                mn = cnt[i] < mn ? cnt[i] : mn;
                mx = cnt[i] > mx ? cnt[i] : mx;
            }
            over += mx - mn > 1;
        }
    }
    EXPECT(over == 0, "1..16 equal ranges, S = 1..200: shard counts per node differ by at most "
           "one (%d layouts where not)", over);
    /* Jobs of one shard (a simulation's models, J/g) start on different
     * nodes: the rotation is per job. */
    int lo[3], hi[3], per[3] = {0};
    equal_ranges(3, lo, hi);
    for (int j = 0; j < 30; j++) {
        char job[16];
        snprintf(job, sizeof job, "sim%d/g", j);
        int sl = flc_key_shard_slot(job, 0, 1), node = 0;
        while (node < 3 && !(sl >= lo[node] && sl <= hi[node]))
            node++;
        per[node]++;
    }
    EXPECT(per[0] > 3 && per[1] > 3 && per[2] > 3,
           "30 one-shard jobs over 3 equal ranges: %d / %d / %d", per[0], per[1], per[2]);
}

/* ---- on a redis-server --------------------------------------------------------- */

static int put_merged_one(flc_store_t *s, const char *job, float value)
{
    float v[4] = {value, value, value, value};
    flc_shard_t sh = {.round = 1, .shard = 0, .num_shards = 1, .count = 4, .model_size = 4,
                      .values = v};
    snprintf(sh.job, sizeof sh.job, "%s", job);
    return flc_store_put_merged(s, &sh);
}

TEST(series_does_not_collide)
{
    flc_store_t *s = open_default();
    redisReply *r = NULL;
    flc_store_commandf(s, &r, "FLUSHALL");
    freeReplyObject(r);
    /* Job x's global models (series x/g) and a user's job named x.g. */
    CHECK(put_merged_one(s, "x/g", 1.0f) == 0 && put_merged_one(s, "x.g", 2.0f) == 0,
          "round 1 of x/g and of x.g stored (%s)", flc_store_errstr(s));
    flc_shard_t a = {0}, b = {0};
    int ra = flc_store_get_merged(s, "x/g", 1, 0, &a, NULL, 0);
    int rb = flc_store_get_merged(s, "x.g", 1, 0, &b, NULL, 0);
    CHECK(ra == 0 && rb == 0 && a.values[0] == 1.0f && b.values[0] == 2.0f,
          "each reads back its own value (%g, %g)", ra == 0 ? a.values[0] : -1.0,
          rb == 0 ? b.values[0] : -1.0);
    flc_shard_release(&a);
    flc_shard_release(&b);
    r = NULL;
    flc_store_commandf(s, &r, "KEYS fl:{x/*");
    size_t nx = r ? r->elements : 0;
    int all_x = 1;
    for (size_t i = 0; r && i < r->elements; i++)
        all_x &= strncmp(r->element[i]->str, "fl:{x/g/", 8) == 0;
    if (r)
        freeReplyObject(r);
    EXPECT(nx > 0 && all_x, "job x's pattern fl:{x/... holds only x's series (%zu keys), none "
           "of x.g's", nx);
    flc_strlist_t jobs = {0};
    flc_store_list_jobs(s, &jobs);
    EXPECT(jobs.n == 1 && strcmp(jobs.items[0], "x.g") == 0,
           "jobs listed from schema records: %zu (%s), the series x/g left out", jobs.n,
           jobs.n ? jobs.items[0] : "-");
    flc_strlist_free(&jobs);
    flc_store_close(s);
}

TEST(schema1_job_refused)
{
    flc_store_t *s = open_default();
    redisReply *r = NULL;
    /* A job an older flcache stored: its round index under {old}. */
    flc_store_commandf(s, &r, "ZADD fl:{old}:rounds 1 1");
    freeReplyObject(r);
    uint32_t *rounds = NULL;
    size_t n = 0;
    int rc = flc_store_list_rounds(s, "old", &rounds, &n);
    free(rounds);
    const char *want = "job 'old' was stored with flcache key schema 1; this flcache reads "
                       "schema 2: run the job again (its old keys match fl:{old}*";
    EXPECT(rc == FLC_EDATA && strstr(flc_store_errstr(s), want),
           "a query of the job is refused: %s", flc_store_errstr(s));
    rc = flc_store_job_begin(s, "old", 4);
    EXPECT(rc == FLC_EDATA && strstr(flc_store_errstr(s), want),
           "a driver or merger starting it is refused: %s", flc_store_errstr(s));
    const char *ex[] = {"c"};
    flc_rs_merger_cfg_t mc = {.job = "old", .round = 2, .shard = 0, .num_shards = 1,
                              .model_size = 4, .expected = ex, .n_expected = 1,
                              .deadline_ms = 100};
    flc_merge_rule_init(&mc.rule, "fedavg", NULL);
    flc_rs_report_t rep;
    flc_err_t e = {0};
    rc = flc_rs_merger_run(s, &mc, &rep, &e);
    flc_rs_report_free(&rep);
    EXPECT(rc == FLC_EDATA && strstr(e.msg, "schema 1"), "so is its merger: %s", e.msg);
    /* A record of another version. */
    flc_store_commandf(s, &r, "HSET fl:{v3/j}:schema version 3 shards 2");
    freeReplyObject(r);
    Flcache__RoundMeta *m = NULL;
    rc = flc_store_job_begin(s, "v3", 2);
    EXPECT(rc == FLC_EDATA && strstr(flc_store_errstr(s), "key schema 3; this flcache reads "
                                                          "schema 2"),
           "a schema record of version 3 is refused: %s", flc_store_errstr(s));
    rc = flc_store_get_round_meta(s, "old", 1, &m);
    EXPECT(rc == FLC_EDATA, "reading old metadata says so too: %s", flc_store_errstr(s));
    flc_store_close(s);
}

TEST(shard_count_mismatch_refused)
{
    flc_store_t *a = open_default(), *b = open_default();
    CHECK(flc_store_job_begin(a, "sm", 6) == 0, "job sm started with 6 shards (%s)",
          flc_store_errstr(a));
    int rc = flc_store_job_begin(b, "sm", 12);
    EXPECT(rc == FLC_EINVAL &&
               strstr(flc_store_errstr(b), "job 'sm' was stored with 6 shards; this run asks 12"),
           "another run asking 12 is refused: %s", flc_store_errstr(b));
    rc = flc_store_job_shards(a, "sm", 3);
    EXPECT(rc == FLC_EINVAL && strstr(flc_store_errstr(a), "stored with 6 shards; this run asks 3"),
           "a store that knows the job refuses another count too: %s", flc_store_errstr(a));
    EXPECT(flc_store_job_begin(b, "sm", 6) == 0, "the same count joins the job");
    CHECK(flc_store_forget_job(a, "sm") == 0 && flc_store_job_begin(b, "sm2", 12) == 0,
          "forgetting a job (a rerun after clearing it) frees its count");
    flc_store_t *c = open_default();
    EXPECT(flc_store_job_begin(c, "sm", 12) == 0, "then it may start with 12 (%s)",
           flc_store_errstr(c));
    flc_store_close(a);
    flc_store_close(b);
    flc_store_close(c);
}

/* ---- ACLs ------------------------------------------------------------------------ */

#define ACL_S 2
#define ACL_N 10

typedef struct acl_merger {
    char url[256];
    uint32_t shard;
    int rc;
    flc_rs_report_t rep;
    char err[FLC_ERRMSG_LEN];
} acl_merger_t;

static const char *const acl_clients[] = {"c1", "c2"};

static void *acl_merge(void *p)
{
    acl_merger_t *m = p;
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(m->url, NULL, &e);
    if (s == NULL) {
        m->rc = e.code;
        snprintf(m->err, sizeof m->err, "%s", e.msg);
        return NULL;
    }
    flc_rs_merger_cfg_t mc = {.job = "J", .round = 1, .shard = m->shard, .num_shards = ACL_S,
                              .model_size = ACL_N, .expected = acl_clients, .n_expected = 2,
                              .deadline_ms = 10000, .readers = 1};
    flc_merge_rule_init(&mc.rule, "fedavg", NULL);
    m->rc = flc_rs_merger_run(s, &mc, &m->rep, &e);
    snprintf(m->err, sizeof m->err, "%s", e.msg);
    flc_store_close(s);
    return NULL;
}

/* redis://user:pw@host:port from the fixture's TCP URL. */
static void user_url(char *out, size_t cap, const char *user)
{
    const char *hp = fx.tcp_url + strlen("redis://");
    snprintf(out, cap, "redis://%s:pw@%s", user, hp);
}

TEST(acl_confines_clients_and_jobs)
{
    flc_store_t *admin = open_default();
    /* A client may read its job and write only its own keys; a job's
     * credentials cover the job. (A write pattern must grant read too: SET
     * and EVAL ask both on the key.) */
    static const char *acl[3][8] = {
        {"ACL", "SETUSER", "c1", "reset", "on", ">pw", "%R~fl:{J/*", "~fl:{J/*}:c:c1:*"},
        {"ACL", "SETUSER", "c2", "reset", "on", ">pw", "%R~fl:{J/*", "~fl:{J/*}:c:c2:*"},
        {"ACL", "SETUSER", "jobJ", "reset", "on", ">pw", "~fl:{J/*", "+@all"},
    };
    int ok = 1;
    for (size_t i = 0; i < 3; i++) {
        const char *argv[9];
        memcpy(argv, acl[i], sizeof acl[i]);
        argv[8] = "+@all";
        ok &= flc_store_command(admin, NULL, i < 2 ? 9 : 8, argv, NULL) == 0;
    }
    CHECK(ok, "users c1 (%%R~fl:{J/* ~fl:{J/*}:c:c1:* +@all), c2 alike and jobJ (~fl:{J/* "
          "+@all) created (%s)", flc_store_errstr(admin));
    /* Job K, written by the default user. */
    CHECK(put_merged_one(admin, "K", 3.0f) == 0, "job K stored");

    char ujob[256], u1[256], u2[256];
    user_url(ujob, sizeof ujob, "jobJ");
    user_url(u1, sizeof u1, "c1");
    user_url(u2, sizeof u2, "c2");
    acl_merger_t m[ACL_S];
    pthread_t th[ACL_S];
    for (uint32_t k = 0; k < ACL_S; k++) {
        memset(&m[k], 0, sizeof m[k]);
        snprintf(m[k].url, sizeof m[k].url, "%s", ujob);
        m[k].shard = k;
        pthread_create(&th[k], NULL, acl_merge, &m[k]);
    }
    flc_sleep_ms(200); /* the mergers wrote the roster and wait */
    flc_store_t *s1 = open_url(u1), *s2 = open_url(u2);
    float v1[ACL_N], v2[ACL_N];
    for (int i = 0; i < ACL_N; i++)
        v1[i] = (float)i, v2[i] = (float)(3 * i);
    flc_err_t e1 = {0}, e2 = {0};
    flc_rs_push_cfg_t p1 = {.job = "J", .round = 1, .client = "c1", .num_shards = ACL_S,
                            .model_size = ACL_N, .num_samples = 1};
    flc_rs_push_cfg_t p2 = p1;
    p2.client = "c2";
    int r1 = flc_rs_push(s1, &p1, v1, &e1), r2 = flc_rs_push(s2, &p2, v2, &e2);
    Flcache__ModelUpdate um = FLCACHE__MODEL_UPDATE__INIT;
    um.job = "J", um.round = 1, um.client = "c1", um.num_samples = 1;
    int rm = flc_store_put_update_meta(s1, &um);
    for (uint32_t k = 0; k < ACL_S; k++)
        pthread_join(th[k], NULL);
    EXPECT(r1 == 0 && r2 == 0 && rm == 0, "c1 and c2 push their updates and c1 its metadata "
           "under their own users (%s%s%s)", e1.msg, e2.msg, flc_store_errstr(s1));
    EXPECT(m[0].rc == 0 && m[1].rc == 0 && m[0].rep.participants.n == 2 &&
               m[1].rep.participants.n == 2,
           "both mergers ran as job J's user and merged c1 and c2 (%s%s)", m[0].err, m[1].err);
    for (uint32_t k = 0; k < ACL_S; k++)
        flc_rs_report_free(&m[k].rep);
    flc_store_t *sj = open_url(ujob);
    float model[ACL_N];
    flc_err_t ej = {0};
    int rp = flc_rs_pull(sj, "J", 1, ACL_S, ACL_N, 5000, model, &ej);
    int mean = rp == 0;
    for (int i = 0; mean && i < ACL_N; i++)
        mean = model[i] == 2.0f * (float)i;
    CHECK(mean, "job J's user pulls the merged model, the mean of both (%s)", ej.msg);
    const char *three[] = {"c1", "c2", "c3"};
    unsigned char found[3] = {9, 9, 9};
    int ue = flc_store_updates_exist(sj, "J", 1, 1, three, 3, found);
    EXPECT(ue == 0 && found[0] == 1 &&
               found[1] == 1 && found[2] == 0,
           "shard 1 of round 1 holds the updates of c1 and c2, not c3 (%d %d %d)", found[0],
           found[1], found[2]);

    /* c1 writing c2's update: refused by the server, the key named. */
    flc_rs_push_cfg_t as2 = p1;
    as2.client = "c2";
    as2.round = 2;
    flc_err_t e = {0};
    int rc = flc_rs_push(s1, &as2, v1, &e);
    EXPECT(rc == FLC_EAUTH && strstr(e.msg, "NOPERM") && strstr(e.msg, ":c:c2:u:2"),
           "c1 writing c2's update: %s", e.msg);
    um.client = "c2";
    rc = flc_store_put_update_meta(s1, &um);
    EXPECT(rc == FLC_EAUTH && strstr(flc_store_errstr(s1), "fl:{J/j}:c:c2:um:1"),
           "c1 writing c2's metadata: %s", flc_store_errstr(s1));
    Flcache__RoundMeta rmeta = FLCACHE__ROUND_META__INIT;
    rmeta.job = "J", rmeta.round = 1;
    rc = flc_store_put_round_meta(s1, &rmeta);
    EXPECT(rc == FLC_EAUTH && strstr(flc_store_errstr(s1), "NOPERM"),
           "c1 writing a job key (round metadata): %s", flc_store_errstr(s1));
    rc = flc_store_job_begin(s1, "J2", 1);
    EXPECT(rc == FLC_EAUTH, "c1 starting another job: %s", flc_store_errstr(s1));
    /* Job J's credentials cannot read job K. */
    flc_shard_t k = {0};
    flc_store_job_shards(sj, "K", 1);
    rc = flc_store_get_merged(sj, "K", 1, 0, &k, NULL, 0);
    flc_shard_release(&k);
    EXPECT(rc == FLC_EAUTH && strstr(flc_store_errstr(sj), "NOPERM"),
           "job J's user reading job K's merged shard: %s", flc_store_errstr(sj));
    Flcache__RoundMeta *km = NULL;
    rc = flc_store_get_round_meta(sj, "K", 1, &km);
    EXPECT(rc == FLC_EAUTH, "or its metadata: %s", flc_store_errstr(sj));
    flc_store_close(s1);
    flc_store_close(s2);
    flc_store_close(sj);
    flc_store_close(admin);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(exact_key_names),
                 TEST_ENTRY(shard_tag_fixed_across_rounds), TEST_ENTRY(spread_over_equal_ranges),
                 TEST_ENTRY(series_does_not_collide), TEST_ENTRY(schema1_job_refused),
                 TEST_ENTRY(shard_count_mismatch_refused),
                 TEST_ENTRY(acl_confines_clients_and_jobs))
