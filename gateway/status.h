#ifndef HATO_GATEWAY_STATUS_H
#define HATO_GATEWAY_STATUS_H
/*
 * status: what the status page and /metrics show. Two sources:
 *
 *	the database	jobs and their progress, queue depths of every
 *			destination (all gateways), sends per minute per
 *			destination over the last hour, recent failures, jobs
 *			by state; read on the module's own worker thread into
 *			a snapshot kept in memory
 *	this process	sessions, held messages, pace factor, suspension and
 *			last reply of each destination (dispatch), and the
 *			counters of metrics.c
 *
 * The snapshot is refreshed every second while somebody has asked for it
 * in the last minute, and not at all otherwise; when a refresh takes more
 * than a fifth of a second, the next one waits five times what it took, so
 * that watching a big job store costs it at most a fifth of a connection.
 * A request that finds the snapshot older than two periods waits for the
 * next refresh (on the worker, never on the event loop). While the database is away the last snapshot is
 * served with the error.
 */
#include <event2/event.h>

struct dispatch;
struct evhttp_request;
struct hato_config;
struct status;

enum status_what { STATUS_JSON, STATUS_METRICS };

struct status *status_new(struct event_base *base, const struct hato_config *cf, struct dispatch *d);
/* Answer req (GET or HEAD) with the JSON of the page or the metrics text. */
void status_serve(struct status *st, struct evhttp_request *req, enum status_what what);
/* Waiting requests are answered first. */
void status_free(struct status *st);

/* The page itself (statuspage.html, compiled in). */
extern const unsigned char status_page[];
extern const unsigned long status_page_len;

#endif
