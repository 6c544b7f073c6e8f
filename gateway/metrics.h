#ifndef HATO_GATEWAY_METRICS_H
#define HATO_GATEWAY_METRICS_H
/*
 * metrics: the gateway's own counters since it started (deliveries by
 * destination and outcome, suspensions, retries, failures by bounce class)
 * and the latency of its database work (a histogram per worker thread),
 * written in the Prometheus text exposition format (version 0.0.4).
 *
 * Counters are bumped on the event loop; latencies are observed on the
 * worker threads (core/worker.h's observer): one mutex covers both.
 */
#include <stdbool.h>
#include <stdint.h>

struct evbuffer;

void metrics_init(void);
/* outcome: store_outcome_name(); bclass: bounce class of a failure or "". */
void metrics_delivery(const char *dest, const char *outcome, const char *bclass);
void metrics_suspension(const char *dest);
/* Seconds a worker's task took (the worker observer). */
void metrics_db_observe(const char *worker, double seconds);

/* Append the counters and the histogram. */
void metrics_write(struct evbuffer *b);
/* Sends of one destination by this gateway so far (0 if none). */
uint64_t metrics_sent(const char *dest);

/* Helpers for the other metric writers: "# HELP"/"# TYPE" lines, and a
 * label value escaped (backslash, double quote, newline). */
void metrics_family(struct evbuffer *b, const char *name, const char *type, const char *help);
void metrics_label(struct evbuffer *b, const char *value);

#endif
