/* The simulation driver's side of a Redis Cluster failover (issue 12 point
 * 5): no update a client was told is stored may vanish from a round
 * without its name.
 *
 * Redis replicates asynchronously, so a master killed in the middle of a
 * round can take along updates it had acknowledged: the client function
 * returned ok, and the promoted replica never had the update. Only the
 * driver knows which clients were told "stored" (their invocations
 * returned ok), so the driver checks, once every invoked client has
 * returned and before the mergers are woken (sim.c, run_round):
 *   1. which acknowledged clients' updates every shard's node still holds
 *      (one pipelined EXISTS per shard and client, all nodes at once; on a
 *      cluster only, always, since a failover can have happened on a node
 *      this process was not talking to);
 *   2. the ones missing anywhere are invoked again with the same event
 *      (deterministic: the same update; no straggler delay this time), and
 *      so are clients whose invocation failed when a failover was seen;
 *      the mergers are still waiting, and a repeated arrival counts once;
 *   3. what is still missing after that is named: the round fails
 *      ("lost in a failover and not resent: c3, c7").
 * After the mergers closed, an acknowledged client that a merger lists as
 * missing was lost after the check (a master killed during the close): the
 * round fails naming it too. The resent clients are named in the round's
 * result and its RoundMeta notes ("resent_after_failover"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/log.h"
#include "cache/store_failover.h"
#include "clients/sim_internal.h"

/* 1 when client x's update was acknowledged: its function returned ok and
 * did not find the round closed. */
static int acked(const sim_client_t *x, const flc_sim_inv_t *inv)
{
    if (x->inv < 0 || !inv[x->inv].ok)
        return 0;
    const char *st = cJSON_GetStringValue(cJSON_GetObjectItem(inv[x->inv].result, "status"));
    return st == NULL || strcmp(st, "late") != 0;
}

/* 1 when name is one of the comma-separated names of list. */
static int in_names(const char *list, const char *name)
{
    size_t l = strlen(name);
    for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 2 : NULL)
        if (strncmp(p, name, l) == 0 && (p[l] == ',' || p[l] == '\0'))
            return 1;
    return 0;
}

static void add_name(char *list, size_t cap, const char *name)
{
    size_t l = strlen(list);
    if (l + strlen(name) + 8 < cap)
        snprintf(list + l, cap - l, "%s%s", l ? ", " : "", name);
    else if (l + 4 < cap && strcmp(list + l - 3, "...") != 0)
        snprintf(list + l, cap - l, "...");
}

/* lost[i] = 1 for every acknowledged client i whose update some shard's
 * node does not hold. *nlost counts them. */
static int find_lost(flc_store_t *s, const flc_sim_cfg_t *c, uint32_t round, uint32_t S,
                     const sim_client_t *cl, size_t k, const flc_sim_inv_t *inv,
                     unsigned char *lost, size_t *nlost, flc_err_t *e)
{
    const char **names = malloc((k ? k : 1) * sizeof *names);
    size_t *idx = malloc((k ? k : 1) * sizeof *idx);
    unsigned char *present = malloc(k ? k : 1);
    int rc = names && idx && present ? FLC_OK : flc_err_set(e, FLC_ENOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; rc == FLC_OK && i < k; i++) {
        lost[i] = 0;
        if (acked(&cl[i], inv))
            names[n] = cl[i].name, idx[n++] = i;
    }
    for (uint32_t sh = 0; rc == FLC_OK && sh < S && n > 0; sh++) {
        if (flc_store_updates_present(s, c->job, round, sh, names, n, present) != FLC_OK) {
            rc = flc_err_set(e, flc_store_error(s)->code, "round %u: checking the updates of "
                             "shard %u after the clients returned: %s", round, sh,
                             flc_store_errstr(s));
            break;
        }
        for (size_t j = 0; j < n; j++)
            if (!present[j])
                lost[idx[j]] = 1;
    }
    *nlost = 0;
    for (size_t i = 0; rc == FLC_OK && i < k; i++)
        *nlost += lost[i];
    free(names), free(idx), free(present);
    return rc;
}

int sim_resend_lost(flc_store_t *s, const flc_sim_cfg_t *c, uint32_t round, uint32_t S,
                    sim_client_t *cl, size_t k, cJSON *const *evs, flc_sim_inv_t *inv,
                    uint64_t failovers0, flc_sim_round_t *out, flc_err_t *e)
{
    if (!flc_store_fails_over(s))
        return FLC_OK;
    unsigned char *lost = calloc(k ? k : 1, 1);
    if (lost == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    size_t nlost = 0;
    int rc = find_lost(s, c, round, S, cl, k, inv, lost, &nlost, e);
    /* A failover seen (updates gone, or this store's connections): clients
     * whose invocation failed are given another go as well. */
    int failover = nlost > 0 || flc_store_failovers(s) != failovers0;
    for (size_t i = 0; rc == FLC_OK && failover && i < k; i++)
        if (cl[i].inv >= 0 && !inv[cl[i].inv].ok && !lost[i]) {
            lost[i] = 1;
            nlost++;
        }
    cJSON **again = calloc(nlost ? nlost : 1, sizeof *again);
    flc_sim_inv_t *res = calloc(nlost ? nlost : 1, sizeof *res);
    size_t *slot = calloc(nlost ? nlost : 1, sizeof *slot);
    if (rc == FLC_OK && (again == NULL || res == NULL || slot == NULL))
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; rc == FLC_OK && i < k; i++) {
        if (!lost[i])
            continue;
        /* The same event: the same update (the client's training and noise
         * are seeded by job, round and client); its straggler delay was
         * waited out already. */
        again[n] = cJSON_Duplicate(evs[cl[i].inv], 1);
        if (again[n] == NULL) {
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
            break;
        }
        cJSON_ReplaceItemInObject(again[n], "delay_ms", cJSON_CreateNumber(0));
        slot[n++] = i;
        add_name(out->resent_names, sizeof out->resent_names, cl[i].name);
    }
    if (rc == FLC_OK && n > 0) {
        FLC_WARN("round %u: %zu update(s) lost in a failover or cut by it, sent again: %s",
                 round, n, out->resent_names);
        rc = c->invoke(c->invoke_user, again, n, res, e);
        out->resent = n;
        for (size_t j = 0; rc == FLC_OK && j < n; j++) {
            flc_sim_inv_t *o = &inv[cl[slot[j]].inv];
            cJSON_Delete(o->result);
            *o = res[j]; /* the record tells the resent invocation's outcome */
            res[j].result = NULL;
        }
    }
    /* What is still missing is named: the round fails. */
    size_t still = 0;
    if (rc == FLC_OK && n > 0)
        rc = find_lost(s, c, round, S, cl, k, inv, lost, &still, e);
    if (rc == FLC_OK && still > 0) {
        char names[200] = "";
        for (size_t i = 0; i < k; i++)
            if (lost[i])
                add_name(names, sizeof names, cl[i].name);
        snprintf(out->lost_names, sizeof out->lost_names, "%s", names);
        out->lost = still;
    }
    for (size_t j = 0; j < n; j++) {
        cJSON_Delete(again[j]);
        cJSON_Delete(res[j].result);
    }
    free(again), free(res), free(slot), free(lost);
    return rc;
}

void sim_name_lost(const sim_client_t *cl, size_t k, const flc_sim_inv_t *inv,
                   const flc_rs_report_t *const *reps, uint32_t S, flc_sim_round_t *out)
{
    for (size_t i = 0; i < k; i++) {
        if (!acked(&cl[i], inv) || in_names(out->lost_names, cl[i].name))
            continue;
        int missed = 0;
        for (uint32_t sh = 0; sh < S && !missed; sh++)
            for (size_t j = 0; reps[sh] && j < reps[sh]->missing.n; j++)
                missed |= strcmp(reps[sh]->missing.items[j], cl[i].name) == 0;
        if (missed) {
            add_name(out->lost_names, sizeof out->lost_names, cl[i].name);
            out->lost++;
        }
    }
}
