/* A query's answer as JSON text: the one query call of the public C API
 * (include/flcache/flcache.h), so a program linking libflcache gets the
 * answers `flcache query --json` prints without protobuf-c or cJSON types. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aggregator/query.h"

int flc_query_json(flc_store_t *s, const flc_query_req_t *req, char **json, flc_err_t *e)
{
    if (json == NULL)
        return flc_err_set(e, FLC_EINVAL, "query: no place for the JSON answer");
    *json = NULL;
    Flcache__QueryAnswer *ans = NULL;
    int rc = flc_query_run(s, req, &ans, e);
    if (rc != FLC_OK)
        return rc;
    cJSON *j = flc_query_answer_json(ans);
    flcache__query_answer__free_unpacked(ans, NULL);
    /* cJSON allocates through its own hooks: the caller gets a plain
     * malloc'd copy, so free() is always the right way to release it. */
    char *text = j != NULL ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (text != NULL)
        *json = strdup(text);
    cJSON_free(text);
    if (*json == NULL)
        return flc_err_set(e, FLC_ENOMEM, "query %s of job '%s': out of memory writing JSON",
                           flc_query_kind_name(req->kind), req->job ? req->job : "");
    return FLC_OK;
}
