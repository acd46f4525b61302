/* Leveled logging to stderr; one line per call, prefixed with the level. */
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_level = -1; /* -1: not yet read from the environment */

static int level_from_env(void)
{
    const char *s = getenv("FLCACHE_LOG");
    if (s == NULL || *s == '\0')
        return -1;
    if (strcmp(s, "error") == 0) return FLC_LOG_ERROR;
    if (strcmp(s, "warn") == 0) return FLC_LOG_WARN;
    if (strcmp(s, "info") == 0) return FLC_LOG_INFO;
    if (strcmp(s, "debug") == 0) return FLC_LOG_DEBUG;
    if (strcmp(s, "off") == 0) return FLC_LOG_OFF;
    return -1;
}

void flc_log_set_level(int level)
{
    int env = level_from_env();
    g_level = env >= 0 ? env : level;
}

int flc_log_level(void)
{
    if (g_level < 0) {
        int env = level_from_env();
        g_level = env >= 0 ? env : FLC_LOG_OFF;
    }
    return g_level;
}

void flc_log(int level, const char *fmt, ...)
{
    static const char *names[] = {"", "error", "warn", "info", "debug"};
    if (level > flc_log_level() || level <= FLC_LOG_OFF)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "flcache %s: %s\n", names[level], line);
}
