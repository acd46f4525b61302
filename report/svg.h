/* svg.h - the few plots of the report, written as inline SVG by hand.
 *
 * Why not a plotting library: the report needs line charts, stacked bars, a
 * heat map, horizontal bars and a scatter, all of simple shapes; writing the
 * SVG directly keeps the page self-contained (no script, no font, no
 * network) and small (a mark is one short element). Plots are drawn in a
 * viewBox of fixed width and scale with the window; colours and fonts come
 * from the page's stylesheet (flc_svg_css), so a printer or a narrow window
 * restyles them without touching the marks.
 *
 * Every data mark carries data-r (round or epoch) or data-c (client), so a
 * test can count the points and bars a plot shows; every outside string
 * (client ids, series names) is escaped. Values that are NaN are left out
 * (a gap), never drawn at zero. */
#ifndef FLC_REPORT_SVG_H
#define FLC_REPORT_SVG_H

#include <stddef.h>

#include "report/html.h"

#define FLC_SVG_W 640    /* viewBox width of every plot */
#define FLC_SVG_NCOL 8   /* series colours c0..c7 */
#define FLC_SVG_NHEAT 8  /* heat levels h0..h7 */

/* What flc_svg_begin draws: axes with ticks at round numbers, labels with
 * units, the plot's accessible title. */
typedef struct flc_svg_axes {
    const char *kind;         /* data-kind of the <svg>: line, bars, scatter */
    const char *title;        /* aria-label */
    const char *xlabel, *ylabel;
    double xlo, xhi, ylo, yhi;/* data extent; the y range is widened to ticks */
    int xint;                 /* x are integers (rounds, epochs): integer ticks, and
                               * bars one unit wide centred on them */
    int yzero;                /* the y range includes 0 */
    int h;                    /* viewBox height (0: 240) */
} flc_svg_axes_t;

/* One plot being written: the mapping from data to viewBox coordinates. */
typedef struct flc_svg {
    flc_html_t *out;
    int w, h;
    int ml, mr, mt, mb;       /* margins around the plot area */
    double x0, x1, y0, y1;    /* data range of the plot area */
} flc_svg_t;

/* The stylesheet the plots need (colours c0..c7 and h0..h7, axes, text). */
const char *flc_svg_css(void);

/* The step of "nice" ticks (1, 2 or 5 times a power of ten) that cuts
 * [lo, hi] into about `want` parts; at least 1 when integer. */
double flc_svg_step(double lo, double hi, int want, int integer);

/* Ticks at multiples of the step inside [lo, hi]: up to max values in t,
 * returns how many. */
int flc_svg_ticks(double lo, double hi, int want, int integer, double *t, int max);

/* Tick label of v for ticks `step` apart (as many decimals as the step
 * needs, no more). */
void flc_svg_tick_label(char *buf, size_t len, double v, double step);

void flc_svg_begin(flc_svg_t *p, flc_html_t *out, const flc_svg_axes_t *a);
void flc_svg_end(flc_svg_t *p);
double flc_svg_x(const flc_svg_t *p, double x);
double flc_svg_y(const flc_svg_t *p, double y);

/* A series: a polyline through the finite points (a NaN breaks it) and a
 * circle per finite point, with a tooltip "name, x: y". */
void flc_svg_line(flc_svg_t *p, const double *x, const double *y, size_t n, int color,
                  const char *name, const char *xname);

/* Stacked bars at x[i] (integer x): series s of height ys[s][i] on top of
 * the ones before it; one <g class="stack" data-r> per x. */
void flc_svg_stack(flc_svg_t *p, const double *x, size_t n, const double *const *ys,
                   size_t ns, const int *colors, const char *const *names, const char *xname);

/* A vertical marker at x with a short label (the best round). */
void flc_svg_vmark(flc_svg_t *p, double x, const char *label);

/* A horizontal marker at y with a short label (a deadline); data-v = y. */
void flc_svg_hmark(flc_svg_t *p, double y, const char *label);

/* A scatter: points (x[i], y[i]) coloured by group[i], drawn as a ring
 * with a cross when marked[i] (faulty), tooltip label[i]. */
void flc_svg_scatter(flc_svg_t *p, const double *x, const double *y, size_t n,
                     const int *group, const unsigned char *marked, const char *const *label);

/* A heat map of nrow x ncol cells (v[r * ncol + c], NaN: no cell), rows
 * labelled rows[r] (marked[r]: a red mark left of the row, the ground
 * truth), columns the integers cols[c], levels 0..vmax. */
void flc_svg_heat(flc_html_t *out, const char *title, const char *const *rows,
                  const unsigned char *marked, size_t nrow, const double *cols, size_t ncol,
                  const double *v, double vmax, const char *xlabel, const char *ylabel);

/* Horizontal bars, one row per label (v may be negative), marked[i]: the
 * row's label gets the ground-truth mark. */
void flc_svg_hbars(flc_html_t *out, const char *title, const char *const *labels,
                   const double *v, const unsigned char *marked, size_t n,
                   const char *xlabel);

/* A legend as HTML (wraps in a narrow window): a swatch and a name each. */
void flc_svg_legend(flc_html_t *out, const char *const *names, const int *colors, size_t n);

#endif
