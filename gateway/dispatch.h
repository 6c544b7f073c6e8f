#ifndef HATO_GATEWAY_DISPATCH_H
#define HATO_GATEWAY_DISPATCH_H
/*
 * dispatch: the gateway's core. Claims due deliveries from the job store
 * (on a worker thread), routes each to its destination queue, builds its
 * message, and records every outcome (batched, on the same thread).
 */
#include <event2/event.h>

struct hato_config;
struct dispatch;

struct dispatch *dispatch_new(struct event_base *base, const struct hato_config *cf);
void dispatch_start(struct dispatch *d);
/* Stop claiming, let sessions finish their current message, record every
 * outcome, give back the leases of what was not sent, then call on_done. */
void dispatch_stop(struct dispatch *d, void (*on_done)(void *), void *arg);
void dispatch_free(struct dispatch *d);

#endif
