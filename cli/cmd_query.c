/* `flcache query KIND --job J ...`: the query engine from the command line.
 * Tables for people (aligned columns), JSON for scripts. Vector queries run
 * one worker per shard next to the data (aggregator/query.h); with a node
 * map (FLCACHE_NODES, cli/place.h) each worker runs next to the cluster node
 * that owns its shards. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aggregator/query.h"
#include "cli/cli.h"
#include "cli/opt.h"
#include "cli/platform.h"
#include "cli/place.h"

typedef struct query_opts {
    flc_query_req_t q;
    int kind;
    const char *out_file;
    int json;
    int have_round;        /* --round R or --rounds A:B was given (the last one counts) */
    int memory_budget_mb;  /* --memory-budget; 0: the library's default */
} query_opts_t;

static const char *const kinds[] = {"history",     "client",       "norms",
                                    "similarity",  "outliers",     "clusters",
                                    "personalize", "contribution", "schedule",
                                    "accuracy",    "incentives",   "faults",   NULL};
static const char *const bys[] = {"default", "accuracy", NULL};

#define ROUND_RANGE "0..4294967295" /* round numbers are uint32; 0 is a job's initial model */

/* A round number at s; *end after it. -1 when s does not start with one. */
static int round_number(const char *s, char **end, uint32_t *out)
{
    if (!isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    unsigned long long x = strtoull(s, end, 10);
    if (errno == ERANGE || x > UINT32_MAX)
        return -1;
    *out = (uint32_t)x;
    return 0;
}

/* --round R: one round. */
static int round_parse(const char *v, void *dest, const char **need)
{
    query_opts_t *o = dest;
    char *end;
    uint32_t r;
    *need = "a round number in " ROUND_RANGE;
    if (round_number(v, &end, &r) != 0 || *end != '\0')
        return -1;
    o->q.round_from = o->q.round_to = r;
    o->have_round = 1;
    return 0;
}

/* --rounds A:B: rounds A..B, A <= B. */
/* KIND: the option parser's choice callback (value or -1). */
static int kind_parse(const char *v)
{
    flc_query_kind_t k;
    return flc_query_kind_parse(v, &k) == FLC_OK ? (int)k : -1;
}

static int rounds_parse(const char *v, void *dest, const char **need)
{
    query_opts_t *o = dest;
    char *end;
    uint32_t a, b;
    *need = "A:B, round numbers in " ROUND_RANGE " with A <= B";
    if (round_number(v, &end, &a) != 0 || *end != ':' ||
        round_number(end + 1, &end, &b) != 0 || *end != '\0' || a > b)
        return -1;
    o->q.round_from = a;
    o->q.round_to = b;
    o->have_round = 1;
    return 0;
}

static const flc_opt_t options[] = {
    {.name = "KIND", .type = FLC_OPT_CHOICE, FLC_OPT_AT(query_opts_t, kind), .choices = kinds,
     .parse = kind_parse, .def = "", .flags = FLC_OPT_POSITIONAL | FLC_OPT_REQUIRED,
     .help = "the question (kinds above)"},
    {.name = "job", .type = FLC_OPT_STR, .meta = "J", FLC_OPT_AT(query_opts_t, q.job),
     .flags = FLC_OPT_REQUIRED, .help = "the job (required)"},
    {.name = "round", .type = FLC_OPT_CUSTOM, .meta = "R", .custom = round_parse,
     .help = "one round (vector queries: required, or --rounds)"},
    {.name = "rounds", .type = FLC_OPT_CUSTOM, .meta = "A:B", .custom = rounds_parse,
     .help = "rounds A..B inclusive"},
    {.name = "client", .type = FLC_OPT_STR, .meta = "C", FLC_OPT_AT(query_opts_t, q.client),
     .help = "the client of `client`"},
    {.name = "k", .type = FLC_OPT_INT, .meta = "K", FLC_OPT_AT(query_opts_t, q.k), .imin = 1,
     .imax = 100000000, .def = "",
     .help = "clusters (default 2) / clients to schedule (default 10)"},
    {.name = "cluster", .type = FLC_OPT_INT, .meta = "C", FLC_OPT_AT(query_opts_t, q.cluster),
     .imin = 0, .imax = 100000000, .help = "personalize: which cluster, 0..K-1"},
    {.name = "seed", .type = FLC_OPT_INT, .meta = "S", FLC_OPT_AT(query_opts_t, q.seed),
     .imin = 0, .imax = 100000000, .help = "k-means++ seed"},
    {.name = "out", .type = FLC_OPT_STR, .meta = "FILE", FLC_OPT_AT(query_opts_t, out_file),
     .help = "personalize: write the model as raw float32"},
    {.name = "by", .type = FLC_OPT_CHOICE, .meta = "WHAT", FLC_OPT_AT(query_opts_t, q.by_accuracy),
     .choices = bys, .def = "default",
     .help = "schedule, personalize, contribution: `accuracy` ranks by the clients' models "
             "on the job's evaluation set"},
    {.name = "samples", .type = FLC_OPT_INT, .meta = "N", FLC_OPT_AT(query_opts_t, q.samples),
     .imin = 0, .imax = 100000000, .def = "auto",
     .help = "evaluation kinds: evaluation samples (auto: an mlp's products move a quarter "
             "of an update, a softmax's fewer bytes than one; at least 100)"},
    {.name = "threads", .type = FLC_OPT_INT, .meta = "T", FLC_OPT_AT(query_opts_t, q.threads),
     .imin = 0, .imax = 64, .def = "one per node",
     .help = "shard workers in parallel (unplaced on several nodes: min(shards, 4))"},
    {.name = "no-cache", .type = FLC_OPT_FLAG, FLC_OPT_AT(query_opts_t, q.no_cache),
     .help = "recompute: neither read nor write the cached Gram partials, evaluation "
             "sums, evaluated numbers and personalized model"},
    {.name = "memory-budget", .type = FLC_OPT_INT, .meta = "MB",
     FLC_OPT_AT(query_opts_t, memory_budget_mb), .imin = 1, .imax = 1048576, .def = "64",
     .help = "MiB of updates the shard workers hold at once, in all (vector kinds read "
             "blocks of coordinates of every update to fit; at least N+1 rows of 16 KiB "
             "and a chunk each)"},
    FLC_CLI_PLATFORM_OPTION,
    {.name = "json", .type = FLC_OPT_FLAG, FLC_OPT_AT(query_opts_t, json),
     .help = "JSON instead of a table"},
    {0},
};

static const flc_opt_cmd_t query_cmd = {
    .prog = "flcache query",
    .synopsis = "KIND --job J [--round R | --rounds A:B] [options]",
    .about =
        "Asks a question about the rounds of a job stored in the cache. Questions that\n"
        "need the updates (norms, similarity, outliers, clusters, personalize,\n"
        "contribution) run next to each shard and move only small results.\n"
        "\n"
        "kinds:\n"
        "  history        per round: accuracy, loss, participants, missing, rejected,\n"
        "                 durations, bytes, cost (all rounds unless --round/--rounds)\n"
        "  client         one client's rounds: samples, loss, norm, status, fault label\n"
        "                 (--client C)\n"
        "  norms          per client of a round: update norm, cosine to the aggregate\n"
        "  similarity     the N x N cosine similarities of a round's updates\n"
        "  outliers       clients ranked by how unlike the others their update is, with\n"
        "                 precision/recall against a simulation's ground truth\n"
        "  clusters       k-means of a round's updates (--k K, --seed S)\n"
        "  personalize    the model of one cluster (--k K --cluster C [--out FILE])\n"
        "  contribution   per client, summed over the rounds: cosine-weighted share of\n"
        "                 the FedAvg aggregate and leave-one-out shift\n"
        "  schedule       the K clients to pick next (--k K), each with its reason\n"
        "  accuracy       every client's model of a round (global model before + its\n"
        "                 update) on the job's evaluation set (flcache eval-set), with\n"
        "                 gain, incentive, leave-one-out drop and fault scores\n"
        "  incentives     tokens: each client's accuracy minus the round's mean, summed\n"
        "  faults         FedDebug-style fault localisation from neuron activations on\n"
        "                 the evaluation inputs, with precision/recall against a\n"
        "                 simulation's ground truth\n"
        "  --by accuracy  schedule: the K most accurate; personalize: accuracy-weighted\n"
        "                 model of the K best (--k K) and its accuracy; contribution:\n"
        "                 leave-one-out accuracy of the FedAvg aggregate\n"
        "  norms, outliers, clusters answer per client over --rounds A:B; similarity\n"
        "  and personalize (one matrix, one model per round) refuse a range\n",
    .epilog = "The cache is FLCACHE_REDIS (see `flcache --help`). With FLCACHE_NODES (the\n"
              "node map `scripts/testbed.sh env` prints) the shard workers run next to the\n"
              "cluster node that owns their shards.\n",
    .opts = options,
};

static void print_table(const Flcache__QueryAnswer *a)
{
    size_t nc = a->n_columns, nn = a->num_numeric;
    size_t *w = calloc(nc + 1, sizeof *w);
    char cell[64];
    const char *keyname = strcmp(a->kind, "history") == 0 || strcmp(a->kind, "client") == 0
                              ? "round"
                          : strcmp(a->kind, "personalize") == 0 &&
                                  strcmp(a->columns[0], "accuracy") != 0
                              ? "part"
                                                                 : "client";
    for (size_t i = 0; i < a->n_notes; i++) /* an asynchronous job: versions, not rounds */
        if (strcmp(a->notes[i]->key, "version") == 0 && strcmp(keyname, "round") == 0)
            keyname = "version";
    w[0] = strlen(keyname);
    for (size_t r = 0; r < a->n_rows; r++) {
        size_t l = strlen(a->rows[r]->key);
        w[0] = l > w[0] ? l : w[0];
    }
    for (size_t c = 0; c < nc; c++) {
        w[c + 1] = strlen(a->columns[c]);
        for (size_t r = 0; r < a->n_rows; r++) {
            const Flcache__QueryRow *row = a->rows[r];
            size_t l = c < nn ? (size_t)snprintf(cell, sizeof cell, "%.4g", row->values[c])
                              : strlen(row->text[c - nn]);
            w[c + 1] = l > w[c + 1] ? l : w[c + 1];
        }
    }
    printf("%-*s", (int)w[0], keyname);
    for (size_t c = 0; c < nc; c++)
        printf("  %*s", c < nn ? (int)w[c + 1] : -(int)w[c + 1], a->columns[c]);
    printf("\n");
    for (size_t r = 0; r < a->n_rows; r++) {
        const Flcache__QueryRow *row = a->rows[r];
        printf("%-*s", (int)w[0], row->key);
        for (size_t c = 0; c < nc; c++) {
            if (c < nn) {
                if (isnan(row->values[c]))
                    snprintf(cell, sizeof cell, "-");
                else
                    snprintf(cell, sizeof cell, "%.4g", row->values[c]);
                printf("  %*s", (int)w[c + 1], cell);
            } else {
                printf("  %-*s", (int)w[c + 1], row->text[c - nn]);
            }
        }
        printf("\n");
    }
    for (size_t i = 0; i < a->n_summary; i++)
        printf("%s%s = %.4g", i ? ", " : "\n", a->summary[i]->key, a->summary[i]->value);
    if (a->n_summary)
        printf("\n");
    for (size_t i = 0; i < a->n_notes; i++)
        printf("note: %s: %s\n", a->notes[i]->key, a->notes[i]->value);
    char rd[32], mv[32];
    flc_cli_bytes(rd, sizeof rd, (double)a->bytes_read);
    flc_cli_bytes(mv, sizeof mv, (double)a->bytes_moved);
    printf("(%zu rows in %.1f ms; read %s next to the data, moved %s)\n", a->n_rows,
           a->elapsed_ms, rd, mv);
    free(w);
}

int flc_cmd_query(int argc, char **argv)
{
    query_opts_t o = {.q = {.all_rounds = 1, .seed = 1}, .kind = -1};
    int rc;
    if (!flc_opt_parse(&query_cmd, argc, argv, &o, sizeof o, &rc))
        return rc;
    flc_query_req_t q = o.q;
    q.mem_budget = (size_t)o.memory_budget_mb << 20;
    int kind = o.kind;
    q.kind = (flc_query_kind_t)kind;
    int have_round = o.have_round;
    if (have_round)
        q.all_rounds = 0;
    int per_round = kind == FLC_Q_NORMS || kind == FLC_Q_SIMILARITY || kind == FLC_Q_OUTLIERS ||
                    kind == FLC_Q_CLUSTERS || kind == FLC_Q_PERSONALIZE;
    if (per_round && !have_round)
        return flc_opt_usage_error(&query_cmd, "%s is about rounds of updates: add --round R "
                                   "(or --rounds A:B)",
                                   flc_query_kind_name(q.kind));
    if (kind == FLC_Q_CLIENT && q.client == NULL)
        return flc_opt_usage_error(&query_cmd, "client needs --client C");
    const char *out_file = o.out_file;
    int json = o.json;
    float *model = NULL;
    uint64_t mlen = 0;
    if (kind == FLC_Q_PERSONALIZE && out_file) {
        q.model_out = &model;
        q.model_len = &mlen;
    }
    /* The node map first: a bad one is the user's to fix before anything
     * connects. Without it the workers run here, reading over the network. */
    flc_cli_nodes_t *nodes = NULL;
    flc_err_t ne = {0};
    if (flc_cli_nodes_parse(flc_config_program()->nodes, &nodes, &ne) != FLC_OK) {
        flc_cli_error("query", "%s", ne.msg);
        return FLC_EXIT_RUNTIME;
    }
    q.place = flc_cli_place(nodes);
    flc_cli_conn_t c;
    if (flc_cli_connect(&c, flc_config_program(), NULL) != FLC_EXIT_OK) {
        flc_cli_nodes_free(nodes);
        return FLC_EXIT_RUNTIME;
    }
    /* The shard workers connect like the command did: same URL, same
     * store options (chunk, cold tier). */
    flc_store_opts_t so;
    flc_cold_opts_t cold;
    flc_config_store_opts(flc_config_program(), &so, &cold);
    q.url = c.url;
    q.store_opts = &so;
    if (flc_cli_platform() != FLC_PLATFORM_LOCAL) { /* one query function there */
        rc = flc_cli_query_remote(&c, &q, out_file != NULL);
        flc_cli_disconnect(&c);
        flc_cli_nodes_free(nodes);
        return rc;
    }
    Flcache__QueryAnswer *ans = NULL;
    flc_err_t e = {0};
    rc = flc_query_run(c.store, &q, &ans, &e);
    int exit_code = FLC_EXIT_OK;
    if (rc != FLC_OK) {
        flc_cli_error("query", "%s", e.msg);
        exit_code = FLC_EXIT_RUNTIME;
    } else {
        if (json) {
            cJSON *j = flc_query_answer_json(ans);
            flc_cli_print_json(j, 1);
            cJSON_Delete(j);
        } else {
            print_table(ans);
        }
        if (model && out_file) {
            FILE *f = fopen(out_file, "wb");
            if (f == NULL || fwrite(model, sizeof *model, mlen, f) != mlen || fclose(f) != 0) {
                flc_cli_error("query", "cannot write %s", out_file);
                exit_code = FLC_EXIT_RUNTIME;
            } else if (!json) {
                printf("wrote %llu floats to %s\n", (unsigned long long)mlen, out_file);
            }
        }
        flcache__query_answer__free_unpacked(ans, NULL);
    }
    free(model);
    flc_cli_disconnect(&c);
    flc_cli_nodes_free(nodes);
    return exit_code;
}
