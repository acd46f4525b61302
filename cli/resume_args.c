/* The arguments a resumed run re-reads (see resume_args.h). */
#include "cli/resume_args.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

int flc_cli_resume_argv(const char *stored, int argc, char **argv, int *argc2, char ***argv2,
                        void **keep)
{
    cJSON *a = stored[0] ? cJSON_Parse(stored) : cJSON_CreateArray();
    int n = cJSON_GetArraySize(a);
    char **v = calloc((size_t)(argc + n + 1), sizeof *v);
    *argv2 = NULL;
    *keep = NULL;
    if (!cJSON_IsArray(a) || v == NULL) {
        cJSON_Delete(a);
        free(v);
        return -1;
    }
    int k = 0;
    v[k++] = argv[0];
    const cJSON *it;
    cJSON_ArrayForEach(it, a) if (cJSON_IsString(it)) v[k++] = it->valuestring;
    for (int i = 1; i < argc; i++)
        v[k++] = argv[i];
    *argc2 = k;
    *argv2 = v;
    *keep = a;
    return 0;
}

void flc_cli_resume_free(char **argv2, void *keep)
{
    free(argv2);
    cJSON_Delete(keep);
}

char *flc_cli_resume_json(int argc, char **argv)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 1; a && i < argc; i++) {
        if (strcmp(argv[i], "--resume") == 0) {
            i++;
            continue;
        }
        if (strncmp(argv[i], "--resume=", 9) != 0)
            cJSON_AddItemToArray(a, cJSON_CreateString(argv[i]));
    }
    char *j = a ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return j;
}
