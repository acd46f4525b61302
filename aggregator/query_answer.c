/* Building query answers (tables) and printing them as JSON. Everything in
 * an answer is malloc'd, so flcache__query_answer__free_unpacked frees it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aggregator/query_internal.h"

Flcache__QueryAnswer *flc_query_answer_new(const char *job, const char *kind,
                                           const char *const *num, size_t nnum,
                                           const char *const *text, size_t ntext)
{
    Flcache__QueryAnswer *a = malloc(sizeof *a);
    if (a == NULL)
        return NULL;
    flcache__query_answer__init(a);
    a->job = strdup(job);
    a->kind = strdup(kind);
    a->n_columns = nnum + ntext;
    a->columns = calloc(a->n_columns + 1, sizeof *a->columns);
    a->num_numeric = (uint32_t)nnum;
    a->error = strdup("");
    if (a->job == NULL || a->kind == NULL || a->columns == NULL || a->error == NULL) {
        a->n_columns = 0;
        flcache__query_answer__free_unpacked(a, NULL);
        return NULL;
    }
    for (size_t i = 0; i < nnum; i++)
        a->columns[i] = strdup(num[i]);
    for (size_t i = 0; i < ntext; i++)
        a->columns[nnum + i] = strdup(text[i]);
    return a;
}

int flc_query_answer_row(Flcache__QueryAnswer *a, const char *key, const double *vals,
                         const char *const *text)
{
    size_t nt = a->n_columns - a->num_numeric;
    Flcache__QueryRow *r = malloc(sizeof *r);
    Flcache__QueryRow **rows = realloc(a->rows, (a->n_rows + 1) * sizeof *rows);
    if (r == NULL || rows == NULL) {
        free(r);
        if (rows)
            a->rows = rows;
        return FLC_ENOMEM;
    }
    a->rows = rows;
    flcache__query_row__init(r);
    r->key = strdup(key);
    r->n_values = a->num_numeric;
    r->values = malloc((a->num_numeric + 1) * sizeof *r->values);
    r->n_text = nt;
    r->text = calloc(nt + 1, sizeof *r->text);
    if (r->values)
        memcpy(r->values, vals, a->num_numeric * sizeof *vals);
    for (size_t i = 0; r->text && i < nt; i++)
        r->text[i] = strdup(text && text[i] ? text[i] : "");
    a->rows[a->n_rows++] = r;
    return r->key && r->values && r->text ? FLC_OK : FLC_ENOMEM;
}

static int map_add(size_t *n, void ***items, void *entry)
{
    void **v = realloc(*items, (*n + 1) * sizeof *v);
    if (v == NULL)
        return FLC_ENOMEM;
    v[(*n)++] = entry;
    *items = v;
    return FLC_OK;
}

void flc_query_answer_summary(Flcache__QueryAnswer *a, const char *key, double value)
{
    Flcache__QueryAnswer__SummaryEntry *en = malloc(sizeof *en);
    if (en == NULL)
        return;
    flcache__query_answer__summary_entry__init(en);
    en->key = strdup(key);
    en->value = value;
    if (map_add(&a->n_summary, (void ***)&a->summary, en) != FLC_OK) {
        free(en->key);
        free(en);
    }
}

void flc_query_answer_note(Flcache__QueryAnswer *a, const char *key, const char *text)
{
    /* The same note twice (a round's numbers checked, found stale and
     * computed again both read the clients' metadata) is said once. */
    for (size_t i = 0; i < a->n_notes; i++)
        if (strcmp(a->notes[i]->key, key) == 0 && strcmp(a->notes[i]->value, text) == 0)
            return;
    Flcache__QueryAnswer__NotesEntry *en = malloc(sizeof *en);
    if (en == NULL)
        return;
    flcache__query_answer__notes_entry__init(en);
    en->key = strdup(key);
    en->value = strdup(text);
    if (map_add(&a->n_notes, (void ***)&a->notes, en) != FLC_OK) {
        free(en->key), free(en->value);
        free(en);
    }
}

cJSON *flc_query_answer_json(const Flcache__QueryAnswer *a)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "job", a->job);
    cJSON_AddStringToObject(o, "kind", a->kind);
    cJSON *cols = cJSON_AddArrayToObject(o, "columns");
    for (size_t i = 0; i < a->n_columns; i++)
        cJSON_AddItemToArray(cols, cJSON_CreateString(a->columns[i]));
    cJSON *rows = cJSON_AddArrayToObject(o, "rows");
    for (size_t i = 0; i < a->n_rows; i++) {
        const Flcache__QueryRow *r = a->rows[i];
        cJSON *ro = cJSON_CreateObject();
        cJSON_AddStringToObject(ro, "key", r->key);
        for (size_t c = 0; c < r->n_values && c < a->num_numeric; c++)
            cJSON_AddNumberToObject(ro, a->columns[c], r->values[c]);
        for (size_t c = 0; c < r->n_text && a->num_numeric + c < a->n_columns; c++)
            cJSON_AddStringToObject(ro, a->columns[a->num_numeric + c], r->text[c]);
        cJSON_AddItemToArray(rows, ro);
    }
    cJSON *sum = cJSON_AddObjectToObject(o, "summary");
    for (size_t i = 0; i < a->n_summary; i++)
        cJSON_AddNumberToObject(sum, a->summary[i]->key, a->summary[i]->value);
    cJSON *notes = cJSON_AddObjectToObject(o, "notes");
    for (size_t i = 0; i < a->n_notes; i++)
        cJSON_AddStringToObject(notes, a->notes[i]->key, a->notes[i]->value);
    cJSON_AddNumberToObject(o, "bytes_read", (double)a->bytes_read);
    cJSON_AddNumberToObject(o, "bytes_moved", (double)a->bytes_moved);
    cJSON_AddNumberToObject(o, "elapsed_ms", a->elapsed_ms);
    return o;
}
