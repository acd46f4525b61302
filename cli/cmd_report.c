/* `flcache report --job J [-o FILE.html]`: one self-contained HTML page
 * about a job, made from what the cache holds (report/report.h). The page
 * is written to FILE (default J.html; "-" for stdout) through a temporary
 * file renamed into place, so an interrupted run never leaves half a page
 * where a good one was. Also the one line `train` and `simulate` print at
 * their end, the command that makes their job's report. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/opt.h"
#include "cli/place.h"
#include "report/report.h"

typedef struct report_opts {
    const char *job, *out;
    long long round; /* -1: the last round with updates */
    int k, seed;
} report_opts_t;

static const flc_opt_t options[] = {
    {.name = "job", .type = FLC_OPT_STR, .meta = "J", FLC_OPT_AT(report_opts_t, job),
     .flags = FLC_OPT_REQUIRED, .help = "the job (required)"},
    {.name = "out", .type = FLC_OPT_STR, .meta = "FILE", FLC_OPT_AT(report_opts_t, out),
     .def = "J.html", .help = "where to write the page (also -o FILE; \"-\": stdout)"},
    {.name = "round", .type = FLC_OPT_INT, .meta = "R", FLC_OPT_AT(report_opts_t, round),
     .imin = 0, .imax = 4294967295LL, .def = "the last round with updates",
     .help = "the round of the clients' map"},
    {.name = "k", .type = FLC_OPT_INT, .meta = "K", FLC_OPT_AT(report_opts_t, k), .imin = 1,
     .imax = 8, .help = "clusters on the map"},
    {.name = "seed", .type = FLC_OPT_INT, .meta = "S", FLC_OPT_AT(report_opts_t, seed),
     .imin = 0, .imax = 100000000, .help = "k-means++ seed of the map's clusters"},
    {0},
};

static const flc_opt_cmd_t report_cmd = {
    .prog = "flcache report",
    .synopsis = "--job J [-o FILE.html] [--round R] [--k K]",
    .about =
        "Writes one HTML page about a job stored in the cache: inline SVG plots, no\n"
        "script, nothing loaded from the network; open it in any browser or print it.\n"
        "A simulated job gets accuracy and loss, participation, round time, cost,\n"
        "outlier suspicion per client and round, a map of one round's clients\n"
        "(MDS of their updates, k-means clusters) and the contribution ranking; a\n"
        "training job gets loss, accuracy, step time, compute vs communication and\n"
        "cost per epoch. Vector sections run queries next to the data.\n",
    .epilog = "The cache is FLCACHE_REDIS (see `flcache --help`): the one the job ran on.\n"
              "docs/report.md shows a page and says how to read each section.\n",
    .opts = options,
};

void flc_cli_report_hint(FILE *f, const flc_cli_conn_t *c, const char *job)
{
    if (c == NULL || c->embedded != NULL || job == NULL)
        return; /* a private cache is gone with the run: nothing to report from */
    fprintf(f, "report: flcache report --job %s -o %s.html\n", job, job);
}

/* Writes text to path through path.tmp.<pid> and a rename. */
static int write_file(const char *path, const char *text, size_t len)
{
    if (strcmp(path, "-") == 0)
        return fwrite(text, 1, len, stdout) == len && fflush(stdout) == 0 ? 0 : -1;
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return -1;
    FILE *fp = fopen(tmp, "wb");
    if (fp == NULL)
        return -1;
    int ok = fwrite(text, 1, len, fp) == len;
    ok = fclose(fp) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

int flc_cmd_report(int argc, char **argv)
{
    /* -o FILE: the short form the issue promises; the option table is long
     * options only, so it is spelled out before parsing. */
    char **av = malloc(((size_t)argc + 1) * sizeof *av);
    if (av == NULL)
        return FLC_EXIT_RUNTIME;
    for (int i = 0; i < argc; i++)
        av[i] = strcmp(argv[i], "-o") == 0 ? "--out" : argv[i];
    av[argc] = NULL;
    report_opts_t o = {.round = -1, .k = 2, .seed = 1};
    int rc;
    int go = flc_opt_parse(&report_cmd, argc, av, &o, sizeof o, &rc);
    free(av);
    if (!go)
        return rc;
    char defout[80];
    if (o.out == NULL) {
        snprintf(defout, sizeof defout, "%s.html", o.job);
        o.out = defout;
    }
    flc_cli_nodes_t *nodes = NULL;
    flc_err_t ne = {0};
    if (flc_cli_nodes_parse(flc_config_program()->nodes, &nodes, &ne) != FLC_OK) {
        flc_cli_error("report", "%s", ne.msg);
        return FLC_EXIT_RUNTIME;
    }
    flc_cli_conn_t c;
    if (flc_cli_connect(&c, flc_config_program(), NULL) != FLC_EXIT_OK) {
        flc_cli_nodes_free(nodes);
        return FLC_EXIT_RUNTIME;
    }
    flc_store_opts_t so;
    flc_cold_opts_t cold;
    flc_config_store_opts(flc_config_program(), &so, &cold);
    char cmdline[300];
    snprintf(cmdline, sizeof cmdline, "flcache report --job %s -o %s", o.job, o.out);
    flc_report_opts_t ro = {.job = o.job, .have_round = o.round >= 0,
                            .round = o.round >= 0 ? (uint32_t)o.round : 0, .k = (unsigned)o.k,
                            .seed = (unsigned)o.seed, .url = c.url, .store_opts = &so,
                            .place = flc_cli_place(nodes), .command = cmdline};
    flc_html_t page = {0};
    flc_err_t e = {0};
    int exit_code = FLC_EXIT_OK;
    if (flc_report_write(c.store, &ro, &page, &e) != FLC_OK) {
        if (e.code == FLC_ENOTFOUND && c.embedded)
            flc_cli_error("report", "%s: FLCACHE_REDIS is unset, so this run started an "
                          "empty private cache; set it to the cache the job ran on",
                          e.msg);
        else
            flc_cli_error("report", "%s", e.msg);
        exit_code = FLC_EXIT_RUNTIME;
    } else if (write_file(o.out, page.p, page.len) != 0) {
        flc_cli_error("report", "cannot write %s", o.out);
        exit_code = FLC_EXIT_RUNTIME;
    } else if (strcmp(o.out, "-") != 0) {
        fprintf(stderr, "wrote %s (%.1f KB)\n", o.out, (double)page.len / 1024);
    }
    flc_html_free(&page);
    flc_cli_disconnect(&c);
    flc_cli_nodes_free(nodes);
    return exit_code;
}
