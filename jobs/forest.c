/* forest: random-forest training split over functions. Function k trains
 * trees [T*k/W, T*(k+1)/W) of the forest on bootstrap samples of the first
 * n Fashion-MNIST training images (forest_tree.h: tree t depends only on
 * the seed and t) and stores them, serialized, under partition k; a
 * combiner function reads every partition's trees, votes on the first m
 * test images and stores the predictions. The driver compares them with
 * the same forest trained and evaluated in one process: identical
 * predictions. (The comparison with python3-sklearn's
 * RandomForestClassifier is jobs/forest_sklearn.py, run by the test and the
 * bench.) */
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/event.h"
#include "jobs/forest_tree.h"
#include "jobs/job_internal.h"
#include "ml/dataset_idx.h"

typedef struct fparams {
    long long n, m, trees, depth, workers;
    uint64_t seed;
} fparams_t;

static int params_of(const cJSON *ev, fparams_t *p, flc_err_t *e)
{
    long long seed;
    if (flc_ev_need_int(ev, "train_n", 1, 60000, &p->n, e) ||
        flc_ev_need_int(ev, "test_n", 1, 10000, &p->m, e) ||
        flc_ev_need_int(ev, "trees", 1, 100000, &p->trees, e) ||
        flc_ev_need_int(ev, "depth", 1, 64, &p->depth, e) ||
        flc_ev_need_int(ev, "workers", 1, 100000, &p->workers, e) ||
        flc_ev_need_int(ev, "seed", 0, 1LL << 53, &seed, e))
        return e->code;
    p->seed = (uint64_t)seed;
    return FLC_OK;
}

/* Appends tree t to the byte buffer (u32 t, u32 nodes, nodes). */
static int ser(uint8_t **buf, size_t *len, size_t *cap, uint32_t t, const flc_tree_t *tr)
{
    size_t need = 8 + tr->n * sizeof(flc_tree_node_t);
    if (*len + need > *cap) {
        size_t c = *cap ? *cap * 2 : 65536;
        while (c < *len + need)
            c *= 2;
        uint8_t *g = realloc(*buf, c);
        if (g == NULL)
            return FLC_ENOMEM;
        *buf = g;
        *cap = c;
    }
    uint32_t h[2] = {t, (uint32_t)tr->n};
    memcpy(*buf + *len, h, 8);
    memcpy(*buf + *len + 8, tr->node, tr->n * sizeof(flc_tree_node_t));
    *len += need;
    return 0;
}

int flc_job_forest_train(flc_job_task_t *f, cJSON **res, flc_err_t *e)
{
    fparams_t p;
    long long k;
    if (params_of(f->ev, &p, e) || flc_ev_need_int(f->ev, "id", 0, 100000, &k, e))
        return e->code;
    flc_dataset_u8_t *d = NULL;
    int rc = flc_data_load_fashion_u8(f->data_dir, 1, (size_t)p.n, 0, &d, e);
    if (rc != FLC_OK)
        return rc;
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, nodes = 0;
    long long t0 = p.trees * k / p.workers, t1 = p.trees * (k + 1) / p.workers;
    for (long long t = t0; rc == FLC_OK && t < t1; t++) {
        flc_tree_t tr;
        if (flc_tree_train(d, p.seed, (uint32_t)t, (int)p.depth, &tr) != FLC_OK)
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory training tree %lld", t);
        else if (ser(&buf, &len, &cap, (uint32_t)t, &tr) != 0)
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory serializing tree %lld", t);
        nodes += tr.n;
        flc_tree_free(&tr);
    }
    if (rc == FLC_OK)
        rc = flc_job_put(&f->x, 0, (uint32_t)k, "trees", buf, len, e);
    free(buf);
    flc_data_u8_free(d);
    if (rc == FLC_OK) {
        *res = cJSON_CreateObject();
        cJSON_AddNumberToObject(*res, "trees", (double)(t1 - t0));
        cJSON_AddNumberToObject(*res, "nodes", (double)nodes);
    }
    return rc;
}

static size_t count_right(const uint8_t *pred, const flc_dataset_u8_t *d)
{
    size_t ok = 0;
    for (size_t i = 0; i < d->n; i++)
        ok += pred[i] == d->y[i];
    return ok;
}

int flc_job_forest_eval(flc_job_task_t *f, cJSON **res, flc_err_t *e)
{
    fparams_t p;
    if (params_of(f->ev, &p, e))
        return e->code;
    flc_shard_t *parts = calloc((size_t)p.workers, sizeof *parts);
    const flc_tree_node_t **trees = calloc((size_t)p.trees, sizeof *trees);
    if (parts == NULL || trees == NULL) {
        free(parts);
        free(trees);
        return flc_err_set(e, FLC_ENOMEM, "out of memory for %lld trees", p.trees);
    }
    int rc = FLC_OK;
    for (long long k = 0; rc == FLC_OK && k < p.workers; k++) {
        size_t len;
        if ((rc = flc_job_get(&f->x, 0, (uint32_t)k, "trees", &parts[k], &len, e)) != FLC_OK)
            break;
        const uint8_t *b = (const uint8_t *)parts[k].values;
        size_t at = 0;
        while (rc == FLC_OK && at + 8 <= len) {
            uint32_t h[2];
            memcpy(h, b + at, 8);
            if (h[0] >= p.trees || trees[h[0]] != NULL ||
                at + 8 + (size_t)h[1] * sizeof(flc_tree_node_t) > len || h[1] == 0)
                rc = flc_err_set(e, FLC_EDATA, "trees of partition %lld: bad tree record at "
                                 "byte %zu", k, at);
            else
                trees[h[0]] = (const flc_tree_node_t *)(const void *)(b + at + 8);
            at += 8 + (size_t)h[1] * sizeof(flc_tree_node_t);
        }
    }
    for (long long t = 0; rc == FLC_OK && t < p.trees; t++)
        if (trees[t] == NULL)
            rc = flc_err_set(e, FLC_ENOTFOUND, "tree %lld is in no partition", t);
    flc_dataset_u8_t *d = NULL;
    if (rc == FLC_OK)
        rc = flc_data_load_fashion_u8(f->data_dir, 0, (size_t)p.m, 0, &d, e);
    uint8_t *pred = rc == FLC_OK ? malloc(d->n + 1) : NULL;
    if (rc == FLC_OK && pred == NULL)
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory for %zu predictions", d->n);
    if (rc == FLC_OK) {
        flc_tree_vote(trees, (size_t)p.trees, d, pred);
        rc = flc_job_put(&f->x, 1, 0, "pred", pred, d->n, e);
    }
    if (rc == FLC_OK) {
        *res = cJSON_CreateObject();
        cJSON_AddNumberToObject(*res, "accuracy", (double)count_right(pred, d) / (double)d->n);
    }
    free(pred);
    flc_data_u8_free(d);
    for (long long k = 0; k < p.workers; k++)
        flc_shard_release(&parts[k]);
    free(parts);
    free(trees);
    return rc;
}

static cJSON *fevent(flc_job_ctx_t *c, const char *task, const fparams_t *p)
{
    cJSON *ev = flc_job_event(c, task);
    cJSON_AddNumberToObject(ev, "train_n", (double)p->n);
    cJSON_AddNumberToObject(ev, "test_n", (double)p->m);
    cJSON_AddNumberToObject(ev, "trees", (double)p->trees);
    cJSON_AddNumberToObject(ev, "depth", (double)p->depth);
    cJSON_AddNumberToObject(ev, "workers", (double)p->workers);
    cJSON_AddNumberToObject(ev, "seed", (double)p->seed);
    if (c->o->data_dir != NULL)
        cJSON_AddStringToObject(ev, "data", c->o->data_dir);
    return ev;
}

int flc_job_forest(flc_job_ctx_t *c, flc_err_t *e)
{
    const flc_job_opts_t *o = c->o;
    fparams_t p = {.n = o->size > 0 ? o->size : 5000, .trees = o->trees, .depth = o->depth,
                   .workers = o->workers, .seed = o->seed};
    if (p.n > 60000)
        return flc_err_set(e, FLC_EINVAL, "forest: --size %lld is over the 60000 training "
                           "images", p.n);
    p.m = p.n / 2 < 500 ? 500 : p.n / 2 > 10000 ? 10000 : p.n / 2;
    if (p.trees < p.workers)
        return flc_err_set(e, FLC_EINVAL, "forest: %lld trees for %lld functions", p.trees,
                           p.workers);
    int W = o->workers;
    c->x.nparts = (uint32_t)W;
    cJSON **ev = calloc((size_t)W, sizeof *ev);
    char(*names)[48] = calloc((size_t)W, sizeof *names);
    cJSON *res[1] = {NULL};
    int rc = ev && names ? FLC_OK : flc_err_set(e, FLC_ENOMEM, "out of memory");
    for (int k = 0; rc == FLC_OK && k < W; k++) {
        ev[k] = fevent(c, "forest.train", &p);
        cJSON_AddNumberToObject(ev[k], "id", k);
        snprintf(names[k], sizeof names[k], "trees %lld-%lld", p.trees * k / W,
                 p.trees * (k + 1) / W - 1);
    }
    uint64_t t0 = flc_now_ns();
    if (rc == FLC_OK)
        rc = flc_job_phase(c, "train", ev, names, (size_t)W, NULL, e);
    if (rc == FLC_OK) {
        ev[0] = fevent(c, "forest.eval", &p);
        snprintf(names[0], sizeof names[0], "combine");
        rc = flc_job_phase(c, "combine", ev, names, 1, res, e);
    }
    flc_shard_t psh;
    size_t plen = 0;
    int have = rc == FLC_OK && flc_job_get(&c->x, 1, 0, "pred", &psh, &plen, e) == FLC_OK;
    if (rc == FLC_OK && !have)
        rc = e->code;
    c->rep->wall_ms = flc_job_ms(t0);
    double acc = res[0] ? flc_ev_num(res[0], "accuracy", 0) : 0;
    if (rc == FLC_OK) {
        cJSON *m = c->rep->metrics;
        cJSON_AddNumberToObject(m, "train_samples", (double)p.n);
        cJSON_AddNumberToObject(m, "test_samples", (double)p.m);
        cJSON_AddNumberToObject(m, "trees", (double)p.trees);
        cJSON_AddNumberToObject(m, "max_depth", (double)p.depth);
        cJSON_AddNumberToObject(m, "accuracy", acc);
    }
    if (rc == FLC_OK && o->check) {
        flc_dataset_u8_t *tr = NULL, *te = NULL;
        flc_tree_t *trees = calloc((size_t)p.trees, sizeof *trees);
        const flc_tree_node_t **tn = calloc((size_t)p.trees, sizeof *tn);
        uint8_t *pred = NULL;
        uint64_t t1 = flc_now_ns();
        rc = trees && tn ? FLC_OK : flc_err_set(e, FLC_ENOMEM, "out of memory");
        if (rc == FLC_OK)
            rc = flc_data_load_fashion_u8(o->data_dir, 1, (size_t)p.n, 0, &tr, e);
        if (rc == FLC_OK)
            rc = flc_data_load_fashion_u8(o->data_dir, 0, (size_t)p.m, 0, &te, e);
        for (long long t = 0; rc == FLC_OK && t < p.trees; t++) {
            if (flc_tree_train(tr, p.seed, (uint32_t)t, (int)p.depth, &trees[t]) != FLC_OK)
                rc = flc_err_set(e, FLC_ENOMEM, "out of memory training tree %lld", t);
            tn[t] = trees[t].node;
        }
        if (rc == FLC_OK && (pred = malloc(te->n + 1)) == NULL)
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
        if (rc == FLC_OK) {
            flc_tree_vote(tn, (size_t)p.trees, te, pred);
            c->rep->single_ms = flc_job_ms(t1);
            size_t diff = 0;
            for (size_t i = 0; i < te->n; i++)
                diff += i >= plen || ((const uint8_t *)psh.values)[i] != pred[i];
            double acc1 = (double)count_right(pred, te) / (double)te->n;
            cJSON_AddNumberToObject(c->rep->metrics, "accuracy_one_process", acc1);
            c->rep->checked = 1;
            c->rep->check_ok = diff == 0 && plen == te->n;
            snprintf(c->rep->check, sizeof c->rep->check,
                     "%zu of %zu predictions differ from one process's forest of the same "
                     "trees (accuracy %.4f vs %.4f)", diff, te->n, acc, acc1);
        }
        for (long long t = 0; trees && t < p.trees; t++)
            flc_tree_free(&trees[t]);
        free(trees);
        free(tn);
        free(pred);
        flc_data_u8_free(tr);
        flc_data_u8_free(te);
    }
    if (have)
        flc_shard_release(&psh);
    cJSON_Delete(res[0]);
    flc_job_events_free(ev, (size_t)W);
    free(ev);
    free(names);
    return rc;
}
