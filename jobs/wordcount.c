/* wordcount: MapReduce word count with the shuffle through the cache.
 *
 * The corpus is the text of the Debian package `fortunes` (about 2.5 MB of
 * English quotations in /usr/share/games/fortunes; the .dat index files are
 * left out), or any file or directory given. The driver cuts its bytes into
 * W equal splits (pieces of files); map function i counts the words that
 * start in its split, cuts its table into R partitions by the word's hash
 * and stores partition r as "word count" lines under partition r's hash tag
 * (round 0, name m<i>). Reducer r reads its R column (every mapper's
 * partition r), merges, and stores its sorted counts (round 1, name out);
 * the driver reads the R outputs, ranks the top words and compares every
 * count with one process's count of the same bytes (identical counts). */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/clock.h"
#include "base/event.h"
#include "jobs/job_internal.h"
#include "jobs/wc_table.h"

#define WC_CORPUS "/usr/share/games/fortunes"
#define WC_READ_PAST 4096 /* a split reads on this far to finish its last word */

typedef struct wc_file {
    char path[512];
    long long size; /* bytes used (the last file may be cut at --size) */
} wc_file_t;

static int by_path(const void *a, const void *b)
{
    return strcmp(((const wc_file_t *)a)->path, ((const wc_file_t *)b)->path);
}

/* The corpus files in name order, at most limit bytes in all (0: all). */
static int corpus_files(const char *path, long long limit, wc_file_t **out, size_t *n,
                        long long *total, flc_err_t *e)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return flc_err_set(e, FLC_ENOTFOUND, "corpus %s: not found (install the Debian "
                           "package fortunes, or give --corpus FILE|DIR)", path);
    wc_file_t *v = NULL;
    size_t k = 0, cap = 0;
    DIR *d = S_ISDIR(st.st_mode) ? opendir(path) : NULL;
    if (S_ISDIR(st.st_mode) && d == NULL)
        return flc_err_set(e, FLC_EIO, "corpus %s: cannot open the directory", path);
    for (;;) {
        char full[512];
        if (d != NULL) {
            struct dirent *de = readdir(d);
            if (de == NULL)
                break;
            size_t l = strlen(de->d_name);
            if (de->d_name[0] == '.' || (l > 4 && strcmp(de->d_name + l - 4, ".dat") == 0) ||
                (l > 3 && strcmp(de->d_name + l - 3, ".u8") == 0))
                continue; /* fortune's indexes and its UTF-8 aliases of the same files */
            snprintf(full, sizeof full, "%s/%s", path, de->d_name);
        } else if (k == 0) {
            snprintf(full, sizeof full, "%s", path);
        } else {
            break;
        }
        struct stat fs;
        if (stat(full, &fs) != 0 || !S_ISREG(fs.st_mode) || fs.st_size == 0) {
            if (d == NULL)
                break;
            continue;
        }
        if (k == cap) {
            cap = cap ? cap * 2 : 64;
            wc_file_t *g = realloc(v, cap * sizeof *g);
            if (g == NULL) {
                free(v);
                if (d)
                    closedir(d);
                return flc_err_set(e, FLC_ENOMEM, "out of memory listing %s", path);
            }
            v = g;
        }
        snprintf(v[k].path, sizeof v[k].path, "%s", full);
        v[k++].size = fs.st_size;
        if (d == NULL)
            break;
    }
    if (d)
        closedir(d);
    if (k == 0) {
        free(v);
        return flc_err_set(e, FLC_ENOTFOUND, "corpus %s: no text files", path);
    }
    qsort(v, k, sizeof *v, by_path);
    long long sum = 0;
    size_t used = 0;
    for (; used < k && (limit <= 0 || sum < limit); used++) {
        if (limit > 0 && sum + v[used].size > limit)
            v[used].size = limit - sum;
        sum += v[used].size;
    }
    *out = v;
    *n = used;
    *total = sum;
    return FLC_OK;
}

/* Counts the words of one piece [off, off+len) of a file whose used part
 * ends at fend. */
static int count_piece(flc_wc_table_t *t, const char *path, long long off, long long len,
                       long long fend, flc_err_t *e)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return flc_err_set(e, FLC_EIO, "corpus file %s: cannot open", path);
    long long from = off > 0 ? off - 1 : 0;
    long long to = off + len + WC_READ_PAST < fend ? off + len + WC_READ_PAST : fend;
    size_t n = (size_t)(to - from);
    char *buf = malloc(n ? n : 1);
    int rc = FLC_OK;
    if (buf == NULL)
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory reading %s", path);
    else if (fseek(f, from, SEEK_SET) != 0 || fread(buf, 1, n, f) != n)
        rc = flc_err_set(e, FLC_EIO, "corpus file %s: cannot read %zu bytes at %lld", path, n,
                         from);
    if (rc == FLC_OK) {
        size_t skip = (size_t)(off - from); /* 1 when there is a byte before the piece */
        int inside = skip && ((buf[0] | 0x20) >= 'a' && (buf[0] | 0x20) <= 'z');
        flc_wc_count(t, buf + skip, (size_t)len, n - skip, inside);
        if (t->oom)
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory counting %s", path);
    }
    free(buf);
    fclose(f);
    return rc;
}

int flc_job_wordcount_map(flc_job_task_t *f, cJSON **res, flc_err_t *e)
{
    long long id, R;
    const cJSON *pieces;
    if (flc_ev_need_int(f->ev, "id", 0, 1 << 20, &id, e) ||
        flc_ev_need_int(f->ev, "reducers", 1, 1 << 16, &R, e) ||
        flc_ev_need_array(f->ev, "pieces", &pieces, e))
        return e->code;
    flc_wc_table_t t;
    flc_wc_init(&t);
    int rc = FLC_OK;
    long long bytes = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, pieces) {
        const char *path = flc_ev_str(p, "path", NULL);
        if (path == NULL) {
            rc = flc_err_set(e, FLC_EINVAL, "event field 'pieces': a piece has no path");
            break;
        }
        long long off = (long long)flc_ev_num(p, "off", 0);
        long long len = (long long)flc_ev_num(p, "len", 0);
        if ((rc = count_piece(&t, path, off, len, (long long)flc_ev_num(p, "fend", 0), e)) != 0)
            break;
        bytes += len;
    }
    uint64_t shuffle = 0;
    char name[24];
    snprintf(name, sizeof name, "m%lld", id);
    for (uint32_t r = 0; rc == FLC_OK && r < (uint32_t)R; r++) {
        char *text = NULL;
        size_t len = 0;
        if (flc_wc_dump(&t, (uint32_t)R, (int)r, 0, &text, &len) != 0)
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory for partition %u", r);
        else
            rc = flc_job_put(&f->x, 0, r, name, text, len, e);
        shuffle += len;
        free(text);
    }
    if (rc == FLC_OK) {
        *res = cJSON_CreateObject();
        cJSON_AddNumberToObject(*res, "bytes", (double)bytes);
        cJSON_AddNumberToObject(*res, "distinct", (double)t.n);
        cJSON_AddNumberToObject(*res, "shuffle_bytes", (double)shuffle);
    }
    flc_wc_free(&t);
    return rc;
}

int flc_job_wordcount_reduce(flc_job_task_t *f, cJSON **res, flc_err_t *e)
{
    long long part, M;
    if (flc_ev_need_int(f->ev, "part", 0, 1 << 16, &part, e) ||
        flc_ev_need_int(f->ev, "mappers", 1, 1 << 20, &M, e))
        return e->code;
    flc_wc_table_t t;
    flc_wc_init(&t);
    int rc = FLC_OK;
    for (long long m = 0; rc == FLC_OK && m < M; m++) {
        char name[24];
        snprintf(name, sizeof name, "m%lld", m);
        flc_shard_t sh;
        size_t len;
        if ((rc = flc_job_get(&f->x, 0, (uint32_t)part, name, &sh, &len, e)) != FLC_OK)
            break;
        if (flc_wc_load(&t, (const char *)sh.values, len) != 0)
            rc = flc_err_set(e, FLC_EDATA, "partition %lld of mapper %lld: not 'word count' "
                             "lines", part, m);
        flc_shard_release(&sh);
    }
    char *text = NULL;
    size_t len = 0;
    if (rc == FLC_OK && flc_wc_dump(&t, 1, -1, 1, &text, &len) != 0)
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory for partition %lld's output", part);
    if (rc == FLC_OK)
        rc = flc_job_put(&f->x, 1, (uint32_t)part, "out", text, len, e);
    if (rc == FLC_OK) {
        *res = cJSON_CreateObject();
        cJSON_AddNumberToObject(*res, "distinct", (double)t.n);
    }
    free(text);
    flc_wc_free(&t);
    return rc;
}

static const flc_wc_table_t *top_t;

static int by_count(const void *a, const void *b)
{
    const flc_wc_ent_t *x = *(flc_wc_ent_t *const *)a, *y = *(flc_wc_ent_t *const *)b;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return strcmp(top_t->arena + x->off, top_t->arena + y->off);
}

/* The top k words of t as a JSON array of [word, count]. */
static cJSON *top_words(const flc_wc_table_t *t, int k)
{
    const flc_wc_ent_t **v = malloc((t->n ? t->n : 1) * sizeof *v);
    cJSON *a = cJSON_CreateArray();
    if (v == NULL)
        return a;
    size_t n = 0;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slot[i].len)
            v[n++] = &t->slot[i];
    top_t = t;
    qsort(v, n, sizeof *v, by_count);
    for (size_t i = 0; i < n && (int)i < k; i++) {
        cJSON *p = cJSON_CreateArray();
        cJSON_AddItemToArray(p, cJSON_CreateString(t->arena + v[i]->off));
        cJSON_AddItemToArray(p, cJSON_CreateNumber((double)v[i]->count));
        cJSON_AddItemToArray(a, p);
    }
    free(v);
    return a;
}

/* 1 when a and b hold the same words with the same counts; else 0 with
 * the first difference in why. */
static int same_counts(const flc_wc_table_t *a, const flc_wc_table_t *b, char *why, size_t cap)
{
    if (a->n != b->n) {
        snprintf(why, cap, "%zu distinct words, one process counted %zu", a->n, b->n);
        return 0;
    }
    for (size_t i = 0; i < b->cap; i++) {
        const flc_wc_ent_t *x = &b->slot[i];
        if (x->len == 0)
            continue;
        size_t j = x->hash & (a->cap - 1);
        while (a->slot[j].len != 0 &&
               !(a->slot[j].hash == x->hash &&
                 strcmp(a->arena + a->slot[j].off, b->arena + x->off) == 0))
            j = (j + 1) & (a->cap - 1);
        if (a->slot[j].len == 0 || a->slot[j].count != x->count) {
            snprintf(why, cap, "'%s': %llu, one process counted %llu", b->arena + x->off,
                     a->slot[j].len ? (unsigned long long)a->slot[j].count : 0ull,
                     (unsigned long long)x->count);
            return 0;
        }
    }
    return 1;
}

int flc_job_wordcount(flc_job_ctx_t *c, flc_err_t *e)
{
    const flc_job_opts_t *o = c->o;
    int W = o->workers, R = o->reducers > 0 ? o->reducers : o->workers;
    wc_file_t *files = NULL;
    size_t nf = 0;
    long long total = 0;
    int rc = corpus_files(o->corpus ? o->corpus : WC_CORPUS, o->size, &files, &nf, &total, e);
    if (rc != FLC_OK)
        return rc;
    c->x.nparts = (uint32_t)R;
    cJSON **ev = calloc((size_t)(W > R ? W : R), sizeof *ev);
    char(*names)[48] = calloc((size_t)(W > R ? W : R), sizeof *names);
    cJSON **res = calloc((size_t)W, sizeof *res);
    if (ev == NULL || names == NULL || res == NULL)
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory for %d mappers", W);
    /* Split i is bytes [i*total/W, (i+1)*total/W) of the files laid end to end. */
    size_t fi = 0;
    long long foff = 0;
    for (int i = 0; rc == FLC_OK && i < W; i++) {
        ev[i] = flc_job_event(c, "wordcount.map");
        cJSON_AddNumberToObject(ev[i], "id", i);
        cJSON_AddNumberToObject(ev[i], "reducers", R);
        cJSON *pc = cJSON_AddArrayToObject(ev[i], "pieces");
        long long want = (long long)((i + 1) * (double)total / W) -
                         (long long)(i * (double)total / W);
        while (want > 0 && fi < nf) {
            long long take = files[fi].size - foff < want ? files[fi].size - foff : want;
            cJSON *p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "path", files[fi].path);
            cJSON_AddNumberToObject(p, "off", (double)foff);
            cJSON_AddNumberToObject(p, "len", (double)take);
            cJSON_AddNumberToObject(p, "fend", (double)files[fi].size);
            cJSON_AddItemToArray(pc, p);
            want -= take;
            foff += take;
            if (foff >= files[fi].size) {
                fi++;
                foff = 0;
            }
        }
        snprintf(names[i], sizeof names[i], "map %d", i);
    }
    uint64_t t0 = flc_now_ns();
    if (rc == FLC_OK)
        rc = flc_job_phase(c, "map", ev, names, (size_t)W, res, e);
    double shuffle = 0;
    for (int i = 0; i < W; i++) {
        shuffle += res[i] ? flc_ev_num(res[i], "shuffle_bytes", 0) : 0;
        cJSON_Delete(res[i]);
    }
    for (int r = 0; rc == FLC_OK && r < R; r++) {
        ev[r] = flc_job_event(c, "wordcount.reduce");
        cJSON_AddNumberToObject(ev[r], "part", r);
        cJSON_AddNumberToObject(ev[r], "mappers", W);
        snprintf(names[r], sizeof names[r], "reduce %d", r);
    }
    if (rc == FLC_OK)
        rc = flc_job_phase(c, "reduce", ev, names, (size_t)R, NULL, e);
    flc_wc_table_t got;
    flc_wc_init(&got);
    for (int r = 0; rc == FLC_OK && r < R; r++) {
        flc_shard_t sh;
        size_t len;
        if ((rc = flc_job_get(&c->x, 1, (uint32_t)r, "out", &sh, &len, e)) != FLC_OK)
            break;
        if (flc_wc_load(&got, (const char *)sh.values, len) != 0)
            rc = flc_err_set(e, FLC_EDATA, "reducer %d's output: not 'word count' lines", r);
        flc_shard_release(&sh);
    }
    c->rep->wall_ms = flc_job_ms(t0);
    if (rc == FLC_OK) {
        cJSON *m = c->rep->metrics;
        cJSON_AddStringToObject(m, "corpus",
                                o->corpus ? o->corpus : WC_CORPUS " (Debian fortunes)");
        cJSON_AddNumberToObject(m, "corpus_bytes", (double)total);
        cJSON_AddNumberToObject(m, "files", (double)nf);
        cJSON_AddNumberToObject(m, "reducers", R);
        cJSON_AddNumberToObject(m, "distinct_words", (double)got.n);
        cJSON_AddNumberToObject(m, "shuffle_bytes", shuffle);
        cJSON_AddItemToObject(m, "top", top_words(&got, o->top));
    }
    if (rc == FLC_OK && o->check) {
        flc_wc_table_t one;
        flc_wc_init(&one);
        uint64_t t1 = flc_now_ns();
        for (size_t i = 0; rc == FLC_OK && i < nf; i++)
            rc = count_piece(&one, files[i].path, 0, files[i].size, files[i].size, e);
        c->rep->single_ms = flc_job_ms(t1);
        if (rc == FLC_OK) {
            char why[200] = "";
            c->rep->checked = 1;
            c->rep->check_ok = same_counts(&got, &one, why, sizeof why);
            if (c->rep->check_ok)
                snprintf(c->rep->check, sizeof c->rep->check,
                         "identical counts of %zu distinct words", one.n);
            else
                snprintf(c->rep->check, sizeof c->rep->check, "counts differ: %s", why);
        }
        flc_wc_free(&one);
    }
    flc_wc_free(&got);
    flc_job_events_free(ev, (size_t)(W > R ? W : R));
    free(ev);
    free(names);
    free(res);
    free(files);
    return rc;
}
