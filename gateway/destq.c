/*
 * destq: a destination's queue and its SMTP sessions.
 *
 * Messages wait in a FIFO. destq_kick() opens sessions while there is work
 * and fewer than `connections` are open; a ready session takes the next
 * message, and quits after `per_connection` messages or when the queue is
 * empty. A session that could not be set up (refused, timed out, 421 at
 * the greeting) reports its reason; when no session of the destination is
 * left working, every queued message gets that reason as its outcome
 * (deferred by the owner), so a dead destination never holds leases until
 * they expire, and never blocks other destinations.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "gateway/destq.h"

struct dconn {
	LIST_ENTRY(dconn) entry;
	struct destq *dq;
	struct smtpc *c;
	struct dmsg *cur;
	unsigned sent;
	bool ready_seen;
};

struct destq {
	char key[300];
	struct event_base *base;
	const struct relay_conf *relay;
	struct limits lim;
	struct smtpc_conf proto;
	struct destq_owner owner;
	struct dmsg_list queue;
	size_t nqueued;
	LIST_HEAD(, dconn) conns;
	unsigned nconns;
	bool stopped;
};

static void destq_kick(struct destq *dq);

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
conn_ready(struct smtpc *c, void *arg)
{
	struct dconn *dc = arg;
	struct destq *dq = dc->dq;
	struct smtpc_reply why;
	struct dmsg *m;

	dc->ready_seen = true;
	while (!dq->stopped && dc->sent < dq->lim.per_connection && (m = pop(dq))) {
		memset(&why, 0, sizeof(why));
		if (dq->owner.prepare(dq, m, &why, dq->owner.arg) < 0) {
			dq->owner.result(dq, m, &why, dq->owner.arg);
			continue;
		}
		dc->cur = m;
		dc->sent++;
		if (smtpc_send(c, &m->msg) == 0)
			return;
		dc->cur = NULL;
		snprintf(why.text, sizeof(why.text), "session not ready for a message");
		why.stage = SMTPC_MAIL;
		dq->owner.result(dq, m, &why, dq->owner.arg);
	}
	smtpc_quit(c);
}

static void
conn_done(struct smtpc *c, const struct smtpc_msg *msg, const struct smtpc_reply *r, void *arg)
{
	struct dconn *dc = arg;
	struct dmsg *m = dc->cur;

	(void)c, (void)msg;
	dc->cur = NULL;
	if (m)
		dc->dq->owner.result(dc->dq, m, r, dc->dq->owner.arg);
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
conn_closed(struct smtpc *c, const struct smtpc_reply *why, void *arg)
{
	struct dconn *dc = arg;
	struct destq *dq = dc->dq;
	char q[600];

	(void)c;
	LIST_REMOVE(dc, entry);
	dq->nconns--;
	if (why && !dc->ready_seen) {
		log_warn("dest=%s host=%s stage=%s code=%d reply=%s", dq->key, dq->proto.host,
		    smtpc_stage_name(why->stage), why->code, log_quote(q, sizeof(q), why->text));
		if (dq->nconns == 0)
			fail_queue(dq, why);
	}
	free(dc);
	if (dq->nconns == 0 && dq->nqueued == 0 && dq->owner.idle)
		dq->owner.idle(dq, dq->owner.arg);
	else
		destq_kick(dq);
}

static const struct smtpc_cbs conn_cbs = {
	.ready = conn_ready, .done = conn_done, .closed = conn_closed,
};

static void
destq_kick(struct destq *dq)
{
	while (!dq->stopped && dq->nqueued > dq->nconns && dq->nconns < dq->lim.connections) {
		struct dconn *dc = calloc(1, sizeof(*dc));
		if (!dc)
			fatalx("destq: out of memory");
		dc->dq = dq;
		LIST_INSERT_HEAD(&dq->conns, dc, entry);
		dq->nconns++;
		if (!(dc->c = smtpc_open(dq->base, &dq->proto, &conn_cbs, dc))) {
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

struct destq *
destq_new(struct event_base *base, const char *key, const struct relay_conf *relay,
    const struct limits *lim, const struct smtpc_conf *proto, const struct destq_owner *owner)
{
	struct destq *dq = calloc(1, sizeof(*dq));

	if (!dq)
		fatalx("destq: out of memory");
	snprintf(dq->key, sizeof(dq->key), "%s", key);
	dq->base = base;
	dq->relay = relay;
	dq->lim = *lim;
	if (dq->lim.connections == 0)
		dq->lim.connections = 1;
	if (dq->lim.per_connection == 0)
		dq->lim.per_connection = 1;
	dq->proto = *proto;
	if (relay) {
		dq->proto.addr = (const struct sockaddr *)&relay->addr;
		dq->proto.addrlen = relay->addrlen;
		dq->proto.host = relay->host;
	}
	dq->owner = *owner;
	TAILQ_INIT(&dq->queue);
	LIST_INIT(&dq->conns);
	return dq;
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
	free(dq);
}

const char *
destq_key(const struct destq *dq)
{
	return dq->key;
}

const char *
destq_host(const struct destq *dq)
{
	return dq->proto.host;
}

void
destq_push(struct destq *dq, struct dmsg *m)
{
	TAILQ_INSERT_TAIL(&dq->queue, m, entry);
	dq->nqueued++;
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
	dq->stopped = true;
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
