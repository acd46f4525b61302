/* `flcache query KIND --job J ...`: the query engine from the command line.
 * Tables for people (aligned columns), JSON for scripts. Vector queries run
 * one worker per shard next to the data (aggregator/query.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aggregator/query.h"
#include "cli/cli.h"

static void query_usage(FILE *f)
{
    fprintf(f,
            "usage: flcache query KIND --job J [--round R | --rounds A:B] [options]\n"
            "\n"
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
            "\n"
            "options:\n"
            "  --job J          the job (required)\n"
            "  --round R        one round (vector queries: required, or --rounds)\n"
            "  --rounds A:B     rounds A..B inclusive\n"
            "  --client C       the client of `client`\n"
            "  --k K            clusters (default 2) / clients to schedule (default 10)\n"
            "  --cluster C      personalize: which cluster (default 0)\n"
            "  --seed S         k-means++ seed (default 1)\n"
            "  --out FILE       personalize: write the model as raw float32\n"
            "  --threads T      shard workers in parallel (default min(shards, 4))\n"
            "  --no-cache       recompute the per-shard Gram partials\n"
            "  --json           JSON instead of a table\n"
            "\n"
            "The cache is FLCACHE_REDIS (see `flcache --help`).\n");
}

/* An unsigned option value; prints what was wrong otherwise. */
static int parse_u(const char *opt, const char *v, unsigned max, unsigned *out)
{
    long long x;
    if (flc_cli_opt_int("query", opt, v, 0, max, &x) != 0)
        return -1;
    *out = (unsigned)x;
    return 0;
}

static void print_table(const Flcache__QueryAnswer *a)
{
    size_t nc = a->n_columns, nn = a->num_numeric;
    size_t *w = calloc(nc + 1, sizeof *w);
    char cell[64];
    const char *keyname = strcmp(a->kind, "history") == 0 || strcmp(a->kind, "client") == 0
                              ? "round"
                          : strcmp(a->kind, "personalize") == 0 ? "part"
                                                                 : "client";
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
    if (flc_cli_wants_help(argc, argv)) {
        query_usage(stdout);
        return FLC_EXIT_OK;
    }
    if (argc < 2) {
        query_usage(stderr);
        return FLC_EXIT_USAGE;
    }
    int kind = flc_query_kind_parse(argv[1]);
    if (kind < 0) {
        flc_cli_error("query", "unknown query '%s' (history, client, norms, similarity, "
                      "outliers, clusters, personalize, contribution, schedule)", argv[1]);
        return FLC_EXIT_USAGE;
    }
    flc_query_req_t q = {.kind = (flc_query_kind_t)kind, .all_rounds = 1, .seed = 1};
    const char *out_file = NULL;
    int json = 0, have_round = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned u;
        if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--no-cache") == 0) {
            q.no_cache = 1;
        } else if (v == NULL) {
            flc_cli_error("query", "option %s needs a value (or is unknown)", a);
            return FLC_EXIT_USAGE;
        } else if (strcmp(a, "--job") == 0) {
            q.job = v, i++;
        } else if (strcmp(a, "--client") == 0) {
            q.client = v, i++;
        } else if (strcmp(a, "--out") == 0) {
            out_file = v, i++;
        } else if (strcmp(a, "--round") == 0) {
            if (parse_u(a, v, 4294967295u, &u) != 0)
                return FLC_EXIT_USAGE;
            q.round_from = q.round_to = u, q.all_rounds = 0, have_round = 1, i++;
        } else if (strcmp(a, "--rounds") == 0) {
            unsigned x, y;
            char tail;
            if (sscanf(v, "%u:%u%c", &x, &y, &tail) != 2 || x > y) {
                flc_cli_error("query", "--rounds wants A:B with A <= B, not '%s'", v);
                return FLC_EXIT_USAGE;
            }
            q.round_from = x, q.round_to = y, q.all_rounds = 0, have_round = 1, i++;
        } else if (strcmp(a, "--k") == 0 || strcmp(a, "--cluster") == 0 ||
                   strcmp(a, "--seed") == 0 || strcmp(a, "--threads") == 0) {
            int threads = strcmp(a, "--threads") == 0;
            if (parse_u(a, v, threads ? 64 : 100000000u, &u) != 0)
                return FLC_EXIT_USAGE;
            if (strcmp(a, "--k") == 0)
                q.k = u;
            else if (strcmp(a, "--cluster") == 0)
                q.cluster = u;
            else if (threads)
                q.threads = (int)u;
            else
                q.seed = u;
            i++;
        } else {
            flc_cli_error("query", "bad option '%s %s' (see flcache query --help)", a, v);
            return FLC_EXIT_USAGE;
        }
    }
    if (q.job == NULL) {
        flc_cli_error("query", "which job? (--job J)");
        return FLC_EXIT_USAGE;
    }
    int per_round = kind == FLC_Q_NORMS || kind == FLC_Q_SIMILARITY || kind == FLC_Q_OUTLIERS ||
                    kind == FLC_Q_CLUSTERS || kind == FLC_Q_PERSONALIZE;
    if (per_round && !have_round) {
        flc_cli_error("query", "%s is about one round: add --round R", argv[1]);
        return FLC_EXIT_USAGE;
    }
    if (kind == FLC_Q_CLIENT && q.client == NULL) {
        flc_cli_error("query", "client needs --client C");
        return FLC_EXIT_USAGE;
    }
    float *model = NULL;
    uint64_t mlen = 0;
    if (kind == FLC_Q_PERSONALIZE && out_file) {
        q.model_out = &model;
        q.model_len = &mlen;
    }
    flc_cli_conn_t c;
    if (flc_cli_connect(&c, flc_config_program(), NULL) != FLC_EXIT_OK)
        return FLC_EXIT_RUNTIME;
    q.url = c.url;
    Flcache__QueryAnswer *ans = NULL;
    flc_err_t e = {0};
    int rc = flc_query_run(c.store, &q, &ans, &e);
    int exit_code = FLC_EXIT_OK;
    if (rc != FLC_OK) {
        flc_cli_error("query", "%s", e.msg);
        exit_code = FLC_EXIT_RUNTIME;
    } else {
        if (json) {
            cJSON *j = flc_query_answer_json(ans);
            char *txt = j ? cJSON_Print(j) : NULL;
            if (txt)
                printf("%s\n", txt);
            free(txt);
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
    return exit_code;
}
