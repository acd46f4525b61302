/* Leveled logging to stderr; one line per call, prefixed with the level.
 * The level is the program's to set (flc_log_set_level, from FLCACHE_LOG in
 * cli/config.c): a library never reads the environment. */
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int g_level = FLC_LOG_OFF;

int flc_log_level_parse(const char *name, int *level)
{
    static const char *names[] = {"off", "error", "warn", "info", "debug"};
    for (int i = 0; name != NULL && i < (int)(sizeof names / sizeof *names); i++)
        if (strcmp(name, names[i]) == 0) {
            *level = i;
            return FLC_OK;
        }
    return FLC_EINVAL;
}

void flc_log_set_level(int level)
{
    g_level = level >= FLC_LOG_OFF && level <= FLC_LOG_DEBUG ? level : FLC_LOG_OFF;
}

int flc_log_level(void)
{
    return g_level;
}

void flc_log(int level, const char *fmt, ...)
{
    static const char *names[] = {"", "error", "warn", "info", "debug"};
    if (level > g_level || level <= FLC_LOG_OFF)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "flcache %s: %s\n", names[level], line);
}
