/* IDX file loader (the format of MNIST and Fashion-MNIST), gzip-compressed
 * or plain, through zlib's gzread (which reads plain files transparently).
 *
 * IDX: a 4-byte big-endian magic 0x0000TTNN (TT = 0x08 unsigned byte, NN =
 * number of dimensions), NN big-endian uint32 sizes, then the data. Images
 * are 0x00000803 (n, rows, cols); labels 0x00000801 (n).
 *
 * One reader for both kinds of data set: the headers, the checks, the
 * labels and the pixel reads are the same; only where the pixels go
 * differs. Bytes are read straight into the byte set; for floats they are
 * read in chunks and converted to [0, 1] as they arrive, so no full-size
 * byte copy of the images is ever held. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "ml/dataset_idx.h"

#define IDX_IMAGES_MAGIC 0x00000803u
#define IDX_LABELS_MAGIC 0x00000801u
#define IDX_MAX_DIM (1u << 20)   /* features per sample; sanity bound */
#define IDX_CHUNK (64u * 1024u)  /* bytes per gzread */

/* Opens path for gzread; a missing/unreadable file is FLC_EIO with a hint
 * about where Fashion-MNIST comes from. */
static int idx_open(const char *path, gzFile *out, flc_err_t *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return flc_err_set(err, FLC_EIO,
                           "cannot open data file %s: %s (Fashion-MNIST comes from the Debian "
                           "package dataset-fashion-mnist; or set FLCACHE_DATA_DIR)",
                           path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return flc_err_set(err, FLC_EIO, "cannot open data file %s: not a regular file", path);
    gzFile f = gzopen(path, "rb");
    if (f == NULL)
        return flc_err_set(err, FLC_EIO, "cannot open data file %s: %s", path, strerror(errno));
    gzbuffer(f, IDX_CHUNK);
    *out = f;
    return 0;
}

/* gzerror's message without the "<path>: " prefix zlib puts in front. */
static const char *gz_msg(gzFile f, const char *path, int *zerr)
{
    const char *msg = gzerror(f, zerr);
    size_t pl = strlen(path);
    if (strncmp(msg, path, pl) == 0 && msg[pl] == ':' && msg[pl + 1] == ' ')
        msg += pl + 2;
    return msg;
}

/* Reads exactly len bytes; short reads and zlib errors are FLC_EDATA naming
 * the file and what was being read. */
static int idx_read(gzFile f, const char *path, void *buf, size_t len, const char *what,
                    flc_err_t *err)
{
    unsigned char *p = buf;
    size_t got = 0;
    while (got < len) {
        size_t want = len - got;
        if (want > IDX_CHUNK)
            want = IDX_CHUNK;
        int r = gzread(f, p + got, (unsigned)want);
        if (r < 0) {
            int zerr;
            const char *msg = gz_msg(f, path, &zerr);
            return flc_err_set(err, FLC_EDATA, "%s: corrupt gzip data while reading %s: %s", path,
                               what, msg);
        }
        if (r == 0) {
            int zerr;
            const char *msg = gz_msg(f, path, &zerr);
            return flc_err_set(err, FLC_EDATA,
                               "%s: truncated while reading %s: got %zu of %zu bytes%s%s", path,
                               what, got, len, zerr != Z_OK ? ": " : "",
                               zerr != Z_OK ? msg : "");
        }
        got += (size_t)r;
    }
    return 0;
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* Reads the magic and the sizes of an IDX header, checking the magic. */
static int idx_header(gzFile f, const char *path, uint32_t magic, uint32_t *dims, int ndims,
                      flc_err_t *err)
{
    unsigned char hdr[16];
    size_t len = 4 + 4 * (size_t)ndims;
    int rc = idx_read(f, path, hdr, len, "the IDX header", err);
    if (rc != 0)
        return rc;
    uint32_t m = be32(hdr);
    if (m != magic)
        return flc_err_set(err, FLC_EDATA,
                           "%s: bad IDX magic number 0x%08x, expected 0x%08x (%s file)", path, m,
                           magic, magic == IDX_IMAGES_MAGIC ? "ubyte image" : "ubyte label");
    for (int i = 0; i < ndims; i++)
        dims[i] = be32(hdr + 4 + 4 * i);
    return 0;
}

/* An image/label file pair with its headers read and checked: what the
 * float and the byte loaders share. ip NULL: labels only. */
typedef struct idx_pair {
    const char *ip, *lp;
    gzFile fi, fl;
    size_t n;     /* samples to read (the limit applied) */
    size_t dim;   /* rows * cols; 0 when labels only */
} idx_pair_t;

static void pair_close(idx_pair_t *p)
{
    if (p->fi != NULL)
        gzclose(p->fi);
    if (p->fl != NULL)
        gzclose(p->fl);
    p->fi = p->fl = NULL;
}

/* Opens both files, reads their headers and checks the dimensions and
 * that the counts agree; on failure nothing stays open. */
static int pair_open(idx_pair_t *p, const char *ip, const char *lp, size_t limit,
                     flc_err_t *err)
{
    memset(p, 0, sizeof *p);
    p->ip = ip;
    p->lp = lp;
    uint32_t idims[3] = {0}, ldims[1] = {0};
    int rc = ip != NULL ? idx_open(ip, &p->fi, err) : 0;
    if (rc == 0)
        rc = idx_open(lp, &p->fl, err);
    if (rc == 0 && ip != NULL)
        rc = idx_header(p->fi, ip, IDX_IMAGES_MAGIC, idims, 3, err);
    if (rc == 0)
        rc = idx_header(p->fl, lp, IDX_LABELS_MAGIC, ldims, 1, err);
    if (rc == 0 && ip == NULL && ldims[0] == 0)
        rc = flc_err_set(err, FLC_EDATA, "%s: the label file holds no labels", lp);
    if (rc == 0 && ip != NULL &&
        (idims[0] == 0 || idims[1] == 0 || idims[2] == 0 ||
         (uint64_t)idims[1] * idims[2] > IDX_MAX_DIM))
        rc = flc_err_set(err, FLC_EDATA, "%s: bad image dimensions %u x %u x %u", ip, idims[0],
                         idims[1], idims[2]);
    if (rc == 0 && ip != NULL && idims[0] != ldims[0])
        rc = flc_err_set(err, FLC_EDATA, "%s has %u images but %s has %u labels", ip, idims[0],
                         lp, ldims[0]);
    if (rc != 0) {
        pair_close(p);
        return rc;
    }
    p->n = ldims[0];
    if (limit > 0 && limit < p->n)
        p->n = limit;
    p->dim = (size_t)idims[1] * idims[2];
    return 0;
}

/* Reads the n labels into y. num_classes > 0 rejects labels not below it;
 * *classes becomes num_classes, or max label + 1 when it is 0. Labels come
 * first: small, and a bad label fails fast before the big read. */
static int pair_labels(idx_pair_t *p, int num_classes, int32_t *y, int *classes,
                       flc_err_t *err)
{
    unsigned char *buf = malloc(p->n);
    if (buf == NULL)
        return flc_err_set(err, FLC_ENOMEM, "IDX loader: out of memory for %zu labels", p->n);
    int rc = idx_read(p->fl, p->lp, buf, p->n, "labels", err);
    int maxl = 0;
    for (size_t i = 0; rc == 0 && i < p->n; i++) {
        if (num_classes > 0 && buf[i] >= num_classes)
            rc = flc_err_set(err, FLC_EDATA, "%s: label %u of sample %zu is not below %d", p->lp,
                             buf[i], i, num_classes);
        y[i] = buf[i];
        if (buf[i] > maxl)
            maxl = buf[i];
    }
    free(buf);
    if (rc == 0)
        *classes = num_classes > 0 ? num_classes : maxl + 1;
    return rc;
}

/* Reads the n images in chunks of whole rows (an error names the rows):
 * into px as they are when px is not NULL, else through one chunk buffer
 * into x, scaled. */
static int pair_pixels(idx_pair_t *p, uint8_t *px, float *x, flc_err_t *err)
{
    size_t rows_per = (p->dim > IDX_CHUNK ? p->dim : IDX_CHUNK) / p->dim;
    unsigned char *buf = NULL;
    if (px == NULL && (buf = malloc(rows_per * p->dim)) == NULL)
        return flc_err_set(err, FLC_ENOMEM, "IDX loader: out of memory for a %zu-byte buffer",
                           rows_per * p->dim);
    char what[64];
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < p->n; i += rows_per) {
        size_t m = p->n - i < rows_per ? p->n - i : rows_per;
        snprintf(what, sizeof what, "images %zu..%zu", i, i + m - 1);
        rc = idx_read(p->fi, p->ip, px != NULL ? px + i * p->dim : buf, m * p->dim, what, err);
        if (rc == 0 && px == NULL)
            flc_data_px_scale(x + i * p->dim, buf, m * p->dim);
    }
    free(buf);
    return rc;
}

/* The one loader: fills *fout (floats) when fout is not NULL, else *bout
 * (bytes; ip NULL for labels only). */
static int idx_load(const char *ip, const char *lp, size_t limit, int num_classes,
                    flc_dataset_t **fout, flc_dataset_u8_t **bout, flc_err_t *err)
{
    if ((ip == NULL && fout != NULL) || lp == NULL || (fout == NULL && bout == NULL) ||
        num_classes < 0 || num_classes > 256)
        return flc_err_set(err, FLC_EINVAL, "IDX loader: missing path or bad class count %d",
                           num_classes);
    if (fout != NULL)
        *fout = NULL;
    else
        *bout = NULL;
    flc_dataset_t *fs = NULL;
    flc_dataset_u8_t *bs = NULL;
    idx_pair_t p;
    int rc = pair_open(&p, ip, lp, limit, err);
    if (rc != 0)
        return rc;
    int nc = num_classes > 0 ? num_classes : 1;
    if (fout != NULL)
        rc = flc_data_new(p.n, p.dim, nc, &fs, err);
    else
        rc = flc_data_u8_new(p.n, p.dim, nc, &bs, err);
    if (rc == 0)
        rc = pair_labels(&p, num_classes, fs != NULL ? fs->y : bs->y,
                         fs != NULL ? &fs->num_classes : &bs->num_classes, err);
    if (rc == 0 && p.dim > 0)
        rc = pair_pixels(&p, bs != NULL ? bs->px : NULL, fs != NULL ? fs->x : NULL, err);
    pair_close(&p);
    if (rc != 0) {
        flc_data_free(fs);
        flc_data_u8_free(bs);
        return rc;
    }
    if (fout != NULL)
        *fout = fs;
    else
        *bout = bs;
    return 0;
}

int flc_data_load_idx(const char *images_path, const char *labels_path, size_t limit,
                      int num_classes, flc_dataset_t **out, flc_err_t *err)
{
    if (out == NULL)
        return flc_err_set(err, FLC_EINVAL, "IDX loader: no place for the data set");
    return idx_load(images_path, labels_path, limit, num_classes, out, NULL, err);
}

int flc_data_load_idx_u8(const char *images_path, const char *labels_path, size_t limit,
                         int num_classes, flc_dataset_u8_t **out, flc_err_t *err)
{
    if (out == NULL)
        return flc_err_set(err, FLC_EINVAL, "IDX loader: no place for the data set");
    return idx_load(images_path, labels_path, limit, num_classes, NULL, out, err);
}

void flc_data_px_scale(float *restrict x, const uint8_t *restrict px, size_t n)
{
    const float scale = 1.0f / 255.0f;
    for (size_t k = 0; k < n; k++)
        x[k] = (float)px[k] * scale;
}

const char *flc_data_fashion_dir(const char *dir)
{
    return dir != NULL && dir[0] != '\0' ? dir : FLC_FASHION_DIR;
}

/* The image and label paths of a Fashion-MNIST split, ip and lp of 4096. */
static int fashion_paths(const char *dir, int train, char *ip, char *lp, flc_err_t *err)
{
    dir = flc_data_fashion_dir(dir);
    const char *pre = train ? "train" : "t10k";
    int a = snprintf(ip, 4096, "%s/%s-images-idx3-ubyte.gz", dir, pre);
    int b = snprintf(lp, 4096, "%s/%s-labels-idx1-ubyte.gz", dir, pre);
    if (a < 0 || a >= 4096 || b < 0 || b >= 4096)
        return flc_err_set(err, FLC_EINVAL, "data directory path is too long: %.64s...", dir);
    return 0;
}

int flc_data_load_fashion(const char *dir, int train, size_t limit, flc_dataset_t **out,
                          flc_err_t *err)
{
    char ip[4096], lp[4096];
    int rc = fashion_paths(dir, train, ip, lp, err);
    return rc != 0 ? rc : flc_data_load_idx(ip, lp, limit, 10, out, err);
}

int flc_data_load_fashion_u8(const char *dir, int train, size_t limit, int labels_only,
                             flc_dataset_u8_t **out, flc_err_t *err)
{
    char ip[4096], lp[4096];
    int rc = fashion_paths(dir, train, ip, lp, err);
    return rc != 0 ? rc : flc_data_load_idx_u8(labels_only ? NULL : ip, lp, limit, 10, out, err);
}
