#ifndef HATO_INTAKE_REHEARSAL_H
#define HATO_INTAKE_REHEARSAL_H
/*
 * rehearsal: a Dry-Run job's copies. Every message is built as for the
 * real run, but only the submitter's rehearsal addresses get one: a copy
 * per distinct route (destination) among the accepted recipients, to each
 * rehearsal address, written as that route's recipients would get it
 * (render_dest) and carried by the rehearsal address's own route.
 */
#include <stddef.h>

struct hato_config;
struct store_rcpt_new;
struct submitter_conf;

struct rehearsal {
	struct store_rcpt_new *copies;
	size_t n;
	size_t routes;		/* distinct routes among the recipients */
	char *strings;		/* what the copies point into */
};

/* The copies for the distinct routes (dest keys) of the accepted
 * recipients, due at `at` (Unix time; 0: the job's send_at). The
 * submitter must have rehearsal addresses. */
void rehearsal_plan(const struct hato_config *cf, const struct submitter_conf *who,
    const char *const *routes, size_t nroutes, double at, struct rehearsal *out);
void rehearsal_free(struct rehearsal *r);

#endif
