/* A merger's memory is bounded by its shard, not by its values (issue 14
 * goal 4; aggregator/rs_window.c, cache/store_put_stream.c), on a real
 * redis-server with 16 KiB chunks and a 64 KiB window, a 4 MB shard:
 *   - fedavg: a merger process's peak RSS grows by at most 2 x shard +
 *     3 MB (its double sums and two windows), the whole-value path's by
 *     more (it holds a whole update besides), and both write the
 *     same merged shard, bit for bit, read back by flc_store_get_merged
 *     (the windowed mergers run as the aggregator function, the whole ones
 *     by flc_rs_merger_run);
 *   - median: at most (K + 2) windows + 3 MB (its updates read window by
 *     window when the shard closes, aggregator/rs_defer.c; no whole
 *     output), the same bits as the whole path (the trimmed mean too); a NaN found in a late
 *     window rejects its update as on arrival and the shard is merged
 *     again without it, the same bits; an update rewritten after its
 *     arrival is merged as rewritten, one deleted is rejected as gone;
 *   - a NaN in a later window of an update is refused with the element
 *     named in model coordinates, its earlier windows taken back: the
 *     merged shard equals the whole path's, which refuses it too;
 *   - the streamed writer stores the same bytes as flc_store_put_merged:
 *     every chunk field and the head field (its payload CRC-32C). */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "aggregator/reduce_scatter.h"
#include "base/clock.h"
#include "cache/store.h"
#include "cache/store_put_stream.h"
#include "cache/store_raw.h"
#include "runtime/pool.h"
#include "runtime/pool_proc.h"
#include "tests/harness.h"

#define CHUNK 16384
#define WINDOW (64u * 1024u)
#define N (1024u * 1024u) /* floats: a 4 MB shard */
#define K 4
#define SLACK_KB 3072 /* the process's own: code faulted in, connection buffers */

static flc_fixture_t fx;

static void setup(void)
{
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

static flc_store_t *open_store(void)
{
    static const flc_store_opts_t o = {.chunk_bytes = CHUNK};
    return flc_fixture_open(&fx, &o);
}

static const char *names[K] = {"c0", "c1", "c2", "c3"};

/* Pushes K updates of round r (update `nan_in` gets a NaN at float nan_at;
 * -1: none). The parent frees them before a merger forks, so the child's
 * memory holds only what it makes. */
static void push_round(const char *job, uint32_t r, int nan_in, size_t nan_at)
{
    flc_store_t *s = open_store();
    float *u = malloc(N * sizeof *u);
    for (int i = 0; i < K; i++) {
        flc_t_fill(u, N, 100 + (unsigned)i);
        flc_rs_push_cfg_t pc = {.job = job, .round = r, .client = names[i], .num_shards = 1,
                                .model_size = N, .num_samples = 1 + (uint64_t)i};
        flc_err_t e = {0};
        if (flc_rs_push(s, &pc, u, &e) != 0)
            flc_t_fatal("push %s: %s", names[i], e.msg);
        if (i == nan_in) { /* a hostile update: pushed clean (the push checks), then rewritten */
            u[nan_at] = 0.0f / 0.0f;
            flc_shard_t sh = {.round = r, .shard = 0, .num_shards = 1, .count = N,
                              .model_size = N, .weight = 1 + i, .num_samples = 1 + (uint64_t)i,
                              .update_norm = 1.0, .values = u};
            snprintf(sh.job, sizeof sh.job, "%s", job);
            snprintf(sh.client, sizeof sh.client, "%s", names[i]);
            if (flc_store_put_update(s, &sh) != 0)
                flc_t_fatal("rewrite %s: %s", names[i], flc_store_errstr(s));
        }
    }
    free(u);
    flc_store_close(s);
}

typedef struct outcome {
    int rc;
    long grew_kb; /* VmHWM at the end less VmRSS at the start */
    size_t participants, rejected, missing;
    char rejected0[200];
} outcome_t;

/* A merger running in a child process (started, then finished). */
typedef struct running {
    pid_t pid;
    int fd;
} running_t;

/* Starts the merger of round r in a child process (its peak RSS its own:
 * reset by clear_refs at its start), waiting for names[0..k) (k > K: the
 * extra one, "c4", never pushes, so the merger waits out its deadline). */
static running_t start_merger(const char *job, uint32_t r, const char *rule, size_t window,
                              int k, unsigned deadline_ms)
{
    static const char *all[] = {"c0", "c1", "c2", "c3", "c4"};
    int fd[2];
    outcome_t o = {.rc = -1};
    if (pipe(fd) != 0)
        flc_t_fatal("pipe");
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        /* The parent's freed heap is resident and inherited: given back
         * first, or the merger's buffers would reuse it unseen. */
        malloc_trim(0);
        flc_proc_reset_hwm(getpid()); /* VmHWM := VmRSS: the peak from here on */
        long base = (long)flc_proc_status_kb(getpid(), "VmRSS");
        flc_err_t e = {0};
        if (window != FLC_RS_WINDOW_WHOLE) { /* as flcache-fn's aggregator role runs it */
            char ev[512];
            snprintf(ev, sizeof ev, "{\"job\":\"%s\",\"round\":%u,\"model_size\":%u,"
                     "\"rule\":\"%s\",\"expected\":[\"c0\",\"c1\",\"c2\",\"c3\"%s],"
                     "\"deadline_ms\":%u,\"window_bytes\":%zu}", job, r, N, rule,
                     k > K ? ",\"c4\"" : "", deadline_ms, window);
            cJSON *event = cJSON_Parse(ev), *res = NULL;
            flc_store_cfg_t sc = {.url = fx.unix_url, .opts = {.chunk_bytes = CHUNK}};
            o.rc = flc_rs_aggregator_fn(&sc, event, &res, NULL, NULL, &e);
            o.grew_kb = (long)flc_proc_status_kb(getpid(), "VmHWM") - base;
            cJSON *pa = cJSON_GetObjectItem(res, "participants");
            cJSON *rj = cJSON_GetObjectItem(res, "rejected");
            o.participants = (size_t)cJSON_GetArraySize(pa);
            o.rejected = (size_t)cJSON_GetArraySize(rj);
            o.missing = (size_t)cJSON_GetArraySize(cJSON_GetObjectItem(res, "missing"));
            if (o.rejected)
                snprintf(o.rejected0, sizeof o.rejected0, "%s",
                         cJSON_GetArrayItem(rj, 0)->valuestring);
            cJSON_Delete(event), cJSON_Delete(res);
        } else {
            flc_store_t *s = open_store();
            flc_rs_merger_cfg_t mc = {.job = job, .round = r, .shard = 0, .num_shards = 1,
                                      .model_size = N, .expected = all, .n_expected = (size_t)k,
                                      .deadline_ms = deadline_ms, .window_bytes = window};
            flc_merge_rule_init(&mc.rule, rule, &e);
            flc_rs_report_t rep;
            o.rc = flc_rs_merger_run(s, &mc, &rep, &e);
            o.grew_kb = (long)flc_proc_status_kb(getpid(), "VmHWM") - base;
            o.participants = rep.participants.n;
            o.rejected = rep.rejected.n;
            o.missing = rep.missing.n;
            if (rep.rejected.n)
                snprintf(o.rejected0, sizeof o.rejected0, "%s", rep.rejected.items[0]);
            flc_rs_report_free(&rep);
            flc_store_close(s);
        }
        if (o.rc != 0)
            fprintf(stderr, "merger: %s\n", e.msg);
        if (write(fd[1], &o, sizeof o) != (ssize_t)sizeof o)
            _exit(1);
        _exit(0);
    }
    close(fd[1]);
    return (running_t){.pid = pid, .fd = fd[0]};
}

static outcome_t finish_merger(running_t m)
{
    outcome_t o = {.rc = -1};
    if (read(m.fd, &o, sizeof o) != (ssize_t)sizeof o)
        o.rc = -99;
    close(m.fd);
    waitpid(m.pid, NULL, 0);
    return o;
}

static outcome_t run_merger(const char *job, uint32_t r, const char *rule, size_t window)
{
    return finish_merger(start_merger(job, r, rule, window, K, 20000));
}

/* The merged shard of round r, read whole (caller frees). */
static float *merged(const char *job, uint32_t r)
{
    flc_store_t *s = open_store();
    float *v = malloc(N * sizeof *v);
    flc_shard_t sh;
    if (flc_store_get_merged(s, job, r, 0, &sh, v, N) != 0)
        flc_t_fatal("merged %s/%u: %s", job, r, flc_store_errstr(s));
    flc_shard_release(&sh);
    flc_store_close(s);
    return v;
}

/* Round 1 windowed, round 2 whole: same updates, same bits; the memory. */
static void windowed_vs_whole(const char *job, const char *rule, long limit_kb, int nan_in)
{
    push_round(job, 1, nan_in, N - 5);
    push_round(job, 2, nan_in, N - 5);
    outcome_t w = run_merger(job, 1, rule, WINDOW);
    outcome_t h = run_merger(job, 2, rule, FLC_RS_WINDOW_WHOLE);
    CHECK(w.rc == 0 && h.rc == 0, "%s: both mergers merged (windowed rc %d, whole rc %d)", rule,
          w.rc, h.rc);
    printf("    # %s: peak RSS grew %ld KiB windowed, %ld KiB whole (shard %u KiB)\n", rule,
           w.grew_kb, h.grew_kb, N * 4 / 1024);
    /* A sanitizer build's peaks are not the code's: ASan keeps freed blocks
     * in quarantine and its shadow memory is resident. */
    if (limit_kb > 0 && flc_pool_sanitized())
        printf("    # %s: memory bounds not checked in a sanitizer build\n", rule);
    if (limit_kb > 0 && !flc_pool_sanitized()) {
        EXPECT(w.grew_kb > 0 && w.grew_kb <= limit_kb, "%s windowed: peak RSS grew %ld KiB, at "
               "most %ld (shard %u KiB)", rule, w.grew_kb, limit_kb, N * 4 / 1024);
        EXPECT(h.grew_kb > w.grew_kb, "%s: the whole path grew more (%ld KiB)", rule, h.grew_kb);
    }
    EXPECT(w.participants == h.participants && w.rejected == h.rejected,
           "%s: %zu merged, %zu rejected both ways", rule, w.participants, w.rejected);
    EXPECT(strcmp(w.rejected0, h.rejected0) == 0, "%s: the same rejection ('%s')", rule,
           w.rejected0);
    if (nan_in >= 0) {
        char want[64];
        snprintf(want, sizeof want, "NaN at element %u", N - 5);
        EXPECT(strstr(w.rejected0, want) != NULL, "the NaN is named: '%s'", w.rejected0);
    }
    float *a = merged(job, 1), *b = merged(job, 2);
    EXPECT(memcmp(a, b, N * sizeof *a) == 0, "%s: windowed and whole merged shards are "
           "bit-identical (%u floats)", rule, N);
    free(a), free(b);
}

TEST(fedavg_memory_bounded_same_bits)
{
    windowed_vs_whole("mm1", "fedavg", 2 * N * 4 / 1024 + SLACK_KB, -1);
}

TEST(median_memory_bounded_same_bits)
{
    /* Its updates are read window by window when the shard closes
     * (aggregator/rs_defer.c): K windows, one written, not K shards. */
    windowed_vs_whole("mm2", "median", (K + 2) * WINDOW / 1024 + SLACK_KB, -1);
}

TEST(median_nan_in_late_window_merged_again)
{
    windowed_vs_whole("mm4", "median", 0, 2);
}

/* The trimmed mean reads at close the same way (its weights from the
 * headers, as a whole read takes them). */
TEST(trimmed_mean_memory_bounded_same_bits)
{
    windowed_vs_whole("mm6", "trimmed-mean", (K + 2) * WINDOW / 1024 + SLACK_KB, -1);
}

/* Rewrites client c's update of round r with the values of seed (a
 * plain put: no arrival is announced). */
static void rewrite(flc_store_t *s, const char *job, uint32_t r, int c, unsigned seed)
{
    float *u = malloc(N * sizeof *u);
    flc_t_fill(u, N, seed);
    flc_shard_t sh = {.round = r, .shard = 0, .num_shards = 1, .count = N, .model_size = N,
                      .weight = 7, .num_samples = 7, .update_norm = 1.0, .values = u};
    snprintf(sh.job, sizeof sh.job, "%s", job);
    snprintf(sh.client, sizeof sh.client, "%s", names[c]);
    if (flc_store_put_update(s, &sh) != 0)
        flc_t_fatal("rewrite %s: %s", names[c], flc_store_errstr(s));
    free(u);
}

/* Read when the shard closes, an update is read as it is then: c1
 * rewritten after its arrival is merged as rewritten, c3 deleted after
 * its arrival is rejected saying it was gone; the result is bit for bit
 * the whole path's over c0, c1 as rewritten and c2. */
TEST(median_reads_updates_as_they_are_at_close)
{
    push_round("mm5", 1, -1, 0);
    running_t run = start_merger("mm5", 1, "median", WINDOW, K + 1, 1500);
    flc_sleep_ms(500); /* it took c0-c3 (headers only) and waits for c4 */
    flc_store_t *s = open_store();
    rewrite(s, "mm5", 1, 1, 555);
    CHECK(flc_store_del_update(s, "mm5", 1, 0, "c3") == 0, "c3's update deleted after its "
          "arrival: %s", flc_store_errstr(s));
    outcome_t w = finish_merger(run);
    CHECK(w.rc == 0, "the merger merged (rc %d)", w.rc);
    EXPECT(w.participants == 3 && w.rejected == 1 && w.missing == 1, "3 merged, 1 rejected, 1 "
           "missing (%zu, %zu, %zu)", w.participants, w.rejected, w.missing);
    EXPECT(strstr(w.rejected0, "c3: its update was gone when the shard was merged") == w.rejected0,
           "c3 rejected as gone: '%s'", w.rejected0);
    /* The same round through the whole path, c1 rewritten before it starts. */
    push_round("mm5", 2, -1, 0);
    rewrite(s, "mm5", 2, 1, 555);
    const char *three[] = {"c0", "c1", "c2"};
    flc_rs_merger_cfg_t mc = {.job = "mm5", .round = 2, .shard = 0, .num_shards = 1,
                              .model_size = N, .expected = three, .n_expected = 3,
                              .deadline_ms = 20000, .window_bytes = FLC_RS_WINDOW_WHOLE};
    flc_err_t e = {0};
    flc_merge_rule_init(&mc.rule, "median", &e);
    flc_rs_report_t rep;
    CHECK(flc_rs_merger_run(s, &mc, &rep, &e) == 0, "the whole path merged c0, c1', c2: %s",
          e.msg);
    flc_rs_report_free(&rep);
    flc_store_close(s);
    float *a = merged("mm5", 1), *b = merged("mm5", 2);
    EXPECT(memcmp(a, b, N * sizeof *a) == 0, "merged as the updates were at close: bit for bit "
           "the whole path's over c0, c1 as rewritten, c2 (%u floats)", N);
    free(a), free(b);
}

TEST(nan_in_late_window_taken_back)
{
    windowed_vs_whole("mm3", "fedavg", 0, 2);
}

typedef struct src {
    const float *v;
} src_t;

static int fill_from(void *user, uint64_t first, size_t count, float *dst)
{
    memcpy(dst, ((src_t *)user)->v + first, count * sizeof *dst);
    return 0;
}

/* Every field of the merged shard's hash ("h", then "0".."n-1"), each
 * with its name, concatenated (caller frees). */
static char *dump(flc_store_t *s, const char *job, size_t *len)
{
    redisReply *r;
    if (flc_store_commandf(s, &r, "KEYS fl:{%s/*:r:1:agg", job) != 0 || r->elements != 1)
        flc_t_fatal("the merged shard's key of %s", job);
    char key[256];
    snprintf(key, sizeof key, "%s", r->element[0]->str);
    freeReplyObject(r);
    if (flc_store_commandf(s, &r, "HLEN %s", key) != 0 || r->integer < 2)
        flc_t_fatal("HLEN %s", key);
    long long fields = r->integer;
    freeReplyObject(r);
    size_t cap = 1 << 20, n = 0;
    char *out = malloc(cap);
    for (long long i = -1; i < fields - 1; i++) {
        char f[24];
        snprintf(f, sizeof f, i < 0 ? "h" : "%lld", i);
        if (flc_store_commandf(s, &r, "HGET %s %s", key, f) != 0 ||
            r->type != REDIS_REPLY_STRING)
            flc_t_fatal("HGET %s %s", key, f);
        if (n + r->len + 32 > cap)
            out = realloc(out, cap = 2 * (n + r->len + 32));
        n += (size_t)sprintf(out + n, "%s=", f);
        memcpy(out + n, r->str, r->len), n += r->len;
        freeReplyObject(r);
    }
    *len = n;
    return out;
}

TEST(stream_writes_the_bytes_put_writes)
{
    flc_store_t *s = open_store();
    const uint64_t n = 100003; /* 400 KB: 25 chunks, fields straddle windows */
    float *v = malloc(n * sizeof *v);
    flc_t_fill(v, n, 7);
    flc_shard_t sh = {.round = 1, .shard = 0, .num_shards = 1, .count = n, .model_size = n,
                      .weight = 3, .num_samples = 3, .created_ms = 1234, .values = v};
    snprintf(sh.job, sizeof sh.job, "mm4");
    CHECK(flc_store_put_merged(s, &sh) == 0, "the merged shard put whole");
    size_t l1, l2;
    char *a = dump(s, "mm4", &l1);
    src_t src = {v};
    flc_store_stream_t how = {.fill = fill_from, .user = &src, .window = 5000};
    CHECK(flc_store_put_merged_stream(s, &sh, &how) == 0, "the same shard streamed in windows "
          "of 5000 floats: %s", flc_store_errstr(s));
    char *b = dump(s, "mm4", &l2);
    EXPECT(l1 == l2 && memcmp(a, b, l1) == 0, "every field (chunks and head) is the same: %zu "
           "bytes", l1);
    float *back = malloc(n * sizeof *back);
    flc_shard_t got;
    CHECK(flc_store_get_merged(s, "mm4", 1, 0, &got, back, n) == 0, "read back whole: %s",
          flc_store_errstr(s));
    EXPECT(got.count == n && memcmp(back, v, n * sizeof *v) == 0,
           "read back bit-identical (%llu floats)", (unsigned long long)got.count);
    flc_shard_release(&got);
    free(a), free(b), free(v), free(back);
    flc_store_close(s);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(fedavg_memory_bounded_same_bits),
                 TEST_ENTRY(median_memory_bounded_same_bits),
                 TEST_ENTRY(nan_in_late_window_taken_back),
                 TEST_ENTRY(median_nan_in_late_window_merged_again),
                 TEST_ENTRY(trimmed_mean_memory_bounded_same_bits),
                 TEST_ENTRY(median_reads_updates_as_they_are_at_close),
                 TEST_ENTRY(stream_writes_the_bytes_put_writes))
