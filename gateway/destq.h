#ifndef HATO_GATEWAY_DESTQ_H
#define HATO_GATEWAY_DESTQ_H
/*
 * destq: one destination (a relay, a pace policy, an MX domain) with its
 * own queue of messages, its own connections, its own pace and its own
 * suspension. The dispatcher pushes leased messages in; the queue opens
 * SMTP sessions up to its connection limit, starts each message only in a
 * send slot of its pace, and reports every outcome back through the
 * owner's callbacks. Everything that needs the database or DNS (slot
 * reservations, suspensions, MX lookups) is asked of the owner, which
 * answers later with destq_pace_grant / destq_set_hosts.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <event2/event.h>

#include "conf/config.h"
#include "gateway/mxres.h"
#include "gateway/smtpc.h"
#include "mail/address.h"
#include "sql/store.h"

struct djob;

struct dmsg {
	TAILQ_ENTRY(dmsg) entry;
	struct store_lease lease;
	struct djob *job;		/* the owner's */
	uint64_t lease_deadline;	/* monotonic ms: not started after this */
	bool held;			/* counted in its destination's share */
	struct smtpc_msg msg;		/* filled by the owner's prepare() */
	char rcpt[ADDR_MAX + 8];	/* RFC 5321 form */
	char mail_from[300];
	char *head;			/* per-recipient header block */
};
TAILQ_HEAD(dmsg_list, dmsg);

struct destq;

/* A reply with code DESTQ_DROPPED: the message was not attempted and must
 * not be recorded (its lease ran out; another gateway may have it now). */
#define DESTQ_DROPPED (-1)

struct destq_owner {
	/* Build m->msg just before it is sent: 0, or -1 to fail it with why,
	 * or -2 to drop it unattempted. */
	int (*prepare)(struct destq *dq, struct dmsg *m, struct smtpc_reply *why, void *arg);
	/* The outcome of one message; the owner takes m back. */
	void (*result)(struct destq *dq, struct dmsg *m, const struct smtpc_reply *r, void *arg);
	/* No session is open and nothing is queued. */
	void (*idle)(struct destq *dq, void *arg);
	/* Reserve k send slots (base gap in µs; factor earned since the last
	 * reservation); answer with destq_pace_grant. */
	void (*reserve)(struct destq *dq, unsigned k, uint64_t base_gap_us, double factor_add, void *arg);
	/* The destination said stop: share the suspension. */
	void (*suspend)(struct destq *dq, uint64_t ms, const char *reason, void *arg);
	/* Look up the MX hosts of destq_domain(dq); answer with destq_set_hosts. */
	void (*resolve)(struct destq *dq, void *arg);
	void *arg;
};

/* relay: connect there; NULL: an MX destination for domain. */
struct destq *destq_new(struct event_base *base, const char *key, const char *domain,
    const struct relay_conf *relay, const struct limits *lim, const char *suspend_on,
    const struct smtpc_conf *proto, const struct destq_owner *owner);
void destq_free(struct destq *dq);

/* New limits after a reload (the relay and its address may change too). */
void destq_update(struct destq *dq, const struct relay_conf *relay, const struct limits *lim,
    const char *suspend_on, const struct smtpc_conf *proto);

const char *destq_key(const struct destq *dq);
const char *destq_domain(const struct destq *dq);
const char *destq_host(const struct destq *dq);	/* the server last used, or NULL */
const struct limits *destq_limits(const struct destq *dq);
/* Current rate factor (1 when unpaced), and whether suspended now. */
double destq_factor(const struct destq *dq);
/* Messages per second this gateway gets of a paced destination (-1: unpaced). */
double destq_local_rate(const struct destq *dq);
bool destq_suspended(const struct destq *dq);
/* Milliseconds the suspension has left (0: not suspended). */
double destq_suspended_ms(const struct destq *dq);

void destq_push(struct destq *dq, struct dmsg *m);
/* Take back every queued message not handed to a session yet. */
void destq_take_queued(struct destq *dq, struct dmsg_list *out);
/* Open no new session; sessions quit after their current message. */
void destq_stop(struct destq *dq);
unsigned destq_sessions(const struct destq *dq);
size_t destq_queued(const struct destq *dq);

/* Answers to the owner's work. */
void destq_pace_grant(struct destq *dq, const struct store_pace *res, unsigned k, double offset_ms);
void destq_pace_failed(struct destq *dq);
void destq_set_hosts(struct destq *dq, const struct mxres_answer *a);

#endif
