/* Process-level helpers of the local pool: build the environment of a
 * function instance, start one with its three pipes and an address-space
 * limit, read its memory figures from /proc, and describe how it ended. No
 * libuv here. The memory helpers also serve drivers and benchmarks measuring
 * their own process (getpid()). */
#ifndef FLC_RUNTIME_POOL_PROC_H
#define FLC_RUNTIME_POOL_PROC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct flc_proc {
    pid_t pid;
    pid_t pgid; /* its process group (flc_proc_spawn_owned), else 0 */
    int in_fd;  /* write end of the child's stdin (O_CLOEXEC) */
    int out_fd; /* read end of its stdout */
    int err_fd; /* read end of its stderr */
} flc_proc_t;

/* Forks and execs path with argv {path, NULL} and environment envp. In the
 * child: stdin/stdout/stderr are the pipes, the signal mask is cleared,
 * SIGPIPE is default, every other descriptor is closed at exec, the network
 * namespace is the one of the file netns_path when it is not NULL
 * (setns(CLONE_NEWNET), which needs CAP_SYS_ADMIN), and RLIMIT_AS is set to
 * as_limit_bytes when it is not 0. Only async-signal-safe calls run between
 * fork and exec. Returns 0, or -errno with msg filled ("cannot run
 * /x/flcache-fn: No such file or directory", "cannot enter network
 * namespace /var/run/netns/a: Operation not permitted"); the child never
 * runs path outside the namespace it was asked for. */
int flc_proc_spawn(const char *path, char *const envp[], uint64_t as_limit_bytes,
                   const char *netns_path, flc_proc_t *out, char *msg, size_t msgcap);

/* flc_proc_spawn for an owned instance (pgid >= 0): the child also gets
 * PR_SET_PDEATHSIG(SIGKILL), so it dies when the thread that forked it
 * exits (the whole caller on SIGKILL included; fork from a thread that lives
 * as long as the instance should), and it joins process group pgid (0: a
 * new group it leads; a pgid whose group is gone also gives a new one).
 * out->pgid says which group it is in. pgid < 0 is flc_proc_spawn. */
int flc_proc_spawn_owned(const char *path, char *const envp[], uint64_t as_limit_bytes,
                         const char *netns_path, pid_t pgid, flc_proc_t *out, char *msg,
                         size_t msgcap);

/* flc_proc_spawn_owned that also puts the child into a cgroup before exec:
 * cg_fd (>= 0) is open for writing on the group's cgroup.procs
 * (runtime/cpu_cgroup.h) and the child writes its pid there; a refusal
 * fails the spawn ("cannot enter the CPU quota group"). -1: none. */
int flc_proc_spawn_cg(const char *path, char *const envp[], uint64_t as_limit_bytes,
                      const char *netns_path, pid_t pgid, int cg_fd, flc_proc_t *out,
                      char *msg, size_t msgcap);

/* A NULL-ended environment for instances: the extra "NAME=value" settings
 * (NULL-ended; they win over inherited ones of the same name) followed by
 * this process's environ, every string copied once, so instances do not see
 * later setenv races from other threads. NULL when out of memory. Free it
 * with flc_proc_env_free. */
char **flc_proc_env_new(const char *const *extra);

/* Frees an environment of flc_proc_env_new. NULL is a no-op. */
void flc_proc_env_free(char **envp);

/* A "Vm*:" figure in kB from /proc/<pid>/status ("VmHWM", "VmRSS"), or 0
 * when the process or the field is gone. */
uint64_t flc_proc_status_kb(pid_t pid, const char *field);

/* Resets the peak resident set (VmHWM) of pid through
 * /proc/<pid>/clear_refs, so the next VmHWM is per invocation. Returns 0, or
 * -errno when the kernel refuses (the figure then covers the lifetime). */
int flc_proc_reset_hwm(pid_t pid);

/* "exited with code 3" / "killed by signal 6 (Aborted)" for a wait status. */
void flc_proc_describe(int wstatus, char *buf, size_t cap);

#endif
