/*
 * upkeep: a timer on the event loop queues store_jobs_maintain on the
 * upkeep worker; the next run is armed only when the last one is done, so
 * a slow database never piles runs up. A failed run is logged once until
 * one succeeds again.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "conf/config.h"
#include "core/log.h"
#include "core/worker.h"
#include "gateway/upkeep.h"
#include "sql/store.h"

#define UPKEEP_MS 1000

struct upkeep {
	struct worker *db;
	struct event *ev;
	bool failing;
	int rc;
	size_t expired;
	char err[300];
};

static void
upkeep_run(void *ctx, void *arg)
{
	struct upkeep *u = arg;

	if ((u->rc = store_jobs_maintain(ctx, &u->expired)) != STORE_OK)
		snprintf(u->err, sizeof(u->err), "%s", store_error(ctx));
}

static void
upkeep_done(void *arg)
{
	struct upkeep *u = arg;
	struct timeval tv = { UPKEEP_MS / 1000, (UPKEEP_MS % 1000) * 1000 };

	if (u->rc != STORE_OK && !u->failing)
		log_warn("job upkeep failed, retrying: %s", u->err);
	else if (u->rc == STORE_OK && u->failing)
		log_info("job upkeep works again");
	u->failing = u->rc != STORE_OK;
	if (u->expired)
		log_info("job upkeep expired=%zu", u->expired);
	if (u->ev)
		evtimer_add(u->ev, &tv);
}

static void
upkeep_tick(evutil_socket_t fd, short what, void *arg)
{
	struct upkeep *u = arg;

	(void)fd, (void)what;
	worker_submit(u->db, upkeep_run, upkeep_done, u);
}

struct upkeep *
upkeep_new(struct event_base *base, const struct hato_config *cf)
{
	struct upkeep *u = calloc(1, sizeof(*u));
	struct timeval tv = { UPKEEP_MS / 1000, (UPKEEP_MS % 1000) * 1000 };

	if (!u)
		fatalx("upkeep: out of memory");
	u->db = worker_create(base, "gateway-upkeep", store_worker_init, store_worker_fini, (void *)cf);
	if (!(u->ev = evtimer_new(base, upkeep_tick, u)))
		fatalx("upkeep: out of memory");
	evtimer_add(u->ev, &tv);
	return u;
}

void
upkeep_free(struct upkeep *u)
{
	if (!u)
		return;
	event_free(u->ev);
	u->ev = NULL;	/* a run finishing below arms nothing */
	worker_free(u->db);
	free(u);
}
