/* The "failover" case of bench/cluster (issue 12 point 7): a master killed
 * in the middle of a simulate round on a testbed with one replica per
 * master, with and without pushes waiting for their replica (Redis WAIT).
 * See bench_failover.c for what is measured. */
#ifndef FLC_BENCH_FAILOVER_H
#define FLC_BENCH_FAILOVER_H

/* Brings up its own 3x1 testbed (scripts/testbed.sh at script, name
 * "flcbf"), measures, brings it down and prints the "failover" lines.
 * root_ns: an fd of this process's own network namespace (it enters the
 * testbed's client namespace and comes back). Returns 0, or 1 when a run
 * failed (a line with "error" says what). */
int bench_failover(const char *script, int root_ns);

#endif
