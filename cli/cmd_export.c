/* `flcache export`: hands a model out of the cache as a file PyTorch, NumPy
 * or any safetensors reader opens (issue 16 point 6).
 *
 * Three things can be exported, all flat float32 vectors in the model's
 * parameter layout (ml/model.h): the global model after round R (job J's
 * series J/g, the last round when --round is not given), the merged update
 * of round R (--merged: the aggregate the mergers wrote, before the server
 * step), or client C's update of round R (--client C). Every shard is read
 * (the job's schema record says how many) and written in order; the file
 * formats are written by ml/tensor_file.c, whose header says the layout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/store.h"
#include "cli/cli.h"
#include "cli/opt.h"
#include "ml/tensor_file.h"

int flc_cmd_export(int argc, char **argv);

typedef struct export_opts {
    const char *job, *client, *format, *out;
    long long round; /* -1: the last */
    int merged;
} export_opts_t;

static const flc_opt_t options[] = {
    {.name = "job", .type = FLC_OPT_STR, .meta = "J", FLC_OPT_AT(export_opts_t, job),
     .help = "the job (required)"},
    {.name = "round", .type = FLC_OPT_INT, .meta = "R", FLC_OPT_AT(export_opts_t, round),
     .imin = 0, .imax = 4294967295LL, .def = "the last round of the global model",
     .help = "the round: the global model after it (0 = the initial model), or with "
             "--merged / --client that round's merge / update"},
    {.name = "client", .type = FLC_OPT_STR, .meta = "C", FLC_OPT_AT(export_opts_t, client),
     .help = "export client C's update of --round R instead of the global model"},
    {.name = "merged", .type = FLC_OPT_FLAG, FLC_OPT_AT(export_opts_t, merged),
     .help = "export round R's merged update (the aggregate) instead of the global model"},
    {.name = "format", .type = FLC_OPT_STR, .meta = "F", FLC_OPT_AT(export_opts_t, format),
     .def = "npy", .help = "npy or safetensors"},
    {.name = "out", .type = FLC_OPT_STR, .meta = "FILE", FLC_OPT_AT(export_opts_t, out),
     .help = "the file to write (required; -o FILE is the same)"},
    {0},
};

static const flc_opt_cmd_t export_cmd = {
    .prog = "flcache export",
    .synopsis = "--job J [--round R] [--client C | --merged] --format npy|safetensors -o FILE",
    .about = "Writes a model from the cache to a file: the global model after round R, the\n"
             "merged update of round R, or one client's update of round R, as one flat\n"
             "float32 vector (the model's parameter layout) in NumPy .npy or .safetensors\n"
             "(tensor \"params\", with job, round and what in __metadata__).\n",
    .epilog = FLC_CLI_ENV_HELP "exit codes: 0 written, 1 runtime error, 2 usage error\n",
    .opts = options,
};

/* Reads every shard of one value (an update when client is set, else the
 * merged shards) of (job, round) into a new vector *v of *n floats. */
static int read_all(flc_store_t *s, const char *job, uint32_t round, const char *client,
                    float **v, size_t *n, flc_err_t *e)
{
    flc_shard_t sh = {0};
    int rc = client ? flc_store_get_update(s, job, round, 0, client, &sh, NULL, 0)
                    : flc_store_get_merged(s, job, round, 0, &sh, NULL, 0);
    if (rc == FLC_ENOTFOUND)
        return flc_err_set(e, rc, "job '%s' has no %s%s in round %u", job,
                           client ? "update of client " : "merged model",
                           client ? client : "", round);
    if (rc != FLC_OK)
        return flc_err_set(e, rc, "%s", flc_store_errstr(s));
    size_t P = (size_t)sh.model_size;
    uint32_t S = sh.num_shards;
    float *out = malloc((P ? P : 1) * sizeof *out);
    if (out == NULL || sh.offset + sh.count > P) {
        flc_shard_release(&sh);
        free(out);
        return out ? flc_err_set(e, FLC_EDATA, "shard 0 of round %u lies outside its model",
                                 round)
                   : flc_err_set(e, FLC_ENOMEM, "out of memory for %zu floats", P);
    }
    memcpy(out + sh.offset, sh.values, (size_t)sh.count * sizeof *out);
    size_t filled = (size_t)sh.count;
    flc_shard_release(&sh);
    for (uint32_t k = 1; rc == FLC_OK && k < S; k++) {
        flc_shard_t x = {0};
        rc = client ? flc_store_get_update(s, job, round, k, client, &x, NULL, 0)
                    : flc_store_get_merged(s, job, round, k, &x, NULL, 0);
        if (rc != FLC_OK) {
            rc = flc_err_set(e, rc, "shard %u of %u of round %u: %s", k, S, round,
                             flc_store_errstr(s));
        } else if (x.model_size != P || x.offset + x.count > P) {
            rc = flc_err_set(e, FLC_EDATA, "shard %u of round %u does not fit a %zu-float "
                             "model", k, round, P);
        } else {
            memcpy(out + x.offset, x.values, (size_t)x.count * sizeof *out);
            filled += (size_t)x.count;
        }
        flc_shard_release(&x);
    }
    if (rc == FLC_OK && filled != P)
        rc = flc_err_set(e, FLC_EDATA, "round %u: the shards hold %zu of %zu floats", round,
                         filled, P);
    if (rc != FLC_OK) {
        free(out);
        return rc;
    }
    *v = out;
    *n = P;
    return FLC_OK;
}

int flc_cmd_export(int argc, char **argv)
{
    export_opts_t o = {.round = -1, .format = "npy"};
    int rc;
    /* -o FILE, as compilers and numpy users write it: the parser knows
     * long options only, so it reads --out. */
    char **args = malloc((size_t)(argc + 1) * sizeof *args);
    if (args == NULL)
        return FLC_EXIT_RUNTIME;
    for (int i = 0; i < argc; i++)
        args[i] = strcmp(argv[i], "-o") == 0 && i > 0 ? (char *)"--out" : argv[i];
    args[argc] = NULL;
    int go = flc_opt_parse(&export_cmd, argc, args, &o, sizeof o, &rc);
    free(args);
    if (!go)
        return rc;
    flc_tfile_format_t fmt;
    flc_err_t e = {0};
    if (o.job == NULL || o.out == NULL)
        return flc_opt_usage_error(&export_cmd, "--job J and -o FILE are required");
    if (flc_tfile_format_parse(o.format, &fmt, &e) != FLC_OK)
        return flc_opt_usage_error(&export_cmd, "--format: %s", e.msg);
    if (o.client && o.merged)
        return flc_opt_usage_error(&export_cmd, "--client and --merged name different values: "
                                   "give one");
    if ((o.client || o.merged) && o.round < 0)
        return flc_opt_usage_error(&export_cmd, "--%s needs --round R",
                                   o.client ? "client" : "merged");
    flc_cli_conn_t c;
    if (flc_cli_connect(&c, flc_config_program(), NULL) != FLC_EXIT_OK)
        return FLC_EXIT_RUNTIME;
    char gjob[FLC_NAME_MAX + 8];
    snprintf(gjob, sizeof gjob, "%s/g", o.job);
    const char *job = o.client || o.merged ? o.job : gjob;
    uint32_t round = (uint32_t)o.round;
    rc = FLC_OK;
    if (o.round < 0) {
        uint32_t *rounds = NULL;
        size_t nr = 0;
        rc = flc_store_list_rounds(c.store, gjob, &rounds, &nr);
        if (rc == FLC_OK && nr == 0)
            rc = FLC_ENOTFOUND;
        if (rc != FLC_OK)
            flc_err_set(&e, rc, "job '%s' has no global models (job %s)", o.job, gjob);
        else
            round = rounds[nr - 1];
        free(rounds);
    }
    float *v = NULL;
    size_t n = 0;
    if (rc == FLC_OK)
        rc = read_all(c.store, job, round, o.client, &v, &n, &e);
    if (rc == FLC_OK) {
        char rbuf[16];
        snprintf(rbuf, sizeof rbuf, "%u", round);
        const char *what = o.client ? "update" : o.merged ? "merged" : "global";
        const char *meta[] = {"job", o.job, "round", rbuf, "what", what,
                              "client", o.client ? o.client : "", "layout",
                              "flat float32 parameter vector (flcache ml/model.h)"};
        rc = flc_tfile_write(o.out, fmt, v, n, "params", meta, 5, &e);
        if (rc == FLC_OK)
            printf("wrote %s: %s of job %s round %u%s%s, %zu floats (%s)\n", o.out, what, o.job,
                   round, o.client ? " client " : "", o.client ? o.client : "", n, o.format);
    }
    free(v);
    if (rc != FLC_OK)
        flc_cli_error("export", "%s", e.msg);
    flc_cli_disconnect(&c);
    return rc == FLC_OK ? FLC_EXIT_OK : FLC_EXIT_RUNTIME;
}
