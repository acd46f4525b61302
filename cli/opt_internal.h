/* Private to the option parser (cli/opt.c parses, cli/opt_help.c prints
 * --help from the same table). */
#ifndef FLC_CLI_OPT_INTERNAL_H
#define FLC_CLI_OPT_INTERNAL_H

#include "cli/opt.h"

/* The integer field of o in dest (4 or 8 bytes, signed unless its range
 * needs unsigned: opt.c's put_int writes it). */
long long flc_opt_get_int(const void *dest, const flc_opt_t *o);

/* The index of choice v of an option with choices (its parse function's
 * answer when it has one), -1 when v is none of them. */
int flc_opt_choice_value(const flc_opt_t *o, const char *v);

#endif
