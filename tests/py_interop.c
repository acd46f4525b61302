/* py_interop - the C side of the Python interop tests (tests/py_*.py).
 *
 * The Python tests need the C library's own answers to compare with: its
 * shard tags (so the Python key schema is checked against keys.c, not
 * against a copy of it), a C contributor's push (flc_rs_push, so a Python
 * reader sees what a C client wrote) and a C reader's pull (flc_rs_pull).
 * Models travel as raw float32 files, so nothing is rounded on the way.
 *
 *   py_interop tag JOB S                     prints the S shard tags, one a line
 *   py_interop slot JOB S                    prints the S shard slots
 *   py_interop push URL JOB R CLIENT S NSAMPLES FILE [CHUNK]
 *   py_interop pull URL JOB R S N FILE [TIMEOUT_MS]
 * Exit 0, or 1 with the store's message on stderr. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/reduce_scatter.h"
#include "cache/keys.h"

static float *read_floats(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *v = malloc(len > 0 ? (size_t)len : 1);
    if (v && fread(v, 1, (size_t)len, f) != (size_t)len) {
        free(v);
        v = NULL;
    }
    fclose(f);
    *n = (size_t)len / sizeof(float);
    return v;
}

static int fail(const char *what, const flc_err_t *e)
{
    fprintf(stderr, "py_interop %s: %s\n", what, e->msg);
    return 1;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc == 4 && (!strcmp(argv[1], "tag") || !strcmp(argv[1], "slot"))) {
        uint32_t S = (uint32_t)strtoul(argv[3], NULL, 10);
        for (uint32_t k = 0; k < S; k++) {
            char tag[FLC_TAG_MAX];
            flc_key_shard_tag(tag, argv[2], k, S);
            if (!strcmp(argv[1], "tag"))
                printf("%s\n", tag);
            else
                printf("%u\n", flc_key_shard_slot(argv[2], k, S));
        }
        return 0;
    }
    flc_err_t e = {0};
    if ((argc == 9 || argc == 10) && !strcmp(argv[1], "push")) {
        size_t n = 0;
        float *v = read_floats(argv[8], &n);
        if (v == NULL) {
            fprintf(stderr, "py_interop push: cannot read %s\n", argv[8]);
            return 1;
        }
        flc_store_opts_t o = {.chunk_bytes = argc == 10 ? strtoul(argv[9], NULL, 10) : 0};
        flc_store_t *s = flc_store_open(argv[2], &o, &e);
        if (s == NULL)
            return fail("push", &e);
        flc_rs_push_cfg_t cfg = {.job = argv[3], .round = (uint32_t)strtoul(argv[4], NULL, 10),
                                 .client = argv[5],
                                 .num_shards = (uint32_t)strtoul(argv[6], NULL, 10),
                                 .model_size = n,
                                 .num_samples = strtoull(argv[7], NULL, 10)};
        int rc = flc_rs_push(s, &cfg, v, &e);
        flc_store_close(s);
        free(v);
        return rc == FLC_OK ? 0 : fail("push", &e);
    }
    if ((argc == 8 || argc == 9) && !strcmp(argv[1], "pull")) {
        size_t n = strtoull(argv[6], NULL, 10);
        float *v = calloc(n ? n : 1, sizeof *v);
        flc_store_t *s = flc_store_open(argv[2], NULL, &e);
        if (s == NULL || v == NULL)
            return fail("pull", &e);
        int rc = flc_rs_pull(s, argv[3], (uint32_t)strtoul(argv[4], NULL, 10),
                             (uint32_t)strtoul(argv[5], NULL, 10), n,
                             argc == 9 ? (unsigned)strtoul(argv[8], NULL, 10) : 30000, v, &e);
        flc_store_close(s);
        if (rc != FLC_OK) {
            free(v);
            return fail("pull", &e);
        }
        FILE *f = fopen(argv[7], "wb");
        int ok = f && fwrite(v, sizeof *v, n, f) == n;
        if (f)
            ok &= fclose(f) == 0;
        free(v);
        if (!ok) {
            fprintf(stderr, "py_interop pull: cannot write %s\n", argv[7]);
            return 1;
        }
        return 0;
    }
    fprintf(stderr, "usage: py_interop tag|slot JOB S | push URL JOB R CLIENT S NSAMPLES FILE "
                    "[CHUNK] | pull URL JOB R S N FILE [TIMEOUT_MS]\n");
    return 2;
}
