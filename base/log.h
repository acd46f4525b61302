/* A very small leveled logger to stderr. Off until the program sets a
 * level: `flcache` turns on warnings, FLCACHE_LOG=error|warn|info|debug|off
 * (read by cli/config.c) overrides that, and flcache-fn follows FLCACHE_LOG
 * alone. Set the level once at the top of main, before threads start. */
#ifndef FLC_BASE_LOG_H
#define FLC_BASE_LOG_H

#include "base/error.h"

enum { FLC_LOG_OFF = 0, FLC_LOG_ERROR, FLC_LOG_WARN, FLC_LOG_INFO, FLC_LOG_DEBUG };

/* Sets the level (FLC_LOG_*); anything out of range means off. */
void flc_log_set_level(int level);
int flc_log_level(void);

/* Sets *level to the level named "off", "error", "warn", "info" or "debug"
 * and returns 0; FLC_EINVAL (*level untouched) for any other name (NULL
 * too), so the caller can say which name was wrong. */
int flc_log_level_parse(const char *name, int *level);

void flc_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define FLC_WARN(...) flc_log(FLC_LOG_WARN, __VA_ARGS__)
#define FLC_INFO(...) flc_log(FLC_LOG_INFO, __VA_ARGS__)
#define FLC_DEBUG(...) flc_log(FLC_LOG_DEBUG, __VA_ARGS__)

#endif
