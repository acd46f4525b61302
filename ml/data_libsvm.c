/* LIBSVM text loader: "label idx:value idx:value ... # comment" per line,
 * 1-based feature indices, into a dense row-major data set.
 *
 * One pass over the file collects labels and (index, value) pairs into
 * growing arrays (sparse, so memory follows the file size); then the dense
 * matrix is allocated once and filled, and labels are mapped to 0..C-1 in
 * ascending order of their values (so -1/+1 become 0/1 and 1..7 become 0..6). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ml/data.h"

typedef struct sv_entry {
    uint32_t col; /* 0-based */
    float val;
} sv_entry_t;

typedef struct sv_parse {
    double *labels;
    size_t *row_end; /* entries of row i are [row_end[i-1], row_end[i]) */
    size_t nrows, cap_rows, cap_ends;
    sv_entry_t *ent;
    size_t nent, cap_ent;
    size_t max_col; /* largest 1-based index seen */
} sv_parse_t;

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 1024;
    while (nc < need)
        nc *= 2;
    void *q = realloc(*p, nc * elem);
    if (q == NULL)
        return FLC_ENOMEM;
    *p = q;
    *cap = nc;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Parses one line into the arrays; returns 1 if it held a sample, 0 for a
 * blank/comment line, or a negative code with err naming the line. */
static int parse_line(sv_parse_t *ps, char *line, const char *path, size_t lineno, size_t dim,
                      flc_err_t *err)
{
    char *hash = strchr(line, '#');
    if (hash != NULL)
        *hash = '\0';
    /* Trailing newline and CR off, so messages quoting the line stay on one line. */
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        line[--len] = '\0';
    char *p = line;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    if (*p == '\0')
        return 0;
    char *end;
    errno = 0;
    double label = strtod(p, &end);
    if (end == p || errno != 0 || !isfinite(label) ||
        (*end != ' ' && *end != '\t' && *end != '\0' && *end != '\r' && *end != '\n'))
        return flc_err_set(err, FLC_EDATA, "%s:%zu: bad label '%.20s'", path, lineno, p);
    if (grow((void **)&ps->labels, &ps->cap_rows, ps->nrows + 1, sizeof(double)) != 0 ||
        grow((void **)&ps->row_end, &ps->cap_ends, ps->nrows + 1, sizeof(size_t)) != 0)
        return flc_err_set(err, FLC_ENOMEM, "%s:%zu: out of memory", path, lineno);
    p = end;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
            p++;
        if (*p == '\0')
            break;
        if (*p < '0' || *p > '9')
            return flc_err_set(err, FLC_EDATA, "%s:%zu: expected index:value, got '%.20s'", path,
                               lineno, p);
        errno = 0;
        unsigned long long col = strtoull(p, &end, 10);
        if (end == p || *end != ':' || errno != 0)
            return flc_err_set(err, FLC_EDATA, "%s:%zu: expected index:value, got '%.20s'", path,
                               lineno, p);
        if (col < 1 || col > UINT32_MAX || (dim > 0 && col > dim))
            return flc_err_set(err, FLC_EDATA,
                               "%s:%zu: feature index %llu out of range (1-based, at most %zu)",
                               path, lineno, col, dim > 0 ? dim : (size_t)UINT32_MAX);
        p = end + 1;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno == EINVAL || !isfinite(v) ||
            (*end != ' ' && *end != '\t' && *end != '\0' && *end != '\r' && *end != '\n'))
            return flc_err_set(err, FLC_EDATA, "%s:%zu: bad value for feature %llu: '%.20s'",
                               path, lineno, col, p);
        p = end;
        if (grow((void **)&ps->ent, &ps->cap_ent, ps->nent + 1, sizeof(sv_entry_t)) != 0)
            return flc_err_set(err, FLC_ENOMEM, "%s:%zu: out of memory", path, lineno);
        ps->ent[ps->nent].col = (uint32_t)(col - 1);
        ps->ent[ps->nent].val = (float)v;
        ps->nent++;
        if (col > ps->max_col)
            ps->max_col = (size_t)col;
    }
    ps->labels[ps->nrows] = label;
    ps->row_end[ps->nrows] = ps->nent;
    ps->nrows++;
    return 1;
}

/* Maps the distinct label values to classes: sorted unique values in
 * *values (allocated) and their count. */
static int distinct_labels(const double *labels, size_t n, double **values, int *count)
{
    double *v = malloc((n ? n : 1) * sizeof(double));
    if (v == NULL)
        return FLC_ENOMEM;
    memcpy(v, labels, n * sizeof(double));
    qsort(v, n, sizeof(double), cmp_double);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || v[i] != v[k - 1])
            v[k++] = v[i];
    *values = v;
    *count = (int)k;
    return 0;
}

/* Class of label value x among the sorted values[0..c), or -1. */
static int find_class(const double *values, int c, double x)
{
    int lo = 0, hi = c - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (values[mid] == x)
            return mid;
        if (values[mid] < x)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

int flc_data_load_libsvm(const char *path, size_t dim, const flc_dataset_t *ref,
                         flc_dataset_t **out, flc_err_t *err)
{
    if (path == NULL || out == NULL)
        return flc_err_set(err, FLC_EINVAL, "LIBSVM loader: missing path");
    *out = NULL;
    if (ref != NULL) {
        if (ref->class_values == NULL)
            return flc_err_set(err, FLC_EINVAL,
                               "LIBSVM loader: the reference data set has no label mapping");
        dim = ref->dim;
    }
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return flc_err_set(err, FLC_EIO, "cannot open LIBSVM file %s: %s", path, strerror(errno));
    sv_parse_t ps = {0};
    flc_dataset_t *ds = NULL;
    double *values = NULL;
    int nclasses = 0;
    char *line = NULL;
    size_t linecap = 0, lineno = 0;
    int rc = 0;
    while (getline(&line, &linecap, f) >= 0) {
        lineno++;
        int r = parse_line(&ps, line, path, lineno, dim, err);
        if (r < 0) {
            rc = r;
            goto done;
        }
    }
    if (ferror(f)) {
        rc = flc_err_set(err, FLC_EIO, "%s: read error after line %zu", path, lineno);
        goto done;
    }
    if (ps.nrows == 0) {
        rc = flc_err_set(err, FLC_EDATA, "%s: no samples", path);
        goto done;
    }
    if (dim == 0)
        dim = ps.max_col > 0 ? ps.max_col : 1;
    if (ref != NULL) {
        nclasses = ref->num_classes;
        values = malloc((size_t)nclasses * sizeof(double));
        if (values == NULL) {
            rc = flc_err_set(err, FLC_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        memcpy(values, ref->class_values, (size_t)nclasses * sizeof(double));
    } else if (distinct_labels(ps.labels, ps.nrows, &values, &nclasses) != 0) {
        rc = flc_err_set(err, FLC_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    rc = flc_data_new(ps.nrows, dim, nclasses, &ds, err);
    if (rc != 0)
        goto done;
    size_t e = 0;
    for (size_t i = 0; i < ps.nrows; i++) {
        int c = find_class(values, nclasses, ps.labels[i]);
        if (c < 0) {
            rc = flc_err_set(err, FLC_EDATA, "%s: sample %zu has label %g, unknown to the "
                             "reference data set", path, i + 1, ps.labels[i]);
            goto done;
        }
        ds->y[i] = c;
        float *row = ds->x + i * dim;
        for (; e < ps.row_end[i]; e++)
            row[ps.ent[e].col] = ps.ent[e].val;
    }
    ds->class_values = values;
    values = NULL;
    *out = ds;
    ds = NULL;
done:
    free(line);
    fclose(f);
    free(ps.labels);
    free(ps.row_end);
    free(ps.ent);
    free(values);
    flc_data_free(ds);
    return rc;
}
