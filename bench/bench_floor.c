/* The exchange's floor of bench/train (issue 14 goal 3): five sequential
 * round trips with one step's real payloads on an idle connection, against
 * which a step's exchange time is read (bench_floor.h). */
#include "bench/bench_floor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aggregator/reduce_scatter.h"
#include "base/clock.h"
#include "bench/bench_util.h"
#include "cache/store_raw.h"

static void floor_die(const char *msg)
{
    fprintf(stderr, "bench: exchange floor: %s\n", msg);
    exit(1);
}

#define FLOOR_REPS 21

/* Five sequential round trips with one step's payloads (model of n floats
 * in S shards), each the median of FLOOR_REPS on s's idle connection; the
 * parts into part[5], the sum returned. The values are raw floats (a frame
 * adds ~60 bytes of header), each cut into FLOOR_PIECE-byte keys, all of a
 * round trip pipelined: hiredis 0.14 moves one big argument or reply at a
 * fraction of the socket's speed (docs/architecture.md, "Measured
 * choices"), which would make a floor the store itself beats. */
#define FLOOR_PIECE 65536
#define FLOOR_MAXCMD 4096

typedef struct floor_cmds {
    size_t n;
    int argc[FLOOR_MAXCMD];
    const char *argv[FLOOR_MAXCMD][3];
    size_t lens[FLOOR_MAXCMD][3];
    const char *const *av[FLOOR_MAXCMD];
    const size_t *lv[FLOOR_MAXCMD];
    char keys[FLOOR_MAXCMD][80];
} floor_cmds_t;

/* SETs (src) or GETs (src NULL) of bytes [0, len) as FLOOR_PIECE pieces
 * under keys "<prefix>:<i>", appended to c. */
static void floor_add(floor_cmds_t *c, const char *prefix, const char *src, size_t len)
{
    for (size_t at = 0, i = 0; at < len || (len == 0 && i == 0); at += FLOOR_PIECE, i++) {
        if (c->n == FLOOR_MAXCMD)
            floor_die("too many pieces");
        size_t k = c->n++, l = len - at < FLOOR_PIECE ? len - at : FLOOR_PIECE;
        snprintf(c->keys[k], sizeof c->keys[k], "%s:%zu", prefix, i);
        c->argv[k][0] = src ? "SET" : "GET", c->argv[k][1] = c->keys[k];
        c->argv[k][2] = src ? src + at : NULL;
        c->lens[k][0] = 3, c->lens[k][1] = strlen(c->keys[k]), c->lens[k][2] = l;
        c->argc[k] = src ? 3 : 2;
        c->av[k] = c->argv[k], c->lv[k] = c->lens[k];
        if (len == 0)
            break;
    }
}

static double rt_ms(flc_store_t *s, const floor_cmds_t *c)
{
    static redisReply *out[FLOOR_MAXCMD];
    uint64_t t0 = flc_now_ns();
    if (flc_store_pipeline_bin(s, c->n, c->argc, c->av, c->lv, out) != 0)
        floor_die(flc_store_errstr(s));
    double ms = (double)(flc_now_ns() - t0) / 1e6;
    for (size_t i = 0; i < c->n; i++) {
        if (out[i]->type == REDIS_REPLY_ERROR || out[i]->type == REDIS_REPLY_NIL)
            floor_die(out[i]->type == REDIS_REPLY_NIL ? "nothing to read" : out[i]->str);
        freeReplyObject(out[i]);
    }
    return ms;
}

double bench_exchange_floor(flc_store_t *s, uint64_t n, uint32_t S, double part[5])
{
    float *v = calloc(n, sizeof *v);
    floor_cmds_t *push = calloc(1, sizeof *push), *write = calloc(1, sizeof *write),
                 *pull = calloc(1, sizeof *pull), *tok = calloc(1, sizeof *tok),
                 *wake = calloc(1, sizeof *wake);
    if (v == NULL || push == NULL || write == NULL || pull == NULL || tok == NULL ||
        wake == NULL)
        floor_die("out of memory");
    char prefix[64];
    for (uint32_t k = 0; k < S; k++) {
        uint64_t off, cnt;
        flc_rs_shard_range(n, S, k, &off, &cnt);
        snprintf(prefix, sizeof prefix, "bench-floor:%d:%u", (int)getpid(), k);
        floor_add(push, prefix, (const char *)(v + off), cnt * sizeof(float));
        floor_add(pull, prefix, NULL, cnt * sizeof(float));
        if (k == 0) /* the largest shard */
            floor_add(write, prefix, (const char *)(v + off), cnt * sizeof(float));
    }
    /* A wake: one BLPOP that finds its token (pushed untimed before). */
    char list[48];
    snprintf(list, sizeof list, "bench-floor:%d:wake", (int)getpid());
    tok->n = wake->n = 1;
    tok->argv[0][0] = "RPUSH", tok->argv[0][1] = list, tok->argv[0][2] = "ok";
    tok->lens[0][0] = 5, tok->lens[0][1] = strlen(list), tok->lens[0][2] = 2;
    wake->argv[0][0] = "BLPOP", wake->argv[0][1] = list, wake->argv[0][2] = "1";
    wake->lens[0][0] = 5, wake->lens[0][1] = strlen(list), wake->lens[0][2] = 1;
    tok->argc[0] = wake->argc[0] = 3;
    tok->av[0] = tok->argv[0], tok->lv[0] = tok->lens[0];
    wake->av[0] = wake->argv[0], wake->lv[0] = wake->lens[0];
    double t[5][FLOOR_REPS];
    for (int r = 0; r < FLOOR_REPS; r++) {
        t[0][r] = rt_ms(s, push);  /* the push */
        rt_ms(s, tok);
        t[1][r] = rt_ms(s, wake);  /* the merger's wake */
        t[2][r] = rt_ms(s, write); /* the merged write */
        rt_ms(s, tok);
        t[3][r] = rt_ms(s, wake);  /* the reader's wake */
        t[4][r] = rt_ms(s, pull);  /* the pull */
    }
    double sum = 0;
    for (int i = 0; i < 5; i++)
        sum += part[i] = bench_median(t[i], FLOOR_REPS);
    for (size_t k = 0; k < push->n; k++) {
        redisReply *r;
        if (flc_store_commandf(s, &r, "DEL %s", push->keys[k]) == 0)
            freeReplyObject(r);
    }
    free(v), free(push), free(write), free(pull), free(tok), free(wake);
    return sum;
}

