#ifndef HATO_GATEWAY_DISPATCH_H
#define HATO_GATEWAY_DISPATCH_H
/*
 * dispatch: the gateway's core. Claims due deliveries from the job store
 * (on a worker thread), routes each to its destination queue, builds its
 * message, and records every outcome (batched, on the same thread).
 */
#include <stddef.h>
#include <event2/event.h>

struct hato_config;
struct dispatch;

/* Reads the DKIM keys (call before dropping root); NULL with the reason. */
struct dispatch *dispatch_new(struct event_base *base, const struct hato_config *cf,
    char *err, size_t errlen);
void dispatch_start(struct dispatch *d);
/* Take a new configuration (already loaded and checked): new routes and
 * limits; queued messages move to their new destinations, and so do the
 * waiting rows in the database. The old configuration stays valid until
 * dispatch_free (sessions may still use it); dispatch_old_configs lists
 * them for freeing after that. */
void dispatch_reload(struct dispatch *d, const struct hato_config *cf);
const struct hato_config *const *dispatch_old_configs(const struct dispatch *d, size_t *n);
/* Stop claiming, let sessions finish their current message, record every
 * outcome, give back the leases of what was not sent, then call on_done. */
void dispatch_stop(struct dispatch *d, void (*on_done)(void *), void *arg);
void dispatch_free(struct dispatch *d);

/* What the status page shows of a destination this gateway holds work of. */
struct dispatch_dest_view {
	const char *key;
	const char *host;		/* the server last used, or "" */
	size_t held;			/* messages of it in this gateway */
	size_t queued;			/* of those, waiting for a session */
	unsigned sessions;		/* SMTP connections open */
	bool paced;
	double pace_rate;		/* configured messages per second (paced) */
	double factor;			/* current fraction of the pace (1 unpaced) */
	double suspended_ms;		/* left of a suspension; 0: none */
	const char *last_reply;		/* "250 2.0.0 ok", or "" */
	double last_at;			/* Unix time of it; 0: none */
};
void dispatch_each_dest(struct dispatch *d, void (*cb)(void *, const struct dispatch_dest_view *), void *arg);

#endif
