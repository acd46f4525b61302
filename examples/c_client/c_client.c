/* c_client.c - a federated round through libflcache's public C API.
 *
 * Two clients push updates of a 10-float model cut into 2 shards, this
 * program then runs each shard's merger (FedAvg, weighted by the clients'
 * sample counts) and pulls the merged model, as a C contributor and an
 * aggregator would in separate processes. It checks the model against the
 * FedAvg it computes itself, prints it, and asks the query engine for the
 * round's history. Built against the installed library alone:
 *
 *   cc c_client.c $(pkg-config --cflags --libs flcache) -o c_client
 *   ./c_client redis://127.0.0.1:6379 [job]
 *
 * Exit status: 0 when the pulled model is the expected FedAvg, 1 otherwise. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <flcache/flcache.h>

#define N 10 /* floats in the model */
#define S 2  /* shards */

static int fail(const char *what, const flc_err_t *e)
{
    fprintf(stderr, "c_client: %s: %s\n", what, flc_err_msg(e));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: c_client URL [JOB]\n");
        return 2;
    }
    const char *job = argc > 2 ? argv[2] : "c-client-demo";
    const uint32_t round = 1;
    /* A server that goes away must return FLC_ECONN, not kill us. */
    signal(SIGPIPE, SIG_IGN);

    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(argv[1], NULL, &e);
    if (s == NULL)
        return fail("open", &e);

    /* 1. Push: client c0 trained on 1 sample, c1 on 3. */
    const char *clients[2] = {"c0", "c1"};
    const uint64_t samples[2] = {1, 3};
    float u[2][N], want[N];
    for (int i = 0; i < N; i++) {
        u[0][i] = (float)i;
        u[1][i] = 10.0f + (float)i;
        want[i] = (float)((u[0][i] * 1.0 + u[1][i] * 3.0) / 4.0);
    }
    for (int c = 0; c < 2; c++) {
        flc_rs_push_cfg_t pc = {.job = job, .round = round, .client = clients[c],
                                .num_shards = S, .model_size = N, .num_samples = samples[c]};
        if (flc_rs_push(s, &pc, u[c], &e) != FLC_OK)
            return fail("push", &e);
    }

    /* 2. Merge: one merger per shard, here one after the other; both
     * updates have arrived, so neither waits. */
    flc_merge_rule_t rule;
    if (flc_merge_rule_parse(&rule, "fedavg", &e) != FLC_OK)
        return fail("rule", &e);
    for (uint32_t sh = 0; sh < S; sh++) {
        flc_rs_merger_cfg_t mc = {.job = job, .round = round, .shard = sh, .num_shards = S,
                                  .model_size = N, .rule = rule, .expected = clients,
                                  .n_expected = 2, .deadline_ms = 10000, .readers = 1};
        flc_rs_report_t rep = {0};
        if (flc_rs_merger_run(s, &mc, &rep, &e) != FLC_OK)
            return fail("merge", &e);
        printf("shard %u: merged %zu updates\n", (unsigned)sh, rep.participants.n);
        flc_rs_report_free(&rep);
    }

    /* 3. Pull: waits for both shards' done tokens, reads the model. */
    float model[N];
    if (flc_rs_pull(s, job, round, S, N, 10000, model, &e) != FLC_OK)
        return fail("pull", &e);
    int bad = 0;
    printf("model:");
    for (int i = 0; i < N; i++) {
        printf(" %g", model[i]);
        bad |= model[i] != want[i];
    }
    printf("\n");

    /* 4. Query: the round's history, as `flcache query history --json`. */
    flc_query_req_t q = {.job = job, .round_from = round, .round_to = round};
    if (flc_query_kind_parse("history", &q.kind) != FLC_OK) {
        fprintf(stderr, "c_client: no query kind 'history'\n");
        return 1;
    }
    char *json = NULL;
    if (flc_query_json(s, &q, &json, &e) != FLC_OK)
        return fail("query", &e);
    printf("history: %s\n", json);
    free(json);

    flc_store_close(s);
    if (bad)
        fprintf(stderr, "c_client: the pulled model is not the FedAvg of the two updates\n");
    return bad;
}
