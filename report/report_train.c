/* report_train.c - the sections of a training job (flcache train): loss and
 * accuracy per epoch, step time, the compute/communication split and cost.
 *
 * What the cache holds of a training job is worker 0's RoundMeta per epoch
 * (workers/sgd_record.c): the other workers' splits are in their function
 * results, which the cache does not keep, so the split is worker 0's and
 * the page says so rather than inventing the others. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "report/report_internal.h"

#define MAX_WORKERS 1024

/* Every worker's compute and communication over the run, from the
 * worker<k>_*_ms metrics of epoch index last (cli/train_report.c). */
static void rep_worker_split(const rep_data_t *d, flc_html_t *o, size_t last)
{
    size_t w = 0;
    char key[40];
    while (w < MAX_WORKERS) {
        snprintf(key, sizeof key, "worker%zu_compute_ms", w);
        if (!isfinite(rep_metric(d, last, key)))
            break;
        w++;
    }
    if (w == 0) {
        rep_absent(o, "No per-worker split stored (a run before this was recorded, or "
                      "one that failed).");
        return;
    }
    double *b = malloc(3 * w * sizeof *b);
    if (b == NULL)
        return;
    double *x = b, *comp = b + w, *comm = b + 2 * w;
    flc_svg_axes_t a = {.kind = "bars", .title = "compute and communication per worker",
                        .xlabel = "worker", .ylabel = "time over the run (ms)", .xint = 1,
                        .yzero = 1, .xlo = 0, .xhi = (double)(w - 1), .ylo = 0, .yhi = 1};
    for (size_t k = 0; k < w; k++) {
        x[k] = (double)k;
        snprintf(key, sizeof key, "worker%zu_compute_ms", k);
        comp[k] = rep_metric(d, last, key);
        snprintf(key, sizeof key, "worker%zu_comm_ms", k);
        comm[k] = rep_metric(d, last, key);
        double t = (isfinite(comp[k]) ? comp[k] : 0) + (isfinite(comm[k]) ? comm[k] : 0);
        a.yhi = t > a.yhi ? t : a.yhi;
    }
    const double *ys[] = {comp, comm};
    const char *yn[] = {"compute", "communication"};
    int yc[] = {0, 1};
    flc_svg_t p;
    flc_svg_begin(&p, o, &a);
    flc_svg_stack(&p, x, w, ys, 2, yc, yn, "worker");
    flc_svg_end(&p);
    free(b);
}

int rep_train_sections(const rep_data_t *d, flc_html_t *o)
{
    size_t n = d->nr;
    double *b = malloc(8 * n * sizeof *b);
    if (b == NULL)
        return FLC_ENOMEM;
    double *trl = b, *tl = b + n, *acc = b + 2 * n, *mean = b + 3 * n, *p50 = b + 4 * n,
           *mx = b + 5 * n, *comp = b + 6 * n, *comm = b + 7 * n;
    double best = -1, bestv = -1;
    for (size_t i = 0; i < n; i++) {
        trl[i] = rep_metric(d, i, "train_loss");
        tl[i] = rep_metric(d, i, "test_loss");
        acc[i] = rep_metric(d, i, "test_accuracy") * 100;
        mean[i] = rep_metric(d, i, "step_ms_mean");
        p50[i] = rep_metric(d, i, "step_ms_p50");
        mx[i] = rep_metric(d, i, "step_ms_max");
        comp[i] = rep_metric(d, i, "compute_ms");
        comm[i] = rep_metric(d, i, "comm_ms");
        if (isfinite(acc[i]) && acc[i] > bestv)
            bestv = acc[i], best = d->x[i];
    }
    char mark[64];
    snprintf(mark, sizeof mark, "best: epoch %g", best);
    flc_html_printf(o, "<nav>Sections: <a href=\"#loss\">loss</a> · <a href=\"#accuracy\">"
                    "accuracy</a> · <a href=\"#steps\">step time</a> · <a href=\"#split\">"
                    "compute vs communication</a> · <a href=\"#cost\">cost</a></nav>\n");
    rep_section_open(o, "loss", "Loss per epoch",
                     "Training loss (mean over the workers' steps of the epoch) and test "
                     "loss of the model after the epoch (cross-entropy, no unit).");
    const double *ls[] = {trl, tl};
    const char *ln[] = {"train loss", "test loss"};
    rep_lines(o, d, "loss per epoch", "loss", ls, ln, 2, 1, best, mark);
    rep_section_close(o);

    rep_section_open(o, "accuracy", "Accuracy per epoch",
                     "Test accuracy after each epoch, in percent; the dashed line marks the "
                     "best epoch. Train accuracy is not recorded by the workers.");
    const double *as[] = {acc};
    const char *an[] = {"test accuracy"};
    if (best >= 0)
        rep_lines(o, d, "test accuracy per epoch", "test accuracy (%)", as, an, 1, 0, best,
                  mark);
    else
        rep_absent(o, "No accuracy recorded for this job's epochs.");
    rep_section_close(o);

    rep_section_open(o, "steps", "Step time",
                     "Milliseconds per SGD step of worker 0 in each epoch (compute, exchange "
                     "of gradients through the cache, apply): mean, median and slowest. A "
                     "max far above the median is a straggling step.");
    const double *ss[] = {mean, p50, mx};
    const char *sn[] = {"mean", "median", "max"};
    rep_lines(o, d, "step time per epoch", "step time (ms)", ss, sn, 3, 1, -1, NULL);
    rep_section_close(o);

    rep_section_open(o, "split", "Compute vs communication",
                     "Milliseconds spent computing (gradients, evaluation) and communicating "
                     "(pushing, waiting, pulling through the cache): worker 0 in each epoch, "
                     "then every worker over the whole run (training steps; loading and "
                     "evaluation apart), which `flcache train` stores with the last epoch. "
                     "A worker with much more communication waits on the others.");
    flc_svg_axes_t a = {.kind = "bars", .title = "compute and communication per epoch",
                        .xlabel = "epoch", .ylabel = "time (ms), worker 0", .xint = 1,
                        .yzero = 1, .xlo = d->x[0], .xhi = d->x[n - 1], .ylo = 0, .yhi = 1};
    for (size_t i = 0; i < n; i++) {
        double t = (isfinite(comp[i]) ? comp[i] : 0) + (isfinite(comm[i]) ? comm[i] : 0);
        a.yhi = t > a.yhi ? t : a.yhi;
    }
    const double *ys[] = {comp, comm};
    const char *yn[] = {"compute", "communication"};
    int yc[] = {0, 1};
    flc_svg_t p;
    flc_svg_begin(&p, o, &a);
    flc_svg_stack(&p, d->x, n, ys, 2, yc, yn, "epoch");
    flc_svg_end(&p);
    flc_svg_legend(o, yn, yc, 2);
    rep_worker_split(d, o, n - 1);
    rep_section_close(o);

    rep_section_open(o, "cost", "Cost per epoch and cumulative",
                     "US dollars: the W workers kept busy for the epoch at the function's "
                     "memory and price per GB-second (the epochs only: loading the data and "
                     "starting the workers are billed too, but are in no epoch's record).");
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        double c = d->meta[i] ? d->meta[i]->cost_usd : NAN;
        comp[i] = c;
        total += isfinite(c) ? c : 0;
        comm[i] = total;
    }
    if (total > 0) {
        const double *cs[] = {comp, comm};
        const char *cn[] = {"per epoch", "cumulative"};
        rep_lines(o, d, "cost per epoch and cumulative", "cost (USD)", cs, cn, 2, 1, -1,
                  NULL);
        flc_html_printf(o, "<p>Total: $%.6f over %zu epochs.</p>", total, n);
    } else {
        rep_absent(o, "No cost recorded (the workers ran without a memory size to bill).");
    }
    rep_section_close(o);
    free(b);
    return flc_html_failed(o) ? FLC_ENOMEM : FLC_OK;
}
