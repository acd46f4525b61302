/* `flcache store`: what the cache holds and the jobs' lifecycle.
 *
 * `stats`: keys, memory, jobs and their rounds, and the cold tier: hot and
 * cold bytes, spills, fetches, and the hit rate of each query class (the
 * counters every process with a cold tier adds to fl:tier), and on a Redis
 * Cluster every node with its role, slots, keys and memory. Reads only
 * indexes and counters (the job list is a SCAN for schema records).
 *
 * `ls`: every job with its rounds and the time of its last round. `rm JOB`:
 * removes every key of the job on every master and its cold-tier copies
 * (cache/store_rm.c), saying what went. `expire --before WHEN`: removes the
 * jobs whose last round is older. The job's age is the time of its last
 * round (RoundMeta closed_ms, else started_ms; the newest over the job and
 * its series): the rounds index is ordered by round number, not time, and a
 * key's own idle time changes with every read. A job whose rounds carry no
 * time (no metadata) is never removed by age: it is listed as undated. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/clock.h"
#include "cache/store_ops.h"
#include "cli/cli.h"
#include "cli/opt.h"

enum { SUB_STATS, SUB_LS, SUB_RM, SUB_EXPIRE };

typedef struct store_opts {
    int what; /* the subcommand: SUB_* */
    const char *job;
    int json;
    int dry_run;
    const char *before;
    uint64_t before_ms;
} store_opts_t;

static const char *const subcommands[] = {"stats", "ls", "rm", "expire", NULL};

static int before_parse(const char *v, void *dest, const char **need)
{
    store_opts_t *o = dest;
    *need = "an ISO date (2026-01-31, 2026-01-31T12:00Z: UTC) or a duration back from now "
            "(90m, 12h, 7d, 2w)";
    o->before = v;
    return flc_cli_when_ms(v, flc_wall_ms(), &o->before_ms);
}

static const flc_opt_t options[] = {
    {.name = "SUBCOMMAND", .type = FLC_OPT_CHOICE, FLC_OPT_AT(store_opts_t, what),
     .choices = subcommands, .def = "", .flags = FLC_OPT_POSITIONAL | FLC_OPT_REQUIRED,
     .help = "stats: what the cache holds; ls: the jobs, their rounds and age;\n"
             "rm JOB: remove a job; expire --before WHEN: remove the jobs older than WHEN"},
    {.name = "JOB", .type = FLC_OPT_STR, FLC_OPT_AT(store_opts_t, job), .def = "",
     .flags = FLC_OPT_POSITIONAL, .help = "the job of rm"},
    {.name = "before", .type = FLC_OPT_CUSTOM, .meta = "WHEN", .custom = before_parse,
     .help = "expire: remove the jobs whose last round is older than WHEN: an ISO date "
             "(UTC) or a duration back from now (7d)"},
    {.name = "dry-run", .type = FLC_OPT_FLAG, FLC_OPT_AT(store_opts_t, dry_run),
     .help = "rm, expire: say what would be removed, remove nothing"},
    {.name = "json", .type = FLC_OPT_FLAG, FLC_OPT_AT(store_opts_t, json),
     .help = "one JSON object instead of the table"},
    {0},
};

static const flc_opt_cmd_t store_cmd = {
    .prog = "flcache store",
    .synopsis = "stats | ls | rm JOB [--dry-run] | expire --before WHEN [--dry-run]  [--json]",
    .about =
        "Inspects the cache flcache talks to (FLCACHE_REDIS, or a fresh embedded one)\n"
        "and removes jobs from it.\n"
        "stats: number of keys, memory used and its limit, every job with its rounds,\n"
        "and the cold tier: hot/cold bytes, spills, fetches, hit rate per query class.\n"
        "On a Redis Cluster, also every node: id, address, role (master, or replica\n"
        "of which master), slot ranges and count, keys and memory used.\n"
        "ls: every job, its rounds and the time of its last round (UTC).\n"
        "rm JOB: removes every key of the job (all keys fl:{JOB/..., its model series\n"
        "JOB/g and steps JOB/steps included) on every master, and its copies in the\n"
        "cold tier (FLCACHE_COLD), and says what went. Exit 1 when there is no such\n"
        "job.\n"
        "expire --before WHEN: removes every job whose last round is older than WHEN\n"
        "(its RoundMeta's close time), naming each; a job whose rounds carry no time\n"
        "is kept. For an expiry set when a job is written, see --ttl of simulate and\n"
        "train. rm and expire scan the whole keyspace of each master (SCAN, 1000 keys\n"
        "a step): a cost that grows with the cache, paid only by them.\n",
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

/* ---- ls, rm, expire -------------------------------------------------------- */

/* "1234 keys (5.6 MiB) on 3 nodes, 56 cold objects (7.8 MiB)" */
static void report_text(char *out, size_t cap, const flc_store_job_report_t *r, int tier)
{
    char b[32], cb[32];
    flc_cli_bytes(b, sizeof b, (double)r->bytes);
    flc_cli_bytes(cb, sizeof cb, (double)r->cold_bytes);
    int n = snprintf(out, cap, "%llu keys (%s) on %u node%s", (unsigned long long)r->keys, b,
                     r->nodes, r->nodes == 1 ? "" : "s");
    if (tier && n > 0 && (size_t)n < cap)
        snprintf(out + n, cap - (size_t)n, ", %llu cold objects (%s)",
                 (unsigned long long)r->cold_objects, cb);
}

static cJSON *report_json(const char *job, const flc_store_job_report_t *r, int tier)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "job", job);
    cJSON_AddNumberToObject(o, "keys", (double)r->keys);
    cJSON_AddNumberToObject(o, "bytes", (double)r->bytes);
    cJSON_AddNumberToObject(o, "nodes", r->nodes);
    if (tier) {
        cJSON_AddNumberToObject(o, "cold_objects", (double)r->cold_objects);
        cJSON_AddNumberToObject(o, "cold_bytes", (double)r->cold_bytes);
    }
    return o;
}

static int rm(flc_cli_conn_t *c, const store_opts_t *o)
{
    flc_store_t *s = c->store;
    flc_store_job_report_t r;
    int rc = flc_store_job_rm(s, o->job, o->dry_run, &r);
    if (rc != FLC_OK) {
        flc_cli_error("store", "%s", flc_store_errstr(s));
        return FLC_EXIT_RUNTIME;
    }
    int tier = flc_store_has_tier(s);
    if (o->json) {
        cJSON *j = report_json(o->job, &r, tier);
        cJSON_AddBoolToObject(j, "dry_run", o->dry_run);
        flc_cli_print_json(j, 0);
        cJSON_Delete(j);
    } else {
        char t[200];
        report_text(t, sizeof t, &r, tier);
        printf("%s job '%s': %s\n", o->dry_run ? "would remove" : "removed", o->job, t);
    }
    return FLC_EXIT_OK;
}

static int ls(flc_cli_conn_t *c, const store_opts_t *o)
{
    flc_store_t *s = c->store;
    flc_strlist_t jobs;
    if (flc_store_list_jobs(s, &jobs) != FLC_OK) {
        flc_cli_error("store", "%s", flc_store_errstr(s));
        return FLC_EXIT_RUNTIME;
    }
    cJSON *arr = cJSON_CreateArray();
    int rc = FLC_EXIT_OK;
    if (!o->json)
        printf("%-24s %8s %10s  %s\n", "job", "rounds", "last", "last round at (UTC)");
    for (size_t i = 0; i < jobs.n; i++) {
        flc_store_job_age_t a;
        if (flc_store_job_age(s, jobs.items[i], &a) != FLC_OK) {
            flc_cli_error("store", "%s", flc_store_errstr(s));
            rc = FLC_EXIT_RUNTIME;
            break;
        }
        char when[32];
        flc_cli_iso_time(when, sizeof when, a.last_ms);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "job", jobs.items[i]);
        cJSON_AddNumberToObject(j, "rounds", (double)a.rounds);
        if (a.rounds)
            cJSON_AddNumberToObject(j, "last_round", a.last_round);
        if (a.last_ms) {
            cJSON_AddNumberToObject(j, "last_ms", (double)a.last_ms);
            cJSON_AddStringToObject(j, "last_time", when);
        }
        cJSON_AddItemToArray(arr, j);
        if (!o->json) {
            char last[16] = "-";
            if (a.rounds)
                snprintf(last, sizeof last, "%u", a.last_round);
            printf("%-24s %8llu %10s  %s\n", jobs.items[i], (unsigned long long)a.rounds,
                   last, when);
        }
    }
    if (o->json && rc == FLC_EXIT_OK)
        flc_cli_print_json(arr, 1);
    cJSON_Delete(arr);
    flc_strlist_free(&jobs);
    return rc;
}

static int expire(flc_cli_conn_t *c, const store_opts_t *o)
{
    flc_store_t *s = c->store;
    flc_strlist_t jobs;
    if (flc_store_list_jobs(s, &jobs) != FLC_OK) {
        flc_cli_error("store", "%s", flc_store_errstr(s));
        return FLC_EXIT_RUNTIME;
    }
    int tier = flc_store_has_tier(s), rc = FLC_EXIT_OK;
    size_t removed = 0, undated = 0;
    char cut[32];
    flc_cli_iso_time(cut, sizeof cut, o->before_ms);
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "removed");
    cJSON *kept = cJSON_AddArrayToObject(root, "undated");
    cJSON_AddStringToObject(root, "before", cut);
    cJSON_AddBoolToObject(root, "dry_run", o->dry_run);
    for (size_t i = 0; i < jobs.n && rc == FLC_EXIT_OK; i++) {
        const char *job = jobs.items[i];
        flc_store_job_age_t a;
        if (flc_store_job_age(s, job, &a) != FLC_OK) {
            flc_cli_error("store", "%s", flc_store_errstr(s));
            rc = FLC_EXIT_RUNTIME;
            break;
        }
        if (a.last_ms == 0) { /* never removed on a guess */
            undated++;
            cJSON_AddItemToArray(kept, cJSON_CreateString(job));
            if (!o->json)
                printf("kept job '%s': its rounds carry no time\n", job);
            continue;
        }
        if (a.last_ms >= o->before_ms)
            continue;
        flc_store_job_report_t r;
        if (flc_store_job_rm(s, job, o->dry_run, &r) != FLC_OK) {
            flc_cli_error("store", "%s", flc_store_errstr(s));
            rc = FLC_EXIT_RUNTIME;
            break;
        }
        removed++;
        char when[32], t[200];
        flc_cli_iso_time(when, sizeof when, a.last_ms);
        cJSON *j = report_json(job, &r, tier);
        cJSON_AddStringToObject(j, "last_time", when);
        cJSON_AddItemToArray(arr, j);
        if (!o->json) {
            report_text(t, sizeof t, &r, tier);
            printf("%s job '%s' (last round %u at %s): %s\n",
                   o->dry_run ? "would remove" : "removed", job, a.last_round, when, t);
        }
    }
    if (rc == FLC_EXIT_OK) {
        if (o->json)
            flc_cli_print_json(root, 0);
        else
            printf("%s %zu of %zu jobs older than %s%s\n", o->dry_run ? "would remove" : "removed",
                   removed, jobs.n, cut, undated ? " (undated jobs kept)" : "");
    }
    cJSON_Delete(root);
    flc_strlist_free(&jobs);
    return rc;
}

int flc_cmd_store(int argc, char **argv)
{
    store_opts_t o = {0};
    int rc;
    if (!flc_opt_parse(&store_cmd, argc, argv, &o, sizeof o, &rc))
        return rc;
    if (o.what == SUB_RM && o.job == NULL)
        return flc_opt_usage_error(&store_cmd, "rm needs the JOB to remove");
    if (o.what != SUB_RM && o.job != NULL)
        return flc_opt_usage_error(&store_cmd, "unexpected argument '%s'", o.job);
    if (o.what == SUB_EXPIRE && o.before == NULL)
        return flc_opt_usage_error(&store_cmd, "expire needs --before WHEN");
    if (o.what != SUB_EXPIRE && o.before != NULL)
        return flc_opt_usage_error(&store_cmd, "--before goes with expire");
    if (o.dry_run && o.what != SUB_RM && o.what != SUB_EXPIRE)
        return flc_opt_usage_error(&store_cmd, "--dry-run goes with rm or expire");
    flc_err_t e = {0};
    if (o.job != NULL && flc_name_check(o.job, "job", &e) != FLC_OK) {
        flc_cli_error("store", "%s", flc_err_msg(&e));
        return FLC_EXIT_USAGE;
    }
    flc_cli_conn_t c;
    if ((rc = flc_cli_connect(&c, flc_config_program(), NULL)) != FLC_EXIT_OK)
        return rc;
    switch (o.what) {
    case SUB_LS: rc = ls(&c, &o); break;
    case SUB_RM: rc = rm(&c, &o); break;
    case SUB_EXPIRE: rc = expire(&c, &o); break;
    default: rc = stats(&c, o.json); break;
    }
    flc_cli_disconnect(&c);
    return rc;
}
