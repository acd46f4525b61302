/* The word count's table (wc_table.h): one tokenizer and one hash for the
 * mappers, reducers and the single-process check, so the check compares
 * like with like. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "jobs/wc_table.h"

uint64_t flc_wc_hash(const char *w, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)w[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

void flc_wc_init(flc_wc_table_t *t)
{
    memset(t, 0, sizeof *t);
}

void flc_wc_free(flc_wc_table_t *t)
{
    free(t->slot);
    free(t->arena);
    memset(t, 0, sizeof *t);
}

const char *flc_wc_word(const flc_wc_table_t *t, const flc_wc_ent_t *en)
{
    return t->arena + en->off;
}

static int grow(flc_wc_table_t *t)
{
    size_t cap = t->cap ? t->cap * 2 : 1024;
    flc_wc_ent_t *s = calloc(cap, sizeof *s);
    if (s == NULL)
        return FLC_ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        if (t->slot[i].len == 0)
            continue;
        size_t j = t->slot[i].hash & (cap - 1);
        while (s[j].len != 0)
            j = (j + 1) & (cap - 1);
        s[j] = t->slot[i];
    }
    free(t->slot);
    t->slot = s;
    t->cap = cap;
    return 0;
}

void flc_wc_add(flc_wc_table_t *t, const char *w, size_t len, uint64_t count)
{
    if (len == 0 || t->oom)
        return;
    if ((t->n + 1) * 2 > t->cap && grow(t) != 0) {
        t->oom = 1;
        return;
    }
    uint64_t h = flc_wc_hash(w, len);
    size_t j = h & (t->cap - 1);
    while (t->slot[j].len != 0) {
        flc_wc_ent_t *en = &t->slot[j];
        if (en->hash == h && en->len == len && memcmp(t->arena + en->off, w, len) == 0) {
            en->count += count;
            return;
        }
        j = (j + 1) & (t->cap - 1);
    }
    if (t->arena_len + len + 1 > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap * 2 : 65536;
        while (cap < t->arena_len + len + 1)
            cap *= 2;
        char *a = realloc(t->arena, cap);
        if (a == NULL) {
            t->oom = 1;
            return;
        }
        t->arena = a;
        t->arena_cap = cap;
    }
    memcpy(t->arena + t->arena_len, w, len);
    t->arena[t->arena_len + len] = '\0';
    t->slot[j] = (flc_wc_ent_t){.hash = h, .count = count, .off = (uint32_t)t->arena_len,
                                .len = (uint32_t)len};
    t->arena_len += len + 1;
    t->n++;
}

static int is_letter(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

void flc_wc_count(flc_wc_table_t *t, const char *buf, size_t len, size_t lim, int skip_first)
{
    char word[256];
    size_t i = 0;
    if (skip_first)
        while (i < len && is_letter((unsigned char)buf[i]))
            i++;
    while (i < len) {
        while (i < len && !is_letter((unsigned char)buf[i]))
            i++;
        if (i >= len)
            break;
        size_t n = 0, full = 0;
        while (i < lim && is_letter((unsigned char)buf[i])) {
            if (n < sizeof word)
                word[n++] = (char)(buf[i] | 0x20);
            full++;
            i++;
        }
        (void)full; /* words over 256 letters are counted by their first 256 */
        flc_wc_add(t, word, n, 1);
    }
}

static const flc_wc_table_t *sort_t;

static int by_word(const void *a, const void *b)
{
    const flc_wc_ent_t *x = *(flc_wc_ent_t *const *)a, *y = *(flc_wc_ent_t *const *)b;
    return strcmp(sort_t->arena + x->off, sort_t->arena + y->off);
}

int flc_wc_dump(const flc_wc_table_t *t, uint32_t R, int part, int sorted, char **out,
                size_t *len)
{
    size_t n = 0;
    const flc_wc_ent_t **v = malloc((t->n ? t->n : 1) * sizeof *v);
    if (v == NULL)
        return FLC_ENOMEM;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slot[i].len != 0 && (part < 0 || flc_wc_part(t->slot[i].hash, R) == (uint32_t)part))
            v[n++] = &t->slot[i];
    if (sorted) {
        sort_t = t;
        qsort(v, n, sizeof *v, by_word);
    }
    size_t need = 1;
    for (size_t i = 0; i < n; i++)
        need += v[i]->len + 22;
    char *o = malloc(need);
    if (o == NULL) {
        free(v);
        return FLC_ENOMEM;
    }
    size_t at = 0;
    for (size_t i = 0; i < n; i++)
        at += (size_t)snprintf(o + at, need - at, "%s %llu\n", t->arena + v[i]->off,
                               (unsigned long long)v[i]->count);
    free(v);
    *out = o;
    *len = at;
    return 0;
}

int flc_wc_load(flc_wc_table_t *t, const char *text, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t w0 = i;
        while (i < len && text[i] != ' ')
            i++;
        size_t wl = i - w0;
        if (i >= len || wl == 0)
            return FLC_EDATA;
        i++;
        unsigned long long c = 0;
        size_t d0 = i;
        while (i < len && text[i] >= '0' && text[i] <= '9')
            c = c * 10 + (unsigned long long)(text[i++] - '0');
        if (i >= len || text[i] != '\n' || i == d0)
            return FLC_EDATA;
        i++;
        flc_wc_add(t, text + w0, wl, c);
    }
    return t->oom ? FLC_ENOMEM : FLC_OK;
}
