/* Placement of the local pool's invocations (pool.h): what a placement name
 * may be, where an event asks for one, and the namespace file it names.
 *
 * On this platform a placement is a Linux network namespace made by
 * `ip netns add NAME`, which lives at /var/run/netns/NAME; the child enters
 * it between fork and exec (pool_proc.c). Names are checked when a batch is
 * queued so a caller's typo ("a/b") is refused at once, while a namespace
 * that is missing or cannot be entered is found by the child and becomes
 * that invocation's error. */
#define _GNU_SOURCE /* setns */
#include "runtime/pool_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NETNS_DIR "/var/run/netns/" /* where `ip netns add` puts them */

int flc_pool_place_check(const char *name, char *msg, size_t cap)
{
    size_t n = strlen(name);
    if (n == 0)
        return 0; /* "": no placement */
    if (n >= FLC_POOL_PLACEMENT_MAX || strchr(name, '/') != NULL || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0) {
        snprintf(msg, cap, "placement '%.*s' is not a network namespace name (1..%d "
                 "characters, no '/', not . or ..)", 160, name, FLC_POOL_PLACEMENT_MAX - 1);
        return FLC_EINVAL;
    }
    return 0;
}

int flc_pool_place_from_json(const cJSON *ev, const char **out, char *msg, size_t cap)
{
    *out = NULL;
    const cJSON *m = cJSON_IsObject(ev) ? cJSON_GetObjectItemCaseSensitive(ev, "placement")
                                        : NULL;
    if (m == NULL || cJSON_IsNull(m))
        return 0;
    if (!cJSON_IsString(m) || m->valuestring == NULL) {
        snprintf(msg, cap, "event member \"placement\" must be a string (a network namespace "
                 "name, or \"\" for none)");
        return FLC_EINVAL;
    }
    *out = m->valuestring;
    return 0;
}

int flc_pool_place_from_text(const char *ev, char **out, char *msg, size_t cap)
{
    *out = NULL;
    /* Most events name no placement: parse only those that may. */
    if (strstr(ev, "\"placement\"") == NULL)
        return 0;
    cJSON *v = cJSON_Parse(ev);
    if (v == NULL)
        return 0; /* not JSON: the function will say so, unplaced */
    const char *s = NULL;
    int rc = flc_pool_place_from_json(v, &s, msg, cap);
    if (rc == 0 && s != NULL && (*out = strdup(s)) == NULL) {
        snprintf(msg, cap, "out of memory");
        rc = FLC_ENOMEM;
    }
    cJSON_Delete(v);
    return rc;
}

int flc_pool_place_same(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

void flc_pool_place_path(const char *name, char *buf, size_t cap)
{
    snprintf(buf, cap, NETNS_DIR "%s", name);
}

int flc_pool_place_enter_thread(const char *name, char *msg, size_t cap)
{
    int rc = flc_pool_place_check(name, msg, cap);
    if (rc != 0 || name[0] == '\0')
        return rc;
    char path[FLC_POOL_PLACEMENT_MAX + sizeof NETNS_DIR];
    flc_pool_place_path(name, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(msg, cap, "placement '%s': cannot open %s: %s", name, path, strerror(errno));
        return FLC_EIO;
    }
    rc = setns(fd, CLONE_NEWNET);
    int err = errno;
    close(fd);
    if (rc != 0) {
        snprintf(msg, cap, "placement '%s': cannot enter its network namespace: %s", name,
                 strerror(err));
        return FLC_EIO;
    }
    return 0;
}
