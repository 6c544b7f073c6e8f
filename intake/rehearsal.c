/*
 * rehearsal: the copies of a dry run (see rehearsal.h); each copy's
 * strings live in one arena.
 */
#include <stdlib.h>
#include <string.h>

#include "conf/config.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "intake/rehearsal.h"
#include "routes/routes.h"
#include "sql/store.h"

/* Offsets into the arena, turned into pointers once it stops moving. */
struct copy_off {
	size_t addr, domain, dest, render;
};

static size_t
arena_add(struct strbuf *a, const char *s)
{
	size_t off = a->len;

	strbuf_add(a, s, strlen(s) + 1);
	return off;
}

static void
copy_offsets(const struct hato_config *cf, const char *addr, const char *render,
    struct strbuf *a, struct copy_off *o)
{
	const char *at = strrchr(addr, '@');
	const char *domain = at ? at + 1 : "";
	const struct route *rt;
	char dest[128] = "";

	if ((rt = routes_match(cf->routes, domain)))
		routes_dest_key(rt, domain, dest, sizeof(dest));
	o->addr = arena_add(a, addr);
	o->domain = arena_add(a, domain);
	o->dest = arena_add(a, dest);
	o->render = arena_add(a, render);
}

void
rehearsal_plan(const struct hato_config *cf, const struct submitter_conf *who,
    const char *const *routes, size_t nroutes, double at, struct rehearsal *out)
{
	size_t total = nroutes * who->nrehearsal, k = 0;
	struct copy_off *off = calloc(total ? total : 1, sizeof(*off));
	struct strbuf arena = { 0 };

	out->routes = nroutes;
	out->n = total;
	if (!off || !(out->copies = calloc(total ? total : 1, sizeof(*out->copies))))
		fatalx("rehearsal: out of memory");
	for (size_t r = 0; r < out->routes; r++)
		for (size_t i = 0; i < who->nrehearsal; i++)
			copy_offsets(cf, who->rehearsal[i], routes[r], &arena, &off[k++]);
	if (!(out->strings = strbuf_take(&arena)))
		fatalx("rehearsal: out of memory");
	for (size_t i = 0; i < total; i++) {
		out->copies[i].address = out->strings + off[i].addr;
		out->copies[i].domain = out->strings + off[i].domain;
		out->copies[i].dest = out->strings + off[i].dest;
		out->copies[i].render_dest = out->strings + off[i].render;
		out->copies[i].at = at;
	}
	free(off);
}

void
rehearsal_free(struct rehearsal *r)
{
	free(r->copies);
	free(r->strings);
	memset(r, 0, sizeof(*r));
}
