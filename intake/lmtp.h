#ifndef HATO_INTAKE_LMTP_H
#define HATO_INTAKE_LMTP_H
/*
 * lmtp: an LMTP server (RFC 2033) on libevent, on a unix socket and/or a
 * TCP address. It speaks the protocol and nothing else: each finished mail
 * transaction goes to the owner's handler, which answers later (from
 * another thread's completion, say) with one reply per recipient through
 * lmtp_txn_reply(). Until then the session reads no further commands.
 */
#include <stddef.h>
#include <event2/event.h>

struct lmtp_session;

struct lmtp_txn {
	char *mail_from;	/* envelope sender without <> ("" for null) */
	char **rcpts;		/* accepted recipients, as given */
	size_t nrcpt;
	char *data;		/* the message, dot-unstuffed, CRLF lines */
	size_t len;
	int too_big;		/* data went over the size limit and was cut */
};

struct lmtp_cbs {
	/* RCPT TO: return NULL to accept, or a full reply ("550 5.1.1 ...") to refuse. */
	const char *(*rcpt)(const char *rcpt, void *arg);
	/* End of DATA: the owner answers with lmtp_txn_reply, now or later. */
	void (*message)(struct lmtp_session *s, struct lmtp_txn *txn, void *arg);
};

struct lmtp_server;

struct lmtp_server *lmtp_server_new(struct event_base *base, const char *hostname,
    size_t max_size, const struct lmtp_cbs *cbs, void *arg);
/* "host:port" (loopback or any; [v6]:port) or a unix socket path. */
int lmtp_listen_tcp(struct lmtp_server *srv, const char *hostport, char *err, size_t errlen);
int lmtp_listen_unix(struct lmtp_server *srv, const char *path, char *err, size_t errlen);
/* Stop accepting; sessions go on. */
void lmtp_server_close_listeners(struct lmtp_server *srv);
/* Transactions handed to the owner and not answered yet. */
unsigned lmtp_server_busy(const struct lmtp_server *srv);
void lmtp_server_free(struct lmtp_server *srv);

/* One reply per recipient, in order ("250 2.0.0 ..."). The transaction is
 * freed here; the session goes on (or is closed if its client left). */
void lmtp_txn_reply(struct lmtp_session *s, struct lmtp_txn *txn, const char *const *replies);

#endif
