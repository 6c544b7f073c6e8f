/*
 * status: the snapshot behind the status page and /metrics (see status.h).
 *
 *	status_new	its worker thread (own database connection) and timer
 *	status_serve	answer now from memory, or once the next refresh is in
 *	status_free	drain the worker (waiting requests get their answer)
 *
 * A refresh reads on the worker: the jobs worth watching, the queues per
 * destination, jobs by state, and two things read incrementally so that a
 * busy log is not scanned every second: sends per minute from the start of
 * the previous minute on (the older minutes of the hour are kept from
 * earlier refreshes), and failures logged after the last id seen. The done
 * callback merges them into the module's state on the loop thread, which
 * alone reads and writes it. A log row committed after a later one may be
 * missed by the failure list (ids are taken in insert order): the page is
 * a view, the send log stays the record.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "conf/config.h"
#include "core/duration.h"
#include "core/log.h"
#include "core/worker.h"
#include "gateway/dispatch.h"
#include "gateway/metrics.h"
#include "gateway/status.h"
#include "sql/store.h"

#define REFRESH_MS 1000
#define COST_FACTOR 5		/* refresh no more often than 5x what one takes */
#define WATCH_MS 60000		/* refresh while asked for within this */
#define MAX_WAITING 64
#define MAX_JOBS 50
#define MAX_FAILURES 20
#define MAX_SERIES 64
#define MINUTES 60
#define FAIL_LOOKBACK 100000	/* log rows looked at on the first refresh */

struct series {
	char dest[129];
	int64_t minute[MINUTES];	/* which minute each slot holds */
	unsigned n[MINUTES];
};

struct waiting {
	struct evhttp_request *req;
	enum status_what what;
};

struct status {
	struct event_base *base;
	const struct hato_config *cf;
	struct dispatch *d;
	struct worker *w;
	struct event *tick;
	uint64_t last_view;		/* mono ms of the last request */
	uint64_t taken;			/* mono ms of the last good refresh; 0: none */
	uint64_t period_ms;		/* between refreshes: REFRESH_MS or more */
	bool refreshing;
	char err[300];			/* of the last refresh; "" when good */
	struct waiting waiting[MAX_WAITING];
	size_t nwaiting;
	/* the snapshot */
	struct store_status_job *jobs;
	size_t njobs;
	struct store_queue_row *queues;
	size_t nqueues;
	struct { char state[17]; uint64_t n; } jstates[16];
	size_t njstates;
	struct store_status_failure failures[MAX_FAILURES];
	size_t nfailures;
	uint64_t log_id;		/* failures are read after this id */
	struct series series[MAX_SERIES];
	size_t nseries;
	int64_t minute_done;		/* minutes before this one are complete */
};

/* ---- the refresh, on the worker ---- */

struct refresh {
	struct status *st;
	uint64_t started;
	int64_t since_minute;
	uint64_t after_id, upto_id;
	bool first;
	struct store_status_job *jobs;
	size_t njobs, capjobs;
	struct store_queue_row *queues;
	size_t nqueues, capqueues;
	struct { char state[17]; uint64_t n; } jstates[16];
	size_t njstates;
	struct store_status_failure failures[MAX_FAILURES];
	size_t nfailures;
	struct { char dest[129]; int64_t minute; unsigned n; } *sends;
	size_t nsends, capsends;
	int64_t now_minute;
	int rc;
	char err[300];
};

static void *
grow(void *p, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return p;
	*cap = *cap ? *cap * 2 : 16;
	if (!(p = realloc(p, *cap * size)))
		fatalx("status: out of memory");
	return p;
}

static int
add_job(void *arg, const struct store_status_job *j)
{
	struct refresh *r = arg;

	r->jobs = grow(r->jobs, &r->capjobs, r->njobs, sizeof(*r->jobs));
	r->jobs[r->njobs++] = *j;
	return 0;
}

static int
add_queue(void *arg, const struct store_queue_row *q)
{
	struct refresh *r = arg;

	r->queues = grow(r->queues, &r->capqueues, r->nqueues, sizeof(*r->queues));
	r->queues[r->nqueues++] = *q;
	return 0;
}

static int
add_jstate(void *arg, const char *state, uint64_t n)
{
	struct refresh *r = arg;

	if (r->njstates == sizeof(r->jstates) / sizeof(r->jstates[0]))
		return 1;
	snprintf(r->jstates[r->njstates].state, sizeof(r->jstates[0].state), "%s", state);
	r->jstates[r->njstates++].n = n;
	return 0;
}

static int
add_failure(void *arg, const struct store_status_failure *f)
{
	struct refresh *r = arg;

	if (r->nfailures == MAX_FAILURES)
		return 1;
	r->failures[r->nfailures++] = *f;
	return 0;
}

static int
add_sends(void *arg, const char *dest, int64_t minute, unsigned n)
{
	struct refresh *r = arg;

	r->sends = grow(r->sends, &r->capsends, r->nsends, sizeof(*r->sends));
	snprintf(r->sends[r->nsends].dest, sizeof(r->sends[0].dest), "%s", dest);
	r->sends[r->nsends].minute = minute;
	r->sends[r->nsends++].n = n;
	return 0;
}

static void
refresh_run(void *ctx, void *arg)
{
	struct refresh *r = arg;
	struct store *s = ctx;

	if ((r->rc = store_status_jobs_each(s, MAX_JOBS, add_job, r)) != STORE_OK ||
	    (r->rc = store_queues_each(s, add_queue, r)) != STORE_OK ||
	    (r->rc = store_jobs_by_state_each(s, add_jstate, r)) != STORE_OK ||
	    (r->rc = store_sends_per_minute_each(s, (double)r->since_minute * 60, add_sends, r)) != STORE_OK ||
	    (r->rc = store_log_last_id(s, &r->upto_id)) != STORE_OK)
		goto fail;
	if (r->first)
		r->after_id = r->upto_id > FAIL_LOOKBACK ? r->upto_id - FAIL_LOOKBACK : 0;
	if (r->upto_id > r->after_id &&
	    (r->rc = store_status_failures_each(s, r->after_id, r->upto_id, MAX_FAILURES, add_failure, r)) != STORE_OK)
		goto fail;
	return;
fail:
	snprintf(r->err, sizeof(r->err), "%s", store_error(s));
}

/* ---- merging, on the loop ---- */

static struct series *
series_get(struct status *st, const char *dest)
{
	struct series *se;

	for (size_t i = 0; i < st->nseries; i++)
		if (strcmp(st->series[i].dest, dest) == 0)
			return &st->series[i];
	if (st->nseries == MAX_SERIES)
		return NULL;	/* the page draws the first destinations only */
	se = &st->series[st->nseries++];
	memset(se, 0, sizeof(*se));
	snprintf(se->dest, sizeof(se->dest), "%s", dest);
	for (int i = 0; i < MINUTES; i++)
		se->minute[i] = -1;
	return se;
}

static void
merge(struct status *st, struct refresh *r)
{
	free(st->jobs);
	st->jobs = r->jobs;
	st->njobs = r->njobs;
	r->jobs = NULL;
	free(st->queues);
	st->queues = r->queues;
	st->nqueues = r->nqueues;
	r->queues = NULL;
	memcpy(st->jstates, r->jstates, sizeof(st->jstates));
	st->njstates = r->njstates;
	for (size_t i = 0; i < r->nsends; i++) {
		struct series *se = series_get(st, r->sends[i].dest);
		int slot = (int)(r->sends[i].minute % MINUTES);
		if (se) {
			se->minute[slot] = r->sends[i].minute;
			se->n[slot] = r->sends[i].n;
		}
	}
	/* Everything before the current minute has been counted whole. */
	st->minute_done = r->now_minute;
	if (r->nfailures) {
		size_t keep = MAX_FAILURES - r->nfailures;
		if (keep > st->nfailures)
			keep = st->nfailures;
		memmove(st->failures + r->nfailures, st->failures, keep * sizeof(st->failures[0]));
		memcpy(st->failures, r->failures, r->nfailures * sizeof(st->failures[0]));
		st->nfailures = r->nfailures + keep;
	}
	st->log_id = r->upto_id;
}

static void answer(struct status *st, struct evhttp_request *req, enum status_what what);

static void
refresh_done(void *arg)
{
	struct refresh *r = arg;
	struct status *st = r->st;

	st->refreshing = false;
	/* A big job store makes a refresh slow: the database does other work
	 * too, so a watched page takes at most a fifth of one connection. */
	st->period_ms = (clock_mono_ms() - r->started) * COST_FACTOR;
	if (st->period_ms < REFRESH_MS)
		st->period_ms = REFRESH_MS;
	if (r->rc == STORE_OK) {
		merge(st, r);
		st->taken = clock_mono_ms();
		if (*st->err)
			log_info("status: database readable again");
		st->err[0] = '\0';
	} else {
		if (!*st->err)
			log_warn("status: refresh failed, serving the last snapshot: %s", r->err);
		snprintf(st->err, sizeof(st->err), "%s", r->err);
	}
	for (size_t i = 0; i < st->nwaiting; i++)
		answer(st, st->waiting[i].req, st->waiting[i].what);
	st->nwaiting = 0;
	free(r->jobs);
	free(r->queues);
	free(r->sends);
	free(r);
}

static void
refresh(struct status *st)
{
	struct refresh *r;
	int64_t now_minute = (int64_t)(time(NULL) / 60);

	if (st->refreshing)
		return;
	if (!(r = calloc(1, sizeof(*r))))
		fatalx("status: out of memory");
	r->st = st;
	r->started = clock_mono_ms();
	r->now_minute = now_minute;
	r->first = st->taken == 0;
	/* The previous minute again: it may have grown since it was read. */
	r->since_minute = now_minute - (MINUTES - 1);
	if (!r->first && st->minute_done - 1 > r->since_minute)
		r->since_minute = st->minute_done - 1;
	r->after_id = st->log_id;
	st->refreshing = true;
	worker_submit(st->w, refresh_run, refresh_done, r);
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct status *st = arg;
	struct timeval tv = { (time_t)(st->period_ms / 1000), (suseconds_t)(st->period_ms % 1000) * 1000 };

	(void)fd, (void)what;
	/* Nobody looking: stop until the next request. */
	if (clock_mono_ms() - st->last_view > WATCH_MS)
		return;
	refresh(st);
	evtimer_add(st->tick, &tv);
}

/* ---- JSON ---- */

/* A JSON string: quotes, backslashes and controls escaped, and <, >, &
 * too (the text is never markup); bytes that are not UTF-8 become U+FFFD. */
static void
json_str(struct evbuffer *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	evbuffer_add(b, "\"", 1);
	while (*p) {
		size_t n = 0;
		if (*p < 0x80)
			n = 1;
		else if ((*p & 0xe0) == 0xc0 && *p >= 0xc2)
			n = 2;
		else if ((*p & 0xf0) == 0xe0)
			n = 3;
		else if ((*p & 0xf8) == 0xf0 && *p <= 0xf4)
			n = 4;
		for (size_t i = 1; i < n; i++)
			if ((p[i] & 0xc0) != 0x80)
				n = 0;
		if (n == 0) {
			evbuffer_add(b, "\\ufffd", 6);
			p++;
		} else if (n > 1) {
			evbuffer_add(b, p, n);
			p += n;
		} else {
			if (*p == '"' || *p == '\\')
				evbuffer_add_printf(b, "\\%c", *p);
			else if (*p < 0x20 || *p == '<' || *p == '>' || *p == '&')
				evbuffer_add_printf(b, "\\u%04x", *p);
			else
				evbuffer_add(b, p, 1);
			p++;
		}
	}
	evbuffer_add(b, "\"", 1);
}

static void
json_kv(struct evbuffer *b, const char *key, const char *val, bool comma)
{
	evbuffer_add_printf(b, "%s\"%s\":", comma ? "," : "", key);
	json_str(b, val);
}

static void
json_jobs(struct status *st, struct evbuffer *b)
{
	evbuffer_add_printf(b, ",\"jobs\":[");
	for (size_t i = 0; i < st->njobs; i++) {
		const struct store_status_job *j = &st->jobs[i];
		evbuffer_add_printf(b, "%s{\"id\":%llu", i ? "," : "", (unsigned long long)j->id);
		json_kv(b, "kind", j->kind, true);
		json_kv(b, "submitter", j->submitter, true);
		json_kv(b, "subject", j->subject, true);
		json_kv(b, "state", j->state, true);
		json_kv(b, "created", j->created, true);
		json_kv(b, "send_at", j->send_at, true);
		evbuffer_add_printf(b, ",\"total\":%u,\"queued\":%u,\"deferred\":%u,\"sent\":%u,"
		    "\"failed\":%u,\"held\":%u,\"other\":%u,\"sent_last_min\":%u}", j->total, j->queued,
		    j->deferred, j->sent, j->failed, j->held, j->other, j->sent_last_min);
	}
	evbuffer_add_printf(b, "]");
}

/* A destination as the page and /metrics see it: the database's row, this
 * gateway's live state, or both. */
struct dview {
	char key[129];
	const struct store_queue_row *db;
	bool live;
	struct dispatch_dest_view v;
	char host[256], last_reply[160];
	double rate;			/* sends per second over the last minute, all gateways */
};

struct dviews {
	struct dview *a;
	size_t n, cap;
};

static struct dview *
dview_get(struct dviews *dv, const char *key)
{
	for (size_t i = 0; i < dv->n; i++)
		if (strcmp(dv->a[i].key, key) == 0)
			return &dv->a[i];
	dv->a = grow(dv->a, &dv->cap, dv->n, sizeof(*dv->a));
	memset(&dv->a[dv->n], 0, sizeof(dv->a[0]));
	snprintf(dv->a[dv->n].key, sizeof(dv->a[0].key), "%s", key);
	return &dv->a[dv->n++];
}

/* Messages handed to a session: held but no longer queued. */
static size_t
in_flight(const struct dispatch_dest_view *v)
{
	return v->held > v->queued ? v->held - v->queued : 0;
}

static void
add_live(void *arg, const struct dispatch_dest_view *v)
{
	struct dview *e = dview_get(arg, v->key);

	e->live = true;
	e->v = *v;
	snprintf(e->host, sizeof(e->host), "%s", v->host);
	snprintf(e->last_reply, sizeof(e->last_reply), "%s", v->last_reply);
}

/* Sends in the last 60 s, estimated from the minute buckets: all of the
 * current minute and the part of the previous one still in the window. */
static double
series_rate(const struct series *se)
{
	time_t now = time(NULL);
	int64_t m = (int64_t)(now / 60);
	double frac = (double)(now % 60) / 60, n = 0;

	if (se->minute[m % MINUTES] == m)
		n += se->n[m % MINUTES];
	if (se->minute[(m - 1) % MINUTES] == m - 1)
		n += se->n[(m - 1) % MINUTES] * (1 - frac);
	return n / 60;
}

static void
dviews_build(struct status *st, struct dviews *dv)
{
	for (size_t i = 0; i < st->nqueues; i++)
		dview_get(dv, st->queues[i].dest)->db = &st->queues[i];
	if (st->d)
		dispatch_each_dest(st->d, add_live, dv);
	for (size_t i = 0; i < st->nseries; i++)
		for (size_t k = 0; k < dv->n; k++)
			if (strcmp(dv->a[k].key, st->series[i].dest) == 0)
				dv->a[k].rate = series_rate(&st->series[i]);
}

static void
json_dests(struct evbuffer *b, const struct dviews *dv)
{
	evbuffer_add_printf(b, ",\"dests\":[");
	for (size_t i = 0; i < dv->n; i++) {
		const struct dview *e = &dv->a[i];
		const struct store_queue_row *q = e->db;
		unsigned queued = q ? q->queued : 0, leased = q ? q->leased : 0, deferred = q ? q->deferred : 0;
		evbuffer_add_printf(b, "%s{", i ? "," : "");
		json_kv(b, "dest", e->key, false);
		evbuffer_add_printf(b, ",\"depth\":%u,\"queued\":%u,\"leased\":%u,\"deferred\":%u,\"rate\":%.3f",
		    queued + leased + deferred, queued, leased, deferred, e->rate);
		evbuffer_add_printf(b, ",\"factor\":%.3f", e->live ? e->v.factor : q ? q->factor : 1);
		json_kv(b, "suspended_until", q ? q->suspended_until : "", true);
		json_kv(b, "reason", q ? q->reason : "", true);
		json_kv(b, "last_reply", e->live && *e->last_reply ? e->last_reply : q ? q->last_reply : "", true);
		json_kv(b, "host", e->host, true);
		evbuffer_add_printf(b, ",\"live\":%s", e->live ? "true" : "false");
		if (e->live)
			evbuffer_add_printf(b, ",\"held\":%zu,\"waiting\":%zu,\"in_flight\":%zu,\"sessions\":%u,"
			    "\"paced\":%s,\"pace_rate\":%.3f,\"suspended_s\":%.1f",
			    e->v.held, e->v.queued, in_flight(&e->v), e->v.sessions,
			    e->v.paced ? "true" : "false", e->v.pace_rate * e->v.factor, e->v.suspended_ms / 1000);
		evbuffer_add_printf(b, "}");
	}
	evbuffer_add_printf(b, "]");
}

static void
json_failures(struct status *st, struct evbuffer *b)
{
	evbuffer_add_printf(b, ",\"failures\":[");
	for (size_t i = 0; i < st->nfailures; i++) {
		const struct store_status_failure *f = &st->failures[i];
		evbuffer_add_printf(b, "%s{\"id\":%llu,\"job\":%llu,\"code\":%d", i ? "," : "",
		    (unsigned long long)f->id, (unsigned long long)f->job_id, f->code);
		json_kv(b, "at", f->at, true);
		json_kv(b, "address", f->address, true);
		json_kv(b, "dest", f->dest, true);
		json_kv(b, "outcome", f->outcome, true);
		json_kv(b, "status", f->status, true);
		json_kv(b, "text", f->text, true);
		evbuffer_add_printf(b, "}");
	}
	evbuffer_add_printf(b, "]");
}

static void
json_chart(struct status *st, struct evbuffer *b)
{
	int64_t last = (int64_t)(time(NULL) / 60), first = last - (MINUTES - 1);

	evbuffer_add_printf(b, ",\"chart\":{\"first_minute\":%lld,\"series\":[", (long long)first);
	for (size_t i = 0; i < st->nseries; i++) {
		const struct series *se = &st->series[i];
		evbuffer_add_printf(b, "%s{", i ? "," : "");
		json_kv(b, "dest", se->dest, false);
		evbuffer_add_printf(b, ",\"counts\":[");
		for (int64_t m = first; m <= last; m++)
			evbuffer_add_printf(b, "%s%u", m > first ? "," : "",
			    se->minute[m % MINUTES] == m ? se->n[m % MINUTES] : 0);
		evbuffer_add_printf(b, "]}");
	}
	evbuffer_add_printf(b, "]}");
}

static void
write_json(struct status *st, struct evbuffer *b)
{
	struct dviews dv = { 0 };

	evbuffer_add_printf(b, "{\"now\":%.3f", (double)clock_wall_ms() / 1000);
	json_kv(b, "node", st->cf->node, true);
	evbuffer_add_printf(b, ",\"snapshot_age\":%.3f,\"refresh_every\":%.3f",
	    st->taken ? (double)(clock_mono_ms() - st->taken) / 1000 : -1.0, (double)st->period_ms / 1000);
	json_kv(b, "db_error", st->err, true);
	json_jobs(st, b);
	dviews_build(st, &dv);
	json_dests(b, &dv);
	free(dv.a);
	json_failures(st, b);
	json_chart(st, b);
	evbuffer_add_printf(b, "}\n");
}

/* ---- metrics ---- */

static void
gauge_dest(struct evbuffer *b, const char *name, const char *key, double v)
{
	evbuffer_add_printf(b, "%s{dest=\"", name);
	metrics_label(b, key);
	evbuffer_add_printf(b, "\"} %.6g\n", v);
}

static void
write_dest_metrics(struct evbuffer *b, const struct dviews *dv)
{
	static const char *const qstates[] = { "queued", "leased", "deferred" };

	metrics_family(b, "hato_dest_queue", "gauge",
	    "Deliveries waiting per destination in the job store (all gateways), by state.");
	for (size_t i = 0; i < dv->n; i++)
		for (int s = 0; s < 3 && dv->a[i].db; s++) {
			const struct store_queue_row *q = dv->a[i].db;
			evbuffer_add_printf(b, "hato_dest_queue{dest=\"");
			metrics_label(b, dv->a[i].key);
			evbuffer_add_printf(b, "\",state=\"%s\"} %u\n", qstates[s],
			    s == 0 ? q->queued : s == 1 ? q->leased : q->deferred);
		}
	metrics_family(b, "hato_dest_held", "gauge", "Messages of a destination held by this gateway.");
	for (size_t i = 0; i < dv->n; i++)
		if (dv->a[i].live)
			gauge_dest(b, "hato_dest_held", dv->a[i].key, (double)dv->a[i].v.held);
	metrics_family(b, "hato_dest_in_flight_messages", "gauge",
	    "Messages of a destination handed to an SMTP session of this gateway.");
	for (size_t i = 0; i < dv->n; i++)
		if (dv->a[i].live)
			gauge_dest(b, "hato_dest_in_flight_messages", dv->a[i].key,
			    (double)in_flight(&dv->a[i].v));
	metrics_family(b, "hato_dest_connections", "gauge", "SMTP connections open to a destination.");
	for (size_t i = 0; i < dv->n; i++)
		if (dv->a[i].live)
			gauge_dest(b, "hato_dest_connections", dv->a[i].key, dv->a[i].v.sessions);
	metrics_family(b, "hato_dest_pace_factor", "gauge",
	    "Fraction of a destination's configured pace in use (1 when unpaced).");
	for (size_t i = 0; i < dv->n; i++)
		gauge_dest(b, "hato_dest_pace_factor", dv->a[i].key,
		    dv->a[i].live ? dv->a[i].v.factor : dv->a[i].db ? dv->a[i].db->factor : 1);
	metrics_family(b, "hato_dest_suspended", "gauge", "1 while a destination is suspended.");
	for (size_t i = 0; i < dv->n; i++)
		gauge_dest(b, "hato_dest_suspended", dv->a[i].key,
		    (dv->a[i].live && dv->a[i].v.suspended_ms > 0) ||
		    (dv->a[i].db && *dv->a[i].db->suspended_until) ? 1 : 0);
}

static void
write_metrics(struct status *st, struct evbuffer *b)
{
	struct dviews dv = { 0 };

	metrics_write(b);
	dviews_build(st, &dv);
	write_dest_metrics(b, &dv);
	free(dv.a);
	metrics_family(b, "hato_jobs", "gauge",
	    "Jobs in the job store by state (what intake accepted, held or finished).");
	for (size_t i = 0; i < st->njstates; i++) {
		evbuffer_add_printf(b, "hato_jobs{state=\"");
		metrics_label(b, st->jstates[i].state);
		evbuffer_add_printf(b, "\"} %llu\n", (unsigned long long)st->jstates[i].n);
	}
	metrics_family(b, "hato_status_snapshot_age_seconds", "gauge",
	    "Age of the job store snapshot behind these figures (-1: none yet).");
	evbuffer_add_printf(b, "hato_status_snapshot_age_seconds %.3f\n",
	    st->taken ? (double)(clock_mono_ms() - st->taken) / 1000 : -1.0);
	metrics_family(b, "hato_status_db_up", "gauge", "1 when the last snapshot refresh read the job store.");
	evbuffer_add_printf(b, "hato_status_db_up %d\n", st->taken && !*st->err ? 1 : 0);
}

/* ---- requests ---- */

static void
answer(struct status *st, struct evhttp_request *req, enum status_what what)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	struct evbuffer *b = evbuffer_new();

	if (!b)
		fatalx("status: out of memory");
	if (what == STATUS_JSON) {
		write_json(st, b);
		evhttp_add_header(out, "Content-Type", "application/json; charset=utf-8");
	} else {
		write_metrics(st, b);
		evhttp_add_header(out, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	}
	evhttp_add_header(out, "Cache-Control", "no-store");
	evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD)
		evbuffer_drain(b, evbuffer_get_length(b));
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

void
status_serve(struct status *st, struct evhttp_request *req, enum status_what what)
{
	uint64_t now = clock_mono_ms();

	st->last_view = now;
	if (!evtimer_pending(st->tick, NULL))
		on_tick(-1, 0, st);
	/* Older than two periods: the ticker had stopped, wait for news. */
	if ((st->taken && now - st->taken < 2 * st->period_ms) || st->nwaiting == MAX_WAITING ||
	    (*st->err && !st->refreshing)) {
		answer(st, req, what);
		return;
	}
	st->waiting[st->nwaiting].req = req;
	st->waiting[st->nwaiting++].what = what;
	refresh(st);
}

struct status *
status_new(struct event_base *base, const struct hato_config *cf, struct dispatch *d)
{
	struct status *st = calloc(1, sizeof(*st));

	if (!st)
		fatalx("status: out of memory");
	st->base = base;
	st->cf = cf;
	st->d = d;
	st->w = worker_create(base, "status-db", store_worker_init, store_worker_fini, (void *)cf);
	st->tick = evtimer_new(base, on_tick, st);
	st->period_ms = REFRESH_MS;
	return st;
}

void
status_free(struct status *st)
{
	if (!st)
		return;
	worker_free(st->w);
	event_free(st->tick);
	free(st->jobs);
	free(st->queues);
	free(st);
}
