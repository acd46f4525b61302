/* html.h - a growing text buffer for the report page, with HTML escaping.
 *
 * The page is a few hundred KB built by many small appends; the buffer
 * remembers an allocation failure (like a stream's error flag) so the
 * writers append without checking and the caller checks once, at the end,
 * with flc_html_failed. Every text that did not come from the report's own
 * code (job, client ids, rule names, notes) goes through flc_html_esc: a
 * client id holding markup is shown, never parsed. */
#ifndef FLC_REPORT_HTML_H
#define FLC_REPORT_HTML_H

#include <stddef.h>

typedef struct flc_html {
    char *p;     /* NUL-terminated text (NULL while empty) */
    size_t len;
    size_t cap;
    int oom;     /* an append failed: the text is incomplete */
} flc_html_t;

/* Appends printf-formatted text, taken as markup (not escaped). */
void flc_html_printf(flc_html_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends s as text: & < > " ' become entities, control characters other
 * than tab and newline become U+FFFD, so the result is safe both in element
 * content and in a quoted attribute. NULL appends nothing. */
void flc_html_esc(flc_html_t *b, const char *s);

/* Appends a number as the report shows it: "-" for NaN, else %.*g. */
void flc_html_num(flc_html_t *b, double v, int digits);

/* 1 when an append failed (out of memory). */
int flc_html_failed(const flc_html_t *b);

/* Frees the text; the buffer is empty and usable again. NULL is a no-op. */
void flc_html_free(flc_html_t *b);

#endif
