#ifndef HATO_GATEWAY_UPKEEP_H
#define HATO_GATEWAY_UPKEEP_H
/*
 * upkeep: the gateway's periodic work on jobs (store_jobs_maintain): held
 * jobs nobody approved in time expire, and deliveries of paused or
 * cancelled jobs that were in flight and came back to wait are held back
 * or cancelled. Runs on a worker thread of its own (its own database
 * connection), once a second, never on the event loop.
 */
#include <event2/event.h>

struct hato_config;
struct upkeep;

struct upkeep *upkeep_new(struct event_base *base, const struct hato_config *cf);
/* Stop the timer and wait for a run in progress. */
void upkeep_free(struct upkeep *u);

#endif
