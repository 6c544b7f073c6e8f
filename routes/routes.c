/*
 * routes: the carrier route table.
 *
 * A table is parsed from text (routes_parse) or from a file (routes_load),
 * asked which rule a domain gets (routes_match), walked in file order
 * (routes_at) and freed (routes_free). The table owns every rule; the
 * pointers it hands out live until routes_free.
 *
 * Every rule sits in one hash table keyed by its lower-cased DOMAIN without
 * a trailing dot (a suffix key keeps its leading dot, so "x.jp" and ".x.jp"
 * never collide); the "*" rule is also remembered by index. A lookup tries
 * the domain itself, then each of its dot-suffixes from the longest down,
 * then "*": one probe per label, whatever the size of the table.
 *
 * Failure: parsing stops at the first bad line and returns NULL with
 * "file:line: reason" in err; a file that cannot be read gives
 * "file: strerror". Nothing is logged here: the caller decides whether a
 * bad table is fatal (start-up) or keeps the old one (reload).
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "routes/routes.h"

/* Long enough for any rule with a generous comment; a longer line is far
 * more likely a binary or mangled file than a rule. */
#define ROUTES_LINE_MAX 1024
#define DOMAIN_MAX 253
#define LABEL_MAX 63
#define NAME_MAX_LEN (sizeof(((struct route *)0)->name) - 1)

struct rule {
	struct route r;
	size_t keylen;		/* pattern without its trailing dot */
};

struct route_table {
	struct rule *rules;	/* file order */
	size_t n, cap;
	size_t *slots;		/* open addressing: rule index + 1, 0 is empty */
	size_t nslots;		/* a power of two, at least twice n */
	size_t star;		/* index + 1 of the "*" rule, 0 when none */
};

/* ASCII only: whatever locale the process runs in, 'I' is 'i' here. */
static unsigned char
lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* FNV-1a over the lower-cased bytes, so a lookup needs no copy. */
static uint64_t
key_hash(const char *s, size_t len)
{
	uint64_t h = 14695981039346656037ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= lower((unsigned char)s[i]);
		h *= 1099511628211ULL;
	}
	return h;
}

static bool
key_eq(const char *a, const char *b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
			return false;
	return true;
}

static const struct rule *
table_find(const struct route_table *t, const char *key, size_t len)
{
	size_t mask, i;

	if (t->nslots == 0)
		return NULL;
	mask = t->nslots - 1;
	for (i = key_hash(key, len) & mask; t->slots[i] != 0; i = (i + 1) & mask) {
		const struct rule *r = &t->rules[t->slots[i] - 1];

		if (r->keylen == len && key_eq(r->r.pattern, key, len))
			return r;
	}
	return NULL;
}

static void
slot_put(size_t *slots, size_t nslots, const struct rule *r, size_t idx)
{
	size_t mask = nslots - 1, i;

	for (i = key_hash(r->r.pattern, r->keylen) & mask; slots[i] != 0; i = (i + 1) & mask)
		;
	slots[i] = idx + 1;
}

/* Keep the load factor at or under one half so probes stay short. */
static int
table_index(struct route_table *t, size_t idx)
{
	if ((idx + 1) * 2 > t->nslots) {
		size_t nslots = t->nslots ? t->nslots * 2 : 64;
		size_t *slots = calloc(nslots, sizeof(*slots));

		if (slots == NULL)
			return -1;
		for (size_t i = 0; i < idx; i++)
			slot_put(slots, nslots, &t->rules[i], i);
		free(t->slots);
		t->slots = slots;
		t->nslots = nslots;
	}
	slot_put(t->slots, t->nslots, &t->rules[idx], idx);
	return 0;
}

static void seterr(char *, size_t, const char *, ...) __attribute__((format(printf, 3, 4)));

static void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* A character for an error message: control and non-ASCII bytes as \xNN,
 * so that a bad table cannot inject anything into a log line. */
static const char *
showc(unsigned char c, char buf[8])
{
	if (c > 0x20 && c < 0x7f)
		snprintf(buf, 8, "'%c'", c);
	else
		snprintf(buf, 8, "\\x%02x", c);
	return buf;
}

struct word {
	const char *s;
	size_t len;
};

/* A word of the table for an error message: cut at 40 octets, anything
 * but printable ASCII shown as '?'. */
static const char *
showw(const char *s, size_t len, char buf[48])
{
	size_t i;

	for (i = 0; i < len && i < 40; i++)
		buf[i] = (s[i] > 0x20 && s[i] < 0x7f) ? s[i] : '?';
	if (len > 40) {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = '\0';
	return buf;
}

/* The reason a DOMAIN column is unacceptable, or NULL. Letters, digits
 * and hyphens only (RFC 5321 Ldh-str): no underscore, no raw UTF-8. */
static const char *
check_domain(const char *s, size_t len, char *why, size_t whylen)
{
	size_t label = 0, i = 0;
	char cb[8], wb[48];

	if (len == 1 && s[0] == '*')
		return NULL;
	if (memchr(s, '*', len) != NULL) {
		if (len > 2 && s[0] == '*' && s[1] == '.')
			snprintf(why, whylen, "'*' must stand alone (write '%s' for every subdomain)",
			    showw(s + 1, len - 1, wb));
		else
			snprintf(why, whylen, "'*' must stand alone");
		return why;
	}
	if (s[0] == '.')
		i = 1;
	/* One trailing dot is the absolute form of the same domain. */
	if (len > i + 1 && s[len - 1] == '.')
		len--;
	if (len - i > DOMAIN_MAX) {
		snprintf(why, whylen, "domain longer than %d octets", DOMAIN_MAX);
		return why;
	}
	for (; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0)
				break;
			label = 0;
			continue;
		}
		if (c >= 0x80 || !(isalnum(c) || c == '-')) {
			snprintf(why, whylen, "invalid character %s in domain%s", showc(c, cb),
			    c >= 0x80 ? " (write an IDN in its xn-- form)" : "");
			return why;
		}
		if (++label > LABEL_MAX) {
			snprintf(why, whylen, "label longer than %d octets in domain", LABEL_MAX);
			return why;
		}
	}
	if (label == 0) {
		snprintf(why, whylen, "empty label in domain '%s'", showw(s, len, wb));
		return why;
	}
	return NULL;
}

/* Fill kind and name from the ROUTE column; the reason or NULL. */
static const char *
parse_target(const struct word *w, struct route *r, char *why, size_t whylen)
{
	const char *colon = memchr(w->s, ':', w->len);
	size_t klen = colon ? (size_t)(colon - w->s) : w->len;
	const char *name = colon ? colon + 1 : NULL;
	size_t nlen = colon ? w->len - klen - 1 : 0;
	char cb[8], wb[48];

	if (klen == 2 && key_eq(w->s, "mx", 2)) {
		if (colon != NULL) {
			snprintf(why, whylen, "mx takes no name");
			return why;
		}
		r->kind = ROUTE_MX;
		return NULL;
	}
	if (klen == 5 && key_eq(w->s, "relay", 5))
		r->kind = ROUTE_RELAY;
	else if (klen == 4 && key_eq(w->s, "pace", 4))
		r->kind = ROUTE_PACE;
	else {
		snprintf(why, whylen, "unknown route kind '%s' (expected relay:NAME, pace:NAME or mx)",
		    showw(w->s, klen, wb));
		return why;
	}
	if (colon == NULL || nlen == 0) {
		const char *kw = r->kind == ROUTE_RELAY ? "relay" : "pace";

		snprintf(why, whylen, "empty %s name (write %s:NAME)", kw, kw);
		return why;
	}
	if (nlen > NAME_MAX_LEN) {
		snprintf(why, whylen, "name longer than %zu octets", NAME_MAX_LEN);
		return why;
	}
	for (size_t i = 0; i < nlen; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c >= 0x80 || !(isalnum(c) || c == '_' || c == '-')) {
			snprintf(why, whylen, "invalid character %s in name (allowed: a-z 0-9 _ -)",
			    showc(c, cb));
			return why;
		}
		r->name[i] = (char)lower(c);
	}
	r->name[nlen] = '\0';
	return NULL;
}

/* Split a line (comment already cut) into at most 3 words: a third word is
 * only there to be reported. Returns the count. */
static size_t
split_words(const char *s, size_t len, struct word w[3])
{
	size_t n = 0, i = 0, start;

	while (n < 3) {
		while (i < len && (s[i] == ' ' || s[i] == '\t'))
			i++;
		if (i == len)
			break;
		start = i;
		while (i < len && s[i] != ' ' && s[i] != '\t')
			i++;
		w[n].s = s + start;
		w[n].len = i - start;
		n++;
	}
	return n;
}

static struct rule *
table_add(struct route_table *t)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 32;
		struct rule *rules = realloc(t->rules, cap * sizeof(*rules));

		if (rules == NULL)
			return NULL;
		t->rules = rules;
		t->cap = cap;
	}
	memset(&t->rules[t->n], 0, sizeof(t->rules[t->n]));
	return &t->rules[t->n];
}

/* One line, comment and CR already removed. Returns 0, or -1 with the
 * reason in why. */
static int
parse_line(struct route_table *t, const char *s, size_t len, const char *file, size_t lineno,
    char *why, size_t whylen)
{
	struct word w[3];
	size_t n = split_words(s, len, w);
	const struct rule *dup;
	struct rule *r;
	char wb[48];

	if (n == 0)
		return 0;
	if (n == 1) {
		snprintf(why, whylen, "missing route after '%s'", showw(w[0].s, w[0].len, wb));
		return -1;
	}
	if (n == 3) {
		snprintf(why, whylen, "extra words after the route: '%s'", showw(w[2].s, w[2].len, wb));
		return -1;
	}
	if (check_domain(w[0].s, w[0].len, why, whylen) != NULL)
		return -1;
	if ((r = table_add(t)) == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	if (parse_target(&w[1], &r->r, why, whylen) != NULL)
		return -1;
	for (size_t i = 0; i < w[0].len; i++)
		r->r.pattern[i] = (char)lower((unsigned char)w[0].s[i]);
	r->r.pattern[w[0].len] = '\0';
	r->keylen = w[0].len;
	if (r->keylen > 1 && r->r.pattern[r->keylen - 1] == '.')
		r->keylen--;
	snprintf(r->r.file, sizeof(r->r.file), "%s", file);
	r->r.line = lineno;

	if ((dup = table_find(t, r->r.pattern, r->keylen)) != NULL) {
		snprintf(why, whylen, "duplicate domain '%s' (first on line %zu)", r->r.pattern, dup->r.line);
		return -1;
	}
	if (table_index(t, t->n) == -1) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	if (r->r.pattern[0] == '*')
		t->star = t->n + 1;
	t->n++;
	return 0;
}

struct route_table *
routes_parse(const char *text, size_t len, const char *file, char *err, size_t errlen)
{
	struct route_table *t = calloc(1, sizeof(*t));
	size_t pos = 0, lineno = 0;
	char why[512];

	if (file == NULL)
		file = "(routes)";
	if (t == NULL) {
		seterr(err, errlen, "%s: out of memory", file);
		return NULL;
	}
	while (pos < len) {
		const char *line = text + pos, *nl = memchr(line, '\n', len - pos);
		size_t llen = nl ? (size_t)(nl - line) : len - pos;
		const char *hash;

		pos += llen + (nl != NULL);
		lineno++;
		if (llen > 0 && line[llen - 1] == '\r')
			llen--;
		if (llen > ROUTES_LINE_MAX) {
			seterr(err, errlen, "%s:%zu: line too long (%zu octets, at most %d)",
			    file, lineno, llen, ROUTES_LINE_MAX);
			goto fail;
		}
		if ((hash = memchr(line, '#', llen)) != NULL)
			llen = (size_t)(hash - line);
		if (parse_line(t, line, llen, file, lineno, why, sizeof(why)) == -1) {
			seterr(err, errlen, "%s:%zu: %s", file, lineno, why);
			goto fail;
		}
	}
	return t;
fail:
	routes_free(t);
	return NULL;
}

struct route_table *
routes_load(const char *path, char *err, size_t errlen)
{
	struct route_table *t;
	char *buf = NULL, *nbuf;
	size_t len = 0, cap = 0, got;
	FILE *fp;

	if ((fp = fopen(path, "r")) == NULL) {
		seterr(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		if (len == cap) {
			cap = cap ? cap * 2 : 16384;
			if ((nbuf = realloc(buf, cap)) == NULL) {
				seterr(err, errlen, "%s: out of memory", path);
				goto fail;
			}
			buf = nbuf;
		}
		got = fread(buf + len, 1, cap - len, fp);
		len += got;
		if (got == 0)
			break;
	}
	/* fopen succeeds on a directory; the read is what fails (EISDIR). */
	if (ferror(fp)) {
		seterr(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	fclose(fp);
	t = routes_parse(buf, len, path, err, errlen);
	free(buf);
	return t;
fail:
	fclose(fp);
	free(buf);
	return NULL;
}

const struct route *
routes_match(const struct route_table *t, const char *domain)
{
	const struct rule *r;
	size_t len;

	if (t == NULL || domain == NULL)
		return NULL;
	len = strlen(domain);
	if (len > 0 && domain[len - 1] == '.')
		len--;
	if (len > 0 && domain[0] != '.' && (r = table_find(t, domain, len)) != NULL)
		return &r->r;
	/* Longest suffix first: the dots from left to right. A dot at 0 would
	 * leave an empty label in front, which no real domain has. */
	for (size_t i = 1; i < len; i++) {
		if (domain[i] != '.')
			continue;
		if ((r = table_find(t, domain + i, len - i)) != NULL)
			return &r->r;
	}
	return t->star ? &t->rules[t->star - 1].r : NULL;
}

const struct route *
routes_at(const struct route_table *t, size_t i)
{
	if (t == NULL || i >= t->n)
		return NULL;
	return &t->rules[i].r;
}

void
routes_free(struct route_table *t)
{
	if (t == NULL)
		return;
	free(t->rules);
	free(t->slots);
	free(t);
}

size_t
routes_dest_key(const struct route *r, const char *domain, char *buf, size_t size)
{
	int n;

	switch (r->kind) {
	case ROUTE_RELAY:
		n = snprintf(buf, size, "relay:%s", r->name);
		break;
	case ROUTE_PACE:
		n = snprintf(buf, size, "pace:%s", r->name);
		break;
	default:
		n = snprintf(buf, size, "mx:%s", domain);
		break;
	}
	return n < 0 ? 0 : (size_t)n;
}
