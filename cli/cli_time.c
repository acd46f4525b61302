/* Durations and dates of the lifecycle options (`--ttl DURATION` of
 * simulate and train, `store expire --before WHEN`, the times `store ls`
 * prints), and the end-of-run expiry of a job with --ttl. Kept apart from the
 * commands that use them: one wording of a duration for all of them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "cache/store_ops.h"
#include "cli/cli.h"

int flc_cli_duration_ms(const char *v, uint64_t *ms)
{
    char *end;
    if (v == NULL || *v < '0' || *v > '9')
        return -1;
    unsigned long long n = strtoull(v, &end, 10);
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000},
                 {"d", 86400000}, {"w", 604800000}};
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (strcmp(end, units[i].unit) == 0) {
            if (n > UINT64_MAX / units[i].ms)
                return -1;
            *ms = n * units[i].ms;
            return 0;
        }
    return -1;
}

int flc_cli_when_ms(const char *v, uint64_t now_ms, uint64_t *ms)
{
    uint64_t d;
    if (flc_cli_duration_ms(v, &d) == 0) {
        *ms = d < now_ms ? now_ms - d : 0;
        return 0;
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int len = 0, n = sscanf(v, "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &len);
    if (n != 3 || len != 10)
        return -1;
    const char *rest = v + len;
    if (*rest == 'T' || *rest == ' ') {
        int l2 = 0;
        if (sscanf(rest + 1, "%2d:%2d%n", &tm.tm_hour, &tm.tm_min, &l2) != 2 || l2 != 5)
            return -1;
        rest += 1 + l2;
        if (*rest == ':') {
            int l3 = 0;
            if (sscanf(rest + 1, "%2d%n", &tm.tm_sec, &l3) != 1 || l3 != 2)
                return -1;
            rest += 1 + l3;
        }
        if (*rest == 'Z')
            rest++;
    }
    if (*rest != '\0' || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
        tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60 ||
        tm.tm_year < 1970)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    if (t < 0)
        return -1;
    *ms = (uint64_t)t * 1000u;
    return 0;
}

void flc_cli_iso_time(char *out, size_t outlen, uint64_t ms)
{
    time_t t = (time_t)(ms / 1000u);
    struct tm tm;
    if (ms == 0 || gmtime_r(&t, &tm) == NULL ||
        strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, outlen, "-");
}

int flc_cli_job_ttl(const char *cmd, flc_store_t *s, const char *job, uint64_t ttl_ms)
{
    flc_store_job_report_t r;
    if (flc_store_job_expire(s, job, ttl_ms, &r) != FLC_OK) {
        flc_cli_error(cmd, "%s", flc_store_errstr(s));
        return FLC_EXIT_RUNTIME;
    }
    char when[32];
    flc_cli_iso_time(when, sizeof when, flc_wall_ms() + ttl_ms);
    fprintf(stderr, "flcache %s: job %s expires at %s (%llu keys on %u node%s)\n", cmd, job,
            when, (unsigned long long)r.keys, r.nodes, r.nodes == 1 ? "" : "s");
    return FLC_EXIT_OK;
}
