/* --platform local|lambda|openwhisk for the commands that run functions
 * (train, simulate, query, run): one table entry each command adds to its
 * options, and the choice flc_cli_pool_start reads, so a command starts its
 * platform with the same one call whatever it is. The option wins over
 * FLCACHE_PLATFORM; the default is local. */
#ifndef FLC_CLI_PLATFORM_H
#define FLC_CLI_PLATFORM_H

#include "cli/opt.h"
#include "runtime/platform.h"

/* The option's parser (FLC_OPT_CUSTOM): records the platform. */
int flc_cli_platform_opt(const char *v, void *dest, const char **need);

#define FLC_CLI_PLATFORM_OPTION                                                             \
    {.name = "platform", .type = FLC_OPT_CUSTOM, .meta = "P",                               \
     .custom = flc_cli_platform_opt, .def = "$FLCACHE_PLATFORM, else local",                \
     .help = "where the functions run: local (processes here), lambda (AWS Lambda: "        \
             "AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; FLCACHE_LAMBDA_ENDPOINT) " \
             "or openwhisk (WSK_APIHOST, WSK_AUTH). The function is FLCACHE_FUNCTION "      \
             "(default flcache-fn), deployed by `flcache package` and "                      \
             "scripts/deploy-*.sh; it must reach FLCACHE_REDIS"}

/* The platform of this run: --platform, else FLCACHE_PLATFORM, else local. */
int flc_cli_platform(void);

/* `flcache query` on a remote platform: q as one `query` function event
 * (the engine runs there, next to the data), the answer printed as the
 * function's JSON. want_out (--out): refused, the model does not travel
 * back through a function's result. Returns an FLC_EXIT_* code. */
struct flc_query_req;
int flc_cli_query_remote(const flc_cli_conn_t *c, const struct flc_query_req *q, int want_out);

#endif
