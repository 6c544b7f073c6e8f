/*
 * mxres: where to deliver a domain's mail, through c-ares on the caller's
 * event loop.
 *
 * mxres_new() opens a c-ares channel that never blocks: each of its
 * sockets gets a libevent event (read and/or write, as c-ares' socket-state
 * callback asks), and one timer, re-armed from ares_timeout() after every
 * activity, runs its retransmissions and timeouts. mxres_lookup() asks for
 * the domain's MX records (RFC 5321 §5.1), then the A and AAAA records of
 * every exchanger, and answers one mxres_host per address, best preference
 * first. mxres_free() ends it all.
 *
 * Outcomes. A null MX (RFC 7505: one MX, preference 0, host ".") and
 * NXDOMAIN fail permanently. A domain without MX (NODATA) is its own
 * exchanger, preference 0. An exchanger whose addresses cannot be found is
 * skipped; when no exchanger has an address, the lookup fails temporarily
 * if any of its lookups failed temporarily, else permanently. SERVFAIL,
 * REFUSED, timeouts and network errors are temporary.
 *
 * Order. Exchangers by preference; those of equal preference are shuffled
 * once per DNS answer (RFC 5321 §5.1 asks to spread the load), so lookups
 * served from the cache see one order until the answer expires. An
 * exchanger's addresses keep c-ares' order (RFC 6724 sorting); an address
 * (or a name) already listed for a better exchanger is not repeated. An
 * exchanger named by an address, "localhost" or "." is skipped, and at
 * most MAX_EXCH exchangers are followed.
 *
 * Cache. Answers are kept by lower-cased domain for the smallest TTL of
 * the records they rest on: the records of the MX answer (read from the raw
 * message, since ares_parse_mx_reply() gives no TTL in c-ares 1.18), and
 * every address's ai_ttl (and CNAME ttl) from ares_getaddrinfo(). Negative
 * answers live for the SOA's negative TTL (RFC 2308), 60 s without a SOA,
 * 5 min at most; temporary failures 5 s, so that a burst of messages to a
 * broken domain asks once. Lookups of a domain whose query runs wait for
 * that query. At most CACHE_MAX domains are kept, the oldest answers going
 * first.
 *
 * Ownership. The resolver owns its cache entries, their answers and the
 * waiting lookups; an answer handed to a callback is valid during the
 * callback only. Callbacks always run from the event loop (a zero timer),
 * never from inside mxres_lookup(), and may call mxres_lookup() or
 * mxres_free(). Out of memory for a few bytes is fatal, as in worker.c.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>

#include <ares.h>
#include <event2/util.h>

#include "core/log.h"
#include "gateway/mxres.h"

#define TEMP_TTL	5	/* s: a temporary failure */
#define NEG_TTL_MAX	300	/* s: RFC 2308 allows hours; a fixed zone shows up sooner */
#define NEG_TTL_NOSOA	60	/* s: a negative answer without SOA */
#define POS_TTL_MAX	86400	/* s */
#define PARTIAL_TTL_MAX	60	/* s: an answer missing an exchanger that failed for now */
#define MAX_EXCH	32	/* exchangers followed per domain */
#define CACHE_MAX	10000	/* domains kept */
#define NBUCKETS	1024

struct mxans {				/* one answer, shared by the lookups it serves */
	unsigned refs;
	struct mxres_answer a;
};

struct mxwait {				/* one mxres_lookup() not yet answered */
	TAILQ_ENTRY(mxwait) entry;
	void (*cb)(const struct mxres_answer *, void *);
	void *arg;
	struct mxans *ans;		/* set once answered */
};
TAILQ_HEAD(mxwait_list, mxwait);

struct exch {				/* an exchanger whose addresses are asked for */
	struct mxent *e;
	char name[256];
	unsigned pref;
	uint32_t tiebreak;
	struct ares_addrinfo *ai;
};

struct mxent {				/* a domain: its last answer, its running query */
	LIST_ENTRY(mxent) hash;
	TAILQ_ENTRY(mxent) age;
	struct mxres *r;
	char domain[256];
	struct mxans *ans;		/* NULL before the first answer */
	uint64_t expires;		/* ms, CLOCK_MONOTONIC */
	struct mxwait_list waiters;
	bool running;
	/* The running query. */
	struct exch *exch;
	size_t nexch;
	size_t outstanding;		/* address lookups not finished */
	long ttl;			/* the smallest TTL seen, s */
	bool implicit;			/* no MX: the domain is its own exchanger */
	char temp[200];			/* the first temporary failure of an exchanger */
};

struct mxsock {				/* a c-ares socket and its event */
	LIST_ENTRY(mxsock) entry;
	ares_socket_t fd;
	short what;
	struct event *ev;
};

struct mxres {
	struct event_base *base;
	ares_channel channel;
	unsigned port;
	struct event *timer;		/* c-ares' timeouts */
	struct event *ready_ev;		/* runs the callbacks of answered lookups */
	struct mxwait_list ready;
	LIST_HEAD(, mxsock) socks;
	LIST_HEAD(, mxent) buckets[NBUCKETS];
	TAILQ_HEAD(, mxent) age;	/* oldest answer first */
	size_t nent;
	bool closing;
	bool *alive;			/* ready_cb's, cleared by mxres_free() */
};

static bool ares_ready;

static void query_finish(struct mxent *, int, const char *, long, struct mxres_host *, size_t);

static void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);

	if (p == NULL)
		fatalx("mxres: out of memory");
	return p;
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *
status_name(int status)
{
	return status == MXRES_OK ? "ok" : status == MXRES_TEMPFAIL ? "tempfail" : "permfail";
}

/* Why a c-ares lookup failed, for logs and delivery records. */
static const char *
dns_why(int status)
{
	switch (status) {
	case ARES_ESERVFAIL:
		return "DNS server failure (SERVFAIL)";
	case ARES_EREFUSED:
		return "DNS query refused (REFUSED)";
	case ARES_ETIMEOUT:
		return "DNS timeout";
	case ARES_ENOTIMP:
		return "DNS query not implemented by the server (NOTIMP)";
	case ARES_EFORMERR:
		return "DNS server could not read the query (FORMERR)";
	case ARES_ECONNREFUSED:
		/* Also SERVFAIL, REFUSED or NOTIMP from every server when
		 * there are several (c-ares 1.18). */
		return "no usable answer from any DNS server";
	case ARES_EBADRESP:
		return "malformed DNS answer";
	default:
		return ares_strerror(status);
	}
}

/* Only "no such name" and "no such record" are lasting answers. */
static bool
dns_temporary(int status)
{
	return status != ARES_ENOTFOUND && status != ARES_ENODATA && status != ARES_EBADNAME;
}

/* ---- answers and waiting lookups ---- */

static struct mxans *
ans_new(int status, const char *why, struct mxres_host *hosts, size_t n)
{
	struct mxans *ans = xcalloc(1, sizeof *ans);

	ans->refs = 1;
	ans->a.status = status;
	snprintf(ans->a.why, sizeof ans->a.why, "%s", why);
	ans->a.hosts = hosts;
	ans->a.nhosts = n;
	return ans;
}

static void
ans_unref(struct mxans *ans)
{
	if (ans == NULL || --ans->refs > 0)
		return;
	free(ans->a.hosts);
	free(ans);
}

static void
wait_free(struct mxwait *w)
{
	ans_unref(w->ans);
	free(w);
}

/* Callbacks run from a zero timer: after the loop has polled, so a
 * callback that looks up again and again cannot starve the sockets. */
static void
ready_schedule(struct mxres *r)
{
	static const struct timeval zero = { 0, 0 };

	if (!TAILQ_EMPTY(&r->ready) && !evtimer_pending(r->ready_ev, NULL))
		evtimer_add(r->ready_ev, &zero);
}

static void
ready_push(struct mxres *r, struct mxwait *w)
{
	TAILQ_INSERT_TAIL(&r->ready, w, entry);
	ready_schedule(r);
}

/* The lookups answered before this run; those they start wait for the
 * next one. A callback may free the resolver: then stop at once. */
static void
ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mxres *r = arg;
	struct mxwait *w, *last = TAILQ_LAST(&r->ready, mxwait_list);
	bool alive = true, done = false;

	(void)fd;
	(void)what;
	r->alive = &alive;
	while (!done && (w = TAILQ_FIRST(&r->ready)) != NULL) {
		TAILQ_REMOVE(&r->ready, w, entry);
		done = w == last;
		w->cb(&w->ans->a, w->arg);
		wait_free(w);
		if (!alive)
			return;
	}
	r->alive = NULL;
	ready_schedule(r);
}

/* ---- c-ares on the event loop ---- */

static void
timer_arm(struct mxres *r)
{
	struct timeval tv, *tvp;

	if ((tvp = ares_timeout(r->channel, NULL, &tv)) != NULL)
		evtimer_add(r->timer, tvp);
	else
		evtimer_del(r->timer);
}

static void
sock_ready(evutil_socket_t fd, short what, void *arg)
{
	struct mxres *r = arg;

	ares_process_fd(r->channel, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
	    (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	timer_arm(r);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mxres *r = arg;

	(void)fd;
	(void)what;
	ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	timer_arm(r);
}

/* c-ares opens, watches and closes its sockets through this; it calls it
 * with neither flag before it closes one. */
static void
sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct mxres *r = data;
	struct mxsock *s;
	short what = (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);

	LIST_FOREACH(s, &r->socks, entry)
		if (s->fd == fd)
			break;
	if (what == 0) {
		if (s != NULL) {
			LIST_REMOVE(s, entry);
			event_free(s->ev);
			free(s);
		}
		return;
	}
	if (s == NULL) {
		s = xcalloc(1, sizeof *s);
		s->fd = fd;
		if ((s->ev = event_new(r->base, fd, what | EV_PERSIST, sock_ready, r)) == NULL)
			fatalx("mxres: out of memory");
		LIST_INSERT_HEAD(&r->socks, s, entry);
	} else if (s->what == what)
		return;
	else {
		event_del(s->ev);
		event_assign(s->ev, r->base, fd, what | EV_PERSIST, sock_ready, r);
	}
	s->what = what;
	event_add(s->ev, NULL);
}

/* ---- TTLs from the raw answer ---- */

static int
skip_name(const unsigned char *m, int len, int off)
{
	while (off < len) {
		if ((m[off] & 0xC0) == 0xC0)
			return off + 2 <= len ? off + 2 : -1;
		if (m[off] & 0xC0)
			return -1;
		if (m[off] == 0)
			return off + 1;
		off += m[off] + 1;
	}
	return -1;
}

static uint32_t
get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * The smallest TTL of the answer section's records; for a negative answer
 * (no records), min(TTL, MINIMUM) of the authority section's SOA (RFC 2308
 * §5). -1 when there is none or the message is malformed. A TTL with the
 * top bit set counts as 0 (RFC 2181 §8).
 */
static long
answer_ttl(const unsigned char *m, int len, bool negative)
{
	int off = NS_HFIXEDSZ, i, n, qd, an, ns;
	long ttl = -1, t;

	if (m == NULL || len < NS_HFIXEDSZ)
		return -1;
	qd = m[4] << 8 | m[5];
	an = m[6] << 8 | m[7];
	ns = m[8] << 8 | m[9];
	for (i = 0; i < qd; i++)
		if ((off = skip_name(m, len, off)) < 0 || (off += NS_QFIXEDSZ) > len)
			return -1;
	n = negative ? an + ns : an;
	for (i = 0; i < n; i++) {
		int type, rdlen, rd;

		if ((off = skip_name(m, len, off)) < 0 || off + NS_RRFIXEDSZ > len)
			return -1;
		type = m[off] << 8 | m[off + 1];
		t = get32(m + off + 4) > INT32_MAX ? 0 : (long)get32(m + off + 4);
		rdlen = m[off + 8] << 8 | m[off + 9];
		rd = off + NS_RRFIXEDSZ;
		if ((off = rd + rdlen) > len)
			return -1;
		if (negative && i >= an && type == ns_t_soa) {
			int p = skip_name(m, len, rd);

			if (p < 0 || (p = skip_name(m, len, p)) < 0 || p + 20 > off)
				return -1;
			if (get32(m + p + 16) <= INT32_MAX && (long)get32(m + p + 16) < t)
				t = (long)get32(m + p + 16);
			return t;
		}
		if (!negative && (ttl < 0 || t < ttl))
			ttl = t;
	}
	return ttl;
}

static void
ttl_min(struct mxent *e, long t)
{
	if (t >= 0 && t < e->ttl)
		e->ttl = t;
}

/* ---- the cache ---- */

static unsigned
hash(const char *s)
{
	uint32_t h = 2166136261u;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 16777619u;
	return h % NBUCKETS;
}

/* The cache key: lower case, no final dot; -1 unless a host name
 * (letters, digits, '-', '_'; labels of 1 to 63; 253 in all). */
static int
domain_key(const char *domain, char *key, size_t size)
{
	size_t len = domain != NULL ? strlen(domain) : 0, i, label = 0;

	if (len > 0 && domain[len - 1] == '.')
		len--;
	if (len == 0 || len > 253 || len >= size)
		return -1;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)domain[i];

		if (c == '.') {
			if (label == 0)
				return -1;
			label = 0;
		} else if (isalnum(c) || c == '-' || c == '_') {
			if (++label > 63)
				return -1;
		} else
			return -1;
		key[i] = (char)tolower(c);
	}
	key[len] = '\0';
	return 0;
}

static struct mxent *
cache_get(struct mxres *r, const char *key)
{
	struct mxent *e;

	LIST_FOREACH(e, &r->buckets[hash(key)], hash)
		if (strcmp(e->domain, key) == 0)
			return e;
	return NULL;
}

static void
exch_clear(struct mxent *e)
{
	size_t i;

	for (i = 0; i < e->nexch; i++)
		if (e->exch[i].ai != NULL)
			ares_freeaddrinfo(e->exch[i].ai);
	free(e->exch);
	e->exch = NULL;
	e->nexch = 0;
}

static void
entry_free(struct mxres *r, struct mxent *e)
{
	LIST_REMOVE(e, hash);
	TAILQ_REMOVE(&r->age, e, age);
	r->nent--;
	exch_clear(e);
	ans_unref(e->ans);
	free(e);
}

/* Room for one more: expired answers go, then the oldest ones. Entries
 * whose query runs stay (c-ares holds them). */
static void
cache_trim(struct mxres *r)
{
	struct mxent *e, *next;
	uint64_t now = now_ms();

	for (e = TAILQ_FIRST(&r->age); e != NULL && r->nent >= CACHE_MAX; e = next) {
		next = TAILQ_NEXT(e, age);
		if (!e->running)
			entry_free(r, e);
	}
	while ((e = TAILQ_FIRST(&r->age)) != NULL && !e->running && e->expires <= now)
		entry_free(r, e);
}

static struct mxent *
cache_add(struct mxres *r, const char *key)
{
	struct mxent *e;

	cache_trim(r);
	e = xcalloc(1, sizeof *e);
	e->r = r;
	snprintf(e->domain, sizeof e->domain, "%s", key);
	TAILQ_INIT(&e->waiters);
	LIST_INSERT_HEAD(&r->buckets[hash(key)], e, hash);
	TAILQ_INSERT_TAIL(&r->age, e, age);
	r->nent++;
	return e;
}

/* ---- one domain's query: MX, then the exchangers' addresses ---- */

static bool
same_addr(const struct mxres_host *h, const struct sockaddr *sa)
{
	if (h->addr.ss_family != sa->sa_family)
		return false;
	if (sa->sa_family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)&h->addr)->sin_addr,
		    &((const struct sockaddr_in *)sa)->sin_addr, sizeof(struct in_addr)) == 0;
	return memcmp(&((const struct sockaddr_in6 *)&h->addr)->sin6_addr,
	    &((const struct sockaddr_in6 *)sa)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

/* Appends one host unless its address is listed already; returns the new count. */
static size_t
host_add(struct mxres_host *hosts, size_t n, const struct exch *x, const struct ares_addrinfo_node *nd,
    unsigned port)
{
	struct mxres_host *h = &hosts[n];
	size_t i;

	if ((nd->ai_family != AF_INET && nd->ai_family != AF_INET6) ||
	    nd->ai_addrlen > sizeof h->addr)
		return n;
	for (i = 0; i < n; i++)
		if (same_addr(&hosts[i], nd->ai_addr))
			return n;
	memset(h, 0, sizeof *h);
	snprintf(h->name, sizeof h->name, "%s", x->name);
	h->pref = x->pref;
	memcpy(&h->addr, nd->ai_addr, nd->ai_addrlen);
	h->addrlen = nd->ai_addrlen;
	if (nd->ai_family == AF_INET)
		((struct sockaddr_in *)&h->addr)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)&h->addr)->sin6_port = htons((uint16_t)port);
	return n + 1;
}

/* Every address lookup has ended: the answer. */
static void
exch_done(struct mxent *e)
{
	struct mxres_host *hosts;
	const struct ares_addrinfo_node *nd;
	const struct ares_addrinfo_cname *cn;
	char why[256];
	size_t i, n = 0, max = 0;

	for (i = 0; i < e->nexch; i++)
		for (nd = e->exch[i].ai ? e->exch[i].ai->nodes : NULL; nd; nd = nd->ai_next)
			max++;
	hosts = max > 0 ? xcalloc(max, sizeof *hosts) : NULL;
	for (i = 0; i < e->nexch; i++) {
		if (e->exch[i].ai == NULL)
			continue;
		for (nd = e->exch[i].ai->nodes; nd; nd = nd->ai_next) {
			n = host_add(hosts, n, &e->exch[i], nd, e->r->port);
			ttl_min(e, nd->ai_ttl);
		}
		for (cn = e->exch[i].ai->cnames; cn; cn = cn->next)
			ttl_min(e, cn->ttl);
	}
	if (n > 0) {
		/* Missing an exchanger for now: ask again soon for it. */
		query_finish(e, MXRES_OK, "", e->temp[0] ? (e->ttl < PARTIAL_TTL_MAX ? e->ttl :
		    PARTIAL_TTL_MAX) : e->ttl, hosts, n);
		return;
	}
	free(hosts);
	if (e->temp[0] != '\0') {
		snprintf(why, sizeof why, "no address for any MX host (%s)", e->temp);
		query_finish(e, MXRES_TEMPFAIL, why, TEMP_TTL, NULL, 0);
	} else
		query_finish(e, MXRES_PERMFAIL, e->implicit ? "no MX and no address for the domain" :
		    "no address for any MX host", e->ttl < NEG_TTL_NOSOA ? e->ttl : NEG_TTL_NOSOA, NULL, 0);
}

static void
addr_done(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct exch *x = arg;
	struct mxent *e = x->e;

	(void)timeouts;
	if (status == ARES_SUCCESS)
		x->ai = res;
	else if (res != NULL)
		ares_freeaddrinfo(res);
	e->outstanding--;
	/* Ended by mxres_free(): it frees the entry once c-ares is gone. */
	if (e->r->closing)
		return;
	if (status != ARES_SUCCESS) {
		char q[300];

		log_debug("mxres: domain=%s exchanger=%s error=\"%s\"", e->domain,
		    log_quote(q, sizeof q, x->name), dns_why(status));
		if (dns_temporary(status) && e->temp[0] == '\0')
			snprintf(e->temp, sizeof e->temp, "%s: %s", x->name, dns_why(status));
	}
	if (e->outstanding == 0)
		exch_done(e);
}

/* Asks for the addresses of every exchanger at once. A lookup may end
 * inside ares_getaddrinfo() (an address literal, an error): the extra
 * count keeps the query open until all are started. */
static void
exch_resolve(struct mxent *e)
{
	struct ares_addrinfo_hints hints;
	size_t i;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	e->outstanding = e->nexch + 1;
	for (i = 0; i < e->nexch; i++)
		ares_getaddrinfo(e->r->channel, e->exch[i].name, NULL, &hints, addr_done, &e->exch[i]);
	if (--e->outstanding == 0)
		exch_done(e);
}

static int
exch_cmp(const void *a, const void *b)
{
	const struct exch *x = a, *y = b;

	if (x->pref != y->pref)
		return x->pref < y->pref ? -1 : 1;
	return x->tiebreak < y->tiebreak ? -1 : x->tiebreak > y->tiebreak;
}

/*
 * Exchangers no one may deliver to: the root (a null MX among others), an
 * address where a name must be (RFC 5321 §5.1; c-ares would take it as
 * the address), and localhost (RFC 6761 §6.3), which c-ares 1.18 does not
 * ask DNS about.
 */
static bool
exch_unusable(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];
	size_t len = strlen(host);

	if (len == 0 || strcmp(host, ".") == 0 || len >= sizeof ((struct exch *)0)->name)
		return true;
	if (inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1)
		return true;
	return strcasecmp(host, "localhost") == 0 ||
	    (len > 10 && strcasecmp(host + len - 10, ".localhost") == 0);
}

/* The exchangers of an MX answer, by preference, equal ones shuffled, a
 * name listed twice kept at its best preference, unusable ones dropped. */
static size_t
exch_from_mx(struct mxent *e, const struct ares_mx_reply *mx)
{
	const struct ares_mx_reply *p;
	size_t n = 0, i, j, kept = 0;
	char q[300];

	for (p = mx; p != NULL; p = p->next)
		n++;
	e->exch = xcalloc(n, sizeof *e->exch);
	for (p = mx; p != NULL; p = p->next) {
		struct exch *x = &e->exch[e->nexch];

		if (exch_unusable(p->host)) {
			log_debug("mxres: domain=%s exchanger=%s unusable", e->domain,
			    log_quote(q, sizeof q, p->host));
			continue;
		}
		x->e = e;
		snprintf(x->name, sizeof x->name, "%s", p->host);
		x->pref = p->priority;
		evutil_secure_rng_get_bytes(&x->tiebreak, sizeof x->tiebreak);
		e->nexch++;
	}
	qsort(e->exch, e->nexch, sizeof *e->exch, exch_cmp);
	for (i = 0; i < e->nexch && kept < MAX_EXCH; i++) {
		for (j = 0; j < kept; j++)
			if (strcasecmp(e->exch[j].name, e->exch[i].name) == 0)
				break;
		if (j == kept)
			e->exch[kept++] = e->exch[i];
	}
	e->nexch = kept;
	return kept;
}

static void
mx_records(struct mxent *e, const unsigned char *abuf, int alen)
{
	struct ares_mx_reply *mx = NULL;
	int rc;

	ttl_min(e, answer_ttl(abuf, alen, false));
	if ((rc = ares_parse_mx_reply(abuf, alen, &mx)) == ARES_ENODATA) {
		/* Records, but no MX (a CNAME to a name without MX): the
		 * domain is its own exchanger. */
		e->implicit = true;
	} else if (rc != ARES_SUCCESS) {
		query_finish(e, MXRES_TEMPFAIL, "malformed MX answer", TEMP_TTL, NULL, 0);
		return;
	} else if (mx->next == NULL && mx->priority == 0 && (mx->host[0] == '\0' ||
	    strcmp(mx->host, ".") == 0)) {
		ares_free_data(mx);
		query_finish(e, MXRES_PERMFAIL, "null MX: domain accepts no mail", e->ttl, NULL, 0);
		return;
	} else if (exch_from_mx(e, mx) == 0) {
		ares_free_data(mx);
		query_finish(e, MXRES_PERMFAIL, "no address for any MX host", e->ttl, NULL, 0);
		return;
	}
	if (mx != NULL)
		ares_free_data(mx);
	if (e->implicit) {
		e->exch = xcalloc(1, sizeof *e->exch);
		e->exch[0].e = e;
		snprintf(e->exch[0].name, sizeof e->exch[0].name, "%s", e->domain);
		e->nexch = 1;
	}
	exch_resolve(e);
}

static void
mx_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct mxent *e = arg;
	char why[256];
	long neg;

	(void)timeouts;
	if (e->r->closing)
		return;
	switch (status) {
	case ARES_SUCCESS:
		mx_records(e, abuf, alen);
		break;
	case ARES_ENODATA:
		/* RFC 5321 §5.1: no MX, the domain is its own exchanger, for
		 * as long as the absence of MX may be believed. */
		neg = answer_ttl(abuf, alen, true);
		ttl_min(e, neg >= 0 ? neg : NEG_TTL_NOSOA);
		e->implicit = true;
		e->exch = xcalloc(1, sizeof *e->exch);
		e->exch[0].e = e;
		snprintf(e->exch[0].name, sizeof e->exch[0].name, "%s", e->domain);
		e->nexch = 1;
		exch_resolve(e);
		break;
	case ARES_ENOTFOUND:
		neg = answer_ttl(abuf, alen, true);
		query_finish(e, MXRES_PERMFAIL, "domain does not exist", neg >= 0 ? neg : NEG_TTL_NOSOA,
		    NULL, 0);
		break;
	case ARES_EBADNAME:
		query_finish(e, MXRES_PERMFAIL, "invalid domain name", NEG_TTL_MAX, NULL, 0);
		break;
	default:
		snprintf(why, sizeof why, "MX lookup failed: %s", dns_why(status));
		query_finish(e, MXRES_TEMPFAIL, why, TEMP_TTL, NULL, 0);
		break;
	}
}

/* The query of e has an answer: keep it, and answer its waiting lookups. */
static void
query_finish(struct mxent *e, int status, const char *why, long ttl, struct mxres_host *hosts, size_t n)
{
	struct mxres *r = e->r;
	struct mxans *ans;
	struct mxwait *w;

	if (ttl < 0)
		ttl = 0;
	if (status == MXRES_PERMFAIL && ttl > NEG_TTL_MAX)
		ttl = NEG_TTL_MAX;
	else if (status == MXRES_TEMPFAIL && ttl > TEMP_TTL)
		ttl = TEMP_TTL;
	else if (ttl > POS_TTL_MAX)
		ttl = POS_TTL_MAX;
	if (log_enabled(LOG_DEBUG_L)) {
		char q[300];

		log_debug("mxres: domain=%s status=%s hosts=%zu ttl=%ld why=%s", e->domain,
		    status_name(status), n, ttl, log_quote(q, sizeof q, why));
	}

	ans = ans_new(status, why, hosts, n);
	ans_unref(e->ans);
	e->ans = ans;
	e->expires = now_ms() + (uint64_t)ttl * 1000;
	e->running = false;
	exch_clear(e);
	while ((w = TAILQ_FIRST(&e->waiters)) != NULL) {
		TAILQ_REMOVE(&e->waiters, w, entry);
		w->ans = ans;
		ans->refs++;
		ready_push(r, w);
	}
	TAILQ_REMOVE(&r->age, e, age);
	TAILQ_INSERT_TAIL(&r->age, e, age);
}

static void
query_start(struct mxent *e)
{
	e->running = true;
	e->ttl = POS_TTL_MAX;
	e->implicit = false;
	e->temp[0] = '\0';
	ares_query(e->r->channel, e->domain, ns_c_in, ns_t_mx, mx_done, e);
	timer_arm(e->r);
}

/* ---- the public functions ---- */

/* Names are absolute: no search list, no host aliases, no hosts file. */
static int
channel_open(struct mxres *r, const char *servers, unsigned timeout_ms, int flags, char *err,
    size_t errlen)
{
	static char dns_only[] = "b";
	struct ares_options o;
	int rc;

	memset(&o, 0, sizeof o);
	o.sock_state_cb = sock_state;
	o.sock_state_cb_data = r;
	o.timeout = timeout_ms > 0 && timeout_ms <= INT_MAX ? (int)timeout_ms : 5000;
	o.tries = 2;
	o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES | flags;
	o.domains = NULL;
	o.ndomains = 0;
	o.lookups = dns_only;
	if ((rc = ares_init_options(&r->channel, &o, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS |
	    ARES_OPT_TRIES | ARES_OPT_FLAGS | ARES_OPT_DOMAINS | ARES_OPT_LOOKUPS)) != ARES_SUCCESS) {
		snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
		return -1;
	}
	if (servers != NULL && *servers != '\0' &&
	    (rc = ares_set_servers_ports_csv(r->channel, servers)) != ARES_SUCCESS) {
		snprintf(err, errlen, "bad DNS server list \"%s\": %s", servers, ares_strerror(rc));
		ares_destroy(r->channel);
		return -1;
	}
	return 0;
}

static int
server_count(ares_channel channel)
{
	struct ares_addr_port_node *list = NULL, *p;
	int n = 0;

	if (ares_get_servers_ports(channel, &list) != ARES_SUCCESS)
		return -1;
	for (p = list; p != NULL; p = p->next)
		n++;
	ares_free_data(list);
	return n;
}

struct mxres *
mxres_new(struct event_base *base, const char *servers, unsigned port, unsigned timeout_ms,
    char *err, size_t errlen)
{
	struct mxres *r;
	size_t i;
	int rc;

	if (port == 0 || port > 65535) {
		snprintf(err, errlen, "bad SMTP port %u", port);
		return NULL;
	}
	/* Seeded now, not at the first shuffle. */
	if (evutil_secure_rng_init() == -1) {
		snprintf(err, errlen, "no random source");
		return NULL;
	}
	if (!ares_ready) {
		if ((rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
			snprintf(err, errlen, "c-ares: %s", ares_strerror(rc));
			return NULL;
		}
		ares_ready = true;
	}
	if ((r = calloc(1, sizeof *r)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->base = base;
	r->port = port;
	TAILQ_INIT(&r->ready);
	LIST_INIT(&r->socks);
	for (i = 0; i < NBUCKETS; i++)
		LIST_INIT(&r->buckets[i]);
	TAILQ_INIT(&r->age);

	if (channel_open(r, servers, timeout_ms, 0, err, errlen) == -1) {
		free(r);
		return NULL;
	}
	/*
	 * c-ares 1.18 retries SERVFAIL, REFUSED and NOTIMP on the next
	 * server, and once all are tried reports ECONNREFUSED, as if no
	 * server could be reached. With one server there is nothing to fail
	 * over to: take its answer as it is (NOCHECKRESP), and the reason
	 * says what the server said. Answers to another question are still
	 * dropped. With several servers, failing over is worth more.
	 */
	if (server_count(r->channel) == 1) {
		ares_destroy(r->channel);
		if (channel_open(r, servers, timeout_ms, ARES_FLAG_NOCHECKRESP, err, errlen) == -1) {
			free(r);
			return NULL;
		}
	}
	r->timer = evtimer_new(base, timer_cb, r);
	r->ready_ev = evtimer_new(base, ready_cb, r);
	if (r->timer == NULL || r->ready_ev == NULL) {
		snprintf(err, errlen, "out of memory");
		if (r->timer != NULL)
			event_free(r->timer);
		if (r->ready_ev != NULL)
			event_free(r->ready_ev);
		ares_destroy(r->channel);
		free(r);
		return NULL;
	}
	return r;
}

void
mxres_lookup(struct mxres *r, const char *domain, void (*cb)(const struct mxres_answer *a, void *arg),
    void *arg)
{
	struct mxwait *w = xcalloc(1, sizeof *w);
	struct mxent *e;
	char key[256];

	w->cb = cb;
	w->arg = arg;
	if (r->closing) {
		/* From a callback run by mxres_free(), which answers it. */
		TAILQ_INSERT_TAIL(&r->ready, w, entry);
		return;
	}
	if (domain_key(domain, key, sizeof key) == -1) {
		w->ans = ans_new(MXRES_PERMFAIL, "invalid domain name", NULL, 0);
		ready_push(r, w);
		return;
	}
	e = cache_get(r, key);
	if (e != NULL && !e->running && e->ans != NULL && now_ms() < e->expires) {
		w->ans = e->ans;
		e->ans->refs++;
		ready_push(r, w);
		return;
	}
	if (e == NULL)
		e = cache_add(r, key);
	TAILQ_INSERT_TAIL(&e->waiters, w, entry);
	if (!e->running)
		query_start(e);
}

void
mxres_free(struct mxres *r)
{
	static const struct mxres_answer down = { MXRES_TEMPFAIL, "resolver shut down", NULL, 0 };
	struct mxent *e;
	struct mxwait *w;
	struct mxsock *s;

	/* Called again from one of the callbacks below: this call finishes. */
	if (r == NULL || r->closing)
		return;
	r->closing = true;
	if (r->alive != NULL)
		*r->alive = false;
	/* Ends every query; their callbacks see r->closing and only count. */
	ares_destroy(r->channel);

	TAILQ_FOREACH(e, &r->age, age)
		TAILQ_CONCAT(&r->ready, &e->waiters, entry);
	while ((w = TAILQ_FIRST(&r->ready)) != NULL) {
		TAILQ_REMOVE(&r->ready, w, entry);
		w->cb(&down, w->arg);
		wait_free(w);
	}

	while ((e = TAILQ_FIRST(&r->age)) != NULL)
		entry_free(r, e);
	/* c-ares closed its sockets through sock_state(); in case it did not: */
	while ((s = LIST_FIRST(&r->socks)) != NULL) {
		LIST_REMOVE(s, entry);
		event_free(s->ev);
		free(s);
	}
	event_free(r->timer);
	event_free(r->ready_ev);
	free(r);
}
