/* The platform choice of a command (see platform.h). A process runs one
 * command, so the parsed option is kept in this file, where the one place
 * that starts a platform (flc_cli_pool_start) reads it: the commands add
 * the option to their table and change nothing else. */
#include "cli/platform.h"

#include "cli/config.h"

static int g_platform = -1; /* -1: not given on the command line */

int flc_cli_platform_opt(const char *v, void *dest, const char **need)
{
    (void)dest;
    int p;
    flc_err_t e = {0};
    *need = "local, lambda or openwhisk";
    if (flc_platform_parse(v, &p, &e) != FLC_OK)
        return -1;
    g_platform = p;
    return 0;
}

int flc_cli_platform(void)
{
    return g_platform >= 0 ? g_platform : flc_config_program()->platform;
}
