/* Gram partials next to the data: each shard's worker reads the round's
 * client updates of its shard (and the merged shard) from its own node, and
 * adds their pairwise dot products into a small (N+1)x(N+1) matrix. Only
 * these matrices leave the node; they are cached beside the shard
 * (fl:{T}:r:<r>:gram of the shard's tag T) so later queries of the round read N^2 numbers, not N
 * updates.
 *
 * Where the workers run: with a place callback (flc_query_gram_placed,
 * issue 12 point 4) each worker thread first enters the node that owns its
 * shards (query_place.c groups them by node) and reads them there; without
 * one they run in the caller's place and read over the network, which is
 * also the central baseline bench/cluster compares against.
 *
 * Memory: the query's budget (flc_query_gram_run's mem_budget) split among
 * its workers; each reads its shards in windows of coordinates that fit
 * its share (query_gram_rows.c), whatever N and the shard's size. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/blas_workers.h"
#include "aggregator/query_internal.h"
#include "base/bigbuf.h"
#include "base/clock.h"
#include "base/log.h"
#include "cache/store_ops.h"

int flc_query_gram_of_rows(const float *M, size_t m, size_t cols, double *G)
{
    float *Gb = malloc((m ? m * m : 1) * sizeof *Gb);
    if (Gb == NULL)
        return FLC_ENOMEM;
    memset(G, 0, m * m * sizeof *G);
    flc_query_gram_add_blocks(M, m, cols, cols, Gb, G, NULL);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < i; j++)
            G[i * m + j] = G[j * m + i];
    free(Gb);
    return FLC_OK;
}

void flc_query_gram_free(flc_query_gram_t *g)
{
    if (g == NULL)
        return;
    for (size_t i = 0; i < g->n; i++)
        free(g->clients[i]);
    free(g->clients);
    free(g->G);
    free(g->nodes);
    free(g->bad);
    flc_big_free(g->scratch, g->scratch_cap * sizeof *g->scratch);
    memset(g, 0, sizeof *g);
}

static uint64_t names_hash(char *const *names, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        for (const char *p = names[i];; p++) {
            h = (h ^ (unsigned char)*p) * 1099511628211ull;
            if (*p == '\0')
                break;
        }
    return h;
}

/* A cached partial is
 *   "FLG2" | u32 n | u64 hash of the client names | u64 stamp[n] | u8 bad[n]
 *   | double P[(n+1)^2]
 * and is used only when the names and every update's stamp
 * (flc_store_update_stamps: length and header, so a rewritten update,
 * e.g. a repaired one, has a new stamp) are those of now (issue 13 finding
 * 5). A partial of before (no stamps) never fits and is recomputed. */
#define GRAM_MAGIC "FLG2"

static size_t cache_len(size_t n)
{
    return 16 + n * 9 + (n + 1) * (n + 1) * sizeof(double);
}

/* Adds a cached partial into g; FLC_ENOTFOUND when there is none that fits. */
static int cache_read(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                      const uint64_t *stamps, flc_query_gram_t *g)
{
    char *blob;
    size_t len;
    if (flc_store_gram_get(s, job, round, shard, &blob, &len) != FLC_OK)
        return FLC_ENOTFOUND;
    size_t n = g->n, m = n + 1, want = cache_len(n);
    int rc = FLC_ENOTFOUND;
    if (len == want && memcmp(blob, GRAM_MAGIC, 4) == 0) {
        uint32_t n32;
        uint64_t h;
        memcpy(&n32, blob + 4, 4);
        memcpy(&h, blob + 8, 8);
        int fits = n32 == n && h == names_hash(g->clients, n) &&
                   memcmp(blob + 16, stamps, n * 8) == 0;
        const char *bad = blob + 16 + n * 8, *P = bad + n;
        for (size_t i = 0; fits && i < m * m; i++) {
            double v;
            memcpy(&v, P + i * sizeof v, sizeof v);
            g->G[i] += v;
        }
        for (size_t i = 0; fits && g->bad && i < n; i++)
            g->bad[i] |= (unsigned char)bad[i];
        if (fits) {
            g->bytes_moved += want;
            rc = FLC_OK;
        }
    }
    free(blob);
    return rc;
}

static void cache_write(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                        const flc_query_gram_t *g, const uint64_t *stamps,
                        const unsigned char *bad, const double *P)
{
    size_t n = g->n, m = n + 1, len = cache_len(n);
    char *buf = malloc(len);
    if (buf == NULL)
        return; /* a cache: skipping it only costs time */
    uint32_t n32 = (uint32_t)n;
    uint64_t h = names_hash(g->clients, n);
    memcpy(buf, GRAM_MAGIC, 4);
    memcpy(buf + 4, &n32, 4);
    memcpy(buf + 8, &h, 8);
    memcpy(buf + 16, stamps, n * 8);
    memcpy(buf + 16 + n * 8, bad, n);
    memcpy(buf + 16 + n * 9, P, m * m * sizeof(double));
    /* Best effort, as above; a read-only user (the query role of
     * docs/architecture.md) is refused here and computes every time. */
    flc_store_gram_put(s, job, round, shard, buf, len);
    free(buf);
}

static int gram_compute(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                        flc_query_gram_t *g, unsigned char *bad, flc_err_t *e,
                        const uint64_t *stamps);

int flc_query_gram_shard(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                         int use_cache, flc_query_gram_t *g, flc_err_t *e)
{
    size_t m = g->n + 1;
    /* The stamps are taken before the updates are read: an update that
     * changes in between leaves a partial that no longer fits (recomputed
     * next time), never one that fits stale values. */
    uint64_t *stamps = use_cache ? calloc(m, sizeof *stamps) : NULL;
    unsigned char *bad = calloc(m, 1); /* this shard's non-finite rows */
    if (bad == NULL || (use_cache && stamps == NULL)) {
        free(stamps), free(bad);
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    }
    uint64_t t0 = flc_now_ns();
    if (use_cache && flc_store_update_stamps(s, job, round, shard, g->clients, g->n,
                                             stamps) != FLC_OK) {
        free(stamps); /* no stamps, no cache: compute */
        stamps = NULL;
        use_cache = 0;
    }
    uint64_t t1 = flc_now_ns();
    if (use_cache && cache_read(s, job, round, shard, stamps, g) == FLC_OK) {
        FLC_DEBUG("query: shard %u of round %u of job %s: %zu stamps %.2f ms, cached partial "
                  "%.2f ms", shard, round, job, g->n, (double)(t1 - t0) / 1e6,
                  (double)(flc_now_ns() - t1) / 1e6);
        free(stamps), free(bad);
        return FLC_OK;
    }
    int rc = gram_compute(s, job, round, shard, g, bad, e, use_cache ? stamps : NULL);
    free(stamps), free(bad);
    return rc;
}

/* Computes one shard's partial into g (and the cache when stamps), in
 * windows of coordinates within g->mem_budget (query_gram_rows.c). A row
 * with a NaN or Inf is left zero and its client marked in bad and g->bad:
 * one poisoned update must not turn every dot product into NaN. */
static int gram_compute(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                        flc_query_gram_t *g, unsigned char *bad, flc_err_t *e,
                        const uint64_t *stamps)
{
    size_t m = g->n + 1;
    double *P = calloc(m * m, sizeof *P);
    if (P == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory for a %zux%zu Gram partial", m, m);
    int rc = flc_query_gram_compute(s, job, round, shard, g, P, bad, e);
    if (rc == FLC_OK) {
        for (size_t i = 0; i < m * m; i++)
            g->G[i] += P[i];
        g->bytes_moved += m * m * sizeof(double);
        for (size_t i = 0; g->bad && i < g->n; i++)
            g->bad[i] |= bad[i];
        if (stamps != NULL)
            cache_write(s, job, round, shard, g, stamps, bad, P);
    }
    free(P);
    return rc;
}

typedef struct gram_job {
    const char *url, *job;
    const flc_store_opts_t *opts; /* of every connection a worker opens */
    const flc_place_t *place;     /* with plan.addr set: how a worker gets next to a node */
    uint32_t round;
    const flc_track_where_t *where; /* per shard: which node */
    char (*served)[300];            /* per shard: the node that served it (its owner then) */
    flc_query_plan_t plan;          /* shards by node; under lock */
    int use_cache;
    int qclass;          /* the caller's query class, for the workers' reads */
    size_t budget;       /* bytes of rows per worker */
    pthread_mutex_t lock;
    flc_query_gram_t *g; /* the sum, under lock */
    flc_err_t err;
    int rc;
} gram_job_t;

/* Opens the worker's store at url, tagged with the caller's query class. */
/* One shard worker: takes shards off the plan until none is left, each
 * over the store flc_query_worker_store gives it (next to the group's node
 * when placed, else the caller's own URL). */
static void *gram_worker(void *p)
{
    gram_job_t *j = p;
    flc_err_t e = {0};
    flc_store_opts_t opts = {0}; /* this thread's: enter() fills the local node */
    if (j->opts != NULL)
        opts = *j->opts;
    flc_store_t *s = NULL;
    flc_url_t caller_ep = {0}; /* the caller's server */
    flc_query_gram_t mine = {.n = j->g->n, .clients = j->g->clients, .mem_budget = j->budget};
    size_t m = mine.n + 1;
    mine.G = calloc(m * m, sizeof *mine.G);
    mine.bad = calloc(m, 1);
    int rc = mine.G == NULL || mine.bad == NULL ? flc_err_set(&e, FLC_ENOMEM, "out of memory")
                                                : flc_url_parse(j->url, &caller_ep, &e);
    long grp = -1;
    while (rc == FLC_OK) {
        pthread_mutex_lock(&j->lock);
        long prev = grp;
        long k = j->rc == FLC_OK ? flc_query_plan_take(&j->plan, &grp) : -1;
        pthread_mutex_unlock(&j->lock);
        if (k < 0)
            break;
        const flc_track_where_t *w = &j->where[k];
        rc = flc_query_worker_store(j->place, &j->plan, grp, prev, &caller_ep, j->url, j->opts,
                                    &opts, j->qclass, &s, &e);
        if (rc != FLC_OK)
            break;
        rc = flc_query_gram_shard(s, j->job, j->round, w->shard, j->use_cache, &mine, &e);
        flc_store_node_t nd; /* who served it: the owner of its slot as s routes now */
        if (rc == FLC_OK && flc_store_shard_node(s, j->job, j->round, w->shard, &nd) == FLC_OK)
            snprintf(j->served[k], sizeof j->served[k], "%s", nd.addr);
    }
    pthread_mutex_lock(&j->lock);
    if (rc != FLC_OK && j->rc == FLC_OK) {
        j->rc = rc;
        j->err = e;
    }
    for (size_t i = 0; rc == FLC_OK && i < m * m; i++)
        j->g->G[i] += mine.G[i];
    for (size_t i = 0; rc == FLC_OK && i < mine.n; i++)
        j->g->bad[i] |= mine.bad[i];
    j->g->bytes_read += mine.bytes_read;
    j->g->bytes_moved += mine.bytes_moved;
    pthread_mutex_unlock(&j->lock);
    free(mine.G);
    free(mine.bad);
    flc_big_free(mine.scratch, mine.scratch_cap * sizeof *mine.scratch);
    flc_store_close(s);
    return NULL;
}

/* The "nodes" text of an answer: one node for every shard is said once
 * ("all 6 shards: unix:///..."), otherwise shard by shard. */
static char *served_text(const flc_track_where_t *where, char (*served)[300], size_t ns)
{
    int one = 1;
    for (size_t k = 0; k < ns; k++)
        one &= served[k][0] != '\0' && strcmp(served[k], served[0]) == 0;
    size_t cap = 64 + ns * 340;
    char *t = malloc(cap);
    if (t == NULL)
        return NULL;
    if (one) {
        snprintf(t, cap, "all %zu shard%s: %s", ns, ns == 1 ? "" : "s", served[0]);
        return t;
    }
    size_t len = 0;
    t[0] = '\0';
    for (size_t k = 0; k < ns; k++)
        len += (size_t)snprintf(t + len, cap - len, "%sshard %u: %s", k ? ", " : "",
                                where[k].shard, served[k][0] ? served[k] : "?");
    return t;
}

int flc_query_gram(flc_store_t *s, const flc_store_cfg_t *at, const char *job, uint32_t round,
                   int threads, int use_cache, flc_query_gram_t *g, flc_err_t *e)
{
    return flc_query_gram_placed(s, at, NULL, job, round, threads, use_cache, g, e);
}

int flc_query_gram_placed(flc_store_t *s, const flc_store_cfg_t *at, const flc_place_t *place,
                          const char *job, uint32_t round, int threads, int use_cache,
                          flc_query_gram_t *g, flc_err_t *e)
{
    return flc_query_gram_run(s, at, place, job, round, threads, use_cache, 0, g, e);
}

/* Workers and each one's share of budget. By default one per cache node
 * serving the round, placed or on one server: a redis-server answers one
 * command at a time, so a second worker on a node splits that node's
 * replies and the budget without reading faster. bench/queries' memory
 * section on one server (2 cores, 25 MB shards, 2026-11-30): 10 clients,
 * 1 worker read 1.7-2.2 GB/s (about raw pipelined GETs), 2 workers
 * 1.3-2.0, 4 workers 1.3-1.7; 100 clients, 1 worker 1.1-1.5, 2 workers
 * 0.2-1.1 (each share left windows of 4096-12288 floats a row). Unplaced
 * over several nodes the workers take shards in tracker order, not by
 * node, and read across links: min(S, 4), at least one per node, keeps
 * every link busy (bench/cluster's query case, 3 nodes at 1 Gbit/s:
 * central 17.4 s with 3 workers, 13.1-13.5 s with 4). Unplaced, the
 * count shrinks while a share would fall below a worker's floor, (N+1)
 * rows of one block of 4096 floats and one chunk (the most a window
 * needs, query_gram_rows.c): at N = 100 the default budget holds two. */
static int worker_count(int threads, int placed, size_t ns, size_t nodes, size_t m,
                        size_t chunk, size_t budget, size_t *each)
{
    size_t want = placed || nodes <= 1 ? nodes : nodes > 4 ? nodes : 4;
    int nt = threads > 0 ? threads : (int)(want < ns ? want : ns);
    if (nt > 64)
        nt = 64;
    if (nt < 1)
        nt = 1;
    size_t floor = m * (4096 * sizeof(float) + chunk);
    while (threads <= 0 && !placed && nt > 1 && budget / (size_t)nt < floor)
        nt--;
    *each = budget / (size_t)nt;
    return nt;
}

int flc_query_gram_run(flc_store_t *s, const flc_store_cfg_t *at, const flc_place_t *place,
                       const char *job, uint32_t round, int threads, int use_cache,
                       size_t mem_budget, flc_query_gram_t *g, flc_err_t *e)
{
    memset(g, 0, sizeof *g);
    /* Without a URL the workers reach s's own server as s's user: the
     * credentials are in its full URL, not the redacted one it prints. */
    char own[1200];
    const char *url = at != NULL ? at->url : NULL;
    if (url == NULL) {
        if (flc_store_url_full(s, own, sizeof own) != FLC_OK)
            return flc_err_set(e, FLC_EINVAL, "the URL of %s is too long for the shard "
                               "workers", flc_store_url(s));
        url = own;
    }
    uint64_t t0 = flc_now_ns();
    flc_strlist_t cl = {0};
    if (flc_store_list_clients(s, job, round, &cl) != FLC_OK) {
        *e = *flc_store_error(s);
        return e->code;
    }
    uint64_t t1 = flc_now_ns();
    flc_track_where_t *where = NULL;
    size_t ns = 0;
    if (cl.n == 0 || flc_track_round(s, job, round, &where, &ns) != FLC_OK || ns == 0) {
        flc_strlist_free(&cl);
        free(where);
        return flc_err_set(e, FLC_ENOTFOUND, "round %u of job %s has no client updates", round,
                           job);
    }
    g->n = cl.n;
    g->clients = cl.items; /* sorted by the store */
    g->G = calloc((g->n + 1) * (g->n + 1), sizeof *g->G);
    g->bad = calloc(g->n + 1, 1);
    if (g->G == NULL || g->bad == NULL) {
        free(where);
        flc_query_gram_free(g);
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    }
    char(*served)[300] = calloc(ns, sizeof *served);
    if (served == NULL) {
        free(where);
        flc_query_gram_free(g);
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    }
    gram_job_t j = {.url = url, .opts = at != NULL ? &at->opts : NULL, .job = job,
                    .place = place, .round = round, .where = where, .served = served,
                    .use_cache = use_cache, .g = g};
    int placed = place != NULL && place->enter != NULL;
    if (flc_query_plan_make(s, job, round, where, ns, placed, &j.plan, e) != FLC_OK) {
        free(served);
        free(where);
        flc_query_gram_free(g);
        return e->code;
    }
    uint64_t t2 = flc_now_ns();
    placed = j.plan.ngroups > 0 && j.plan.addr[0][0] != '\0';
    j.qclass = flc_store_set_query_class(s, FLC_QC_OTHER); /* read it... */
    flc_store_set_query_class(s, j.qclass);                /* ...and put it back */
    pthread_mutex_init(&j.lock, NULL);
    size_t chunk = at != NULL && at->opts.chunk_bytes ? at->opts.chunk_bytes
                                                      : flc_store_chunk_bytes(s);
    int nt = worker_count(threads, placed, ns, j.plan.nodes, g->n + 1, chunk,
                          mem_budget ? mem_budget : flc_query_mem_budget(), &j.budget);
    pthread_t th[64];
    int started = 0;
    flc_blas_workers_begin(nt);
    for (int t = 0; t < nt; t++)
        if (pthread_create(&th[started], NULL, gram_worker, &j) == 0)
            started++;
    if (started == 0 && !placed) /* no thread to be had (limits): do the work here */
        gram_worker(&j);
    else if (started == 0) /* placing would move the caller's own thread */
        j.rc = flc_err_set(&j.err, FLC_ENOMEM, "no thread for the shard workers to place "
                           "next to %zu node(s)", j.plan.ngroups);
    for (int t = 0; t < started; t++)
        pthread_join(th[t], NULL);
    flc_blas_workers_end(nt);
    pthread_mutex_destroy(&j.lock);
    FLC_DEBUG("query: round %u of job %s: %zu clients listed in %.2f ms, %zu shards tracked "
              "and planned in %.2f ms, %d workers done in %.2f ms", round, job, g->n,
              (double)(t1 - t0) / 1e6, ns, (double)(t2 - t1) / 1e6, started,
              (double)(flc_now_ns() - t2) / 1e6);
    if (j.rc == FLC_OK)
        g->nodes = served_text(where, served, ns);
    flc_query_plan_free(&j.plan);
    free(served);
    free(where);
    if (j.rc != FLC_OK) {
        *e = j.err;
        flc_query_gram_free(g);
        return j.rc;
    }
    return FLC_OK;
}
