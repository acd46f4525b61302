/* `flcache eval-set --job J`: stores a held-out evaluation set with a job
 * written by others (a job that `flcache simulate` ran has one already), so
 * the evaluation queries (accuracy, incentives, faults, --by accuracy) can
 * run the job's updates next to the data. The set is a part of the
 * Fashion-MNIST test split, loaded as simulate loads it, with the model
 * descriptor the job's updates belong to (aggregator/query.h says the
 * stored layout). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/query.h"
#include "cli/cli.h"
#include "cli/opt.h"
#include "ml/dataset_idx.h"
#include "ml/model.h"

int flc_cmd_evalset(int argc, char **argv);

typedef struct evalset_opts {
    const char *job, *model, *data;
    int hidden, samples;
} evalset_opts_t;

static const char *const models[] = {"softmax", "mlp", NULL};

static const flc_opt_t options[] = {
    {.name = "job", .type = FLC_OPT_STR, .meta = "J", FLC_OPT_AT(evalset_opts_t, job),
     .flags = FLC_OPT_REQUIRED, .help = "the job (required)"},
    {.name = "model", .type = FLC_OPT_STR, .meta = "M", FLC_OPT_AT(evalset_opts_t, model),
     .choices = models, .def = "softmax", .help = "the model of the job's updates"},
    {.name = "hidden", .type = FLC_OPT_INT, .meta = "H", FLC_OPT_AT(evalset_opts_t, hidden),
     .imin = 0, .imax = 1 << 24, .def = "128", .help = "mlp hidden units"},
    {.name = "samples", .type = FLC_OPT_INT, .meta = "N", FLC_OPT_AT(evalset_opts_t, samples),
     .imin = 1, .imax = 10000, .def = "1000",
     .help = "the first N samples of the Fashion-MNIST test split"},
    {.name = "data", .type = FLC_OPT_STR, .meta = "DIR", FLC_OPT_AT(evalset_opts_t, data),
     .help = "the Fashion-MNIST directory (default FLCACHE_DATA_DIR, else the built-in one)"},
    {0},
};

static const flc_opt_cmd_t evalset_cmd = {
    .prog = "flcache eval-set",
    .synopsis = "--job J [--model softmax|mlp] [--hidden H] [--samples N] [--data DIR]",
    .about = "Stores a held-out evaluation set with job J (as its series J/eval): the first\n"
             "N samples of the Fashion-MNIST test split and the model the job's updates\n"
             "belong to. `flcache query accuracy|incentives|faults` and the --by accuracy\n"
             "views evaluate every client's model on it, next to the data.\n",
    .epilog = FLC_CLI_ENV_HELP "exit codes: 0 stored, 1 runtime error, 2 usage error\n",
    .opts = options,
};

int flc_cmd_evalset(int argc, char **argv)
{
    evalset_opts_t o = {.model = "softmax", .hidden = 0, .samples = 1000};
    int rc;
    if (!flc_opt_parse(&evalset_cmd, argc, argv, &o, sizeof o, &rc))
        return rc;
    flc_err_t e = {0};
    if (flc_name_check(o.job, "job", &e) != FLC_OK)
        return flc_opt_usage_error(&evalset_cmd, "%s", e.msg);
    const char *dir = o.data ? o.data : flc_config_program()->data_dir;
    flc_dataset_t *ds = NULL;
    flc_model_desc_t d;
    if (flc_data_load_fashion(dir, 0, (size_t)o.samples, &ds, &e) != FLC_OK ||
        flc_model_desc_init(&d, o.model, ds->dim, (size_t)o.hidden,
                            (size_t)ds->num_classes, &e) != FLC_OK) {
        flc_cli_error("eval-set", "%s", e.msg);
        flc_data_free(ds);
        return FLC_EXIT_RUNTIME;
    }
    flc_query_evalset_t es = {.kind = d.kind == FLC_MODEL_MLP ? FLC_QUERY_MODEL_MLP
                                                              : FLC_QUERY_MODEL_SOFTMAX,
                              .in = d.in, .hidden = d.hidden, .out = d.out, .n = ds->n,
                              .x = ds->x, .y = ds->y};
    flc_cli_conn_t c;
    if (flc_cli_connect(&c, flc_config_program(), NULL) != FLC_EXIT_OK) {
        flc_data_free(ds);
        return FLC_EXIT_RUNTIME;
    }
    int exit_code = FLC_EXIT_OK;
    if (flc_query_evalset_put(c.store, o.job, &es, &e) != FLC_OK) {
        flc_cli_error("eval-set", "%s", e.msg);
        exit_code = FLC_EXIT_RUNTIME;
    } else {
        printf("stored %zu evaluation samples (%s, %llu parameters) with job %s\n", es.n,
               o.model, (unsigned long long)flc_query_evalset_nparams(&es), o.job);
    }
    flc_cli_disconnect(&c);
    flc_data_free(ds);
    return exit_code;
}
