/* What the vector and evaluation queries learn about a round's clients
 * besides their updates: the simulation's ground truth and the weights
 * (update metadata), and which updates hold NaN or Inf and are left out of
 * a Gram matrix. Shared by query_vec.c, query_personal.c and query_eval.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/query_internal.h"

/* Ground truth of a simulation (labels["fault"]) and weights, per client.
 * Metadata that cannot be decoded refuses the query, naming the client (the
 * store's message): a silent weight of 1 for everyone would change every
 * contribution and drop precision/recall (issue 13 finding 5). A client
 * without metadata is weighted 1 and named in the note "no_metadata". */
int flc_query_client_facts(flc_store_t *s, const char *job, uint32_t round, char *const *clients,
                           size_t n, double *w, char **fault, Flcache__QueryAnswer *a,
                           flc_err_t *e)
{
    Flcache__ModelUpdate **u = NULL;
    size_t nu = 0;
    for (size_t i = 0; i < n; i++) {
        w[i] = 1;
        fault[i] = NULL;
    }
    int rc = flc_store_get_round_update_metas(s, job, round, &u, &nu);
    if (rc != FLC_OK && rc != FLC_ENOTFOUND) {
        *e = *flc_store_error(s);
        return rc;
    }
    char missing[512] = "";
    size_t len = 0, nmiss = 0;
    for (size_t i = 0; i < n; i++) {
        int found = 0;
        for (size_t k = 0; k < nu && !found; k++) {
            if (strcmp(clients[i], u[k]->client) != 0)
                continue;
            found = 1;
            w[i] = u[k]->num_samples ? (double)u[k]->num_samples : 1;
            for (size_t l = 0; l < u[k]->n_labels; l++)
                if (strcmp(u[k]->labels[l]->key, "fault") == 0)
                    fault[i] = strdup(u[k]->labels[l]->value);
        }
        if (!found && len < sizeof missing - 80)
            len += (size_t)snprintf(missing + len, sizeof missing - len, "%s%s",
                                    nmiss ? ", " : "", clients[i]);
        nmiss += !found;
    }
    flc_store_free_update_metas(u, nu);
    if (nmiss > 0 && nu > 0) { /* some have metadata, these do not: say so */
        char note[640];
        snprintf(note, sizeof note, "round %u: %zu client(s) without update metadata, weighted "
                 "1: %s%s", round, nmiss, missing, len >= sizeof missing - 80 ? ", ..." : "");
        flc_query_answer_note(a, "no_metadata", note);
    }
    return FLC_OK;
}

/* Leaves the clients whose update holds a NaN or Inf (g->bad) out of g:
 * their rows are zero, not their values, and would read as tiny updates.
 * keep[i] is the index before (for callers with per-client arrays); the
 * clients left out are named in a's note "non_finite" (a NULL: not). */
size_t flc_query_drop_non_finite(flc_query_gram_t *g, uint32_t round, size_t *keep,
                                 Flcache__QueryAnswer *a)
{
    size_t n = g->n, m = n + 1, k = 0, len = 0;
    char names[600] = "";
    for (size_t i = 0; i < n; i++) {
        int bad = (g->bad && g->bad[i]) || !isfinite(g->G[i * m + i]);
        if (!bad) {
            keep[k++] = i;
        } else if (len < sizeof names - 80) {
            len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", len ? ", " : "",
                                    g->clients[i]);
        }
    }
    if (k == n)
        return 0;
    keep[k] = n; /* the aggregate stays last */
    size_t m2 = k + 1;
    for (size_t r = 0; r < m2; r++)
        for (size_t c = 0; c < m2; c++)
            g->G[r * m2 + c] = g->G[keep[r] * m + keep[c]]; /* in place: indexes only grow */
    char **cl = g->clients;
    for (size_t i = 0, kk = 0; i < n; i++) {
        if (kk < k && keep[kk] == i)
            cl[kk++] = cl[i];
        else
            free(cl[i]);
    }
    g->n = k;
    char note[720];
    snprintf(note, sizeof note, "round %u: left out %zu update(s) holding NaN or Inf: %s%s",
             round, n - k, names, len >= sizeof names - 80 ? ", ..." : "");
    if (a != NULL)
        flc_query_answer_note(a, "non_finite", note);
    return n - k;
}
