#ifndef HATO_GATEWAY_DESTQ_H
#define HATO_GATEWAY_DESTQ_H
/*
 * destq: one destination (a relay, a pace policy, an MX domain) with its
 * own queue of messages, its own connections and its own limits. The
 * dispatcher pushes leased messages in; the queue opens SMTP sessions up to
 * its connection limit, hands each session messages up to per_connection,
 * and reports every outcome back through the owner's result callback.
 */
#include <stdbool.h>
#include <stddef.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <event2/event.h>

#include "conf/config.h"
#include "gateway/smtpc.h"
#include "mail/address.h"
#include "sql/store.h"

struct djob;

struct dmsg {
	TAILQ_ENTRY(dmsg) entry;
	struct store_lease lease;
	struct djob *job;		/* the owner's */
	struct smtpc_msg msg;		/* filled by the owner's prepare() */
	char rcpt[ADDR_MAX + 8];	/* RFC 5321 form */
	char mail_from[300];
	char *head;			/* per-recipient header block */
};
TAILQ_HEAD(dmsg_list, dmsg);

struct destq;

struct destq_owner {
	/* Build m->msg just before it is sent; return -1 to fail it instead
	 * (result() is then called with the reason). */
	int (*prepare)(struct destq *dq, struct dmsg *m, struct smtpc_reply *why, void *arg);
	/* The outcome of one message; the owner takes m back. */
	void (*result)(struct destq *dq, struct dmsg *m, const struct smtpc_reply *r, void *arg);
	/* No session is open any more (used to finish a shutdown). */
	void (*idle)(struct destq *dq, void *arg);
	void *arg;
};

struct destq *destq_new(struct event_base *base, const char *key, const struct relay_conf *relay,
    const struct limits *lim, const struct smtpc_conf *proto, const struct destq_owner *owner);
void destq_free(struct destq *dq);

const char *destq_key(const struct destq *dq);
const char *destq_host(const struct destq *dq);	/* the server's name, or NULL */
void destq_push(struct destq *dq, struct dmsg *m);
/* Take back every queued message not handed to a session yet. */
void destq_take_queued(struct destq *dq, struct dmsg_list *out);
/* Open no new session; sessions quit after their current message. */
void destq_stop(struct destq *dq);
unsigned destq_sessions(const struct destq *dq);
size_t destq_queued(const struct destq *dq);

#endif
