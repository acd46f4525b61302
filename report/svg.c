/* svg.c - axes, ticks, lines and stacked bars of the report's plots.
 *
 * Coordinates are written with one decimal (the viewBox is 640 units wide,
 * so a tenth is far below a pixel) to keep a page of thousands of marks
 * small. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "report/svg.h"

const char *flc_svg_css(void)
{
    /* Okabe-Ito colours (told apart with common colour blindness); heat
     * levels from pale yellow to dark red (YlOrRd). */
    return "svg.plot{width:100%;max-width:760px;height:auto;display:block}"
           "svg text{font:11px sans-serif;fill:#222}"
           /* text is in viewBox units, so it shrinks with the plot: larger
            * in a narrow window keeps ticks readable on a phone */
           "@media (max-width:600px){svg text{font-size:16px}}"
           "svg text.rl{font-size:10px}" /* row labels: as tall as their row allows */
           ".ax{stroke:#444;stroke-width:1;fill:none}.gr{stroke:#ddd;stroke-width:.5}"
           ".ln{fill:none;stroke-width:1.6}"
           ".c0{fill:#0072B2;stroke:#0072B2}.c1{fill:#E69F00;stroke:#E69F00}"
           ".c2{fill:#009E73;stroke:#009E73}.c3{fill:#D55E00;stroke:#D55E00}"
           ".c4{fill:#CC79A7;stroke:#CC79A7}.c5{fill:#56B4E9;stroke:#56B4E9}"
           ".c6{fill:#999999;stroke:#999999}.c7{fill:#000000;stroke:#000000}"
           ".k0{background:#0072B2}.k1{background:#E69F00}.k2{background:#009E73}"
           ".k3{background:#D55E00}.k4{background:#CC79A7}.k5{background:#56B4E9}"
           ".k6{background:#999999}.k7{background:#000000}"
           ".ln.c0,.ln.c1,.ln.c2,.ln.c3,.ln.c4,.ln.c5,.ln.c6,.ln.c7{fill:none}"
           ".h0{fill:#ffffcc}.h1{fill:#ffeda0}.h2{fill:#fed976}.h3{fill:#feb24c}"
           ".h4{fill:#fd8d3c}.h5{fill:#fc4e2a}.h6{fill:#e31a1c}.h7{fill:#b10026}"
           ".hk0{background:#ffffcc}.hk1{background:#ffeda0}.hk2{background:#fed976}"
           ".hk3{background:#feb24c}.hk4{background:#fd8d3c}.hk5{background:#fc4e2a}"
           ".hk6{background:#e31a1c}.hk7{background:#b10026}.nocell{fill:#f4f4f4}"
           ".mark{stroke:#b10026;stroke-dasharray:4 3;stroke-width:1.2}"
           ".truth{fill:#d00}.flt{fill:none;stroke:#000;stroke-width:1.4}"
           ".legend{font:12px sans-serif;margin:.2em 0 .8em}"
           ".legend span{display:inline-block;margin-right:1em;white-space:nowrap}"
           ".legend i{display:inline-block;width:.9em;height:.9em;margin-right:.3em;"
           "vertical-align:-.1em}";
}

double flc_svg_step(double lo, double hi, int want, int integer)
{
    double range = hi - lo;
    if (!(range > 0) || want < 1)
        return integer ? 1 : (fabs(hi) > 0 ? fabs(hi) / 2 : 1);
    double raw = range / want;
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    double step = (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
    if (integer && step < 1)
        step = 1;
    return step;
}

int flc_svg_ticks(double lo, double hi, int want, int integer, double *t, int max)
{
    double step = flc_svg_step(lo, hi, want, integer);
    int n = 0;
    for (double v = ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9 && n < max;
         v += step)
        t[n++] = fabs(v) < step * 1e-9 ? 0 : v;
    return n;
}

void flc_svg_tick_label(char *buf, size_t len, double v, double step)
{
    double a = fabs(v);
    if (a >= 1e6 || (a > 0 && a < 1e-4) || step < 1e-4) {
        snprintf(buf, len, "%.3g", v);
        return;
    }
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    snprintf(buf, len, "%.*f", dec, v);
}

double flc_svg_x(const flc_svg_t *p, double x)
{
    double span = p->x1 - p->x0;
    return p->ml + (span > 0 ? (x - p->x0) / span : 0.5) * (p->w - p->ml - p->mr);
}

double flc_svg_y(const flc_svg_t *p, double y)
{
    double span = p->y1 - p->y0;
    return p->h - p->mb - (span > 0 ? (y - p->y0) / span : 0.5) * (p->h - p->mt - p->mb);
}

void flc_svg_begin(flc_svg_t *p, flc_html_t *out, const flc_svg_axes_t *a)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    p->w = FLC_SVG_W;
    p->h = a->h ? a->h : 240;
    p->ml = 62, p->mr = 14, p->mt = 12, p->mb = 40;
    double ylo = a->ylo, yhi = a->yhi;
    if (!isfinite(ylo) || !isfinite(yhi))
        ylo = 0, yhi = 1;
    if (a->yzero) {
        ylo = ylo > 0 ? 0 : ylo;
        yhi = yhi < 0 ? 0 : yhi;
    }
    if (yhi <= ylo)
        yhi = ylo + (ylo != 0 ? fabs(ylo) * 0.1 : 1);
    double ys = flc_svg_step(ylo, yhi, 5, 0);
    p->y0 = floor(ylo / ys + 1e-9) * ys;
    p->y1 = ceil(yhi / ys - 1e-9) * ys;
    double xlo = a->xlo, xhi = a->xhi;
    if (!isfinite(xlo) || !isfinite(xhi))
        xlo = 0, xhi = 1;
    if (a->xint) { /* bars one unit wide fit inside */
        p->x0 = xlo - 0.5;
        p->x1 = xhi + 0.5;
    } else {
        double pad = xhi > xlo ? (xhi - xlo) * 0.04 : 1;
        p->x0 = xlo - pad;
        p->x1 = xhi + pad;
    }
    flc_html_printf(out, "<svg class=\"plot\" data-kind=\"%s\" viewBox=\"0 0 %d %d\" "
                    "role=\"img\" aria-label=\"", a->kind, p->w, p->h);
    flc_html_esc(out, a->title);
    flc_html_printf(out, "\">");
    double t[16];
    char lab[32];
    int nt = flc_svg_ticks(p->y0, p->y1, 5, 0, t, 16);
    for (int i = 0; i < nt; i++) {
        double y = flc_svg_y(p, t[i]);
        flc_svg_tick_label(lab, sizeof lab, t[i], ys);
        flc_html_printf(out, "<line class=\"gr\" x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\"/>"
                        "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>",
                        p->ml, p->w - p->mr, y, y, p->ml - 5, y + 4, lab);
    }
    double xs = flc_svg_step(xlo, xhi, 8, a->xint);
    nt = flc_svg_ticks(xlo, xhi, 8, a->xint, t, 16);
    for (int i = 0; i < nt; i++) {
        double x = flc_svg_x(p, t[i]);
        flc_svg_tick_label(lab, sizeof lab, t[i], xs);
        flc_html_printf(out, "<line class=\"ax\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\"/>"
                        "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>",
                        x, x, p->h - p->mb, p->h - p->mb + 4, x, p->h - p->mb + 16, lab);
    }
    flc_html_printf(out, "<path class=\"ax\" d=\"M%d %dV%dH%d\"/>", p->ml, p->mt,
                    p->h - p->mb, p->w - p->mr);
    flc_html_printf(out, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">",
                    (p->ml + p->w - p->mr) / 2, p->h - 6);
    flc_html_esc(out, a->xlabel);
    flc_html_printf(out, "</text><text transform=\"translate(13 %d) rotate(-90)\" "
                    "text-anchor=\"middle\">", (p->mt + p->h - p->mb) / 2);
    flc_html_esc(out, a->ylabel);
    flc_html_printf(out, "</text>");
}

void flc_svg_end(flc_svg_t *p)
{
    flc_html_printf(p->out, "</svg>");
}

void flc_svg_line(flc_svg_t *p, const double *x, const double *y, size_t n, int color,
                  const char *name, const char *xname)
{
    flc_html_t *o = p->out;
    int c = color % FLC_SVG_NCOL, open = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(y[i])) { /* a gap: the line stops and starts again */
            if (open)
                flc_html_printf(o, "\"/>");
            open = 0;
            continue;
        }
        if (!open)
            flc_html_printf(o, "<polyline class=\"ln c%d\" points=\"", c);
        flc_html_printf(o, "%s%.1f,%.1f", open ? " " : "", flc_svg_x(p, x[i]),
                        flc_svg_y(p, y[i]));
        open = 1;
    }
    if (open)
        flc_html_printf(o, "\"/>");
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(y[i]))
            continue;
        flc_html_printf(o, "<circle class=\"c%d\" data-r=\"%g\" cx=\"%.1f\" cy=\"%.1f\" "
                        "r=\"2.4\"><title>", c, x[i], flc_svg_x(p, x[i]), flc_svg_y(p, y[i]));
        flc_html_esc(o, name);
        flc_html_printf(o, ", %s %g: %.4g</title></circle>", xname, x[i], y[i]);
    }
}

void flc_svg_stack(flc_svg_t *p, const double *x, size_t n, const double *const *ys,
                   size_t ns, const int *colors, const char *const *names, const char *xname)
{
    flc_html_t *o = p->out;
    double bw = (flc_svg_x(p, 1) - flc_svg_x(p, 0)) * 0.72;
    if (bw > 40)
        bw = 40;
    for (size_t i = 0; i < n; i++) {
        double xc = flc_svg_x(p, x[i]), base = 0;
        flc_html_printf(o, "<g class=\"stack\" data-r=\"%g\">", x[i]);
        for (size_t s = 0; s < ns; s++) {
            double v = ys[s][i];
            if (!isfinite(v) || v <= 0)
                continue;
            double ytop = flc_svg_y(p, base + v), ybot = flc_svg_y(p, base);
            flc_html_printf(o, "<rect class=\"c%d\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                            "height=\"%.1f\"><title>%s %g, ", colors[s] % FLC_SVG_NCOL,
                            xc - bw / 2, ytop, bw, ybot - ytop, xname, x[i]);
            flc_html_esc(o, names[s]);
            flc_html_printf(o, ": %.4g</title></rect>", v);
            base += v;
        }
        flc_html_printf(o, "</g>");
    }
}

void flc_svg_vmark(flc_svg_t *p, double x, const char *label)
{
    double xs = flc_svg_x(p, x);
    flc_html_printf(p->out, "<line class=\"mark\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\"/>"
                    "<text x=\"%.1f\" y=\"%d\" text-anchor=\"%s\">", xs, xs, p->mt,
                    p->h - p->mb, xs + (xs > p->w * 0.7 ? -4 : 4), p->mt + 10,
                    xs > p->w * 0.7 ? "end" : "start");
    flc_html_esc(p->out, label);
    flc_html_printf(p->out, "</text>");
}

void flc_svg_hmark(flc_svg_t *p, double y, const char *label)
{
    double ys = flc_svg_y(p, y);
    flc_html_printf(p->out, "<line class=\"mark\" data-v=\"%g\" x1=\"%d\" x2=\"%d\" "
                    "y1=\"%.1f\" y2=\"%.1f\"/><text x=\"%d\" y=\"%.1f\" "
                    "text-anchor=\"end\">", y, p->ml, p->w - p->mr, ys, ys, p->w - p->mr - 4,
                    ys - 4);
    flc_html_esc(p->out, label);
    flc_html_printf(p->out, "</text>");
}

void flc_svg_legend(flc_html_t *out, const char *const *names, const int *colors, size_t n)
{
    flc_html_printf(out, "<div class=\"legend\">");
    for (size_t i = 0; i < n; i++) {
        flc_html_printf(out, "<span><i class=\"k%d\"></i>",
                        colors[i] % FLC_SVG_NCOL);
        flc_html_esc(out, names[i]);
        flc_html_printf(out, "</span>");
    }
    flc_html_printf(out, "</div>");
}
