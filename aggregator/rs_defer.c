/* A collecting merger that reads its updates when the shard closes (issue
 * 14 goal 4): median and trimmed mean merged window by window keep, per
 * arrival, only the update's header (its part, cache/store_part.h), and the
 * merged shard's fill reads that window of every kept update as it writes
 * it. The merger then holds K windows, not K whole shards.
 *
 * Why: at 6 clients x 1 GiB in 8 shards a merger kept 6 x 134 MB, 6.4 GB
 * of fresh memory for the eight of them on top of Redis's own, and on the
 * VMs we measure on the kernel's zeroing of fresh pages was a third of the
 * round's CPU (docs/performance.md). Reading at close moves the same bytes
 * once, after the last arrival instead of as each lands.
 *
 * What the window-by-window read changes, and how each case ends:
 * - A NaN/Inf found in window w: the merged shard is being built under a
 *   tmp key the readers cannot see (store_put_stream.h), so the write is
 *   abandoned, the client rejected with the element named as at arrival,
 *   and the shard merged again without it from window 0. Same bits as
 *   the whole path, which rejected it on arrival.
 * - An update rewritten after its arrival (a retried push) is read as
 *   rewritten: the reader refuses a value whose header changed since its
 *   open, the merger opens it again, judges it as an arrival, and merges
 *   again from window 0.
 * - An update gone by the close (deleted, expired, or lost with a master
 *   that died after the arrival) is rejected, saying so: the whole path
 *   had read it already; here it no longer exists to be read.
 * Everything the windowed take does not handle (encoded or spilled
 * values, a clipping rule without the header's norm, the process's own
 * update) is still read whole on arrival and kept, beside the others. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/rs_merger_internal.h"
#include "base/log.h"

/* Rewritten values are followed this many times per merge, then the
 * round fails: a client rewriting its update in a loop would otherwise
 * keep the merger reading forever. */
#define REFRESH_MAX 4

/* Judges a part's header as an arrival: FLC_OK with its weight and norm,
 * RS_TAKE_WHOLE when the whole read must judge it, 1 with why when it is
 * refused. */
static int judge(const merger_t *m, const flc_store_part_t *p, double *w, double *norm,
                 char *why, size_t wl)
{
    int rc = rs_part_fits(m, p, w, norm);
    if (rc != FLC_OK)
        return rc;
    if (!(*w >= 0 && isfinite(*w))) {
        snprintf(why, wl, "bad weight %g", *w);
        return 1;
    }
    /* The norm matters only to clipping (flc_merge_batch_scales), which
     * has it here; the batch wants it >= 0 either way. */
    if (*norm < 0)
        *norm = 0;
    return FLC_OK;
}

int rs_take_deferred(merger_t *m, const char *client)
{
    const flc_rs_merger_cfg_t *cfg = m->cfg;
    flc_store_part_t p;
    int cut;
    int rc = rs_open_part(m, client, &p, &cut);
    if (rc != FLC_OK)
        return rc;
    double w, norm;
    char why[200];
    int j = judge(m, &p, &w, &norm, why, sizeof why);
    if (j == 1)
        rs_reject(m, client, "%s", why);
    if (j != FLC_OK)
        return j;
    if (cfg->rule.clip > 0 && norm > cfg->rule.clip)
        m->rep->clipped++;
    size_t i = m->nkept++;
    m->kept_idx[i] = m->kept_idx_next;
    m->kept[i] = NULL; /* read when the shard closes */
    m->parts[i] = p;
    m->weight[i] = w;
    m->norm[i] = norm;
    flc_strlist_add(&m->rep->participants, client, strlen(client));
    FLC_DEBUG("merger %s/%u/%u took %s: %llu floats, read when the shard closes", cfg->job,
              cfg->round, cfg->shard, client, (unsigned long long)m->count);
    return FLC_OK;
}

/* ---- the fill's side: windows of the kept parts ------------------------- */

int rs_defer_init(rs_fill_t *f)
{
    merger_t *m = f->m;
    f->bad = -1;
    f->nd = 0;
    for (size_t i = 0; i < m->nkept; i++)
        f->nd += m->kept[i] == NULL;
    if (f->nd == 0)
        return FLC_OK;
    f->dparts = malloc(f->nd * sizeof *f->dparts);
    f->dmap = malloc(m->nkept * sizeof *f->dmap);
    f->dbuf = calloc(f->nd, sizeof *f->dbuf);
    if (f->dparts == NULL || f->dmap == NULL || f->dbuf == NULL)
        return flc_err_set(f->e, FLC_ENOMEM, "out of memory");
    for (size_t i = 0, d = 0; i < m->nkept; i++)
        if (m->kept[i] == NULL) {
            f->dmap[i] = d;
            f->dparts[d++] = m->parts[i];
        }
    return FLC_OK;
}

void rs_defer_free(rs_fill_t *f)
{
    flc_store_part_reader_free(f->m->s, &f->reader);
    for (size_t d = 0; f->dbuf != NULL && d < f->nd; d++)
        rs_free_buf(f->dbuf[d], f->dcap);
    free(f->dbuf);
    free(f->dparts);
    free(f->dmap);
    f->dbuf = NULL, f->dparts = NULL, f->dmap = NULL;
    f->nd = f->dcap = 0;
}

int rs_defer_read(rs_fill_t *f, uint64_t first, size_t count)
{
    merger_t *m = f->m;
    if (first == 0) { /* a new write attempt (a failover's retry, a redo): from the start */
        flc_store_part_reader_free(m->s, &f->reader);
        if (flc_store_part_reader_init(m->s, &f->reader, f->dparts, f->nd) != FLC_OK)
            return flc_err_set(f->e, FLC_ENOMEM, "out of memory");
    }
    if (count > f->dcap) { /* the first window is the largest: made once */
        for (size_t d = 0; d < f->nd; d++) {
            rs_free_buf(f->dbuf[d], f->dcap);
            f->dbuf[d] = NULL;
        }
        f->dcap = 0;
        for (size_t d = 0; d < f->nd; d++)
            if ((f->dbuf[d] = rs_new_buf(count)) == NULL)
                return flc_err_set(f->e, FLC_ENOMEM, "out of memory for %zu windows of %zu "
                                   "floats", f->nd, count);
        f->dcap = count;
    }
    int rc = flc_store_part_send(m->s, &f->reader, first, count);
    rc = rc ? rc : flc_store_part_recv(m->s, &f->reader, f->dbuf);
    if (rc == FLC_OK)
        return FLC_OK;
    *f->e = *flc_store_error(m->s);
    if (rc != FLC_ECONN && rc != FLC_ETIMEOUT && rc != FLC_ENOMEM)
        f->stale = 1; /* a value changed or went since its arrival: rs_defer_redo looks */
    return rc;
}

void rs_defer_rows(rs_fill_t *f, uint64_t first)
{
    merger_t *m = f->m;
    for (size_t i = 0; i < m->nkept; i++)
        f->rows[i] = m->kept[i] != NULL ? m->kept[i] + first : f->dbuf[f->dmap[i]];
}

void rs_defer_find_bad(rs_fill_t *f, uint64_t first, size_t count)
{
    for (size_t i = 0; i < f->m->nkept; i++) {
        size_t pos;
        if (flc_merge_check_finite(f->rows[i], count, &pos) != FLC_OK) {
            f->bad = (long)i;
            f->bad_nan = isnan(f->rows[i][pos]);
            f->bad_pos = f->m->offset + first + pos; /* in model coordinates */
            return;
        }
    }
}

/* Takes kept update i out of the merge: rejected with why. */
static void drop(merger_t *m, size_t i, const char *why)
{
    flc_strlist_t *pl = &m->rep->participants;
    flc_strlist_t rest = {0};
    rs_reject(m, pl->items[i], "%s", why);
    for (size_t k = 0; k < pl->n; k++)
        if (k != i)
            flc_strlist_add(&rest, pl->items[k], strlen(pl->items[k]));
    flc_strlist_free(pl);
    *pl = rest;
    rs_free_buf(m->kept[i], m->count);
    size_t tail = m->nkept - i - 1;
    memmove(&m->kept[i], &m->kept[i + 1], tail * sizeof *m->kept);
    memmove(&m->parts[i], &m->parts[i + 1], tail * sizeof *m->parts);
    memmove(&m->weight[i], &m->weight[i + 1], tail * sizeof *m->weight);
    memmove(&m->norm[i], &m->norm[i + 1], tail * sizeof *m->norm);
    memmove(&m->kept_idx[i], &m->kept_idx[i + 1], tail * sizeof *m->kept_idx);
    m->nkept--;
}

/* Opens every part read at close again: a gone one is dropped, a
 * rewritten one judged as an arrival and kept or dropped. 1 when anything
 * changed, 0 when nothing did, negative when the store failed. */
static int refresh(merger_t *m, flc_err_t *e)
{
    const flc_rs_merger_cfg_t *cfg = m->cfg;
    int changed = 0;
    for (size_t i = 0; i < m->nkept;) {
        if (m->kept[i] != NULL) {
            i++;
            continue;
        }
        const char *client = m->rep->participants.items[i];
        flc_store_part_t p;
        int rc = flc_store_part_open(m->s, cfg->job, cfg->round, cfg->shard, client, &p);
        if (rc == FLC_ECONN || rc == FLC_ETIMEOUT || rc == FLC_ENOMEM) {
            *e = *flc_store_error(m->s);
            return rc;
        }
        char why[FLC_ERRMSG_LEN];
        double w = 0, norm = 0;
        int j = FLC_OK;
        if (rc == FLC_ENOTFOUND)
            snprintf(why, sizeof why, "its update was gone when the shard was merged (deleted, "
                     "expired, or lost with a failed node after it arrived)");
        else if (rc != FLC_OK)
            snprintf(why, sizeof why, "its update could not be read when the shard was "
                     "merged: %s", flc_store_errstr(m->s));
        else if (p.head_crc == m->parts[i].head_crc && p.flen == m->parts[i].flen) {
            i++; /* as it was */
            continue;
        } else if ((j = judge(m, &p, &w, &norm, why, sizeof why)) == RS_TAKE_WHOLE)
            snprintf(why, sizeof why, "its update was rewritten after it arrived as a value "
                     "this merge cannot read by window (other sizes, an encoding, or no norm "
                     "for clipping)");
        changed = 1;
        if (rc != FLC_OK || j != FLC_OK) {
            drop(m, i, why);
            continue;
        }
        FLC_INFO("merger %s/%u/%u: the update of %s was rewritten after it arrived: merged as "
                 "rewritten", cfg->job, cfg->round, cfg->shard, client);
        m->parts[i] = p;
        m->weight[i] = w;
        m->norm[i] = norm;
        i++;
    }
    return changed;
}

int rs_defer_redo(rs_fill_t *f, flc_err_t *e)
{
    merger_t *m = f->m;
    int changed = 0;
    if (f->bad >= 0) {
        char why[120];
        snprintf(why, sizeof why, "%s at element %llu", f->bad_nan ? "NaN" : "Inf",
                 (unsigned long long)f->bad_pos);
        drop(m, (size_t)f->bad, why);
        changed = 1;
    } else if (f->stale) {
        if (++f->refreshes > REFRESH_MAX) /* *e holds the read's own error */
            return e->code ? e->code : FLC_EDATA;
        changed = refresh(m, e);
        if (changed < 0)
            return changed;
    }
    if (!changed)
        return 0;
    if (m->nkept == 0)
        return flc_err_set(e, FLC_ETIMEOUT, "shard %u of round %u of job %s: no update could "
                           "be merged (%zu rejected when the shard was merged)", m->cfg->shard,
                           m->cfg->round, m->cfg->job, m->rep->rejected.n);
    int refreshes = f->refreshes;
    rs_fill_free(f);
    flc_err_clear(e);
    flc_store_stream_t how;
    int rc = rs_fill_init(m, f, &how, e);
    f->refreshes = refreshes;
    return rc != FLC_OK ? rc : 1;
}
