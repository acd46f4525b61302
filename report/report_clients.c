/* report_clients.c - the sections about the clients of a federated job as
 * points and ranks: the 2-D map of one round (classical MDS of the Gram
 * matrix the query engine computes next to the data, coloured by its
 * k-means clusters), the contribution ranking over all rounds, and the
 * staleness of asynchronous updates when a job has any; then the order of
 * all the sections of a simulated job. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/query.h"
#include "report/report_internal.h"

/* The round the map shows: the one asked, else the last with updates. */
static int map_round(const rep_data_t *d, const flc_report_opts_t *o, uint32_t *r)
{
    if (o->have_round) {
        *r = o->round;
        return 1;
    }
    for (size_t i = d->nr; i-- > 0;)
        if (d->nups[i] > 0) {
            *r = d->rounds[i];
            return 1;
        }
    return 0;
}

static int sec_map(flc_store_t *s, const flc_report_opts_t *o, const rep_data_t *d,
                   flc_html_t *out, flc_err_t *e)
{
    unsigned K = o->k ? o->k : 2;
    uint32_t round = 0;
    char how[600];
    int have = map_round(d, o, &round);
    snprintf(how, sizeof how, "The clients of round %u placed so that distances between "
             "points are distances between their updates (classical MDS of the round's Gram "
             "matrix; axes in the updates' own units, their orientation arbitrary), "
             "coloured by k-means cluster (K = %u). A black ring marks a client the "
             "simulation made faulty. Separate groups are clients that pull different ways.",
             round, K);
    rep_section_open(out, "map", "Map of one round's clients", how);
    if (!have) {
        rep_absent(out, "No round of this job has updates in the cache.");
        rep_section_close(out);
        return FLC_OK;
    }
    flc_store_cfg_t at = {.url = o->url};
    if (o->store_opts)
        at.opts = *o->store_opts;
    flc_query_gram_t g;
    flc_err_t qe = {0};
    if (flc_query_gram_placed(s, &at, &o->place, d->job, round, 0, 1, &g, &qe) != FLC_OK) {
        if (qe.code == FLC_ENOMEM)
            return flc_err_set(e, FLC_ENOMEM, "report of %s: out of memory", d->job);
        char why[560];
        snprintf(why, sizeof why, "No map: %s", qe.msg);
        rep_absent(out, why);
        rep_section_close(out);
        return FLC_OK;
    }
    /* Clients whose update holds NaN/Inf have no place on the map. */
    size_t n0 = g.n, m0 = n0 + 1, n = 0;
    size_t *keep = malloc((n0 + 1) * sizeof *keep);
    double *G = malloc((n0 + 1) * (n0 + 1) * sizeof *G), *xy = malloc(2 * (n0 + 1) * sizeof *xy);
    int *assign = malloc((n0 + 1) * sizeof *assign);
    unsigned char *mk = calloc(n0 + 1, 1);
    const char **names = malloc((n0 + 1) * sizeof *names);
    int rc = FLC_OK;
    if (!keep || !G || !xy || !assign || !mk || !names) {
        rc = flc_err_set(e, FLC_ENOMEM, "report of %s: out of memory", d->job);
        goto out;
    }
    for (size_t i = 0; i < n0; i++)
        if (!(g.bad && g.bad[i]))
            keep[n++] = i;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++)
            G[i * n + j] = g.G[keep[i] * m0 + keep[j]];
        names[i] = g.clients[keep[i]];
        long c = rep_client(d, names[i]);
        mk[i] = c >= 0 && d->faulty ? d->faulty[c] : 0;
    }
    double explained = 1, inertia = 0;
    flc_err_t me = {0};
    if (n == 0 || flc_report_mds(G, n, n, xy, &explained, &me) != FLC_OK ||
        flc_query_kmeans(G, n, n, K < n ? K : (unsigned)n, o->seed, assign, &inertia, &me) !=
            FLC_OK) {
        if (me.code == FLC_ENOMEM) {
            rc = flc_err_set(e, FLC_ENOMEM, "report of %s: out of memory", d->job);
            goto out;
        }
        char why[560];
        snprintf(why, sizeof why, "No map of round %u: %s", round,
                 n == 0 ? "every update holds NaN or Inf" : me.msg);
        rep_absent(out, why);
        rep_section_close(out);
        goto out;
    }
    flc_svg_axes_t a = {.kind = "scatter", .title = "clients of one round, MDS of updates",
                        .xlabel = "MDS axis 1 (update units)",
                        .ylabel = "MDS axis 2 (update units)", .xlo = INFINITY,
                        .xhi = -INFINITY, .ylo = INFINITY, .yhi = -INFINITY, .h = 320};
    for (size_t i = 0; i < n; i++) {
        a.xlo = fmin(a.xlo, xy[2 * i]), a.xhi = fmax(a.xhi, xy[2 * i]);
        a.ylo = fmin(a.ylo, xy[2 * i + 1]), a.yhi = fmax(a.yhi, xy[2 * i + 1]);
    }
    double *px = G, *py = G + n; /* G is no longer needed */
    for (size_t i = 0; i < n; i++)
        px[i] = xy[2 * i], py[i] = xy[2 * i + 1];
    flc_svg_t p;
    flc_svg_begin(&p, out, &a);
    flc_svg_scatter(&p, px, py, n, assign, d->truth ? mk : NULL, names);
    flc_svg_end(&p);
    char lab[8][24];
    const char *ln[8];
    int lc[8];
    size_t nl = K < 8 ? K : 8;
    for (size_t k = 0; k < nl; k++) {
        snprintf(lab[k], sizeof lab[k], "cluster %zu", k);
        ln[k] = lab[k], lc[k] = (int)k;
    }
    flc_svg_legend(out, ln, lc, nl);
    flc_html_printf(out, "<p class=\"how\">%zu clients; the two axes hold %.0f%% of the "
                    "spread of the updates.%s</p>", n, explained * 100,
                    n < n0 ? " Clients whose update holds NaN or Inf are left out." : "");
    rep_section_close(out);
out:
    free(keep), free(G), free(xy), free(assign), free(mk), free(names);
    flc_query_gram_free(&g);
    return rc;
}

typedef struct ranked {
    double v;
    const char *name;
} ranked_t;

static int by_value_desc(const void *a, const void *b)
{
    double x = ((const ranked_t *)a)->v, y = ((const ranked_t *)b)->v;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int sec_contribution(flc_store_t *s, const flc_report_opts_t *o, const rep_data_t *d,
                            flc_html_t *out, flc_err_t *e)
{
    rep_section_open(out, "contribution", "Contribution ranking",
                     "Each client's share of the FedAvg aggregate summed over the job's "
                     "rounds (the query engine's `contribution`: sample weight x cosine to the "
                     "aggregate), highest first. Negative: the client pulled against the "
                     "aggregate. Red rows: faulty by the simulation's ground truth.");
    flc_query_req_t q = {.kind = FLC_Q_CONTRIBUTION, .job = d->job, .all_rounds = 1,
                         .seed = o->seed, .url = o->url, .store_opts = o->store_opts,
                         .place = o->place};
    Flcache__QueryAnswer *a = NULL;
    flc_err_t qe = {0};
    if (flc_query_run(s, &q, &a, &qe) != FLC_OK) {
        if (qe.code == FLC_ENOMEM)
            return flc_err_set(e, FLC_ENOMEM, "report of %s: out of memory", d->job);
        char why[560];
        snprintf(why, sizeof why, "No ranking: %s", qe.msg);
        rep_absent(out, why);
        rep_section_close(out);
        return FLC_OK;
    }
    size_t n = a->n_rows;
    ranked_t *r = malloc((n + 1) * sizeof *r);
    double *v = malloc((n + 1) * sizeof *v);
    const char **names = malloc((n + 1) * sizeof *names);
    unsigned char *mk = calloc(n + 1, 1);
    int rc = FLC_OK;
    if (!r || !v || !names || !mk) {
        rc = flc_err_set(e, FLC_ENOMEM, "report of %s: out of memory", d->job);
    } else if (n == 0) {
        rep_absent(out, "No client contributed to a merged round.");
    } else {
        for (size_t i = 0; i < n; i++)
            r[i].v = a->rows[i]->n_values ? a->rows[i]->values[0] : NAN,
            r[i].name = a->rows[i]->key;
        qsort(r, n, sizeof *r, by_value_desc);
        for (size_t i = 0; i < n; i++) {
            v[i] = r[i].v, names[i] = r[i].name;
            long c = rep_client(d, names[i]);
            mk[i] = c >= 0 && d->faulty ? d->faulty[c] : 0;
        }
        flc_svg_hbars(out, "contribution per client", names, v, d->truth ? mk : NULL, n,
                      "contribution (share of the aggregate, summed over rounds)");
    }
    rep_section_close(out);
    free(r), free(v), free(names), free(mk);
    flcache__query_answer__free_unpacked(a, NULL);
    return rc;
}

/* Staleness: only what the updates record (metric "staleness", in model
 * versions); nothing is drawn for a job without it. */
static void sec_staleness(const rep_data_t *d, flc_html_t *out, double *buf)
{
    size_t n = d->nr, any = 0;
    double *mean = buf, *mx = buf + n;
    for (size_t i = 0; i < n; i++) {
        double sum = 0, top = NAN;
        size_t k = 0;
        for (size_t u = 0; u < d->nups[i]; u++) {
            double st = rep_umetric(d->ups[i][u], "staleness");
            if (!isfinite(st))
                continue;
            sum += st, k++;
            top = isfinite(top) && top > st ? top : st;
        }
        mean[i] = k ? sum / (double)k : NAN;
        mx[i] = top;
        any += k;
    }
    rep_section_open(out, "staleness", "Staleness and model versions (asynchronous jobs)",
                     "For asynchronous rounds: how many model versions behind the current "
                     "one each merged update was computed (mean and maximum per round). 0 is "
                     "a synchronous update.");
    if (any == 0) {
        rep_absent(out, "No staleness recorded: this job's updates carry no model version. "
                        "flcache's asynchronous mode (issue 16) is not built yet, so only "
                        "synchronous jobs exist; this section fills in when updates record "
                        "a \"staleness\" metric.");
    } else {
        const double *ys[] = {mean, mx};
        const char *names[] = {"mean staleness", "max staleness"};
        rep_lines(out, d, "staleness per round", "staleness (model versions)", ys, names, 2,
                  1, -1, NULL);
    }
    rep_section_close(out);
}

int rep_sim_sections(flc_store_t *s, const flc_report_opts_t *o, const rep_data_t *d,
                     flc_html_t *out, flc_err_t *e)
{
    double *buf = malloc(5 * d->nr * sizeof *buf);
    if (buf == NULL)
        return flc_err_set(e, FLC_ENOMEM, "report of %s: out of memory", d->job);
    flc_html_printf(out, "<nav>Sections: <a href=\"#accuracy\">accuracy</a> · "
                    "<a href=\"#loss\">loss</a> · <a href=\"#participation\">participation</a>"
                    " · <a href=\"#time\">time</a> · <a href=\"#cost\">cost</a> · "
                    "<a href=\"#outliers\">outliers</a> · <a href=\"#map\">map</a> · "
                    "<a href=\"#contribution\">contribution</a> · "
                    "<a href=\"#staleness\">staleness</a></nav>\n");
    rep_sec_accuracy(d, buf, buf + d->nr, buf + 2 * d->nr, out);
    rep_sec_participation(d, out, buf);
    rep_sec_time_cost(d, out, buf);
    rep_sec_heat(d, out);
    int rc = sec_map(s, o, d, out, e);
    if (rc == FLC_OK)
        rc = sec_contribution(s, o, d, out, e);
    if (rc == FLC_OK)
        sec_staleness(d, out, buf);
    free(buf);
    return rc;
}
