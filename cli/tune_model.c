/* tune_model.c - the time and cost model of `flcache tune` (see tune.h).
 * Two parameters are linear (a, b: weighted least squares in closed form,
 * weights 1/t^2 so that every probe counts by its relative error); the
 * saturation point is chosen among the probed sizes (and "none") by the
 * smallest error, which is all a handful of probes can tell. */
#include <math.h>
#include <stddef.h>

#include "cli/tune.h"

/* Fits a, b >= 0 for x = 1/min(m, sat); returns the RMS relative error. */
static double fit_ab(const flc_tune_probe_t *p, size_t n, double sat, double *a, double *b)
{
    double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (size_t i = 0; i < n; i++) {
        if (!p[i].ok)
            continue;
        double m = p[i].memory_mb, x = 1.0 / (sat > 0 && m > sat ? sat : m), y = p[i].time_s;
        double w = 1.0 / (y * y);
        sw += w, sx += w * x, sy += w * y, sxx += w * x * x, sxy += w * x * y;
    }
    double det = sw * sxx - sx * sx;
    *b = fabs(det) > 1e-300 ? (sw * sxy - sx * sy) / det : 0;
    if (*b < 0)
        *b = 0;
    *a = (sy - *b * sx) / sw;
    if (*a < 0) { /* all CPU: refit b alone through the origin */
        *a = 0;
        *b = sxx > 0 ? sxy / sxx : 0;
    }
    double e2 = 0;
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!p[i].ok)
            continue;
        double m = p[i].memory_mb, x = 1.0 / (sat > 0 && m > sat ? sat : m);
        double r = (*a + *b * x - p[i].time_s) / p[i].time_s;
        e2 += r * r;
        k++;
    }
    return sqrt(e2 / k);
}

int flc_tune_fit(const flc_tune_probe_t *p, size_t n, flc_tune_model_t *m)
{
    int ok = 0;
    double ksum[64];
    for (size_t i = 0; i < n; i++)
        if (p[i].ok && p[i].time_s > 0) {
            if (ok < 64)
                ksum[ok] = p[i].cost_usd / (p[i].memory_mb * p[i].time_s);
            ok++;
        }
    if (ok < 2)
        return -1;
    m->n = ok;
    m->sat = 0;
    m->err = fit_ab(p, n, 0, &m->a, &m->b);
    /* With 4 or more probes (3 would fit a, b and sat exactly, whatever the
     * noise), try saturation points on a log grid from the
     * second smallest probe to the largest (two probes below one are
     * needed to see the slope); keep one only when it explains clearly
     * better (a third less error). */
    double lo2 = INFINITY, lo1 = INFINITY, hi = 0;
    for (size_t i = 0; i < n; i++) {
        if (!p[i].ok)
            continue;
        double mb = p[i].memory_mb;
        if (mb < lo1)
            lo2 = lo1, lo1 = mb;
        else if (mb < lo2)
            lo2 = mb;
        if (mb > hi)
            hi = mb;
    }
    for (int g = 0; ok >= 4 && g <= 96 && lo2 < hi; g++) {
        double a, b, sat = lo2 * pow(hi / lo2, g / 96.0);
        double err = fit_ab(p, n, sat, &a, &b);
        if (err < m->err * 0.67 || (m->sat > 0 && err < m->err)) {
            m->a = a, m->b = b, m->sat = sat, m->err = err;
        }
    }
    /* k: the median over the probes (robust to one noisy probe). */
    int cnt = ok < 64 ? ok : 64;
    for (int i = 1; i < cnt; i++)
        for (int j = i; j > 0 && ksum[j] < ksum[j - 1]; j--) {
            double t = ksum[j];
            ksum[j] = ksum[j - 1];
            ksum[j - 1] = t;
        }
    m->k = cnt % 2 ? ksum[cnt / 2] : (ksum[cnt / 2 - 1] + ksum[cnt / 2]) / 2;
    return 0;
}

double flc_tune_time(const flc_tune_model_t *m, double memory_mb)
{
    double x = m->sat > 0 && memory_mb > m->sat ? m->sat : memory_mb;
    return m->a + m->b / x;
}

double flc_tune_cost(const flc_tune_model_t *m, double memory_mb)
{
    return m->k * memory_mb * flc_tune_time(m, memory_mb);
}

unsigned flc_tune_pick(const flc_tune_model_t *m, unsigned lo, unsigned hi, unsigned step,
                       double deadline_s, unsigned max_bad)
{
    unsigned best = 0;
    double best_cost = INFINITY;
    for (unsigned mb = lo;;) {
        double c = flc_tune_cost(m, mb);
        if (mb > max_bad && (deadline_s <= 0 || flc_tune_time(m, mb) <= deadline_s) &&
            c < best_cost * (1 - 1e-9)) {
            best_cost = c;
            best = mb;
        }
        if (mb >= hi)
            break;
        unsigned next = (mb / step + 1) * step;
        mb = next > hi ? hi : next;
    }
    return best;
}
