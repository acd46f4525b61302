/* The programs' configuration: every environment variable flcache reads,
 * read once, checked, and handed down to the libraries as values.
 *
 * Only the programs (`flcache`, `flcache-fn`, tests, benchmarks) read the
 * environment; a library takes what it needs in its options. This file is
 * the one place that knows the variables' names, so the list below is the
 * whole environment interface (README "Other environment variables" and
 * docs/functions.md describe the same variables).
 *
 *   variable                      field               meaning
 *   ----------------------------- ------------------- ----------------------------------------
 *   FLCACHE_REDIS                 redis               the cache URL (redis://, unix://); unset:
 *                                                     each command starts a private server
 *   FLCACHE_CHUNK                 chunk_bytes         bytes per pipelined read/write piece
 *                                                     (k/m/g suffix; default 256k)
 *   FLCACHE_MAX_MSG               max_msg_bytes       largest accepted shard frame (default 512m)
 *   FLCACHE_WAIT_REPLICAS         wait_replicas       after each push, wait until this many
 *                                                     replicas have it (Redis WAIT; default 0)
 *   FLCACHE_WAIT_MS               wait_ms             how long a push waits for them (1000)
 *   FLCACHE_LOG                   log_level           off|error|warn|info|debug
 *   FLCACHE_COLD                  cold                cold tier URL: file:///dir, http(s)://host
 *   FLCACHE_COLD_BUCKET           cold_bucket         S3 bucket (default "flcache")
 *   FLCACHE_COLD_REGION           cold_region         S3 region (else AWS_REGION, "us-east-1")
 *   FLCACHE_POLICY                policy              caching policy: lru, window:K, workload
 *   FLCACHE_NODES                 nodes               cache nodes work can be placed next to:
 *                                                     host:port=netns:/unix.sock,... (cli/place.h;
 *                                                     `scripts/testbed.sh env` prints it)
 *   AWS_REGION                    aws_region          Lambda and S3 region
 *   AWS_DEFAULT_REGION            aws_default_region  Lambda region when AWS_REGION is unset
 *   AWS_ACCESS_KEY_ID             aws_access_key      secret: S3 and Lambda credentials
 *   AWS_SECRET_ACCESS_KEY         aws_secret_key      secret
 *   AWS_SESSION_TOKEN             aws_session_token   secret, optional
 *   FLCACHE_LAMBDA_ENDPOINT       lambda_endpoint     Lambda API base URL (LocalStack, tests)
 *   __OW_API_HOST, WSK_APIHOST    ow_apihost          OpenWhisk API host
 *   __OW_API_KEY, WSK_AUTH        ow_auth             secret: OpenWhisk "user:key"
 *   __OW_NAMESPACE, WSK_NAMESPACE ow_namespace        OpenWhisk namespace (the first
 *                                                     of each pair that is set wins)
 *   FLCACHE_DATA_DIR              data_dir            where the datasets are
 *   FLCACHE_REDIS_SERVER          redis_server        redis-server binary for private servers
 *   FLCACHE_REDIS_MALLOC_CONF     redis_malloc_conf   private servers' jemalloc options (default
 *                                                     dirty_decay_ms:5000,muzzy_decay_ms:-1:
 *                                                     freed pages kept 5 s, then given back
 *                                                     lazily; "default": jemalloc's own)
 *   TMPDIR                        tmpdir              where private servers' dirs go (/tmp)
 *   FLCACHE_FN                    fn_path             the function binary (flcache-fn)
 *   FLCACHE_POOL_MEM              pool_mem            rlimit|watch|both|off: the local pool's
 *                                                     memory enforcement, over the default
 *   FLCACHE_PLATFORM              platform            local|lambda|openwhisk: where train,
 *                                                     simulate, query and run invoke their
 *                                                     functions (--platform wins; default local)
 *   FLCACHE_FUNCTION              function            the deployed function: Lambda name or
 *                                                     ARN, OpenWhisk action (flcache-fn)
 *   FLCACHE_POOL_CPU              pool_cpu            MB per vCPU: each local instance gets
 *                                                     memory/this CPUs (1769 as on Lambda;
 *                                                     0 or unset: no quota; docs/tune.md)
 *   AWS_LAMBDA_RUNTIME_API        lambda_runtime_api  set by Lambda: flcache-fn serves events
 *   FLCACHE_LAMBDA_MAX_EVENTS     lambda_max_events   Lambda mode: exit after N events (tests)
 *   OPENBLAS_NUM_THREADS          openblas_threads    read by OpenBLAS itself; flcache-fn
 *                                                     runs SGD workers on one BLAS thread
 *                                                     when it is unset
 *
 * An empty variable counts as unset. Secrets stay in this process's memory:
 * no message ever prints them (nor the password of FLCACHE_REDIS).
 *
 * flcache-fn in OpenWhisk mode also takes the event's top-level FLCACHE_*
 * string parameters as these variables (flc_config_set): an action's bound
 * parameters are OpenWhisk's per-action environment. */
#ifndef FLC_CLI_CONFIG_H
#define FLC_CLI_CONFIG_H

#include <stddef.h>

#include "base/error.h"
#include "cache/cold.h"
#include "cache/cold_policy.h"
#include "cache/embed.h"
#include "cache/store.h"
#include "runtime/invoke_remote.h"
#include "runtime/platform.h"
#include "runtime/pool.h"

/* Strings are owned copies (flc_config_clear frees them); NULL when unset. */
typedef struct flc_config {
    char *redis;
    size_t chunk_bytes;   /* 0: unset */
    size_t max_msg_bytes; /* 0: unset */
    long wait_replicas;   /* 0: unset (pushes do not wait for replicas) */
    long wait_ms;         /* 0: unset (1000) */
    int log_level;        /* FLC_LOG_*, or -1 when unset */
    char *cold, *cold_bucket, *cold_region, *policy;
    char *nodes;
    char *aws_region, *aws_default_region;
    char *aws_access_key, *aws_secret_key, *aws_session_token;
    char *lambda_endpoint;
    char *ow_apihost, *ow_auth, *ow_namespace;
    char *data_dir;
    char *redis_server, *redis_malloc_conf, *tmpdir;
    char *fn_path;
    int pool_mem;         /* enum flc_mem_mode, or -1 when unset */
    int platform;         /* enum flc_platform (runtime/platform.h); 0 (local) when unset */
    char *function;
    long pool_cpu;        /* MB per vCPU of local instances; 0: unset (no quota) */
    char *lambda_runtime_api;
    long lambda_max_events; /* 0: unset */
    char *openblas_threads;
} flc_config_t;

/* Reads every variable of the table into *c (cleared first) and checks the
 * ones with a syntax. Returns 0, FLC_ENOMEM, or FLC_EINVAL with *e naming the
 * variable and its value ("FLCACHE_CHUNK='12q' is not a size ..."); *c is then
 * cleared. */
int flc_config_read(flc_config_t *c, flc_err_t *e);

/* Sets one variable of the table in *c as flc_config_read would have read
 * it from the environment, with the same checks (an empty or NULL value
 * unsets it; either name of a pair sets its field). Returns 0, FLC_EINVAL
 * naming the variable and its value (the field is unchanged), FLC_ENOTFOUND
 * when name is no variable of the table, FLC_ENOMEM. */
int flc_config_set(flc_config_t *c, const char *name, const char *value, flc_err_t *e);

/* Frees the strings and zeroes *c (secrets too). NULL is a no-op. */
void flc_config_clear(flc_config_t *c);

/* ---- handing the values down ------------------------------------------- */

/* The program's start: reads the configuration into the process's copy
 * (flc_config_program) and sets the log level (FLCACHE_LOG, else
 * default_level). Call first thing in main. Returns as flc_config_read. */
int flc_config_start(int default_level, flc_err_t *e);

/* The configuration read by flc_config_start (all unset before it). */
const flc_config_t *flc_config_program(void);

/* What a role opens its store with (cache/store.h): c's URL and the store
 * options of flc_config_store_opts, the cold tier's settings written to
 * *cold. Strings are borrowed from c, which must outlive every store. */
void flc_config_store_cfg(const flc_config_t *c, flc_store_cfg_t *sc, flc_cold_opts_t *cold);

/* Fills the store options from c: chunk, max message, cold URL (borrowed
 * from c) and the cold tier's settings, written to *cold and pointed at by
 * o->cold_opts. Other fields are zeroed. */
void flc_config_store_opts(const flc_config_t *c, flc_store_opts_t *o, flc_cold_opts_t *cold);

/* The caching policy a program that manages a cold tier (the simulation
 * driver) spills by: FLCACHE_POLICY, default "workload" (policies/policy.h),
 * when c has a cold tier (FLCACHE_COLD); NULL with e->code 0 when it has
 * none. NULL with FLC_EINVAL naming the spec for a bad one. The caller
 * frees it (flc_pol_free) after the stores that use it are closed. */
flc_policy_t *flc_config_policy(const flc_config_t *c, flc_err_t *e);

/* Fills the cold tier's S3 settings from c (strings borrowed from c):
 * bucket, region (FLCACHE_COLD_REGION, else AWS_REGION), keys, token. */
void flc_config_cold_opts(const flc_config_t *c, flc_cold_opts_t *o);

/* Sets the private server's binary and temp directory from c (borrowed). */
void flc_config_embed_opts(const flc_config_t *c, flc_embed_opts_t *o);

/* Applies FLCACHE_POOL_MEM, when set, over pc->mem_mode. */
void flc_config_pool_cfg(const flc_config_t *c, flc_pool_cfg_t *pc);

/* Fills the Lambda invoker's region (AWS_REGION, else AWS_DEFAULT_REGION),
 * keys, token and endpoint from c (borrowed); other fields zeroed. */
void flc_config_lambda_cfg(const flc_config_t *c, flc_lambda_cfg_t *cfg);

/* Fills the OpenWhisk invoker's host, auth and namespace from c (borrowed);
 * other fields zeroed. */
void flc_config_ow_cfg(const flc_config_t *c, flc_ow_cfg_t *cfg);

/* Fills a remote platform's settings for platform (enum flc_platform): the
 * function (FLCACHE_FUNCTION) and both invokers' settings from c
 * (borrowed); retries and backoff at their defaults. */
void flc_config_remote_cfg(const flc_config_t *c, int platform, flc_remote_cfg_t *rc);

#endif
