/* The store's connection handling, chunked shard put/get, and notification
 * lists. See store.h for the protocol; the reasons for its shape are here.
 *
 * Writes are flushed chunk by chunk (append one command, write it out) so
 * hiredis's output buffer never holds more than one chunk: its
 * memmove-after-partial-write then costs O(chunk), not O(value). Replies of
 * the small commands queue in the socket meanwhile and are read at the end. */
#include "cache/store_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/time.h>
#include <unistd.h>

#include "base/clock.h"

static struct timeval tv_ms(unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (long)(ms % 1000) * 1000};
    return tv;
}

int flc_store_io_error(flc_store_t *s, const char *what)
{
    int code = FLC_ECONN;
    const char *detail = "connection lost";
    if (s->c) {
        detail = s->c->errstr[0] ? s->c->errstr : detail;
        if (s->c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK))
            code = FLC_ETIMEOUT, detail = "no answer within the I/O timeout";
        else if (s->c->err == REDIS_ERR_PROTOCOL)
            code = FLC_EPROTO;
        else if (s->c->err == REDIS_ERR_OOM)
            code = FLC_ENOMEM;
    }
    flc_err_set(&s->err, code, "%s: %s: %s", s->url_text, what, detail);
    /* The reply stream is out of step now; start over on the next call. */
    if (s->c) {
        redisFree(s->c);
        s->c = NULL;
    }
    return code;
}

int flc_store_reply_error(flc_store_t *s, const redisReply *r, const char *what)
{
    if (r == NULL)
        return flc_err_set(&s->err, FLC_EPROTO, "%s: %s: no reply", s->url_text, what);
    const char *msg = r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply type";
    int code = FLC_EPROTO;
    if (strncmp(msg, "OOM", 3) == 0)
        code = FLC_ENOMEM;
    else if (strncmp(msg, "NOAUTH", 6) == 0 || strncmp(msg, "WRONGPASS", 9) == 0 ||
             strncmp(msg, "NOPERM", 6) == 0)
        code = FLC_EAUTH;
    return flc_err_set(&s->err, code, "%s: %s: %s", s->url_text, what, msg);
}

static int connect_now(flc_store_t *s)
{
    struct timeval ct = tv_ms(s->opts.connect_timeout_ms);
    redisContext *c = s->url.kind == FLC_URL_UNIX
                          ? redisConnectUnixWithTimeout(s->url.path, ct)
                          : redisConnectWithTimeout(s->url.host, s->url.port, ct);
    if (c == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "%s: cannot allocate a connection",
                           s->url_text);
    if (c->err) {
        flc_err_set(&s->err, FLC_ECONN, "cannot connect to %s: %s", s->url_text, c->errstr);
        redisFree(c);
        return FLC_ECONN;
    }
    redisSetTimeout(c, tv_ms(s->opts.io_timeout_ms));
    /* Keep the reader's buffer between replies: with the default (free it
     * whenever it is empty and over 16 KB) every 256 KB chunk would allocate
     * it anew. */
    c->reader->maxbuf = 0;
    s->c = c;
    redisReply *r = NULL;
    if (s->url.password[0]) {
        if (s->url.user[0])
            r = redisCommand(c, "AUTH %s %s", s->url.user, s->url.password);
        else
            r = redisCommand(c, "AUTH %s", s->url.password);
        if (r == NULL)
            return flc_store_io_error(s, "AUTH");
        if (r->type == REDIS_REPLY_ERROR) {
            int rc = flc_store_reply_error(s, r, "AUTH");
            s->err.code = rc = FLC_EAUTH;
            freeReplyObject(r);
            redisFree(s->c);
            s->c = NULL;
            return rc;
        }
        freeReplyObject(r);
    }
    if (s->url.db) {
        r = redisCommand(c, "SELECT %d", s->url.db);
        if (r == NULL)
            return flc_store_io_error(s, "SELECT");
        int bad = r->type == REDIS_REPLY_ERROR;
        int rc = bad ? flc_store_reply_error(s, r, "SELECT") : FLC_OK;
        freeReplyObject(r);
        if (bad) {
            redisFree(s->c);
            s->c = NULL;
            return rc;
        }
    }
    return FLC_OK;
}

int flc_store_ensure(flc_store_t *s)
{
    if (s->c && !s->c->err)
        return FLC_OK;
    if (s->c) {
        redisFree(s->c);
        s->c = NULL;
    }
    return connect_now(s);
}

flc_store_t *flc_store_open(const char *url, const flc_store_opts_t *opts, flc_err_t *err)
{
    flc_store_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        flc_err_set(err, FLC_ENOMEM, "out of memory");
        return NULL;
    }
    if (opts)
        s->opts = *opts;
    if (s->opts.chunk_bytes == 0)
        s->opts.chunk_bytes = FLC_STORE_CHUNK_DEFAULT;
    if (s->opts.chunk_bytes < 4096)
        s->opts.chunk_bytes = 4096; /* the first chunk must hold a whole header */
    if (s->opts.max_msg_bytes == 0)
        s->opts.max_msg_bytes = FLC_STORE_MAX_MSG_DEFAULT;
    if (s->opts.connect_timeout_ms == 0)
        s->opts.connect_timeout_ms = 5000;
    if (s->opts.io_timeout_ms == 0)
        s->opts.io_timeout_ms = 30000;
    if (flc_url_parse(url, &s->url, err) != FLC_OK) {
        free(s);
        return NULL;
    }
    flc_url_redacted(&s->url, s->url_text, sizeof s->url_text);
    /* With a cold tier configured, values spilled by any process are found
     * again. Its URL and settings are borrowed only for this call. */
    int rc = connect_now(s);
    if (rc == FLC_OK)
        rc = flc_store_attach_cold(s, s->opts.cold_url, s->opts.cold_opts);
    s->opts.cold_url = NULL;
    s->opts.cold_opts = NULL;
    if (rc != FLC_OK) {
        if (err)
            *err = s->err;
        flc_store_close(s);
        return NULL;
    }
    return s;
}

flc_store_t *flc_store_open_cfg(const flc_store_cfg_t *sc, const char *url, flc_err_t *err)
{
    if (url == NULL && sc != NULL)
        url = sc->url;
    if (url == NULL || *url == '\0') {
        flc_err_set(err, FLC_EINVAL, "no cache URL: the event has no 'redis' and FLCACHE_REDIS "
                                     "is not set");
        return NULL;
    }
    return flc_store_open(url, sc != NULL ? &sc->opts : NULL, err);
}

void flc_store_close(flc_store_t *s)
{
    if (s == NULL)
        return;
    flc_tier_close(s);
    if (s->c)
        redisFree(s->c);
    free(s->scratch);
    free(s);
}

/* Makes the scratch buffer hold at least n bytes (kept between calls). */
static int grow_scratch(flc_store_t *s, size_t n)
{
    if (s->scratch_cap >= n)
        return FLC_OK;
    char *p = realloc(s->scratch, n);
    if (p == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory for a %zu-byte read buffer", n);
    s->scratch = p;
    s->scratch_cap = n;
    return FLC_OK;
}

const flc_err_t *flc_store_error(const flc_store_t *s)
{
    return &s->err;
}

const char *flc_store_errstr(const flc_store_t *s)
{
    return flc_err_msg(&s->err);
}

const char *flc_store_url(const flc_store_t *s)
{
    return s->url_text;
}

size_t flc_store_chunk_bytes(const flc_store_t *s)
{
    return s->opts.chunk_bytes;
}

int flc_store_url_full(const flc_store_t *s, char *out, size_t outlen)
{
    return flc_url_format(&s->url, out, outlen);
}

void flc_store_set_chunk_bytes(flc_store_t *s, size_t chunk)
{
    s->opts.chunk_bytes = chunk < 4096 ? 4096 : chunk;
}

uint64_t flc_store_bytes_written(const flc_store_t *s)
{
    return s->bytes_written;
}

uint64_t flc_store_bytes_read(const flc_store_t *s)
{
    return s->bytes_read;
}

int flc_store_append(flc_store_t *s, int argc, const char **argv, const size_t *lens)
{
    if (redisAppendCommandArgv(s->c, argc, argv, lens) != REDIS_OK)
        return flc_store_io_error(s, "building a command");
    return FLC_OK;
}

int flc_store_flush(flc_store_t *s, const char *what)
{
    int done = 0;
    while (!done) {
        if (redisBufferWrite(s->c, &done) != REDIS_OK)
            return flc_store_io_error(s, what);
    }
    return FLC_OK;
}

int flc_store_read(flc_store_t *s, redisReply **r, const char *what)
{
    void *reply = NULL;
    if (redisGetReply(s->c, &reply) != REDIS_OK || reply == NULL)
        return flc_store_io_error(s, what);
    *r = reply;
    return FLC_OK;
}

int flc_store_pipeline(flc_store_t *s, size_t n, const int *argc, const char *const *const *argv,
                       redisReply **out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = NULL;
    int rc = flc_store_ensure(s);
    for (size_t i = 0; rc == FLC_OK && i < n; i++)
        rc = flc_store_append(s, argc[i], (const char **)argv[i], NULL);
    if (rc == FLC_OK)
        rc = flc_store_flush(s, argv[0][0]);
    for (size_t i = 0; rc == FLC_OK && i < n; i++)
        rc = flc_store_read(s, &out[i], argv[i][0]);
    if (rc != FLC_OK)
        for (size_t i = 0; i < n; i++)
            if (out[i]) {
                freeReplyObject(out[i]);
                out[i] = NULL;
            }
    return rc;
}

int flc_store_command(flc_store_t *s, redisReply **out, int argc, const char **argv,
                      const size_t *argvlen)
{
    *out = NULL;
    int rc = flc_store_ensure(s);
    if (rc != FLC_OK)
        return rc;
    redisReply *r = redisCommandArgv(s->c, argc, argv, argvlen);
    if (r == NULL)
        return flc_store_io_error(s, argv[0]);
    if (r->type == REDIS_REPLY_ERROR) {
        rc = flc_store_reply_error(s, r, argv[0]);
        freeReplyObject(r);
        return rc;
    }
    *out = r;
    return FLC_OK;
}

int flc_store_commandf(flc_store_t *s, redisReply **out, const char *fmt, ...)
{
    *out = NULL;
    int rc = flc_store_ensure(s);
    if (rc != FLC_OK)
        return rc;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(s->c, fmt, ap);
    va_end(ap);
    char what[32];
    snprintf(what, sizeof what, "%.*s", (int)strcspn(fmt, " "), fmt);
    if (r == NULL)
        return flc_store_io_error(s, what);
    if (r->type == REDIS_REPLY_ERROR) {
        rc = flc_store_reply_error(s, r, what);
        freeReplyObject(r);
        return rc;
    }
    *out = r;
    return FLC_OK;
}

int flc_store_ping(flc_store_t *s)
{
    redisReply *r;
    int rc = flc_store_commandf(s, &r, "PING");
    if (rc == FLC_OK)
        freeReplyObject(r);
    return rc;
}

/* ---- shard put ----------------------------------------------------------- */

/* Reads n replies; the first bad one sets the error, but all are consumed. */
/* Reads n replies, returning the first error reply as an error; *last (when
 * not NULL) gets the last reply's integer value. */
static int read_replies_last(flc_store_t *s, int n, const char *what, long long *last)
{
    int first = FLC_OK;
    for (int i = 0; i < n; i++) {
        redisReply *r;
        int rc = flc_store_read(s, &r, what);
        if (rc != FLC_OK)
            return rc; /* connection gone: nothing more to read */
        if (r->type == REDIS_REPLY_ERROR && first == FLC_OK)
            first = flc_store_reply_error(s, r, what);
        if (last && i == n - 1)
            *last = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
        freeReplyObject(r);
    }
    return first;
}

static int read_replies(flc_store_t *s, int n, const char *what)
{
    return read_replies_last(s, n, what, NULL);
}

#define PUT_UPDATE 1
#define PUT_MERGED 2
#define PUT_UPDATE_IF_OPEN 3

/* Joins the client set and wakes the merger only while the shard is open,
 * atomically with the merger's close (which sets :closed and drains
 * :arrivals in one MULTI): so an arrival is either seen by the merger or
 * refused here, never lost in between. Returns 1 when closed, 2 when the
 * value itself is not there (its SET was refused, e.g. for memory): a
 * merger is never woken for an update it cannot read. All four keys share
 * the shard's hash tag, so this runs on a Redis Cluster too. */
static const char ARRIVE_IF_OPEN[] =
    "if redis.call('EXISTS', KEYS[3]) == 1 then return 1 end "
    "if redis.call('EXISTS', KEYS[4]) == 0 then return 2 end "
    "redis.call('SADD', KEYS[1], ARGV[1]) "
    "redis.call('RPUSH', KEYS[2], ARGV[1]) "
    "return 0";

/* Appends the job/round/shard index commands that follow any shard. */
static int append_index(flc_store_t *s, const flc_shard_t *sh, int *ncmd)
{
    char k_rounds[FLC_KEY_MAX], k_shards[FLC_KEY_MAX], rnd[16], shd[16];
    flc_key_job(k_rounds, sh->job, "rounds");
    flc_key_job_round(k_shards, sh->job, "shards", sh->round);
    snprintf(rnd, sizeof rnd, "%u", sh->round);
    snprintf(shd, sizeof shd, "%u", sh->shard);
    const char *c1[] = {"SADD", FLC_KEY_JOBS, sh->job};
    const char *c2[] = {"ZADD", k_rounds, rnd, rnd};
    const char *c3[] = {"SADD", k_shards, shd};
    int rc = flc_store_append(s, 3, c1, NULL);
    rc = rc ? rc : flc_store_append(s, 4, c2, NULL);
    rc = rc ? rc : flc_store_append(s, 3, c3, NULL);
    *ncmd += 3;
    return rc;
}

/* Appends the index and notification commands that follow a shard; an
 * update also joins the shard's client set and wakes the merger. */
static int append_tail(flc_store_t *s, const flc_shard_t *sh, int kind, int *ncmd)
{
    int rc = append_index(s, sh, ncmd);
    if (rc != FLC_OK || kind == PUT_MERGED)
        return rc;
    char k_clients[FLC_KEY_MAX], k_arr[FLC_KEY_MAX], k_closed[FLC_KEY_MAX];
    flc_key_shard(k_clients, sh->job, sh->round, sh->shard, "clients");
    flc_key_shard(k_arr, sh->job, sh->round, sh->shard, "arrivals");
    if (kind == PUT_UPDATE_IF_OPEN) {
        flc_key_shard(k_closed, sh->job, sh->round, sh->shard, "closed");
        char k_val[FLC_KEY_MAX];
        flc_key_update(k_val, sh->job, sh->round, sh->shard, sh->client);
        const char *ev[] = {"EVAL", ARRIVE_IF_OPEN, "4", k_clients, k_arr, k_closed, k_val,
                            sh->client};
        *ncmd += 1;
        return flc_store_append(s, 8, ev, NULL);
    }
    const char *c4[] = {"SADD", k_clients, sh->client};
    const char *c5[] = {"RPUSH", k_arr, sh->client};
    rc = flc_store_append(s, 3, c4, NULL);
    rc = rc ? rc : flc_store_append(s, 3, c5, NULL);
    *ncmd += 2;
    return rc;
}


/* Stores one shard. With defer (and no cold tier) a value that goes out as
 * one SET is only sent: *defer gets the number of replies the caller must
 * read later (flc_store_put_updates_if_open pipelines many shards this way);
 * *defer stays 0 when the shard was stored completely here. */
static int put_shard(flc_store_t *s, const flc_shard_t *sh, int kind, int *closed, int *defer)
{
    flc_err_clear(&s->err);
    char what[256];
    flc_shard_describe(sh, what, sizeof what);
    if (kind != PUT_MERGED && sh->client[0] == '\0')
        return flc_err_set(&s->err, FLC_EINVAL, "%s: an update needs a client id", what);
    flc_shard_t hdr = *sh;
    if (kind == PUT_MERGED)
        hdr.client[0] = '\0';
    if (hdr.count && hdr.values == NULL)
        return flc_err_set(&s->err, FLC_EINVAL, "%s: no values", what);
    uint8_t head[FLC_FRAME_PREFIX + FLC_FRAME_HEADER_MAX];
    size_t hl;
    int rc = flc_shard_encode_header(&hdr, head, sizeof head, &hl, &s->err);
    if (rc != FLC_OK)
        return rc;
    size_t pl = (size_t)hdr.count * sizeof(float);
    size_t total = hl + pl;
    if (total > s->opts.max_msg_bytes)
        return flc_err_set(&s->err, FLC_ETOOBIG, "%s: %zu bytes is over the message limit of %zu",
                           what, total, s->opts.max_msg_bytes);
    rc = flc_store_ensure(s);
    if (rc != FLC_OK)
        return rc;
    if (s->tier && (rc = flc_tier_before_put(s, total)) != FLC_OK)
        return flc_err_wrap(&s->err, "making room for %s: ", what);

    char key[FLC_KEY_MAX];
    if (kind != PUT_MERGED)
        flc_key_update(key, hdr.job, hdr.round, hdr.shard, hdr.client);
    else
        flc_key_shard(key, hdr.job, hdr.round, hdr.shard, "agg");
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
            rc = append_tail(s, &hdr, kind, &ncmd);
        if (rc == FLC_OK && defer != NULL && s->tier == NULL) {
            *defer = ncmd; /* the caller reads the replies */
            s->bytes_written += total;
            return FLC_OK;
        }
        if (rc == FLC_OK)
            rc = flc_store_flush(s, "SET");
        if (rc == FLC_OK)
            rc = read_replies_last(s, ncmd, "SET", &last);
    } else {
        /* Phase 1: build the value under a tmp key in the same hash slot, as
         * a hash of chunk fields "0".."n-1". Not one string grown by APPEND:
         * redis-server reallocates the whole string on every APPEND, which
         * measured 4x slower than separate chunk values (bench/store). A
         * hash keeps one key, so DEL, TTL and RENAME still act on the whole
         * value. */
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
            rc = read_replies(s, ncmd, "HSET");
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
                rc = append_tail(s, &hdr, kind, &ncmd);
            if (rc == FLC_OK)
                rc = flc_store_flush(s, "RENAME");
            if (rc == FLC_OK)
                rc = read_replies_last(s, ncmd, "RENAME", &last);
        }
    }
    if (rc != FLC_OK)
        return flc_err_wrap(&s->err, "storing %s: ", what);
    if (closed)
        *closed = last == 1;
    s->bytes_written += total;
    if (s->tier)
        flc_tier_after_put(s, &hdr, kind == PUT_MERGED, total);
    return FLC_OK;
}

/* put_shard, and with a cold tier one retry after making room when Redis
 * refused the value for lack of memory (writers the estimate did not see). */
static int put_shard_tiered(flc_store_t *s, const flc_shard_t *sh, int kind, int *closed)
{
    int rc = put_shard(s, sh, kind, closed, NULL);
    if (rc == FLC_ENOMEM && s->tier && s->c) {
        flc_err_t first = s->err;
        uint64_t need = 2 * ((uint64_t)sh->count * sizeof(float) + FLC_FRAME_HEADER_MAX);
        if (flc_store_make_room(s, need) == FLC_OK)
            rc = put_shard(s, sh, kind, closed, NULL);
        else
            s->err = first;
    }
    return rc;
}

int flc_store_put_update(flc_store_t *s, const flc_shard_t *sh)
{
    return put_shard_tiered(s, sh, PUT_UPDATE, NULL);
}

/* Reads the replies of the deferred shards [from, to) (flushing their
 * queued tails first), filling closed[]. Keeps reading after a refused
 * shard so the connection stays in step; returns the first error. */
static int settle(flc_store_t *s, const flc_shard_t *sh, int *pending, int *closed, size_t from,
                  size_t to)
{
    int first = FLC_OK;
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
        int r = read_replies_last(s, pending[i], "SET", &last);
        pending[i] = 0;
        if (r != FLC_OK && s->c == NULL)
            return r; /* connection gone: nothing more to read */
        if (r != FLC_OK && first == FLC_OK) {
            char what[256];
            flc_shard_describe(&sh[i], what, sizeof what);
            flc_err_wrap(&s->err, "storing %s: ", what);
            first = r;
        } else if (r == FLC_OK) {
            closed[i] = last == 1;
        }
    }
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
            int rc = put_shard_tiered(s, &sh[i], PUT_UPDATE_IF_OPEN, &closed[i]);
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
        if ((size_t)sh[i].count * sizeof(float) + FLC_FRAME_PREFIX + FLC_FRAME_HEADER_MAX >
            split)
            rc = settle(s, sh, pending, closed, 0, i);
        if (rc == FLC_OK)
            rc = put_shard(s, &sh[i], PUT_UPDATE_IF_OPEN, &closed[i], &pending[i]);
    }
    /* After an error too: whatever was sent gets its replies read. */
    int r = settle(s, sh, pending, closed, 0, n);
    if (rc == FLC_OK)
        rc = r;
    free(pending);
    return rc;
}

int flc_store_put_merged(flc_store_t *s, const flc_shard_t *sh)
{
    return put_shard_tiered(s, sh, PUT_MERGED, NULL);
}

/* The spillable object behind a get or delete (for the cold tier). */
static void obj_of(flc_obj_t *o, const char *job, uint32_t round, uint32_t shard,
                   const char *client)
{
    memset(o, 0, sizeof *o);
    snprintf(o->job, sizeof o->job, "%s", job);
    o->round = round;
    o->shard = shard;
    o->kind = client ? FLC_OBJ_UPDATE : FLC_OBJ_MERGED;
    snprintf(o->client, sizeof o->client, "%s", client ? client : "");
}

/* ---- shard get ----------------------------------------------------------- */

/* Reads and drops n replies (speculative reads that were not needed). */
static void drain(flc_store_t *s, int n)
{
    flc_err_t keep = s->err;
    for (size_t len; n > 0 && s->c != NULL; n--)
        flc_store_read_into(s, NULL, 0, &len, "GETRANGE");
    s->err = keep;
}

/* Speculative GETRANGEs sent with the first request: a value stored as one
 * string (up to FLC_STORE_SPLIT chunks) then arrives in a single round trip
 * instead of two (the first chunk's header says how much follows). Beyond
 * the value's end they answer "", on a hash a short WRONGTYPE error. */
#define SPEC_READS (FLC_STORE_SPLIT - 1)

static int get_shard(flc_store_t *s, const char *key, const char *what, flc_shard_t *out,
                     float *dst, size_t dst_cap)
{
    flc_err_clear(&s->err);
    int rc = flc_store_ensure(s);
    if (rc != FLC_OK)
        return rc;
    /* A value is a plain string (up to FLC_STORE_SPLIT chunks) or a hash of
     * chunk fields (put_shard). Ask for both first chunks in one round trip;
     * the one of the wrong type answers with a short WRONGTYPE error. Both
     * land in the store's scratch buffer, so a read allocates nothing. */
    size_t chunk = s->opts.chunk_bytes;
    if (grow_scratch(s, chunk) != FLC_OK)
        return s->err.code;
    char hi[32];
    snprintf(hi, sizeof hi, "%zu", chunk - 1);
    const char *gr[] = {"GETRANGE", key, "0", hi};
    const char *hg[] = {"HGET", key, "0"};
    rc = flc_store_append(s, 4, gr, NULL);
    if (rc == FLC_OK)
        rc = flc_store_append(s, 3, hg, NULL);
    for (int j = 1; rc == FLC_OK && j <= SPEC_READS; j++) {
        char lo[32], h2[32];
        snprintf(lo, sizeof lo, "%zu", (size_t)j * chunk);
        snprintf(h2, sizeof h2, "%zu", (size_t)(j + 1) * chunk - 1);
        const char *g[] = {"GETRANGE", key, lo, h2};
        rc = flc_store_append(s, 4, g, NULL);
    }
    if (rc == FLC_OK)
        rc = flc_store_flush(s, "GETRANGE");
    size_t len_s = 0, len_h = 0;
    int rs = rc == FLC_OK ? flc_store_read_into(s, s->scratch, chunk, &len_s, "GETRANGE") : rc;
    int rh = s->c ? flc_store_read_into(s, s->scratch, len_s ? 0 : chunk, &len_h, "HGET") : rs;
    if (s->c == NULL) /* connection lost: *err already says so */
        return flc_err_wrap(&s->err, "reading %s: ", what);
    int pending = SPEC_READS;
    int hashed = rh == FLC_OK && len_h > 0;
    if (hashed) { /* the speculative reads hit a hash: drop them */
        drain(s, pending);
        pending = 0;
    }
    if (!hashed && rs != FLC_OK) { /* neither a string nor a hash */
        drain(s, pending);
        return flc_err_wrap(&s->err, "reading %s: ", what);
    }
    flc_err_clear(&s->err);
    size_t len0 = hashed ? len_h : len_s;
    if (len0 == 0) {
        drain(s, pending);
        return flc_err_set(&s->err, FLC_ENOTFOUND, "%s: not in the cache (key %s)", what, key);
    }
    if (hashed && len0 > chunk) {
        /* Written with a bigger chunk than ours: fetch field 0 again whole. */
        if (grow_scratch(s, len0) != FLC_OK)
            return s->err.code;
        rc = flc_store_append(s, 3, hg, NULL);
        rc = rc ? rc : flc_store_flush(s, "HGET");
        rc = rc ? rc : flc_store_read_into(s, s->scratch, len0, &len0, "HGET");
        if (rc != FLC_OK)
            return flc_err_wrap(&s->err, "reading %s: ", what);
    }
    flc_shard_t h = {0};
    size_t off, flen;
    rc = flc_shard_decode_header((const uint8_t *)s->scratch, len0, s->opts.max_msg_bytes, &h,
                                 &off, &flen, &s->err);
    /* In a hash, field 0 is one whole chunk of the writer's size (which may
     * differ from ours), or the whole value. */
    if (hashed && rc == FLC_OK && len0 > flen)
        rc = flc_err_set(&s->err, FLC_EDATA, "first chunk has %zu bytes, header implies %zu in "
                         "all (overwritten?)", len0, flen);
    if (hashed)
        chunk = len0;
    size_t expect0 = flen < chunk ? flen : chunk;
    if (rc == FLC_OK && len0 != expect0)
        rc = flc_err_set(&s->err, FLC_EDATA, "value has %zu bytes in its first chunk, header "
                         "implies %zu (truncated or overwritten)", len0, expect0);
    if (rc != FLC_OK) {
        drain(s, pending);
        return flc_err_wrap(&s->err, "reading %s: ", what);
    }
    size_t pl = (size_t)h.count * sizeof(float);
    if (dst != NULL && dst_cap >= h.count) {
        h.values = dst;
        h.owned = NULL;
    } else if (flc_shard_alloc(&h, h.count, &s->err) != FLC_OK) {
        drain(s, pending);
        return s->err.code;
    }
    char *p = (char *)h.values;
    size_t got = len0 - off;
    memcpy(p, s->scratch + off, got);

    /* A string: the speculative replies hold chunks 1..SPEC_READS. */
    int bad = FLC_OK;
    for (int j = 1; pending > 0; j++, pending--) {
        size_t start = (size_t)j * chunk;
        size_t want = start < flen ? (flen - start < chunk ? flen - start : chunk) : 0, len = 0;
        int r = flc_store_read_into(s, want ? p + got : NULL, want, &len, "GETRANGE");
        if (r != FLC_OK && s->c == NULL) {
            rc = r; /* connection gone */
            break;
        }
        if (bad == FLC_OK && (r != FLC_OK || len != want))
            bad = r != FLC_OK ? r
                              : flc_err_set(&s->err, FLC_EDATA,
                                            "chunk %d has %zu bytes, expected %zu (value "
                                            "changed while reading)", j, len, want);
        else if (bad == FLC_OK)
            got += want;
    }

    /* The rest (a hash, or a string longer than the speculation): pipeline
     * every HGET (or GETRANGE), then copy replies as they arrive. */
    size_t from = hashed ? chunk : (size_t)(SPEC_READS + 1) * chunk;
    int first_field = hashed ? 1 : SPEC_READS + 1, n = 0;
    for (size_t start = from; rc == FLC_OK && bad == FLC_OK && start < flen;
         start += chunk, n++) {
        char lo[32], hi2[32];
        size_t end = start + chunk < flen ? start + chunk : flen;
        snprintf(lo, sizeof lo, "%zu", start);
        snprintf(hi2, sizeof hi2, "%zu", end - 1);
        snprintf(hi, sizeof hi, "%d", first_field + n);
        const char *g[] = {"GETRANGE", key, lo, hi2};
        const char *gh[] = {"HGET", key, hi};
        rc = hashed ? flc_store_append(s, 3, gh, NULL) : flc_store_append(s, 4, g, NULL);
    }
    if (rc == FLC_OK && n > 0)
        rc = flc_store_flush(s, "GET");
    for (int i = 0; rc == FLC_OK && i < n; i++) {
        size_t want = flen - off - got < chunk ? flen - off - got : chunk, len = 0;
        int r = flc_store_read_into(s, p + got, want, &len, "GET");
        if (r != FLC_OK && s->c == NULL) {
            rc = r; /* connection gone */
        } else if (bad == FLC_OK && (r != FLC_OK || len != want)) {
            /* Keep reading so the connection stays in step. */
            bad = r != FLC_OK ? r
                              : flc_err_set(&s->err, FLC_EDATA,
                                            "chunk %d has %zu bytes, expected %zu (value "
                                            "changed while reading)", first_field + i, len,
                                            want);
        } else if (bad == FLC_OK) {
            got += want;
        }
    }
    if (rc == FLC_OK)
        rc = bad;
    if (rc == FLC_OK && s->err.code != FLC_OK)
        rc = s->err.code;
    if (rc == FLC_OK && got != pl)
        rc = flc_err_set(&s->err, FLC_EDATA, "payload has %zu bytes, header says %zu", got, pl);
    if (rc != FLC_OK) {
        flc_shard_release(&h);
        return flc_err_wrap(&s->err, "reading %s: ", what);
    }
    s->bytes_read += flen;
    *out = h;
    return FLC_OK;
}

int flc_store_get_update(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                         const char *client, flc_shard_t *out, float *dst, size_t dst_cap)
{
    if (flc_name_check(job, "job", &s->err) || flc_name_check(client, "client", &s->err))
        return s->err.code;
    char key[FLC_KEY_MAX], what[256];
    flc_key_update(key, job, round, shard, client);
    snprintf(what, sizeof what, "update of client %s for shard %u of round %u of job %s",
             client, shard, round, job);
    int rc = get_shard(s, key, what, out, dst, dst_cap);
    if (s->tier) {
        flc_obj_t o;
        obj_of(&o, job, round, shard, client);
        rc = flc_tier_after_get(s, rc, &o, what, out, dst, dst_cap);
    }
    return rc;
}

int flc_store_get_merged(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                         flc_shard_t *out, float *dst, size_t dst_cap)
{
    if (flc_name_check(job, "job", &s->err))
        return s->err.code;
    char key[FLC_KEY_MAX], what[256];
    flc_key_shard(key, job, round, shard, "agg");
    snprintf(what, sizeof what, "merged shard %u of round %u of job %s", shard, round, job);
    int rc = get_shard(s, key, what, out, dst, dst_cap);
    if (s->tier) {
        flc_obj_t o;
        obj_of(&o, job, round, shard, NULL);
        rc = flc_tier_after_get(s, rc, &o, what, out, dst, dst_cap);
    }
    return rc;
}

int flc_store_del_update(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                         const char *client)
{
    if (flc_name_check(job, "job", &s->err) || flc_name_check(client, "client", &s->err))
        return s->err.code;
    char key[FLC_KEY_MAX], k_clients[FLC_KEY_MAX];
    flc_key_update(key, job, round, shard, client);
    flc_key_shard(k_clients, job, round, shard, "clients");
    redisReply *r;
    int rc = flc_store_commandf(s, &r, "DEL %s", key);
    if (rc != FLC_OK)
        return rc;
    freeReplyObject(r);
    rc = flc_store_commandf(s, &r, "SREM %s %s", k_clients, client);
    if (rc == FLC_OK)
        freeReplyObject(r);
    if (rc == FLC_OK && s->tier) { /* no copy may come back from the cold tier */
        flc_obj_t o;
        obj_of(&o, job, round, shard, client);
        flc_tier_deleted(s, &o);
    }
    return rc;
}

/* ---- notification lists -------------------------------------------------- */

int flc_store_notify(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                     const char *list, const char *value, unsigned copies)
{
    flc_err_clear(&s->err);
    if (flc_name_check(job, "job", &s->err))
        return s->err.code;
    if (copies == 0)
        return FLC_OK;
    char key[FLC_KEY_MAX];
    flc_key_shard(key, job, round, shard, list);
    int rc = flc_store_ensure(s);
    if (rc != FLC_OK)
        return rc;
    /* One RPUSH with `copies` values. */
    const char **argv = malloc((copies + 2) * sizeof *argv);
    if (argv == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
    argv[0] = "RPUSH";
    argv[1] = key;
    for (unsigned i = 0; i < copies; i++)
        argv[2 + i] = value;
    redisReply *r;
    rc = flc_store_command(s, &r, (int)copies + 2, argv, NULL);
    free(argv);
    if (rc == FLC_OK)
        freeReplyObject(r);
    return rc;
}

int flc_store_wait(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                   const char *list, unsigned timeout_ms, char *out, size_t outlen)
{
    flc_err_clear(&s->err);
    if (flc_name_check(job, "job", &s->err))
        return s->err.code;
    if (timeout_ms == 0)
        return flc_err_set(&s->err, FLC_EINVAL, "waiting on %s needs a timeout", list);
    char key[FLC_KEY_MAX], secs[32];
    flc_key_shard(key, job, round, shard, list);
    snprintf(secs, sizeof secs, "%.3f", timeout_ms / 1000.0);
    int rc = flc_store_ensure(s);
    if (rc != FLC_OK)
        return rc;
    /* The socket must outwait the server-side BLPOP timeout. */
    redisSetTimeout(s->c, tv_ms(timeout_ms + s->opts.io_timeout_ms));
    redisReply *r;
    const char *argv[] = {"BLPOP", key, secs};
    rc = flc_store_command(s, &r, 3, argv, NULL);
    if (s->c)
        redisSetTimeout(s->c, tv_ms(s->opts.io_timeout_ms));
    if (rc != FLC_OK)
        return rc;
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return flc_err_set(&s->err, FLC_ETIMEOUT, "nothing on %s within %u ms", key, timeout_ms);
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[1]->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return flc_err_set(&s->err, FLC_EPROTO, "BLPOP %s: unexpected reply", key);
    }
    if (out && outlen)
        snprintf(out, outlen, "%.*s", (int)r->element[1]->len, r->element[1]->str);
    freeReplyObject(r);
    return FLC_OK;
}
