#ifndef HATO_ROUTES_ROUTES_H
#define HATO_ROUTES_ROUTES_H
/*
 * routes: the carrier route table (DESIGN.md, "Carrier route tables").
 * One rule a line: DOMAIN ROUTE [# comment]. DOMAIN is an exact domain, a
 * ".suffix" (every subdomain, not the domain itself) or "*". ROUTE is
 * "relay:NAME", "pace:NAME" or "mx". Exact match wins over the longest
 * suffix, which wins over "*". Parsing is pure: text in, table or an error
 * with its line out.
 */
#include <stddef.h>

enum route_kind { ROUTE_MX = 0, ROUTE_RELAY, ROUTE_PACE };

struct route {
	enum route_kind kind;
	char name[64];		/* relay or pace name; empty for mx */
	char pattern[256];	/* the DOMAIN column as written (lower-cased) */
	char file[256];		/* where the rule came from */
	size_t line;
};

struct route_table;

/* Parse text (len bytes) read from file (used in messages only). Returns a
 * table, or NULL with "file:line: reason" in err. */
struct route_table *routes_parse(const char *text, size_t len, const char *file, char *err, size_t errlen);

/* Read and parse a file. NULL with "file:line: reason" or "file: strerror" in err. */
struct route_table *routes_load(const char *path, char *err, size_t errlen);

/* The rule for a domain (case-insensitive, trailing dot ignored), or NULL
 * when nothing matches (a table without "*"). */
const struct route *routes_match(const struct route_table *t, const char *domain);

/* Iterate all rules in file order: returns NULL past the end. */
const struct route *routes_at(const struct route_table *t, size_t i);

/* The destination a rule sends a domain to: "relay:NAME", "pace:NAME" or
 * "mx:DOMAIN" (every domain routed to one relay or pace policy shares its
 * queue and limits; each MX domain is its own). Returns the length. */
size_t routes_dest_key(const struct route *r, const char *domain, char *buf, size_t size);

void routes_free(struct route_table *t);

#endif
