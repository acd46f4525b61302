/* --rule SPEC for the commands that merge (simulate, train): one check that
 * refuses, as a usage error naming what is wrong, a spec the merge rules do
 * not take, a spec that cannot work with K contributors per round, and
 * options that --rule makes meaningless. */
#ifndef FLC_CLI_RULE_OPT_H
#define FLC_CLI_RULE_OPT_H

#include "cli/opt.h"

/* Checks --rule SPEC of command cmd for k contributors per round. strategy
 * is simulate's FLC_SIM_* (-1 for train); server_lr, trim and krum_f are the
 * values of simulate's shorthand options as parsed (0, 0, -1 when not
 * given). Returns 1 when the run can go on, else 0 after printing the usage
 * error. */
int flc_cli_rule_check(const flc_opt_cmd_t *cmd, const char *spec, int strategy, int k,
                       double server_lr, double trim, int krum_f);

#endif
