/*
 * dispatch: claims, routes, composes and records.
 *
 * All database work runs on one worker thread (claims, job loads and
 * result batches are queued to it in order); the event loop only moves
 * messages between the job table, the destination queues and the result
 * buffer. A claim is made when fewer than half a batch is in memory, so a
 * gateway never leases far more than it is sending. Outcomes are buffered
 * and written in one transaction per batch; a batch the database refuses
 * is kept and tried again, never dropped (its leases may run out meanwhile
 * and the deliveries be sent again: at-least-once, bounded by what was in
 * flight).
 *
 * Each job's body is loaded and encoded once (compose_prepare) and shared
 * by all its messages through a reference count; only the header block is
 * built per recipient, just before the message is handed to a session.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf/config.h"
#include "core/duration.h"
#include "core/log.h"
#include "core/worker.h"
#include "gateway/compose.h"
#include "gateway/destq.h"
#include "gateway/dispatch.h"
#include "routes/routes.h"
#include "sql/store.h"

#define JOB_BUCKETS 1024
#define DEST_BUCKETS 256
#define RECORD_BATCH 256
#define FLUSH_DELAY_MS 20
#define DB_RETRY_MS 1000

struct djob {
	struct djob *next;		/* hash chain */
	struct dispatch *d;
	uint64_t id;
	unsigned refs;
	bool loading;
	struct compose_body *body;
	char err[300];			/* why it cannot be composed, or "" */
	struct dmsg_list waiting;	/* messages waiting for the load */
};

struct dest {
	struct dest *next;
	struct destq *dq;
	char *unavailable;		/* deliveries here are deferred with this reason */
};

struct dispatch {
	struct event_base *base;
	const struct hato_config *cf;
	struct worker *db;
	struct event *claim_ev, *flush_ev;
	struct djob *jobs[JOB_BUCKETS];
	struct dest *dests[DEST_BUCKETS];
	size_t inflight;		/* messages claimed and not yet recorded */
	unsigned loads;			/* job loads in the works */
	bool claiming, recording, stopping, releasing;
	struct store_result *res;
	size_t nres, capres;
	bool db_down;
	void (*on_done)(void *);
	void *done_arg;
	struct smtpc_conf proto;
};

static void claim_soon(struct dispatch *d, uint64_t ms);
static void flush_soon(struct dispatch *d, uint64_t ms);
static void maybe_finished(struct dispatch *d);

static unsigned
hash_str(const char *s)
{
	unsigned h = 5381;

	for (; *s; s++)
		h = h * 33 + (unsigned char)*s;
	return h;
}

/* ---- the job table ---- */

static struct djob *
job_find(struct dispatch *d, uint64_t id)
{
	struct djob *j;

	for (j = d->jobs[id % JOB_BUCKETS]; j; j = j->next)
		if (j->id == id)
			return j;
	return NULL;
}

static void
job_unref(struct dispatch *d, struct djob *j)
{
	struct djob **pp;

	if (--j->refs > 0 || j->loading)
		return;
	for (pp = &d->jobs[j->id % JOB_BUCKETS]; *pp != j; pp = &(*pp)->next)
		;
	*pp = j->next;
	compose_body_free(j->body);
	free(j);
}

static void
msg_free(struct dispatch *d, struct dmsg *m)
{
	free(m->head);
	job_unref(d, m->job);
	free(m);
	d->inflight--;
}

/* ---- outcomes ---- */

static int
classify(const struct dispatch *d, const struct dmsg *m, const struct smtpc_reply *r, char *note, size_t notelen)
{
	unsigned attempts = m->lease.attempts + 1;
	double age = (double)time(NULL) - m->lease.created;

	note[0] = '\0';
	if (r->code >= 200 && r->code < 300 && r->stage == SMTPC_DOT)
		return OUTCOME_SENT;
	if (r->code >= 500)
		return OUTCOME_FAILED;
	if (attempts >= d->cf->max_attempts) {
		snprintf(note, notelen, "gave up after %u attempts: ", attempts);
		return OUTCOME_FAILED;
	}
	if (age * 1000 >= (double)d->cf->max_age_ms) {
		snprintf(note, notelen, "expired after %.0f s: ", age);
		return OUTCOME_FAILED;
	}
	return OUTCOME_DEFERRED;
}

static void
add_result(struct dispatch *d, struct dmsg *m, const char *dest, const char *host,
    const struct smtpc_reply *r)
{
	struct store_result *res;
	char note[64], q[600];

	if (d->nres == d->capres) {
		d->capres = d->capres ? d->capres * 2 : 256;
		if (!(d->res = realloc(d->res, d->capres * sizeof(*d->res))))
			fatalx("dispatch: out of memory");
	}
	res = &d->res[d->nres++];
	memset(res, 0, sizeof(*res));
	res->id = m->lease.id;
	res->job_id = m->lease.job_id;
	res->outcome = classify(d, m, r, note, sizeof(note));
	res->code = r->code;
	snprintf(res->status, sizeof(res->status), "%s", r->status);
	snprintf(res->text, sizeof(res->text), "%s%s", note, r->text);
	snprintf(res->stage, sizeof(res->stage), "%s", smtpc_stage_name(r->stage));
	snprintf(res->dest, sizeof(res->dest), "%s", dest);
	snprintf(res->host, sizeof(res->host), "%s", host ? host : "");
	if (res->outcome == OUTCOME_DEFERRED)
		res->retry_ms = config_retry_delay_ms(d->cf, m->lease.attempts + 1);
	log_info("delivery job=%llu dlv=%llu dest=%s host=%s attempt=%u status=%s stage=%s code=%d reply=%s",
	    (unsigned long long)m->lease.job_id, (unsigned long long)m->lease.id, dest,
	    *res->host ? res->host : "-", m->lease.attempts + 1, store_outcome_name(res->outcome),
	    res->stage, r->code, log_quote(q, sizeof(q), res->text));
	msg_free(d, m);
	flush_soon(d, d->nres >= RECORD_BATCH ? 0 : FLUSH_DELAY_MS);
}

/* A message that never reached a session. */
static void
defer_msg(struct dispatch *d, struct dmsg *m, const char *dest, int stage, const char *why)
{
	struct smtpc_reply r = { .code = 0, .stage = stage };

	snprintf(r.text, sizeof(r.text), "%s", why);
	add_result(d, m, dest, NULL, &r);
}

/* ---- destinations ---- */

static int
on_prepare(struct destq *dq, struct dmsg *m, struct smtpc_reply *why, void *arg)
{
	struct compose_rcpt rc = { .to = m->rcpt, .delivery_id = m->lease.id };
	size_t len;

	(void)dq, (void)arg;
	if (!(m->head = compose_head(m->job->body, &rc, time(NULL), &len))) {
		why->stage = SMTPC_CONNECT;
		snprintf(why->text, sizeof(why->text), "cannot compose the header for %s", m->rcpt);
		return -1;
	}
	m->msg.mail_from = m->mail_from;
	m->msg.rcpt = m->rcpt;
	m->msg.head = m->head;
	m->msg.head_len = len;
	m->msg.body = m->job->body->body;
	m->msg.body_len = m->job->body->body_len;
	m->msg.arg = m;
	return 0;
}

static void
on_result(struct destq *dq, struct dmsg *m, const struct smtpc_reply *r, void *arg)
{
	struct dispatch *d = arg;

	add_result(d, m, destq_key(dq), destq_host(dq), r);
}

static void
on_dest_idle(struct destq *dq, void *arg)
{
	(void)dq;
	maybe_finished(arg);
}

static struct dest *
dest_get(struct dispatch *d, const char *key, const struct relay_conf *relay,
    const struct limits *lim, const char *unavailable)
{
	unsigned b = hash_str(key) % DEST_BUCKETS;
	struct destq_owner owner = { on_prepare, on_result, on_dest_idle, d };
	struct dest *e;

	for (e = d->dests[b]; e; e = e->next)
		if (strcmp(destq_key(e->dq), key) == 0)
			return e;
	if (!(e = calloc(1, sizeof(*e))))
		fatalx("dispatch: out of memory");
	e->dq = destq_new(d->base, key, relay, lim, &d->proto, &owner);
	e->unavailable = unavailable ? strdup(unavailable) : NULL;
	e->next = d->dests[b];
	d->dests[b] = e;
	log_info("dest=%s created connections=%u per_connection=%u%s%s", key, lim->connections,
	    lim->per_connection, unavailable ? " unavailable=" : "", unavailable ? unavailable : "");
	return e;
}

/* The destination of a domain, by the route table. */
static struct dest *
route(struct dispatch *d, const char *domain, char *why, size_t whylen)
{
	const struct route *r = routes_match(d->cf->routes, domain);
	const struct pace_conf *p;
	char key[300];

	if (!r) {
		snprintf(why, whylen, "no route for %s in %s", domain, d->cf->routes_path);
		return NULL;
	}
	switch (r->kind) {
	case ROUTE_RELAY:
		snprintf(key, sizeof(key), "relay:%s", r->name);
		const struct relay_conf *rel = config_relay(d->cf, r->name);
		return dest_get(d, key, rel, &rel->lim, NULL);
	case ROUTE_PACE:
		snprintf(key, sizeof(key), "pace:%s", r->name);
		p = config_pace(d->cf, r->name);
		if (*p->relay)
			return dest_get(d, key, config_relay(d->cf, p->relay), &p->lim, NULL);
		return dest_get(d, key, NULL, &p->lim, "MX delivery is not available in this version");
	case ROUTE_MX:
		snprintf(key, sizeof(key), "mx:%s", domain);
		return dest_get(d, key, NULL, &d->cf->limits, "MX delivery is not available in this version");
	}
	return NULL;
}

static void
route_msg(struct dispatch *d, struct dmsg *m)
{
	char why[400];
	struct dest *e;

	if (*m->job->err) {
		struct smtpc_reply r = { .code = 0, .stage = SMTPC_CONNECT };
		/* The job itself cannot be written: no attempt will do better. */
		snprintf(r.text, sizeof(r.text), "%s", m->job->err);
		r.code = 554;
		snprintf(r.status, sizeof(r.status), "5.6.0");
		add_result(d, m, "-", NULL, &r);
		return;
	}
	if (!(e = route(d, m->lease.domain, why, sizeof(why)))) {
		defer_msg(d, m, "-", SMTPC_CONNECT, why);
		return;
	}
	if (e->unavailable) {
		defer_msg(d, m, destq_key(e->dq), SMTPC_CONNECT, e->unavailable);
		return;
	}
	destq_push(e->dq, m);
}

/* ---- database tasks ---- */

struct claim_task {
	struct dispatch *d;
	struct store_lease *l;
	size_t n, max;
	int rc;
	char err[300];
};

static void
claim_run(void *ctx, void *arg)
{
	struct claim_task *t = arg;

	t->rc = store_claim(ctx, t->d->cf->node, t->d->cf->lease_ms, t->max, t->l, &t->n);
	if (t->rc != STORE_OK)
		snprintf(t->err, sizeof(t->err), "%s", store_error(ctx));
}

struct load_task {
	struct dispatch *d;
	uint64_t id;
	struct compose_body *body;
	int rc;
	char err[300];
};

static void
load_run(void *ctx, void *arg)
{
	struct load_task *t = arg;
	struct store_job *j;
	const struct hato_config *cf = t->d->cf;

	if ((t->rc = store_job_get(ctx, t->id, &j)) != STORE_OK) {
		snprintf(t->err, sizeof(t->err), "%s", store_error(ctx));
		return;
	}
	struct compose_job cj = {
		.job_id = j->id, .from = j->from_addr, .subject = j->subject,
		.body = j->body, .charset = "utf-8", .domain = cf->hostname,
	};
	/* Encoding the body is pure work: done here, off the event loop. */
	t->body = compose_prepare(&cj, t->err, sizeof(t->err));
	store_job_free(j);
}

static void load_done(void *arg);

static void
load_job(struct dispatch *d, struct djob *j)
{
	struct load_task *t = calloc(1, sizeof(*t));

	if (!t)
		fatalx("dispatch: out of memory");
	t->d = d;
	t->id = j->id;
	d->loads++;
	worker_submit(d->db, load_run, load_done, t);
}

static void
retry_load(evutil_socket_t fd, short what, void *arg)
{
	struct djob *j = arg;

	(void)fd, (void)what;
	load_job(j->d, j);
}

static void
load_done(void *arg)
{
	struct load_task *t = arg;
	struct dispatch *d = t->d;
	struct djob *j = job_find(d, t->id);
	struct dmsg *m;

	d->loads--;
	if (t->rc == STORE_RETRY && !d->stopping) {
		/* Keep the messages waiting; the job is still there. */
		log_warn("job=%llu load deferred: %s", (unsigned long long)t->id, t->err);
		struct timeval tv = { DB_RETRY_MS / 1000, 0 };
		event_base_once(d->base, -1, EV_TIMEOUT, retry_load, j, &tv);
		free(t);
		return;
	}
	j->loading = false;
	j->body = t->body;
	if (!t->body)
		snprintf(j->err, sizeof(j->err), "job cannot be composed: %s", *t->err ? t->err : "unknown");
	free(t);
	j->refs++;	/* hold it while its messages are routed */
	while ((m = TAILQ_FIRST(&j->waiting))) {
		TAILQ_REMOVE(&j->waiting, m, entry);
		if (d->stopping)
			msg_free(d, m);
		else
			route_msg(d, m);
	}
	job_unref(d, j);
	maybe_finished(d);
}

/* Attach a claimed delivery to its job, loading the job when it is new. */
static void
take_lease(struct dispatch *d, const struct store_lease *l)
{
	struct dmsg *m = calloc(1, sizeof(*m));
	struct mail_addr a;
	const char *why;
	struct djob *j;

	if (!m)
		fatalx("dispatch: out of memory");
	m->lease = *l;
	d->inflight++;
	/* Stored addresses were checked at intake and are kept unquoted;
	 * quote the local part whenever it is not a plain dot-atom. */
	if (addr_parse(l->address, strlen(l->address), &a, &why) < 0) {
		const char *at = strrchr(l->address, '@');
		memset(&a, 0, sizeof(a));
		snprintf(a.local, sizeof(a.local), "%.*s", at ? (int)(at - l->address) : 0, l->address);
		snprintf(a.domain, sizeof(a.domain), "%s", at ? at + 1 : l->domain);
		a.needs_quote = true;
	}
	addr_format(&a, m->rcpt, sizeof(m->rcpt));
	snprintf(m->mail_from, sizeof(m->mail_from), "bounce+%llu@%s",
	    (unsigned long long)l->id, d->cf->bounce_domain);
	if (!(j = job_find(d, l->job_id))) {
		if (!(j = calloc(1, sizeof(*j))))
			fatalx("dispatch: out of memory");
		j->d = d;
		j->id = l->job_id;
		j->loading = true;
		TAILQ_INIT(&j->waiting);
		j->next = d->jobs[j->id % JOB_BUCKETS];
		d->jobs[j->id % JOB_BUCKETS] = j;
		load_job(d, j);
	}
	j->refs++;
	m->job = j;
	if (j->loading)
		TAILQ_INSERT_TAIL(&j->waiting, m, entry);
	else
		route_msg(d, m);
}

static void
claim_done(void *arg)
{
	struct claim_task *t = arg;
	struct dispatch *d = t->d;

	d->claiming = false;
	if (t->rc != STORE_OK) {
		if (!d->db_down)
			log_warn("claim failed, retrying: %s", t->err);
		d->db_down = true;
		claim_soon(d, DB_RETRY_MS);
	} else {
		if (d->db_down)
			log_info("job store reachable again");
		d->db_down = false;
		if (t->n)
			log_debug("claimed %zu deliveries", t->n);
		for (size_t i = 0; i < t->n; i++)
			take_lease(d, &t->l[i]);
		claim_soon(d, t->n == t->max ? 0 : d->cf->poll_ms);
	}
	free(t->l);
	free(t);
	maybe_finished(d);
}

static void
claim_now(evutil_socket_t fd, short what, void *arg)
{
	struct dispatch *d = arg;
	struct claim_task *t;
	size_t room;

	(void)fd, (void)what;
	if (d->stopping || d->claiming)
		return;
	/* Lease no more than about one batch ahead of what is being sent. */
	if (d->inflight * 2 > d->cf->claim_batch) {
		claim_soon(d, d->cf->poll_ms);
		return;
	}
	room = d->cf->claim_batch - d->inflight;
	if (!(t = calloc(1, sizeof(*t))) || !(t->l = calloc(room, sizeof(*t->l))))
		fatalx("dispatch: out of memory");
	t->d = d;
	t->max = room;
	d->claiming = true;
	worker_submit(d->db, claim_run, claim_done, t);
}

static void
claim_soon(struct dispatch *d, uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	if (d->stopping)
		return;
	/* An earlier wake-up wins over a later one. */
	if (evtimer_pending(d->claim_ev, NULL) && ms > 0)
		return;
	evtimer_add(d->claim_ev, &tv);
}

struct record_task {
	struct dispatch *d;
	struct store_result *res;
	size_t n, lost;
	int rc;
	char err[300];
};

static void
record_run(void *ctx, void *arg)
{
	struct record_task *t = arg;

	t->rc = store_record(ctx, t->d->cf->node, t->res, t->n, &t->lost);
	if (t->rc != STORE_OK)
		snprintf(t->err, sizeof(t->err), "%s", store_error(ctx));
}

static void
record_done(void *arg)
{
	struct record_task *t = arg;
	struct dispatch *d = t->d;

	d->recording = false;
	if (t->rc != STORE_OK) {
		/* Keep the outcomes, in front of newer ones, and try again. */
		log_warn("recording %zu outcomes failed, retrying: %s", t->n, t->err);
		if (d->nres + t->n > d->capres) {
			d->capres = d->nres + t->n;
			if (!(d->res = realloc(d->res, d->capres * sizeof(*d->res))))
				fatalx("dispatch: out of memory");
		}
		memmove(d->res + t->n, d->res, d->nres * sizeof(*d->res));
		memcpy(d->res, t->res, t->n * sizeof(*d->res));
		d->nres += t->n;
		flush_soon(d, DB_RETRY_MS);
	} else {
		if (t->lost)
			log_warn("%zu outcomes were for leases this gateway no longer held", t->lost);
		if (d->nres)
			flush_soon(d, 0);
		claim_soon(d, 0);
	}
	free(t->res);
	free(t);
	maybe_finished(d);
}

static void
flush_now(evutil_socket_t fd, short what, void *arg)
{
	struct dispatch *d = arg;
	struct record_task *t;
	size_t n;

	(void)fd, (void)what;
	if (d->recording || d->nres == 0)
		return;
	n = d->nres < RECORD_BATCH ? d->nres : RECORD_BATCH;
	if (!(t = calloc(1, sizeof(*t))) || !(t->res = malloc(n * sizeof(*t->res))))
		fatalx("dispatch: out of memory");
	t->d = d;
	t->n = n;
	memcpy(t->res, d->res, n * sizeof(*t->res));
	memmove(d->res, d->res + n, (d->nres - n) * sizeof(*d->res));
	d->nres -= n;
	d->recording = true;
	worker_submit(d->db, record_run, record_done, t);
}

static void
flush_soon(struct dispatch *d, uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	if (evtimer_pending(d->flush_ev, NULL) && ms > 0)
		return;
	evtimer_add(d->flush_ev, &tv);
}

/* ---- start and stop ---- */

static void *
db_init(void *arg)
{
	return store_new(arg);
}

static void
db_fini(void *ctx)
{
	store_free(ctx);
}

struct dispatch *
dispatch_new(struct event_base *base, const struct hato_config *cf)
{
	struct dispatch *d = calloc(1, sizeof(*d));

	if (!d)
		fatalx("dispatch: out of memory");
	d->base = base;
	d->cf = cf;
	d->db = worker_create(base, "gateway-db", db_init, db_fini, (void *)cf);
	d->claim_ev = evtimer_new(base, claim_now, d);
	d->flush_ev = evtimer_new(base, flush_now, d);
	d->proto.helo = cf->hostname;
	d->proto.connect_ms = (unsigned)cf->connect_timeout_ms;
	d->proto.greeting_ms = (unsigned)cf->greeting_timeout_ms;
	d->proto.command_ms = (unsigned)cf->command_timeout_ms;
	d->proto.data_init_ms = (unsigned)cf->command_timeout_ms;
	d->proto.data_block_ms = (unsigned)cf->data_timeout_ms;
	d->proto.data_term_ms = (unsigned)cf->data_timeout_ms;
	return d;
}

void
dispatch_start(struct dispatch *d)
{
	claim_soon(d, 0);
}

struct release_task {
	struct dispatch *d;
	size_t n;
	int rc;
	char err[300];
};

static void
release_run(void *ctx, void *arg)
{
	struct release_task *t = arg;

	t->rc = store_release(ctx, t->d->cf->node, &t->n);
	if (t->rc != STORE_OK)
		snprintf(t->err, sizeof(t->err), "%s", store_error(ctx));
}

static void
release_done(void *arg)
{
	struct release_task *t = arg;
	struct dispatch *d = t->d;

	if (t->rc == STORE_OK)
		log_info("gave back %zu leases", t->n);
	else
		log_warn("could not give back leases (they run out by themselves): %s", t->err);
	free(t);
	if (d->on_done)
		d->on_done(d->done_arg);
}

static unsigned
sessions_open(struct dispatch *d)
{
	unsigned n = 0;

	for (int b = 0; b < DEST_BUCKETS; b++)
		for (struct dest *e = d->dests[b]; e; e = e->next)
			n += destq_sessions(e->dq);
	return n;
}

static void
maybe_finished(struct dispatch *d)
{
	struct release_task *t;

	if (!d->stopping || d->releasing || d->claiming || d->loads || sessions_open(d))
		return;
	if (d->nres || d->recording) {
		flush_soon(d, 0);
		return;
	}
	d->releasing = true;
	if (!(t = calloc(1, sizeof(*t))))
		fatalx("dispatch: out of memory");
	t->d = d;
	worker_submit(d->db, release_run, release_done, t);
}

void
dispatch_stop(struct dispatch *d, void (*on_done)(void *), void *arg)
{
	struct dmsg_list drop = TAILQ_HEAD_INITIALIZER(drop);
	struct dmsg *m;

	d->stopping = true;
	d->on_done = on_done;
	d->done_arg = arg;
	evtimer_del(d->claim_ev);
	for (int b = 0; b < DEST_BUCKETS; b++)
		for (struct dest *e = d->dests[b]; e; e = e->next) {
			destq_stop(e->dq);
			destq_take_queued(e->dq, &drop);
		}
	/* Not handed to a session: their leases are given back below. */
	while ((m = TAILQ_FIRST(&drop))) {
		TAILQ_REMOVE(&drop, m, entry);
		msg_free(d, m);
	}
	log_info("gateway stopping: %u sessions finishing, %zu outcomes to record",
	    sessions_open(d), d->nres);
	maybe_finished(d);
}

void
dispatch_free(struct dispatch *d)
{
	if (!d)
		return;
	worker_free(d->db);
	for (int b = 0; b < DEST_BUCKETS; b++) {
		struct dest *e, *next;
		for (e = d->dests[b]; e; e = next) {
			next = e->next;
			destq_free(e->dq);
			free(e->unavailable);
			free(e);
		}
	}
	for (int b = 0; b < JOB_BUCKETS; b++) {
		struct djob *j, *next;
		for (j = d->jobs[b]; j; j = next) {
			next = j->next;
			compose_body_free(j->body);
			free(j);
		}
	}
	event_free(d->claim_ev);
	event_free(d->flush_ev);
	free(d->res);
	free(d);
}
