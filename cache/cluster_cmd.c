/* cluster_cmd.c - what the cluster routing needs to know of a command it
 * sends, read from its RESP text (store_cluster_internal.h): its
 * arguments, the key that routes it, and whether sending it twice is safe
 * (a batch cut by a failover is sent again only then). Split from
 * store_cluster.c, which routes. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache/store_cluster.h"
#include "cache/store_cluster_internal.h"

int flc_store_cl_args(const char *p, size_t len, const char **a, size_t *al, int max)
{
    const char *end = p + len;
    if (len < 4 || *p != '*')
        return 0;
    int argc = atoi(p + 1);
    p = memchr(p, '\n', len);
    for (int i = 0; p && i < argc && i < max; i++) {
        p++;
        if (p >= end || *p != '$')
            return 0;
        size_t l = strtoul(p + 1, NULL, 10);
        p = memchr(p, '\n', (size_t)(end - p));
        if (p == NULL || (size_t)(end - p - 1) < l + 2)
            return 0;
        a[i] = p + 1;
        al[i] = l;
        p = p + 1 + l + 1; /* at the '\n' of the argument's "\r\n" */
    }
    return p ? argc : 0;
}

static int is_cmd(const char *a, size_t al, const char *name)
{
    return al == strlen(name) && strncasecmp(a, name, al) == 0;
}

int flc_store_cl_is_cmd(const char *a, size_t al, const char *name)
{
    return is_cmd(a, al, name);
}

int flc_store_cl_key_of(const char *cmd, size_t len, const char **key, size_t *klen)
{
    const char *a[4] = {0};
    size_t al[4] = {0};
    int argc = flc_store_cl_args(cmd, len, a, al, 4);
    if (argc < 1)
        return FLC_CL_KEYLESS;
    static const char *const keyless[] = {
        "PING",   "CLIENT",  "INFO",      "DBSIZE", "CONFIG",   "EXEC",   "DISCARD", "UNWATCH",
        "SCRIPT", "FLUSHDB", "FLUSHALL",  "SCAN",   "KEYS",     "TIME",   "ASKING",  "WAIT",
        "SELECT", "AUTH",    "CLUSTER",   "LATENCY", "SLOWLOG", "COMMAND", "ECHO",   "RANDOMKEY",
        "ROLE",   "HELLO",   "READONLY",  "READWRITE", "DEBUG", "FUNCTION", "LASTSAVE", "SAVE",
        "BGSAVE", "MEMORY"};
    if (is_cmd(a[0], al[0], "MULTI"))
        return FLC_CL_MULTI;
    if (is_cmd(a[0], al[0], "MEMORY") || is_cmd(a[0], al[0], "OBJECT")) {
        if (argc >= 3 && !is_cmd(a[1], al[1], "STATS") && !is_cmd(a[1], al[1], "DOCTOR")) {
            *key = a[2], *klen = al[2];
            return FLC_CL_KEYED;
        }
        return FLC_CL_KEYLESS;
    }
    for (size_t i = 0; i < sizeof keyless / sizeof *keyless; i++)
        if (is_cmd(a[0], al[0], keyless[i]))
            return FLC_CL_KEYLESS;
    if (is_cmd(a[0], al[0], "EVAL") || is_cmd(a[0], al[0], "EVALSHA") ||
        is_cmd(a[0], al[0], "EVAL_RO") || is_cmd(a[0], al[0], "FCALL")) {
        if (argc >= 4 && atoi(a[2]) > 0) {
            *key = a[3], *klen = al[3];
            return FLC_CL_KEYED;
        }
        return FLC_CL_KEYLESS;
    }
    if (argc < 2)
        return FLC_CL_KEYLESS;
    *key = a[1], *klen = al[1];
    return FLC_CL_KEYED;
}

int flc_store_cl_idempotent(const char *cmd, size_t len)
{
    static const char *const same_twice[] = {
        "GET",    "GETRANGE", "HGET",   "HGETALL", "HKEYS",  "HVALS",  "HLEN",   "EXISTS",
        "SMEMBERS", "ZRANGE", "ZCARD",  "LRANGE",  "DBSIZE", "INFO",   "PING",   "MEMORY",
        "SET",    "PSETEX",   "HSET",   "DEL",     "UNLINK", "SADD",   "SREM",   "ZADD",
        "ZREM",   "PEXPIRE",  "PERSIST", "CONFIG", "SISMEMBER", "SCARD", "HEXISTS", "LLEN",
        "EVAL_RO", /* a read-only script reads the same twice */
        /* A blocking pop cut by a lost connection popped nothing, or its
         * element went with the dead node's reply: sending it again to the
         * new owner is what its caller wants either way (a token lost in
         * flight is the merger's to recover: aggregator/rs_recover.c). */
        "BLPOP"};
    const char *a[8] = {0};
    size_t al[8] = {0};
    int argc = flc_store_cl_args(cmd, len, a, al, 8);
    if (argc < 1)
        return 0;
    if (is_cmd(a[0], al[0], "SET")) /* SET NX (a lock), XX, GET answer by what was there */
        for (int i = 3; i < argc && i < 8; i++)
            if (is_cmd(a[i], al[i], "NX") || is_cmd(a[i], al[i], "XX") ||
                is_cmd(a[i], al[i], "GET"))
                return 0;
    if (is_cmd(a[0], al[0], "CLIENT")) /* LIST and ID; not UNBLOCK, KILL */
        return argc >= 2 && (is_cmd(a[1], al[1], "LIST") || is_cmd(a[1], al[1], "ID"));
    for (size_t i = 0; i < sizeof same_twice / sizeof *same_twice; i++)
        if (is_cmd(a[0], al[0], same_twice[i]))
            return 1;
    return 0;
}
