/* `flcache version`: our version and the versions of what we are built on. */
#include <stdio.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#include "cli/cli.h"

#ifndef FLCACHE_VERSION
#define FLCACHE_VERSION "0.1.0"
#endif

int flc_cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("flcache %s\n", FLCACHE_VERSION);
    printf("  hiredis %d.%d.%d, protobuf-c %s, libuv %s, cJSON %s, %s\n", HIREDIS_MAJOR,
           HIREDIS_MINOR, HIREDIS_PATCH, protobuf_c_version(), uv_version_string(),
           cJSON_Version(), curl_version());
    return FLC_EXIT_OK;
}
