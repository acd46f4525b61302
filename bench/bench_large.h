/* bench/aggregate --large (issue 14 goal 4): big updates through one
 * redis-server, with every client and every merger a process of its own,
 * so each merger's peak RSS is its own. See bench_large.c. */
#ifndef FLC_BENCH_LARGE_H
#define FLC_BENCH_LARGE_H

/* Runs the large case for each rule family (fedavg, median), printing one
 * JSON line each; returns the number of failures. */
int bench_large_run(void);

#endif
