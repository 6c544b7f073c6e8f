/*
 * destq: a destination's queue, its SMTP sessions, its pace and its
 * suspension.
 *
 * Messages wait in a FIFO. destq_kick() opens sessions while there is work,
 * fewer than `connections` are open and the destination is not suspended.
 * A ready session offers itself (conn_offer): it takes the next message
 * when the pace has a slot now, waits parked for the next slot when it is
 * near, and quits when it has sent `per_connection` messages, when the
 * queue is empty, or when the wait is long. One timer per destination wakes
 * the parked sessions at the next slot or at the end of a suspension.
 *
 * Failures: a session that could not be set up reports its reason. For an
 * MX destination the next host is tried; when no host (or the relay) is
 * left to try and no other session of the destination is working, every
 * queued message gets that reason as its outcome (the owner defers it), so
 * a dead destination never sits on its leases and never holds up another
 * destination. A 421, or a 4xx whose text the policy names, from a paced
 * destination suspends it: no message starts until the suspension ends,
 * and the owner shares the suspension and the halved rate through the
 * database with every other gateway.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/duration.h"
#include "core/log.h"
#include "gateway/destq.h"
#include "gateway/pace.h"

#define PARK_MAX_MS 30000	/* longer waits close the session */
#define MAX_HOSTS 32

struct dhost {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char name[256];
};

struct dconn {
	LIST_ENTRY(dconn) entry;
	LIST_ENTRY(dconn) parked;
	struct destq *dq;
	struct smtpc *c;
	struct dmsg *cur;
	unsigned sent;
	bool ready_seen, is_parked;
	char host[256];
	struct sockaddr_storage addr;
};

struct destq {
	char key[300];
	char domain[256];
	struct event_base *base;
	const struct relay_conf *relay;
	struct limits lim;
	char suspend_on[256];
	struct smtpc_conf proto;
	struct destq_owner owner;
	struct dmsg_list queue;
	size_t nqueued;
	LIST_HEAD(, dconn) conns;
	LIST_HEAD(, dconn) parked;
	unsigned nconns;
	bool stopped;
	struct pace *pace;		/* NULL: unpaced */
	struct event *tick;
	/* MX destinations */
	struct dhost hosts[MAX_HOSTS];
	size_t nhosts, host_idx;
	bool resolving, hosts_stale;
	char last_host[256];		/* a copy: sessions come and go */
};

static void destq_kick(struct destq *dq);
static void conn_offer(struct dconn *dc);
static double closed_for(const struct destq *dq);

static double
now_ms(void)
{
	return (double)clock_mono_ms();
}

static struct dmsg *
pop(struct destq *dq)
{
	struct dmsg *m = TAILQ_FIRST(&dq->queue);

	if (m) {
		TAILQ_REMOVE(&dq->queue, m, entry);
		dq->nqueued--;
	}
	return m;
}

static void
tick_at(struct destq *dq, double wait_ms)
{
	struct timeval tv;

	if (wait_ms < 0)
		wait_ms = 0;
	tv.tv_sec = (time_t)(wait_ms / 1000);
	tv.tv_usec = (suseconds_t)((wait_ms - (double)tv.tv_sec * 1000) * 1000);
	evtimer_add(dq->tick, &tv);
}

static void
park(struct dconn *dc)
{
	if (!dc->is_parked) {
		LIST_INSERT_HEAD(&dc->dq->parked, dc, parked);
		dc->is_parked = true;
	}
}

static void
unpark(struct dconn *dc)
{
	if (dc->is_parked) {
		LIST_REMOVE(dc, parked);
		dc->is_parked = false;
	}
}

static void
maybe_reserve(struct destq *dq)
{
	unsigned k;

	if (!dq->pace || dq->stopped)
		return;
	if ((k = pace_want(dq->pace, now_ms(), dq->nqueued)))
		dq->owner.reserve(dq, k, pace_base_gap_us(dq->pace),
		    pace_take_increase(dq->pace), dq->owner.arg);
}

/* Hand the session its next message, if the pace allows it now. */
static void
conn_send_next(struct dconn *dc)
{
	struct destq *dq = dc->dq;
	struct smtpc_reply why;
	struct dmsg *m;
	int rc;

	while ((m = pop(dq))) {
		memset(&why, 0, sizeof(why));
		if ((rc = dq->owner.prepare(dq, m, &why, dq->owner.arg)) < 0) {
			why.code = rc == -2 ? DESTQ_DROPPED : why.code;
			dq->owner.result(dq, m, &why, dq->owner.arg);
			continue;
		}
		dc->cur = m;
		dc->sent++;
		if (smtpc_send(dc->c, &m->msg) == 0)
			return;
		dc->cur = NULL;
		snprintf(why.text, sizeof(why.text), "session not ready for a message");
		why.stage = SMTPC_MAIL;
		dq->owner.result(dq, m, &why, dq->owner.arg);
	}
	smtpc_quit(dc->c);
}

/*
 * Milliseconds until sending is allowed by the send window and the quiet
 * minutes (local time, the process's TZ); 0 when it is allowed now.
 */
static double
closed_for(const struct destq *dq)
{
	const struct limits *l = &dq->lim;
	struct timespec ts;
	struct tm tm;
	time_t t;

	if (l->window.from < 0 && l->quiet_minutes == 0)
		return 0;
	clock_gettime(CLOCK_REALTIME, &ts);
	t = ts.tv_sec;
	/* Walk minute by minute to the first open one (a day at most). */
	for (int step = 0; step < 24 * 60 + 1; step++, t += 60) {
		localtime_r(&t, &tm);
		int mod = tm.tm_hour * 60 + tm.tm_min;
		bool in_window = l->window.from < 0 ||
		    (l->window.from < l->window.to ? mod >= l->window.from && mod < l->window.to
		    : mod >= l->window.from || mod < l->window.to);
		bool quiet = tm.tm_min < (int)l->quiet_minutes;
		if (in_window && !quiet) {
			if (step == 0)
				return 0;
			/* The start of that minute. */
			double until = (double)(t - tm.tm_sec) * 1000;
			return until - ((double)ts.tv_sec * 1000 + ts.tv_nsec / 1e6);
		}
	}
	return 0;	/* a window that never opens was refused at load */
}

static void
conn_offer(struct dconn *dc)
{
	struct destq *dq = dc->dq;
	double wait;

	unpark(dc);
	if (dq->stopped || dc->sent >= dq->lim.per_connection || dq->nqueued == 0) {
		smtpc_quit(dc->c);
		return;
	}
	if ((wait = closed_for(dq)) > 0) {
		/* Outside the send window: close now, come back when it opens. */
		smtpc_quit(dc->c);
		tick_at(dq, wait);
		return;
	}
	if (dq->pace && !pace_take(dq->pace, now_ms(), &wait)) {
		maybe_reserve(dq);
		if (wait > PARK_MAX_MS) {
			smtpc_quit(dc->c);
			tick_at(dq, wait);
			return;
		}
		park(dc);
		if (wait >= 0 && (!evtimer_pending(dq->tick, NULL) || wait < 1))
			tick_at(dq, wait);
		return;
	}
	conn_send_next(dc);
	maybe_reserve(dq);
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct destq *dq = arg;
	struct dconn *dc;

	(void)fd, (void)what;
	/* conn_offer parks again those whose slot has not come. */
	while ((dc = LIST_FIRST(&dq->parked))) {
		unpark(dc);
		conn_offer(dc);
		if (LIST_FIRST(&dq->parked) == dc)
			break;
	}
	destq_kick(dq);
}

static void
conn_ready(struct smtpc *c, void *arg)
{
	struct dconn *dc = arg;

	if (!dc->ready_seen)
		log_info("dest=%s host=%s connected tls=\"%s\" peer=\"%s\"", dc->dq->key, dc->host,
		    smtpc_tls_info(c), smtpc_tls_peer(c));
	dc->ready_seen = true;
	conn_offer(dc);
}

static bool
text_matches(const char *text, const char *list)
{
	char buf[256], *tok, *save = NULL;

	snprintf(buf, sizeof(buf), "%s", list);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		while (isspace((unsigned char)*tok))
			tok++;
		if (*tok && strcasestr(text, tok))
			return true;
	}
	return false;
}

/* A 421, or a 4xx the policy names, from a paced destination. */
static void
maybe_suspend(struct destq *dq, const struct smtpc_reply *r)
{
	char why[600], q[600];

	if (!dq->pace || r->code / 100 != 4)
		return;
	if (r->code != 421 && !(*dq->suspend_on && text_matches(r->text, dq->suspend_on)))
		return;
	if (destq_suspended(dq))
		return;
	pace_suspend(dq->pace, now_ms(), dq->lim.suspend_ms);
	snprintf(why, sizeof(why), "%d %s", r->code, r->text);
	log_notice("dest=%s pace=suspended for_ms=%llu rate=%.2f/s reason=%s", dq->key,
	    (unsigned long long)dq->lim.suspend_ms, pace_rate(dq->pace), log_quote(q, sizeof(q), why));
	dq->owner.suspend(dq, dq->lim.suspend_ms, why, dq->owner.arg);
	tick_at(dq, (double)dq->lim.suspend_ms);
}

static void
conn_done(struct smtpc *c, const struct smtpc_msg *msg, const struct smtpc_reply *r, void *arg)
{
	struct dconn *dc = arg;
	struct destq *dq = dc->dq;
	struct dmsg *m = dc->cur;

	(void)c, (void)msg;
	dc->cur = NULL;
	if (dq->pace && r->code / 100 == 2)
		pace_success(dq->pace);
	maybe_suspend(dq, r);
	if (m)
		dq->owner.result(dq, m, r, dq->owner.arg);
}

/* Nobody is left to send what is queued: give it all back with the reason. */
static void
fail_queue(struct destq *dq, const struct smtpc_reply *why)
{
	struct dmsg *m;

	while ((m = pop(dq)))
		dq->owner.result(dq, m, why, dq->owner.arg);
}

static void
conn_setup_failed(struct destq *dq, const struct smtpc_reply *why, const char *host)
{
	char q[600];

	log_warn("dest=%s host=%s stage=%s code=%d reply=%s", dq->key, host,
	    smtpc_stage_name(why->stage), why->code, log_quote(q, sizeof(q), why->text));
	maybe_suspend(dq, why);
	if (!dq->relay && dq->host_idx + 1 < dq->nhosts) {
		dq->host_idx++;	/* the next MX host */
		return;
	}
	if (dq->nconns == 0) {
		dq->host_idx = 0;
		dq->hosts_stale = true;
		fail_queue(dq, why);
	}
}

static void
conn_closed(struct smtpc *c, const struct smtpc_reply *why, void *arg)
{
	struct dconn *dc = arg;
	struct destq *dq = dc->dq;

	(void)c;
	unpark(dc);
	LIST_REMOVE(dc, entry);
	dq->nconns--;
	if (why && !dc->ready_seen)
		conn_setup_failed(dq, why, dc->host);
	else if (why)
		maybe_suspend(dq, why);
	free(dc);
	if (dq->nconns == 0 && dq->nqueued == 0 && dq->owner.idle)
		dq->owner.idle(dq, dq->owner.arg);
	else
		destq_kick(dq);
}

static const struct smtpc_cbs conn_cbs = {
	.ready = conn_ready, .done = conn_done, .closed = conn_closed,
};

/* Where the next session goes: the relay, or the current MX host. */
static bool
pick_host(struct destq *dq, struct dconn *dc, struct smtpc_conf *conf)
{
	*conf = dq->proto;
	if (dq->relay) {
		memcpy(&dc->addr, &dq->relay->addr, dq->relay->addrlen);
		conf->addrlen = dq->relay->addrlen;
		snprintf(dc->host, sizeof(dc->host), "%s", dq->relay->host);
	} else {
		const struct dhost *h = &dq->hosts[dq->host_idx];
		memcpy(&dc->addr, &h->addr, h->addrlen);
		conf->addrlen = h->addrlen;
		snprintf(dc->host, sizeof(dc->host), "%s", h->name);
	}
	conf->addr = (const struct sockaddr *)&dc->addr;
	conf->host = dc->host;
	snprintf(dq->last_host, sizeof(dq->last_host), "%s", dc->host);
	return true;
}

static bool
hosts_ready(struct destq *dq)
{
	if (dq->relay)
		return true;
	if (dq->nhosts && !dq->hosts_stale)
		return true;
	if (!dq->resolving) {
		dq->resolving = true;
		dq->owner.resolve(dq, dq->owner.arg);
	}
	return false;
}

static void
destq_kick(struct destq *dq)
{
	double closed;

	if (dq->stopped || dq->nqueued == 0)
		return;
	if ((closed = closed_for(dq)) > 0) {
		if (!evtimer_pending(dq->tick, NULL))
			log_info("dest=%s closed by its send window for %.0f s", dq->key, closed / 1000);
		tick_at(dq, closed);
		return;
	}
	if (dq->pace && destq_suspended(dq))
		return;
	if (!hosts_ready(dq))
		return;
	/* Paced: no session before a slot is near. */
	if (dq->pace && dq->pace->count == 0) {
		maybe_reserve(dq);
		if (dq->nconns)
			return;
	}
	while (!dq->stopped && dq->nqueued > dq->nconns && dq->nconns < dq->lim.connections) {
		struct dconn *dc = calloc(1, sizeof(*dc));
		struct smtpc_conf conf;
		if (!dc)
			fatalx("destq: out of memory");
		dc->dq = dq;
		pick_host(dq, dc, &conf);
		LIST_INSERT_HEAD(&dq->conns, dc, entry);
		dq->nconns++;
		if (!(dc->c = smtpc_open(dq->base, &conf, &conn_cbs, dc))) {
			struct smtpc_reply why = { .code = 0, .stage = SMTPC_CONNECT };
			snprintf(why.text, sizeof(why.text), "cannot create a socket");
			LIST_REMOVE(dc, entry);
			dq->nconns--;
			free(dc);
			if (dq->nconns == 0)
				fail_queue(dq, &why);
			return;
		}
	}
}

static void
apply_limits(struct destq *dq, const struct relay_conf *relay, const struct limits *lim,
    const char *suspend_on)
{
	dq->relay = relay;
	dq->lim = *lim;
	if (dq->lim.connections == 0)
		dq->lim.connections = 1;
	if (dq->lim.per_connection == 0)
		dq->lim.per_connection = 1;
	snprintf(dq->suspend_on, sizeof(dq->suspend_on), "%s", suspend_on ? suspend_on : "");
	if (lim->messages && lim->interval_ms) {
		double factor = dq->pace ? dq->pace->factor : 1;
		if (dq->pace)
			pace_fini(dq->pace);
		else if (!(dq->pace = calloc(1, sizeof(*dq->pace))))
			fatalx("destq: out of memory");
		/* New limits, new slots: the old ones were for the old gap. */
		pace_init(dq->pace, lim->messages, lim->interval_ms);
		dq->pace->factor = factor;
	} else if (dq->pace) {
		pace_fini(dq->pace);
		free(dq->pace);
		dq->pace = NULL;
	}
}

struct destq *
destq_new(struct event_base *base, const char *key, const char *domain,
    const struct relay_conf *relay, const struct limits *lim, const char *suspend_on,
    const struct smtpc_conf *proto, const struct destq_owner *owner)
{
	struct destq *dq = calloc(1, sizeof(*dq));

	if (!dq)
		fatalx("destq: out of memory");
	snprintf(dq->key, sizeof(dq->key), "%s", key);
	snprintf(dq->domain, sizeof(dq->domain), "%s", domain ? domain : "");
	dq->base = base;
	dq->proto = *proto;
	dq->owner = *owner;
	TAILQ_INIT(&dq->queue);
	LIST_INIT(&dq->conns);
	LIST_INIT(&dq->parked);
	dq->tick = evtimer_new(base, on_tick, dq);
	apply_limits(dq, relay, lim, suspend_on);
	return dq;
}

void
destq_update(struct destq *dq, const struct relay_conf *relay, const struct limits *lim,
    const char *suspend_on, const struct smtpc_conf *proto)
{
	dq->proto = *proto;
	apply_limits(dq, relay, lim, suspend_on);
	destq_kick(dq);
}

void
destq_free(struct destq *dq)
{
	struct dconn *dc;

	if (!dq)
		return;
	while ((dc = LIST_FIRST(&dq->conns))) {
		LIST_REMOVE(dc, entry);
		smtpc_abort(dc->c);
		free(dc);
	}
	event_free(dq->tick);
	if (dq->pace)
		pace_fini(dq->pace);
	free(dq->pace);
	free(dq);
}

const char *
destq_key(const struct destq *dq)
{
	return dq->key;
}

const char *
destq_domain(const struct destq *dq)
{
	return dq->domain;
}

const char *
destq_host(const struct destq *dq)
{
	return *dq->last_host ? dq->last_host : NULL;
}

const struct limits *
destq_limits(const struct destq *dq)
{
	return &dq->lim;
}

double
destq_factor(const struct destq *dq)
{
	return dq->pace ? dq->pace->factor : 1;
}

double
destq_local_rate(const struct destq *dq)
{
	return dq->pace ? pace_local_rate(dq->pace) : -1;
}

bool
destq_suspended(const struct destq *dq)
{
	return dq->pace && dq->pace->suspended_until > now_ms();
}

double
destq_suspended_ms(const struct destq *dq)
{
	return destq_suspended(dq) ? dq->pace->suspended_until - now_ms() : 0;
}

void
destq_push(struct destq *dq, struct dmsg *m)
{
	struct dconn *dc;

	TAILQ_INSERT_TAIL(&dq->queue, m, entry);
	dq->nqueued++;
	/* A session idling for work takes it; otherwise open one. */
	if ((dc = LIST_FIRST(&dq->parked)) && (!dq->pace || dq->pace->count)) {
		conn_offer(dc);
		return;
	}
	destq_kick(dq);
}

void
destq_take_queued(struct destq *dq, struct dmsg_list *out)
{
	struct dmsg *m;

	while ((m = pop(dq)))
		TAILQ_INSERT_TAIL(out, m, entry);
}

void
destq_stop(struct destq *dq)
{
	struct dconn *dc;

	dq->stopped = true;
	evtimer_del(dq->tick);
	while ((dc = LIST_FIRST(&dq->parked))) {
		unpark(dc);
		smtpc_quit(dc->c);
	}
}

unsigned
destq_sessions(const struct destq *dq)
{
	return dq->nconns;
}

size_t
destq_queued(const struct destq *dq)
{
	return dq->nqueued;
}

void
destq_pace_grant(struct destq *dq, const struct store_pace *res, unsigned k, double offset_ms)
{
	char q[300];
	double before;

	if (!dq->pace)
		return;
	before = dq->pace->factor;
	pace_grant(dq->pace, res->start, res->gap, k, offset_ms, res->factor, res->suspended_until);
	/* Every tenth of the configured rate gained or lost is logged. */
	if (floor(dq->pace->factor * 10) != floor(before * 10))
		log_info("dest=%s pace rate=%.2f/s factor=%.3f reason=%s", dq->key, pace_rate(dq->pace),
		    dq->pace->factor, log_quote(q, sizeof(q), dq->pace->factor > before ?
		    "recovering after successes" : "shared state from another gateway"));
	if (destq_suspended(dq))
		tick_at(dq, dq->pace->suspended_until - now_ms());
	on_tick(-1, 0, dq);
}

void
destq_pace_failed(struct destq *dq)
{
	if (!dq->pace)
		return;
	pace_grant_failed(dq->pace);
	/* Try again in a second; meanwhile parked sessions wait. */
	tick_at(dq, 1000);
}

void
destq_set_hosts(struct destq *dq, const struct mxres_answer *a)
{
	struct smtpc_reply why = { .code = 0, .stage = SMTPC_CONNECT };

	dq->resolving = false;
	if (a->status != MXRES_OK) {
		snprintf(why.status, sizeof(why.status), "%s",
		    a->status == MXRES_PERMFAIL ? "5.1.2" : "4.4.3");
		snprintf(why.text, sizeof(why.text), "%s", a->why);
		dq->nhosts = 0;
		fail_queue(dq, &why);
		return;
	}
	dq->nhosts = 0;
	for (size_t i = 0; i < a->nhosts && dq->nhosts < MAX_HOSTS; i++) {
		struct dhost *h = &dq->hosts[dq->nhosts++];
		memcpy(&h->addr, &a->hosts[i].addr, a->hosts[i].addrlen);
		h->addrlen = a->hosts[i].addrlen;
		snprintf(h->name, sizeof(h->name), "%s", a->hosts[i].name);
	}
	dq->host_idx = 0;
	dq->hosts_stale = false;
	destq_kick(dq);
}
