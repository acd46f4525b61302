/* `flcache package lambda|openwhisk`: the deployment zip of flcache-fn.
 *
 * The binary is built on Debian 12 (glibc 2.36); Lambda's provided.al2023
 * and OpenWhisk's dockerskeleton (Alpine, musl) have another C library, so
 * the zip carries the binary, every shared library ldd names and glibc's
 * loader, and an entry script that starts the binary through that loader:
 * `bootstrap` for Lambda (run from /var/task with AWS_LAMBDA_RUNTIME_API
 * set: flcache-fn serves the Runtime API), `exec` for OpenWhisk (argv[1] is
 * the event, the last stdout line the result). The zip is made by the zip
 * program (Debian's `zip`, scripts/setup.sh installs it), run on a staging
 * directory; scripts/deploy-lambda.sh and deploy-openwhisk.sh upload it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/config.h"
#include "cli/opt.h"

typedef struct package_opts {
    int target;          /* 0 lambda, 1 openwhisk */
    const char *out;     /* the zip */
    const char *fn;      /* the binary */
    const char *data;    /* a directory whose files go into data/, or NULL */
} package_opts_t;

static const char *const targets[] = {"lambda", "openwhisk", NULL};

static const flc_opt_t options[] = {
    {.name = "TARGET", .type = FLC_OPT_CHOICE, FLC_OPT_AT(package_opts_t, target),
     .choices = targets, .def = "", .flags = FLC_OPT_POSITIONAL | FLC_OPT_REQUIRED,
     .help = "lambda (custom runtime, provided.al2023) or openwhisk (native action)"},
    {.name = "out", .type = FLC_OPT_STR, .meta = "ZIP", FLC_OPT_AT(package_opts_t, out),
     .def = "dist/flcache-fn-lambda.zip or dist/flcache-fn-ow.zip",
     .help = "where the zip goes (its directory is created)"},
    {.name = "fn", .type = FLC_OPT_STR, .meta = "PATH", FLC_OPT_AT(package_opts_t, fn),
     .def = "$FLCACHE_FN, else flcache-fn next to flcache",
     .help = "the function binary to package"},
    {.name = "data", .type = FLC_OPT_STR, .meta = "DIR", FLC_OPT_AT(package_opts_t, data),
     .help = "also pack DIR's files as data/ and point FLCACHE_DATA_DIR at it (e.g. "
             "/usr/share/datasets/fashion-mnist, which clients, training workers and run "
             "forest read; without it they must find the data on the platform)"},
    {0},
};

static const flc_opt_cmd_t package_cmd = {
    .prog = "flcache package",
    .synopsis = "lambda|openwhisk [--out ZIP] [--fn PATH] [--data DIR]",
    .about = "Builds the deployment zip of flcache-fn: the binary, the shared libraries it\n"
             "needs (ldd) with glibc's loader, and the entry script the platform runs\n"
             "(Lambda: bootstrap; OpenWhisk: exec). Upload it with\n"
             "scripts/deploy-lambda.sh or scripts/deploy-openwhisk.sh (docs/functions.md).\n",
    .epilog = "Needs the zip program (Debian package zip) and ldd.\n",
    .opts = options,
};

/* The bundled OpenSSL looks for CAs where Debian keeps them (/usr/lib/ssl),
 * which Amazon Linux and Alpine do not have: rediss:// to ElastiCache would
 * fail "unable to get local issuer certificate". So the zip carries
 * Debian's CA bundle and the entry script points OpenSSL at it, unless the
 * deployment set SSL_CERT_FILE itself (docs/tls.md). */
#define CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"
#define CA_LINE                                                                             \
    "[ -n \"$SSL_CERT_FILE\" ] || [ ! -f \"$D/certs/ca-certificates.crt\" ] || "          \
    "export SSL_CERT_FILE=\"$D/certs/ca-certificates.crt\"\n"

/* Data packed with --data is found through FLCACHE_DATA_DIR, unless the
 * deployment set it (a layer or an EFS mount of its own). */
#define DATA_LINE                                                                           \
    "[ -n \"$FLCACHE_DATA_DIR\" ] || [ ! -d \"$D/data\" ] || export FLCACHE_DATA_DIR=\"$D/data\"\n"

/* Lambda takes a zip of at most 50 MB in the request itself; a bigger one
 * goes through S3 (scripts/deploy-lambda.sh with S3_BUCKET). */
#define LAMBDA_DIRECT_MAX (50.0 * 1024 * 1024)

static const char bootstrap[] =
    "#!/bin/sh\n"
    "# AWS Lambda custom runtime entry (flcache package lambda). Lambda runs it\n"
    "# from $LAMBDA_TASK_ROOT with AWS_LAMBDA_RUNTIME_API set; flcache-fn then\n"
    "# serves the Runtime API. The bundled loader and libraries let the\n"
    "# Debian-built binary run on Amazon Linux.\n"
    "D=\"${LAMBDA_TASK_ROOT:-$(dirname \"$0\")}\"\n"
    CA_LINE
    DATA_LINE
    "exec \"$D/lib/ld-linux-x86-64.so.2\" --library-path \"$D/lib\" \"$D/flcache-fn\" \"$@\"\n";

static const char ow_exec[] =
    "#!/bin/sh\n"
    "# OpenWhisk native action entry (flcache package openwhisk): argv[1] is the\n"
    "# event, the last line of stdout the result.\n"
    "D=$(dirname \"$0\")\n"
    CA_LINE
    DATA_LINE
    "exec \"$D/lib/ld-linux-x86-64.so.2\" --library-path \"$D/lib\" \"$D/flcache-fn\" \"$@\"\n";

/* Runs argv (in dir when not NULL) with stdout to out (NULL: ours);
 * returns its exit status, or -1. */
static int run(char *const argv[], const char *dir, FILE *out)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (dir != NULL && chdir(dir) != 0)
            _exit(126);
        if (out != NULL)
            dup2(fileno(out), 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Copies src (following links) to dst with mode; 0 or -1. */
static int copy_file(const char *src, const char *dst, mode_t mode, size_t *bytes)
{
    int in = open(src, O_RDONLY);
    int out = in >= 0 ? open(dst, O_WRONLY | O_CREAT | O_TRUNC, mode) : -1;
    char buf[1 << 16];
    ssize_t n = 0;
    int rc = in >= 0 && out >= 0 ? 0 : -1;
    while (rc == 0 && (n = read(in, buf, sizeof buf)) > 0) {
        if (write(out, buf, (size_t)n) != n)
            rc = -1;
        *bytes += (size_t)n;
    }
    if (n < 0)
        rc = -1;
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) != 0)
        rc = -1;
    if (rc == 0)
        chmod(dst, mode);
    return rc;
}

static int write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
        return -1;
    return chmod(path, mode);
}

/* Copies every library ldd names for fn into lib/ (the loader too).
 * Returns the number copied, or -1 with msg. */
static int copy_libs(const char *fn, const char *libdir, size_t *bytes, char *msg, size_t cap)
{
    char tmpl[] = "/tmp/flcache-ldd-XXXXXX";
    int fd = mkstemp(tmpl);
    FILE *f = fd >= 0 ? fdopen(fd, "w+") : NULL;
    if (f == NULL) {
        snprintf(msg, cap, "cannot make a temporary file: %s", strerror(errno));
        return -1;
    }
    unlink(tmpl);
    char *argv[] = {"ldd", (char *)fn, NULL};
    if (run(argv, NULL, f) != 0) {
        fclose(f);
        snprintf(msg, cap, "ldd %s failed (is it a dynamic executable?)", fn);
        return -1;
    }
    rewind(f);
    char line[1024];
    int n = 0, loader = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        char path[PATH_MAX] = "";
        const char *arrow = strstr(line, "=> /");
        if (arrow != NULL)
            sscanf(arrow + 3, "%4095s", path);
        else if (sscanf(line, " %4095s", path) != 1 || path[0] != '/')
            continue; /* linux-vdso.so.1 has no file */
        const char *base = strrchr(path, '/') + 1;
        char dst[PATH_MAX + 64];
        snprintf(dst, sizeof dst, "%s/%s", libdir, base);
        if (copy_file(path, dst, 0755, bytes) != 0) {
            fclose(f);
            snprintf(msg, cap, "cannot copy %s: %s", path, strerror(errno));
            return -1;
        }
        loader |= strncmp(base, "ld-linux", 8) == 0;
        n++;
    }
    fclose(f);
    if (!loader) {
        snprintf(msg, cap, "ldd %s named no ld-linux loader", fn);
        return -1;
    }
    return n;
}

/* Copies the regular files of src (not its subdirectories) into dst.
 * Returns how many, or -1 with msg. */
static int copy_data(const char *src, const char *dst, size_t *bytes, char *msg, size_t cap)
{
    DIR *d = opendir(src);
    if (d == NULL) {
        snprintf(msg, cap, "--data %s: %s", src, strerror(errno));
        return -1;
    }
    int n = 0;
    if (mkdir(dst, 0755) != 0) {
        snprintf(msg, cap, "cannot create %s: %s", dst, strerror(errno));
        n = -1;
    }
    for (struct dirent *de; n >= 0 && (de = readdir(d)) != NULL;) {
        char from[PATH_MAX], to[PATH_MAX];
        struct stat st;
        if (snprintf(from, sizeof from, "%s/%s", src, de->d_name) >= (int)sizeof from)
            continue;
        if (stat(from, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (snprintf(to, sizeof to, "%s/%s", dst, de->d_name) >= (int)sizeof to)
            continue;
        if (copy_file(from, to, 0644, bytes) != 0) {
            snprintf(msg, cap, "cannot copy %.1024s: %s", from, strerror(errno));
            n = -1;
        } else {
            n++;
        }
    }
    closedir(d);
    if (n == 0)
        snprintf(msg, cap, "--data %s: no files in it", src), n = -1;
    return n;
}

static void rm_rf(const char *dir)
{
    char *argv[] = {"rm", "-rf", (char *)dir, NULL};
    run(argv, NULL, NULL);
}

int flc_cmd_package(int argc, char **argv)
{
    package_opts_t o = {0};
    int rc;
    if (!flc_opt_parse(&package_cmd, argc, argv, &o, sizeof o, &rc))
        return rc;
    char fn[PATH_MAX];
    if (o.fn != NULL)
        snprintf(fn, sizeof fn, "%s", o.fn);
    else
        flc_cli_fn_path(fn, sizeof fn);
    if (access(fn, X_OK) != 0) {
        flc_cli_error("package", "function binary %s: %s (build it: cmake --build build "
                      "--target flcache-fn, or give --fn)", fn, strerror(errno));
        return FLC_EXIT_RUNTIME;
    }
    const char *out = o.out != NULL ? o.out
                      : o.target == 0 ? "dist/flcache-fn-lambda.zip"
                                      : "dist/flcache-fn-ow.zip";
    /* zip runs in the staging directory: it needs the zip's full path. */
    char outabs[PATH_MAX], dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", out);
    char *slash = strrchr(dir, '/');
    if (slash != NULL) {
        *slash = '\0';
        char *mk[] = {"mkdir", "-p", dir, NULL};
        if (*dir && run(mk, NULL, NULL) != 0) {
            flc_cli_error("package", "cannot create the directory %s", dir);
            return FLC_EXIT_RUNTIME;
        }
    }
    char *cwd = getcwd(NULL, 0);
    snprintf(outabs, sizeof outabs, "%s%s%s", out[0] == '/' ? "" : (cwd ? cwd : "."),
             out[0] == '/' ? "" : "/", out);
    free(cwd);
    const char *tmp = flc_config_program()->tmpdir;
    char stage[PATH_MAX], lib[PATH_MAX + 8], path[PATH_MAX + 32];
    snprintf(stage, sizeof stage, "%s/flcache-package-XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(stage) == NULL) {
        flc_cli_error("package", "cannot create a staging directory in %s: %s",
                      tmp ? tmp : "/tmp", strerror(errno));
        return FLC_EXIT_RUNTIME;
    }
    snprintf(lib, sizeof lib, "%s/lib", stage);
    size_t bytes = 0;
    char msg[PATH_MAX + 128] = "";
    int nlibs = -1;
    const char *entry = o.target == 0 ? "bootstrap" : "exec";
    snprintf(path, sizeof path, "%s/flcache-fn", stage);
    if (mkdir(lib, 0755) != 0)
        snprintf(msg, sizeof msg, "cannot create %s: %s", lib, strerror(errno));
    else if (copy_file(fn, path, 0755, &bytes) != 0)
        snprintf(msg, sizeof msg, "cannot copy %s: %s", fn, strerror(errno));
    else if ((nlibs = copy_libs(fn, lib, &bytes, msg, sizeof msg)) >= 0) {
        snprintf(path, sizeof path, "%s/%s", stage, entry);
        if (write_file(path, o.target == 0 ? bootstrap : ow_exec, 0755) != 0) {
            snprintf(msg, sizeof msg, "cannot write %s: %s", path, strerror(errno));
            nlibs = -1;
        }
    }
    int certs = 0;
    if (nlibs >= 0 && access(CA_BUNDLE, R_OK) == 0) {
        snprintf(path, sizeof path, "%s/certs", stage);
        mkdir(path, 0755);
        snprintf(path, sizeof path, "%s/certs/ca-certificates.crt", stage);
        size_t cb = 0;
        certs = copy_file(CA_BUNDLE, path, 0644, &cb) == 0;
        bytes += cb;
    }
    int ndata = 0;
    if (nlibs >= 0 && o.data != NULL) {
        snprintf(path, sizeof path, "%s/data", stage);
        if ((ndata = copy_data(o.data, path, &bytes, msg, sizeof msg)) < 0)
            nlibs = -1;
    }
    if (nlibs >= 0) {
        unlink(outabs); /* zip would add to an old one */
        char *zip[] = {"zip", "-r9", "-q", "-X", outabs, (char *)entry, "flcache-fn", "lib",
                       NULL, NULL, NULL};
        int z = 8;
        if (certs)
            zip[z++] = "certs";
        if (ndata > 0)
            zip[z++] = "data";
        int zr = run(zip, stage, NULL);
        if (zr != 0) {
            snprintf(msg, sizeof msg, "zip %s failed (exit %d%s)", out, zr,
                     zr == 127 ? ": no zip program, install the Debian package zip" : "");
            nlibs = -1;
        }
    }
    rm_rf(stage);
    if (nlibs < 0) {
        flc_cli_error("package", "%s", msg);
        return FLC_EXIT_RUNTIME;
    }
    struct stat st;
    char zs[32], us[32];
    flc_cli_bytes(zs, sizeof zs, stat(outabs, &st) == 0 ? (double)st.st_size : 0);
    flc_cli_bytes(us, sizeof us, (double)bytes);
    char data[64] = "";
    if (ndata > 0)
        snprintf(data, sizeof data, ", %d data files in data/", ndata);
    printf("wrote %s (%s; %s unpacked): %s, flcache-fn and %d libraries in lib/%s%s\n", out,
           zs, us, entry, nlibs, certs ? ", CA certificates in certs/" : "", data);
    if (o.target == 0 && stat(outabs, &st) == 0 && (double)st.st_size > LAMBDA_DIRECT_MAX)
        printf("note: over the 50 MB Lambda takes in the request: deploy it through S3 "
               "(S3_BUCKET=... scripts/deploy-lambda.sh %s)\n", out);
    printf("deploy: scripts/deploy-%s.sh %s\n", o.target == 0 ? "lambda" : "openwhisk", out);
    return FLC_EXIT_OK;
}
