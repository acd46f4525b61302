/* --rule SPEC (issue 16 point 4): every rule string of the README's table on
 * the command line. The spec is parsed by the aggregator's own parser
 * (flc_merge_rule_parse), so the CLI, the aggregator event and the library
 * accept the same strings and refuse the same typos; what this file adds is
 * what only the command knows: how many updates a round has (Krum and Bulyan
 * need enough of them) and which shorthand options the spec replaces. */
#include "cli/rule_opt.h"

#include "aggregator/merge.h"
#include "clients/sim.h"

int flc_cli_rule_check(const flc_opt_cmd_t *cmd, const char *spec, int strategy, int k,
                       double server_lr, double trim, int krum_f)
{
    flc_merge_rule_t r;
    flc_err_t e = {0};
    if (flc_merge_rule_parse(&r, spec, &e) != FLC_OK) {
        flc_opt_usage_error(cmd, "--rule: %s", flc_err_msg(&e));
        return 0;
    }
    /* --strategy still picks how simulated clients train; naming another
     * merge rule there as well would leave one of the two ignored. */
    if (strategy >= 0 && strategy != FLC_SIM_FEDAVG && strategy != FLC_SIM_FEDPROX) {
        flc_opt_usage_error(cmd, "--strategy %s and --rule %s both name the merge rule: keep "
                            "one (with --rule, --strategy may only be fedavg or fedprox)",
                            flc_sim_strategy_name(strategy), spec);
        return 0;
    }
    const char *lost = server_lr != 0 ? "--server-lr" : trim != 0 ? "--trim"
                       : krum_f >= 0  ? "--krum-f" : NULL;
    if (lost != NULL) {
        flc_opt_usage_error(cmd, "%s sets a parameter of --strategy's rule; with --rule put "
                            "it in the spec (server_lr=, trim=, f=)", lost);
        return 0;
    }
    int f;
    size_t m, theta, beta;
    int rc = FLC_OK;
    if (r.kind == FLC_MERGE_BULYAN)
        rc = flc_merge_bulyan_params(&r, (size_t)k, &f, &theta, &beta, &e);
    else if (flc_merge_rule_selects(&r))
        rc = flc_merge_krum_params(&r, (size_t)k, &f, &m, &e);
    if (rc != FLC_OK) {
        flc_opt_usage_error(cmd, "--rule %s with %d updates per round: %s", spec, k,
                            flc_err_msg(&e));
        return 0;
    }
    return 1;
}
