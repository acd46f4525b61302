/* report_sim.c - the sections of a federated (simulated) job: accuracy,
 * loss, participation, round time, cost, outlier suspicion, the map of one
 * round's clients, contribution, and staleness when the job has any.
 *
 * Participation counts every expected client once, by what became of its
 * update (its record's status), so the bars of a round add up to the
 * clients it asked; RoundMeta's own counts overlap (a late update is both
 * "missing" for the merger and "late" for the driver). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/query.h"
#include "report/report_internal.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The round with the best test accuracy, -1 without any. */
static double best_round(const rep_data_t *d, const double *acc)
{
    double best = -1, r = -1;
    for (size_t i = 0; i < d->nr; i++)
        if (isfinite(acc[i]) && acc[i] > best)
            best = acc[i], r = d->x[i];
    return r;
}

void rep_sec_accuracy(const rep_data_t *d, double *acc, double *tl, double *trl,
                      flc_html_t *o)
{
    for (size_t i = 0; i < d->nr; i++) {
        acc[i] = rep_metric(d, i, "test_accuracy") * 100;
        tl[i] = rep_metric(d, i, "test_loss");
        trl[i] = rep_metric(d, i, "train_loss");
    }
    double best = best_round(d, acc);
    char mark[64];
    if (best >= 0)
        snprintf(mark, sizeof mark, "best: round %g", best);
    rep_section_open(o, "accuracy", "Accuracy per round",
                     "Test accuracy of the global model after each round, in percent; the "
                     "dashed line marks the best round. Up and flat is good; a drop is a round "
                     "that hurt the model.");
    const double *ys[] = {acc};
    const char *names[] = {"test accuracy"};
    if (best < 0)
        rep_absent(o, "No accuracy recorded for this job's rounds (the driver evaluates the "
                      "global model; a job of outside clients has no test set).");
    else
        rep_lines(o, d, "test accuracy per round", "test accuracy (%)", ys, names, 1, 0, best,
                  mark);
    flc_html_printf(o, "<p class=\"how\">Train accuracy is not recorded: clients report "
                    "their local training loss only (below).</p>");
    rep_section_close(o);
    rep_section_open(o, "loss", "Loss per round",
                     "Cross-entropy of the global model on the test set, and the sample-"
                     "weighted local training loss of the round's merged clients (no unit). "
                     "Train far below test means the clients fit their own data more than "
                     "the shared task.");
    const double *ls[] = {tl, trl};
    const char *ln[] = {"test loss", "train loss (clients)"};
    int any = 0;
    for (size_t i = 0; i < d->nr; i++)
        any |= isfinite(tl[i]) || isfinite(trl[i]);
    if (any)
        rep_lines(o, d, "test and train loss per round", "loss", ls, ln, 2, 1, best, mark);
    else
        rep_absent(o, "No loss recorded for this job's rounds.");
    rep_section_close(o);
}

void rep_sec_participation(const rep_data_t *d, flc_html_t *o, double *buf)
{
    size_t n = d->nr;
    double *acc = buf, *rej = buf + n, *late = buf + 2 * n, *drop = buf + 3 * n,
           *miss = buf + 4 * n;
    for (size_t i = 0; i < n; i++) {
        acc[i] = rej[i] = late[i] = drop[i] = miss[i] = 0;
        const Flcache__RoundMeta *m = d->meta[i];
        if (d->nups[i] == 0) { /* no update records: the merger's counts */
            if (m)
                acc[i] = (double)m->n_participants, rej[i] = (double)m->n_rejected,
                miss[i] = (double)m->n_missing;
            continue;
        }
        for (size_t k = 0; k < d->nups[i]; k++) {
            const char *st = d->ups[i][k]->status;
            if (strcmp(st, "accepted") == 0)
                acc[i]++;
            else if (strcmp(st, "late") == 0)
                late[i]++;
            else if (strcmp(st, "dropped") == 0)
                drop[i]++;
            else
                rej[i]++;
        }
        /* expected clients that left no record at all */
        size_t exp = m ? m->n_expected : 0;
        miss[i] = exp > d->nups[i] ? (double)(exp - d->nups[i]) : 0;
    }
    rep_section_open(o, "participation", "Participation per round",
                     "Each expected client of a round counted once, by what became of its "
                     "update: merged, rejected by the rule (NaN/Inf, not selected by Krum), "
                     "late (pushed after the round closed), dropped (never reported), or "
                     "missing (no record at all). A bar's height is the clients asked.");
    flc_svg_axes_t a = {.kind = "bars", .title = "clients per round by outcome",
                        .xlabel = "round", .ylabel = "clients", .xint = 1, .yzero = 1,
                        .xlo = d->x[0], .xhi = d->x[n - 1], .ylo = 0, .yhi = 1};
    for (size_t i = 0; i < n; i++) {
        double t = acc[i] + rej[i] + late[i] + drop[i] + miss[i];
        a.yhi = t > a.yhi ? t : a.yhi;
    }
    const double *ys[] = {acc, rej, late, drop, miss};
    const char *names[] = {"merged", "rejected", "late", "dropped", "missing"};
    int colors[] = {2, 3, 1, 6, 7};
    flc_svg_t p;
    flc_svg_begin(&p, o, &a);
    flc_svg_stack(&p, d->x, n, ys, 5, colors, names, "round");
    flc_svg_end(&p);
    flc_svg_legend(o, names, colors, 5);
    rep_section_close(o);
}

void rep_sec_time_cost(const rep_data_t *d, flc_html_t *o, double *buf)
{
    size_t n = d->nr;
    double *wait = buf, *merge = buf + n, *rest = buf + 2 * n, *cost = buf + 3 * n,
           *cum = buf + 4 * n;
    double mx = 0, total = 0;
    int any_cost = 0;
    for (size_t i = 0; i < n; i++) {
        const Flcache__RoundMeta *m = d->meta[i];
        wait[i] = m ? m->wait_ms : NAN;
        merge[i] = m ? m->merge_ms : NAN;
        rest[i] = m ? m->round_ms - m->wait_ms - m->merge_ms : NAN;
        rest[i] = rest[i] > 0 ? rest[i] : 0;
        double t = m ? (m->round_ms > m->wait_ms + m->merge_ms ? m->round_ms
                                                               : m->wait_ms + m->merge_ms)
                     : 0;
        mx = t > mx ? t : mx;
        cost[i] = m ? m->cost_usd : NAN;
        any_cost |= m && m->cost_usd > 0;
        total += m ? m->cost_usd : 0;
        cum[i] = total;
    }
    rep_section_open(o, "time", "Round time",
                     "Milliseconds per round: the mergers waiting for contributions, merging "
                     "them, and the rest of the round (starting clients, evaluating the "
                     "model). A tall wait is a slow client or a deadline.");
    flc_svg_axes_t a = {.kind = "bars", .title = "round time split", .xlabel = "round",
                        .ylabel = "time (ms)", .xint = 1, .yzero = 1, .xlo = d->x[0],
                        .xhi = d->x[n - 1], .ylo = 0, .yhi = mx > 0 ? mx : 1};
    const double *ys[] = {wait, merge, rest};
    const char *names[] = {"waiting", "merging", "rest of the round"};
    int colors[] = {5, 0, 6};
    flc_svg_t p;
    flc_svg_begin(&p, o, &a);
    flc_svg_stack(&p, d->x, n, ys, 3, colors, names, "round");
    flc_svg_end(&p);
    flc_svg_legend(o, names, colors, 3);
    rep_section_close(o);

    rep_section_open(o, "cost", "Cost per round and cumulative",
                     "US dollars as the function platform bills them: the clients' "
                     "invocations plus the mergers' time at the function's memory. Bars: "
                     "each round; line (second plot): the running total.");
    if (!any_cost) {
        rep_absent(o, "No cost recorded for this job's rounds.");
    } else {
        double cmax = 0;
        for (size_t i = 0; i < n; i++)
            cmax = isfinite(cost[i]) && cost[i] > cmax ? cost[i] : cmax;
        flc_svg_axes_t c = {.kind = "bars", .title = "cost per round", .xlabel = "round",
                            .ylabel = "cost (USD)", .xint = 1, .yzero = 1, .xlo = d->x[0],
                            .xhi = d->x[n - 1], .ylo = 0, .yhi = cmax, .h = 200};
        const double *cs[] = {cost};
        const char *cn[] = {"cost"};
        int cc[] = {1};
        flc_svg_begin(&p, o, &c);
        flc_svg_stack(&p, d->x, n, cs, 1, cc, cn, "round");
        flc_svg_end(&p);
        const double *ls[] = {cum};
        const char *lnm[] = {"cumulative cost"};
        rep_lines(o, d, "cumulative cost", "cumulative cost (USD)", ls, lnm, 1, 1, -1, NULL);
        char t[96];
        snprintf(t, sizeof t, "Total: $%.6f over %zu rounds.", total, n);
        flc_html_printf(o, "<p>%s</p>", t);
    }
    rep_section_close(o);
}

void rep_sec_heat(const rep_data_t *d, flc_html_t *o)
{
    rep_section_open(o, "outliers", "Outlier suspicion per client and round",
                     "One row per client, one column per round; darker is more unlike the "
                     "round's other updates (the query engine's `outliers` score: direction "
                     "against the most central update, size and Krum isolation, 0 = typical). "
                     "The darkest colour is the 95th percentile of the scores or more. Grey: the "
                     "client sent no update that round. A red triangle marks a client the "
                     "simulation made faulty (its ground truth).");
    if (d->susp_rounds == 0 || d->nc == 0) {
        char why[560];
        snprintf(why, sizeof why, "No round's updates could be scored%s%s",
                 d->susp_err[0] ? ": " : " (no updates in the cache).", d->susp_err);
        rep_absent(o, why);
        rep_section_close(o);
        return;
    }
    /* The colour scale ends at the 95th percentile (at least 1, "clearly
     * unlike the others"): one attacker 50x off the rest would otherwise
     * leave every other cell the palest colour. */
    double *v = malloc(d->nc * d->nr * sizeof *v + 1), vmax = 1;
    size_t nv = 0;
    for (size_t i = 0; v && i < d->nc * d->nr; i++)
        if (isfinite(d->susp[i]))
            v[nv++] = d->susp[i];
    if (nv > 0) {
        qsort(v, nv, sizeof *v, cmp_double);
        vmax = v[(size_t)floor(0.95 * (double)(nv - 1))];
        vmax = vmax > 1 ? vmax : 1;
    }
    free(v);
    flc_svg_heat(o, "outlier suspicion, clients x rounds", (const char *const *)d->clients,
                 d->truth ? d->faulty : NULL, d->nc, d->x, d->nr, d->susp, vmax, "round",
                 "client");
    if (d->susp_rounds < d->nr && d->susp_err[0]) {
        char why[560];
        snprintf(why, sizeof why, "%zu of %zu rounds could not be scored (first: %s).",
                 d->nr - d->susp_rounds, d->nr, d->susp_err);
        rep_absent(o, why);
    }
    rep_section_close(o);
}
