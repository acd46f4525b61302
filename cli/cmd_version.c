/* `flcache version`: our version and the versions of what we are built on. */
#include <stdio.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#include "cache/store.h"
#include "cli/cli.h"
#include "cli/opt.h"

#ifndef FLCACHE_VERSION
#define FLCACHE_VERSION "0.1.0"
#endif

static const flc_opt_t options[] = {{0}};

static const flc_opt_cmd_t version_cmd = {
    .prog = "flcache version",
    .about = "Prints the version of flcache and of the libraries it is built on.\n",
    .opts = options,
};

int flc_cmd_version(int argc, char **argv)
{
    int rc;
    if (!flc_opt_parse(&version_cmd, argc, argv, NULL, 0, &rc))
        return rc;
    printf("flcache %s\n", FLCACHE_VERSION);
    printf("  %s, protobuf-c %s, libuv %s, cJSON %s, %s\n", flc_store_client_version(),
           protobuf_c_version(), uv_version_string(), cJSON_Version(), curl_version());
    return FLC_EXIT_OK;
}
