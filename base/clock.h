/* Time sources: a monotonic clock for durations, the wall clock for records. */
#ifndef FLC_BASE_CLOCK_H
#define FLC_BASE_CLOCK_H

#include <stdint.h>

/* Monotonic nanoseconds (CLOCK_MONOTONIC), for measuring durations. */
uint64_t flc_now_ns(void);

/* Seconds as a double from the monotonic clock. */
double flc_now_s(void);

/* Wall-clock milliseconds since the Unix epoch, for stored timestamps. */
uint64_t flc_wall_ms(void);

/* Sleeps for ms milliseconds (restarts after signals). */
void flc_sleep_ms(unsigned ms);

#endif
