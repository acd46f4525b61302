/* A word -> count hash table for the word count: open addressing over an
 * arena of word bytes, FNV-1a hashes. The partition of a word is taken from
 * the hash's high bits, so mappers and reducers agree on it without
 * talking. */
#ifndef FLC_JOBS_WC_TABLE_H
#define FLC_JOBS_WC_TABLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct flc_wc_ent {
    uint64_t hash;
    uint64_t count;
    uint32_t off, len; /* the word in the arena; len 0 = empty slot */
} flc_wc_ent_t;

typedef struct flc_wc_table {
    flc_wc_ent_t *slot;
    size_t cap, n;        /* cap a power of two */
    char *arena;
    size_t arena_len, arena_cap;
    int oom;              /* an allocation failed: counts are incomplete */
} flc_wc_table_t;

uint64_t flc_wc_hash(const char *w, size_t len);

/* Partition of a word among R reducers. */
static inline uint32_t flc_wc_part(uint64_t hash, uint32_t R)
{
    return (uint32_t)((hash >> 32) % R);
}

void flc_wc_init(flc_wc_table_t *t);
void flc_wc_free(flc_wc_table_t *t);
void flc_wc_add(flc_wc_table_t *t, const char *w, size_t len, uint64_t count);
const char *flc_wc_word(const flc_wc_table_t *t, const flc_wc_ent_t *en);

/* Counts the words of buf[0..len): maximal runs of ASCII letters,
 * lowercased. A word that starts before len is read to its end even past
 * len, up to buf's end `lim` (the mapper's split reads on to finish its last
 * word); one that started before buf (skip_first) is left to its owner. */
void flc_wc_count(flc_wc_table_t *t, const char *buf, size_t len, size_t lim, int skip_first);

/* Writes "word count\n" lines of the words of partition part (R:
 * partitions; part -1: all) into a new buffer *out (the caller frees it),
 * sorted by word when sorted. 0 or FLC_ENOMEM. */
int flc_wc_dump(const flc_wc_table_t *t, uint32_t R, int part, int sorted, char **out,
                size_t *len);

/* Adds every "word count\n" line of text to t. 0, FLC_EDATA on a line that
 * is not one, FLC_ENOMEM. */
int flc_wc_load(flc_wc_table_t *t, const char *text, size_t len);

#endif
