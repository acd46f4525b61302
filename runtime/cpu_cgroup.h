/* CPU in proportion to memory for local pool instances, as AWS Lambda gives
 * it (one vCPU at 1,769 MB, 6 at 10,240 MB), so that choosing a memory size
 * on this machine has the effect it has in the cloud (issue 20,
 * docs/tune.md). Each instance gets its own cgroup of the cpu controller
 * with a CFS quota of memory_mb / mb_per_vcpu CPUs per period: cgroup v2's
 * cpu.max where a cgroup2 hierarchy has the cpu controller, else cgroup v1's
 * cpu.cfs_quota_us. Groups live under <root>/flcache/<owner pid>.<n>; one is
 * removed when its instance has been reaped, groups whose owner died (a
 * SIGKILLed driver) are swept by the next pool that starts, and the base
 * directory goes when a pool with quotas ends and no group is left. */
#ifndef FLC_RUNTIME_CPU_CGROUP_H
#define FLC_RUNTIME_CPU_CGROUP_H

#include <stddef.h>
#include <sys/types.h>

#include "base/error.h"

/* Memory that buys one vCPU on AWS Lambda. */
#define FLC_CPUCG_MB_PER_VCPU 1769
/* The CFS period the quota is a share of (the kernel's default). */
#define FLC_CPUCG_PERIOD_US 100000

typedef struct flc_cpucg flc_cpucg_t;

/* Finds the cpu controller: *version 2 (a cgroup2 mount listing "cpu" in
 * cgroup.controllers) or 1 (a cgroup v1 mount with the cpu option), its
 * mount point in root. FLC_ENOTFOUND naming what is missing when neither. */
int flc_cpucg_probe(char *root, size_t cap, int *version, flc_err_t *e);

/* The CPUs an instance of memory_mb gets: memory_mb / mb_per_vcpu (0 ->
 * FLC_CPUCG_MB_PER_VCPU), at least 0.01 (the kernel's minimum quota). */
double flc_cpucg_vcpus(unsigned memory_mb, unsigned mb_per_vcpu);

/* Creates one instance's group with the quota of memory_mb. NULL with *e
 * naming the file when the controller is missing or not writable (no
 * root). Free with flc_cpucg_free. */
flc_cpucg_t *flc_cpucg_new(unsigned memory_mb, unsigned mb_per_vcpu, flc_err_t *e);

/* A descriptor open for writing on the group's cgroup.procs (close-on-exec):
 * a forked child writes its own pid there before exec (runtime/pool_proc.h),
 * so no instruction of the function runs outside its quota. */
int flc_cpucg_procs_fd(const flc_cpucg_t *g);

/* The group's directory (for messages and tests). */
const char *flc_cpucg_path(const flc_cpucg_t *g);

/* Moves pid into the group: 0, or FLC_EIO naming the group. */
int flc_cpucg_attach(flc_cpucg_t *g, pid_t pid, flc_err_t *e);

/* Removes the group (its processes must be gone: reaped) and frees g;
 * retries briefly while the kernel still counts an exiting task. NULL is a
 * no-op. A group that cannot be removed is left for flc_cpucg_sweep. */
void flc_cpucg_free(flc_cpucg_t *g);

/* Removes the empty groups of owners that no longer run (and of this
 * process when all is 1), then <root>/flcache itself when no group is
 * left. Returns how many groups were removed. */
int flc_cpucg_sweep(int all);

#endif
