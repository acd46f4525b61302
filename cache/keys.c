/* Key builders for the schema described in keys.h. Every builder writes at
 * most FLC_KEY_MAX bytes; names are checked before they reach here. */
#include "cache/keys.h"

#include <stdio.h>
#include <string.h>

int flc_name_check(const char *name, const char *what, flc_err_t *err)
{
    if (name == NULL || name[0] == '\0')
        return flc_err_set(err, FLC_EINVAL, "%s name is empty", what);
    size_t n = strlen(name);
    if (n > FLC_NAME_MAX)
        return flc_err_set(err, FLC_EINVAL, "%s name '%.20s...' is longer than %d characters",
                           what, name, FLC_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '.' || c == '-' || c == '@' || c == '+';
        if (!ok)
            return flc_err_set(err, FLC_EINVAL,
                               "%s name '%s' has character '%c'; use letters, digits and _.@+-",
                               what, name, c);
    }
    return FLC_OK;
}

void flc_key_shard(char *out, const char *job, uint32_t round, uint32_t shard, const char *suffix)
{
    snprintf(out, FLC_KEY_MAX, "fl:{%s/%u/%u}:%s", job, round, shard, suffix);
}

void flc_key_update(char *out, const char *job, uint32_t round, uint32_t shard,
                    const char *client)
{
    snprintf(out, FLC_KEY_MAX, "fl:{%s/%u/%u}:u:%s", job, round, shard, client);
}

void flc_key_job(char *out, const char *job, const char *what)
{
    snprintf(out, FLC_KEY_MAX, "fl:{%s}:%s", job, what);
}

void flc_key_job_round(char *out, const char *job, const char *what, uint32_t round)
{
    snprintf(out, FLC_KEY_MAX, "fl:{%s}:%s:%u", job, what, round);
}

void flc_key_client(char *out, const char *job, const char *client)
{
    snprintf(out, FLC_KEY_MAX, "fl:{%s}:client:%s", job, client);
}

void flc_key_opt_state(char *out, const char *job, uint32_t shard)
{
    snprintf(out, FLC_KEY_MAX, "fl:{%s/state/%u}:opt", job, shard);
}
