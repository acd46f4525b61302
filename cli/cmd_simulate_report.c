/* What `flcache simulate` prints while and after it runs: a progress line
 * per round (or version) on stderr with an ETA, and the final table on
 * stdout, by round for the synchronous mode and by version, with simulated
 * time and staleness, for the async modes (--json prints the drivers' own
 * JSON instead, in cmd_simulate.c). */
#include <math.h>
#include <stdio.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cmd_simulate.h"
#include "clients/client.h"
#include "runtime/pool_proc.h"

static void fmt_dur(char *out, size_t len, double s)
{
    if (s < 0 || !isfinite(s))
        snprintf(out, len, "?");
    else if (s < 60)
        snprintf(out, len, "%.0fs", s);
    else if (s < 3600)
        snprintf(out, len, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else
        snprintf(out, len, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

void flc_simulate_progress(const flc_sim_round_t *r, int rounds, double elapsed, void *user)
{
    const flc_simulate_opts_t *o = user;
    if (!r->merged)
        fprintf(stderr, "flcache simulate: round %u was not merged (%s); the global model "
                "is unchanged\n", r->round, r->merge_error[0] ? r->merge_error : "no update");
    if (o->quiet)
        return;
    char eta[32];
    /* The first round pays the cold starts: estimate from the later ones. */
    static double first_s = -1;
    if (r->round == 1)
        first_s = elapsed;
    double per = r->round > 1 && first_s >= 0 ? (elapsed - first_s) / (r->round - 1)
                                              : elapsed / r->round;
    fmt_dur(eta, sizeof eta, per * (rounds - (int)r->round));
    fprintf(stderr, "%s %*u/%d  acc %6.2f%%  loss %.4f  participants %zu/%zu",
            o->a.mode != FLC_ASYNC_MODE_SYNC ? "version" : "round", rounds >= 100 ? 3 : 2,
            r->round, rounds, r->accuracy * 100, r->loss, r->participants, r->sampled);
    if (r->missing || r->rejected)
        fprintf(stderr, " (missing %zu, rejected %zu)", r->missing, r->rejected);
    fprintf(stderr, "  %.2fs  ETA %s\n", r->round_ms / 1000, eta);
}

/* Peak resident set of this process (driver and mergers) in MiB. */
double flc_simulate_peak_mb(void)
{
    return (double)flc_proc_status_kb(getpid(), "VmHWM") / 1024;
}

void flc_simulate_table(const flc_simulate_opts_t *o, const flc_sim_result_t *r)
{
    const flc_sim_cfg_t *c = &o->c;
    char buf[32];
    printf("job %s: %s, %s (%zu parameters), N=%d K=%d alpha=%g E=%d, %zu clients with data",
           c->job, c->rule ? c->rule : flc_sim_strategy_name(c->strategy), c->model,
           r->nparams, c->clients,
           c->per_round, c->alpha, c->local_epochs, r->eligible);
    if (r->faulty_clients)
        printf(", %zu faulty (%s)", r->faulty_clients, flc_client_fault_name(c->fault));
    printf("\n\n%6s %8s %8s %8s %6s %6s %6s %6s %6s %9s %10s %11s\n", "round", "acc%", "loss",
           "train", "part", "miss", "rej", "late", "drop", "round_ms", "MiB", "cost_usd");
    size_t step = r->nrounds > 25 ? (r->nrounds + 19) / 20 : 1;
    printf("%6s %8.2f %8.4f %8s %6s %6s %6s %6s %6s %9s %10s %11s\n", "init",
           r->init_accuracy * 100, r->init_loss, "-", "-", "-", "-", "-", "-", "-", "-", "-");
    for (size_t i = 0; i < r->nrounds; i++) {
        const flc_sim_round_t *x = &r->rounds[i];
        if (i % step != step - 1 && i + 1 != r->nrounds && i != 0)
            continue;
        char train[16] = "-";
        if (x->train_loss >= 0)
            snprintf(train, sizeof train, "%.4f", x->train_loss);
        printf("%6u %8.2f %8.4f %8s %6zu %6zu %6zu %6zu %6zu %9.0f %10.2f %11.6f\n", x->round,
               x->accuracy * 100, x->loss, train, x->participants, x->missing,
               x->rejected, x->late, x->dropped, x->round_ms, (double)x->bytes / 1048576.0,
               x->cost_usd);
    }
    double best = -1;
    size_t best_r = 0;
    for (size_t i = 0; i < r->nrounds; i++)
        if (r->rounds[i].accuracy > best)
            best = r->rounds[i].accuracy, best_r = r->rounds[i].round;
    flc_cli_bytes(buf, sizeof buf, (double)r->bytes);
    printf("\nfinal accuracy %.2f%% (best %.2f%% at round %zu), %zu rounds in %.1f s, %s "
           "moved through the cache, cost $%.6f\n",
           r->nrounds ? r->rounds[r->nrounds - 1].accuracy * 100 : 0, best * 100, best_r,
           r->nrounds, r->wall_ms / 1000, buf, r->cost_usd);
    printf("driver peak memory %.1f MiB (%s)\n", flc_simulate_peak_mb(),
           o->inproc ? "with the in-process clients" : "mergers included, client functions not");
    printf("history: rounds 1..%zu of job %s (RoundMeta, ModelUpdate per client, updates); "
           "global models: job %s/g\n", r->resumed_after + r->nrounds, c->job, c->job);
}

/* The async modes' table: by version, with simulated time and staleness,
 * and when the model first reached 75% test accuracy (docs/simulate.md). */
void flc_simulate_async_table(const flc_simulate_opts_t *o, const flc_async_result_t *ar)
{
    const flc_sim_result_t *r = &ar->sim;
    const flc_sim_cfg_t *c = &o->c;
    printf("job %s: %s %s, %s (%zu parameters), N=%d buffer=%zu alpha=%g E=%d, staleness %s\n\n",
           c->job, flc_async_mode_name(o->a.mode), c->rule ? c->rule
           : flc_sim_strategy_name(c->strategy), c->model, r->nparams, c->clients,
           o->a.buffer ? o->a.buffer : (size_t)c->per_round, c->alpha, c->local_epochs,
           o->a.staleness ? o->a.staleness : "constant");
    printf("%7s %8s %8s %6s %6s %8s %6s %10s %9s\n", "version", "acc%", "loss", "part", "rej",
           "stale", "max", "sim_s", "wall_ms");
    size_t step = r->nrounds > 25 ? (r->nrounds + 19) / 20 : 1;
    printf("%7s %8.2f %8.4f\n", "init", r->init_accuracy * 100, r->init_loss);
    long hit = -1;
    for (size_t i = 0; i < r->nrounds; i++) {
        const flc_sim_round_t *x = &r->rounds[i];
        const flc_async_version_t *v = &ar->versions[i];
        if (hit < 0 && x->accuracy >= 0.75)
            hit = (long)i;
        if (i % step != step - 1 && i + 1 != r->nrounds && i != 0 && (long)i != hit)
            continue;
        printf("%7u %8.2f %8.4f %6zu %6zu %8.2f %6u %10.1f %9.0f\n", x->round,
               x->accuracy * 100, x->loss, x->participants, x->rejected, v->staleness_mean,
               v->staleness_max, v->sim_ms / 1000, x->round_ms);
    }
    double best = -1;
    for (size_t i = 0; i < r->nrounds; i++)
        best = r->rounds[i].accuracy > best ? r->rounds[i].accuracy : best;
    printf("\nfinal accuracy %.2f%% (best %.2f%%), %zu versions in %.1f simulated s "
           "(%.1f s wall)\n", r->nrounds ? r->rounds[r->nrounds - 1].accuracy * 100 : 0,
           best * 100, r->nrounds, r->nrounds ? ar->versions[r->nrounds - 1].sim_ms / 1000 : 0,
           r->wall_ms / 1000);
    if (hit >= 0)
        printf("75%% test accuracy first at version %ld, %.1f simulated s\n", hit + 1,
               ar->versions[hit].sim_ms / 1000);
    else
        printf("75%% test accuracy not reached\n");
    printf("history: versions 1..%zu of job %s (`flcache query history`, `query client`); "
           "global models: job %s/g\n", r->nrounds, c->job, c->job);
}
