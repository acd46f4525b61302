/* A query worker's memory follows its budget, not the number of updates
 * (issue 14 goal 5), and the answers do not change with the budget, on a
 * real redis-server:
 *   - blocks_equal_whole_rows: one shard's Gram partial read in windows of
 *     4096 coordinates (a 1-byte budget: the floor), of a few windows and
 *     whole is bit for bit the partial of whole rows (the kernel before
 *     blocks), with a float32 hash, an fp16 update (read whole), an update
 *     with a NaN past the first windows (its row and column zero, the client
 *     flagged) and a client that did not write the shard;
 *   - answers_unchanged: norms and similarity of a round on 3 shards,
 *     merged by real mergers, are the same numbers with a tiny budget and
 *     a large one;
 *   - peak_follows_budget_not_n: `flcache query norms --no-cache` as a
 *     process, its peak RSS from wait4: with a 4 MiB budget (half an 8 MB
 *     update) 16 updates peak within one update of 4 updates, and with a
 *     1 GiB budget too (windows are at most 8 MiB); fp16 updates, which are
 *     read whole, grow the peak by about 12 updates (so the measurement
 *     sees N when the code holds N); the answers are equal. */
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "aggregator/query.h"
#include "aggregator/reduce_scatter.h"
#include "aggregator/tracker.h"
#include "cache/encode.h"
#include "cache/store.h"
#include "cache/store_ops.h"
#include "runtime/pool.h"
#include "runtime/pool_proc.h"
#include "tests/harness.h"

#define CHUNK 16384 /* so a 200 KB shard is a hash of 13 chunks */

static flc_fixture_t fx;
static const flc_store_opts_t g_opts = {.chunk_bytes = CHUNK};

static void setup(void)
{
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

static flc_store_t *open_store(const flc_store_opts_t *o)
{
    return flc_fixture_open(&fx, o);
}

/* ---- one shard, by hand ---------------------------------------------------- */

#define C1 50000 /* floats per shard */
#define N1 8

static void put1(flc_store_t *s, const char *client, uint32_t shard, const float *v, int enc)
{
    flc_shard_t sh = {.round = 1, .shard = shard, .num_shards = 2, .offset = shard * C1,
                      .count = C1, .model_size = 2 * C1, .weight = 1, .num_samples = 1,
                      .values = (float *)v};
    snprintf(sh.job, sizeof sh.job, "qm");
    snprintf(sh.client, sizeof sh.client, "%s", client ? client : "");
    uint16_t *half = NULL;
    if (enc) {
        half = malloc(C1 * sizeof *half);
        flc_enc_t en = {.kind = FLC_ENC_FP16};
        uint64_t nnz = 0;
        flc_err_t e = {0};
        if (flc_enc_encode(&en, v, C1, half, &nnz, NULL, &e) != 0)
            flc_t_fatal("fp16: %s", e.msg);
        sh.encoding = FLC_ENC_FP16;
        sh.values = (float *)(void *)half;
    }
    int rc = client ? flc_store_put_update(s, &sh) : flc_store_put_merged(s, &sh);
    if (rc != 0)
        flc_t_fatal("put %s shard %u: %s", client ? client : "merged", shard, flc_store_errstr(s));
    free(half);
}

/* The partial as computed before blocks: every row read whole, a missing
 * one or one with a NaN zeroed, then the kernel over whole rows. */
static void reference(flc_store_t *s, char **names, uint32_t shard, double *P,
                      unsigned char *bad)
{
    float *M = calloc((size_t)(N1 + 1) * C1, sizeof *M);
    for (int i = 0; i <= N1; i++) {
        flc_shard_t sh = {0};
        float *row = M + (size_t)i * C1;
        int rc = i < N1 ? flc_store_get_update(s, "qm", 1, shard, names[i], &sh, row, C1)
                        : flc_store_get_merged(s, "qm", 1, shard, &sh, row, C1);
        if (rc == 0 && sh.values != row)
            flc_shard_release(&sh);
        if (rc != 0)
            memset(row, 0, C1 * sizeof *row);
        bad[i] = rc == 0 && flc_find_nonfinite(row, C1) >= 0;
        if (bad[i])
            memset(row, 0, C1 * sizeof *row);
    }
    flc_query_gram_of_rows(M, N1 + 1, C1, P);
    free(M);
}

TEST(blocks_equal_whole_rows)
{
    flc_store_t *s = open_store(&g_opts);
    flc_store_job_shards(s, "qm", 2);
    float *v = malloc(C1 * sizeof *v);
    char *names[N1];
    for (int i = 0; i < N1; i++) {
        names[i] = malloc(8);
        snprintf(names[i], 8, "c%d", i);
        for (uint32_t k = 0; k < 2; k++) {
            if (i == 7 && k == 1)
                continue; /* c7 did not write shard 1 */
            flc_t_fill(v, C1, 100 * i + k);
            if (i == 6 && k == 0)
                v[30000] = NAN; /* found in the 8th window of 4096 */
            put1(s, names[i], k, v, i == 5);
        }
    }
    for (uint32_t k = 0; k < 2; k++) {
        flc_t_fill(v, C1, 7 + k);
        put1(s, NULL, k, v, 0);
    }
    const size_t m = N1 + 1;
    const size_t budgets[] = {1, 400 * 1024, (size_t)1 << 30};
    const char *what[] = {"1 byte (windows of 4096)", "400 KiB (a few windows)",
                          "1 GiB (whole rows)"};
    double *P = malloc(m * m * sizeof *P);
    unsigned char ref_bad[N1 + 1];
    for (uint32_t k = 0; k < 2; k++) {
        reference(s, names, k, P, ref_bad);
        uint64_t read0 = 0;
        for (size_t b = 0; b < sizeof budgets / sizeof *budgets; b++) {
            flc_query_gram_t g = {.n = N1, .clients = names, .mem_budget = budgets[b]};
            g.G = calloc(m * m, sizeof *g.G);
            g.bad = calloc(m, 1);
            flc_err_t e = {0};
            int rc = flc_query_gram_shard(s, "qm", 1, k, 0, &g, &e);
            CHECK(rc == 0, "shard %u with a budget of %s: computed (%s)", k, what[b],
                  rc ? e.msg : "ok");
            EXPECT(memcmp(g.G, P, m * m * sizeof *P) == 0,
                   "shard %u, budget %s: the %zux%zu partial equals whole rows' bit for bit "
                   "(G[0][1] %.17g, whole %.17g)", k, what[b], m, m, g.G[1], P[1]);
            EXPECT(memcmp(g.bad, ref_bad, N1) == 0 && g.bad[6] == (k == 0),
                   "shard %u: client c6 flagged for its NaN only where it has one (%d)", k,
                   g.bad[6]);
            if (b == 0)
                read0 = g.bytes_read;
            EXPECT(g.bytes_read == read0 && read0 == (uint64_t)(k == 0 ? 9 : 8) * C1 * 4,
                   "shard %u: %llu bytes read, the rows that exist, whatever the budget", k,
                   (unsigned long long)g.bytes_read);
            g.n = 0, g.clients = NULL; /* the names are this test's */
            flc_query_gram_free(&g);
        }
    }
    for (int i = 0; i < N1; i++)
        free(names[i]);
    free(P);
    free(v);
    flc_store_close(s);
}

/* ---- rounds merged by real mergers ----------------------------------------- */

typedef struct margs {
    const char *job;
    uint32_t shard, S;
    uint64_t dim;
    const char *const *names;
    size_t n;
    int rc;
} margs_t;

static void *merger(void *p)
{
    margs_t *a = p;
    flc_err_t e = {0};
    flc_store_t *s = open_store(NULL);
    flc_rs_merger_cfg_t c = {.job = a->job, .round = 1, .shard = a->shard, .num_shards = a->S,
                             .model_size = a->dim, .expected = a->names, .n_expected = a->n,
                             .deadline_ms = 60000, .readers = 1};
    flc_merge_rule_init(&c.rule, "fedavg", NULL);
    flc_rs_report_t rep;
    a->rc = flc_rs_merger_run(s, &c, &rep, &e);
    if (a->rc)
        printf("# merger: %s\n", e.msg);
    flc_rs_report_free(&rep);
    flc_store_close(s);
    return NULL;
}

/* Round 1 of job: n clients' updates of dim floats on S shards, merged. */
static void store_round(const char *job, size_t n, uint32_t S, uint64_t dim,
                        const flc_store_opts_t *o)
{
    char(*nm)[16] = calloc(n, sizeof *nm);
    const char **names = calloc(n, sizeof *names);
    for (size_t i = 0; i < n; i++) {
        snprintf(nm[i], sizeof nm[i], "c%02zu", i);
        names[i] = nm[i];
    }
    pthread_t th[8];
    margs_t ma[8];
    for (uint32_t k = 0; k < S; k++) {
        ma[k] = (margs_t){job, k, S, dim, names, n, 0};
        pthread_create(&th[k], NULL, merger, &ma[k]);
    }
    flc_store_t *s = open_store(o);
    float *u = malloc(dim * sizeof *u);
    flc_err_t e = {0};
    for (size_t i = 0; i < n; i++) {
        flc_t_fill(u, dim, 1000 + (unsigned)i);
        flc_rs_push_cfg_t pc = {.job = job, .round = 1, .client = names[i], .num_shards = S,
                                .model_size = dim, .num_samples = 10 + i};
        if (flc_rs_push(s, &pc, u, &e) != 0)
            flc_t_fatal("push %s: %s", names[i], e.msg);
    }
    for (uint32_t k = 0; k < S; k++) {
        pthread_join(th[k], NULL);
        if (ma[k].rc != 0)
            flc_t_fatal("the merger of shard %u of %s failed", k, job);
    }
    free(u);
    flc_store_close(s);
    free(names);
    free(nm);
}

static Flcache__QueryAnswer *ask(flc_store_t *s, flc_query_kind_t kind, const char *job,
                                 size_t budget)
{
    flc_query_req_t q = {.kind = kind, .job = job, .round_from = 1, .round_to = 1,
                         .url = fx.unix_url, .store_opts = &g_opts, .threads = 1,
                         .no_cache = 1, .mem_budget = budget};
    Flcache__QueryAnswer *a = NULL;
    flc_err_t e = {0};
    if (flc_query_run(s, &q, &a, &e) != 0)
        flc_t_fatal("%s of %s: %s", flc_query_kind_name(kind), job, e.msg);
    return a;
}

/* Every number of a and b equal (same rows, same order). */
static int same_answer(const Flcache__QueryAnswer *a, const Flcache__QueryAnswer *b)
{
    if (a->n_rows != b->n_rows || a->num_numeric != b->num_numeric)
        return 0;
    for (size_t r = 0; r < a->n_rows; r++)
        if (strcmp(a->rows[r]->key, b->rows[r]->key) != 0 ||
            memcmp(a->rows[r]->values, b->rows[r]->values,
                   a->num_numeric * sizeof(double)) != 0)
            return 0;
    return 1;
}

TEST(answers_unchanged)
{
    store_round("qa", 6, 3, 150000, &g_opts); /* shards of 50,000 floats: hashes */
    flc_store_t *s = open_store(&g_opts);
    const flc_query_kind_t kinds[] = {FLC_Q_NORMS, FLC_Q_SIMILARITY};
    for (size_t k = 0; k < 2; k++) {
        Flcache__QueryAnswer *tiny = ask(s, kinds[k], "qa", 1);
        Flcache__QueryAnswer *big = ask(s, kinds[k], "qa", (size_t)1 << 30);
        EXPECT(tiny->n_rows == 6 && same_answer(tiny, big),
               "%s of 6 clients on 3 shards: every number the same with a 1-byte budget "
               "(windows of 4096 floats) and a 1 GiB one (first row %s: %.17g / %.17g)",
               flc_query_kind_name(kinds[k]), tiny->rows[0]->key, tiny->rows[0]->values[0],
               big->rows[0]->values[0]);
        EXPECT(tiny->bytes_read == big->bytes_read && tiny->bytes_read == 7 * 150000 * 4,
               "both read the 6 updates and the aggregate once: %llu bytes",
               (unsigned long long)tiny->bytes_read);
        flcache__query_answer__free_unpacked(tiny, NULL);
        flcache__query_answer__free_unpacked(big, NULL);
    }
    flc_store_close(s);
}

/* ---- the CLI as a process -------------------------------------------------- */

/* Round 1 of job written as a driver and merger would, without merging:
 * n clients' fp16 updates of dim floats on one shard (stored encoded: the
 * Gram reads them whole), a float32 merged shard, the tracker entry. */
static void store_round_fp16(const char *job, size_t n, uint64_t dim)
{
    flc_store_t *s = open_store(NULL);
    char(*nm)[16] = calloc(n, sizeof *nm);
    const char **names = calloc(n, sizeof *names);
    for (size_t i = 0; i < n; i++) {
        snprintf(nm[i], sizeof nm[i], "c%02zu", i);
        names[i] = nm[i];
    }
    if (flc_store_round_begin(s, job, 1, 1, 0, names, n) != 0)
        flc_t_fatal("open round of %s: %s", job, flc_store_errstr(s));
    float *v = malloc(dim * sizeof *v);
    uint16_t *half = malloc(dim * sizeof *half);
    flc_shard_t sh = {.round = 1, .shard = 0, .num_shards = 1, .count = dim, .model_size = dim,
                      .weight = 1, .num_samples = 1};
    snprintf(sh.job, sizeof sh.job, "%s", job);
    flc_err_t e = {0};
    for (size_t i = 0; i < n; i++) {
        flc_t_fill(v, dim, 500 + (unsigned)i);
        flc_enc_t en = {.kind = FLC_ENC_FP16};
        uint64_t nnz = 0;
        if (flc_enc_encode(&en, v, dim, half, &nnz, NULL, &e) != 0)
            flc_t_fatal("fp16: %s", e.msg);
        sh.encoding = FLC_ENC_FP16;
        sh.values = (float *)(void *)half;
        snprintf(sh.client, sizeof sh.client, "%s", names[i]);
        if (flc_store_put_update(s, &sh) != 0)
            flc_t_fatal("put %s: %s", names[i], flc_store_errstr(s));
    }
    flc_t_fill(v, dim, 499);
    sh.encoding = FLC_ENC_F32;
    sh.values = v;
    sh.client[0] = '\0';
    if (flc_store_put_merged(s, &sh) != 0 || flc_track_put(s, job, 1, 0, "hot") != 0)
        flc_t_fatal("merged shard of %s: %s", job, flc_store_errstr(s));
    free(v);
    free(half);
    free(names);
    free(nm);
    flc_store_close(s);
}

#define DIM3 2000000 /* 8 MB updates, one shard */

/* Runs `flcache query norms` on job with budget MiB; its peak RSS in KiB
 * (wait4), its JSON output into out. Returns the exit status. */
static int query_process(const char *job, unsigned budget_mb, long *peak_kb, char *out,
                         size_t cap)
{
    char bin[1024], file[] = "/tmp/flc-qmem-XXXXXX", mb[16];
    snprintf(bin, sizeof bin, "%s/flcache", flc_t_build_dir());
    snprintf(mb, sizeof mb, "%u", budget_mb);
    int fd = mkstemp(file);
    if (fd < 0)
        flc_t_fatal("mkstemp: cannot make a file for the answer");
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, 1);
        int dn = open("/dev/null", O_WRONLY);
        dup2(dn, 2);
        setenv("FLCACHE_REDIS", fx.unix_url, 1);
        unsetenv("FLCACHE_NODES");
        execl(bin, bin, "query", "norms", "--job", job, "--round", "1", "--no-cache",
              "--threads", "1", "--memory-budget", mb, "--json", (char *)NULL);
        _exit(127);
    }
    int st = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    wait4(pid, &st, 0, &ru);
    *peak_kb = ru.ru_maxrss;
    ssize_t got = pread(fd, out, cap - 1, 0);
    out[got > 0 ? got : 0] = '\0';
    close(fd);
    unlink(file);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The "rows" of a JSON answer, printed again (cJSON prints doubles exactly). */
static char *rows_of(const char *json)
{
    cJSON *j = cJSON_Parse(json);
    char *t = cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "rows"));
    cJSON_Delete(j);
    return t;
}

TEST(peak_follows_budget_not_n)
{
    /* Stored by a child that exits: a forked process starts with its
     * parent's resident pages, and exec keeps that as its peak (the
     * kernel's maxrss), so the query processes are forked from a small
     * one. */
    pid_t pid = fork();
    if (pid == 0) {
        store_round("m4", 4, 1, DIM3, NULL);
        store_round("m16", 16, 1, DIM3, NULL);
        store_round_fp16("h4", 4, DIM3);
        store_round_fp16("h16", 16, DIM3);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "rounds of 4 and 16 updates of %.0f MB "
          "stored by a child process", DIM3 * 4 / 1e6);
    long mine = (long)flc_proc_status_kb(getpid(), "VmRSS");
    CHECK(mine > 0 && mine < 16 * 1024, "this process, which forks the queries, holds %.1f "
          "MiB (a floor under their measured peaks)", mine / 1024.0);
    /* m: float32, read by window; h: fp16, which cannot be read by window
     * and is held whole, as every update was before blocks: there the
     * peak must grow with N, or the measurement could not see it. */
    const char *jobs[4] = {"m4", "m16", "h4", "h16"};
    const unsigned budgets[2] = {4, 1024}; /* half an update; all of them */
    long peak[4][2];
    char *rows[4][2];
    static char out[1 << 16];
    for (int b = 0; b < 2; b++)
        for (int j = 0; j < 4; j++) {
            if (j >= 2 && b == 1)
                continue;
            int rc = query_process(jobs[j], budgets[b], &peak[j][b], out, sizeof out);
            rows[j][b] = rows_of(out);
            CHECK(rc == 0 && rows[j][b] != NULL, "flcache query norms --job %s --no-cache "
                  "--memory-budget %u: exit %d, peak RSS %.1f MiB", jobs[j], budgets[b], rc,
                  peak[j][b] / 1024.0);
        }
    double update_mb = DIM3 * 4.0 / (1 << 20);
    double grow_small = (peak[1][0] - peak[0][0]) / 1024.0;
    double grow_big = (peak[1][1] - peak[0][1]) / 1024.0;
    double grow_fp16 = (peak[3][0] - peak[2][0]) / 1024.0;
    /* A sanitizer build's peaks are not the code's: ASan keeps freed blocks
     * in quarantine and its shadow memory is resident. */
    if (flc_pool_sanitized()) {
        printf("    # peaks not checked in a sanitizer build (%.1f, %.1f MiB grown)\n",
               grow_small, grow_big);
    } else {
        EXPECT(grow_small < update_mb, "with a 4 MiB budget, 16 updates peak %.1f MiB above 4 "
               "updates (%.1f vs %.1f MiB): less than one %.1f MiB update", grow_small,
               peak[1][0] / 1024.0, peak[0][0] / 1024.0, update_mb);
        EXPECT(grow_big < update_mb, "with a 1 GiB budget too (%.1f MiB more): a window is at "
               "most 8 MiB of rows, so even a large budget holds no update whole", grow_big);
        EXPECT(grow_fp16 > 6 * update_mb, "fp16 updates, read whole, grow the peak by %.1f MiB "
               "from 4 to 16 (12 decoded updates are %.1f MiB): the measurement sees N where the "
               "code holds N", grow_fp16, 12 * update_mb);
    }
    for (int j = 0; j < 2; j++)
        EXPECT(strcmp(rows[j][0], rows[j][1]) == 0,
               "job %s: the answer is the same with both budgets", jobs[j]);
    for (int j = 0; j < 4; j++)
        for (int b = 0; b < 2; b++)
            if (j < 2 || b == 0)
                free(rows[j][b]);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(blocks_equal_whole_rows),
                 TEST_ENTRY(answers_unchanged), TEST_ENTRY(peak_follows_budget_not_n))
