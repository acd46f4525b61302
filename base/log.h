/* A very small leveled logger to stderr. Off by default in the libraries
 * (level FLC_LOG_OFF); the CLI turns on warnings, and FLCACHE_LOG=
 * error|warn|info|debug overrides both. */
#ifndef FLC_BASE_LOG_H
#define FLC_BASE_LOG_H

enum { FLC_LOG_OFF = 0, FLC_LOG_ERROR, FLC_LOG_WARN, FLC_LOG_INFO, FLC_LOG_DEBUG };

/* Sets the level; FLCACHE_LOG in the environment, when set, wins. */
void flc_log_set_level(int level);
int flc_log_level(void);

void flc_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define FLC_WARN(...) flc_log(FLC_LOG_WARN, __VA_ARGS__)
#define FLC_INFO(...) flc_log(FLC_LOG_INFO, __VA_ARGS__)
#define FLC_DEBUG(...) flc_log(FLC_LOG_DEBUG, __VA_ARGS__)

#endif
