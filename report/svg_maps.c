/* svg_maps.c - the plots whose rows are clients: the heat map (clients x
 * rounds), horizontal bars (a ranking) and the scatter of a 2-D map.
 *
 * Row heights shrink with the number of rows so 100 clients fit in a
 * screen's height; labels are then written on every k-th row only, while
 * the ground-truth marks (faulty clients) are drawn on every row, since
 * they are the point of the picture. A heat cell is one short <rect> with
 * a level class, inside its row's <g> (which carries the client id), so
 * 100 clients x 50 rounds stay under 300 KB. */
#include <math.h>
#include <stdio.h>

#include "report/svg.h"

/* Row height for n rows, and every how many rows a label fits. */
static int row_h(size_t n)
{
    return n <= 30 ? 12 : n <= 60 ? 8 : 5;
}

static size_t label_every(int rh)
{
    return rh >= 8 ? 1 : (size_t)ceil(9.0 / rh);
}

static void row_label(flc_html_t *o, int x, double y, int rh, const char *name, int marked)
{
    flc_html_printf(o, "<text class=\"rl\" x=\"%d\" y=\"%.1f\" text-anchor=\"end\"%s>", x,
                    y + rh / 2.0 + (rh >= 10 ? 4 : 3),
                    rh < 10 ? " style=\"font-size:8px\"" : "");
    flc_html_esc(o, name);
    flc_html_printf(o, "</text>");
    if (marked)
        flc_html_printf(o, "<path class=\"truth\" d=\"M%d %.1fl5 %.1fl-5 %.1fz\"/>", x + 3,
                        y, rh / 2.0, rh / 2.0);
}

void flc_svg_heat(flc_html_t *o, const char *title, const char *const *rows,
                  const unsigned char *marked, size_t nrow, const double *cols, size_t ncol,
                  const double *v, double vmax, const char *xlabel, const char *ylabel)
{
    int rh = row_h(nrow), ml = 84, mr = 10, mt = 8, mb = 40;
    int h = mt + (int)nrow * rh + mb;
    double cw = ncol ? (double)(FLC_SVG_W - ml - mr) / (double)ncol : 1;
    size_t every = label_every(rh);
    int titles = nrow * ncol <= 1500; /* tooltips while the page stays small */
    flc_html_printf(o, "<svg class=\"plot\" data-kind=\"heat\" viewBox=\"0 0 %d %d\" "
                    "role=\"img\" aria-label=\"", FLC_SVG_W, h);
    flc_html_esc(o, title);
    flc_html_printf(o, "\"><rect class=\"nocell\" x=\"%d\" y=\"%d\" width=\"%d\" "
                    "height=\"%d\"/>", ml, mt, FLC_SVG_W - ml - mr, (int)nrow * rh);
    for (size_t r = 0; r < nrow; r++) {
        double y = mt + (double)r * rh;
        if (r % every == 0 || (marked && marked[r]))
            row_label(o, ml - 10, y, rh, r % every == 0 ? rows[r] : "",
                      marked && marked[r]);
        flc_html_printf(o, "<g data-c=\"");
        flc_html_esc(o, rows[r]);
        flc_html_printf(o, "\" transform=\"translate(0 %.0f)\">", y);
        for (size_t c = 0; c < ncol; c++) {
            double x = v[r * ncol + c];
            if (!isfinite(x))
                continue;
            int lv = vmax > 0 ? (int)(x / vmax * FLC_SVG_NHEAT) : 0;
            lv = lv < 0 ? 0 : lv >= FLC_SVG_NHEAT ? FLC_SVG_NHEAT - 1 : lv;
            flc_html_printf(o, "<rect class=\"h%d\" data-r=\"%g\" x=\"%.1f\" width=\"%.1f\" "
                            "height=\"%d\"", lv, cols[c], ml + c * cw, cw, rh);
            if (titles) {
                flc_html_printf(o, "><title>");
                flc_html_esc(o, rows[r]);
                flc_html_printf(o, ", round %g: %.3f</title></rect>", cols[c], x);
            } else {
                flc_html_printf(o, "/>");
            }
        }
        flc_html_printf(o, "</g>");
    }
    /* Round ticks: at columns whose round is a multiple of a nice step. */
    double lo = ncol ? cols[0] : 0, hi = ncol ? cols[ncol - 1] : 1;
    double step = flc_svg_step(lo, hi, 8, 1);
    int yb = mt + (int)nrow * rh;
    for (size_t c = 0; c < ncol; c++) {
        if (fmod(cols[c], step) != 0 && !(ncol <= 12))
            continue;
        double x = ml + (c + 0.5) * cw;
        flc_html_printf(o, "<line class=\"ax\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\"/>"
                        "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>", x, x, yb,
                        yb + 4, x, yb + 16, cols[c]);
    }
    flc_html_printf(o, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">",
                    (ml + FLC_SVG_W - mr) / 2, h - 6);
    flc_html_esc(o, xlabel);
    flc_html_printf(o, "</text><text transform=\"translate(11 %d) rotate(-90)\" "
                    "text-anchor=\"middle\">", mt + (int)nrow * rh / 2);
    flc_html_esc(o, ylabel);
    flc_html_printf(o, "</text></svg><div class=\"legend\">0 ");
    for (int l = 0; l < FLC_SVG_NHEAT; l++)
        flc_html_printf(o, "<i class=\"hk%d\"></i>", l);
    flc_html_printf(o, " %.3g or more (each colour is one eighth of the range; grey: no "
                    "update that round)</div>", vmax);
}

void flc_svg_hbars(flc_html_t *o, const char *title, const char *const *labels,
                   const double *v, const unsigned char *marked, size_t n, const char *xlabel)
{
    int rh = n <= 30 ? 14 : n <= 60 ? 9 : 6;
    flc_svg_t p = {.out = o, .w = FLC_SVG_W, .ml = 84, .mr = 14, .mt = 8, .mb = 40};
    p.h = p.mt + (int)n * rh + p.mb;
    double lo = 0, hi = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(v[i]))
            lo = v[i] < lo ? v[i] : lo, hi = v[i] > hi ? v[i] : hi;
    if (hi <= lo)
        hi = lo + 1;
    double step = flc_svg_step(lo, hi, 6, 0);
    p.x0 = floor(lo / step + 1e-9) * step;
    p.x1 = ceil(hi / step - 1e-9) * step;
    flc_html_printf(o, "<svg class=\"plot\" data-kind=\"hbars\" viewBox=\"0 0 %d %d\" "
                    "role=\"img\" aria-label=\"", p.w, p.h);
    flc_html_esc(o, title);
    flc_html_printf(o, "\">");
    double t[16];
    char lab[32];
    int nt = flc_svg_ticks(p.x0, p.x1, 6, 0, t, 16), yb = p.h - p.mb;
    for (int i = 0; i < nt; i++) {
        double x = flc_svg_x(&p, t[i]);
        flc_svg_tick_label(lab, sizeof lab, t[i], step);
        flc_html_printf(o, "<line class=\"gr\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\"/>"
                        "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>", x, x,
                        p.mt, yb, x, yb + 16, lab);
    }
    size_t every = label_every(rh);
    double x0 = flc_svg_x(&p, 0);
    for (size_t i = 0; i < n; i++) {
        double y = p.mt + (double)i * rh;
        int mk = marked && marked[i];
        if (i % every == 0 || mk)
            row_label(o, p.ml - 10, y, rh, i % every == 0 ? labels[i] : "", mk);
        if (!isfinite(v[i]))
            continue;
        double x1 = flc_svg_x(&p, v[i]);
        flc_html_printf(o, "<rect class=\"c%d\" data-c=\"", mk ? 3 : 0);
        flc_html_esc(o, labels[i]);
        flc_html_printf(o, "\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"><title>",
                        x1 < x0 ? x1 : x0, y + rh * 0.12, fabs(x1 - x0), rh * 0.76);
        flc_html_esc(o, labels[i]);
        flc_html_printf(o, ": %.4g</title></rect>", v[i]);
    }
    flc_html_printf(o, "<path class=\"ax\" d=\"M%.1f %dV%d\"/><path class=\"ax\" "
                    "d=\"M%d %dH%d\"/><text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", x0,
                    p.mt, yb, p.ml, yb, p.w - p.mr, (p.ml + p.w - p.mr) / 2, p.h - 6);
    flc_html_esc(o, xlabel);
    flc_html_printf(o, "</text></svg>");
}

void flc_svg_scatter(flc_svg_t *p, const double *x, const double *y, size_t n,
                     const int *group, const unsigned char *marked, const char *const *label)
{
    flc_html_t *o = p->out;
    for (size_t i = 0; i < n; i++) {
        double cx = flc_svg_x(p, x[i]), cy = flc_svg_y(p, y[i]);
        if (marked && marked[i])
            flc_html_printf(o, "<circle class=\"flt\" cx=\"%.1f\" cy=\"%.1f\" r=\"7\"/>", cx,
                            cy);
        flc_html_printf(o, "<circle class=\"c%d\" data-c=\"", group[i] % FLC_SVG_NCOL);
        flc_html_esc(o, label[i]);
        flc_html_printf(o, "\" cx=\"%.1f\" cy=\"%.1f\" r=\"4\"><title>", cx, cy);
        flc_html_esc(o, label[i]);
        flc_html_printf(o, ": cluster %d%s</title></circle>", group[i],
                        marked && marked[i] ? ", faulty (ground truth)" : "");
    }
}
