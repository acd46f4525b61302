/* Hostile and corrupt values against the query engine and the shard reader
 * (issue 13 findings 1, 5 and 9), on a real password-protected redis-server:
 * - a poisoned request tracker naming a loopback listener of this test: no
 *   query kind connects there (the listener records every byte it gets);
 * - an update with a valid frame and a NaN payload is left out of the Gram
 *   and named, and `outliers` still flags the planted attackers;
 * - a cached Gram partial is not used once an update it covers changed;
 * - undecodable per-update metadata refuses the query, naming the client;
 * - a 76-byte value whose header claims 100M floats fails before anything
 *   is allocated or read for it (counted with INFO commandstats);
 * - a value copied under another client's key is refused, naming both;
 * - a round in the index without metadata shows in `history`.
 * Each case failed on the code before its fix (see docs/reliability.md). */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "aggregator/query.h"
#include "aggregator/reduce_scatter.h"
#include "base/clock.h"
#include "cache/keys.h"
#include "cache/shard_codec.h"
#include "cache/store_ops.h"
#include "cache/store_raw.h"
#include "tests/harness.h"

#define N 8
#define NDIM 200
#define S 2
#define PW "h0stile-pw"

static flc_fixture_t g_fx;
static char g_url[600]; /* the fixture's unix socket with the password */
static char g_names[N][8];
static const char *g_exp[N];

static void setup(void)
{
    flc_fixture_start(&g_fx, 0);
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(g_fx.unix_url, NULL, &e);
    if (s == NULL)
        flc_t_fatal("connect: %s", e.msg);
    redisReply *r = NULL;
    flc_store_commandf(s, &r, "CONFIG SET requirepass " PW);
    if (r)
        freeReplyObject(r);
    flc_store_close(s);
    snprintf(g_url, sizeof g_url, "unix://:" PW "@%s",
             strstr(g_fx.unix_url + strlen("unix://"), "/"));
    for (int i = 0; i < N; i++) {
        snprintf(g_names[i], sizeof g_names[i], "c%d", i);
        g_exp[i] = g_names[i];
    }
}

static void teardown(void)
{
    flc_fixture_stop(&g_fx);
}

static flc_store_t *open_pw(void)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(g_url, NULL, &e);
    if (s == NULL)
        flc_t_fatal("connect: %s", e.msg);
    return s;
}

/* ---- a small job ------------------------------------------------------- */

typedef struct marg {
    const char *job;
    int rc;
    uint32_t shard;
} marg_t;

static void *merger(void *p)
{
    marg_t *a = p;
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(g_url, NULL, &e);
    flc_rs_merger_cfg_t c = {.job = a->job, .round = 1, .shard = a->shard, .num_shards = S,
                             .model_size = NDIM, .expected = g_exp, .n_expected = N,
                             .deadline_ms = 5000, .readers = 0};
    flc_merge_rule_init(&c.rule, "fedavg", NULL);
    flc_rs_report_t rep;
    a->rc = s ? flc_rs_merger_run(s, &c, &rep, &e) : -1;
    flc_rs_report_free(&rep);
    flc_store_close(s);
    return NULL;
}

/* Client i's update: a common direction plus a little noise; c6 and c7
 * (labelled "sign_flip") send it negated and tripled. */
static void update_of(int i, float *u)
{
    float noise[NDIM];
    flc_t_fill(noise, NDIM, 100 + (unsigned)i);
    for (int x = 0; x < NDIM; x++) {
        float d = (float)sin(0.1 * x) + 0.5f;
        u[x] = (i >= N - 2 ? -3.0f : 1.0f) * d + 0.05f * noise[x];
    }
}

/* Round 1 of job: every client's update and metadata, merged (FedAvg). */
static void store_job(const char *job)
{
    flc_store_t *s = open_pw();
    pthread_t th[S];
    marg_t ma[S];
    for (uint32_t k = 0; k < S; k++) {
        ma[k] = (marg_t){job, 0, k};
        pthread_create(&th[k], NULL, merger, &ma[k]);
    }
    flc_err_t e = {0};
    for (int i = 0; i < N; i++) {
        float u[NDIM];
        update_of(i, u);
        flc_rs_push_cfg_t pc = {.job = job, .round = 1, .client = g_names[i], .num_shards = S,
                                .model_size = NDIM, .num_samples = 10 + (uint64_t)i};
        if (flc_rs_push(s, &pc, u, &e) != 0)
            flc_t_fatal("push: %s", e.msg);
        Flcache__ModelUpdate m = FLCACHE__MODEL_UPDATE__INIT;
        Flcache__ModelUpdate__LabelsEntry lab = FLCACHE__MODEL_UPDATE__LABELS_ENTRY__INIT;
        Flcache__ModelUpdate__LabelsEntry *labs[] = {&lab};
        m.job = (char *)job;
        m.round = 1;
        m.client = g_names[i];
        m.num_samples = 10 + (uint64_t)i;
        m.loss = 0.5;
        m.status = "accepted";
        lab.key = "fault";
        lab.value = i >= N - 2 ? "sign_flip" : "none";
        m.n_labels = 1;
        m.labels = labs;
        if (flc_store_put_update_meta(s, &m) != 0)
            flc_t_fatal("meta: %s", flc_store_errstr(s));
    }
    for (uint32_t k = 0; k < S; k++)
        pthread_join(th[k], NULL);
    Flcache__RoundMeta rm = FLCACHE__ROUND_META__INIT;
    rm.job = (char *)job;
    rm.round = 1;
    rm.rule = "fedavg";
    rm.status = "closed";
    if (flc_store_put_round_meta(s, &rm) != 0)
        flc_t_fatal("round meta: %s", flc_store_errstr(s));
    flc_store_close(s);
    if (ma[0].rc || ma[1].rc)
        flc_t_fatal("a merger of job %s failed", job);
}

static Flcache__QueryAnswer *query(const char *job, flc_query_kind_t kind, int no_cache,
                                   flc_err_t *e)
{
    flc_store_t *s = open_pw();
    flc_query_req_t q = {.kind = kind, .job = job, .round_from = 1, .round_to = 1,
                         .url = g_url, .no_cache = no_cache, .k = 2, .seed = 3,
                         .client = "c1"};
    Flcache__QueryAnswer *a = NULL;
    if (flc_query_run(s, &q, &a, e) != 0)
        a = NULL;
    flc_store_close(s);
    return a;
}

static const char *note_of(const Flcache__QueryAnswer *a, const char *key)
{
    for (size_t i = 0; a && i < a->n_notes; i++)
        if (strcmp(a->notes[i]->key, key) == 0)
            return a->notes[i]->value;
    return NULL;
}

static double summary(const Flcache__QueryAnswer *a, const char *key)
{
    for (size_t i = 0; a && i < a->n_summary; i++)
        if (strcmp(a->summary[i]->key, key) == 0)
            return a->summary[i]->value;
    return NAN;
}

static const Flcache__QueryRow *row_of(const Flcache__QueryAnswer *a, const char *key)
{
    for (size_t i = 0; a && i < a->n_rows; i++)
        if (strcmp(a->rows[i]->key, key) == 0)
            return a->rows[i];
    return NULL;
}

/* The raw key of client c's update of shard sh in round 1. */
static void update_key(char *out, const char *job, uint32_t sh, const char *c)
{
    char tag[FLC_TAG_MAX];
    flc_key_shard_tag(tag, job, sh, S);
    flc_key_update(out, tag, 1, c);
}

/* Replaces client c's update of every shard with a frame of the same header
 * (a fresh created_ms) whose payload is v (the whole model). */
static void rewrite_update(const char *job, const char *c, const float *v)
{
    flc_store_t *s = open_pw();
    for (uint32_t k = 0; k < S; k++) {
        uint64_t off = (uint64_t)k * NDIM / S, end = (uint64_t)(k + 1) * NDIM / S;
        flc_shard_t sh = {.round = 1, .shard = k, .num_shards = S, .offset = off,
                          .count = end - off, .model_size = NDIM, .weight = 1,
                          .num_samples = 1, .created_ms = flc_wall_ms() + k,
                          .values = (float *)v + off};
        snprintf(sh.job, sizeof sh.job, "%s", job);
        snprintf(sh.client, sizeof sh.client, "%s", c);
        if (flc_store_put_update(s, &sh) != 0)
            flc_t_fatal("rewrite %s: %s", c, flc_store_errstr(s));
    }
    flc_store_close(s);
}

/* ---- finding 1: the tracker names a host of its choosing ---------------- */

typedef struct listener {
    int fd, port, stop;
    size_t conns, bytes;
    char first[200];
    pthread_t th;
} listener_t;

static void *listen_loop(void *p)
{
    listener_t *l = p;
    while (!__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE)) {
        struct pollfd pf = {.fd = l->fd, .events = POLLIN};
        if (poll(&pf, 1, 50) <= 0)
            continue;
        int c = accept(l->fd, NULL, NULL);
        if (c < 0)
            continue;
        __atomic_add_fetch(&l->conns, 1, __ATOMIC_RELEASE);
        struct pollfd pc = {.fd = c, .events = POLLIN};
        char buf[512];
        ssize_t n;
        while (poll(&pc, 1, 300) > 0 && (n = read(c, buf, sizeof buf)) > 0) {
            if (l->bytes == 0)
                snprintf(l->first, sizeof l->first, "%.*s", (int)(n < 150 ? n : 150), buf);
            __atomic_add_fetch(&l->bytes, (size_t)n, __ATOMIC_RELEASE);
        }
        close(c); /* no answer: a client waiting for one gets an error */
    }
    return NULL;
}

static void listener_start(listener_t *l)
{
    memset(l, 0, sizeof *l);
    l->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (l->fd < 0 || bind(l->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(l->fd, 16) ||
        getsockname(l->fd, (struct sockaddr *)&a, &al) != 0)
        flc_t_fatal("listener: cannot listen on 127.0.0.1");
    l->port = ntohs(a.sin_port);
    pthread_create(&l->th, NULL, listen_loop, l);
}

static void listener_stop(listener_t *l)
{
    __atomic_store_n(&l->stop, 1, __ATOMIC_RELEASE);
    pthread_join(l->th, NULL);
    close(l->fd);
}

TEST(poisoned_tracker_gets_no_credentials)
{
    store_job("tp");
    listener_t l;
    listener_start(&l);
    /* Every shard's tracker entry now names the listener, in the entry's
     * own form and as a URL with room for the caller's credentials. */
    flc_store_t *s = open_pw();
    char k_where[FLC_KEY_MAX], val[300];
    (void)0;
    snprintf(val, sizeof val, "redis://127.0.0.1:%d|hot||127.0.0.1:%d", l.port, l.port);
    for (uint32_t k = 0; k < S; k++) {
        redisReply *r = NULL;
        flc_store_commandf(s, &r, "HSET %s %u %s", k_where, k, val);
        if (r)
            freeReplyObject(r);
    }
    redisReply *r = NULL;
    flc_store_commandf(s, &r, "HGET %s 0", k_where);
    int poisoned = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "127.0.0.1");
    if (r)
        freeReplyObject(r);
    flc_store_close(s);
    CHECK(poisoned, "tracker entries of job tp name the listener 127.0.0.1:%d", l.port);
    static const flc_query_kind_t kinds[] = {
        FLC_Q_HISTORY, FLC_Q_CLIENT, FLC_Q_NORMS, FLC_Q_SIMILARITY, FLC_Q_OUTLIERS,
        FLC_Q_CLUSTERS, FLC_Q_PERSONALIZE, FLC_Q_CONTRIBUTION, FLC_Q_SCHEDULE};
    size_t answered = 0;
    char failed[400] = "";
    for (int pass = 0; pass < 2; pass++) /* computed, then from the cache */
        for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
            flc_err_t e = {0};
            Flcache__QueryAnswer *a = query("tp", kinds[k], pass == 0, &e);
            if (a && a->n_rows > 0)
                answered++;
            else
                snprintf(failed + strlen(failed), sizeof failed - strlen(failed), " %s: %s;",
                         flc_query_kind_name(kinds[k]), e.msg);
            if (a)
                flcache__query_answer__free_unpacked(a, NULL);
        }
    listener_stop(&l);
    EXPECT(answered == 18, "every query kind answered with the tracker poisoned, twice "
           "(%zu of 18)%s", answered, failed);
    CHECK(l.conns == 0 && l.bytes == 0, "the listener got %zu connection(s), %zu byte(s)%s%s",
          l.conns, l.bytes, l.bytes ? ", starting " : "", l.first);
    CHECK(strstr(l.first, PW) == NULL, "the password never reached the listener");
}

/* ---- finding 5: NaN payloads, stale partials, corrupt metadata, claims -- */

TEST(nan_update_left_out_and_named)
{
    store_job("tn");
    float bad[NDIM];
    update_of(3, bad);
    bad[NDIM - 5] = NAN; /* in the last shard only */
    bad[7] = INFINITY;
    rewrite_update("tn", "c3", bad);
    flc_err_t e = {0};
    Flcache__QueryAnswer *a = query("tn", FLC_Q_OUTLIERS, 1, &e);
    CHECK(a != NULL, "outliers with a NaN update: answered (%s)", a ? "ok" : e.msg);
    const char *nf = note_of(a, "non_finite");
    EXPECT(nf && strstr(nf, "c3"), "the NaN update is named: non_finite = \"%s\"",
           nf ? nf : "(none)");
    int flags_ok = row_of(a, "c3") == NULL;
    for (int i = 0; i < N; i++) {
        const Flcache__QueryRow *r = row_of(a, g_names[i]);
        if (i == 3 || r == NULL)
            continue;
        int flagged = r->values[8] != 0;
        flags_ok &= flagged == (i >= N - 2);
    }
    CHECK(flags_ok && summary(a, "precision") == 1.0 && summary(a, "recall") == 1.0,
          "c3 left out, c6 and c7 flagged and nobody else: precision %.2f recall %.2f",
          summary(a, "precision"), summary(a, "recall"));
    flcache__query_answer__free_unpacked(a, NULL);
    a = query("tn", FLC_Q_NORMS, 1, &e);
    int finite = a != NULL && row_of(a, "c3") == NULL && a->n_rows == N - 1;
    for (size_t i = 0; a && i < a->n_rows; i++)
        finite &= isfinite(a->rows[i]->values[0]);
    CHECK(finite, "norms: %zu finite rows, c3 not among them", a ? a->n_rows : 0);
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
}

TEST(gram_cache_follows_repaired_update)
{
    store_job("tc");
    float u[NDIM];
    update_of(3, u);
    float bad[NDIM];
    memcpy(bad, u, sizeof bad);
    bad[2] = NAN;
    rewrite_update("tc", "c3", bad);
    flc_err_t e = {0};
    Flcache__QueryAnswer *a = query("tc", FLC_Q_NORMS, 0, &e); /* caches the partials */
    int left_out = a && row_of(a, "c3") == NULL;
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    CHECK(left_out, "with the cache: c3's NaN update left out (%s)", a ? "ok" : e.msg);
    for (int x = 0; x < NDIM; x++) /* the repair: a different, finite update */
        u[x] *= 2;
    rewrite_update("tc", "c3", u);
    a = query("tc", FLC_Q_NORMS, 0, &e);
    double want = 0;
    for (int x = 0; x < NDIM; x++)
        want += (double)u[x] * u[x];
    want = sqrt(want);
    const Flcache__QueryRow *r = row_of(a, "c3");
    double got = r ? r->values[0] : NAN;
    CHECK(r && fabs(got - want) < 1e-4 * want && note_of(a, "non_finite") == NULL,
          "after the repair the cached partials are not used: c3's norm %.5f (want %.5f)", got,
          want);
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    Flcache__QueryAnswer *b = query("tc", FLC_Q_NORMS, 0, &e);
    CHECK(b && b->bytes_read == 0, "asked again, the new partials serve it: %llu bytes of "
          "updates read", b ? (unsigned long long)b->bytes_read : 0ULL);
    if (b)
        flcache__query_answer__free_unpacked(b, NULL);
}

TEST(corrupt_metadata_names_its_client)
{
    store_job("tm");
    flc_store_t *s = open_pw();
    char k[FLC_KEY_MAX];
    flc_key_client_meta(k, "tm", "c5", 1);
    redisReply *r = NULL;
    flc_store_commandf(s, &r, "SET %s %b", k, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11);
    if (r)
        freeReplyObject(r);
    flc_store_close(s);
    static const flc_query_kind_t kinds[] = {FLC_Q_NORMS, FLC_Q_OUTLIERS, FLC_Q_CONTRIBUTION,
                                             FLC_Q_SCHEDULE};
    int named = 0;
    char msgs[1200] = "";
    for (size_t i = 0; i < 4; i++) {
        flc_err_t e = {0};
        Flcache__QueryAnswer *a = query("tm", kinds[i], 1, &e);
        named += a == NULL && strstr(e.msg, "client c5") != NULL;
        snprintf(msgs + strlen(msgs), sizeof msgs - strlen(msgs), " %s: %s;",
                 flc_query_kind_name(kinds[i]), a ? "answered" : e.msg);
        if (a)
            flcache__query_answer__free_unpacked(a, NULL);
    }
    CHECK(named == 4, "norms, outliers, contribution and schedule refuse naming client c5 "
          "(%d of 4):%s", named, msgs);
}

static long long op_calls(flc_store_t *s, const char *cmd)
{
    redisReply *r = NULL;
    long long n = 0;
    char pat[64];
    snprintf(pat, sizeof pat, "cmdstat_%s:calls=", cmd);
    flc_store_commandf(s, &r, "INFO commandstats");
    const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, pat) : NULL;
    if (p)
        n = atoll(p + strlen(pat));
    if (r)
        freeReplyObject(r);
    return n;
}

TEST(huge_claim_fails_before_allocating)
{
    flc_store_t *s = open_pw();
    flc_shard_t h = {.round = 1, .shard = 0, .num_shards = 1, .offset = 0,
                     .count = 100000000, .model_size = 100000000, .weight = 1};
    snprintf(h.job, sizeof h.job, "th");
    snprintf(h.client, sizeof h.client, "c0");
    uint8_t buf[FLC_FRAME_HEADER_MAX + 16];
    size_t len = 0;
    flc_err_t e = {0};
    if (flc_shard_encode_header(&h, buf, sizeof buf, &len, &e) != 0)
        flc_t_fatal("encode: %s", e.msg);
    while (len < 76)
        buf[len++] = 0; /* a few payload bytes */
    /* The job's schema record, so the key is the one a reader builds. */
    redisReply *r = NULL;
    char k_schema[FLC_KEY_MAX], key[FLC_KEY_MAX], tag[FLC_TAG_MAX];
    flc_key_job(k_schema, "th", "schema");
    flc_store_commandf(s, &r, "HSET %s version 2 shards 1", k_schema);
    if (r)
        freeReplyObject(r);
    flc_key_shard_tag(tag, "th", 0, 1);
    flc_key_update(key, tag, 1, "c0");
    /* As a string, and as a hash of chunks whose field 0 is those bytes
     * (a reader takes field 0's length as the writer's chunk size). */
    for (int form = 0; form < 2; form++) {
        flc_store_commandf(s, &r, "DEL %s", key);
        if (r)
            freeReplyObject(r);
        if (form == 0)
            flc_store_commandf(s, &r, "SET %s %b", key, buf, len);
        else
            flc_store_commandf(s, &r, "HSET %s 0 %b", key, buf, len);
        if (r)
            freeReplyObject(r);
        struct rusage ru0, ru1;
        getrusage(RUSAGE_SELF, &ru0);
        long long g0 = op_calls(s, "getrange"), h0 = op_calls(s, "hget");
        uint64_t t0 = flc_now_ns();
        flc_shard_t out = {0};
        int rc = flc_store_get_update(s, "th", 1, 0, "c0", &out, NULL, 0);
        double ms = (double)(flc_now_ns() - t0) / 1e6;
        long long g1 = op_calls(s, "getrange"), h1 = op_calls(s, "hget");
        getrusage(RUSAGE_SELF, &ru1);
        const char *msg = flc_store_errstr(s);
        printf("    # %zu-byte %s: %s\n", len, form ? "hash" : "string", msg);
        CHECK(rc == FLC_EDATA && strstr(msg, "claims"), "a %zu-byte %s claiming 100M floats is "
              "refused as data error (rc %d)", len, form ? "hash" : "string", rc);
        CHECK(g1 - g0 + h1 - h0 <= 16 && ru1.ru_maxrss - ru0.ru_maxrss < 20000,
              "before allocating or reading for it: %lld GETRANGE/HGETs, max RSS +%ld KB, "
              "%.1f ms", g1 - g0 + h1 - h0, ru1.ru_maxrss - ru0.ru_maxrss, ms);
        flc_shard_release(&out);
    }
    flc_store_close(s);
}

/* ---- finding 9: values under another key, rounds without metadata ------ */

TEST(copied_value_refused_naming_both)
{
    store_job("tk");
    flc_store_t *s = open_pw();
    char k1[FLC_KEY_MAX], k2[FLC_KEY_MAX];
    update_key(k1, "tk", 1, "c1");
    update_key(k2, "tk", 1, "c2");
    redisReply *r = NULL;
    flc_store_commandf(s, &r, "COPY %s %s REPLACE", k1, k2);
    int copied = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    if (r)
        freeReplyObject(r);
    CHECK(copied, "c1's update of shard 1 copied under c2's key");
    flc_shard_t out = {0};
    int rc = flc_store_get_update(s, "tk", 1, 1, "c2", &out, NULL, 0);
    const char *msg = flc_store_errstr(s);
    CHECK(rc == FLC_EDATA && strstr(msg, "client c2") && strstr(msg, "client c1"),
          "reading c2's update refuses it, naming both: %s", msg);
    flc_shard_release(&out);
    flc_store_close(s);
    flc_err_t e = {0};
    Flcache__QueryAnswer *a = query("tk", FLC_Q_NORMS, 1, &e);
    CHECK(a == NULL && strstr(e.msg, "client c1"), "norms refuses the round: %s",
          a ? "answered" : e.msg);
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
}

TEST(round_without_metadata_named)
{
    store_job("tr");
    flc_store_t *s = open_pw();
    char k[FLC_KEY_MAX];
    flc_key_job(k, "tr", "rounds");
    redisReply *r = NULL;
    flc_store_commandf(s, &r, "ZADD %s 2 2", k);
    if (r)
        freeReplyObject(r);
    flc_store_close(s);
    flc_err_t e = {0};
    flc_store_t *q = open_pw();
    flc_query_req_t req = {.kind = FLC_Q_HISTORY, .job = "tr", .all_rounds = 1, .url = g_url};
    Flcache__QueryAnswer *a = NULL;
    int rc = flc_query_run(q, &req, &a, &e);
    flc_store_close(q);
    const Flcache__QueryRow *r2 = rc == 0 ? row_of(a, "2") : NULL;
    CHECK(r2 && r2->n_text == 2 && strcmp(r2->text[1], "no metadata") == 0 &&
              note_of(a, "no_metadata") != NULL && row_of(a, "1") != NULL,
          "history lists round 2 as \"no metadata\" (and round 1 as before): %s",
          rc ? e.msg : note_of(a, "no_metadata") ? note_of(a, "no_metadata") : "no note");
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    a = NULL;
    q = open_pw();
    req.kind = FLC_Q_SCHEDULE;
    rc = flc_query_run(q, &req, &a, &e);
    flc_store_close(q);
    const char *sn = rc == 0 ? note_of(a, "no_metadata") : NULL;
    CHECK(sn != NULL && a->n_rows > 0, "schedule says a round had no metadata: %s",
          rc ? e.msg : sn ? sn : "no note");
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(poisoned_tracker_gets_no_credentials),
                 TEST_ENTRY(nan_update_left_out_and_named),
                 TEST_ENTRY(gram_cache_follows_repaired_update),
                 TEST_ENTRY(corrupt_metadata_names_its_client),
                 TEST_ENTRY(huge_claim_fails_before_allocating),
                 TEST_ENTRY(copied_value_refused_naming_both),
                 TEST_ENTRY(round_without_metadata_named))
