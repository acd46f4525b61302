/* report_tune.c - the sizing section of a job's page: what `flcache tune`
 * measured and fitted (issue 20: the curve "as a plot in the report"),
 * read from the job's tune record (cache/store_tune.h; tune's JSON, as
 * cli/tune_record.c writes it).
 *
 * Two plots against memory: the job's time and its billed cost. Probes are
 * points (data-mb, data-v: their measured values, so a test can match them
 * to the record), the fitted model is a line, the recommendation a
 * vertical mark, the deadline a horizontal one. A probe that failed or was
 * stopped at the deadline has no cost; on the time plot it is a ring at the
 * time it had reached (a lower bound), not a measurement. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cache/store_tune.h"
#include "report/report_internal.h"

#define MAX_PTS 256

int rep_tune_load(flc_store_t *s, const char *job, cJSON **rec, int *found, flc_err_t *e)
{
    *rec = NULL;
    *found = 0;
    char *blob = NULL;
    size_t len = 0;
    int rc = flc_store_tune_get(s, job, &blob, &len);
    if (rc == FLC_ENOTFOUND)
        return FLC_OK;
    if (rc != FLC_OK) {
        *e = *flc_store_error(s);
        return rc;
    }
    *found = 1;
    *rec = cJSON_ParseWithLength(blob, len);
    free(blob);
    /* A record that does not parse is reported on the page, not fatal. */
    return FLC_OK;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* One plot: the model's curve (field `key` of curve points), the probes,
 * the pick, the deadline (time only). */
static void tune_plot(flc_html_t *o, const cJSON *t, const char *key, const char *title,
                      const char *ylabel, int is_time)
{
    const cJSON *curve = cJSON_GetObjectItemCaseSensitive(t, "curve_fine");
    if (!cJSON_IsArray(curve))
        curve = cJSON_GetObjectItemCaseSensitive(t, "curve");
    const cJSON *probes = cJSON_GetObjectItemCaseSensitive(t, "probes");
    double cx[MAX_PTS], cy[MAX_PTS], px[MAX_PTS], py[MAX_PTS];
    int pok[MAX_PTS], pcut[MAX_PTS];
    size_t nc = 0, np = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, curve) {
        if (nc < MAX_PTS && isfinite(num(x, "memory_mb")) && isfinite(num(x, key)))
            cx[nc] = num(x, "memory_mb"), cy[nc++] = num(x, key);
    }
    cJSON_ArrayForEach(x, probes) {
        const cJSON *ok = cJSON_GetObjectItemCaseSensitive(x, "ok");
        if (np >= MAX_PTS || !isfinite(num(x, "memory_mb")))
            continue;
        pok[np] = cJSON_IsTrue(ok);
        pcut[np] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "cut_at_deadline"));
        double v = num(x, key);
        if (!pok[np] && (!is_time || !pcut[np]))
            continue; /* a failure has no time or cost worth a mark */
        px[np] = num(x, "memory_mb"), py[np++] = v;
    }
    double lo = num(t, "memory_lo"), hi = num(t, "memory_hi"), dl = num(t, "deadline_s");
    double pick = num(t, "recommended_mb");
    flc_svg_axes_t a = {.kind = "scatter", .title = title, .xlabel = "memory (MB)",
                        .ylabel = ylabel, .yzero = 1, .xlo = lo, .xhi = hi, .ylo = INFINITY,
                        .yhi = -INFINITY};
    for (size_t i = 0; i < nc + np; i++) {
        double v = i < nc ? cy[i] : py[i - nc];
        if (isfinite(v))
            a.ylo = v < a.ylo ? v : a.ylo, a.yhi = v > a.yhi ? v : a.yhi;
    }
    /* A deadline far above every time would squash the curve flat: it is
     * drawn only when it is within twice the plot's times, else named. */
    int dl_drawn = is_time && dl > 0 && (!(a.yhi > 0) || dl <= 2 * a.yhi);
    if (dl_drawn)
        a.yhi = dl > a.yhi ? dl : a.yhi;
    flc_svg_t p;
    flc_svg_begin(&p, o, &a);
    if (nc > 0) {
        flc_html_printf(o, "<polyline class=\"ln c0\" data-series=\"model\" points=\"");
        for (size_t i = 0; i < nc; i++)
            flc_html_printf(o, "%s%.1f,%.1f", i ? " " : "", flc_svg_x(&p, cx[i]),
                            flc_svg_y(&p, cy[i]));
        flc_html_printf(o, "\"/>");
    }
    for (size_t i = 0; i < np; i++) {
        if (!isfinite(py[i]))
            continue;
        flc_html_printf(o, "<circle class=\"%s\" data-mb=\"%g\" data-v=\"%.6g\" cx=\"%.1f\" "
                        "cy=\"%.1f\" r=\"3.2\"><title>probe at %g MB: %s%.4g %s</title>"
                        "</circle>", pok[i] ? "c1 probe" : "flt probe cut", px[i], py[i],
                        flc_svg_x(&p, px[i]), flc_svg_y(&p, py[i]), px[i],
                        pok[i] ? "" : "stopped at the deadline after ", py[i],
                        is_time ? "s" : "USD");
    }
    if (dl_drawn) {
        char lab[64];
        snprintf(lab, sizeof lab, "deadline %g s", dl);
        flc_svg_hmark(&p, dl, lab);
    }
    if (pick > 0) {
        char lab[64];
        snprintf(lab, sizeof lab, "recommended: %g MB", pick);
        flc_html_printf(o, "<g class=\"pick\" data-mb=\"%g\">", pick);
        flc_svg_vmark(&p, pick, lab);
        flc_html_printf(o, "</g>");
    }
    flc_svg_end(&p);
    if (is_time && dl > 0 && !dl_drawn)
        flc_html_printf(o, "<p>The deadline, %g s, is above this plot (more than twice its "
                        "longest time).</p>", dl);
}

void rep_tune_section(const cJSON *t, flc_html_t *o)
{
    rep_section_open(o, "tune", "Memory size (flcache tune)",
                     "What `flcache tune` measured for this job: each probe ran the job at "
                     "one memory size with CPU proportional to memory (1 vCPU at 1769 MB, "
                     "as on AWS Lambda). Points are the probes' own time and billed cost "
                     "(a ring: a probe stopped once it could no longer meet the deadline, "
                     "at the time it had reached); the line is the fitted model time = a + "
                     "b / vCPUs, cost = k x memory x time; the dashed vertical line is the "
                     "recommendation, the horizontal one the deadline.");
    if (t == NULL || !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(t, "probes"))) {
        rep_absent(o, "The job's tune record could not be read (not tune's JSON).");
        rep_section_close(o);
        return;
    }
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(t, "model");
    double pick = num(t, "recommended_mb"), dl = num(t, "deadline_s");
    flc_html_printf(o, "<table class=\"sum\">");
    char buf[256];
    /* A choice tune probed with part of the job has extrapolated figures. */
    int x = cJSON_GetObjectItemCaseSensitive(t, "extrapolated_time_s") != NULL;
    if (pick > 0)
        snprintf(buf, sizeof buf, "%g MB: predicted %.3f s, %.3g USD; %s %.3f s, "
                 "%.3g USD", pick, num(t, "predicted_time_s"), num(t, "predicted_cost_usd"),
                 x ? "extrapolated from a short probe" : "measured",
                 num(t, x ? "extrapolated_time_s" : "measured_time_s"),
                 num(t, x ? "extrapolated_cost_usd" : "measured_cost_usd"));
    else
        snprintf(buf, sizeof buf, "none: no size in %g..%g MB %s", num(t, "memory_lo"),
                 num(t, "memory_hi"), dl > 0 ? "meets the deadline" : "ran the job");
    flc_html_printf(o, "<tr><td>recommended</td><td>");
    flc_html_esc(o, buf);
    if (m) {
        snprintf(buf, sizeof buf, "a = %.3f s, b = %.3f s at 1 vCPU%s, rms error %.0f%%",
                 num(m, "a_s"), num(m, "b_s_at_1_vcpu"),
                 num(m, "saturation_mb") > 0 ? ", saturating" : "",
                 100 * num(m, "rms_rel_error"));
        flc_html_printf(o, "</td></tr><tr><td>model</td><td>");
        flc_html_esc(o, buf);
    }
    snprintf(buf, sizeof buf, "%d in %.1f s (%s)",
             cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(t, "probes")),
             num(t, "probe_time_s"), dl > 0 ? "deadline given" : "no deadline");
    flc_html_printf(o, "</td></tr><tr><td>probes</td><td>");
    flc_html_esc(o, buf);
    flc_html_printf(o, "</td></tr></table>");
    if (m == NULL)
        rep_absent(o, "Too few probes succeeded to fit a model: the points only.");
    tune_plot(o, t, "time_s", "job time against memory", "job time (s)", 1);
    tune_plot(o, t, "cost_usd", "cost against memory", "cost (USD)", 0);
    const char *names[] = {"model", "probes"};
    int colors[] = {0, 1};
    flc_svg_legend(o, names, colors, 2);
    rep_section_close(o);
}
