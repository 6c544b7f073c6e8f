#ifndef HATO_CORE_STRBUF_H
#define HATO_CORE_STRBUF_H
/*
 * strbuf: a growable NUL-terminated string for the pure encoders and
 * parsers. An append that cannot allocate is remembered, not reported:
 * the caller checks once at the end (strbuf_take returns NULL).
 */
#include <stdbool.h>
#include <stddef.h>

struct strbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

void strbuf_add(struct strbuf *b, const char *s, size_t n);
/* The string ("" when nothing was added), or NULL after a failed append
 * (and nothing left allocated). The caller owns it. */
char *strbuf_take(struct strbuf *b);

#endif
