/* report_page.c - the page around the sections: head and stylesheet, the
 * job's summary, the section frame, and the line plot most sections use.
 *
 * The stylesheet is inline and small; plots scale to the window (viewBox,
 * width 100%), sections stack in one column, and a print stylesheet keeps
 * colours and avoids cutting a plot across pages. No script: tooltips are
 * SVG <title>s, which every browser shows without one. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "report/report_internal.h"

static const char PAGE_CSS[] =
    "body{font:14px/1.45 sans-serif;margin:0 auto;max-width:800px;padding:0 12px;"
    "color:#111;background:#fff}"
    "h1{font-size:1.4em;margin:.8em 0 .2em}h2{font-size:1.15em;margin:1.4em 0 .2em}"
    "p.how{margin:.1em 0 .5em;color:#333}p.absent{color:#6a4a00;background:#fff8e0;"
    "padding:.4em .6em}"
    "table.sum{border-collapse:collapse;margin:.4em 0}table.sum td{padding:.1em .8em .1em 0;"
    "vertical-align:top}table.sum td:first-child{color:#555}"
    "code{font-size:.92em;word-break:break-all}section{break-inside:avoid}"
    "footer{margin:2em 0 1em;color:#666;font-size:.9em}"
    "@media print{body{max-width:none}*{-webkit-print-color-adjust:exact;"
    "print-color-adjust:exact}}";

void rep_section_open(flc_html_t *o, const char *id, const char *title, const char *how)
{
    flc_html_printf(o, "<section id=\"%s\"><h2>", id);
    flc_html_esc(o, title);
    flc_html_printf(o, "</h2><p class=\"how\">");
    flc_html_esc(o, how);
    flc_html_printf(o, "</p>");
}

void rep_section_close(flc_html_t *o)
{
    flc_html_printf(o, "</section>\n");
}

void rep_absent(flc_html_t *o, const char *why)
{
    flc_html_printf(o, "<p class=\"absent\">");
    flc_html_esc(o, why);
    flc_html_printf(o, "</p>");
}

void rep_lines(flc_html_t *o, const rep_data_t *d, const char *title, const char *ylabel,
               const double *const *ys, const char *const *names, size_t ns, int yzero,
               double mark, const char *mark_label)
{
    flc_svg_axes_t a = {.kind = "line", .title = title, .ylabel = ylabel,
                        .xlabel = d->train ? "epoch" : "round", .xint = 1, .yzero = yzero,
                        .xlo = d->x[0], .xhi = d->x[d->nr - 1], .ylo = INFINITY,
                        .yhi = -INFINITY};
    for (size_t s = 0; s < ns; s++)
        for (size_t i = 0; i < d->nr; i++)
            if (isfinite(ys[s][i])) {
                a.ylo = ys[s][i] < a.ylo ? ys[s][i] : a.ylo;
                a.yhi = ys[s][i] > a.yhi ? ys[s][i] : a.yhi;
            }
    flc_svg_t p;
    flc_svg_begin(&p, o, &a);
    for (size_t s = 0; s < ns; s++)
        flc_svg_line(&p, d->x, ys[s], d->nr, (int)s, names[s], a.xlabel);
    if (mark >= 0)
        flc_svg_vmark(&p, mark, mark_label);
    flc_svg_end(&p);
    int colors[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    if (ns > 1)
        flc_svg_legend(o, names, colors, ns < 8 ? ns : 8);
}

static void sum_row(flc_html_t *o, const char *k, const char *v)
{
    flc_html_printf(o, "<tr><td>%s</td><td>", k);
    flc_html_esc(o, v);
    flc_html_printf(o, "</td></tr>");
}

static void summary(flc_html_t *o, const rep_data_t *d, const flc_report_opts_t *opt)
{
    char buf[512];
    flc_html_printf(o, "<table class=\"sum\">");
    sum_row(o, "kind", d->train ? "training job (flcache train): one round per epoch"
                                : "federated job (flcache simulate or clients)");
    snprintf(buf, sizeof buf, "%zu (%u..%u)", d->nr, d->rounds[0], d->rounds[d->nr - 1]);
    sum_row(o, d->train ? "epochs" : "rounds", buf);
    if (!d->train) {
        size_t nf = 0;
        for (size_t i = 0; i < d->nc; i++)
            nf += d->faulty ? d->faulty[i] : 0;
        if (d->truth)
            snprintf(buf, sizeof buf, "%zu, %zu faulty by the simulation's ground truth",
                     d->nc, nf);
        else
            snprintf(buf, sizeof buf, "%zu (no ground truth recorded)", d->nc);
        sum_row(o, "clients", buf);
    } else {
        snprintf(buf, sizeof buf, "%g", rep_hyper(d, "workers"));
        sum_row(o, "workers", buf);
    }
    const Flcache__RoundMeta *m = NULL;
    for (size_t i = 0; i < d->nr && !m; i++)
        m = d->meta[i];
    if (m) {
        const char *model = rep_note(d, "model");
        snprintf(buf, sizeof buf, "%s%s%s, %llu parameters, %u shard(s)",
                 d->train ? "" : m->rule, d->train ? "" : ", ", model ? model : "model",
                 (unsigned long long)m->model_size, m->num_shards);
        sum_row(o, d->train ? "model" : "rule, model", buf);
    }
    const char *strategy = rep_note(d, "strategy"), *fault = rep_note(d, "fault");
    if (strategy)
        sum_row(o, "strategy", strategy);
    if (fault && strcmp(fault, "none") != 0)
        sum_row(o, "fault", fault);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
    sum_row(o, "made", buf);
    flc_html_printf(o, "</table>");
    if (opt->command) {
        flc_html_printf(o, "<p>Made by <code>");
        flc_html_esc(o, opt->command);
        flc_html_printf(o, "</code> from the cache's records only.</p>");
    }
}

int flc_report_write(flc_store_t *s, const flc_report_opts_t *o, flc_html_t *out,
                     flc_err_t *e)
{
    if (o->job == NULL || !*o->job)
        return flc_err_set(e, FLC_EINVAL, "report: which job? (--job J)");
    /* A job `flcache tune` sized has a tune record; a tune of its own
     * (the probes ran on a private cache) has nothing else, and its page
     * is that section alone. */
    cJSON *tune = NULL;
    flc_err_t te = {0};
    int has_tune = 0;
    if (rep_tune_load(s, o->job, &tune, &has_tune, &te) != FLC_OK)
        has_tune = 0; /* unreadable: the job's own sections still come */
    rep_data_t d;
    int rc = rep_load(s, o, &d, e);
    int tune_only = rc == FLC_ENOTFOUND && has_tune;
    if (rc != FLC_OK && !tune_only) {
        rep_free(&d);
        cJSON_Delete(tune);
        return rc;
    }
    flc_html_printf(out, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                    "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
                    "<title>flcache report: ");
    flc_html_esc(out, o->job);
    flc_html_printf(out, "</title><style>%s%s</style></head>\n<body><h1>Job ", PAGE_CSS,
                    flc_svg_css());
    flc_html_esc(out, o->job);
    flc_html_printf(out, "</h1>");
    if (tune_only) {
        flc_html_printf(out, "<p>No round of this job is in the cache (a `run` workload "
                        "keeps none; a tune on a private cache leaves none): its sizing "
                        "record is what is here.</p>");
        rc = FLC_OK;
    } else {
        summary(out, &d, o);
        rc = d.train ? rep_train_sections(&d, out) : rep_sim_sections(s, o, &d, out, e);
    }
    if (rc == FLC_OK && has_tune)
        rep_tune_section(tune, out);
    cJSON_Delete(tune);
    flc_html_printf(out, "<footer>flcache report: every number on this page was read from "
                    "the cache (round metadata, update records, and queries run next to "
                    "the data). Hover a mark for its value.</footer></body></html>\n");
    rep_free(&d);
    if (rc == FLC_OK && flc_html_failed(out))
        rc = flc_err_set(e, FLC_ENOMEM, "report of %s: out of memory", o->job);
    return rc;
}
