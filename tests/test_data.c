/* ml/ data: the IDX loader on the real Fashion-MNIST files and on
 * corrupt files made here (float and byte modes), normalization, IID partitions,
 * Dirichlet client splits, minibatch iteration, and the seeded RNG. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "ml/batcher.h"
#include "ml/dataset.h"
#include "ml/dataset_idx.h"
#include "ml/norm.h"
#include "ml/partition.h"
#include "ml/rng.h"
#include "tests/harness.h"

static char g_dir[] = "/tmp/flc_test_data_XXXXXX";

static void path_in(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", g_dir, name);
}

static void put_be32(unsigned char *b, uint32_t v)
{
    b[0] = (unsigned char)(v >> 24);
    b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8);
    b[3] = (unsigned char)v;
}

/* Writes an IDX image file of n images rows x cols (pixel = (i+k) % 256)
 * with the given magic, gzip-compressed when gz != 0. */
static void write_images(const char *path, uint32_t magic, uint32_t n, uint32_t rows,
                         uint32_t cols, int gz)
{
    unsigned char hdr[16];
    put_be32(hdr, magic);
    put_be32(hdr + 4, n);
    put_be32(hdr + 8, rows);
    put_be32(hdr + 12, cols);
    size_t len = (size_t)n * rows * cols;
    unsigned char *px = malloc(len);
    for (size_t k = 0; k < len; k++)
        px[k] = (unsigned char)(k % 256);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        gzwrite(f, hdr, 16);
        gzwrite(f, px, (unsigned)len);
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        fwrite(hdr, 1, 16, f);
        fwrite(px, 1, len, f);
        fclose(f);
    }
    free(px);
}

static void write_labels(const char *path, uint32_t magic, uint32_t n, int maxlabel)
{
    unsigned char hdr[8];
    put_be32(hdr, magic);
    put_be32(hdr + 4, n);
    gzFile f = gzopen(path, "wb");
    gzwrite(f, hdr, 8);
    for (uint32_t i = 0; i < n; i++) {
        unsigned char l = (unsigned char)(i % (uint32_t)(maxlabel + 1));
        gzwrite(f, &l, 1);
    }
    gzclose(f);
}

TEST(idx_fashion_mnist)
{
    flc_err_t err = {0};
    flc_dataset_t *ds = NULL;
    int rc = flc_data_load_fashion(NULL, 1, 1000, &ds, &err);
    if (!CHECK(rc == 0, "load first 1000 Fashion-MNIST train samples (%s)", flc_err_msg(&err)))
        return;
    CHECK(ds->n == 1000 && ds->dim == 784 && ds->num_classes == 10,
          "train subset is 1000 x 784 (28x28) with 10 classes (%zu x %zu, %d)", ds->n, ds->dim,
          ds->num_classes);
    size_t counts[10];
    flc_data_label_counts(ds, NULL, 0, counts);
    size_t lo = SIZE_MAX, hi = 0;
    for (int c = 0; c < 10; c++) {
        lo = counts[c] < lo ? counts[c] : lo;
        hi = counts[c] > hi ? counts[c] : hi;
    }
    CHECK(lo >= 60 && hi <= 140, "every class has a plausible share of 1000 (min %zu, max %zu)",
          lo, hi);
    CHECK(ds->y[0] == 9 && ds->y[1] == 0 && ds->y[3] == 3,
          "first labels are 9 0 . 3 (ankle boot, T-shirt, dress) (%d %d %d)", ds->y[0], ds->y[1],
          ds->y[3]);
    float mn = 1e9f, mx = -1e9f;
    double sum = 0;
    for (size_t k = 0; k < ds->n * ds->dim; k++) {
        mn = fminf(mn, ds->x[k]);
        mx = fmaxf(mx, ds->x[k]);
        sum += ds->x[k];
    }
    double mean = sum / (double)(ds->n * ds->dim);
    CHECK(mn == 0.0f && mx == 1.0f, "pixels are scaled to [0, 1] (min %g, max %g)", mn, mx);
    CHECK(mean > 0.25 && mean < 0.32, "mean pixel is about 0.28 (%.4f)", mean);
    flc_data_free(ds);

    ds = NULL;
    rc = flc_data_load_fashion(NULL, 0, 0, &ds, &err);
    CHECK(rc == 0 && ds->n == 10000 && ds->y[0] == 9 && ds->y[1] == 2,
          "the whole t10k test split loads: 10000 samples, labels 9 2 ... (%s)",
          flc_err_msg(&err));
    flc_data_free(ds);
}

TEST(idx_errors)
{
    flc_err_t err = {0};
    flc_dataset_t *ds = NULL;
    char img[512], lab[512], bad[512];
    path_in(img, sizeof img, "img.gz");
    path_in(lab, sizeof lab, "lab.gz");

    int rc = flc_data_load_fashion(g_dir, 1, 0, &ds, &err);
    CHECK(rc == FLC_EIO && ds == NULL, "a directory without the files is FLC_EIO (%d)", rc);
    CHECK(strstr(err.msg, g_dir) != NULL && strstr(err.msg, "dataset-fashion-mnist") != NULL,
          "the message names the path and the Debian package: %s", err.msg);

    write_images(img, 0x803, 20, 4, 3, 1);
    write_labels(lab, 0x801, 20, 9);
    flc_err_clear(&err);
    rc = flc_data_load_idx(img, lab, 0, 10, &ds, &err);
    CHECK(rc == 0 && ds->n == 20 && ds->dim == 12 && fabsf(ds->x[13] - 13.0f / 255) < 1e-7f &&
              ds->y[13] == 3,
          "a small valid gzip IDX pair loads with the right pixels and labels (%s)",
          flc_err_msg(&err));
    flc_data_free(ds);
    ds = NULL;
    rc = flc_data_load_idx(img, lab, 0, 0, &ds, &err);
    CHECK(rc == 0 && ds->num_classes == 10, "class count is inferred as max label + 1");
    flc_data_free(ds);
    ds = NULL;
    rc = flc_data_load_idx(img, lab, 0, 5, &ds, &err);
    CHECK(rc == FLC_EDATA && strstr(err.msg, "label") != NULL,
          "labels above the class count are FLC_EDATA: %s", err.msg);

    path_in(bad, sizeof bad, "plain.idx");
    write_images(bad, 0x803, 20, 4, 3, 0);
    ds = NULL;
    flc_err_clear(&err);
    rc = flc_data_load_idx(bad, lab, 7, 10, &ds, &err);
    CHECK(rc == 0 && ds->n == 7 && ds->x[12 * 6 + 11] == (float)((12 * 6 + 11) % 256) / 255.0f,
          "an uncompressed IDX file and a sample limit work (%s)", flc_err_msg(&err));
    flc_data_free(ds);

    path_in(bad, sizeof bad, "badmagic.gz");
    write_images(bad, 0x804, 20, 4, 3, 1);
    ds = NULL;
    rc = flc_data_load_idx(bad, lab, 0, 10, &ds, &err);
    CHECK(rc == FLC_EDATA && ds == NULL && strstr(err.msg, "magic") && strstr(err.msg, bad),
          "a bad magic number is FLC_EDATA naming the file: %s", err.msg);
    rc = flc_data_load_idx(lab, lab, 0, 10, &ds, &err);
    CHECK(rc == FLC_EDATA, "a label file passed as images is FLC_EDATA: %s", err.msg);

    path_in(bad, sizeof bad, "count.gz");
    write_labels(bad, 0x801, 19, 9);
    rc = flc_data_load_idx(img, bad, 0, 10, &ds, &err);
    CHECK(rc == FLC_EDATA && strstr(err.msg, "20 images") && strstr(err.msg, "19 labels"),
          "image/label count mismatch is FLC_EDATA: %s", err.msg);

    path_in(bad, sizeof bad, "zerodim.gz");
    write_images(bad, 0x803, 20, 0, 3, 1);
    rc = flc_data_load_idx(bad, lab, 0, 10, &ds, &err);
    CHECK(rc == FLC_EDATA && strstr(err.msg, "dimensions"), "zero dimensions are FLC_EDATA: %s",
          err.msg);

    /* Truncated gzip: a large file cut in half. */
    char big[512];
    path_in(big, sizeof big, "big.gz");
    write_images(big, 0x803, 2000, 28, 28, 1);
    char biglab[512];
    path_in(biglab, sizeof biglab, "biglab.gz");
    write_labels(biglab, 0x801, 2000, 9);
    FILE *f = fopen(big, "rb");
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *bytes = malloc((size_t)sz);
    size_t got = fread(bytes, 1, (size_t)sz, f);
    fclose(f);
    path_in(bad, sizeof bad, "trunc.gz");
    f = fopen(bad, "wb");
    fwrite(bytes, 1, got / 2, f);
    fclose(f);
    rc = flc_data_load_idx(bad, biglab, 0, 10, &ds, &err);
    CHECK(rc == FLC_EDATA && ds == NULL && strstr(err.msg, "truncated"),
          "a truncated gzip file is FLC_EDATA saying truncated: %s", err.msg);
    rc = flc_data_load_idx(bad, biglab, 10, 10, &ds, &err);
    CHECK(rc == 0 && ds->n == 10, "its first 10 samples still load with a limit");
    flc_data_free(ds);
    ds = NULL;

    /* Corrupt deflate stream: garbage in the middle. */
    for (size_t k = got / 3; k < got / 3 + 64; k++)
        bytes[k] ^= 0x5a;
    path_in(bad, sizeof bad, "corrupt.gz");
    f = fopen(bad, "wb");
    fwrite(bytes, 1, got, f);
    fclose(f);
    free(bytes);
    rc = flc_data_load_idx(bad, biglab, 0, 10, &ds, &err);
    CHECK(rc == FLC_EDATA && ds == NULL && strstr(err.msg, bad),
          "a corrupt gzip stream is FLC_EDATA naming the file: %s", err.msg);
}

/* The byte mode of the same reader: the file's pixels unscaled, the same
 * checks, a labels-only read, and bytes / 255 equal to the float mode. */
TEST(idx_bytes)
{
    flc_err_t err = {0};
    flc_dataset_u8_t *b = NULL;
    flc_dataset_t *ds = NULL;
    char img[512], lab[512], bad[512];
    path_in(img, sizeof img, "u8img.gz");
    path_in(lab, sizeof lab, "u8lab.gz");
    write_images(img, 0x803, 20, 4, 3, 1);
    write_labels(lab, 0x801, 20, 9);
    flc_err_clear(&err);
    int rc = flc_data_load_idx_u8(img, lab, 0, 10, &b, &err);
    int same = rc == 0 && b->n == 20 && b->dim == 12 && b->num_classes == 10;
    for (size_t k = 0; same && k < 20 * 12; k++)
        same = b->px[k] == k % 256 && b->y[k / 12] == (int32_t)(k / 12 % 10);
    CHECK(same, "bytes mode keeps the file's pixels and labels as they are (%s)",
          flc_err_msg(&err));
    flc_data_load_idx(img, lab, 0, 10, &ds, &err);
    float x[12];
    same = ds != NULL && b != NULL;
    for (size_t i = 0; same && i < 20; i++) {
        flc_data_px_scale(x, b->px + i * 12, 12);
        same = memcmp(x, ds->x + i * 12, sizeof x) == 0;
    }
    CHECK(same, "bytes scaled by flc_data_px_scale equal the float mode bit for bit");
    flc_data_free(ds);
    flc_data_u8_free(b);

    b = NULL;
    flc_err_clear(&err);
    rc = flc_data_load_idx_u8(NULL, lab, 7, 10, &b, &err);
    CHECK(rc == 0 && b->n == 7 && b->dim == 0 && b->px == NULL && b->y[6] == 6,
          "images path NULL reads the first 7 labels only (%s)", flc_err_msg(&err));
    flc_data_u8_free(b);

    path_in(bad, sizeof bad, "u8count.gz");
    write_labels(bad, 0x801, 19, 9);
    b = NULL;
    rc = flc_data_load_idx_u8(img, bad, 0, 10, &b, &err);
    CHECK(rc == FLC_EDATA && b == NULL && strstr(err.msg, "19 labels"),
          "bytes mode checks the image/label counts too: %s", err.msg);
    rc = flc_data_load_idx_u8(img, lab, 0, 5, &b, &err);
    CHECK(rc == FLC_EDATA && b == NULL && strstr(err.msg, "label"),
          "bytes mode rejects labels above the class count: %s", err.msg);

    flc_err_clear(&err);
    rc = flc_data_load_fashion_u8(NULL, 0, 100, 0, &b, &err);
    if (!CHECK(rc == 0 && b->n == 100 && b->dim == 784, "Fashion-MNIST t10k loads as bytes (%s)",
               flc_err_msg(&err)))
        return;
    flc_data_load_fashion(NULL, 0, 100, &ds, &err);
    same = ds != NULL && memcmp(b->y, ds->y, 100 * sizeof(int32_t)) == 0;
    for (size_t k = 0; same && k < 100 * 784; k++)
        same = ds->x[k] == (float)b->px[k] * (1.0f / 255.0f);
    CHECK(same, "its bytes and labels are the float loader's on 100 samples");
    flc_data_free(ds);
    flc_data_u8_free(b);
}

TEST(normalize)
{
    flc_err_t err = {0};
    flc_dataset_t *ds = NULL;
    flc_data_new(500, 3, 2, &ds, &err);
    flc_rng_t r;
    flc_rng_seed(&r, 5);
    for (size_t i = 0; i < 500; i++) {
        ds->x[i * 3] = (float)(3.0 + 2.0 * flc_rng_normal(&r));
        ds->x[i * 3 + 1] = (float)flc_rng_uniform(&r);
        ds->x[i * 3 + 2] = 0.0f; /* constant, like a border pixel */
    }
    flc_norm_t nm;
    int rc = flc_norm_fit(ds, FLC_NORM_FEATURE, &nm, &err);
    CHECK(rc == 0 && fabsf(nm.mean[0] - 3.0f) < 0.3f && fabsf(1.0f / nm.inv_std[0] - 2.0f) < 0.2f,
          "per-feature mean/std are fitted (%.3f, %.3f)", nm.mean[0], 1.0f / nm.inv_std[0]);
    flc_norm_apply(&nm, ds, &err);
    double s[3] = {0}, sq[3] = {0};
    for (size_t i = 0; i < 500; i++)
        for (int j = 0; j < 3; j++) {
            s[j] += ds->x[i * 3 + j];
            sq[j] += ds->x[i * 3 + j] * ds->x[i * 3 + j];
        }
    CHECK(fabs(s[0] / 500) < 1e-4 && fabs(sq[0] / 500 - 1) < 1e-3 && fabs(sq[1] / 500 - 1) < 1e-3,
          "standardized features have mean 0 and variance 1");
    CHECK(sq[2] == 0 && nm.inv_std[2] == 1.0f, "a constant feature stays finite (0)");
    flc_dataset_t *other = NULL;
    flc_data_new(2, 4, 2, &other, &err);
    CHECK(flc_norm_apply(&nm, other, &err) == FLC_EDIM, "applying to another dim is FLC_EDIM");
    flc_data_free(other);
    flc_norm_release(&nm);
    rc = flc_norm_fit(ds, FLC_NORM_GLOBAL, &nm, &err);
    flc_norm_apply(&nm, ds, &err);
    double gs = 0, gq = 0;
    for (size_t k = 0; k < 1500; k++) {
        gs += ds->x[k];
        gq += ds->x[k] * ds->x[k];
    }
    CHECK(rc == 0 && fabs(gs / 1500) < 1e-4 && fabs(gq / 1500 - 1) < 1e-3,
          "global standardization gives mean 0, variance 1 over all values");
    flc_norm_release(&nm);
    flc_data_free(ds);
}

/* 1 when the parts hold every index of 0..n-1 exactly once. */
static int covers_once(const flc_parts_t *p, size_t n)
{
    unsigned char *seen = calloc(n, 1);
    int ok = p->total == n && p->off[p->nparts] == n;
    for (size_t i = 0; ok && i < p->total; i++) {
        if (p->idx[i] >= n || seen[p->idx[i]])
            ok = 0;
        else
            seen[p->idx[i]] = 1;
    }
    free(seen);
    return ok;
}

TEST(iid_split)
{
    flc_err_t err = {0};
    flc_parts_t *p = NULL, *q = NULL;
    int rc = flc_split_iid(1003, 4, 42, &p, &err);
    CHECK(rc == 0 && covers_once(p, 1003), "IID partition covers every sample exactly once");
    const uint32_t *ix;
    size_t s0 = flc_parts_get(p, 0, &ix), s3 = flc_parts_get(p, 3, &ix);
    CHECK(s0 == 251 && s3 == 250 && flc_parts_get(p, 4, &ix) == 0 && ix == NULL,
          "1003 over 4 gives 251/251/251/250 (%zu ... %zu)", s0, s3);
    flc_split_iid(1003, 4, 42, &q, &err);
    CHECK(memcmp(p->idx, q->idx, 1003 * 4) == 0, "same seed, same partition");
    flc_parts_free(q);
    flc_split_iid(1003, 4, 43, &q, &err);
    CHECK(memcmp(p->idx, q->idx, 1003 * 4) != 0, "another seed, another partition");
    size_t inorder = 0;
    for (size_t i = 1; i < 1003; i++)
        inorder += p->idx[i] > p->idx[i - 1];
    CHECK(inorder < 700, "parts are shuffled, not contiguous ranges (%zu ascending pairs)",
          inorder);
    flc_parts_free(q);
    flc_parts_free(p);
    CHECK(flc_split_iid(10, 0, 1, &p, &err) == FLC_EINVAL, "zero parts is FLC_EINVAL");
}

/* Mean over clients of the largest class share of that client. */
static double mean_max_share(const flc_parts_t *p, const int32_t *y)
{
    double tot = 0;
    int m = 0;
    for (int k = 0; k < p->nparts; k++) {
        const uint32_t *ix;
        size_t n = flc_parts_get(p, k, &ix), cnt[10] = {0}, mx = 0;
        if (n == 0)
            continue;
        for (size_t i = 0; i < n; i++)
            cnt[y[ix[i]]]++;
        for (int c = 0; c < 10; c++)
            mx = cnt[c] > mx ? cnt[c] : mx;
        tot += (double)mx / (double)n;
        m++;
    }
    return tot / m;
}

TEST(dirichlet_split)
{
    flc_err_t err = {0};
    enum { N = 6000 };
    int32_t *y = malloc(N * sizeof(int32_t));
    for (int i = 0; i < N; i++)
        y[i] = (i * 7) % 10;
    flc_parts_t *p = NULL, *q = NULL;
    int rc = flc_split_dirichlet(y, N, 10, 20, 0.1, 7, 0, &p, &err);
    CHECK(rc == 0 && covers_once(p, N), "Dirichlet(0.1) split covers every sample exactly once");
    double skew = mean_max_share(p, y);
    CHECK(skew > 0.5, "alpha 0.1: a client's largest class is most of its data (%.2f)", skew);
    flc_split_dirichlet(y, N, 10, 20, 0.1, 7, 0, &q, &err);
    CHECK(memcmp(p->idx, q->idx, N * 4) == 0 && memcmp(p->off, q->off, 21 * sizeof(size_t)) == 0,
          "same seed, same split");
    flc_parts_free(p);
    flc_parts_free(q);
    rc = flc_split_dirichlet(y, N, 10, 20, 1000.0, 7, 0, &p, &err);
    double flat = mean_max_share(p, y);
    CHECK(rc == 0 && covers_once(p, N) && flat < 0.16,
          "alpha 1000: near-uniform labels per client (largest share %.3f, uniform 0.1)", flat);
    const uint32_t *ix;
    size_t mn = SIZE_MAX, mx = 0;
    for (int k = 0; k < 20; k++) {
        size_t n = flc_parts_get(p, k, &ix);
        mn = n < mn ? n : mn;
        mx = n > mx ? n : mx;
    }
    CHECK(mn > 240 && mx < 360, "alpha 1000: client sizes near 300 (%zu..%zu)", mn, mx);
    flc_parts_free(p);
    rc = flc_split_dirichlet(y, N, 10, 30, 0.3, 3, 0, &p, &err);
    mn = SIZE_MAX;
    for (int k = 0; rc == 0 && k < 30; k++) {
        size_t n = flc_parts_get(p, k, &ix);
        mn = n < mn ? n : mn;
    }
    CHECK(rc == 0 && mn < 60, "alpha 0.3 over 30 clients leaves some client small (min %zu)", mn);
    flc_parts_free(p);
    rc = flc_split_dirichlet(y, N, 10, 30, 0.3, 3, 60, &p, &err);
    mn = SIZE_MAX;
    for (int k = 0; rc == 0 && k < 30; k++) {
        size_t n = flc_parts_get(p, k, &ix);
        mn = n < mn ? n : mn;
    }
    CHECK(rc == 0 && covers_once(p, N) && mn >= 60,
          "min_size 60 redraws until each of 30 clients has 60 samples (min %zu; %s)", mn,
          rc ? err.msg : "ok");
    flc_parts_free(p);
    rc = flc_split_dirichlet(y, N, 10, 1000, 0.01, 3, 6, &p, &err);
    CHECK(rc == FLC_EINVAL && p == NULL, "an impossible min_size fails with FLC_EINVAL: %s",
          err.msg);
    y[5] = 10;
    rc = flc_split_dirichlet(y, N, 10, 5, 1.0, 3, 0, &p, &err);
    CHECK(rc == FLC_EINVAL, "a label outside the classes is FLC_EINVAL: %s", err.msg);
    free(y);
}

TEST(batcher)
{
    flc_err_t err = {0};
    flc_dataset_t *ds = NULL;
    flc_data_new(100, 2, 3, &ds, &err);
    for (size_t i = 0; i < 100; i++) {
        ds->x[i * 2] = (float)i;
        ds->x[i * 2 + 1] = -(float)i;
        ds->y[i] = (int32_t)(i % 3);
    }
    uint32_t idx[37];
    for (int i = 0; i < 37; i++)
        idx[i] = (uint32_t)(2 * i + 1);
    flc_batcher_t *b = NULL;
    int rc = flc_batcher_new(ds, idx, 37, 8, 1, 0, 9, &b, &err);
    CHECK(rc == 0 && flc_batcher_steps(b) == 5, "37 samples in batches of 8: 5 steps");
    uint32_t first[37];
    int ok = 1, seen[100] = {0}, steps = 0;
    size_t m, total = 0;
    const float *x;
    const int32_t *y;
    while ((m = flc_batcher_next(b, &x, &y)) > 0) {
        steps++;
        for (size_t r = 0; r < m; r++) {
            int s = (int)x[r * 2];
            ok &= x[r * 2 + 1] == -(float)s && y[r] == s % 3 && s % 2 == 1;
            seen[s]++;
            first[total + r] = (uint32_t)s;
        }
        total += m;
    }
    CHECK(steps == 5 && total == 37 && ok, "one epoch yields 5 batches with rows and labels gathered");
    int once = 1;
    for (int i = 0; i < 37; i++)
        once &= seen[2 * i + 1] == 1;
    CHECK(once, "each index of the list appears once per epoch");
    flc_batcher_epoch(b);
    int differs = 0;
    total = 0;
    while ((m = flc_batcher_next(b, &x, &y)) > 0) {
        for (size_t r = 0; r < m; r++)
            differs |= (uint32_t)x[r * 2] != first[total + r];
        total += m;
    }
    CHECK(total == 37 && differs, "the next epoch is reshuffled");
    flc_batcher_free(b);
    flc_batcher_new(ds, NULL, 0, 8, 0, 1, 9, &b, &err);
    steps = 0;
    ok = 1;
    while ((m = flc_batcher_next(b, &x, &y)) > 0) {
        ok &= m == 8 && x[0] == (float)(steps * 8);
        steps++;
    }
    CHECK(flc_batcher_steps(b) == 12 && steps == 12 && ok,
          "drop_last over all 100 samples: 12 full batches, in order when not shuffled");
    flc_batcher_free(b);
    flc_data_free(ds);
}

TEST(rng)
{
    flc_rng_t a, b;
    flc_rng_seed(&a, 1);
    flc_rng_seed(&b, 1);
    int same = 1;
    for (int i = 0; i < 100; i++)
        same &= flc_rng_next(&a) == flc_rng_next(&b);
    CHECK(same, "the same seed gives the same stream");
    flc_rng_seed(&a, 0);
    CHECK(flc_rng_next(&a) != 0 || flc_rng_next(&a) != 0, "seed 0 is a valid state");
    const double shapes[] = {0.3, 1.0, 4.5};
    for (int s = 0; s < 3; s++) {
        double sum = 0, sq = 0;
        for (int i = 0; i < 40000; i++) {
            double g = flc_rng_gamma(&a, shapes[s]);
            sum += g;
            sq += g * g;
        }
        double mean = sum / 40000, var = sq / 40000 - mean * mean;
        CHECK(fabs(mean - shapes[s]) < 0.04 * shapes[s] + 0.01 &&
                  fabs(var - shapes[s]) < 0.1 * shapes[s] + 0.02,
              "Gamma(%.1f) has mean and variance %.1f (%.3f, %.3f)", shapes[s], shapes[s], mean,
              var);
    }
    double p[8], sum = 0;
    flc_rng_dirichlet(&a, 0.001, 8, p);
    for (int i = 0; i < 8; i++)
        sum += p[i];
    CHECK(fabs(sum - 1.0) < 1e-12 && isfinite(p[0]), "Dirichlet(0.001) still sums to 1");
    uint64_t below[5] = {0};
    for (int i = 0; i < 50000; i++)
        below[flc_rng_below(&a, 5)]++;
    CHECK(below[0] > 9500 && below[4] > 9500 && below[0] < 10500,
          "below(5) is uniform (%llu, %llu)", (unsigned long long)below[0],
          (unsigned long long)below[4]);
}

/* The cases write their files into one temp directory, each under its own
 * names; made by the runner before them and removed after. */
static void setup(void)
{
    if (mkdtemp(g_dir) == NULL)
        flc_t_fatal("mkdtemp failed");
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", g_dir);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(idx_fashion_mnist), TEST_ENTRY(idx_errors),
                 TEST_ENTRY(idx_bytes), TEST_ENTRY(normalize), TEST_ENTRY(iid_split),
                 TEST_ENTRY(dirichlet_split), TEST_ENTRY(batcher), TEST_ENTRY(rng))
