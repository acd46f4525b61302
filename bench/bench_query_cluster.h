/* The "query" case of bench/cluster (issue 12, point 7): vector queries of
 * one round of N clients on a testbed cluster, answered next to the data
 * (shard workers placed in their node's namespace; Gram partials recomputed,
 * "next_to_data_cold", or cached, "next_to_data_warm") against the central
 * aggregator in the client namespace pulling every update over the node
 * links ("cache_central"). bench/cluster.c brings the testbed up (bench/bench_testbed.c) and hands it in. */
#ifndef FLC_BENCH_QUERY_CLUSTER_H
#define FLC_BENCH_QUERY_CLUSTER_H

#include <stdint.h>

#define BENCH_QC_MAX 8

typedef struct bench_qc_opts {
    int run_round, run_query, run_failover; /* --case round|query|failover|all (default all) */
    unsigned clients;                /* --clients N (default 100) */
    double sizes_mb[BENCH_QC_MAX];   /* --sizes 1,25: model MB, 262144 floats each */
    int nsizes;
    double rates_gbit[BENCH_QC_MAX]; /* --rates 1,10: node link rates */
    int nrates;
    int reps;                        /* --reps R (default 3) */
    unsigned shards;                 /* --shards S (default 12) */
    int threads;                     /* --threads T: shard workers (0: the engine's) */
} bench_qc_opts_t;

/* Parses bench/cluster's command line into o (defaults: the sizes).
 * Returns 0, 1 after printing the usage for --help, or -1 after printing
 * what is wrong. */
int bench_qc_parse(int argc, char **argv, bench_qc_opts_t *o);

/* The testbed, up with 3 masters that own every slot, this process already
 * inside its client namespace. */
typedef struct bench_qc_testbed {
    const char *seed;     /* the cluster's seed URL, with its password */
    const char *node_map; /* FLCACHE_NODES as `testbed.sh env` prints it */
    /* Shapes every node link to gbit (<= 0: unshaped). 0 or -1. */
    int (*set_rate)(void *user, double gbit);
    /* rx + tx bytes of every node's end of its link, summed. 0 or -1. */
    int (*link_bytes)(void *user, uint64_t *bytes);
    void *user;
} bench_qc_testbed_t;

/* Stores a round per size, then for each link rate and query kind (norms,
 * outliers, clusters, similarity) measures the three systems and prints one
 * JSON line per (size, rate, kind, system). 0, or -1 after a failure (the
 * lines measured so far are printed). */
int bench_qc_run(const bench_qc_testbed_t *tb, const bench_qc_opts_t *o);

#endif
