/* mds.c - classical MDS of a round's client updates from their Gram matrix.
 *
 * The query engine already has every round's Gram matrix (dot products of
 * the updates, summed over shards next to the data), and squared distances
 * are G_ii + G_jj - 2 G_ij, so the double-centred matrix classical MDS
 * decomposes is just the centred Gram matrix B = J G J: no update is read
 * again. The eigen-solver is LAPACK's dsyevr from OpenBLAS (its Fortran
 * entry point: Debian's OpenBLAS exports LAPACK but ships no LAPACKE
 * header), asked for the two largest eigenpairs only. */
#include <math.h>
#include <stdlib.h>

#include "report/report.h"

/* LAPACK (Fortran ABI as OpenBLAS exports it; the trailing lengths are the
 * hidden lengths of the character arguments). */
extern void dsyevr_(const char *jobz, const char *range, const char *uplo, const int *n,
                    double *a, const int *lda, const double *vl, const double *vu,
                    const int *il, const int *iu, const double *abstol, int *m, double *w,
                    double *z, const int *ldz, int *isuppz, double *work, const int *lwork,
                    int *iwork, const int *liwork, int *info, size_t l1, size_t l2,
                    size_t l3);

int flc_report_mds(const double *G, size_t ld, size_t n, double *xy, double *explained,
                   flc_err_t *e)
{
    if (n == 0)
        return flc_err_set(e, FLC_EINVAL, "MDS of no points");
    for (size_t i = 0; i < 2 * n; i++)
        xy[i] = 0;
    if (explained)
        *explained = 1;
    if (n == 1)
        return FLC_OK;
    double *B = malloc(n * n * sizeof *B), *mean = calloc(n + 1, sizeof *mean);
    if (B == NULL || mean == NULL) {
        free(B), free(mean);
        return flc_err_set(e, FLC_ENOMEM, "MDS of %zu points: out of memory", n);
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++)
            mean[i] += G[i * ld + j];
        mean[i] /= (double)n;
        mean[n] += mean[i];
    }
    mean[n] /= (double)n;
    double trace = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            B[i * n + j] = G[i * ld + j] - mean[i] - mean[j] + mean[n];
            trace += i == j ? B[i * n + j] : 0;
        }
    int N = (int)n, il = N >= 2 ? N - 1 : 1, iu = N, m = 0, info = 0, lwork = -1,
        liwork = -1, iwq = 0;
    double vl = 0, vu = 0, abstol = 0, wq = 0, w[2] = {0, 0};
    double *Z = malloc(2 * n * sizeof *Z);
    int *isuppz = malloc(4 * n * sizeof *isuppz);
    int rc = FLC_OK;
    if (Z == NULL || isuppz == NULL) {
        rc = flc_err_set(e, FLC_ENOMEM, "MDS of %zu points: out of memory", n);
        goto out;
    }
    dsyevr_("V", "I", "U", &N, B, &N, &vl, &vu, &il, &iu, &abstol, &m, w, Z, &N, isuppz, &wq,
            &lwork, &iwq, &liwork, &info, 1, 1, 1);
    if (info != 0) {
        rc = flc_err_set(e, FLC_EDATA, "MDS of %zu points: dsyevr workspace query failed "
                         "(info %d)", n, info);
        goto out;
    }
    lwork = (int)wq, liwork = iwq;
    double *work = malloc((size_t)lwork * sizeof *work);
    int *iwork = malloc((size_t)liwork * sizeof *iwork);
    if (work == NULL || iwork == NULL) {
        free(work), free(iwork);
        rc = flc_err_set(e, FLC_ENOMEM, "MDS of %zu points: out of memory", n);
        goto out;
    }
    /* B is symmetric, so row-major and column-major are the same matrix. */
    dsyevr_("V", "I", "U", &N, B, &N, &vl, &vu, &il, &iu, &abstol, &m, w, Z, &N, isuppz, work,
            &lwork, iwork, &liwork, &info, 1, 1, 1);
    free(work), free(iwork);
    if (info != 0 || m != iu - il + 1) {
        rc = flc_err_set(e, FLC_EDATA, "MDS of %zu points: dsyevr did not converge (info %d)",
                         n, info);
        goto out;
    }
    /* Ascending: w[m-1] is the largest. Axis 1 is the largest. Signs are
     * fixed (first nonzero coordinate positive) so a page is reproducible. */
    for (int a = 0; a < 2 && a < m; a++) {
        int k = m - 1 - a;
        double lam = w[k] > 0 ? w[k] : 0, s = sqrt(lam), sign = 0;
        for (size_t i = 0; i < n && sign == 0; i++)
            if (fabs(Z[(size_t)k * n + i]) > 1e-12)
                sign = Z[(size_t)k * n + i] > 0 ? 1 : -1;
        for (size_t i = 0; i < n; i++)
            xy[2 * i + (size_t)a] = (sign < 0 ? -1 : 1) * s * Z[(size_t)k * n + i];
    }
    if (explained) {
        double top = (w[m - 1] > 0 ? w[m - 1] : 0) + (m > 1 && w[0] > 0 ? w[0] : 0);
        *explained = trace > 0 ? top / trace : 1;
    }
out:
    free(B), free(mean), free(Z), free(isuppz);
    return rc;
}
