/* `flcache store stats`: what the cache holds: keys, memory, jobs and their
 * rounds, and the cold tier: hot and cold bytes, spills, fetches, and the
 * hit rate of each query class (the counters every process with a cold tier
 * adds to fl:tier), and on a Redis Cluster every node with its role, slots,
 * keys and memory. Reads only indexes and counters (no KEYS/SCAN). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cache/store_ops.h"
#include "cli/cli.h"
#include "cli/opt.h"

typedef struct store_opts {
    int what; /* the subcommand: 0 = stats */
    int json;
} store_opts_t;

static const char *const subcommands[] = {"stats", NULL};

static const flc_opt_t options[] = {
    {.name = "SUBCOMMAND", .type = FLC_OPT_CHOICE, FLC_OPT_AT(store_opts_t, what),
     .choices = subcommands, .def = "", .flags = FLC_OPT_POSITIONAL | FLC_OPT_REQUIRED,
     .help = "stats: what the cache holds"},
    {.name = "json", .type = FLC_OPT_FLAG, FLC_OPT_AT(store_opts_t, json),
     .help = "one JSON object instead of the table"},
    {0},
};

static const flc_opt_cmd_t store_cmd = {
    .prog = "flcache store",
    .synopsis = "stats [--json]",
    .about =
        "Shows the cache flcache talks to (FLCACHE_REDIS, or a fresh embedded one):\n"
        "number of keys, memory used and its limit, every job with its rounds, and\n"
        "the cold tier: hot/cold bytes, spills, fetches, hit rate per query class.\n"
        "On a Redis Cluster, also every node: id, address, role (master, or replica\n"
        "of which master), slot ranges and count, keys and memory used.\n",
    .opts = options,
};

/* The first 8 hex digits of a node id: enough to tell a cluster's nodes
 * apart (redis-cli shows ids the same way). */
static const char *short_id(const char *id, char *buf, size_t cap)
{
    snprintf(buf, cap, "%.8s", id[0] ? id : "-");
    return buf;
}

/* On a cluster, every node: id, address, role, slots, keys, memory, in the
 * table and as root.nodes. Nothing on one server (its output stays as it
 * was). */
static int nodes(flc_store_t *s, cJSON *root, int json)
{
    flc_store_node_t *v = NULL;
    size_t n = 0;
    if (flc_store_nodes(s, &v, &n) != FLC_OK) {
        flc_cli_error("store", "%s", flc_store_errstr(s));
        return FLC_EXIT_RUNTIME;
    }
    if (n == 0)
        return FLC_EXIT_OK;
    size_t nm = 0;
    for (size_t i = 0; i < n; i++)
        nm += strcmp(v[i].role, "master") == 0;
    cJSON *arr = cJSON_AddArrayToObject(root, "nodes");
    if (!json) {
        printf("nodes     %zu (%zu masters, %zu replicas)\n", n, nm, n - nm);
        printf("  %-8s  %-21s  %-20s  %-24s  %8s  %10s\n", "id", "address", "role", "slots",
               "keys", "memory");
    }
    for (size_t i = 0; i < n; i++) {
        const flc_store_node_t *d = &v[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", d->id);
        cJSON_AddStringToObject(o, "address", d->addr);
        cJSON_AddStringToObject(o, "role", d->role);
        if (d->master_id[0] || d->master_addr[0]) {
            cJSON_AddStringToObject(o, "master", d->master_id);
            cJSON_AddStringToObject(o, "master_address", d->master_addr);
        }
        cJSON_AddStringToObject(o, "slot_ranges", d->slots);
        cJSON_AddNumberToObject(o, "slots", d->nslots);
        cJSON_AddBoolToObject(o, "reachable", d->reachable);
        if (d->reachable) {
            cJSON_AddNumberToObject(o, "keys", (double)d->keys);
            cJSON_AddNumberToObject(o, "used_memory", (double)d->used_memory);
        }
        cJSON_AddItemToArray(arr, o);
        if (json)
            continue;
        char id[16], mid[16], role[40], slots[240], mem[32], keys[24];
        if (strcmp(d->role, "replica") == 0)
            snprintf(role, sizeof role, "replica of %s", short_id(d->master_id, mid, sizeof mid));
        else
            snprintf(role, sizeof role, "%s", d->role);
        if (d->nslots)
            snprintf(slots, sizeof slots, "%s (%u)", d->slots, d->nslots);
        else
            snprintf(slots, sizeof slots, "-");
        flc_cli_bytes(mem, sizeof mem, (double)d->used_memory);
        snprintf(keys, sizeof keys, "%llu", (unsigned long long)d->keys);
        printf("  %-8s  %-21s  %-20s  %-24s  %8s  %10s\n", short_id(d->id, id, sizeof id),
               d->addr, role, slots, d->reachable ? keys : "down", d->reachable ? mem : "-");
    }
    free(v);
    return FLC_EXIT_OK;
}

static int stats(flc_cli_conn_t *c, int json)
{
    flc_store_t *s = c->store;
    flc_store_stats_t st;
    if (flc_store_stats(s, &st) != FLC_OK) {
        flc_cli_error("store", "%s", flc_store_errstr(s));
        return FLC_EXIT_RUNTIME;
    }
    flc_strlist_t jobs;
    if (flc_store_list_jobs(s, &jobs) != FLC_OK) {
        flc_cli_error("store", "%s", flc_store_errstr(s));
        return FLC_EXIT_RUNTIME;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "cache", flc_store_url(s));
    cJSON_AddStringToObject(root, "redis_version", st.redis_version);
    cJSON_AddNumberToObject(root, "keys", (double)st.keys);
    cJSON_AddNumberToObject(root, "used_memory", (double)st.used_memory);
    cJSON_AddNumberToObject(root, "maxmemory", (double)st.maxmemory);
    flc_tier_stats_t ts;
    if (flc_store_tier_read(s, &ts) != FLC_OK)
        memset(&ts, 0, sizeof ts);
    cJSON *tier = cJSON_AddObjectToObject(root, "tier");
    cJSON_AddNumberToObject(tier, "hot_bytes", (double)st.used_memory);
    cJSON_AddNumberToObject(tier, "cold_bytes", (double)ts.cold_bytes);
    cJSON_AddNumberToObject(tier, "spills", (double)ts.spills);
    cJSON_AddNumberToObject(tier, "spill_bytes", (double)ts.spill_bytes);
    cJSON_AddNumberToObject(tier, "fetches", (double)ts.fetches);
    cJSON_AddNumberToObject(tier, "fetch_bytes", (double)ts.fetch_bytes);
    cJSON_AddNumberToObject(tier, "rewarms", (double)ts.rewarms);
    cJSON_AddNumberToObject(tier, "prefetches", (double)ts.prefetches);
    cJSON *hr = cJSON_AddObjectToObject(tier, "hit_rate");
    for (int q = 0; q < FLC_QC_COUNT; q++) {
        uint64_t n = ts.hits[q] + ts.misses[q];
        if (n)
            cJSON_AddNumberToObject(hr, flc_qclass_name(q), (double)ts.hits[q] / (double)n);
    }
    cJSON *ja = cJSON_AddArrayToObject(root, "jobs");
    char used[32], maxm[32];
    flc_cli_bytes(used, sizeof used, (double)st.used_memory);
    flc_cli_bytes(maxm, sizeof maxm, (double)st.maxmemory);
    if (!json) {
        printf("cache     %s (redis %s)%s\n", flc_store_url(s), st.redis_version,
               c->embedded ? " [embedded, empty: set FLCACHE_REDIS to inspect a real one]" : "");
        printf("keys      %llu\n", (unsigned long long)st.keys);
        printf("memory    %s used of %s\n", used, st.maxmemory ? maxm : "unlimited");
    }
    if (nodes(s, root, json) != FLC_EXIT_OK) {
        cJSON_Delete(root);
        flc_strlist_free(&jobs);
        return FLC_EXIT_RUNTIME;
    }
    if (!json) {
        char cb[32], fb[32];
        flc_cli_bytes(cb, sizeof cb, (double)ts.cold_bytes);
        flc_cli_bytes(fb, sizeof fb, (double)ts.fetch_bytes);
        printf("hot       %s in Redis\n", used);
        printf("cold      %s spilled in %llu spills; %llu fetches (%s), %llu re-warmed, "
               "%llu prefetched\n", cb, (unsigned long long)ts.spills,
               (unsigned long long)ts.fetches, fb, (unsigned long long)ts.rewarms,
               (unsigned long long)ts.prefetches);
        for (int q = 0; q < FLC_QC_COUNT; q++) {
            uint64_t n = ts.hits[q] + ts.misses[q];
            if (n)
                printf("hit rate  %-10s %5.1f%% of %llu shard reads\n", flc_qclass_name(q),
                       100.0 * (double)ts.hits[q] / (double)n, (unsigned long long)n);
        }
        printf("jobs      %zu\n", jobs.n);
    }
    for (size_t i = 0; i < jobs.n; i++) {
        uint32_t *rounds = NULL;
        size_t nr = 0;
        int rc = flc_store_list_rounds(s, jobs.items[i], &rounds, &nr);
        if (rc != FLC_OK && rc != FLC_ENOTFOUND) {
            flc_cli_error("store", "%s", flc_store_errstr(s));
            free(rounds);
            break;
        }
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "job", jobs.items[i]);
        cJSON_AddNumberToObject(j, "rounds", (double)nr);
        if (nr) {
            cJSON_AddNumberToObject(j, "first_round", rounds[0]);
            cJSON_AddNumberToObject(j, "last_round", rounds[nr - 1]);
        }
        cJSON_AddItemToArray(ja, j);
        if (!json) {
            if (nr)
                printf("  %-24s %zu rounds (%u..%u)\n", jobs.items[i], nr, rounds[0],
                       rounds[nr - 1]);
            else
                printf("  %-24s no rounds\n", jobs.items[i]);
        }
        free(rounds);
    }
    if (json)
        flc_cli_print_json(root, 1);
    cJSON_Delete(root);
    flc_strlist_free(&jobs);
    return FLC_EXIT_OK;
}

int flc_cmd_store(int argc, char **argv)
{
    store_opts_t o = {0};
    int rc;
    if (!flc_opt_parse(&store_cmd, argc, argv, &o, sizeof o, &rc))
        return rc;
    flc_cli_conn_t c;
    if ((rc = flc_cli_connect(&c, flc_config_program(), NULL)) != FLC_EXIT_OK)
        return rc;
    rc = stats(&c, o.json);
    flc_cli_disconnect(&c);
    return rc;
}
