/* bigbuf.c - big scratch buffers, populated at once (bigbuf.h). */
#define _GNU_SOURCE
#include "base/bigbuf.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Every page of [p, p + bytes) (page-aligned) faulted in now, in one call. */
static void populate(void *p, size_t bytes)
{
#ifdef MADV_POPULATE_WRITE
    (void)madvise(p, bytes, MADV_POPULATE_WRITE); /* Linux >= 5.14; else faults later */
#else
    (void)p, (void)bytes;
#endif
}

void *flc_big_alloc(size_t bytes)
{
    if (bytes == 0)
        bytes = 1;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    populate(p, bytes);
    return p;
}

void flc_big_free(void *p, size_t bytes)
{
    if (p != NULL)
        munmap(p, bytes ? bytes : 1);
}

void *flc_buf_alloc(size_t bytes)
{
    return bytes >= FLC_BIG_MIN ? flc_big_alloc(bytes) : calloc(bytes ? bytes : 1, 1);
}

void flc_buf_free(void *p, size_t bytes)
{
    if (bytes >= FLC_BIG_MIN)
        flc_big_free(p, bytes);
    else
        free(p);
}

void flc_big_prefault(void *p, size_t bytes)
{
    if (p == NULL || bytes < FLC_BIG_MIN)
        return;
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + pg - 1) & ~(pg - 1), b = ((uintptr_t)p + bytes) & ~(pg - 1);
    if (b > a)
        populate((void *)a, b - a);
}
