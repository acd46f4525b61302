/* Private to the cold tier: the handle's fields and the backends' entry
 * points, shared by cold.c (API, trailer, names), cold_file.c (file://
 * backend) and cold_s3.c (S3 backend over libcurl). */
#ifndef FLC_CACHE_COLD_INTERNAL_H
#define FLC_CACHE_COLD_INTERNAL_H

#include "cache/cold.h"

enum { FLC_COLD_FILE = 1, FLC_COLD_S3 = 2 };

/* An encoded key is at most three times its length (keys.h FLC_KEY_MAX). */
#define FLC_COLD_NAME_MAX 640

struct flc_cold {
    int kind;
    char dir[512];         /* file: the directory */
    int fsync;             /* file: fsync objects before renaming them into place */
    /* S3 */
    void *curl;            /* CURL * */
    char base[384];        /* http://host:port without trailing slash */
    char bucket[128];
    char region[64];
    char userpwd[512];     /* access:secret */
    char token[1024];      /* session token or "" */
    long timeout_ms;
    uint64_t tmp_counter;
    flc_cold_stats_t st;
    flc_err_t err;
};

/* Encodes key into a name safe in a file name and a URL path: [A-Za-z0-9._-]
 * are kept, every other byte becomes "~XX" (hex). */
void flc_cold_object_name(const char *key, char *out, size_t outlen);

/* Appends the 16-byte trailer of data[0..len) to out. */
void flc_cold_trailer(const void *data, size_t len, uint8_t out[FLC_COLD_TRAILER]);

/* Checks the trailer of an object of n bytes (body + trailer); *body_len is
 * the body's length. FLC_ECHECKSUM with a message naming key otherwise. */
int flc_cold_verify(flc_cold_t *c, const char *key, const uint8_t *obj, size_t n,
                    size_t *body_len);

/* The file:// backend (cold_file.c). open: url is "file://<absolute dir>",
 * the directory is created when missing. get returns the whole object
 * (body and trailer) in a new malloc'd *obj. */
int flc_cold_file_open(flc_cold_t *c, const char *url, const flc_cold_opts_t *o);
int flc_cold_file_put(flc_cold_t *c, const char *key, const void *data, size_t len);
int flc_cold_file_get(flc_cold_t *c, const char *key, uint8_t **obj, size_t *n);
int flc_cold_file_del(flc_cold_t *c, const char *key);
int flc_cold_file_del_prefix(flc_cold_t *c, const char *name_prefix, int dry_run, uint64_t *n,
                             uint64_t *bytes);
void flc_cold_file_path(const flc_cold_t *c, const char *key, char *out, size_t outlen);

/* The S3 backend (cold_s3.c), the same calls over HTTP. */
int flc_cold_s3_open(flc_cold_t *c, const char *url, const flc_cold_opts_t *opts);
void flc_cold_s3_close(flc_cold_t *c);
int flc_cold_s3_put(flc_cold_t *c, const char *key, const void *data, size_t len);
int flc_cold_s3_get(flc_cold_t *c, const char *key, uint8_t **obj, size_t *n);
int flc_cold_s3_del(flc_cold_t *c, const char *key);
int flc_cold_s3_del_prefix(flc_cold_t *c, const char *name_prefix, int dry_run, uint64_t *n,
                           uint64_t *bytes);
void flc_cold_s3_object_url(const flc_cold_t *c, const char *key, char *out, size_t outlen);

#endif
