/* Key builders for the schema described in keys.h, and the shard tags that
 * place a job's shards evenly over the cluster's slots. Every builder writes
 * at most FLC_KEY_MAX bytes; names are checked before they reach here. */
#include "cache/keys.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "cache/slot.h"

/* 0 when name[0..n) is a valid name, else the offending character (or
 * -1 for an empty or long one). */
static int name_bad(const char *name, size_t n)
{
    if (n == 0 || n > FLC_NAME_MAX)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '.' || c == '-' || c == '@' || c == '+';
        if (!ok)
            return (unsigned char)c;
    }
    return 0;
}

int flc_name_check(const char *name, const char *what, flc_err_t *err)
{
    if (name == NULL || name[0] == '\0')
        return flc_err_set(err, FLC_EINVAL, "%s name is empty", what);
    size_t n = strlen(name);
    if (n > FLC_NAME_MAX)
        return flc_err_set(err, FLC_EINVAL, "%s name '%.20s...' is longer than %d characters",
                           what, name, FLC_NAME_MAX);
    int bad = name_bad(name, n);
    if (bad != 0)
        return flc_err_set(err, FLC_EINVAL,
                           "%s name '%s' has character '%c'; use letters, digits and _.@+-",
                           what, name, bad);
    return FLC_OK;
}

int flc_name_check_job(const char *job, flc_err_t *err)
{
    const char *slash = job ? strchr(job, '/') : NULL;
    if (slash == NULL)
        return flc_name_check(job, "job", err);
    size_t n = strlen(job);
    if (n > FLC_NAME_MAX)
        return flc_err_set(err, FLC_EINVAL, "job name '%.20s...' is longer than %d characters",
                           job, FLC_NAME_MAX);
    if (name_bad(job, (size_t)(slash - job)) != 0 ||
        name_bad(slash + 1, n - (size_t)(slash - job) - 1) != 0)
        return flc_err_set(err, FLC_EINVAL, "job name '%s': a job's series is named "
                           "'<job>/<series>', both parts of letters, digits and _.@+-", job);
    return FLC_OK;
}

/* 1 when S points at offset o + the centres of S equal cells fall on the
 * equal contiguous slot ranges of n = 2..16 masters (as redis-cli --cluster
 * create cuts them: range i ends at round((i + 1) * 16384 / n - 1)) with
 * counts that differ by at most one. */
static int balanced(uint32_t o, uint32_t S)
{
    for (uint32_t n = 2; n <= 16; n++) {
        uint32_t cnt[16] = {0}, end[16];
        for (uint32_t i = 0; i < n; i++)
            end[i] = i + 1 == n ? FLC_SLOT_COUNT - 1
                                : (uint32_t)((double)(i + 1) * FLC_SLOT_COUNT / n - 1 + 0.5);
        for (uint32_t s = 0; s < S; s++) {
            uint32_t p = (o + (uint32_t)(((2 * (uint64_t)s + 1) * FLC_SLOT_COUNT) / (2 * S))) %
                         FLC_SLOT_COUNT;
            uint32_t i = 0;
            while (p > end[i])
                i++;
            cnt[i]++;
        }
        uint32_t mn = cnt[0], mx = cnt[0];
        for (uint32_t i = 1; i < n; i++) {
            mn = cnt[i] < mn ? cnt[i] : mn;
            mx = cnt[i] > mx ? cnt[i] : mx;
        }
        if (mx - mn > 1)
            return 0;
    }
    return 1;
}

uint16_t flc_key_shard_slot(const char *job, uint32_t shard, uint32_t S)
{
    if (S == 0)
        S = 1;
    /* The centres of S equal cells, rotated by the job's CRC16 (so jobs,
     * also of one shard, start on different nodes). Against equal
     * contiguous slot ranges, the ones redis-cli --cluster create and
     * ElastiCache make, a rotation can put a point on a range's last slot
     * and give 3/5/4 for S = 12 on 3 nodes (about 1 job in 200): such an
     * offset is moved on, slot by slot, to the next one under which 2..16
     * masters hold floor(S/n) or ceil(S/n) shards each. Rare, and a few
     * slots at most; deterministic, so every process finds the same. */
    static _Thread_local char last_job[FLC_NAME_MAX + 1];
    static _Thread_local uint32_t last_S, last_o;
    uint32_t o;
    if (last_S == S && strcmp(last_job, job) == 0) { /* the S shards of a job in a row */
        o = last_o;
    } else {
        o = flc_slot_crc16(job, strlen(job)) % FLC_SLOT_COUNT;
        for (uint32_t tries = 0; tries < FLC_SLOT_COUNT && !balanced(o, S); tries++)
            o = (o + 1) % FLC_SLOT_COUNT;
        snprintf(last_job, sizeof last_job, "%s", job);
        last_S = S, last_o = o;
    }
    uint32_t cell = (uint32_t)(((2 * (uint64_t)shard + 1) * FLC_SLOT_COUNT) / (2 * S));
    return (uint16_t)((o + cell) % FLC_SLOT_COUNT);
}

/* The salts found so far: a direct-mapped table (a collision replaces the
 * older entry, which is only found again). */
#define SALT_SLOTS 1024
typedef struct salt {
    char job[FLC_NAME_MAX + 1];
    uint32_t shard, S, k;
    int used;
} salt_t;
static salt_t g_salts[SALT_SLOTS];
static pthread_mutex_t g_salt_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned salt_index(const char *job, uint32_t shard, uint32_t S)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = job; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    h = (h ^ shard) * 16777619u;
    h = (h ^ S) * 16777619u;
    return h % SALT_SLOTS;
}

/* CRC16-XMODEM continued from register crc over n more bytes (slot.c's
 * function starts from 0; the search below hashes the fixed prefix once and
 * only the salt's digits per try). The table is slot.c's polynomial. */
static uint16_t g_crc_table[256];
static pthread_once_t g_crc_once = PTHREAD_ONCE_INIT;

static void crc_table_init(void)
{
    for (unsigned b = 0; b < 256; b++) {
        uint16_t c = (uint16_t)(b << 8);
        for (int i = 0; i < 8; i++)
            c = (uint16_t)(c & 0x8000 ? (c << 1) ^ 0x1021 : c << 1);
        g_crc_table[b] = c;
    }
}

static uint16_t crc_more(uint16_t crc, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        crc = (uint16_t)((crc << 8) ^ g_crc_table[((crc >> 8) ^ (uint8_t)p[i]) & 0xFF]);
    return crc;
}

/* The smallest k that puts "J/s<s>~<k>" on slot want. Decimal strings over
 * k cover every slot many times; the bound only guards against a bug. */
static uint32_t salt_search(const char *job, uint32_t shard, uint16_t want)
{
    pthread_once(&g_crc_once, crc_table_init);
    char pre[FLC_TAG_MAX];
    int pl = snprintf(pre, sizeof pre, "%s/s%u~", job, shard);
    uint16_t base = crc_more(0, pre, (size_t)pl);
    for (uint32_t k = 0; k < 50000000u; k++) {
        char d[12];
        int n = 0;
        uint32_t x = k;
        do { /* the digits of k, most significant first */
            d[11 - n++] = (char)('0' + x % 10);
            x /= 10;
        } while (x);
        if ((crc_more(base, d + 12 - n, (size_t)n) & (FLC_SLOT_COUNT - 1)) == want)
            return k;
    }
    return 0;
}

void flc_key_shard_tag(char *out, const char *job, uint32_t shard, uint32_t S)
{
    if (S == 0)
        S = 1;
    unsigned i = salt_index(job, shard, S);
    uint32_t k = 0;
    int hit = 0;
    pthread_mutex_lock(&g_salt_lock);
    const salt_t *e = &g_salts[i];
    if (e->used && e->shard == shard && e->S == S && strcmp(e->job, job) == 0) {
        k = e->k;
        hit = 1;
    }
    pthread_mutex_unlock(&g_salt_lock);
    if (!hit) { /* searched unlocked: two threads may both search, same answer */
        k = salt_search(job, shard, flc_key_shard_slot(job, shard, S));
        pthread_mutex_lock(&g_salt_lock);
        salt_t *w = &g_salts[i];
        snprintf(w->job, sizeof w->job, "%s", job);
        w->shard = shard, w->S = S, w->k = k, w->used = 1;
        pthread_mutex_unlock(&g_salt_lock);
    }
    snprintf(out, FLC_TAG_MAX, "%s/s%u~%u", job, shard, k);
}

void flc_key_job(char *out, const char *job, const char *what)
{
    snprintf(out, FLC_KEY_MAX, "fl:{%s/j}:%s", job, what);
}

void flc_key_job_round(char *out, const char *job, const char *what, uint32_t round)
{
    snprintf(out, FLC_KEY_MAX, "fl:{%s/j}:%s:%u", job, what, round);
}

void flc_key_job_shard(char *out, const char *job, uint32_t shard, const char *what,
                       uint32_t round)
{
    snprintf(out, FLC_KEY_MAX, "fl:{%s/j}:s%u:%s:%u", job, shard, what, round);
}

void flc_key_client_meta(char *out, const char *job, const char *client, uint32_t round)
{
    snprintf(out, FLC_KEY_MAX, "fl:{%s/j}:c:%s:um:%u", job, client, round);
}

void flc_key_client_rounds(char *out, const char *job, const char *client)
{
    snprintf(out, FLC_KEY_MAX, "fl:{%s/j}:c:%s:rounds", job, client);
}

void flc_key_shard(char *out, const char *tag, uint32_t round, const char *suffix)
{
    snprintf(out, FLC_KEY_MAX, "fl:{%s}:r:%u:%s", tag, round, suffix);
}

void flc_key_update(char *out, const char *tag, uint32_t round, const char *client)
{
    snprintf(out, FLC_KEY_MAX, "fl:{%s}:c:%s:u:%u", tag, client, round);
}

void flc_key_arrival(char *out, const char *tag, uint32_t round, const char *client)
{
    snprintf(out, FLC_KEY_MAX, "fl:{%s}:c:%s:a:%u", tag, client, round);
}

void flc_key_opt_state(char *out, const char *tag)
{
    snprintf(out, FLC_KEY_MAX, "fl:{%s}:opt", tag);
}

void flc_key_residual(char *out, const char *tag, const char *client, uint32_t round)
{
    if (round == 0)
        snprintf(out, FLC_KEY_MAX, "fl:{%s}:c:%s:ef", tag, client);
    else
        snprintf(out, FLC_KEY_MAX, "fl:{%s}:c:%s:ef:%u", tag, client, round);
}

void flc_key_barrier(char *out, const char *job, uint32_t round, uint32_t shard,
                     const char *what)
{
    snprintf(out, FLC_KEY_MAX, "fl:{%s/j}:b:%u:%u:%s", job, round, shard, what);
}

void flc_key_v1_rounds(char *out, const char *job)
{
    snprintf(out, FLC_KEY_MAX, "fl:{%s}:rounds", job);
}
