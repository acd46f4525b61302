/* Staleness weights of asynchronous FL (FedAsync's constant, polynomial and
 * hinge functions, FedBuff's default poly:0.5): parse, evaluate, format.
 * Kept apart from the merger so the driver, the CLI and the tests use the
 * same definition (aggregator/async.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/async.h"

/* Reads a number >= 0 at p into *v; returns the end, or NULL. */
static const char *nonneg(const char *p, double *v)
{
    char *end;
    *v = strtod(p, &end);
    if (end == p || !isfinite(*v) || *v < 0)
        return NULL;
    return end;
}

int flc_async_stale_parse(const char *spec, flc_async_stale_t *out, flc_err_t *e)
{
    flc_async_stale_t s = {.kind = FLC_ASYNC_CONSTANT};
    const char *p = NULL;
    if (spec == NULL || *spec == '\0' || strcmp(spec, "constant") == 0) {
        *out = s;
        return FLC_OK;
    }
    if (strncmp(spec, "poly:", 5) == 0) {
        s.kind = FLC_ASYNC_POLY;
        p = nonneg(spec + 5, &s.a);
    } else if (strncmp(spec, "hinge:", 6) == 0) {
        s.kind = FLC_ASYNC_HINGE;
        p = nonneg(spec + 6, &s.a);
        p = p && *p == ',' ? nonneg(p + 1, &s.b) : NULL;
    }
    if (p == NULL || *p != '\0')
        return flc_err_set(e, FLC_EINVAL, "staleness function '%s' is not one of constant, "
                           "poly:A or hinge:A,B (A, B numbers >= 0)", spec);
    *out = s;
    return FLC_OK;
}

double flc_async_stale_weight(const flc_async_stale_t *s, uint32_t tau)
{
    switch (s->kind) {
    case FLC_ASYNC_POLY:
        return pow(1.0 + (double)tau, -s->a);
    case FLC_ASYNC_HINGE:
        return (double)tau <= s->b ? 1.0 : 1.0 / (s->a * ((double)tau - s->b) + 1.0);
    default:
        return 1.0;
    }
}

int flc_async_stale_format(const flc_async_stale_t *s, char *buf, size_t len)
{
    switch (s->kind) {
    case FLC_ASYNC_POLY: return snprintf(buf, len, "poly:%g", s->a);
    case FLC_ASYNC_HINGE: return snprintf(buf, len, "hinge:%g,%g", s->a, s->b);
    default: return snprintf(buf, len, "constant");
    }
}
