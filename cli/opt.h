/* cli/opt.h - one option parser for the flcache programs.
 *
 * Each command declares its options once, in a static table of flc_opt_t:
 * long name, value type, range or choices, default, help line and the field
 * the value goes to (an offset into the command's options struct). From that
 * one table flc_opt_parse reads argv (getopt_long underneath), checks every
 * value and reports any usage error in one wording,
 *   flcache simulate: --per-round needs an integer in 1..10000000, not 'x'
 *   flcache simulate: unknown option '--foo'
 *   flcache simulate: --job needs a value
 * each followed by "(see flcache simulate --help)", and --help prints the
 * command's help: usage line, description, one aligned line per option with
 * its default. So the options, their checks and their help cannot drift
 * apart, and no command walks argv by hand. */
#ifndef FLC_CLI_OPT_H
#define FLC_CLI_OPT_H

#include <stddef.h>
#include <stdio.h>

#include "cli/cli.h"

typedef enum flc_opt_type {
    FLC_OPT_FLAG,   /* no value: sets an int field to 1 */
    FLC_OPT_INT,    /* an integer in imin..imax: a 4- or 8-byte integer field */
    FLC_OPT_NUM,    /* a finite number in min..max (ends excluded by min_open and
                     * max_open; max 0 = no upper bound): a double field */
    FLC_OPT_STR,    /* any text, or one of `choices`: a const char * field that
                     * points into argv */
    FLC_OPT_CHOICE, /* one of `choices`: an int field, parse(v) when parse is
                     * set (it may take aliases), else v's index in choices */
    FLC_OPT_CUSTOM, /* custom(v, dest, &need) fills the struct itself */
} flc_opt_type_t;

/* A custom value parser. Returns 0 after storing v into the command's
 * struct dest, or -1 with *need saying what v must be ("A:B with
 * 0 <= A <= B"), which becomes "--opt needs <need>, not '<v>'". */
typedef int (*flc_opt_fn_t)(const char *v, void *dest, const char **need);

enum {
    FLC_OPT_POSITIONAL = 1, /* an argument, not an option: name is its placeholder
                             * ("KIND"); positionals are taken in table order */
    FLC_OPT_REQUIRED = 2,   /* missing: a usage error */
};

typedef struct flc_opt {
    const char *name;             /* "per-round" (no dashes); NULL ends the table */
    flc_opt_type_t type;
    const char *meta;             /* the value in help ("K"); NULL for flags */
    size_t off, size;             /* the field: FLC_OPT_AT(type, member) */
    long long imin, imax;         /* FLC_OPT_INT */
    double min, max;              /* FLC_OPT_NUM */
    int min_open, max_open;
    const char *const *choices;   /* FLC_OPT_CHOICE / FLC_OPT_STR: NULL-terminated */
    int (*parse)(const char *v);  /* FLC_OPT_CHOICE: v -> value, -1 when unknown */
    flc_opt_fn_t custom;          /* FLC_OPT_CUSTOM */
    const char *def;              /* the default as help shows it; NULL: the field's
                                   * value before parsing; "": none shown */
    const char *help;             /* wrapped at 80 columns; '\n' starts a line */
    unsigned flags;               /* FLC_OPT_POSITIONAL, FLC_OPT_REQUIRED */
} flc_opt_t;

/* The field an option writes: FLC_OPT_AT(opts_t, c.per_round). */
#define FLC_OPT_AT(T, member) .off = offsetof(T, member), .size = sizeof(((T *)0)->member)

/* A numeric macro's text, for a default shown exactly as written. */
#define FLC_OPT_STR_(x) #x
#define FLC_OPT_STRING(x) FLC_OPT_STR_(x)

typedef struct flc_opt_cmd {
    const char *prog;       /* "flcache simulate": starts every message */
    const char *synopsis;   /* after "usage: <prog> "; NULL: positionals, [options] */
    const char *about;      /* the description, printed as written */
    const char *epilog;     /* after the options (environment, exit codes); may be NULL */
    const flc_opt_t *opts;  /* ends with an entry whose name is NULL */
} flc_opt_cmd_t;

/* --model and --hidden, as every command that trains a Fashion-MNIST model
 * takes them (train, simulate): cfg names the member holding the model's
 * `model` (const char *) and `hidden` (size_t) of the options struct type T.
 * Needs workers/model.h (FLC_MLP_HIDDEN_DEFAULT). */
extern const char *const flc_opt_models[]; /* "softmax", "mlp", NULL */
#define FLC_OPT_MODEL_OPTIONS(T, cfg)                                                        \
    {.name = "model", .type = FLC_OPT_STR, .meta = "M", FLC_OPT_AT(T, cfg.model),            \
     .choices = flc_opt_models,                                                              \
     .help = "softmax (multinomial logistic regression) or mlp (one hidden ReLU layer of "   \
             "--hidden units)"},                                                             \
    {.name = "hidden", .type = FLC_OPT_INT, .meta = "N", FLC_OPT_AT(T, cfg.hidden),          \
     .imin = 1, .imax = 65536, .def = FLC_OPT_STRING(FLC_MLP_HIDDEN_DEFAULT),                \
     .help = "hidden units of the mlp"}

/* Parses argv[1..argc) into dest (size bytes, already holding the
 * defaults) by cmd's table. Returns 1 when the command should go on;
 * returns 0 when it should return *exit_code at once: FLC_EXIT_OK after
 * printing the help (-h, --help) on stdout, FLC_EXIT_USAGE after printing
 * a usage error on stderr, FLC_EXIT_RUNTIME when out of memory or the
 * table itself is wrong (a field size that fits no type). */
int flc_opt_parse(const flc_opt_cmd_t *cmd, int argc, char **argv, void *dest, size_t size,
                  int *exit_code);

/* Prints "<prog>: <message> (see <prog> --help)" on stderr and returns
 * FLC_EXIT_USAGE: for the checks a command makes after parsing (options
 * that depend on each other). */
int flc_opt_usage_error(const flc_opt_cmd_t *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints cmd's help to f, the defaults read from defaults (the options
 * struct before parsing). */
void flc_opt_help(const flc_opt_cmd_t *cmd, const void *defaults, FILE *f);

#endif
