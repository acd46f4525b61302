/* Update encodings (see encode.h for the formats and their error bounds):
 * the float conversions by hand (no _Float16 needed from the compiler, and
 * the rounding is the one the docs state), top-k by sorting indexes. */
#include "cache/encode.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[FLC_ENC_COUNT] = {"f32", "fp16", "bf16", "int8", "topk"};

const char *flc_enc_name(int kind)
{
    return kind >= 0 && kind < FLC_ENC_COUNT ? names[kind] : "?";
}

int flc_enc_parse(const char *spec, flc_enc_t *out, flc_err_t *e)
{
    flc_enc_t r = {.kind = FLC_ENC_F32};
    if (spec == NULL || spec[0] == '\0') {
        *out = r;
        return FLC_OK;
    }
    for (int k = 0; k < FLC_ENC_TOPK; k++)
        if (strcmp(spec, names[k]) == 0) {
            r.kind = k;
            *out = r;
            return FLC_OK;
        }
    if (strncmp(spec, "topk:", 5) == 0) {
        char *end = NULL;
        double f = strtod(spec + 5, &end);
        if (end != spec + 5 && *end == '\0' && f > 0 && f <= FLC_ENC_TOPK_MAX) {
            r.kind = FLC_ENC_TOPK;
            r.frac = f;
            *out = r;
            return FLC_OK;
        }
        return flc_err_set(e, FLC_EINVAL, "encoding '%s': topk needs a fraction in (0, %g] "
                           "(above it a top-k frame is larger than float32)", spec,
                           FLC_ENC_TOPK_MAX);
    }
    return flc_err_set(e, FLC_EINVAL, "unknown encoding '%s' (f32, fp16, bf16, int8, "
                       "topk:FRACTION)", spec);
}

void flc_enc_format(const flc_enc_t *enc, char *out, size_t len)
{
    if (enc->kind == FLC_ENC_TOPK)
        snprintf(out, len, "topk:%g", enc->frac);
    else
        snprintf(out, len, "%s", flc_enc_name(enc->kind));
}

uint64_t flc_enc_topk_k(uint64_t count, double frac)
{
    if (count == 0)
        return 0;
    uint64_t k = (uint64_t)ceil(frac * (double)count);
    return k < 1 ? 1 : (k > count ? count : k);
}

size_t flc_enc_payload_bytes(int kind, uint64_t count, uint64_t nnz)
{
    if (count > SIZE_MAX / 8 || nnz > count)
        return 0;
    switch (kind) {
    case FLC_ENC_F32:
        return (size_t)count * 4;
    case FLC_ENC_FP16:
    case FLC_ENC_BF16:
        return (size_t)count * 2;
    case FLC_ENC_INT8:
        return (size_t)count + 4 * (size_t)((count + FLC_ENC_INT8_BLOCK - 1) / FLC_ENC_INT8_BLOCK);
    case FLC_ENC_TOPK:
        return (size_t)nnz * 8;
    default:
        return 0;
    }
}

/* ---- scalar conversions ---- */

static uint16_t f2h(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x477ff000u) /* 65520 and up would round to Inf: the largest half */
        return (uint16_t)(sign | 0x7bffu);
    if (ax < 0x38800000u) { /* below 2^-14: a subnormal half, in units of 2^-24 */
        float a;
        memcpy(&a, &ax, 4);
        return (uint16_t)(sign | (uint32_t)nearbyintf(a * 16777216.0f));
    }
    uint32_t mant = ax & 0x7fffffu, h = ((ax >> 23) - 112u) << 10 | mant >> 13;
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) /* to nearest, ties to even */
        h++;
    return (uint16_t)(sign | h);
}

static float h2f(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        float f = (float)m * 5.9604644775390625e-8f; /* 2^-24 */
        return sign ? -f : f;
    }
    uint32_t bits = sign | (e == 31 ? 0x7f800000u | m << 13 : (e + 112u) << 23 | m << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static uint16_t f2bf(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) >= 0x7f7f8000u) /* would round to Inf: the largest bf16 */
        return (uint16_t)((x >> 16 & 0x8000u) | 0x7f7fu);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

static float bf2f(uint16_t b)
{
    uint32_t x = (uint32_t)b << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static float ld_f32(const uint8_t *p)
{
    float f;
    memcpy(&f, p, 4);
    return f;
}

static uint32_t ld_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint16_t ld_u16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* ---- top-k selection ---- */

/* qsort has no user pointer: the values being ranked, per thread */
static _Thread_local const float *tl_x;

static int by_magnitude(const void *a, const void *b)
{
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    float x = fabsf(tl_x[i]), y = fabsf(tl_x[j]);
    if (x != y)
        return x > y ? -1 : 1;
    return (i > j) - (i < j); /* ties: the lower index first */
}

static int by_index(const void *a, const void *b)
{
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    return (i > j) - (i < j);
}

static int topk_encode(const float *x, size_t n, double frac, uint8_t *out, uint64_t *nnz,
                       float *sent, flc_err_t *e)
{
    if (n > UINT32_MAX)
        return flc_err_set(e, FLC_EINVAL, "topk: a shard of %zu elements is over 2^32", n);
    uint64_t k = flc_enc_topk_k(n, frac);
    uint32_t *ix = malloc((n ? n : 1) * sizeof *ix);
    if (ix == NULL)
        return flc_err_set(e, FLC_ENOMEM, "topk: out of memory for %zu indexes", n);
    for (size_t i = 0; i < n; i++)
        ix[i] = (uint32_t)i;
    tl_x = x;
    qsort(ix, n, sizeof *ix, by_magnitude);
    qsort(ix, (size_t)k, sizeof *ix, by_index);
    if (sent != NULL)
        memset(sent, 0, n * sizeof *sent);
    for (uint64_t j = 0; j < k; j++) {
        memcpy(out + 4 * j, &ix[j], 4);
        memcpy(out + 4 * k + 4 * j, &x[ix[j]], 4);
        if (sent != NULL)
            sent[ix[j]] = x[ix[j]];
    }
    free(ix);
    *nnz = k;
    return FLC_OK;
}

int flc_enc_encode(const flc_enc_t *enc, const float *x, size_t n, void *outv, uint64_t *nnz,
                   float *sent, flc_err_t *e)
{
    uint8_t *out = outv;
    *nnz = 0;
    switch (enc->kind) {
    case FLC_ENC_F32:
        memcpy(out, x, n * 4);
        if (sent != NULL)
            memcpy(sent, x, n * 4);
        return FLC_OK;
    case FLC_ENC_FP16:
    case FLC_ENC_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = enc->kind == FLC_ENC_FP16 ? f2h(x[i]) : f2bf(x[i]);
            memcpy(out + 2 * i, &h, 2);
            if (sent != NULL)
                sent[i] = enc->kind == FLC_ENC_FP16 ? h2f(h) : bf2f(h);
        }
        return FLC_OK;
    case FLC_ENC_INT8:
        for (size_t b = 0; b < n; b += FLC_ENC_INT8_BLOCK) {
            size_t m = n - b < FLC_ENC_INT8_BLOCK ? n - b : FLC_ENC_INT8_BLOCK;
            float mx = 0;
            for (size_t i = 0; i < m; i++)
                mx = fabsf(x[b + i]) > mx ? fabsf(x[b + i]) : mx;
            float s = mx / 127.0f;
            memcpy(out + n + 4 * (b / FLC_ENC_INT8_BLOCK), &s, 4);
            for (size_t i = 0; i < m; i++) {
                long q = s > 0 ? lrintf(x[b + i] / s) : 0;
                q = q > 127 ? 127 : (q < -127 ? -127 : q);
                out[b + i] = (uint8_t)(int8_t)q;
                if (sent != NULL)
                    sent[b + i] = s * (float)q;
            }
        }
        return FLC_OK;
    case FLC_ENC_TOPK:
        return topk_encode(x, n, enc->frac, out, nnz, sent, e);
    default:
        return flc_err_set(e, FLC_EINVAL, "unknown encoding %d", enc->kind);
    }
}

int flc_enc_check(int kind, const void *pv, size_t len, uint64_t n, uint64_t nnz,
                  const char *what, flc_err_t *e)
{
    const uint8_t *p = pv;
    if (kind < 0 || kind >= FLC_ENC_COUNT)
        return flc_err_set(e, FLC_EDATA, "%s: unknown encoding %d", what, kind);
    if (kind != FLC_ENC_TOPK && nnz != 0)
        return flc_err_set(e, FLC_EDATA, "%s: nnz %llu in a %s frame", what,
                           (unsigned long long)nnz, names[kind]);
    size_t want = flc_enc_payload_bytes(kind, n, nnz);
    if ((want == 0 && n > 0) || len != want)
        return flc_err_set(e, FLC_EDATA, "%s: %s payload of %zu bytes for %llu elements "
                           "(nnz %llu), expected %zu", what, names[kind], len,
                           (unsigned long long)n, (unsigned long long)nnz, want);
    switch (kind) {
    case FLC_ENC_F32:
        return FLC_OK; /* the mergers' finite checks cover float32 as before */
    case FLC_ENC_FP16:
    case FLC_ENC_BF16: {
        uint16_t mask = kind == FLC_ENC_FP16 ? 0x7c00u : 0x7f80u;
        for (size_t i = 0; i < n; i++)
            if ((ld_u16(p + 2 * i) & mask) == mask)
                return flc_err_set(e, FLC_EDATA, "%s: %s element %zu is NaN or Inf", what,
                                   names[kind], i);
        return FLC_OK;
    }
    case FLC_ENC_INT8:
        for (size_t b = 0; b * FLC_ENC_INT8_BLOCK < n; b++) {
            float s = ld_f32(p + n + 4 * b);
            if (!(s >= 0 && s <= FLT_MAX / 128))
                return flc_err_set(e, FLC_EDATA, "%s: int8 block %zu has scale %g", what, b,
                                   (double)s);
        }
        for (size_t i = 0; i < n; i++)
            if ((int8_t)p[i] == -128)
                return flc_err_set(e, FLC_EDATA, "%s: int8 element %zu is -128 (outside "
                                   "-127..127)", what, i);
        return FLC_OK;
    default: /* topk */
        for (uint64_t j = 0; j < nnz; j++) {
            uint32_t ix = ld_u32(p + 4 * j);
            float v = ld_f32(p + 4 * nnz + 4 * j);
            if (ix >= n || (j > 0 && ix <= ld_u32(p + 4 * (j - 1))))
                return flc_err_set(e, FLC_EDATA, "%s: topk index %llu (%u) is not increasing "
                                   "or not below %llu", what, (unsigned long long)j, ix,
                                   (unsigned long long)n);
            if (!isfinite(v))
                return flc_err_set(e, FLC_EDATA, "%s: topk value %llu is NaN or Inf", what,
                                   (unsigned long long)j);
        }
        return FLC_OK;
    }
}

void flc_enc_view_init(flc_enc_view_t *v, int kind, const void *p, uint64_t n, uint64_t nnz)
{
    *v = (flc_enc_view_t){.kind = kind, .p = p, .n = n, .nnz = nnz};
}

void flc_enc_decode_range(flc_enc_view_t *v, size_t off, size_t m, float *dst)
{
    const uint8_t *p = v->p;
    switch (v->kind) {
    case FLC_ENC_F32:
        memcpy(dst, p + 4 * off, m * 4);
        return;
    case FLC_ENC_FP16:
        for (size_t i = 0; i < m; i++)
            dst[i] = h2f(ld_u16(p + 2 * (off + i)));
        return;
    case FLC_ENC_BF16:
        for (size_t i = 0; i < m; i++)
            dst[i] = bf2f(ld_u16(p + 2 * (off + i)));
        return;
    case FLC_ENC_INT8:
        for (size_t i = 0; i < m; i++) {
            size_t j = off + i;
            dst[i] = ld_f32(p + v->n + 4 * (j / FLC_ENC_INT8_BLOCK)) * (float)(int8_t)p[j];
        }
        return;
    default: /* topk */
        if (off == 0)
            v->cursor = 0;
        memset(dst, 0, m * sizeof *dst);
        while (v->cursor < v->nnz && ld_u32(p + 4 * v->cursor) < off)
            v->cursor++;
        for (uint32_t ix; v->cursor < v->nnz && (ix = ld_u32(p + 4 * v->cursor)) < off + m;
             v->cursor++)
            dst[ix - off] = ld_f32(p + 4 * v->nnz + 4 * v->cursor);
        return;
    }
}

int flc_enc_decode_inplace(int kind, void *buf, uint64_t n, uint64_t nnz, flc_err_t *e)
{
    uint8_t *p = buf;
    float *out = buf;
    if (kind == FLC_ENC_F32)
        return FLC_OK;
    if (kind == FLC_ENC_FP16 || kind == FLC_ENC_BF16) {
        /* backwards: float i (bytes 4i..) never covers a half not yet read */
        for (uint64_t i = n; i-- > 0;) {
            uint16_t h = ld_u16(p + 2 * i);
            out[i] = kind == FLC_ENC_FP16 ? h2f(h) : bf2f(h);
        }
        return FLC_OK;
    }
    if (kind == FLC_ENC_INT8) {
        size_t nb = (size_t)((n + FLC_ENC_INT8_BLOCK - 1) / FLC_ENC_INT8_BLOCK);
        float *sc = malloc((nb ? nb : 1) * sizeof *sc);
        if (sc == NULL)
            return flc_err_set(e, FLC_ENOMEM, "out of memory for %zu int8 scales", nb);
        memcpy(sc, p + n, nb * 4);
        for (uint64_t i = n; i-- > 0;) /* the scales are saved; q[i] is before float i */
            out[i] = sc[i / FLC_ENC_INT8_BLOCK] * (float)(int8_t)p[i];
        free(sc);
        return FLC_OK;
    }
    if (kind == FLC_ENC_TOPK) {
        uint8_t *cp = malloc(nnz ? (size_t)nnz * 8 : 1);
        if (cp == NULL)
            return flc_err_set(e, FLC_ENOMEM, "out of memory for %llu topk entries",
                               (unsigned long long)nnz);
        memcpy(cp, p, (size_t)nnz * 8);
        flc_enc_view_t v;
        flc_enc_view_init(&v, kind, cp, n, nnz);
        flc_enc_decode_range(&v, 0, (size_t)n, out);
        free(cp);
        return FLC_OK;
    }
    return flc_err_set(e, FLC_EDATA, "unknown encoding %d", kind);
}
