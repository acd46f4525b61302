/* IDX file loader (the format of MNIST and Fashion-MNIST), gzip-compressed
 * or plain, through zlib's gzread (which reads plain files transparently).
 *
 * IDX: a 4-byte big-endian magic 0x0000TTNN (TT = 0x08 unsigned byte, NN =
 * number of dimensions), NN big-endian uint32 sizes, then the data. Images
 * are 0x00000803 (n, rows, cols); labels 0x00000801 (n). Pixels are read in
 * chunks and converted to floats in [0, 1] as they arrive, so no
 * full-size byte copy of the images is ever held. */
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

int flc_data_load_idx(const char *images_path, const char *labels_path, size_t limit,
                      int num_classes, flc_dataset_t **out, flc_err_t *err)
{
    if (images_path == NULL || labels_path == NULL || out == NULL || num_classes < 0 ||
        num_classes > 256)
        return flc_err_set(err, FLC_EINVAL, "IDX loader: missing path or bad class count %d",
                           num_classes);
    *out = NULL;
    gzFile fi = NULL, fl = NULL;
    flc_dataset_t *ds = NULL;
    unsigned char *buf = NULL;
    uint32_t idims[3] = {0}, ldims[1] = {0};
    int rc = idx_open(images_path, &fi, err);
    if (rc == 0)
        rc = idx_open(labels_path, &fl, err);
    if (rc == 0)
        rc = idx_header(fi, images_path, IDX_IMAGES_MAGIC, idims, 3, err);
    if (rc == 0)
        rc = idx_header(fl, labels_path, IDX_LABELS_MAGIC, ldims, 1, err);
    if (rc != 0)
        goto done;
    if (idims[0] == 0 || idims[1] == 0 || idims[2] == 0 ||
        (uint64_t)idims[1] * idims[2] > IDX_MAX_DIM) {
        rc = flc_err_set(err, FLC_EDATA, "%s: bad image dimensions %u x %u x %u", images_path,
                         idims[0], idims[1], idims[2]);
        goto done;
    }
    if (idims[0] != ldims[0]) {
        rc = flc_err_set(err, FLC_EDATA, "%s has %u images but %s has %u labels", images_path,
                         idims[0], labels_path, ldims[0]);
        goto done;
    }
    size_t n = idims[0], dim = (size_t)idims[1] * idims[2];
    if (limit > 0 && limit < n)
        n = limit;
    rc = flc_data_new(n, dim, num_classes > 0 ? num_classes : 1, &ds, err);
    if (rc != 0)
        goto done;

    /* One buffer for the labels and for each chunk of whole image rows. */
    size_t bufsize = IDX_CHUNK;
    if (n > bufsize)
        bufsize = n;
    if (dim > bufsize)
        bufsize = dim;
    buf = malloc(bufsize);
    if (buf == NULL) {
        rc = flc_err_set(err, FLC_ENOMEM, "IDX loader: out of memory for a %zu-byte buffer",
                         bufsize);
        goto done;
    }
    /* Labels first: small, and a bad label fails fast before the big read. */
    rc = idx_read(fl, labels_path, buf, n, "labels", err);
    if (rc != 0)
        goto done;
    int maxl = 0;
    for (size_t i = 0; i < n; i++) {
        if (num_classes > 0 && buf[i] >= num_classes) {
            rc = flc_err_set(err, FLC_EDATA, "%s: label %u of sample %zu is not below %d",
                             labels_path, buf[i], i, num_classes);
            goto done;
        }
        ds->y[i] = buf[i];
        if (buf[i] > maxl)
            maxl = buf[i];
    }
    if (num_classes == 0)
        ds->num_classes = maxl + 1;

    /* Pixels in chunks of whole rows, converted as they arrive. */
    size_t rows_per = bufsize / dim;
    const float scale = 1.0f / 255.0f;
    char what[64];
    for (size_t i = 0; i < n; i += rows_per) {
        size_t m = n - i < rows_per ? n - i : rows_per;
        snprintf(what, sizeof what, "images %zu..%zu", i, i + m - 1);
        rc = idx_read(fi, images_path, buf, m * dim, what, err);
        if (rc != 0)
            goto done;
        float *x = ds->x + i * dim;
        for (size_t k = 0; k < m * dim; k++)
            x[k] = (float)buf[k] * scale;
    }
    *out = ds;
    ds = NULL;
done:
    free(buf);
    flc_data_free(ds);
    if (fi != NULL)
        gzclose(fi);
    if (fl != NULL)
        gzclose(fl);
    return rc;
}

int flc_data_load_fashion(const char *dir, int train, size_t limit, flc_dataset_t **out,
                          flc_err_t *err)
{
    if (dir == NULL || dir[0] == '\0')
        dir = getenv("FLCACHE_DATA_DIR");
    if (dir == NULL || dir[0] == '\0')
        dir = FLC_FASHION_DIR;
    const char *pre = train ? "train" : "t10k";
    char ip[4096], lp[4096];
    int a = snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", dir, pre);
    int b = snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", dir, pre);
    if (a < 0 || (size_t)a >= sizeof ip || b < 0 || (size_t)b >= sizeof lp)
        return flc_err_set(err, FLC_EINVAL, "data directory path is too long: %.64s...", dir);
    return flc_data_load_idx(ip, lp, limit, 10, out, err);
}
