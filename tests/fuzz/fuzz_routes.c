/*
 * fuzz_routes: a route table parsed from any bytes, then asked about
 * domains.
 *
 * A refused table gives "file:line: reason" in printable ASCII (a bad
 * table must not inject anything into a log line). A parsed one holds
 * lower-cased patterns and valid names; an exact rule is what its own
 * domain matches; a subdomain of a ".suffix" rule matches that rule or an
 * exact rule for itself; "" matches only "*". Every line of the input,
 * read as a domain, matches NULL or a rule of the table that fits it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "routes/routes.h"
#include "check.h"

#define FILE_NAME "fuzz.routes"
#define LOOKUPS_MAX 64

/* The pattern without its trailing dot (the absolute form). */
static size_t
keylen(const char *p)
{
	size_t n = strlen(p);

	return n > 1 && p[n - 1] == '.' ? n - 1 : n;
}

static void
check_rule(const struct route *r, size_t prev_line)
{
	size_t n = strnlen(r->pattern, sizeof(r->pattern));

	CHECK(n >= 1 && n < sizeof(r->pattern));
	CHECK(strcmp(r->file, FILE_NAME) == 0);
	CHECK(r->line > prev_line);
	for (size_t i = 0; i < n; i++) {
		char c = r->pattern[i];

		CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		    (c == '*' && n == 1));
	}
	switch (r->kind) {
	case ROUTE_MX:
		CHECK(r->name[0] == '\0');
		break;
	case ROUTE_RELAY:
	case ROUTE_PACE:
		CHECK(r->name[0] != '\0' && strnlen(r->name, sizeof(r->name)) < sizeof(r->name));
		for (const char *c = r->name; *c; c++)
			CHECK((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-');
		break;
	default:
		CHECK(!"a known route kind");
	}
}

/* The rule a lookup returned belongs to the table and fits the domain. */
static void
check_match(const struct route_table *t, const char *domain, const struct route *m)
{
	size_t dl = keylen(domain), pl, i;
	bool found = false;

	if (m == NULL)
		return;
	for (i = 0; routes_at(t, i) != NULL; i++)
		found |= routes_at(t, i) == m;
	CHECK(found);
	if (strcmp(m->pattern, "*") == 0)
		return;
	pl = keylen(m->pattern);
	if (m->pattern[0] == '.')
		CHECK(dl > pl && strncasecmp(domain + dl - pl, m->pattern, pl) == 0);
	else
		CHECK(dl == pl && strncasecmp(domain, m->pattern, pl) == 0);
}

static void
check_table(const struct route_table *t, const char *text, size_t len)
{
	const struct route *r, *star = NULL, *m;
	size_t i, prev = 0, pos = 0, nlook = 0;
	char dom[300];

	for (i = 0; (r = routes_at(t, i)) != NULL; i++) {
		check_rule(r, prev);
		prev = r->line;
		if (strcmp(r->pattern, "*") == 0) {
			CHECK(star == NULL);
			star = r;
		}
	}
	CHECK(routes_match(t, "") == star);
	for (i = 0; (r = routes_at(t, i)) != NULL; i++) {
		if (r->pattern[0] == '*')
			continue;
		if (r->pattern[0] != '.') {
			CHECK(routes_match(t, r->pattern) == r);
			continue;
		}
		snprintf(dom, sizeof(dom), "x%s", r->pattern);
		m = routes_match(t, dom);
		CHECK(m != NULL);
		check_match(t, dom, m);
		CHECK(m == r || m->pattern[0] != '.');
	}
	/* Any line of the input as a domain. */
	while (pos < len && nlook++ < LOOKUPS_MAX) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - text - pos) : len - pos;
		char *d = fuzz_strndup((const uint8_t *)text + pos, n);

		check_match(t, d, routes_match(t, d));
		free(d);
		pos += n + (nl != NULL);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct route_table *t;
	char err[512] = "";

	fuzz_poison_stack();
	t = routes_parse((const char *)data, size, FILE_NAME, err, sizeof(err));
	if (t == NULL) {
		CHECK(strncmp(err, FILE_NAME ":", strlen(FILE_NAME) + 1) == 0);
		CHECK(fuzz_printable_ascii(err, strlen(err)) && strchr(err, '\t') == NULL);
		return 0;
	}
	check_table(t, (const char *)data, size);
	routes_free(t);
	return 0;
}
