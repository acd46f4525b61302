/* A merger whose memory is bounded by its shard, not by its values (issue
 * 14 goal 4): a streaming rule folds each float32 update window by window
 * (cache/store_part.h: open once, then a few MB at a time into one window
 * buffer, folded into that range of the double sums), and the merged shard
 * is written window by window (cache/store_put_stream.h) from the sums, or
 * for median and trimmed mean computed per block of coordinates from the
 * kept updates, those read at close window by window (rs_defer.c). So a
 * streaming merger holds its double sums (2 x shard) and two windows, a
 * median or trimmed-mean one K + 2 windows.
 *
 * Every result is bit-identical to the whole-value path (rs_take.c's
 * read_update and flc_merge_acc_fold, flc_merge_run over whole shards):
 * the kernels are per coordinate and see the same floats in the same
 * order. A refused update (a NaN/Inf in window w, or a value that changed
 * while it was read) has its earlier windows read again and taken back by
 * the same subtraction a whole fold makes within one update. Encoded
 * values, spilled ones and anything the whole read should judge (wrong
 * sizes, a bad header) go the whole way, so their messages are unchanged. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/rs_internal.h"
#include "aggregator/rs_merger_internal.h"
#include "base/clock.h"
#include "base/crc32c.h"
#include "base/log.h"
#include "cache/store_part.h"

/* Reads window [first, first+n) into m->wbuf; a read cut by a failover is
 * read again from the promoted replica (*cut set), as take() does. */
static int read_window(merger_t *m, const flc_store_part_t *p, uint64_t first, size_t n, int *cut)
{
    int rc = flc_store_part_read(m->s, p, 1, first, n, &m->wbuf);
    flc_rs_backoff_t b = {0};
    while (flc_rs_recover_backoff(m->s, rc, &b)) {
        *cut = 1;
        rc = flc_store_part_read(m->s, p, 1, first, n, &m->wbuf);
    }
    return rc;
}

/* Takes back windows [0, upto) of a refused update: read again and
 * subtracted. Fails only when they cannot be read. */
static int undo(merger_t *m, const flc_store_part_t *p, const flc_merge_acc_part_t *pa,
                uint64_t upto)
{
    if (pa->first) /* the sums were written, not added: still zeros */
        return FLC_OK;
    int cut = 0;
    for (uint64_t first = 0; first < upto; first += m->win) {
        size_t n = upto - first < m->win ? (size_t)(upto - first) : m->win;
        int rc = read_window(m, p, first, n, &cut);
        if (rc != FLC_OK)
            return rc;
        flc_merge_acc_part_unfold(m->acc, pa, m->wbuf, (size_t)first, n);
    }
    return FLC_OK;
}

/* A refused update whose earlier windows are folded: taken back, then
 * rejected with why (1); the round fails when they cannot be taken back. */
static int refuse(merger_t *m, const char *client, const flc_store_part_t *p,
                  const flc_merge_acc_part_t *pa, uint64_t upto, const char *why)
{
    if (upto > 0 && undo(m, p, pa, upto) != FLC_OK)
        return flc_err_set(&m->oom, FLC_EIO, "merger of shard %u: the update of %s was refused "
                           "(%s) after %llu of its floats were folded, and reading them again "
                           "to take them back failed: %s", m->cfg->shard, client, why,
                           (unsigned long long)upto, flc_store_errstr(m->s));
    rs_reject(m, client, "%s", why);
    return 1;
}

int rs_open_part(merger_t *m, const char *client, flc_store_part_t *p, int *cut)
{
    const flc_rs_merger_cfg_t *cfg = m->cfg;
    int rc = flc_store_part_open(m->s, cfg->job, cfg->round, cfg->shard, client, p);
    *cut = 0;
    flc_rs_backoff_t b = {0};
    while (flc_rs_recover_backoff(m->s, rc, &b)) {
        *cut = 1;
        rc = flc_store_part_open(m->s, cfg->job, cfg->round, cfg->shard, client, p);
    }
    if (*cut && rc == FLC_ENOTFOUND)
        return RS_TAKE_LOST; /* take() says why when it meets the same */
    if (rc == FLC_ECONN || rc == FLC_ETIMEOUT || rc == FLC_ENOMEM)
        return rc;
    return rc == FLC_OK ? FLC_OK : RS_TAKE_WHOLE; /* encoded, spilled: read whole */
}

int rs_part_fits(const merger_t *m, const flc_store_part_t *p, double *w, double *norm)
{
    const flc_rs_merger_cfg_t *cfg = m->cfg;
    const flc_shard_t *sh = &p->head;
    if (sh->offset != m->offset || sh->count != m->count ||
        sh->model_size != cfg->model_size || sh->num_shards != cfg->num_shards)
        return RS_TAKE_WHOLE; /* wrong sizes: the whole read judges it, in its words */
    *w = flc_shard_merge_weight(sh);
    *norm = sh->update_norm > 0 ? sh->update_norm : -1.0;
    if (cfg->rule.clip > 0 && *norm < 0)
        return RS_TAKE_WHOLE; /* its norm needs a pass over the whole update */
    return FLC_OK;
}

int rs_take_windowed(merger_t *m, const char *client)
{
    const flc_rs_merger_cfg_t *cfg = m->cfg;
    flc_store_part_t p;
    int cut;
    int rc = rs_open_part(m, client, &p, &cut);
    if (rc != FLC_OK)
        return rc;
    double w, norm;
    if ((rc = rs_part_fits(m, &p, &w, &norm)) != FLC_OK)
        return rc;
    if (cfg->rule.clip > 0 && norm > cfg->rule.clip)
        m->rep->clipped++;
    flc_merge_acc_part_t pa;
    flc_err_t me = {0};
    if (flc_merge_acc_part_begin(m->acc, w, norm, &pa, &me) != FLC_OK) {
        rs_reject(m, client, "%s", me.msg);
        return 1;
    }
    int trace = flc_log_level() >= FLC_LOG_DEBUG;
    uint32_t crc = 0;
    for (uint64_t first = 0; first < m->count; first += m->win) {
        size_t n = m->count - first < m->win ? (size_t)(m->count - first) : m->win;
        rc = read_window(m, &p, first, n, &cut);
        if (rc != FLC_OK && first == 0 && cut && rc == FLC_ENOTFOUND)
            return RS_TAKE_LOST;
        if (rc != FLC_OK && (rc == FLC_ECONN || rc == FLC_ETIMEOUT || rc == FLC_ENOMEM))
            return rc; /* the round fails: the sums no longer matter */
        if (rc != FLC_OK) {
            char why[FLC_ERRMSG_LEN];
            snprintf(why, sizeof why, "%s", flc_store_errstr(m->s));
            return refuse(m, client, &p, &pa, first, why);
        }
        size_t bad;
        if (flc_merge_acc_part_fold(m->acc, &pa, m->wbuf, (size_t)first, n, &bad, &me) != FLC_OK) {
            char why[FLC_ERRMSG_LEN];
            if (me.code == FLC_ENONFINITE) /* as take() names it: in model coordinates */
                snprintf(why, sizeof why, "%s at element %llu",
                         isnan(m->wbuf[bad]) ? "NaN" : "Inf",
                         (unsigned long long)(m->offset + first + bad));
            else
                snprintf(why, sizeof why, "%s", me.msg);
            return refuse(m, client, &p, &pa, first, why);
        }
        if (trace)
            crc = flc_crc32c(crc, m->wbuf, n * sizeof *m->wbuf);
    }
    flc_merge_acc_part_end(m->acc, &pa);
    flc_strlist_add(&m->rep->participants, client, strlen(client));
    if (trace)
        FLC_DEBUG("merger %s/%u/%u took %s: %llu floats, crc32c %08x", cfg->job, cfg->round,
                  cfg->shard, client, (unsigned long long)m->count, crc);
    return FLC_OK;
}

/* ---- the merged shard, window by window --------------------------------- */

int rs_merged_streams(const merger_t *m)
{
    const flc_merge_rule_t *r = &m->cfg->rule;
    if (m->win == 0)
        return 0;
    if (m->acc != NULL) /* a server step and central DP noise take the whole slice */
        return !flc_merge_rule_has_state(r) && !(r->noise > 0);
    return r->kind == FLC_MERGE_MEDIAN || r->kind == FLC_MERGE_TRIMMED_MEAN;
}

/* fill of the stream: the average's window from the double sums, or the
 * robust rule over that block of coordinates of the kept updates. */
static int fill_merged(void *user, uint64_t first, size_t count, float *dst)
{
    rs_fill_t *f = user;
    merger_t *m = f->m;
    int rc;
    if (m->acc != NULL) {
        rc = flc_merge_acc_finish_range(m->acc, (size_t)first, count, dst, f->e);
    } else {
        if (f->nd > 0 && (rc = rs_defer_read(f, first, count)) != FLC_OK)
            return rc;
        rs_defer_rows(f, first);
        flc_merge_batch_t b = {.u = f->rows, .k = m->nkept, .n = count, .weight = m->weight,
                               .norm = m->norm};
        rc = flc_merge_run(&m->cfg->rule, NULL, &b, dst, NULL, f->e);
        if (rc == FLC_ENONFINITE) /* only one read at close can hold it: which */
            rs_defer_find_bad(f, first, count);
    }
    if (rc == FLC_OK && m->own != NULL && m->own->merged_out != NULL)
        memcpy(m->own->merged_out + first, dst, count * sizeof *dst);
    return rc;
}

int rs_fill_init(merger_t *m, rs_fill_t *f, flc_store_stream_t *how, flc_err_t *e)
{
    memset(f, 0, sizeof *f);
    f->m = m;
    f->e = e;
    f->bad = -1;
    if (m->acc == NULL &&
        (f->rows = malloc((m->nkept ? m->nkept : 1) * sizeof *f->rows)) == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    if (m->acc == NULL && rs_defer_init(f) != FLC_OK)
        return e->code;
    if (m->acc != NULL && flc_merge_acc_finish_range(m->acc, 0, 0, NULL, e) != FLC_OK)
        return e->code; /* nothing to merge: said before anything is written */
    *how = (flc_store_stream_t){.fill = fill_merged, .user = f, .window = m->win};
    return FLC_OK;
}

void rs_fill_free(rs_fill_t *f)
{
    if (f->m != NULL)
        rs_defer_free(f);
    free(f->rows);
    f->rows = NULL;
}
