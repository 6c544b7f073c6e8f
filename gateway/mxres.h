#ifndef HATO_GATEWAY_MXRES_H
#define HATO_GATEWAY_MXRES_H
/*
 * mxres: where to deliver a domain's mail, through c-ares on the event
 * loop (never blocking). MX lookup, then the A/AAAA addresses of each
 * exchanger in preference order; the domain's own address when it has no
 * MX (RFC 5321 §5.1); a null MX (RFC 7505) or a domain that does not exist
 * fails at once; DNS trouble (SERVFAIL, timeouts) is temporary. Answers
 * are cached for their TTL.
 */
#include <stddef.h>
#include <sys/socket.h>
#include <event2/event.h>

enum mxres_status {
	MXRES_OK = 0,
	MXRES_TEMPFAIL,		/* try again later: SERVFAIL, timeout, no answer */
	MXRES_PERMFAIL,		/* null MX, NXDOMAIN, no address at all */
};

struct mxres_host {
	char name[256];			/* the exchanger's name */
	unsigned pref;			/* its MX preference */
	struct sockaddr_storage addr;	/* one address of it, port 25 (or the configured port) */
	socklen_t addrlen;
};

struct mxres_answer {
	int status;			/* enum mxres_status */
	char why[256];			/* for logs and delivery records when not OK */
	struct mxres_host *hosts;	/* every address to try, in order */
	size_t nhosts;
};

struct mxres;

/* servers: "127.0.0.1:5353,[::1]:53" (c-ares server list syntax), or NULL
 * for the system's resolv.conf. port: the SMTP port put into the
 * addresses (25 in production; tests use others). */
struct mxres *mxres_new(struct event_base *base, const char *servers, unsigned port,
    unsigned timeout_ms, char *err, size_t errlen);
/* The callback always runs later from the event loop, never from inside
 * this call; the answer is valid only during the callback. */
void mxres_lookup(struct mxres *r, const char *domain,
    void (*cb)(const struct mxres_answer *a, void *arg), void *arg);
/* Pending callbacks are called with MXRES_TEMPFAIL ("resolver shut down"). */
void mxres_free(struct mxres *r);

#endif
