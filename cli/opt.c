/* cli/opt.c - the option parser of cli/opt.h: getopt_long driven by a
 * command's table, one wording for every usage error, and --help printed
 * from the same table.
 *
 * getopt_long runs in return-in-order mode ("-" in optstring), so
 * positionals arrive in the order given whatever POSIXLY_CORRECT says, and
 * with a leading ':' so a missing value is told apart from an unknown
 * option. getopt_long also takes unique prefixes of long options (--per for
 * --per-round); those are refused here, so adding an option later can never
 * change what an existing command line means. --help is opt_help.c's. */
#include "cli/opt.h"
#include "cli/opt_internal.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OPTS 64      /* options in one table (getopt's array is on the stack) */
#define VAL_BASE 256     /* getopt val of table entry i: VAL_BASE + i */

const char *const flc_opt_models[] = {"softmax", "mlp", NULL};

int flc_opt_usage_error(const flc_opt_cmd_t *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cmd->prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see %s --help)\n", cmd->prog);
    va_end(ap);
    return FLC_EXIT_USAGE;
}

/* "--name" for an option, "NAME" for a positional. */
static const char *label(const flc_opt_t *o, char *buf, size_t len)
{
    if (o->flags & FLC_OPT_POSITIONAL)
        return o->name;
    snprintf(buf, len, "--%s", o->name);
    return buf;
}

/* "a, b or c" into buf. */
static const char *choice_list(const char *const *c, char *buf, size_t len)
{
    size_t n = 0, at = 0;
    while (c[n])
        n++;
    buf[0] = '\0';
    for (size_t i = 0; i < n && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%s", i == 0 ? "" : i + 1 == n ? " or " : ", ",
                               c[i]);
    return buf;
}

/* ---- fields ------------------------------------------------------------ */

/* Integer fields are 4 or 8 bytes. A 4-byte one is taken as unsigned only
 * when its range needs it (imax > INT32_MAX), so that a signed field's
 * negative "not given" value (krum_f -1) reads back as it is. */
static void put_int(void *dest, const flc_opt_t *o, long long x)
{
    char *p = (char *)dest + o->off;
    if (o->size == 8) {
        int64_t v = x;
        memcpy(p, &v, sizeof v);
    } else if (o->imax <= INT32_MAX) {
        int32_t v = (int32_t)x;
        memcpy(p, &v, sizeof v);
    } else {
        uint32_t v = (uint32_t)x;
        memcpy(p, &v, sizeof v);
    }
}

long long flc_opt_get_int(const void *dest, const flc_opt_t *o)
{
    const char *p = (const char *)dest + o->off;
    if (o->size == 8) {
        int64_t v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    if (o->imax <= INT32_MAX) {
        int32_t v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Whether an entry's field size fits its type; a wrong table is a bug. */
static int entry_ok(const flc_opt_t *o)
{
    switch (o->type) {
    case FLC_OPT_FLAG:
    case FLC_OPT_CHOICE: return o->size == sizeof(int);
    case FLC_OPT_INT: return o->size == 4 || o->size == 8;
    case FLC_OPT_NUM: return o->size == sizeof(double);
    case FLC_OPT_STR: return o->size == sizeof(const char *);
    case FLC_OPT_CUSTOM: return o->custom != NULL;
    }
    return 0;
}

/* ---- values ------------------------------------------------------------ */

static int parse_int(const char *v, long long *out)
{
    if (!(isdigit((unsigned char)v[0]) || (v[0] == '-' && isdigit((unsigned char)v[1]))))
        return -1;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (*end != '\0' || errno == ERANGE)
        return -1;
    *out = x;
    return 0;
}

/* "> 0", ">= 0", "in [0, 1)" into buf. */
static const char *num_range(const flc_opt_t *o, char *buf, size_t len)
{
    if (o->max == 0)
        snprintf(buf, len, "%s %g", o->min_open ? ">" : ">=", o->min);
    else
        snprintf(buf, len, "in %c%g, %g%c", o->min_open ? '(' : '[', o->min, o->max,
                 o->max_open ? ')' : ']');
    return buf;
}

static int num_in_range(const flc_opt_t *o, double x)
{
    if (!isfinite(x) || x < o->min || (o->min_open && x == o->min))
        return 0;
    return o->max == 0 || (x < o->max || (!o->max_open && x == o->max));
}

int flc_opt_choice_value(const flc_opt_t *o, const char *v)
{
    if (o->parse)
        return o->parse(v);
    for (int i = 0; o->choices[i]; i++)
        if (strcmp(o->choices[i], v) == 0)
            return i;
    return -1;
}

/* Stores value v of option o into dest, or prints why not. */
static int take(const flc_opt_cmd_t *cmd, const flc_opt_t *o, const char *v, void *dest)
{
    char name[80], what[512];
    const char *need = NULL;
    char *p = (char *)dest + o->off;
    switch (o->type) {
    case FLC_OPT_FLAG: {
        int one = 1;
        memcpy(p, &one, sizeof one);
        return 0;
    }
    case FLC_OPT_INT: {
        long long x;
        if (parse_int(v, &x) == 0 && x >= o->imin && x <= o->imax) {
            put_int(dest, o, x);
            return 0;
        }
        snprintf(what, sizeof what, "an integer in %lld..%lld", o->imin, o->imax);
        need = what;
        break;
    }
    case FLC_OPT_NUM: {
        char *end;
        double x = strtod(v, &end);
        if (end != v && *end == '\0' && num_in_range(o, x)) {
            memcpy(p, &x, sizeof x);
            return 0;
        }
        char r[96];
        snprintf(what, sizeof what, "a number %s", num_range(o, r, sizeof r));
        need = what;
        break;
    }
    case FLC_OPT_STR:
        if (o->choices == NULL || flc_opt_choice_value(o, v) >= 0) {
            memcpy(p, &v, sizeof v);
            return 0;
        }
        need = choice_list(o->choices, what, sizeof what);
        break;
    case FLC_OPT_CHOICE: {
        int x = flc_opt_choice_value(o, v);
        if (x >= 0) {
            memcpy(p, &x, sizeof x);
            return 0;
        }
        need = choice_list(o->choices, what, sizeof what);
        break;
    }
    case FLC_OPT_CUSTOM:
        if (o->custom(v, dest, &need) == 0)
            return 0;
        break;
    }
    flc_opt_usage_error(cmd, "%s needs %s, not '%s'", label(o, name, sizeof name),
                        need ? need : "another value", v);
    return -1;
}

/* ---- parsing ----------------------------------------------------------- */

/* The text of an option word up to '=' ("--per" of "--per=3"). */
static int word_len(const char *w)
{
    const char *eq = strchr(w, '=');
    return eq ? (int)(eq - w) : (int)strlen(w);
}

/* What one parse is doing. */
typedef struct state {
    const flc_opt_cmd_t *cmd;
    void *dest;
    int npos;                      /* positionals taken */
    unsigned char seen[MAX_OPTS];  /* entries given, for FLC_OPT_REQUIRED */
} state_t;

/* getopt_long's table from cmd's; -1 when cmd's table is wrong. */
static int long_options(const flc_opt_cmd_t *cmd, struct option *lo)
{
    const flc_opt_t *t = cmd->opts;
    int nl = 0;
    for (int i = 0; t[i].name; i++) {
        if (i >= MAX_OPTS || !entry_ok(&t[i])) {
            fprintf(stderr, "%s: bug: option table entry '%s' does not fit its field\n",
                    cmd->prog, t[i].name);
            return -1;
        }
        if (!(t[i].flags & FLC_OPT_POSITIONAL))
            lo[nl++] = (struct option){t[i].name,
                                       t[i].type == FLC_OPT_FLAG ? no_argument : required_argument,
                                       NULL, VAL_BASE + i};
    }
    lo[nl++] = (struct option){"help", no_argument, NULL, 'h'};
    lo[nl] = (struct option){NULL, 0, NULL, 0};
    return 0;
}

/* The next positional entry takes word. */
static int take_positional(state_t *st, const char *word)
{
    const flc_opt_t *t = st->cmd->opts;
    int i = 0;
    for (int k = 0; t[i].name; i++)
        if ((t[i].flags & FLC_OPT_POSITIONAL) && k++ == st->npos)
            break;
    if (t[i].name == NULL)
        return flc_opt_usage_error(st->cmd, "unexpected argument '%s'", word);
    st->npos++;
    st->seen[i] = 1;
    return take(st->cmd, &t[i], word, st->dest) == 0 ? FLC_EXIT_OK : FLC_EXIT_USAGE;
}

/* Acts on what getopt_long returned for an option word (c is neither a
 * positional nor -h). */
static int take_option(state_t *st, int c, char **argv)
{
    const flc_opt_cmd_t *cmd = st->cmd;
    const flc_opt_t *o = optopt >= VAL_BASE ? &cmd->opts[optopt - VAL_BASE] : NULL;
    const char *w = argv[optind - 1];
    if (c == ':') { /* a value is missing: w is the option word */
        if (o && word_len(w) == (int)strlen(o->name) + 2)
            return flc_opt_usage_error(cmd, "--%s needs a value", o->name);
        return flc_opt_usage_error(cmd, "unknown option '%.*s'", word_len(w), w);
    }
    if (c == '?') {
        if (o && word_len(w) == (int)strlen(o->name) + 2)
            return flc_opt_usage_error(cmd, "--%s takes no value", o->name);
        if (optopt != 0 && o == NULL)
            return flc_opt_usage_error(cmd, "unknown option '-%c'", optopt);
        return flc_opt_usage_error(cmd, "unknown option '%.*s'", word_len(w), w);
    }
    o = &cmd->opts[c - VAL_BASE];
    /* The word as typed, the one before its value when that came apart. */
    if (o->type != FLC_OPT_FLAG && optarg == argv[optind - 1])
        w = argv[optind - 2];
    if (word_len(w) != (int)strlen(o->name) + 2) /* an abbreviation */
        return flc_opt_usage_error(cmd, "unknown option '%.*s'", word_len(w), w);
    st->seen[c - VAL_BASE] = 1;
    return take(cmd, o, optarg, st->dest) == 0 ? FLC_EXIT_OK : FLC_EXIT_USAGE;
}

/* A usage error for the first required entry not given. */
static int check_required(const state_t *st)
{
    const flc_opt_t *t = st->cmd->opts;
    for (int i = 0; t[i].name; i++) {
        if (!(t[i].flags & FLC_OPT_REQUIRED) || st->seen[i])
            continue;
        char cl[400], list[420] = "";
        if (t[i].choices)
            snprintf(list, sizeof list, " (%s)", choice_list(t[i].choices, cl, sizeof cl));
        if (t[i].flags & FLC_OPT_POSITIONAL)
            return flc_opt_usage_error(st->cmd, "missing %s%s", t[i].name, list);
        return flc_opt_usage_error(st->cmd, "missing --%s %s%s", t[i].name,
                                   t[i].meta ? t[i].meta : "", list);
    }
    return FLC_EXIT_OK;
}

int flc_opt_parse(const flc_opt_cmd_t *cmd, int argc, char **argv, void *dest, size_t size,
                  int *exit_code)
{
    struct option lo[MAX_OPTS + 2];
    state_t st = {.cmd = cmd, .dest = dest};
    /* The defaults for --help: options before it may have written to dest. */
    void *defaults = malloc(size ? size : 1);
    *exit_code = FLC_EXIT_RUNTIME;
    if (defaults == NULL)
        fprintf(stderr, "%s: out of memory\n", cmd->prog);
    if (long_options(cmd, lo) != 0 || defaults == NULL) {
        free(defaults);
        return 0;
    }
    if (size)
        memcpy(defaults, dest, size);
    int rc = FLC_EXIT_OK, help = 0, rest = -1; /* rest: the next word after "--" */
    opterr = 0;
    optind = 0; /* glibc: start over, also when called twice in one process */
    while (rc == FLC_EXIT_OK && !help) {
        if (rest >= 0) { /* after "--" every word is a positional */
            if (rest >= argc)
                break;
            rc = take_positional(&st, argv[rest++]);
            continue;
        }
        int c = getopt_long(argc, argv, "-:h", lo, NULL);
        if (c == -1)
            rest = optind;
        else if (c == 1)
            rc = take_positional(&st, optarg);
        else if (c == 'h')
            help = 1;
        else
            rc = take_option(&st, c, argv);
    }
    if (help)
        flc_opt_help(cmd, defaults, stdout);
    else if (rc == FLC_EXIT_OK)
        rc = check_required(&st);
    free(defaults);
    *exit_code = rc;
    return rc == FLC_EXIT_OK && !help;
}
