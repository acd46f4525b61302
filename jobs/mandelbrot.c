/* mandelbrot: an escape-time render of [-2.2, 1.0] x [-1.2, 1.2] cut into
 * T x T tiles rendered by W functions; each tile's iteration counts
 * (uint16) go to the cache under the tile's own partition, and the driver
 * assembles the image (PNG through libpng, or PGM) and compares every pixel
 * with one process's render.
 *
 * Tile costs are skewed: a tile inside the set runs every iteration for
 * every pixel, one far outside stops at once. With static assignment
 * (function i renders the i-th contiguous run of tiles) the function that
 * drew the middle rows finishes last; with --dynamic the tiles wait in a
 * queue in the cache (the job's progress list) and every function takes
 * the next one when it is done, so the costs even out. The report shows the
 * skew of tile costs and of the functions' compute. */
#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/event.h"
#include "cache/store_ops.h"
#include "jobs/job_internal.h"

typedef struct geom {
    long long w, h;   /* image */
    int tiles;        /* per side */
    int iters;
} geom_t;

static void tile_rect(const geom_t *g, int t, long long *x0, long long *x1, long long *y0,
                      long long *y1)
{
    int tx = t % g->tiles, ty = t / g->tiles;
    *x0 = g->w * tx / g->tiles;
    *x1 = g->w * (tx + 1) / g->tiles;
    *y0 = g->h * ty / g->tiles;
    *y1 = g->h * (ty + 1) / g->tiles;
}

/* Renders tile t into out ((x1-x0) x (y1-y0) counts). */
static void render(const geom_t *g, int t, uint16_t *out)
{
    long long x0, x1, y0, y1;
    tile_rect(g, t, &x0, &x1, &y0, &y1);
    for (long long y = y0; y < y1; y++) {
        double ci = 1.2 - 2.4 * (double)y / (double)g->h;
        for (long long x = x0; x < x1; x++) {
            double cr = -2.2 + 3.2 * (double)x / (double)g->w;
            double zr = 0, zi = 0;
            int n = 0;
            while (n < g->iters && zr * zr + zi * zi <= 4.0) {
                double t2 = zr * zr - zi * zi + cr;
                zi = 2 * zr * zi + ci;
                zr = t2;
                n++;
            }
            out[(y - y0) * (x1 - x0) + (x - x0)] = (uint16_t)n;
        }
    }
}

static int geom_of(const cJSON *ev, geom_t *g, flc_err_t *e)
{
    long long w, h, t, it;
    if (flc_ev_need_int(ev, "width", 1, 1 << 16, &w, e) ||
        flc_ev_need_int(ev, "height", 1, 1 << 16, &h, e) ||
        flc_ev_need_int(ev, "tiles", 1, 256, &t, e) ||
        flc_ev_need_int(ev, "iters", 1, 65535, &it, e))
        return e->code;
    *g = (geom_t){.w = w, .h = h, .tiles = (int)t, .iters = (int)it};
    return FLC_OK;
}

/* Renders one tile and stores it; adds its cost to done. */
static int one_tile(flc_job_task_t *f, const geom_t *g, int t, cJSON *done, flc_err_t *e)
{
    long long x0, x1, y0, y1;
    tile_rect(g, t, &x0, &x1, &y0, &y1);
    size_t n = (size_t)((x1 - x0) * (y1 - y0));
    uint16_t *px = malloc(n * 2 + 4);
    if (px == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory for tile %d", t);
    uint64_t t0 = flc_now_ns();
    render(g, t, px);
    double ms = flc_job_ms(t0);
    int rc = flc_job_put(&f->x, 0, (uint32_t)t, "tile", px, n * 2, e);
    free(px);
    cJSON *p = cJSON_CreateArray();
    cJSON_AddItemToArray(p, cJSON_CreateNumber(t));
    cJSON_AddItemToArray(p, cJSON_CreateNumber(ms));
    cJSON_AddItemToArray(done, p);
    return rc;
}

int flc_job_mandelbrot_tiles(flc_job_task_t *f, cJSON **res, flc_err_t *e)
{
    geom_t g;
    long long first, count;
    int dynamic;
    if (geom_of(f->ev, &g, e) || flc_ev_opt_bool(f->ev, "dynamic", 0, &dynamic, e) ||
        flc_ev_opt_int(f->ev, "first", 0, 65536, 0, &first, e) ||
        flc_ev_opt_int(f->ev, "count", 0, 65536, 0, &count, e))
        return e->code;
    cJSON *done = cJSON_CreateArray();
    int rc = FLC_OK;
    if (!dynamic) {
        for (long long t = first; rc == FLC_OK && t < first + count; t++)
            rc = one_tile(f, &g, (int)t, done, e);
    } else {
        for (;;) {
            char *rec = NULL;
            uint64_t t0 = flc_now_ns();
            int pr = flc_store_progress_pop(f->x.s, f->x.job, &rec);
            f->x.comm_ms += flc_job_ms(t0);
            if (pr == FLC_ENOTFOUND)
                break;
            if (pr != FLC_OK) {
                rc = flc_err_set(e, pr, "tile queue of job %s: %s", f->x.job,
                                 flc_store_errstr(f->x.s));
                break;
            }
            int t = atoi(rec);
            free(rec);
            if (t < 0 || t >= g.tiles * g.tiles) {
                rc = flc_err_set(e, FLC_EDATA, "tile queue of job %s: no tile %d", f->x.job, t);
                break;
            }
            if ((rc = one_tile(f, &g, t, done, e)) != FLC_OK)
                break;
        }
    }
    if (rc != FLC_OK) {
        cJSON_Delete(done);
        return rc;
    }
    *res = cJSON_CreateObject();
    cJSON_AddItemToObject(*res, "tiles", done);
    return FLC_OK;
}

/* Writes the counts as an 8-bit grey image: .pgm by name, else PNG. */
static int write_image(const char *path, const uint16_t *px, long long w, long long h, int iters,
                       flc_err_t *e)
{
    uint8_t *row = malloc((size_t)w);
    FILE *f = fopen(path, "wb");
    if (row == NULL || f == NULL) {
        free(row);
        if (f)
            fclose(f);
        return flc_err_set(e, FLC_EIO, "image %s: cannot write", path);
    }
    size_t l = strlen(path);
    int pgm = l > 4 && strcmp(path + l - 4, ".pgm") == 0;
    png_structp png = NULL;
    png_infop info = NULL;
    int rc = FLC_OK;
    if (pgm) {
        fprintf(f, "P5\n%lld %lld\n255\n", w, h);
    } else {
        png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
        info = png ? png_create_info_struct(png) : NULL;
        if (info == NULL || setjmp(png_jmpbuf(png))) {
            png_destroy_write_struct(&png, &info);
            free(row);
            fclose(f);
            return flc_err_set(e, FLC_EIO, "image %s: libpng failed", path);
        }
        png_init_io(png, f);
        png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_GRAY,
                     PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
        png_write_info(png, info);
    }
    for (long long y = 0; y < h; y++) {
        for (long long x = 0; x < w; x++) {
            int n = px[y * w + x];
            row[x] = n >= iters ? 0 : (uint8_t)(255 - (255 * n) / iters);
        }
        if (pgm) {
            if (fwrite(row, 1, (size_t)w, f) != (size_t)w)
                rc = flc_err_set(e, FLC_EIO, "image %s: short write", path);
        } else {
            png_write_row(png, row);
        }
    }
    if (!pgm) {
        png_write_end(png, NULL);
        png_destroy_write_struct(&png, &info);
    }
    if (fclose(f) != 0 && rc == FLC_OK)
        rc = flc_err_set(e, FLC_EIO, "image %s: cannot close", path);
    free(row);
    return rc;
}

int flc_job_mandelbrot(flc_job_ctx_t *c, flc_err_t *e)
{
    const flc_job_opts_t *o = c->o;
    geom_t g = {.w = o->size > 0 ? o->size : 1024, .tiles = o->tiles, .iters = o->iters};
    g.h = g.w * 3 / 4;
    int W = o->workers, nt = g.tiles * g.tiles;
    if (g.tiles > g.h)
        return flc_err_set(e, FLC_EINVAL, "mandelbrot: %d tiles per side for %lld rows",
                           g.tiles, g.h);
    c->x.nparts = (uint32_t)nt;
    size_t npx = (size_t)(g.w * g.h);
    uint16_t *img = malloc(npx * 2), *one = malloc(npx * 2 + 4 * 4);
    cJSON **ev = calloc((size_t)W, sizeof *ev);
    cJSON **res = calloc((size_t)W, sizeof *res);
    char(*names)[48] = calloc((size_t)W, sizeof *names);
    double *tile_ms = calloc((size_t)nt, sizeof *tile_ms);
    int rc = img && one && ev && res && names && tile_ms
                 ? FLC_OK
                 : flc_err_set(e, FLC_ENOMEM, "mandelbrot: out of memory for %lld x %lld",
                               g.w, g.h);
    uint64_t t0 = flc_now_ns();
    if (rc == FLC_OK && o->dynamic) {
        flc_store_progress_del(c->x.s, o->job);
        for (int t = 0; rc == FLC_OK && t < nt; t++) {
            char rec[16];
            snprintf(rec, sizeof rec, "%d", t);
            if (flc_store_progress_push(c->x.s, o->job, rec, 3600000) != FLC_OK)
                rc = flc_err_set(e, FLC_EIO, "tile queue of job %s: %s", o->job,
                                 flc_store_errstr(c->x.s));
        }
    }
    for (int k = 0; rc == FLC_OK && k < W; k++) {
        ev[k] = flc_job_event(c, "mandelbrot.tiles");
        cJSON_AddNumberToObject(ev[k], "width", (double)g.w);
        cJSON_AddNumberToObject(ev[k], "height", (double)g.h);
        cJSON_AddNumberToObject(ev[k], "tiles", g.tiles);
        cJSON_AddNumberToObject(ev[k], "iters", g.iters);
        cJSON_AddBoolToObject(ev[k], "dynamic", o->dynamic);
        int a = nt * k / W, b = nt * (k + 1) / W;
        cJSON_AddNumberToObject(ev[k], "first", a);
        cJSON_AddNumberToObject(ev[k], "count", b - a);
        if (o->dynamic)
            snprintf(names[k], sizeof names[k], "tiles (queue) %d", k);
        else
            snprintf(names[k], sizeof names[k], "tiles %d-%d", a, b - 1);
    }
    if (rc == FLC_OK)
        rc = flc_job_phase(c, o->dynamic ? "tiles (dynamic)" : "tiles (static)", ev, names,
                        (size_t)W, res, e);
    for (int t = 0; rc == FLC_OK && t < nt; t++) {
        long long x0, x1, y0, y1;
        tile_rect(&g, t, &x0, &x1, &y0, &y1);
        flc_shard_t sh;
        size_t len, tw = (size_t)(x1 - x0);
        if ((rc = flc_job_get(&c->x, 0, (uint32_t)t, "tile", &sh, &len, e)) != FLC_OK)
            break;
        if (len != tw * (size_t)(y1 - y0) * 2)
            rc = flc_err_set(e, FLC_EDIM, "tile %d: %zu bytes", t, len);
        const uint16_t *px = (const uint16_t *)(const void *)sh.values;
        for (long long y = y0; rc == FLC_OK && y < y1; y++)
            memcpy(img + y * g.w + x0, px + (size_t)(y - y0) * tw, tw * 2);
        flc_shard_release(&sh);
    }
    c->rep->wall_ms = flc_job_ms(t0);
    if (rc == FLC_OK) {
        double tmax = 0, tsum = 0, fmax = 0, fsum = 0;
        for (int k = 0; k < W; k++) {
            const cJSON *p;
            double fms = 0;
            cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(res[k], "tiles")) {
                int t = (int)cJSON_GetArrayItem(p, 0)->valuedouble;
                double ms = cJSON_GetArrayItem(p, 1)->valuedouble;
                if (t >= 0 && t < nt)
                    tile_ms[t] = ms;
                fms += ms;
            }
            fsum += fms;
            if (fms > fmax)
                fmax = fms;
        }
        for (int t = 0; t < nt; t++) {
            tsum += tile_ms[t];
            if (tile_ms[t] > tmax)
                tmax = tile_ms[t];
        }
        cJSON *m = c->rep->metrics;
        char dim[96];
        snprintf(dim, sizeof dim, "%lld x %lld, %d tiles, %d iterations", g.w, g.h, nt, g.iters);
        cJSON_AddStringToObject(m, "image", dim);
        cJSON_AddStringToObject(m, "assignment", o->dynamic ? "dynamic (queue)" : "static");
        cJSON_AddNumberToObject(m, "tile_ms_max", tmax);
        cJSON_AddNumberToObject(m, "tile_ms_mean", tsum / nt);
        cJSON_AddNumberToObject(m, "tile_skew", tsum > 0 ? tmax / (tsum / nt) : 0);
        cJSON_AddNumberToObject(m, "function_skew", fsum > 0 ? fmax / (fsum / W) : 0);
        if (o->png != NULL) {
            rc = write_image(o->png, img, g.w, g.h, g.iters, e);
            if (rc == FLC_OK)
                cJSON_AddStringToObject(m, "image_file", o->png);
        }
    }
    if (rc == FLC_OK && o->check) {
        uint64_t t1 = flc_now_ns();
        uint16_t *tb = malloc(npx * 2 + 4);
        for (int t = 0; tb && t < nt; t++) {
            long long x0, x1, y0, y1;
            tile_rect(&g, t, &x0, &x1, &y0, &y1);
            render(&g, t, tb);
            for (long long y = y0; y < y1; y++)
                memcpy(one + y * g.w + x0, tb + (size_t)((y - y0) * (x1 - x0)),
                       (size_t)(x1 - x0) * 2);
        }
        c->rep->single_ms = flc_job_ms(t1);
        free(tb);
        size_t bad = 0;
        for (size_t i = 0; i < npx; i++)
            bad += img[i] != one[i];
        c->rep->checked = tb != NULL;
        c->rep->check_ok = tb != NULL && bad == 0;
        snprintf(c->rep->check, sizeof c->rep->check,
                 "%zu of %zu pixels differ from one process's render", bad, npx);
    }
    for (int k = 0; k < W && res; k++)
        cJSON_Delete(res[k]);
    free(img);
    free(one);
    flc_job_events_free(ev, (size_t)W);
    free(ev);
    free(res);
    free(names);
    free(tile_ms);
    return rc;
}
