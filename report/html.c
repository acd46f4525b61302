/* html.c - the report's text buffer: appends with a sticky out-of-memory
 * flag, and the one escaping function every outside string goes through. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/html.h"

static int grow(flc_html_t *b, size_t more)
{
    if (b->oom)
        return -1;
    if (b->len + more + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void flc_html_printf(flc_html_t *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0 || grow(b, (size_t)n) != 0)
        return;
    if ((size_t)n < sizeof small) {
        memcpy(b->p + b->len, small, (size_t)n + 1);
    } else {
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

void flc_html_esc(flc_html_t *b, const char *s)
{
    if (s == NULL)
        return;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        const char *ent = NULL;
        switch (c) {
        case '&': ent = "&amp;"; break;
        case '<': ent = "&lt;"; break;
        case '>': ent = "&gt;"; break;
        case '"': ent = "&quot;"; break;
        case '\'': ent = "&#39;"; break;
        default:
            if ((c < 0x20 && c != '\t' && c != '\n') || c == 0x7f)
                ent = "&#xFFFD;";
        }
        size_t n = ent ? strlen(ent) : 1;
        if (grow(b, n) != 0)
            return;
        if (ent)
            memcpy(b->p + b->len, ent, n + 1);
        else
            b->p[b->len] = (char)c, b->p[b->len + 1] = '\0';
        b->len += n;
    }
}

void flc_html_num(flc_html_t *b, double v, int digits)
{
    if (isnan(v))
        flc_html_printf(b, "-");
    else
        flc_html_printf(b, "%.*g", digits, v);
}

int flc_html_failed(const flc_html_t *b)
{
    return b->oom;
}

void flc_html_free(flc_html_t *b)
{
    if (b == NULL)
        return;
    free(b->p);
    memset(b, 0, sizeof *b);
}
