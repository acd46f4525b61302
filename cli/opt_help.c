/* cli/opt_help.c - --help of cli/opt.h, printed from a command's table:
 * its usage line, its text, and every option with its metavariable, its
 * help wrapped to the terminal's 80 columns and its default. */
#include "cli/opt.h"
#include "cli/opt_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WIDTH 80         /* help is wrapped to this many columns */
#define MAX_NAME_COL 22  /* a longer "--name META" puts its help on the next line */

/* A number as people write it: 0.5, 0.0000166667, 1e-12. */
static void fmt_num(char *out, size_t len, double x)
{
    snprintf(out, len, "%.10f", x);
    char *dot = strchr(out, '.');
    if (dot) {
        char *e = out + strlen(out) - 1;
        while (e > dot && *e == '0')
            *e-- = '\0';
        if (e == dot)
            *e = '\0';
    }
    if (x != 0 && strtod(out, NULL) == 0)
        snprintf(out, len, "%g", x);
}

/* The default of o as help shows it, "" for none. */
static void default_text(const flc_opt_t *o, const void *d, char *out, size_t len)
{
    out[0] = '\0';
    if (o->def) {
        snprintf(out, len, "%s", o->def);
        return;
    }
    const char *p = (const char *)d + o->off;
    switch (o->type) {
    case FLC_OPT_INT:
        snprintf(out, len, "%lld", flc_opt_get_int(d, o));
        break;
    case FLC_OPT_NUM: {
        double x;
        memcpy(&x, p, sizeof x);
        fmt_num(out, len, x);
        break;
    }
    case FLC_OPT_STR: {
        const char *s;
        memcpy(&s, p, sizeof s);
        if (s)
            snprintf(out, len, "%s", s);
        break;
    }
    case FLC_OPT_CHOICE: {
        int x;
        memcpy(&x, p, sizeof x);
        for (int i = 0; o->choices[i]; i++)
            if (flc_opt_choice_value(o, o->choices[i]) == x) {
                snprintf(out, len, "%s", o->choices[i]);
                break;
            }
        break;
    }
    case FLC_OPT_FLAG:
    case FLC_OPT_CUSTOM:
        break;
    }
}

/* Prints text from column col (the cursor is there), wrapping each line at
 * WIDTH; a wrapped line goes on under its own leading spaces. */
static void wrap(FILE *f, const char *text, int col)
{
    const char *line = text;
    int first = 1;
    while (*line) {
        const char *nl = strchr(line, '\n');
        int len = nl ? (int)(nl - line) : (int)strlen(line);
        int indent = 0;
        while (indent < len && line[indent] == ' ')
            indent++;
        if (!first)
            fprintf(f, "%*s", col, "");
        first = 0;
        const char *s = line;
        int rest = len, room = WIDTH - col;
        while (rest > room && room > indent + 10) {
            int cut = room;
            while (cut > indent && s[cut] != ' ')
                cut--;
            if (cut <= indent)
                break;
            fprintf(f, "%.*s\n%*s", cut, s, col + indent, "");
            s += cut + 1, rest -= cut + 1;
            room = WIDTH - col - indent;
        }
        fprintf(f, "%.*s\n", rest, s);
        line = nl ? nl + 1 : line + len;
    }
}

static void help_line(FILE *f, const char *left, const char *text, int col)
{
    int l = fprintf(f, "  %s", left);
    if (l + 2 > col)
        fprintf(f, "\n%*s", col, "");
    else
        fprintf(f, "%*s", col - l, "");
    wrap(f, text, col);
}

void flc_opt_help(const flc_opt_cmd_t *cmd, const void *defaults, FILE *f)
{
    const flc_opt_t *t = cmd->opts;
    char left[96], def[256], text[2048];
    int w = (int)strlen("-h, --help"), npos = 0;
    for (int i = 0; t[i].name; i++) {
        int l = (int)strlen(t[i].name) + (t[i].flags & FLC_OPT_POSITIONAL ? 0 : 2);
        if (t[i].meta && !(t[i].flags & FLC_OPT_POSITIONAL))
            l += 1 + (int)strlen(t[i].meta);
        if (l <= MAX_NAME_COL && l > w)
            w = l;
        npos += (t[i].flags & FLC_OPT_POSITIONAL) != 0;
    }
    int col = 2 + w + 2;
    fprintf(f, "usage: %s", cmd->prog);
    if (cmd->synopsis) {
        fprintf(f, " %s\n", cmd->synopsis);
    } else {
        for (int i = 0; t[i].name; i++)
            if (t[i].flags & FLC_OPT_POSITIONAL)
                fprintf(f, (t[i].flags & FLC_OPT_REQUIRED) ? " %s" : " [%s]", t[i].name);
        fprintf(f, " [options]\n");
    }
    if (cmd->about)
        fprintf(f, "\n%s", cmd->about);
    for (int pass = npos ? 0 : 1; pass < 2; pass++) {
        fprintf(f, "\n%s:\n", pass == 0 ? "arguments" : "options");
        for (int i = 0; t[i].name; i++) {
            if (((t[i].flags & FLC_OPT_POSITIONAL) == 0) != pass)
                continue;
            if (pass == 0)
                snprintf(left, sizeof left, "%s", t[i].name);
            else
                snprintf(left, sizeof left, "--%s%s%s", t[i].name, t[i].meta ? " " : "",
                         t[i].meta ? t[i].meta : "");
            default_text(&t[i], defaults, def, sizeof def);
            snprintf(text, sizeof text, "%s%s%s%s", t[i].help ? t[i].help : "",
                     def[0] ? " (default " : "", def, def[0] ? ")" : "");
            help_line(f, left, text, col);
        }
    }
    help_line(f, "-h, --help", "print this help", col);
    if (cmd->epilog)
        fprintf(f, "\n%s", cmd->epilog);
}
