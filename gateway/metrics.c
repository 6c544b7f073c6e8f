/*
 * metrics: counters and the database latency histogram (see metrics.h).
 *
 * Destinations are few (relays, pace policies, MX domains the gateway
 * has sent to), kept in one growing array; the lookup is linear, which
 * stays cheaper than the SMTP exchange each bump follows. Label values are
 * escaped as the exposition format asks; names are fixed here.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "core/log.h"
#include "core/worker.h"
#include "gateway/metrics.h"

enum { OUT_SENT, OUT_DEFERRED, OUT_FAILED, OUT_COUNT };
static const char *const out_names[OUT_COUNT] = { "sent", "deferred", "failed" };

/* Seconds: from a cached read to a slow group commit. */
static const double bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
#define NBOUNDS (sizeof(bounds) / sizeof(bounds[0]))

struct mdest {
	char key[128];
	uint64_t out[OUT_COUNT];
	uint64_t suspensions;
};

struct mclass {
	char name[17];
	uint64_t n;
};

struct mhist {
	char worker[32];
	uint64_t buckets[NBOUNDS];	/* not cumulative; summed when written */
	uint64_t count;
	double sum;
};

static struct {
	pthread_mutex_t mu;
	struct mdest *dests;
	size_t ndests, capdests;
	struct mclass classes[32];
	size_t nclasses;
	struct mhist hists[8];
	size_t nhists;
	uint64_t retries;
} M = { .mu = PTHREAD_MUTEX_INITIALIZER };

void
metrics_init(void)
{
	worker_set_observer(metrics_db_observe);
}

static struct mdest *
dest_get(const char *key)
{
	for (size_t i = 0; i < M.ndests; i++)
		if (strcmp(M.dests[i].key, key) == 0)
			return &M.dests[i];
	if (M.ndests == M.capdests) {
		M.capdests = M.capdests ? M.capdests * 2 : 16;
		if (!(M.dests = realloc(M.dests, M.capdests * sizeof(*M.dests))))
			fatalx("metrics: out of memory");
	}
	memset(&M.dests[M.ndests], 0, sizeof(M.dests[0]));
	snprintf(M.dests[M.ndests].key, sizeof(M.dests[0].key), "%s", key);
	return &M.dests[M.ndests++];
}

void
metrics_delivery(const char *dest, const char *outcome, const char *bclass)
{
	int o;

	for (o = 0; o < OUT_COUNT; o++)
		if (strcmp(outcome, out_names[o]) == 0)
			break;
	if (o == OUT_COUNT)
		return;
	pthread_mutex_lock(&M.mu);
	dest_get(dest)->out[o]++;
	if (o == OUT_DEFERRED)
		M.retries++;
	if (bclass && *bclass) {
		size_t i;
		for (i = 0; i < M.nclasses; i++)
			if (strcmp(M.classes[i].name, bclass) == 0)
				break;
		/* The classes are bounce_class_name()'s few; the last slot
		 * takes any beyond. */
		if (i == M.nclasses && M.nclasses < sizeof(M.classes) / sizeof(M.classes[0]))
			snprintf(M.classes[M.nclasses++].name, sizeof(M.classes[0].name), "%s", bclass);
		if (i < M.nclasses)
			M.classes[i].n++;
	}
	pthread_mutex_unlock(&M.mu);
}

void
metrics_suspension(const char *dest)
{
	pthread_mutex_lock(&M.mu);
	dest_get(dest)->suspensions++;
	pthread_mutex_unlock(&M.mu);
}

void
metrics_db_observe(const char *worker, double seconds)
{
	struct mhist *h = NULL;
	size_t i;

	pthread_mutex_lock(&M.mu);
	for (i = 0; i < M.nhists; i++)
		if (strcmp(M.hists[i].worker, worker) == 0)
			h = &M.hists[i];
	if (!h && M.nhists < sizeof(M.hists) / sizeof(M.hists[0])) {
		h = &M.hists[M.nhists++];
		snprintf(h->worker, sizeof(h->worker), "%s", worker);
	}
	if (h) {
		for (i = 0; i < NBOUNDS && seconds > bounds[i]; i++)
			;
		if (i < NBOUNDS)
			h->buckets[i]++;
		h->count++;
		h->sum += seconds;
	}
	pthread_mutex_unlock(&M.mu);
}

uint64_t
metrics_sent(const char *dest)
{
	uint64_t n = 0;

	pthread_mutex_lock(&M.mu);
	for (size_t i = 0; i < M.ndests; i++)
		if (strcmp(M.dests[i].key, dest) == 0)
			n = M.dests[i].out[OUT_SENT];
	pthread_mutex_unlock(&M.mu);
	return n;
}

void
metrics_family(struct evbuffer *b, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void
metrics_label(struct evbuffer *b, const char *v)
{
	for (; *v; v++) {
		switch (*v) {
		case '\\': evbuffer_add(b, "\\\\", 2); break;
		case '"': evbuffer_add(b, "\\\"", 2); break;
		case '\n': evbuffer_add(b, "\\n", 2); break;
		default: evbuffer_add(b, v, 1);
		}
	}
}

static void
write_histograms(struct evbuffer *b)
{
	metrics_family(b, "hato_db_task_seconds", "histogram",
	    "Time a database worker thread took per task (store calls), by worker.");
	for (size_t i = 0; i < M.nhists; i++) {
		const struct mhist *h = &M.hists[i];
		uint64_t cum = 0;
		for (size_t k = 0; k < NBOUNDS; k++) {
			cum += h->buckets[k];
			evbuffer_add_printf(b, "hato_db_task_seconds_bucket{worker=\"");
			metrics_label(b, h->worker);
			evbuffer_add_printf(b, "\",le=\"%g\"} %llu\n", bounds[k], (unsigned long long)cum);
		}
		evbuffer_add_printf(b, "hato_db_task_seconds_bucket{worker=\"");
		metrics_label(b, h->worker);
		evbuffer_add_printf(b, "\",le=\"+Inf\"} %llu\n", (unsigned long long)h->count);
		evbuffer_add_printf(b, "hato_db_task_seconds_sum{worker=\"");
		metrics_label(b, h->worker);
		evbuffer_add_printf(b, "\"} %.6f\n", h->sum);
		evbuffer_add_printf(b, "hato_db_task_seconds_count{worker=\"");
		metrics_label(b, h->worker);
		evbuffer_add_printf(b, "\"} %llu\n", (unsigned long long)h->count);
	}
}

void
metrics_write(struct evbuffer *b)
{
	pthread_mutex_lock(&M.mu);
	metrics_family(b, "hato_gateway_deliveries_total", "counter",
	    "Delivery attempts finished by this gateway, by destination and outcome.");
	for (size_t i = 0; i < M.ndests; i++)
		for (int o = 0; o < OUT_COUNT; o++) {
			evbuffer_add_printf(b, "hato_gateway_deliveries_total{dest=\"");
			metrics_label(b, M.dests[i].key);
			evbuffer_add_printf(b, "\",outcome=\"%s\"} %llu\n", out_names[o],
			    (unsigned long long)M.dests[i].out[o]);
		}
	metrics_family(b, "hato_gateway_suspensions_total", "counter",
	    "Times a paced destination was suspended by this gateway (a 421 or a named 4xx).");
	for (size_t i = 0; i < M.ndests; i++) {
		evbuffer_add_printf(b, "hato_gateway_suspensions_total{dest=\"");
		metrics_label(b, M.dests[i].key);
		evbuffer_add_printf(b, "\"} %llu\n", (unsigned long long)M.dests[i].suspensions);
	}
	metrics_family(b, "hato_gateway_retries_total", "counter",
	    "Attempts deferred to a later retry by this gateway.");
	evbuffer_add_printf(b, "hato_gateway_retries_total %llu\n", (unsigned long long)M.retries);
	metrics_family(b, "hato_gateway_bounces_total", "counter",
	    "Failed or deferred attempts seen by this gateway, by bounce class.");
	for (size_t i = 0; i < M.nclasses; i++) {
		evbuffer_add_printf(b, "hato_gateway_bounces_total{class=\"");
		metrics_label(b, M.classes[i].name);
		evbuffer_add_printf(b, "\"} %llu\n", (unsigned long long)M.classes[i].n);
	}
	write_histograms(b);
	pthread_mutex_unlock(&M.mu);
}
