/* report_load.c - reads a job for its report: rounds, their metadata, every
 * update's record, and the outlier suspicion of every client in every round
 * (the query engine's `outliers`, run next to the data round by round).
 *
 * Everything is read through the store's named operations and the query
 * API, as `flcache query` would: the report sees what a query sees, no
 * more. A round whose updates are gone (expired, spilled and unreadable)
 * leaves its heat-map column empty and the page says why. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/query.h"
#include "report/report_internal.h"

double rep_metric(const rep_data_t *d, size_t i, const char *key)
{
    const Flcache__RoundMeta *m = d->meta[i];
    for (size_t k = 0; m && k < m->n_metrics; k++)
        if (strcmp(m->metrics[k]->key, key) == 0)
            return m->metrics[k]->value;
    return NAN;
}

const char *rep_note(const rep_data_t *d, const char *key)
{
    for (size_t i = 0; i < d->nr; i++)
        for (size_t k = 0; d->meta[i] && k < d->meta[i]->n_notes; k++)
            if (strcmp(d->meta[i]->notes[k]->key, key) == 0)
                return d->meta[i]->notes[k]->value;
    return NULL;
}

double rep_hyper(const rep_data_t *d, const char *key)
{
    for (size_t i = 0; i < d->nr; i++)
        for (size_t k = 0; d->meta[i] && k < d->meta[i]->n_hyperparams; k++)
            if (strcmp(d->meta[i]->hyperparams[k]->key, key) == 0)
                return d->meta[i]->hyperparams[k]->value;
    return NAN;
}

const char *rep_label(const Flcache__ModelUpdate *u, const char *key)
{
    for (size_t i = 0; i < u->n_labels; i++)
        if (strcmp(u->labels[i]->key, key) == 0)
            return u->labels[i]->value;
    return "";
}

double rep_umetric(const Flcache__ModelUpdate *u, const char *key)
{
    for (size_t i = 0; i < u->n_metrics; i++)
        if (strcmp(u->metrics[i]->key, key) == 0)
            return u->metrics[i]->value;
    return NAN;
}

/* Client ids in the order people count them: c2 before c10. */
static int natural_cmp(const char *a, const char *b)
{
    while (*a && *b) {
        if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
            const char *a0 = a, *b0 = b;
            while (*a0 == '0')
                a0++;
            while (*b0 == '0')
                b0++;
            const char *a1 = a0, *b1 = b0;
            while (isdigit((unsigned char)*a1))
                a1++;
            while (isdigit((unsigned char)*b1))
                b1++;
            if (a1 - a0 != b1 - b0)
                return (a1 - a0) < (b1 - b0) ? -1 : 1;
            int c = strncmp(a0, b0, (size_t)(a1 - a0));
            if (c)
                return c;
            a = a1, b = b1;
            continue;
        }
        if (*a != *b)
            return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
        a++, b++;
    }
    return *a ? 1 : *b ? -1 : 0;
}

static int cmp_name(const void *x, const void *y)
{
    return natural_cmp(*(char *const *)x, *(char *const *)y);
}

long rep_client(const rep_data_t *d, const char *name)
{
    char *const *hit = bsearch(&name, d->clients, d->nc, sizeof *d->clients, cmp_name);
    return hit ? (long)(hit - d->clients) : -1;
}

/* Adds name to the (unsorted, deduplicated on sort) client list. */
static int add_client(rep_data_t *d, size_t *cap, const char *name)
{
    if (d->nc == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        char **v = realloc(d->clients, nc * sizeof *v);
        if (v == NULL)
            return -1;
        d->clients = v, *cap = nc;
    }
    return (d->clients[d->nc] = strdup(name)) ? (int)(d->nc++, 0) : -1;
}

static int collect_clients(rep_data_t *d)
{
    size_t cap = 0;
    for (size_t i = 0; i < d->nr; i++) {
        for (size_t k = 0; k < d->nups[i]; k++)
            if (add_client(d, &cap, d->ups[i][k]->client) != 0)
                return -1;
        for (size_t k = 0; d->meta[i] && k < d->meta[i]->n_expected; k++)
            if (add_client(d, &cap, d->meta[i]->expected[k]) != 0)
                return -1;
    }
    if (d->nc == 0)
        return 0;
    qsort(d->clients, d->nc, sizeof *d->clients, cmp_name);
    size_t k = 1;
    for (size_t i = 1; i < d->nc; i++) {
        if (strcmp(d->clients[i], d->clients[k - 1]) == 0)
            free(d->clients[i]);
        else
            d->clients[k++] = d->clients[i];
    }
    d->nc = k;
    d->faulty = calloc(d->nc, 1);
    if (d->faulty == NULL)
        return -1;
    for (size_t i = 0; i < d->nr; i++)
        for (size_t k2 = 0; k2 < d->nups[i]; k2++) {
            const Flcache__ModelUpdate *u = d->ups[i][k2];
            const char *f = rep_label(u, "faulty"), *fault = rep_label(u, "fault");
            if (!*f && !*fault)
                continue;
            d->truth = 1;
            long c = rep_client(d, u->client);
            if (c >= 0 && (strcmp(f, "1") == 0 || (!*f && strcmp(fault, "none") != 0)))
                d->faulty[c] = 1;
        }
    return 0;
}

/* Outlier suspicion of every client of every round with updates. */
static int load_suspicion(flc_store_t *s, const flc_report_opts_t *o, rep_data_t *d)
{
    d->susp = malloc(d->nc * d->nr * sizeof *d->susp + 1);
    if (d->susp == NULL)
        return -1;
    for (size_t i = 0; i < d->nc * d->nr; i++)
        d->susp[i] = NAN;
    for (size_t i = 0; i < d->nr; i++) {
        if (d->nups[i] == 0)
            continue;
        flc_query_req_t q = {.kind = FLC_Q_OUTLIERS, .job = d->job, .round_from = d->rounds[i],
                             .round_to = d->rounds[i], .seed = o->seed, .url = o->url,
                             .store_opts = o->store_opts, .place = o->place};
        Flcache__QueryAnswer *a = NULL;
        flc_err_t qe = {0};
        if (flc_query_run(s, &q, &a, &qe) != FLC_OK) {
            if (qe.code == FLC_ENOMEM)
                return -1;
            if (!d->susp_err[0])
                snprintf(d->susp_err, sizeof d->susp_err, "round %u: %s", d->rounds[i],
                         qe.msg);
            continue;
        }
        for (size_t r = 0; r < a->n_rows; r++) {
            long c = rep_client(d, a->rows[r]->key);
            if (c >= 0 && a->rows[r]->n_values > 1)
                d->susp[(size_t)c * d->nr + i] = a->rows[r]->values[1];
        }
        d->susp_rounds++;
        flcache__query_answer__free_unpacked(a, NULL);
    }
    return 0;
}

int rep_load(flc_store_t *s, const flc_report_opts_t *o, rep_data_t *d, flc_err_t *e)
{
    memset(d, 0, sizeof *d);
    d->job = o->job;
    int rc = flc_store_list_rounds(s, o->job, &d->rounds, &d->nr);
    if (rc == FLC_ENOTFOUND || (rc == FLC_OK && d->nr == 0))
        return flc_err_set(e, FLC_ENOTFOUND, "unknown job '%s' (no rounds in the cache)",
                           o->job);
    if (rc != FLC_OK) {
        *e = *flc_store_error(s);
        return rc;
    }
    d->x = calloc(d->nr, sizeof *d->x);
    d->meta = calloc(d->nr, sizeof *d->meta);
    d->ups = calloc(d->nr, sizeof *d->ups);
    d->nups = calloc(d->nr, sizeof *d->nups);
    if (!d->x || !d->meta || !d->ups || !d->nups)
        return flc_err_set(e, FLC_ENOMEM, "report of %s: out of memory", o->job);
    for (size_t i = 0; i < d->nr; i++) {
        d->x[i] = d->rounds[i];
        rc = flc_store_get_round_meta(s, o->job, d->rounds[i], &d->meta[i]);
        if (rc != FLC_OK && rc != FLC_ENOTFOUND) {
            *e = *flc_store_error(s);
            return rc;
        }
        rc = flc_store_get_round_update_metas(s, o->job, d->rounds[i], &d->ups[i],
                                              &d->nups[i]);
        if (rc == FLC_ENOTFOUND) {
            d->ups[i] = NULL, d->nups[i] = 0;
        } else if (rc != FLC_OK) {
            *e = *flc_store_error(s);
            return rc;
        }
    }
    d->train = rep_note(d, "steps_job") != NULL;
    if (collect_clients(d) != 0)
        return flc_err_set(e, FLC_ENOMEM, "report of %s: out of memory", o->job);
    if (!d->train && load_suspicion(s, o, d) != 0)
        return flc_err_set(e, FLC_ENOMEM, "report of %s: out of memory", o->job);
    return FLC_OK;
}

void rep_free(rep_data_t *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->nr; i++) {
        if (d->meta && d->meta[i])
            flcache__round_meta__free_unpacked(d->meta[i], NULL);
        if (d->ups && d->ups[i])
            flc_store_free_update_metas(d->ups[i], d->nups[i]);
    }
    for (size_t i = 0; i < d->nc; i++)
        free(d->clients[i]);
    free(d->clients), free(d->faulty), free(d->susp), free(d->rounds), free(d->x);
    free(d->meta), free(d->ups), free(d->nups);
    memset(d, 0, sizeof *d);
}
