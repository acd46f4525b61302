/* Writing shards: an update or a merged shard as one SET streamed from the
 * caller's memory, or (bigger than FLC_STORE_SPLIT chunks) as a hash of
 * chunks under a tmp key renamed into place, followed in the same round trip
 * by the arrival (and, for a writer with the job's credentials, the job
 * indexes); many updates pipelined; and deleting one.
 * See store.h for the protocol.
 *
 * Writes are flushed chunk by chunk (append one command, write it out) so
 * hiredis's output buffer never holds more than one chunk: its
 * memmove-after-partial-write then costs O(chunk), not O(value). Replies of
 * the small commands queue in the socket meanwhile and are read at the end. */
#include "cache/store_internal.h"

#include "base/clock.h"
#include "cache/store_put_head.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define PUT_UPDATE 1
#define PUT_MERGED 2
#define PUT_MERGED_OPENED 4 /* a merged shard of a round its driver indexed */

static int is_merged(int kind)
{
    return kind == PUT_MERGED || kind == PUT_MERGED_OPENED;
}
#define PUT_UPDATE_IF_OPEN 3

/* Wakes the merger only while the shard is open, atomically with the
 * merger's close (which sets :closed and drains every expected client's
 * arrival list in one script, store_protocol.c): so an arrival is either
 * seen by the merger or refused here, never lost in between. Returns 1
 * when closed, 2 when the value itself is not there (its SET was refused,
 * e.g. for memory): a merger is never woken for an update it cannot read.
 * Only the client's own arrival list is declared (KEYS[1]): the closed flag
 * and the value are read by name (ARGV), since Redis asks read and write
 * permission on every declared key and a client may only read the shard's
 * keys (docs/architecture.md, "Key schema"). All three share the shard's
 * hash tag, so the script runs on its node of a Redis Cluster. ARGV[4], a
 * ttl in ms (the store's --ttl; absent or 0: none), expires the list. */
static const char ARRIVE_IF_OPEN[] =
    "if redis.call('EXISTS', ARGV[2]) == 1 then return 1 end "
    "if redis.call('EXISTS', ARGV[3]) == 0 then return 2 end "
    "redis.call('RPUSH', KEYS[1], ARGV[1]) "
    "if tonumber(ARGV[4] or '0') > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end "
    "return 0";

/* With a store ttl (--ttl), a PEXPIRE of key after its write: every key a
 * put writes expires, so a run killed before its end sweep leaves nothing
 * for longer than asked (issue 13, tests/test_ttl_kill.c). */
static int append_expire(flc_store_t *s, const char *key, int *ncmd)
{
    if (s->opts.ttl_ms == 0)
        return FLC_OK;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);
    const char *c[] = {"PEXPIRE", key, ttl};
    *ncmd += 1;
    return flc_store_append(s, 3, c, NULL);
}

/* Appends the job index commands that follow a shard written with the
 * job's credentials (flc_store_put_update, flc_store_put_merged): the round
 * and shard indexes, and for an update its client in the round's roster
 * and the job's clients. A client's push (put_updates_if_open) writes none
 * of these: its round's mergers do (flc_store_round_begin). */
static int append_index(flc_store_t *s, const flc_shard_t *sh, int kind, int *ncmd)
{
    char k_rounds[FLC_KEY_MAX], k_shards[FLC_KEY_MAX], rnd[16], shd[16];
    flc_key_job(k_rounds, sh->job, "rounds");
    flc_key_job_round(k_shards, sh->job, "shards", sh->round);
    snprintf(rnd, sizeof rnd, "%u", sh->round);
    snprintf(shd, sizeof shd, "%u", sh->shard);
    const char *c1[] = {"ZADD", k_rounds, rnd, rnd};
    const char *c2[] = {"SADD", k_shards, shd};
    int rc = flc_store_append(s, 4, c1, NULL);
    rc = rc ? rc : flc_store_append(s, 3, c2, NULL);
    *ncmd += 2;
    if (rc == FLC_OK)
        rc = append_expire(s, k_rounds, ncmd);
    if (rc == FLC_OK)
        rc = append_expire(s, k_shards, ncmd);
    if (rc != FLC_OK || is_merged(kind))
        return rc;
    char k_roster[FLC_KEY_MAX], k_clients[FLC_KEY_MAX];
    flc_key_job_round(k_roster, sh->job, "roster", sh->round);
    flc_key_job(k_clients, sh->job, "clients");
    const char *c3[] = {"SADD", k_roster, sh->client};
    const char *c4[] = {"SADD", k_clients, sh->client};
    rc = flc_store_append(s, 3, c3, NULL);
    rc = rc ? rc : flc_store_append(s, 3, c4, NULL);
    *ncmd += 2;
    if (rc == FLC_OK)
        rc = append_expire(s, k_roster, ncmd);
    if (rc == FLC_OK)
        rc = append_expire(s, k_clients, ncmd);
    return rc;
}

/* Appends the commands that follow a shard: an update's arrival token on
 * the client's own list (fl:{T}:c:<c>:a:<r>), checked against the close
 * for a push; the job indexes for a writer with the job's credentials. */
static int append_tail(flc_store_t *s, const flc_shard_t *sh, const char *tag, const char *key,
                       int kind, int *ncmd)
{
    if (kind == PUT_MERGED_OPENED) /* its driver indexed the round already */
        return FLC_OK;
    if (kind == PUT_MERGED)
        return append_index(s, sh, kind, ncmd);
    char k_arr[FLC_KEY_MAX];
    flc_key_arrival(k_arr, tag, sh->round, sh->client);
    if (kind == PUT_UPDATE_IF_OPEN) {
        char k_closed[FLC_KEY_MAX];
        flc_key_shard(k_closed, tag, sh->round, "closed");
        char ttl[24]; /* the expiry goes in the script: its answer must be the last reply */
        snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);
        const char *ev[] = {"EVAL", ARRIVE_IF_OPEN, "1", k_arr, sh->client, k_closed, key, ttl};
        *ncmd += 1;
        return flc_store_append(s, 8, ev, NULL);
    }
    const char *c5[] = {"RPUSH", k_arr, sh->client};
    int rc = flc_store_append(s, 3, c5, NULL);
    *ncmd += 1;
    if (rc == FLC_OK)
        rc = append_expire(s, k_arr, ncmd);
    return rc ? rc : append_index(s, sh, kind, ncmd);
}

/* Stores one shard. With defer (and no cold tier) a value that goes out as
 * one SET is only sent: *defer gets the number of replies the caller must
 * read later (flc_store_put_updates_if_open pipelines many shards this way);
 * *defer stays 0 when the shard was stored completely here. */
/* Done tokens that follow a merged shard in its own round trip: Redis runs
 * a connection's commands in order, so a reader woken by one finds the
 * value written (flc_store_put_merged_done). */
typedef struct put_done {
    const char *token;
    unsigned copies;
} put_done_t;

static int append_done(flc_store_t *s, const flc_shard_t *sh, const char *tag,
                       const put_done_t *done, int *ncmd)
{
    if (done == NULL || done->copies == 0)
        return FLC_OK;
    char key[FLC_KEY_MAX];
    flc_key_shard(key, tag, sh->round, "done");
    const char **argv = malloc((done->copies + 2) * sizeof *argv);
    if (argv == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
    argv[0] = "RPUSH", argv[1] = key;
    for (unsigned i = 0; i < done->copies; i++)
        argv[2 + i] = done->token;
    int rc = flc_store_append(s, (int)done->copies + 2, argv, NULL);
    free(argv);
    *ncmd += 1;
    return rc == FLC_OK ? append_expire(s, key, ncmd) : rc;
}

static int put_shard(flc_store_t *s, const flc_shard_t *sh, int kind, int *closed, int *defer,
                     const put_done_t *done)
{
    flc_err_clear(&s->err);
    char what[256];
    flc_shard_describe(sh, what, sizeof what);
    if (!is_merged(kind) && sh->client[0] == '\0')
        return flc_err_set(&s->err, FLC_EINVAL, "%s: an update needs a client id", what);
    flc_shard_t hdr = *sh;
    if (is_merged(kind))
        hdr.client[0] = '\0';
    if (hdr.count && hdr.values == NULL)
        return flc_err_set(&s->err, FLC_EINVAL, "%s: no values", what);
    uint8_t head[FLC_FRAME_PREFIX + FLC_FRAME_HEADER_MAX];
    size_t hl;
    int rc = flc_shard_encode_header(&hdr, head, sizeof head, &hl, &s->err);
    if (rc != FLC_OK)
        return rc;
    size_t pl = flc_shard_payload_bytes(&hdr); /* float32 or encoded (cache/encode.h) */
    size_t total = hl + pl;
    if (total > s->opts.max_msg_bytes)
        return flc_err_set(&s->err, FLC_ETOOBIG, "%s: %zu bytes is over the message limit of %zu",
                           what, total, s->opts.max_msg_bytes);
    rc = flc_store_ensure(s);
    if (rc != FLC_OK)
        return rc;
    /* The shard count comes with every shard: it places the key. A writer
     * with the job's credentials also checks or writes the job's schema
     * record (once per store); a client's push does not touch it. */
    rc = flc_store_job_shards(s, hdr.job, hdr.num_shards);
    if (rc == FLC_OK && kind != PUT_UPDATE_IF_OPEN)
        rc = flc_store_job_begin(s, hdr.job, hdr.num_shards);
    if (rc != FLC_OK)
        return flc_err_wrap(&s->err, "storing %s: ", what);
    if (s->tier && (rc = flc_tier_before_put(s, total)) != FLC_OK)
        return flc_err_wrap(&s->err, "making room for %s: ", what);

    char tag[FLC_TAG_MAX], key[FLC_KEY_MAX];
    flc_key_shard_tag(tag, hdr.job, hdr.shard, hdr.num_shards);
    if (!is_merged(kind))
        flc_key_update(key, tag, hdr.round, hdr.client);
    else
        flc_key_shard(key, tag, hdr.round, "agg");
    const char *payload = (const char *)hdr.values;
    size_t chunk = s->opts.chunk_bytes;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);

    /* First chunk: header + the start of the payload, sent as two pieces. */
    size_t first_pl = total <= FLC_STORE_SPLIT * chunk ? pl : chunk - hl;
    struct iovec first[2] = {{head, hl}, {(void *)payload, first_pl}};
    int ncmd = 0;
    long long last = 0; /* the arrival script's answer, when there is one */

    if (total <= FLC_STORE_SPLIT * chunk) {
        /* One SET, the indexes and the notification: one round trip. Up to
         * FLC_STORE_SPLIT chunks a single SET beats the two round trips of
         * the hash below (bench/store, 1 MB); beyond, redis-server's one big
         * allocation costs more than chunk-sized ones (16 MB: 0.3 vs 4 GB/s).
         * PSETEX, not SET ... PX: the value must be the last argument. */
        const char *set[] = {"SET", key};
        const char *psetex[] = {"PSETEX", key, ttl};
        rc = s->opts.ttl_ms ? flc_store_send_pieces(s, 3, psetex, first, 2, "PSETEX")
                            : flc_store_send_pieces(s, 2, set, first, 2, "SET");
        ncmd++;
        if (rc == FLC_OK)
            rc = append_tail(s, &hdr, tag, key, kind, &ncmd);
        if (rc == FLC_OK)
            rc = append_done(s, &hdr, tag, done, &ncmd);
        if (rc == FLC_OK && defer != NULL && s->tier == NULL) {
            *defer = ncmd; /* the caller reads the replies */
            s->bytes_written += total;
            return FLC_OK;
        }
        if (rc == FLC_OK)
            rc = flc_store_flush(s, "SET");
        if (rc == FLC_OK)
            rc = flc_store_read_replies(s, ncmd, "SET", &last);
    } else {
        /* Phase 1: build the value under a tmp key in the same hash slot, as
         * a hash of chunk fields "0".."n-1". Not one string grown by APPEND:
         * redis-server reallocates the whole string on every APPEND, which
         * measured 4x slower than separate chunk values (bench/store). A
         * hash keeps one key, so DEL, TTL and RENAME still act on the whole
         * value. Beside the chunks, the head field "h" (store_put_head.h). */
        char tmp[FLC_KEY_MAX + 32];
        snprintf(tmp, sizeof tmp, "%s~tmp.%d.%llu", key, (int)getpid(),
                 (unsigned long long)++s->tmp_counter);
        const char *set[] = {"HSET", tmp, "0"};
        rc = flc_store_send_pieces(s, 3, set, first, 2, "HSET");
        ncmd++;
        if (rc == FLC_OK) {
            const char *exp[] = {"PEXPIRE", tmp, "600000"}; /* orphans expire */
            rc = flc_store_append(s, 3, exp, NULL);
            ncmd++;
        }
        if (rc == FLC_OK) { /* the head field: what a stamp reads (store_put_head.h) */
            uint8_t hf[FLC_HEAD_MAX];
            size_t hfl = flc_store_head_make(hf, head, hl, payload, pl);
            const char *hs[] = {"HSET", tmp, FLC_HEAD_FIELD, (const char *)hf};
            size_t lens[] = {4, strlen(tmp), strlen(FLC_HEAD_FIELD), hfl};
            rc = flc_store_append(s, 4, hs, lens);
            ncmd++;
        }
        unsigned field = 1;
        for (size_t off = first_pl; rc == FLC_OK && off < pl; off += chunk, field++) {
            size_t n = pl - off < chunk ? pl - off : chunk;
            char f[16];
            snprintf(f, sizeof f, "%u", field);
            const char *app[] = {"HSET", tmp, f};
            struct iovec piece = {(void *)(payload + off), n};
            rc = flc_store_send_pieces(s, 3, app, &piece, 1, "HSET");
            ncmd++;
        }
        if (rc == FLC_OK)
            rc = flc_store_read_replies(s, ncmd, "HSET", NULL);
        if (rc != FLC_OK) {
            if (s->c) { /* server refused (OOM...): drop the partial tmp key */
                redisReply *r = redisCommand(s->c, "DEL %s", tmp);
                if (r)
                    freeReplyObject(r);
            }
        } else {
            /* Phase 2: publish atomically, then index and notify. */
            ncmd = 0;
            const char *ren[] = {"RENAME", tmp, key};
            rc = flc_store_append(s, 3, ren, NULL);
            ncmd++;
            if (rc == FLC_OK) {
                const char *exp[] = {"PEXPIRE", key, ttl};
                const char *per[] = {"PERSIST", key};
                rc = s->opts.ttl_ms ? flc_store_append(s, 3, exp, NULL)
                                    : flc_store_append(s, 2, per, NULL);
                ncmd++;
            }
            if (rc == FLC_OK)
                rc = append_tail(s, &hdr, tag, key, kind, &ncmd);
            if (rc == FLC_OK)
                rc = append_done(s, &hdr, tag, done, &ncmd);
            if (rc == FLC_OK)
                rc = flc_store_flush(s, "RENAME");
            if (rc == FLC_OK)
                rc = flc_store_read_replies(s, ncmd, "RENAME", &last);
        }
    }
    if (rc != FLC_OK) /* the key too: an ACL refusal (NOPERM) does not name it */
        return flc_err_wrap(&s->err, "storing %s (key %s): ", what, key);
    if (closed)
        *closed = last == 1;
    s->bytes_written += total;
    if (s->tier)
        flc_tier_after_put(s, &hdr, is_merged(kind), total);
    return FLC_OK;
}

/* put_shard, and with a cold tier one retry after making room when Redis
 * refused the value for lack of memory (writers the estimate did not see). */
/* How long a write refused for memory beside a cold tier is tried again
 * (TIER_OOM_TRIES tries, the waits doubling from 20 ms: 0.6 s in all). */
#define TIER_OOM_TRIES 6

/* A write refused for memory (noeviction) beside a cold tier: room is
 * made (spilling) and the write tried again; when it is refused again, it
 * is tried again after a short wait, a few times. Redis counts its
 * clients' reply buffers in used_memory, so a reader of big values (a
 * merger deriving a round's statistics, a query) lifts a cache that runs
 * at its limit over maxmemory for as long as its replies take to drain,
 * and a write landing then is refused although nothing is left to spill
 * (test_sim_cold: 1-5 runs in 10 lost a client's update that way while
 * the mergers read their round back by windows). The write is the same
 * each time: SET, and an arrival that wakes no merger for a value that
 * was not stored (store_put.c ARRIVE_IF_OPEN). */
static int put_shard_tiered(flc_store_t *s, const flc_shard_t *sh, int kind, int *closed,
                            const put_done_t *done)
{
    int rc = put_shard(s, sh, kind, closed, NULL, done);
    flc_err_t first = s->err;
    unsigned wait = 20;
    for (int tries = 1; rc == FLC_ENOMEM && s->tier && s->c && tries < TIER_OOM_TRIES;
         tries++) {
        uint64_t need = 2 * ((uint64_t)flc_shard_payload_bytes(sh) + FLC_FRAME_HEADER_MAX);
        if (flc_store_make_room(s, need) != FLC_OK || tries > 1) {
            flc_sleep_ms(wait); /* nothing (more) to spill: let the readers drain */
            wait *= 2;
        }
        flc_err_clear(&s->err);
        rc = put_shard(s, sh, kind, closed, NULL, done);
    }
    if (rc == FLC_ENOMEM)
        s->err = first; /* the first refusal says it best */
    return rc;
}

int flc_store_put_update(flc_store_t *s, const flc_shard_t *sh)
{
    return put_shard_tiered(s, sh, PUT_UPDATE, NULL, NULL);
}

/* Reads the replies of the deferred shards [from, to) (flushing their
 * queued tails first), filling closed[]. Keeps reading after a refused
 * shard so the connection stays in step; returns the first error. */
static int settle(flc_store_t *s, const flc_shard_t *sh, int *pending, int *closed, size_t from,
                  size_t to)
{
    int first = FLC_OK;
    flc_err_t kept = {0};
    int any = 0;
    for (size_t i = from; i < to; i++)
        any |= pending[i] != 0;
    if (!any)
        return FLC_OK;
    if (s->c == NULL)
        return s->err.code ? s->err.code : FLC_ECONN;
    int rc = flc_store_flush(s, "SET");
    if (rc != FLC_OK)
        return rc;
    for (size_t i = from; i < to; i++) {
        if (pending[i] == 0)
            continue;
        long long last = 0;
        int r = flc_store_read_replies(s, pending[i], "SET", &last);
        pending[i] = 0;
        if (r != FLC_OK && s->c == NULL)
            return r; /* connection gone: nothing more to read */
        if (r != FLC_OK && first == FLC_OK) {
            char what[256], tag[FLC_TAG_MAX], key[FLC_KEY_MAX];
            flc_shard_describe(&sh[i], what, sizeof what);
            flc_key_shard_tag(tag, sh[i].job, sh[i].shard, sh[i].num_shards);
            flc_key_update(key, tag, sh[i].round, sh[i].client);
            flc_err_wrap(&s->err, "storing %s (key %s): ", what, key);
            first = r;
            kept = s->err; /* later shards' replies must not overwrite it */
        } else if (r == FLC_OK) {
            closed[i] = last == 1;
        }
    }
    if (first != FLC_OK)
        s->err = kept;
    return first;
}

int flc_store_put_updates_if_open(flc_store_t *s, const flc_shard_t *sh, size_t n, int *closed)
{
    flc_err_clear(&s->err);
    /* What put_shard would refuse, refused before anything is sent, so a
     * bad shard never leaves the others half-announced. */
    for (size_t i = 0; i < n; i++) {
        closed[i] = 0;
        char what[256];
        flc_shard_describe(&sh[i], what, sizeof what);
        if (sh[i].client[0] == '\0')
            return flc_err_set(&s->err, FLC_EINVAL, "%s: an update needs a client id", what);
        if (sh[i].count && sh[i].values == NULL)
            return flc_err_set(&s->err, FLC_EINVAL, "%s: no values", what);
        if (sh[i].count > (s->opts.max_msg_bytes - FLC_FRAME_PREFIX) / sizeof(float))
            return flc_err_set(&s->err, FLC_ETOOBIG, "%s: %llu floats is over the message "
                               "limit of %zu bytes", what, (unsigned long long)sh[i].count,
                               s->opts.max_msg_bytes);
    }
    if (s->tier != NULL) { /* spilling decides shard by shard */
        for (size_t i = 0; i < n; i++) {
            int rc = put_shard_tiered(s, &sh[i], PUT_UPDATE_IF_OPEN, &closed[i], NULL);
            if (rc != FLC_OK)
                return rc;
        }
        return FLC_OK;
    }
    int *pending = calloc(n ? n : 1, sizeof *pending);
    if (pending == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
    size_t split = FLC_STORE_SPLIT * s->opts.chunk_bytes;
    int rc = FLC_OK;
    for (size_t i = 0; i < n && rc == FLC_OK; i++) {
        /* A value that may go out as a hash reads its own replies at once:
         * everything deferred before it is read first, in order. */
        if (flc_shard_payload_bytes(&sh[i]) + FLC_FRAME_PREFIX + FLC_FRAME_HEADER_MAX > split)
            rc = settle(s, sh, pending, closed, 0, i);
        if (rc == FLC_OK)
            rc = put_shard(s, &sh[i], PUT_UPDATE_IF_OPEN, &closed[i], &pending[i], NULL);
    }
    /* After an error too: whatever was sent gets its replies read. */
    int r = settle(s, sh, pending, closed, 0, n);
    if (rc == FLC_OK)
        rc = r;
    free(pending);
    flc_store_in_step(s, "a push");
    return rc;
}

int flc_store_put_merged(flc_store_t *s, const flc_shard_t *sh)
{
    return put_shard_tiered(s, sh, PUT_MERGED, NULL, NULL);
}

int flc_store_put_merged_opened(flc_store_t *s, const flc_shard_t *sh)
{
    return put_shard_tiered(s, sh, PUT_MERGED_OPENED, NULL, NULL);
}

int flc_store_put_merged_done(flc_store_t *s, const flc_shard_t *sh, int opened,
                              const char *token, unsigned copies)
{
    put_done_t done = {.token = token, .copies = copies};
    return put_shard_tiered(s, sh, opened ? PUT_MERGED_OPENED : PUT_MERGED, NULL, &done);
}


int flc_store_del_update(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                         const char *client)
{
    flc_err_clear(&s->err);
    if (flc_name_check_job(job, &s->err) || flc_name_check(client, "client", &s->err))
        return s->err.code;
    char key[FLC_KEY_MAX];
    int rc = flc_store_update_key(s, key, job, round, shard, client);
    if (rc != FLC_OK)
        return rc;
    const char *argv[] = {"DEL", key};
    rc = flc_store_command(s, NULL, 2, argv, NULL);
    if (rc == FLC_OK && s->tier) { /* no copy may come back from the cold tier */
        flc_obj_t o;
        flc_store_obj_of(s, &o, job, round, shard, client);
        flc_tier_deleted(s, &o);
    }
    return rc;
}

int flc_store_append_merged_tail(flc_store_t *s, const flc_shard_t *hdr, const char *tag,
                                 const char *key, int opened, const char *token,
                                 unsigned copies, int *ncmd)
{
    put_done_t done = {.token = token, .copies = copies};
    int rc = append_tail(s, hdr, tag, key, opened ? PUT_MERGED_OPENED : PUT_MERGED, ncmd);
    return rc ? rc : append_done(s, hdr, tag, &done, ncmd);
}
