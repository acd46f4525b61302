/* Reading an opened stored shard window by window (store_part.h; the open
 * is store_part.c's): a window pipelines the chunks that cover it for many
 * parts at once, straight into the caller's memory where a chunk is wholly
 * wanted, and a reader keeps the chunk a window ended inside for the next
 * and asks for the next windows ahead (its flight). */
#include "cache/store_internal.h"

#include "base/bigbuf.h"
#include "base/crc32c.h"
#include "cache/store_part.h"
#include "cache/store_part_direct.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The chunk a reader's window ended inside, kept for the next window. */
struct flc_store_part_tail {
    char *buf;
    size_t cap;
    size_t lo, hi; /* frame bytes it holds; hi == 0: none */
};

/* One piece of a window: bytes [lo, hi) of a part's frame, read by one
 * command (or found in the part's tail); at the window's edges (a chunk
 * only partly wanted) into the scratch buffer or the tail, else straight
 * into the destination. */
typedef struct flc_store_part_piece {
    size_t part, lo, hi;     /* frame bytes the command answers */
    size_t want_lo, want_hi; /* of those, the window's */
    size_t dst_off;          /* where want_lo lands, in bytes from the part's window start */
    int field0;              /* chunk 0 of a hash: its header is rechecked */
    int from_tail;           /* no command: the part's tail holds [lo, hi) */
    int to_tail;             /* read into the part's tail: it reaches past the window */
} piece_t;

size_t flc_store_part_tail_bytes(const flc_store_t *s, const flc_store_part_t *p)
{
    return p->chunk ? p->chunk : s->opts.chunk_bytes;
}

static int append_piece(flc_store_t *s, const flc_store_part_t *p, const piece_t *pc)
{
    char a[24], b[24];
    if (p->chunk == 0) {
        snprintf(a, sizeof a, "%zu", pc->lo);
        snprintf(b, sizeof b, "%zu", pc->hi - 1);
        const char *c[] = {"GETRANGE", p->key, a, b};
        return flc_store_append(s, 4, c, NULL);
    }
    snprintf(a, sizeof a, "%zu", pc->lo / p->chunk);
    const char *c[] = {"HGET", p->key, a};
    return flc_store_append(s, 3, c, NULL);
}

/* Reads one piece's reply (or takes it from the tail) into the part's
 * window at dst; *bad keeps the first mismatch (and *first its message)
 * while every reply is still read (the connection stays in step). d: read
 * off the socket here, else through hiredis. */
static int read_piece(flc_store_t *s, const flc_store_part_t *p, const piece_t *pc, char *dst,
                      struct flc_store_part_tail *tail, int *bad, flc_err_t *first,
                      flc_store_part_direct_t *d)
{
    if (pc->from_tail) {
        if (!*bad)
            memcpy(dst + pc->dst_off, tail->buf + (pc->want_lo - tail->lo),
                   pc->want_hi - pc->want_lo);
        return FLC_OK;
    }
    size_t want = pc->hi - pc->lo, len = 0;
    int whole = pc->want_lo == pc->lo && pc->want_hi == pc->hi && !pc->field0;
    char *into = *bad ? NULL : whole ? dst + pc->dst_off : pc->to_tail ? tail->buf : s->scratch;
    if (pc->to_tail)
        tail->hi = 0; /* holds nothing until this read is checked */
    int rc = d != NULL ? flc_store_part_direct_bulk(s, d, into, into ? want : 0, &len)
                       : flc_store_read_into(s, into, into ? want : 0, &len, "GET");
    if (rc != FLC_OK && s->c == NULL)
        return rc;
    if (*bad)
        return FLC_OK;
    if (rc != FLC_OK) { /* WRONGTYPE: rewritten as the other kind of value */
        char said[sizeof s->err.msg];
        snprintf(said, sizeof said, "%s", s->err.msg);
        rc = flc_err_set(&s->err, FLC_EDATA, "%s changed while it was read (%s)", p->key, said);
    } else if (len != want)
        rc = flc_err_set(&s->err, FLC_EDATA, "%s: %zu bytes at %zu, expected %zu (the value "
                         "changed while it was read)", p->key, len, pc->lo, want);
    if (rc == FLC_OK && pc->field0 && flc_crc32c(0, into, p->off) != p->head_crc)
        rc = flc_err_set(&s->err, FLC_EDATA, "%s: its header changed while it was read "
                         "(rewritten?)", p->key);
    if (rc == FLC_OK && !whole)
        memcpy(dst + pc->dst_off, into + (pc->want_lo - pc->lo), pc->want_hi - pc->want_lo);
    if (rc == FLC_OK && pc->to_tail) {
        tail->lo = pc->lo;
        tail->hi = pc->hi;
    }
    if (rc != FLC_OK) {
        *bad = rc;
        *first = s->err;
    }
    return FLC_OK;
}

/* The pieces of part i's window [lo, hi) of frame bytes, remembered in
 * pcs[*npc..] (room made by the caller; send_more asks for them). With a
 * tail (a reader's), a string is cut on the chunk grid too and the piece
 * reaching past the window is kept; without, a string's window is read
 * exactly. */
static int plan_part(flc_store_t *s, const flc_store_part_t *p, size_t i, size_t lo, size_t hi,
                     const struct flc_store_part_tail *tail, piece_t *pcs, size_t *npc)
{
    size_t step = flc_store_part_tail_bytes(s, p);
    int grid = p->chunk || tail != NULL;
    for (size_t at = grid ? lo - lo % step : lo; at < hi; at += step) {
        piece_t pc = {.part = i, .lo = at};
        pc.hi = at + step < p->flen ? at + step : p->flen;
        if (!grid && pc.hi > hi)
            pc.hi = hi; /* a string: exactly the window */
        pc.want_lo = at > lo ? at : lo;
        pc.want_hi = pc.hi < hi ? pc.hi : hi;
        pc.dst_off = pc.want_lo - lo;
        pc.field0 = p->chunk && at == 0;
        pc.from_tail = tail && tail->hi > 0 && tail->lo == pc.lo && tail->hi == pc.hi;
        pc.to_tail = tail && !pc.from_tail && pc.hi > hi;
        pcs[(*npc)++] = pc;
    }
    return FLC_OK;
}

/* Why a reader keeps FLC_STORE_READ_FLIGHT: a
 * window of N rows crosses a chunk edge of every row at about the same
 * coordinate (their frames differ by a few header bytes), so asking for
 * all its chunks at once put N chunks in redis-server's reply buffers in
 * one go: at N = 100 and 256 KiB chunks a 26 MB reply, which redis-server
 * took fresh pages for and wrote 64 KiB per turn of its event loop
 * (bench/cluster's query case, 25 MB, 3 nodes: windows read at 90-300
 * MB/s over the node's own unix socket; next to the data 7-10 s and
 * central 23-25 s, against 3.3-4.6 and 14 s reading each update whole,
 * 2 MB at a time). The pieces are asked for as the replies before them
 * are read, so at most the flight waits in Redis, and it is always busy.
 *
 * send_more appends the reader's next pieces while their bytes fit in the
 * flight (at least one when nothing is in flight), and sends them. */
static int send_more(flc_store_t *s, flc_store_part_reader_t *r)
{
    int rc = FLC_OK, any = 0;
    while (rc == FLC_OK && r->next_send < r->npc) {
        const piece_t *pc = &r->pcs[r->next_send];
        size_t bytes = pc->hi - pc->lo;
        if (!pc->from_tail) {
            if (r->inflight > 0 && r->inflight + bytes > FLC_STORE_READ_FLIGHT)
                break;
            rc = append_piece(s, &r->parts[pc->part], pc);
            r->inflight += bytes;
            any = 1;
        }
        r->next_send++;
    }
    return rc == FLC_OK && any ? flc_store_flush(s, "GET") : rc;
}

int flc_store_part_reader_init(flc_store_t *s, flc_store_part_reader_t *r,
                               const flc_store_part_t *parts, size_t n)
{
    memset(r, 0, sizeof *r);
    r->parts = parts;
    r->n = n;
    r->tails = calloc(n ? n : 1, sizeof *r->tails);
    if (r->tails == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory for a reader of %zu values", n);
    return FLC_OK;
}

/* The tails' block of a reader: the one the store kept from the reader
 * before when it is big enough, else a new one, populated. A query reads
 * shard after shard with a new reader each: fresh tail buffers faulted in
 * a page at a time cost every window 0 ~15 ms (bench/queries, 25 MB:
 * 704 faults of 11 rows' 256 KiB tails, 18 ms against 3 ms for the next
 * windows). */
static char *take_tails(flc_store_t *s, size_t need, size_t *cap)
{
    if (s->spare_tails != NULL && s->spare_tails_cap >= need) {
        char *b = s->spare_tails;
        *cap = s->spare_tails_cap;
        s->spare_tails = NULL, s->spare_tails_cap = 0;
        return b;
    }
    *cap = need;
    return flc_big_alloc(need);
}

/* Gives a reader's tail block to the store for the next reader (the
 * bigger of the two is kept); s NULL: freed. */
static void give_tails(flc_store_t *s, char *b, size_t cap)
{
    if (b == NULL)
        return;
    if (s != NULL && cap > s->spare_tails_cap) {
        flc_big_free(s->spare_tails, s->spare_tails_cap);
        s->spare_tails = b, s->spare_tails_cap = cap;
    } else {
        flc_big_free(b, cap);
    }
}

static void drop_tails(flc_store_part_reader_t *r)
{
    for (size_t i = 0; r->tails && i < r->n; i++)
        r->tails[i].hi = 0;
}

int flc_store_part_send(flc_store_t *s, flc_store_part_reader_t *r, uint64_t first,
                        size_t count)
{
    flc_err_clear(&s->err);
    if (r->sent)
        return flc_err_set(&s->err, FLC_EINVAL, "a window is already outstanding on this "
                           "reader: receive it first");
    const flc_store_part_t *parts = r->parts;
    size_t n = r->n, scratch = s->opts.chunk_bytes, room = 0, most = 0;
    for (size_t i = 0; i < n; i++) {
        size_t step = flc_store_part_tail_bytes(s, &parts[i]);
        most = step > most ? step : most;
    }
    if (r->tails != NULL && n > 0 && r->tail_mem_cap < n * most) { /* before anything is sent */
        give_tails(s, r->tail_mem, r->tail_mem_cap);
        r->tail_mem = take_tails(s, n * most, &r->tail_mem_cap);
        if (r->tail_mem == NULL) {
            r->tail_mem_cap = 0;
            return flc_err_set(&s->err, FLC_ENOMEM, "out of memory for %zu chunks of %zu bytes",
                               n, most);
        }
        for (size_t i = 0; i < n; i++)
            r->tails[i] = (struct flc_store_part_tail){.buf = r->tail_mem + i * most, .cap = most};
    }
    for (size_t i = 0; i < n; i++) {
        if (first + count > parts[i].head.count)
            return flc_err_set(&s->err, FLC_EINVAL, "window [%llu, %llu) is outside the %llu "
                               "floats of %s", (unsigned long long)first,
                               (unsigned long long)(first + count),
                               (unsigned long long)parts[i].head.count, parts[i].key);
        size_t step = flc_store_part_tail_bytes(s, &parts[i]);
        scratch = step > scratch ? step : scratch;
        room += count * sizeof(float) / step + 2;
    }
    r->first = first;
    r->count = count;
    if (count == 0 || n == 0) {
        r->npc = 0;
        r->sent = 1;
        return FLC_OK;
    }
    /* Room for every piece first: nothing is appended that is not sent. */
    if (room > r->cap) {
        piece_t *p = realloc(r->pcs, room * sizeof *p);
        if (p == NULL)
            return flc_err_set(&s->err, FLC_ENOMEM, "out of memory planning a window read");
        r->pcs = p, r->cap = room;
    }
    flc_store_in_step(s, "an earlier operation");
    int rc = flc_store_ensure(s);
    rc = rc ? rc : flc_store_grow_scratch(s, scratch);
    r->npc = r->next_send = r->inflight = 0;
    for (size_t i = 0; rc == FLC_OK && i < n; i++) {
        size_t lo = parts[i].off + (size_t)first * sizeof(float);
        rc = plan_part(s, &parts[i], i, lo, lo + count * sizeof(float),
                       r->tails ? &r->tails[i] : NULL, r->pcs, &r->npc);
    }
    rc = rc ? rc : send_more(s, r);
    if (rc != FLC_OK) {
        drop_tails(r);
        return flc_err_wrap(&s->err, "reading a window: ");
    }
    r->sent = 1;
    s->part_window_out = r->inflight > 0;
    return FLC_OK;
}

/* Reads the window sent into dst (NULL: read and drop every reply). */
static int recv_window(flc_store_t *s, flc_store_part_reader_t *r, float *const *dst)
{
    if (!r->sent)
        return flc_err_set(&s->err, FLC_EINVAL, "no window was sent on this reader");
    r->sent = 0;
    s->part_window_out = 0;
    int rc = FLC_OK, bad = dst == NULL ? FLC_EINVAL : FLC_OK;
    flc_err_t first_err = {0};
    /* Straight off the socket when hiredis holds nothing unread. */
    flc_store_part_direct_t *d = NULL;
    if (s->cl == NULL && s->c != NULL && s->c->reader->pos == s->c->reader->len &&
        (d = malloc(sizeof *d)) != NULL) {
        d->fd = s->c->fd;
        d->pos = d->len = 0;
    }
    for (size_t k = 0; rc == FLC_OK && k < r->npc; k++) {
        const piece_t *pc = &r->pcs[k];
        if (!pc->from_tail && k >= r->next_send) {
            if (dst == NULL)
                break; /* dropping the window: nothing more was asked for */
            rc = send_more(s, r);
            if (rc != FLC_OK)
                break;
        }
        rc = read_piece(s, &r->parts[pc->part], pc, dst ? (char *)dst[pc->part] : NULL,
                        r->tails ? &r->tails[pc->part] : NULL, &bad, &first_err, d);
        if (rc == FLC_OK && !pc->from_tail) {
            r->inflight -= pc->hi - pc->lo;
            if (dst != NULL && r->inflight <= FLC_STORE_READ_FLIGHT / 2 &&
                r->next_send < r->npc)
                rc = send_more(s, r);
        }
    }
    if (d != NULL && rc == FLC_OK && d->pos != d->len)
        rc = flc_store_part_direct_lost(s, FLC_EPROTO, "bytes after the window's last reply");
    free(d);
    if (rc != FLC_OK || bad != FLC_OK)
        drop_tails(r);
    if (dst == NULL)
        return rc;
    if (rc == FLC_OK && bad != FLC_OK) {
        rc = bad;
        s->err = first_err;
    }
    if (rc == FLC_OK)
        s->bytes_read += (uint64_t)r->n * r->count * sizeof(float);
    return rc == FLC_OK ? FLC_OK : flc_err_wrap(&s->err, "reading a window: ");
}

int flc_store_part_recv(flc_store_t *s, flc_store_part_reader_t *r, float *const *dst)
{
    flc_err_clear(&s->err);
    return recv_window(s, r, dst);
}

void flc_store_part_reader_free(flc_store_t *s, flc_store_part_reader_t *r)
{
    if (r == NULL)
        return;
    if (r->sent && s != NULL)
        recv_window(s, r, NULL);
    give_tails(s, r->tail_mem, r->tail_mem_cap);
    free(r->tails);
    free(r->pcs);
    memset(r, 0, sizeof *r);
}

int flc_store_part_read(flc_store_t *s, const flc_store_part_t *parts, size_t n, uint64_t first,
                        size_t count, float *const *dst)
{
    /* A reader without tails: every window exact, nothing kept. */
    flc_store_part_reader_t r = {.parts = parts, .n = n};
    int rc = flc_store_part_send(s, &r, first, count);
    rc = rc ? rc : flc_store_part_recv(s, &r, dst);
    free(r.pcs);
    return rc;
}
