/*
 * dispatch: claims, routes, composes and records.
 *
 * All database work runs on one worker thread (claims, job loads, pace
 * reservations and suspensions, result batches, queued to it in order);
 * the event loop only moves messages between the job table, the
 * destination queues and the result buffer.
 *
 * Claims go per destination. Each destination is claimed for only up to
 * what it can send in half a lease (its pace times the time, or a batch
 * when unpaced), minus what this gateway already holds of it: a slow, paced
 * or dead destination never fills the gateway, and work is never trapped
 * in one process. A message whose lease is about to run out is dropped
 * unattempted rather than sent (another gateway may hold it by then).
 *
 * Outcomes are buffered and written in one transaction per batch; a batch
 * the database refuses is kept and tried again, never dropped (its leases
 * may run out meanwhile and the deliveries be sent again: at-least-once,
 * bounded by what was in flight).
 *
 * Each job's body is loaded and encoded once per charset (compose_prepare,
 * on the worker) and shared by all its messages through a reference count;
 * only the header block is built per recipient, just before the message is
 * handed to a session.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "conf/config.h"
#include "core/duration.h"
#include "core/log.h"
#include "core/tls.h"
#include "core/worker.h"
#include "gateway/compose.h"
#include "gateway/destq.h"
#include "gateway/dispatch.h"
#include "gateway/dkim.h"
#include "gateway/metrics.h"
#include "gateway/mxres.h"
#include "gateway/report.h"
#include "mail/bounce.h"
#include "mail/verp.h"
#include "routes/routes.h"
#include "sql/store.h"

#define JOB_BUCKETS 1024
#define DEST_BUCKETS 256
#define RECORD_BATCH 256
#define FLUSH_DELAY_MS 20
#define DB_RETRY_MS 1000
#define MAX_DUE_DESTS 512
/* While destinations keep filling their claims, the next claim goes to
 * them without asking which destinations are due: that question scans
 * the due index, slowly while InnoDB has not purged the entries that the
 * last claims moved. It is asked again at least this often. */
#define DISCOVER_MS 250

enum { CS_UTF8 = 0, CS_JIS, CS_COUNT };

struct djob {
	struct djob *next;		/* hash chain */
	struct dispatch *d;
	uint64_t id;
	unsigned refs;
	bool loading;
	struct compose_body *body[CS_COUNT];
	char err[300];			/* why it cannot be composed, or "" */
	struct dmsg_list waiting;	/* messages waiting for the load */
};

struct dest {
	struct dest *next;
	struct destq *dq;
	int charset;			/* CS_* */
	size_t held;			/* messages of it in memory */
	char last_reply[160];		/* for the status page */
	double last_at;
};

struct dkim_entry {
	char domain[256];
	struct dkim_key *key;
};

struct tls_entry {
	char name[64];			/* relay name; "" for MX delivery */
	char ca[512], cert[512], key[512];
	SSL_CTX *ctx;
};

struct dispatch {
	struct event_base *base;
	const struct hato_config *cf;
	const struct hato_config **old_cfs;	/* kept: sessions may point into them */
	size_t nold;
	struct worker *db;
	struct mxres *mx;
	struct event *claim_ev, *flush_ev;
	struct djob *jobs[JOB_BUCKETS];
	struct dest *dests[DEST_BUCKETS];
	unsigned loads, pace_tasks;
	bool claiming, recording, stopping, releasing;
	struct store_result *res;
	size_t nres, capres;
	uint64_t *unlease;		/* dropped unattempted: leases to give back */
	size_t nunlease, capunlease;
	bool unleasing;
	bool db_down;
	void (*on_done)(void *);
	void *done_arg;
	struct smtpc_conf proto;
	struct dkim_entry *dkims;
	size_t ndkims;
	bool need_jis;
	uint64_t report_due_ms;		/* next look for jobs to report on */
	char (*hot)[128];		/* destinations that filled the last claim */
	size_t nhot;
	uint64_t discovered_ms;		/* when the due destinations were last asked */
	struct tls_entry *tls;		/* one client context per relay, and "" for MX */
	size_t ntls;
};

static void claim_soon(struct dispatch *d, uint64_t ms);
void dispatch_free(struct dispatch *d);
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

static int
charset_of(const char *name)
{
	return name && strcasecmp(name, "iso-2022-jp") == 0 ? CS_JIS : CS_UTF8;
}

/* ---- destinations' settings, from the configuration ---- */

struct dest_conf {
	const struct relay_conf *relay;	/* or NULL: MX of mx_domain */
	int tls;
	bool verify;
	const struct limits *lim;
	const char *mx_domain;
	const char *suspend_on;
	const char *charset;
};

static bool
domain_listed(const char *list, const char *domain)
{
	char buf[1024], *tok, *save = NULL;

	snprintf(buf, sizeof(buf), "%s", list);
	for (tok = strtok_r(buf, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save))
		if (strcasecmp(tok, domain) == 0)
			return true;
	return false;
}

/* What the configuration says of a destination key. */
static void
dest_conf(const struct hato_config *cf, const char *key, struct dest_conf *dc)
{
	const struct relay_conf *r;
	const struct pace_conf *p;

	memset(dc, 0, sizeof(*dc));
	dc->lim = &cf->limits;
	dc->charset = cf->charset;
	dc->suspend_on = "";
	dc->tls = cf->mx_tls;
	dc->verify = false;	/* opportunistic TLS takes any certificate (RFC 7435) */
	config_dest(cf, key, &r, &p);
	if (r) {
		dc->relay = r;
		dc->lim = &r->lim;
		dc->charset = r->charset;
		dc->suspend_on = r->suspend_on;
	} else if (p) {
		dc->relay = *p->relay ? config_relay(cf, p->relay) : NULL;
		dc->mx_domain = p->mx_domain;
		dc->lim = &p->lim;
		dc->charset = p->charset;
		dc->suspend_on = p->suspend_on;
	} else if (strncmp(key, "mx:", 3) == 0)
		dc->mx_domain = key + 3;
	if (dc->relay) {
		dc->tls = dc->relay->tls;
		dc->verify = dc->relay->verify;
	} else if (dc->mx_domain && domain_listed(cf->mx_tls_require, dc->mx_domain)) {
		dc->tls = TLS_STARTTLS;
		dc->verify = true;
	}
}

/*
 * How many of a destination to hold: what this gateway sends of it in a
 * quarter of a lease, at the rate it has been getting (several gateways
 * share one pace; rate < 0: not known yet), so that what it holds is sent
 * well before its leases run out; and never less than one interval's worth.
 */
static size_t
dest_cap(const struct hato_config *cf, const char *key, double rate)
{
	struct dest_conf dc;
	double n;

	dest_conf(cf, key, &dc);
	if (!dc.lim->messages || !dc.lim->interval_ms)
		return cf->claim_batch;
	/* Not known yet: one interval's worth, until sends tell more. */
	n = rate < 0 ? 0 : rate * ((double)cf->lease_ms / 4) / 1000;
	if (n < dc.lim->messages)
		n = dc.lim->messages;	/* at least one interval's worth */
	return n > cf->claim_batch ? cf->claim_batch : (size_t)n;
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
job_free(struct djob *j)
{
	for (int c = 0; c < CS_COUNT; c++)
		compose_body_free(j->body[c]);
	free(j);
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
	job_free(j);
}

static struct dest *dest_find(struct dispatch *d, const char *key);

static void
msg_free(struct dispatch *d, struct dmsg *m)
{
	struct dest *e = m->held ? dest_find(d, m->lease.dest) : NULL;

	if (e && e->held)
		e->held--;
	free(m->head);
	job_unref(d, m->job);
	free(m);
}

/* ---- outcomes ---- */

static int
classify(const struct retry_policy *rp, const struct dmsg *m, const struct smtpc_reply *r,
    char *note, size_t notelen)
{
	unsigned attempts = m->lease.attempts + 1;
	double age = (double)time(NULL) - m->lease.created;

	note[0] = '\0';
	if (r->code >= 200 && r->code < 300 && r->stage == SMTPC_DOT)
		return OUTCOME_SENT;
	if (r->code >= 500 || (r->code == 0 && r->status[0] == '5'))
		return OUTCOME_FAILED;
	if (attempts >= rp->max_attempts) {
		snprintf(note, notelen, "gave up after %u attempts: ", attempts);
		return OUTCOME_FAILED;
	}
	if (age * 1000 >= (double)rp->max_age_ms) {
		snprintf(note, notelen, "expired after %.0f s: ", age);
		return OUTCOME_FAILED;
	}
	return OUTCOME_DEFERRED;
}

/* Where in the session a reply came, as the bounce rules see it. */
static enum bounce_stage
bounce_stage_of(enum smtpc_stage st)
{
	switch (st) {
	case SMTPC_RCPT:
		return BOUNCE_STAGE_RCPT;
	case SMTPC_DATA:
		return BOUNCE_STAGE_DATA;
	case SMTPC_DOT:
		return BOUNCE_STAGE_DOT;
	default:
		return BOUNCE_STAGE_CONNECT;
	}
}

/* The counters of /metrics, and the last reply the status page shows. */
static void
note_result(struct dispatch *d, const char *dest, const struct smtpc_reply *r,
    const struct store_result *res)
{
	struct dest *e = dest_find(d, dest);

	metrics_delivery(dest, store_outcome_name(res->outcome), res->bclass);
	if (!e)
		return;
	snprintf(e->last_reply, sizeof(e->last_reply), "%d%s%s %s", r->code, *r->status ? " " : "",
	    r->status, r->text);
	e->last_at = (double)time(NULL);
}

static void
add_result(struct dispatch *d, struct dmsg *m, const char *dest, const char *host,
    const struct smtpc_reply *r)
{
	struct store_result *res;
	struct retry_policy rp;
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
	config_retry_for(d->cf, dest, &rp);
	res->outcome = classify(&rp, m, r, note, sizeof(note));
	res->attempt = m->lease.attempts + 1;
	res->code = r->code;
	snprintf(res->status, sizeof(res->status), "%s", r->status);
	snprintf(res->text, sizeof(res->text), "%s%s", note, r->text);
	snprintf(res->stage, sizeof(res->stage), "%s", smtpc_stage_name(r->stage));
	snprintf(res->dest, sizeof(res->dest), "%s", dest);
	snprintf(res->host, sizeof(res->host), "%s", host ? host : "");
	if (res->outcome == OUTCOME_DEFERRED)
		res->retry_ms = retry_policy_delay_ms(&rp, m->lease.attempts + 1);
	snprintf(res->address, sizeof(res->address), "%s", m->lease.address);
	if (res->outcome != OUTCOME_SENT) {
		bool soft;
		enum bounce_class bc = bounce_classify(r->code, r->status, r->text,
		    bounce_stage_of(r->stage), m->lease.domain, &soft);
		snprintf(res->bclass, sizeof(res->bclass), "%s", bounce_class_name(bc));
	}
	note_result(d, dest, r, res);
	log_info("delivery job=%llu dlv=%llu dest=%s host=%s attempt=%u status=%s stage=%s code=%d class=%s reply=%s",
	    (unsigned long long)m->lease.job_id, (unsigned long long)m->lease.id, dest,
	    *res->host ? res->host : "-", m->lease.attempts + 1, store_outcome_name(res->outcome),
	    res->stage, r->code, *res->bclass ? res->bclass : "-", log_quote(q, sizeof(q), res->text));
	msg_free(d, m);
	flush_soon(d, d->nres >= RECORD_BATCH ? 0 : FLUSH_DELAY_MS);
}

/* A message that never reached a session. */
static void
defer_msg(struct dispatch *d, struct dmsg *m, const char *dest, const char *why)
{
	struct smtpc_reply r = { .code = 0, .stage = SMTPC_CONNECT };

	snprintf(r.text, sizeof(r.text), "%s", why);
	add_result(d, m, dest, NULL, &r);
}

/* ---- destination callbacks ---- */

static struct dest *
dest_of_dq(struct dispatch *d, struct destq *dq)
{
	return dest_find(d, destq_key(dq));
}

/*
 * A rehearsal copy (Dry-Run) travels by its rehearsal address's own route
 * but is written as the recipients of render_dest would get it: that
 * route's charset, and a header naming it, so that whoever checks it knows
 * which carrier's rendering it is.
 */
static int
render_charset(struct dispatch *d, const struct dmsg *m, const struct dest *e)
{
	struct dest_conf dc;

	if (!*m->lease.render_dest)
		return e ? e->charset : CS_UTF8;
	dest_conf(d->cf, m->lease.render_dest, &dc);
	return charset_of(dc.charset);
}

static void
rehearsal_header(char *extra, size_t size, const struct dmsg *m)
{
	size_t len = strlen(extra);

	/* render_dest is a route key of ours (ASCII, no CR or LF). */
	snprintf(extra + len, size - len, "X-Hato-Rehearsal: %s (job %llu, a rehearsal copy)\r\n",
	    m->lease.render_dest, (unsigned long long)m->lease.job_id);
}

/*
 * A notice to a submitter goes as it was stored, with an empty envelope
 * sender (RFC 3834: nothing should answer it, and a bounce of it comes
 * back to nobody), no VERP and no List-Unsubscribe.
 */
static int
prepare_notice(struct dmsg *m, const struct compose_body *b)
{
	if (!(m->head = strdup("")))
		fatalx("dispatch: out of memory");
	m->mail_from[0] = '\0';
	m->msg.mail_from = m->mail_from;
	m->msg.rcpt = m->rcpt;
	m->msg.head = m->head;
	m->msg.head_len = 0;
	m->msg.body = b->body;
	m->msg.body_len = b->body_len;
	m->msg.arg = m;
	return 0;
}

static int
on_prepare(struct destq *dq, struct dmsg *m, struct smtpc_reply *why, void *arg)
{
	struct dispatch *d = arg;
	struct dest *e = dest_of_dq(d, dq);
	struct compose_rcpt rc = { .to = m->rcpt, .delivery_id = m->lease.id };
	struct compose_body *b;
	char tok[64], extra[1024];
	size_t len;

	if (clock_mono_ms() > m->lease_deadline)
		return -2;
	if (m->job->body[CS_UTF8] && m->job->body[CS_UTF8]->notice)
		return prepare_notice(m, m->job->body[CS_UTF8]);
	/* RFC 8058: both ways to leave the list, each naming this delivery. */
	unsub_token(d->cf->secret, d->cf->secret_len, m->lease.id, tok, sizeof(tok));
	snprintf(extra, sizeof(extra), "List-Unsubscribe: <mailto:unsub+%s@%s>,\r\n <%s%s>\r\n"
	    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
	    tok, d->cf->bounce_domain, d->cf->unsubscribe_url, tok);
	rc.extra = extra;
	b = m->job->body[render_charset(d, m, e)];
	if (*m->lease.render_dest)
		rehearsal_header(extra, sizeof(extra), m);
	if (!b)
		b = m->job->body[CS_UTF8];
	if (!(m->head = compose_head(b, &rc, time(NULL), &len))) {
		why->stage = SMTPC_CONNECT;
		snprintf(why->text, sizeof(why->text), "cannot compose the header for %s", m->rcpt);
		return -1;
	}
	m->msg.mail_from = m->mail_from;
	m->msg.rcpt = m->rcpt;
	m->msg.head = m->head;
	m->msg.head_len = len;
	m->msg.body = b->body;
	m->msg.body_len = b->body_len;
	m->msg.arg = m;
	return 0;
}

static void
on_result(struct destq *dq, struct dmsg *m, const struct smtpc_reply *r, void *arg)
{
	struct dispatch *d = arg;

	if (r->code == DESTQ_DROPPED) {
		log_notice("delivery job=%llu dlv=%llu dest=%s status=given-back reason=\"lease about to run out before a send slot\"",
		    (unsigned long long)m->lease.job_id, (unsigned long long)m->lease.id, destq_key(dq));
		if (d->nunlease == d->capunlease) {
			d->capunlease = d->capunlease ? d->capunlease * 2 : 128;
			if (!(d->unlease = realloc(d->unlease, d->capunlease * sizeof(*d->unlease))))
				fatalx("dispatch: out of memory");
		}
		d->unlease[d->nunlease++] = m->lease.id;
		flush_soon(d, FLUSH_DELAY_MS);
		msg_free(d, m);
		maybe_finished(d);
		claim_soon(d, 0);
		return;
	}
	add_result(d, m, destq_key(dq), destq_host(dq), r);
}

static void
on_dest_idle(struct destq *dq, void *arg)
{
	(void)dq;
	maybe_finished(arg);
	claim_soon(arg, 0);
}

struct pace_task {
	struct dispatch *d;
	char dest[128];
	unsigned k;
	uint64_t gap_us, suspend_ms;
	double add, t0;
	char reason[300];
	struct store_pace res;
	int rc;
	char err[300];
};

static void
reserve_run(void *ctx, void *arg)
{
	struct pace_task *t = arg;

	t->rc = store_pace_reserve(ctx, t->dest, t->gap_us, t->k, t->add, &t->res);
	if (t->rc != STORE_OK)
		snprintf(t->err, sizeof(t->err), "%s", store_error(ctx));
}

static void
reserve_done(void *arg)
{
	struct pace_task *t = arg;
	struct dispatch *d = t->d;
	struct dest *e = dest_find(d, t->dest);
	double t1 = (double)clock_mono_ms();

	d->pace_tasks--;
	if (e && t->rc == STORE_OK) {
		/* The database's clock mapped to ours at the middle of the call. */
		double offset = (t->t0 + t1) / 2 - t->res.db_now * 1000;
		destq_pace_grant(e->dq, &t->res, t->k, offset);
	} else if (e) {
		log_warn("dest=%s pace reservation failed, retrying: %s", t->dest, t->err);
		destq_pace_failed(e->dq);
	}
	free(t);
	maybe_finished(d);
}

static void
on_reserve(struct destq *dq, unsigned k, uint64_t base_gap_us, double add, void *arg)
{
	struct dispatch *d = arg;
	struct pace_task *t = calloc(1, sizeof(*t));

	if (!t)
		fatalx("dispatch: out of memory");
	t->d = d;
	snprintf(t->dest, sizeof(t->dest), "%s", destq_key(dq));
	t->k = k;
	t->gap_us = base_gap_us;
	t->add = add;
	t->t0 = (double)clock_mono_ms();
	d->pace_tasks++;
	worker_submit(d->db, reserve_run, reserve_done, t);
}

static void
suspend_run(void *ctx, void *arg)
{
	struct pace_task *t = arg;

	t->rc = store_pace_suspend(ctx, t->dest, t->suspend_ms, 1.0 / 64, t->reason);
	if (t->rc != STORE_OK)
		snprintf(t->err, sizeof(t->err), "%s", store_error(ctx));
}

static void
suspend_done(void *arg)
{
	struct pace_task *t = arg;

	t->d->pace_tasks--;
	if (t->rc != STORE_OK)
		log_warn("dest=%s suspension not shared (other gateways go on until they see trouble): %s",
		    t->dest, t->err);
	maybe_finished(t->d);
	free(t);
}

static void
on_suspend(struct destq *dq, uint64_t ms, const char *reason, void *arg)
{
	struct dispatch *d = arg;
	struct pace_task *t = calloc(1, sizeof(*t));

	if (!t)
		fatalx("dispatch: out of memory");
	t->d = d;
	snprintf(t->dest, sizeof(t->dest), "%s", destq_key(dq));
	snprintf(t->reason, sizeof(t->reason), "%s", reason);
	t->suspend_ms = ms;
	metrics_suspension(t->dest);
	d->pace_tasks++;
	worker_submit(d->db, suspend_run, suspend_done, t);
}

struct resolve_req {
	struct dispatch *d;
	char key[300];
};

static void
resolved(const struct mxres_answer *a, void *arg)
{
	struct resolve_req *rq = arg;
	struct dest *e = dest_find(rq->d, rq->key);

	if (e) {
		if (a->status != MXRES_OK)
			log_warn("dest=%s mx lookup: %s", rq->key, a->why);
		destq_set_hosts(e->dq, a);
	}
	free(rq);
}

static void
on_resolve(struct destq *dq, void *arg)
{
	struct dispatch *d = arg;
	struct resolve_req *rq = calloc(1, sizeof(*rq));

	if (!rq)
		fatalx("dispatch: out of memory");
	rq->d = d;
	snprintf(rq->key, sizeof(rq->key), "%s", destq_key(dq));
	mxres_lookup(d->mx, destq_domain(dq), resolved, rq);
}

/* ---- routing ---- */

static struct dest *
dest_find(struct dispatch *d, const char *key)
{
	struct dest *e;

	for (e = d->dests[hash_str(key) % DEST_BUCKETS]; e; e = e->next)
		if (strcmp(destq_key(e->dq), key) == 0)
			return e;
	return NULL;
}

/* The client context of a relay (or of MX delivery: relay NULL), made
 * once and kept while its files stay the same. NULL with err. */
static SSL_CTX *
tls_ctx_for(struct dispatch *d, const struct relay_conf *r, char *err, size_t errlen)
{
	const char *name = r ? r->name : "";
	const char *ca = r ? r->ca_file : d->cf->ca_file;
	const char *cert = r ? r->cert_file : "", *key = r ? r->key_file : "";
	struct tls_entry *t;
	SSL_CTX *ctx;

	for (size_t i = 0; i < d->ntls; i++) {
		t = &d->tls[i];
		if (strcmp(t->name, name) == 0 && strcmp(t->ca, ca) == 0 &&
		    strcmp(t->cert, cert) == 0 && strcmp(t->key, key) == 0)
			return t->ctx;
	}
	if (!(ctx = tls_client_ctx(*ca ? ca : NULL, *cert ? cert : NULL, *key ? key : NULL, err, errlen)))
		return NULL;
	if (!(d->tls = realloc(d->tls, (d->ntls + 1) * sizeof(*d->tls))))
		fatalx("dispatch: out of memory");
	t = &d->tls[d->ntls++];
	snprintf(t->name, sizeof(t->name), "%s", name);
	snprintf(t->ca, sizeof(t->ca), "%s", ca);
	snprintf(t->cert, sizeof(t->cert), "%s", cert);
	snprintf(t->key, sizeof(t->key), "%s", key);
	t->ctx = ctx;
	return ctx;
}

/* The SMTP settings of one destination: timeouts, TLS, AUTH. */
static void
dest_proto(struct dispatch *d, const struct dest_conf *dc, struct smtpc_conf *p)
{
	char err[512];

	*p = d->proto;
	p->tls = dc->tls;
	p->tls_verify = dc->verify;
	if (dc->tls != TLS_NONE && !(p->tls_ctx = tls_ctx_for(d, dc->relay, err, sizeof(err)))) {
		/* Without a context, TLS cannot happen: required TLS then fails
		 * every session with this reason, opportunistic goes in clear. */
		log_error("TLS context for %s: %s", dc->relay ? dc->relay->name : "MX delivery", err);
		if (dc->tls == TLS_OPPORTUNISTIC)
			p->tls = TLS_NONE;
	}
	if (dc->relay && *dc->relay->auth_user) {
		p->auth_user = dc->relay->auth_user;
		p->auth_password = dc->relay->auth_password;
		p->auth_without_tls = dc->relay->auth_without_tls;
	}
}

static struct dest *
dest_get(struct dispatch *d, const char *key)
{
	unsigned b = hash_str(key) % DEST_BUCKETS;
	struct destq_owner owner = { on_prepare, on_result, on_dest_idle, on_reserve,
	    on_suspend, on_resolve, d };
	struct smtpc_conf proto;
	struct dest_conf dc;
	struct dest *e;

	if ((e = dest_find(d, key)))
		return e;
	dest_conf(d->cf, key, &dc);
	dest_proto(d, &dc, &proto);
	if (!(e = calloc(1, sizeof(*e))))
		fatalx("dispatch: out of memory");
	e->dq = destq_new(d->base, key, dc.mx_domain, dc.relay, dc.lim, dc.suspend_on, &proto, &owner);
	e->charset = charset_of(dc.charset);
	e->next = d->dests[b];
	d->dests[b] = e;
	log_info("dest=%s created via=%s connections=%u per_connection=%u pace=%u/%llums charset=%s tls=%s%s",
	    key, dc.relay ? dc.relay->host : dc.mx_domain ? dc.mx_domain : "-", dc.lim->connections,
	    dc.lim->per_connection, dc.lim->messages, (unsigned long long)dc.lim->interval_ms, dc.charset,
	    (const char *[]){ "none", "starttls", "smtps", "opportunistic" }[proto.tls & 3],
	    proto.tls == TLS_NONE ? "" : proto.tls_verify ? " verify=yes" : " verify=no");
	return e;
}

static void
route_msg(struct dispatch *d, struct dmsg *m)
{
	const struct route *r;
	struct dest *e;
	char why[400];

	if (*m->job->err) {
		struct smtpc_reply rep = { .code = 554, .stage = SMTPC_CONNECT };
		/* The job itself cannot be written: no attempt will do better. */
		snprintf(rep.text, sizeof(rep.text), "%s", m->job->err);
		snprintf(rep.status, sizeof(rep.status), "5.6.0");
		add_result(d, m, "-", NULL, &rep);
		return;
	}
	/* The gateway's route table decides; the stored dest is a claim hint. */
	if (!(r = routes_match(d->cf->routes, m->lease.domain))) {
		snprintf(why, sizeof(why), "no route for %s in %s", m->lease.domain, d->cf->routes_path);
		defer_msg(d, m, "-", why);
		return;
	}
	routes_dest_key(r, m->lease.domain, m->lease.dest, sizeof(m->lease.dest));
	e = dest_get(d, m->lease.dest);
	e->held++;
	m->held = true;
	destq_push(e->dq, m);
}

/* ---- database tasks ---- */

struct claim_snap {
	char dest[128];
	size_t held;
	double rate;		/* this gateway's rate of it; < 0: unknown */
};

struct claim_task {
	struct dispatch *d;
	const struct hato_config *cf;
	struct claim_snap *snap;
	size_t nsnap;
	struct store_lease *l;
	size_t n, max;
	bool more;		/* some destination had more than it got */
	bool report;		/* look for ended jobs to report on first */
	bool discover;		/* ask which destinations are due, or */
	char (*hot)[128];	/* claim from these; after: the ones with more */
	size_t nhot;
	int rc;
	char err[300];
};

static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
claim_run(void *ctx, void *arg)
{
	struct claim_task *t = arg;
	char (*due)[128] = calloc(MAX_DUE_DESTS, 128);
	struct store_claim_req *req = calloc(MAX_DUE_DESTS, sizeof(*req));
	size_t ndue = 0, nreq = 0;

	if (!due || !req)
		fatalx("dispatch: out of memory");
	if (t->report)
		report_sweep(ctx, t->cf);
	if (t->discover)
		t->rc = store_due_dests(ctx, due, MAX_DUE_DESTS, &ndue);
	else
		for (; ndue < t->nhot; ndue++)
			memcpy(due[ndue], t->hot[ndue], sizeof(due[ndue]));
	t->nhot = 0;
	if (t->rc == STORE_OK) {
		for (size_t i = 0; i < ndue; i++) {
			size_t held = 0, cap;
			double rate = -1;
			for (size_t k = 0; k < t->nsnap; k++)
				if (strcmp(t->snap[k].dest, due[i]) == 0) {
					held = t->snap[k].held;
					rate = t->snap[k].rate;
				}
			cap = dest_cap(t->cf, due[i], rate);
			if (held >= cap) {
				/* Due, and busy: still due next time. */
				memcpy(t->hot[t->nhot++], due[i], sizeof(due[i]));
				continue;
			}
			req[nreq].dest = due[i];
			req[nreq++].max = cap - held;
		}
		t->rc = store_claim(ctx, t->cf->node, t->cf->lease_ms, req, nreq, t->l, t->max, &t->n);
		/* A destination that filled its request may have more waiting. */
		for (size_t i = 0, got; t->rc == STORE_OK && i < nreq; i++) {
			got = 0;
			for (size_t k = 0; k < t->n; k++)
				got += strcmp(t->l[k].dest, req[i].dest) == 0;
			if (got == req[i].max) {
				t->more = true;
				memcpy(t->hot[t->nhot++], req[i].dest, sizeof(t->hot[0]));
			}
		}
	}
	if (t->rc != STORE_OK)
		snprintf(t->err, sizeof(t->err), "%s", store_error(ctx));
	free(due);
	free(req);
}

struct load_task {
	struct dispatch *d;
	uint64_t id;
	struct compose_body *body[CS_COUNT];
	int rc;
	char err[300];
};

static const struct dkim_key *
dkim_for(struct dispatch *d, const char *from)
{
	const char *at = from ? strrchr(from, '@') : NULL;

	for (size_t i = 0; at && i < d->ndkims; i++)
		if (strcasecmp(d->dkims[i].domain, at + 1) == 0)
			return d->dkims[i].key;
	return NULL;
}

static void
load_run(void *ctx, void *arg)
{
	struct load_task *t = arg;
	struct dispatch *d = t->d;
	struct store_job *j;
	char err[300];

	if ((t->rc = store_job_get(ctx, t->id, &j)) != STORE_OK) {
		snprintf(t->err, sizeof(t->err), "%s", store_error(ctx));
		return;
	}
	struct compose_job cj = {
		.job_id = j->id, .from = j->from_addr, .subject = j->subject,
		.body = j->body, .charset = "utf-8", .domain = d->cf->hostname,
		.dkim = dkim_for(d, j->from_addr),
	};
	/* Encoding the body is pure work: done here, off the event loop. */
	if (j->notice)
		t->body[CS_UTF8] = compose_notice(j->id, j->body, cj.dkim, t->err, sizeof(t->err));
	else
		t->body[CS_UTF8] = compose_prepare(&cj, t->err, sizeof(t->err));
	if (j->notice) {
		/* A receipt or report: the stored message as it is. */
		store_job_free(j);
		return;
	}
	if (d->need_jis && t->body[CS_UTF8]) {
		cj.charset = "iso-2022-jp";
		t->body[CS_JIS] = compose_prepare(&cj, err, sizeof(err));
		if (t->body[CS_JIS] && t->body[CS_JIS]->fell_back)
			log_notice("job=%llu charset=iso-2022-jp fallback=utf-8 reason=\"%s\"",
			    (unsigned long long)j->id, t->body[CS_JIS]->fallback);
	}
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
	j->d->loads--;
	load_job(j->d, j);
}

static void
load_done(void *arg)
{
	struct load_task *t = arg;
	struct dispatch *d = t->d;
	struct djob *j = job_find(d, t->id);
	struct dmsg *m;

	if (t->rc == STORE_RETRY && !d->stopping) {
		/* Keep the messages waiting; the job is still there. The load
		 * counts as in the works until it is tried again. */
		log_warn("job=%llu load deferred: %s", (unsigned long long)t->id, t->err);
		struct timeval tv = { DB_RETRY_MS / 1000, 0 };
		event_base_once(d->base, -1, EV_TIMEOUT, retry_load, j, &tv);
		free(t);
		return;
	}
	d->loads--;
	j->loading = false;
	memcpy(j->body, t->body, sizeof(j->body));
	if (!t->body[CS_UTF8])
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
	/* A send must start well before the lease ends: a tenth of it, at
	 * least half a second, and never more than half the lease. */
	uint64_t margin = d->cf->lease_ms / 10 > 500 ? d->cf->lease_ms / 10 : 500;
	struct mail_addr a;
	const char *why;
	struct djob *j;
	size_t n;

	if (!m)
		fatalx("dispatch: out of memory");
	m->lease = *l;
	if (margin > d->cf->lease_ms / 2)
		margin = d->cf->lease_ms / 2;
	m->lease_deadline = clock_mono_ms() + d->cf->lease_ms - margin;
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
	n = verp_local(d->cf->secret, d->cf->secret_len, l->id, m->mail_from, sizeof(m->mail_from));
	snprintf(m->mail_from + n, sizeof(m->mail_from) - n, "@%s", d->cf->bounce_domain);
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
		d->nhot = 0;
		claim_soon(d, DB_RETRY_MS);
	} else {
		if (d->db_down)
			log_info("job store reachable again");
		d->db_down = false;
		if (t->n)
			log_debug("claimed %zu deliveries", t->n);
		free(d->hot);
		d->hot = t->hot;
		d->nhot = t->nhot;
		t->hot = NULL;
		if (t->discover)
			d->discovered_ms = mono_ms();
		for (size_t i = 0; i < t->n; i++)
			take_lease(d, &t->l[i]);
		claim_soon(d, t->more ? 0 : d->cf->poll_ms);
	}
	free(t->hot);
	free(t->snap);
	free(t->l);
	free(t);
	maybe_finished(d);
}

static void
claim_now(evutil_socket_t fd, short what, void *arg)
{
	struct dispatch *d = arg;
	struct claim_task *t;
	size_t n = 0;

	(void)fd, (void)what;
	if (d->stopping || d->claiming)
		return;
	/* Outcomes not recorded yet are what a crash would send again: claim
	 * no more while a batch's worth waits (record_done claims again). */
	if (d->nres > d->cf->claim_batch) {
		claim_soon(d, d->cf->poll_ms);
		return;
	}
	if (!(t = calloc(1, sizeof(*t))))
		fatalx("dispatch: out of memory");
	if (d->cf->receipts && clock_mono_ms() >= d->report_due_ms) {
		t->report = true;
		d->report_due_ms = clock_mono_ms() + REPORT_EVERY_MS;
	}
	for (int b = 0; b < DEST_BUCKETS; b++)
		for (struct dest *e = d->dests[b]; e; e = e->next)
			n++;
	if (!(t->snap = calloc(n ? n : 1, sizeof(*t->snap))))
		fatalx("dispatch: out of memory");
	for (int b = 0; b < DEST_BUCKETS; b++)
		for (struct dest *e = d->dests[b]; e; e = e->next) {
			struct claim_snap *s = &t->snap[t->nsnap++];
			snprintf(s->dest, sizeof(s->dest), "%s", destq_key(e->dq));
			s->held = e->held;
			s->rate = destq_suspended(e->dq) ? 0 : destq_local_rate(e->dq);
		}
	if (!(t->hot = malloc(MAX_DUE_DESTS * sizeof(*t->hot))))
		fatalx("dispatch: out of memory");
	t->discover = d->nhot == 0 || mono_ms() - d->discovered_ms >= DISCOVER_MS;
	if (!t->discover) {
		memcpy(t->hot, d->hot, d->nhot * sizeof(*t->hot));
		t->nhot = d->nhot;
	}
	t->d = d;
	t->cf = d->cf;
	t->max = d->cf->claim_batch;
	if (!(t->l = malloc(t->max * sizeof(*t->l))))
		fatalx("dispatch: out of memory");
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

struct unlease_task {
	struct dispatch *d;
	uint64_t *ids;
	size_t n;
	int rc;
	char err[300];
};

static void
unlease_run(void *ctx, void *arg)
{
	struct unlease_task *t = arg;

	t->rc = store_unlease(ctx, t->d->cf->node, t->ids, t->n);
	if (t->rc != STORE_OK)
		snprintf(t->err, sizeof(t->err), "%s", store_error(ctx));
}

static void
unlease_done(void *arg)
{
	struct unlease_task *t = arg;

	t->d->unleasing = false;
	/* If it failed, the leases simply run out: nothing was sent. */
	if (t->rc != STORE_OK)
		log_warn("%zu leases not given back (they run out by themselves): %s", t->n, t->err);
	struct dispatch *d = t->d;
	free(t->ids);
	free(t);
	maybe_finished(d);
}

static void
flush_unleases(struct dispatch *d)
{
	struct unlease_task *t;

	if (d->unleasing || d->nunlease == 0)
		return;
	if (!(t = calloc(1, sizeof(*t))))
		fatalx("dispatch: out of memory");
	t->d = d;
	t->ids = d->unlease;
	t->n = d->nunlease;
	d->unlease = NULL;
	d->nunlease = d->capunlease = 0;
	d->unleasing = true;
	worker_submit(d->db, unlease_run, unlease_done, t);
}

static void
flush_now(evutil_socket_t fd, short what, void *arg)
{
	struct dispatch *d = arg;
	struct record_task *t;
	size_t n;

	(void)fd, (void)what;
	flush_unleases(d);
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

/* ---- re-routing after a reload ---- */

struct redest_task {
	struct dispatch *d;
	const struct hato_config *cf;
	size_t moved;
	int rc;
	char err[300];
};

static size_t
dest_by_table(void *arg, const char *domain, char *buf, size_t size)
{
	const struct hato_config *cf = arg;
	const struct route *r = routes_match(cf->routes, domain);

	if (!r) {
		buf[0] = '\0';
		return 0;
	}
	return routes_dest_key(r, domain, buf, size);
}

static void
redest_run(void *ctx, void *arg)
{
	struct redest_task *t = arg;

	t->rc = store_redest(ctx, dest_by_table, (void *)t->cf, &t->moved);
	if (t->rc != STORE_OK)
		snprintf(t->err, sizeof(t->err), "%s", store_error(ctx));
}

static void
redest_done(void *arg)
{
	struct redest_task *t = arg;

	if (t->rc == STORE_OK) {
		if (t->moved)
			log_info("routes: %zu waiting deliveries moved to their new destination", t->moved);
	} else
		log_warn("routes: waiting deliveries not re-routed: %s", t->err);
	claim_soon(t->d, 0);
	free(t);
}

static void
redest(struct dispatch *d)
{
	struct redest_task *t = calloc(1, sizeof(*t));

	if (!t)
		fatalx("dispatch: out of memory");
	t->d = d;
	t->cf = d->cf;
	worker_submit(d->db, redest_run, redest_done, t);
}

/* ---- start, reload and stop ---- */

static void
proto_from(struct smtpc_conf *p, const struct hato_config *cf)
{
	memset(p, 0, sizeof(*p));
	p->helo = cf->hostname;
	p->connect_ms = (unsigned)cf->connect_timeout_ms;
	p->greeting_ms = (unsigned)cf->greeting_timeout_ms;
	p->command_ms = (unsigned)cf->command_timeout_ms;
	p->data_init_ms = (unsigned)cf->command_timeout_ms;
	p->data_block_ms = (unsigned)cf->data_timeout_ms;
	p->data_term_ms = (unsigned)cf->data_timeout_ms;
}

static bool
uses_jis(const struct hato_config *cf)
{
	bool jis = charset_of(cf->charset) == CS_JIS;

	for (size_t i = 0; i < cf->nrelays; i++)
		jis |= charset_of(cf->relays[i].charset) == CS_JIS;
	for (size_t i = 0; i < cf->npaces; i++)
		jis |= charset_of(cf->paces[i].charset) == CS_JIS;
	return jis;
}

static int
dispatch_load_keys(struct dispatch *d, char *err, size_t errlen)
{
	for (size_t i = 0; i < d->cf->ndkims; i++) {
		const struct dkim_conf *k = &d->cf->dkims[i];
		struct dkim_key *key = dkim_key_load(k->key_file, k->domain, k->selector, err, errlen);
		if (!key)
			return -1;
		if (!(d->dkims = realloc(d->dkims, (d->ndkims + 1) * sizeof(*d->dkims))))
			fatalx("dispatch: out of memory");
		snprintf(d->dkims[d->ndkims].domain, sizeof(d->dkims[0].domain), "%s", k->domain);
		d->dkims[d->ndkims++].key = key;
	}
	return 0;
}

struct dispatch *
dispatch_new(struct event_base *base, const struct hato_config *cf, char *err, size_t errlen)
{
	struct dispatch *d = calloc(1, sizeof(*d));

	if (!d)
		fatalx("dispatch: out of memory");
	d->base = base;
	d->cf = cf;
	d->need_jis = uses_jis(cf);
	proto_from(&d->proto, cf);
	if (!(d->mx = mxres_new(base, *cf->dns_servers ? cf->dns_servers : NULL, cf->smtp_port,
	    (unsigned)cf->dns_timeout_ms, err, errlen)) || dispatch_load_keys(d, err, errlen) < 0) {
		dispatch_free(d);
		return NULL;
	}
	/* TLS contexts (client keys) are read now, before root is dropped. */
	for (size_t i = 0; i < cf->nrelays; i++)
		if (cf->relays[i].tls != TLS_NONE && !tls_ctx_for(d, &cf->relays[i], err, errlen)) {
			char why[600];
			snprintf(why, sizeof(why), "[relay %s]: %s", cf->relays[i].name, err);
			snprintf(err, errlen, "%s", why);
			dispatch_free(d);
			return NULL;
		}
	if (cf->mx_tls != TLS_NONE && !tls_ctx_for(d, NULL, err, errlen)) {
		dispatch_free(d);
		return NULL;
	}
	d->db = worker_create(base, "gateway-db", store_worker_init, store_worker_fini, (void *)cf);
	d->claim_ev = evtimer_new(base, claim_now, d);
	d->flush_ev = evtimer_new(base, flush_now, d);
	return d;
}

void
dispatch_start(struct dispatch *d)
{
	/* Rows stored under another table's routes go to today's. */
	redest(d);
}

void
dispatch_reload(struct dispatch *d, const struct hato_config *cf)
{
	struct dmsg_list moved = TAILQ_HEAD_INITIALIZER(moved);
	struct dmsg *m;

	if (!(d->old_cfs = realloc(d->old_cfs, (d->nold + 1) * sizeof(*d->old_cfs))))
		fatalx("dispatch: out of memory");
	d->old_cfs[d->nold++] = d->cf;
	d->cf = cf;
	d->need_jis = d->need_jis || uses_jis(cf);
	proto_from(&d->proto, cf);
	for (int b = 0; b < DEST_BUCKETS; b++)
		for (struct dest *e = d->dests[b]; e; e = e->next) {
			struct smtpc_conf proto;
			struct dest_conf dc;
			dest_conf(cf, destq_key(e->dq), &dc);
			dest_proto(d, &dc, &proto);
			destq_update(e->dq, dc.relay, dc.lim, dc.suspend_on, &proto);
			e->charset = charset_of(dc.charset);
			destq_take_queued(e->dq, &moved);
		}
	/* Queued messages take the new routes (those already in a session go on). */
	while ((m = TAILQ_FIRST(&moved))) {
		struct dest *e = dest_find(d, m->lease.dest);
		TAILQ_REMOVE(&moved, m, entry);
		if (e && m->held) {
			e->held--;
			m->held = false;
		}
		route_msg(d, m);
	}
	log_info("configuration reloaded: %s", cf->path);
	redest(d);
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

	if (!d->stopping || d->releasing || d->claiming || d->loads || d->pace_tasks ||
	    d->unleasing || sessions_open(d))
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
	if (d->db)
		worker_free(d->db);
	for (int b = 0; b < DEST_BUCKETS; b++) {
		struct dest *e, *next;
		for (e = d->dests[b]; e; e = next) {
			next = e->next;
			destq_free(e->dq);
			free(e);
		}
	}
	for (int b = 0; b < JOB_BUCKETS; b++) {
		struct djob *j, *next;
		for (j = d->jobs[b]; j; j = next) {
			next = j->next;
			job_free(j);
		}
	}
	if (d->mx)
		mxres_free(d->mx);
	for (size_t i = 0; i < d->ndkims; i++)
		dkim_key_free(d->dkims[i].key);
	for (size_t i = 0; i < d->ntls; i++)
		tls_ctx_free(d->tls[i].ctx);
	free(d->tls);
	free(d->hot);
	free(d->dkims);
	if (d->claim_ev)
		event_free(d->claim_ev);
	if (d->flush_ev)
		event_free(d->flush_ev);
	free(d->old_cfs);
	free(d->unlease);
	free(d->res);
	free(d);
}

const struct hato_config *const *
dispatch_old_configs(const struct dispatch *d, size_t *n)
{
	*n = d->nold;
	return d->old_cfs;
}

void
dispatch_each_dest(struct dispatch *d, void (*cb)(void *, const struct dispatch_dest_view *), void *arg)
{
	for (int b = 0; b < DEST_BUCKETS; b++)
		for (struct dest *e = d->dests[b]; e; e = e->next) {
			const struct limits *l = destq_limits(e->dq);
			const char *host = destq_host(e->dq);
			struct dispatch_dest_view v = {
				.key = destq_key(e->dq), .host = host ? host : "",
				.held = e->held, .queued = destq_queued(e->dq),
				.sessions = destq_sessions(e->dq),
				.paced = l->messages && l->interval_ms,
				.factor = destq_factor(e->dq),
				.suspended_ms = destq_suspended_ms(e->dq),
				.last_reply = e->last_reply, .last_at = e->last_at,
			};
			if (v.paced)
				v.pace_rate = l->messages * 1000.0 / (double)l->interval_ms;
			cb(arg, &v);
		}
}
