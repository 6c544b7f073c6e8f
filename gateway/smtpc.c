/*
 * smtpc: one SMTP client session to one server (RFC 5321), one transaction
 * at a time over one connection.
 *
 * Public: smtpc_open, smtpc_send, smtpc_quit, smtpc_abort,
 * smtpc_has_pipelining, smtpc_tls_info, smtpc_tls_peer, smtpc_stage_name.
 *
 * The session is a state machine (enum state below): each reply goes to
 * on_reply(), which hands it to the small handler of the state it came in.
 * The libevent callbacks only turn socket events into plain events
 * (connected, TLS ready, line, eof, error, write stall, timeout).
 *
 * TLS: SMTPS starts its handshake in on_connected(), STARTTLS after the
 * first EHLO (after_hello()); either way the connected socket goes on
 * under a TLS bufferevent from core/tls (which holds every OpenSSL call),
 * and STARTTLS is followed by a new EHLO whose capabilities replace the
 * old ones (RFC 3207 §4.2). When TLS is required, a server that does not
 * offer it, refuses it, or fails the handshake or the certificate check
 * ends the session at stage SMTPC_TLS with code 0 before any further
 * command: not one octet of mail goes in clear. Opportunistic TLS goes on
 * in clear when STARTTLS is not offered or refused, and reconnects once
 * in clear when the handshake breaks (the server's TLS stack, not the
 * certificate: a certificate refused under tls_verify ends the session).
 *
 * AUTH (RFC 4954) follows the last EHLO when the conf names a user: PLAIN
 * with an initial response when offered, else LOGIN; over a connection in
 * clear only when the conf allows it. Its outcome is reported at stage
 * SMTPC_AUTH with the server's reply. The password is kept only in the
 * session (wiped when freed) and in what is queued for the server; it is
 * never put in a reply handed to the owner.
 *
 * Ownership: the session belongs to its owner, who frees it with
 * smtpc_abort or lets closed() end it (freed when closed() returns). A
 * message handed to smtpc_send stays the owner's; the session only points
 * to it until its done(). The session copies the conf it was opened with.
 *
 * Callbacks run only from the event loop, never from inside smtpc_open,
 * smtpc_send or smtpc_quit. Inside any callback the owner may call
 * smtpc_send (in ready() or done()), smtpc_quit or smtpc_abort: the
 * session counts how deep it is in its own callbacks (busy) and frees
 * itself only when it has unwound.
 *
 * Failures: every message handed over gets exactly one done(), unless the
 * owner aborts. A refusal (non-2xx at MAIL or RCPT, non-354 at DATA,
 * non-2xx after the dot) is reported with its reply and stage, then RSET
 * makes the session ready again. A timeout, a lost connection or a
 * malformed reply during a message is reported as code 0 with a reason,
 * and so is a message queued behind a failed RSET ("not sent: ..."); a 421
 * at any point is reported as such; then closed(why). In a pipelined
 * transaction the first refusal is the outcome, even when the connection
 * is lost while the remaining replies are read. Before any message, a
 * failure only calls closed(why).
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "core/tls.h"
#include "gateway/smtpc.h"
#include "mail/reply.h"

/* RFC 5321 §4.5.3.2, and 30 s for the TCP handshake. */
#define DEFAULT_CONNECT_MS	(30 * 1000)
#define DEFAULT_GREETING_MS	(5 * 60 * 1000)
#define DEFAULT_COMMAND_MS	(5 * 60 * 1000)
#define DEFAULT_DATA_INIT_MS	(2 * 60 * 1000)
#define DEFAULT_DATA_BLOCK_MS	(3 * 60 * 1000)
#define DEFAULT_DATA_TERM_MS	(10 * 60 * 1000)
/* Nothing depends on the answer to QUIT: do not hold a shutdown for it. */
#define QUIT_MAX_MS		(30 * 1000)
/*
 * The longest envelope address we put in a command. RFC 5321 §4.5.3.1.3
 * says 256, but servers take longer ones and the server should be the
 * judge; this only keeps "RCPT TO:<...>" within one 1000-octet line.
 */
#define PATH_MAX_LEN		960
/* RFC 4616 allows 255 octets each; so do we, which keeps AUTH PLAIN in one line. */
#define AUTH_FIELD_MAX		255

enum state {
	ST_CONNECTING,	/* TCP handshake */
	ST_GREETING,	/* waiting for 220 */
	ST_EHLO,
	ST_HELO,	/* EHLO was refused with 5xx */
	ST_STARTTLS,	/* waiting for the reply to STARTTLS */
	ST_TLS,		/* TLS handshake (SMTPS, or after STARTTLS) */
	ST_AUTH_LOGIN,	/* AUTH LOGIN sent, waiting for 334 (user name) */
	ST_AUTH_USER,	/* user name sent, waiting for 334 (password) */
	ST_AUTH,	/* credentials sent, waiting for 235 */
	ST_READY,	/* idle, between messages */
	ST_MAIL,	/* waiting for the reply to MAIL */
	ST_RCPT,
	ST_DATA,
	ST_DOT,		/* content sent (or being sent), waiting after "." */
	ST_RESET_DUE,	/* refused transaction being reported; RSET not sent yet */
	ST_RSET,
	ST_QUIT,
	ST_CLOSING,	/* smtpc_quit before ready: closed(NULL) is due */
	ST_FAILING,	/* reporting a failure: done() then closed() */
	ST_DEAD,	/* closed() called or aborted: freed once unwound */
};

struct timeouts {
	unsigned connect, greeting, command, data_init, data_block, data_term;
};

struct smtpc {
	struct event_base *base;
	struct bufferevent *bev;	/* NULL once the connection is gone */
	struct event *timer;		/* the timeout of the current wait */
	struct event *kick;		/* deferred work: closing, a failure */
	enum state state;
	int busy;			/* our callbacks on the stack */
	struct smtpc_cbs cbs;
	void *arg;

	char *host;
	char *helo;
	struct timeouts to;
	struct sockaddr_storage addr;	/* where to connect (again, for a fallback) */
	socklen_t addrlen;

	/* TLS: the mode in force (opportunistic becomes none after a fallback). */
	int tls_mode;
	bool tls_verify;
	SSL_CTX *tls_ctx;
	char *tls_name;
	bool tls_on;			/* the handshake is done */
	bool starttls_tried;		/* STARTTLS sent on this connection */
	bool tls_fell_back;		/* reconnected in clear after a broken handshake */
	char tls_info[128];
	char tls_peer[256];

	/* AUTH. */
	char *auth_user, *auth_password;	/* NULL: no AUTH */
	bool auth_without_tls;

	/* EHLO capabilities. */
	bool pipelining, eightbitmime, starttls, size_offered;
	unsigned long long size_max;	/* 0: no limit given */
	char auth[128];			/* mechanisms, as advertised */

	/* The transaction in progress. */
	const struct smtpc_msg *msg;
	const struct smtpc_msg *next;	/* handed over while RSET was pending */
	bool txn_pipelined;		/* MAIL, RCPT and DATA went in one write */
	bool refused;			/* refusal holds the outcome */
	struct smtpc_reply refusal;
	bool data_queued;		/* content queued, end-of-data timer not yet armed */
	bool quit_due;			/* smtpc_quit during a transaction */

	bool failure_due;		/* kick will report failure */
	struct smtpc_reply failure;

	struct reply reply;
};

static void on_reply(struct smtpc *, const struct reply *);
static void read_cb(struct bufferevent *, void *);
static void write_cb(struct bufferevent *, void *);
static void event_cb(struct bufferevent *, short, void *);
static void session_fail(struct smtpc *, const struct smtpc_reply *);
static void txn_start(struct smtpc *, const struct smtpc_msg *);

const char *
smtpc_stage_name(enum smtpc_stage st)
{
	static const char *names[] = {
		[SMTPC_CONNECT] = "connect", [SMTPC_GREETING] = "greeting",
		[SMTPC_EHLO] = "ehlo", [SMTPC_TLS] = "tls", [SMTPC_AUTH] = "auth",
		[SMTPC_MAIL] = "mail", [SMTPC_RCPT] = "rcpt", [SMTPC_DATA] = "data",
		[SMTPC_DOT] = "dot", [SMTPC_QUIT] = "quit",
	};

	if ((unsigned)st >= sizeof names / sizeof names[0] || names[st] == NULL)
		return "unknown";
	return names[st];
}

bool
smtpc_has_pipelining(const struct smtpc *s)
{
	return s->pipelining;
}

const char *
smtpc_tls_info(const struct smtpc *s)
{
	return s->tls_on ? s->tls_info : "none";
}

const char *
smtpc_tls_peer(const struct smtpc *s)
{
	return s->tls_on ? s->tls_peer : "";
}

/* The stage a failure in this state is reported at. */
static enum smtpc_stage
stage_of(enum state st)
{
	switch (st) {
	case ST_CONNECTING:
		return SMTPC_CONNECT;
	case ST_GREETING:
		return SMTPC_GREETING;
	case ST_EHLO:
	case ST_HELO:
		return SMTPC_EHLO;
	case ST_STARTTLS:
	case ST_TLS:
		return SMTPC_TLS;
	case ST_AUTH_LOGIN:
	case ST_AUTH_USER:
	case ST_AUTH:
		return SMTPC_AUTH;
	case ST_RCPT:
		return SMTPC_RCPT;
	case ST_DATA:
		return SMTPC_DATA;
	case ST_DOT:
		return SMTPC_DOT;
	case ST_QUIT:
		return SMTPC_QUIT;
	default:
		/* Idle or resetting: the connection failed before the next MAIL. */
		return SMTPC_MAIL;
	}
}

/* What a timeout in this state is called. */
static const char *
timeout_reason(enum state st)
{
	switch (st) {
	case ST_CONNECTING:
		return "timeout connecting";
	case ST_GREETING:
		return "timeout waiting for greeting";
	case ST_EHLO:
		return "timeout waiting for reply to EHLO";
	case ST_HELO:
		return "timeout waiting for reply to HELO";
	case ST_STARTTLS:
		return "timeout waiting for reply to STARTTLS";
	case ST_TLS:
		return "timeout in TLS handshake";
	case ST_AUTH_LOGIN:
	case ST_AUTH_USER:
	case ST_AUTH:
		return "timeout waiting for reply to AUTH";
	case ST_MAIL:
		return "timeout waiting for reply to MAIL";
	case ST_RCPT:
		return "timeout waiting for reply to RCPT";
	case ST_DATA:
		return "timeout waiting for reply to DATA";
	case ST_DOT:
		return "timeout waiting for reply to end of data";
	case ST_RSET:
		return "timeout waiting for reply to RSET";
	case ST_QUIT:
		return "timeout waiting for reply to QUIT";
	default:
		return "timeout";
	}
}

static unsigned
timeout_ms(const struct smtpc *s, enum state st)
{
	switch (st) {
	case ST_CONNECTING:
		return s->to.connect;
	case ST_GREETING:
		return s->to.greeting;
	case ST_DATA:
		return s->to.data_init;
	case ST_DOT:
		return s->to.data_term;
	case ST_QUIT:
		return s->to.command < QUIT_MAX_MS ? s->to.command : QUIT_MAX_MS;
	default:
		return s->to.command;
	}
}

/* ---- replies handed to the owner ---- */

/* Copies text, cut at a UTF-8 character boundary: the database wants whole characters. */
static void
copy_text(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);

	if (n >= size) {
		n = size - 1;
		while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static void
reply_out(struct smtpc_reply *out, const struct reply *r, enum smtpc_stage st)
{
	memset(out, 0, sizeof *out);
	out->code = r->code;
	copy_text(out->status, sizeof out->status, r->status);
	copy_text(out->text, sizeof out->text, r->text);
	out->stage = st;
}

static void __attribute__((format(printf, 3, 4)))
noreply(struct smtpc_reply *out, enum smtpc_stage st, const char *fmt, ...)
{
	va_list ap;

	memset(out, 0, sizeof *out);
	va_start(ap, fmt);
	vsnprintf(out->text, sizeof out->text, fmt, ap);
	va_end(ap);
	out->stage = st;
}

/* ---- timers and deferred work ---- */

static void
timer_stop(struct smtpc *s)
{
	evtimer_del(s->timer);
}

static void
timer_arm(struct smtpc *s, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(s->timer, &tv);
}

/* Waits in state st for the server, with that stage's timeout. */
static void
expect(struct smtpc *s, enum state st)
{
	s->state = st;
	timer_arm(s, timeout_ms(s, st));
}

/*
 * A failure found outside our callbacks (in smtpc_open or smtpc_send) is
 * reported from the loop, so that the owner never hears a callback from
 * inside its own call.
 */
static void
fail_later(struct smtpc *s, const struct smtpc_reply *why)
{
	if (s->failure_due)
		return;
	s->failure_due = true;
	s->failure = *why;
	timer_stop(s);
	event_active(s->kick, 0, 0);
}

/* ---- the connection ---- */

static void
io_close(struct smtpc *s)
{
	if (s->bev != NULL) {
		bufferevent_free(s->bev);
		s->bev = NULL;
	}
	if (s->timer != NULL)
		timer_stop(s);
}

static void __attribute__((format(printf, 2, 3)))
io_printf(struct smtpc *s, const char *fmt, ...)
{
	struct smtpc_reply why;
	va_list ap;
	int r;

	if (s->bev == NULL)
		return;
	va_start(ap, fmt);
	r = evbuffer_add_vprintf(bufferevent_get_output(s->bev), fmt, ap);
	va_end(ap);
	if (r < 0) {
		noreply(&why, stage_of(s->state), "cannot queue a command: out of memory");
		fail_later(s, &why);
	}
}

/*
 * Content into the output buffer, dot-stuffed (RFC 5321 §4.5.2) and with
 * every line end made CRLF: a bare LF or CR is what SMTP smuggling rides
 * on, and it must never be able to end our DATA early.
 */
struct stuffer {
	struct evbuffer *out;
	bool bol;		/* at the start of a line */
	bool cr;		/* the last octet was a CR */
	bool err;
	size_t len;
	char buf[4096];
};

static void
stuff_flush(struct stuffer *d)
{
	if (d->len > 0 && evbuffer_add(d->out, d->buf, d->len) < 0)
		d->err = true;
	d->len = 0;
}

static void
stuff_put(struct stuffer *d, char c)
{
	if (d->len == sizeof d->buf)
		stuff_flush(d);
	d->buf[d->len++] = c;
}

static void
stuff_byte(struct stuffer *d, char c)
{
	if (d->cr) {
		/* CRLF, or a lone CR made into one. */
		d->cr = false;
		stuff_put(d, '\n');
		d->bol = true;
		if (c == '\n')
			return;
	}
	if (c == '\r') {
		stuff_put(d, '\r');
		d->cr = true;
		return;
	}
	if (c == '\n') {
		stuff_put(d, '\r');
		stuff_put(d, '\n');
		d->bol = true;
		return;
	}
	if (c == '.' && d->bol)
		stuff_put(d, '.');
	d->bol = false;
	stuff_put(d, c);
}

/* A run of octets with no CR or LF in it, not at the start of a line. */
static void
stuff_span(struct stuffer *d, const char *p, size_t n)
{
	size_t k;

	while (n > 0) {
		if (d->len == sizeof d->buf)
			stuff_flush(d);
		k = sizeof d->buf - d->len;
		if (k > n)
			k = n;
		memcpy(d->buf + d->len, p, k);
		d->len += k;
		p += k;
		n -= k;
	}
}

/* Line ends and line starts octet by octet, the rest of each line as one
 * copy (a message's lines are mostly the rest). */
static void
stuff(struct stuffer *d, const char *p, size_t n)
{
	const char *nl, *cr;
	size_t i = 0, end;

	while (i < n) {
		if (d->cr || d->bol || p[i] == '\r' || p[i] == '\n') {
			stuff_byte(d, p[i++]);
			continue;
		}
		nl = memchr(p + i, '\n', n - i);
		end = nl ? (size_t)(nl - p) : n;
		if ((cr = memchr(p + i, '\r', end - i)) != NULL)
			end = (size_t)(cr - p);
		stuff_span(d, p + i, end - i);
		i = end;
	}
}

/* Ends the content with CRLF if it does not, then ".". */
static void
stuff_end(struct stuffer *d)
{
	if (d->cr)
		stuff_put(d, '\n');
	else if (!d->bol) {
		stuff_put(d, '\r');
		stuff_put(d, '\n');
	}
	stuff_put(d, '.');
	stuff_put(d, '\r');
	stuff_put(d, '\n');
	stuff_flush(d);
}

/* The message (or, with m NULL, nothing) and the final dot. */
static void
send_content(struct smtpc *s, const struct smtpc_msg *m)
{
	struct stuffer d;
	struct smtpc_reply why;

	if (s->bev == NULL)
		return;
	memset(&d, 0, offsetof(struct stuffer, buf));
	d.out = bufferevent_get_output(s->bev);
	d.bol = true;
	if (m != NULL) {
		stuff(&d, m->head, m->head_len);
		stuff(&d, m->body, m->body_len);
	}
	stuff_end(&d);
	if (d.err) {
		noreply(&why, SMTPC_DOT, "cannot queue the message: out of memory");
		fail_later(s, &why);
	}
	s->data_queued = true;
}

/* ---- ending the session ---- */

static void
session_free(struct smtpc *s)
{
	io_close(s);
	if (s->timer != NULL)
		event_free(s->timer);
	if (s->kick != NULL)
		event_free(s->kick);
	free(s->host);
	free(s->helo);
	free(s->tls_name);
	tls_ctx_free(s->tls_ctx);
	free(s->auth_user);
	if (s->auth_password != NULL) {
		explicit_bzero(s->auth_password, strlen(s->auth_password));
		free(s->auth_password);
	}
	free(s);
}

/* Marks the start and end of one of our libevent callbacks. */
static void
enter(struct smtpc *s)
{
	s->busy++;
}

static void
leave(struct smtpc *s)
{
	if (--s->busy == 0 && s->state == ST_DEAD)
		session_free(s);
}

/* closed() and nothing more; the session is freed once unwound. */
static void
session_close(struct smtpc *s, const struct smtpc_reply *why)
{
	io_close(s);
	s->state = ST_DEAD;
	s->cbs.closed(s, why, s->arg);
}

/*
 * The session cannot go on: done() for the message in progress (its first
 * refusal if it had one, else why) and for one queued behind a RSET (never
 * tried: "not sent"), then closed(why). The owner may abort in done().
 */
static void
session_fail(struct smtpc *s, const struct smtpc_reply *why)
{
	const struct smtpc_msg *m = s->msg, *next = s->next;
	struct smtpc_reply notsent;

	io_close(s);
	s->state = ST_FAILING;
	s->msg = s->next = NULL;
	if (m != NULL)
		s->cbs.done(s, m, s->refused ? &s->refusal : why, s->arg);
	if (next != NULL && s->state == ST_FAILING) {
		if (why->code != 0)
			noreply(&notsent, SMTPC_MAIL, "not sent: %d %s", why->code, why->text);
		else
			noreply(&notsent, SMTPC_MAIL, "not sent: %s", why->text);
		s->cbs.done(s, next, &notsent, s->arg);
	}
	if (s->state == ST_FAILING)
		session_close(s, why);
}

/* A failure while quitting is just the end of the session. */
static void
fail(struct smtpc *s, const struct smtpc_reply *why)
{
	if (s->state == ST_QUIT)
		session_close(s, NULL);
	else
		session_fail(s, why);
}

/* ---- the dialogue ---- */

static void
send_quit(struct smtpc *s)
{
	io_printf(s, "QUIT\r\n");
	expect(s, ST_QUIT);
}

/* Idle: start the message queued during RSET, quit if asked, or say ready. */
static void
become_ready(struct smtpc *s)
{
	const struct smtpc_msg *m = s->next;

	s->state = ST_READY;
	timer_stop(s);
	if (m != NULL) {
		s->next = NULL;
		txn_start(s, m);
	} else if (s->quit_due)
		send_quit(s);
	else
		s->cbs.ready(s, s->arg);
}

static void auth_start(struct smtpc *);

/*
 * Between EHLO/HELO and the first message: STARTTLS when the mode wants it
 * and it was not tried on this connection yet, then AUTH, then ready.
 */
static void
after_hello(struct smtpc *s)
{
	struct smtpc_reply why;
	bool want = s->tls_mode == SMTPC_TLS_STARTTLS || s->tls_mode == SMTPC_TLS_OPPORTUNISTIC;

	if (want && !s->tls_on && !s->starttls_tried) {
		if (s->starttls) {
			s->starttls_tried = true;
			io_printf(s, "STARTTLS\r\n");
			expect(s, ST_STARTTLS);
			return;
		}
		if (s->tls_mode == SMTPC_TLS_STARTTLS) {
			noreply(&why, SMTPC_TLS, "STARTTLS required but not offered");
			fail(s, &why);
			return;
		}
	}
	if (s->auth_user != NULL)
		auth_start(s);
	else
		become_ready(s);
}

static void
send_ehlo(struct smtpc *s)
{
	io_printf(s, "EHLO %s\r\n", s->helo);
	expect(s, ST_EHLO);
}

/* ---- TLS ---- */

/* RFC 3207 §4.2: what the server said in clear is forgotten under TLS. */
static void
caps_clear(struct smtpc *s)
{
	s->pipelining = s->eightbitmime = s->starttls = s->size_offered = false;
	s->size_max = 0;
	s->auth[0] = '\0';
}

/*
 * The handshake starts: the connected socket goes on under a TLS
 * bufferevent. The plain one is freed and closes its own descriptor once
 * libevent is done with it, so the TLS one gets a duplicate: no event of
 * the old one can ever be left on a descriptor number in new use.
 */
static void
tls_start(struct smtpc *s)
{
	struct smtpc_reply why;
	char err[256];
	int fd;

	fd = fcntl(bufferevent_getfd(s->bev), F_DUPFD_CLOEXEC, 0);
	io_close(s);
	if (fd < 0) {
		noreply(&why, SMTPC_TLS, "TLS setup failed: %s", strerror(errno));
		fail(s, &why);
		return;
	}
	s->bev = tls_client_bev(s->base, fd, s->tls_ctx, s->tls_name, s->tls_verify,
	    BEV_OPT_DEFER_CALLBACKS, err, sizeof err);
	if (s->bev == NULL) {
		noreply(&why, SMTPC_TLS, "%s", err);
		fail(s, &why);
		return;
	}
	bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
	caps_clear(s);
	expect(s, ST_TLS);
}

/* The handshake is done (and the certificate passed, if it had to). */
static void
on_tls_ready(struct smtpc *s)
{
	struct timeval block = { s->to.data_block / 1000, (s->to.data_block % 1000) * 1000 };

	s->tls_on = true;
	tls_describe(s->bev, s->tls_info, sizeof s->tls_info, s->tls_peer, sizeof s->tls_peer);
	bufferevent_set_timeouts(s->bev, NULL, &block);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	if (s->tls_mode == SMTPC_TLS_SMTPS)
		expect(s, ST_GREETING);
	else
		send_ehlo(s);
}

static int io_connect(struct smtpc *);

/*
 * Opportunistic TLS whose handshake broke: the connection is unusable, but
 * the server may still take mail in clear (RFC 7435 §3), so once more
 * without STARTTLS.
 */
static void
tls_fall_back(struct smtpc *s)
{
	struct smtpc_reply why;

	io_close(s);
	s->tls_mode = SMTPC_TLS_NONE;
	s->tls_fell_back = true;
	s->starttls_tried = false;
	caps_clear(s);
	reply_init(&s->reply);
	if (io_connect(s) < 0) {
		noreply(&why, SMTPC_CONNECT, "cannot make a socket: %s", strerror(errno));
		fail(s, &why);
	}
}

/*
 * The handshake failed (or timed out): say why, or fall back to clear when
 * that is allowed.
 */
static void
on_tls_failed(struct smtpc *s, int err, bool timeout)
{
	struct smtpc_reply why;
	char text[400];
	bool cert;

	cert = tls_failure(s->bev, text, sizeof text);
	if (!cert && s->tls_mode == SMTPC_TLS_OPPORTUNISTIC && !s->tls_fell_back) {
		tls_fall_back(s);
		return;
	}
	if (timeout)
		noreply(&why, SMTPC_TLS, "%s", timeout_reason(ST_TLS));
	else if (cert)
		noreply(&why, SMTPC_TLS, "%s", text);
	else if (*text != '\0')
		noreply(&why, SMTPC_TLS, "TLS handshake failed: %s", text);
	else if (err != 0)
		noreply(&why, SMTPC_TLS, "TLS handshake failed: %s", strerror(err));
	else
		noreply(&why, SMTPC_TLS, "TLS handshake failed: server closed the connection");
	fail(s, &why);
}

static void
starttls_reply(struct smtpc *s, const struct reply *r)
{
	struct smtpc_reply why;

	if (r->code == 220) {
		/*
		 * Anything already read after the 220 came in clear and would
		 * be taken for replies under TLS (the injection of CVE-2011-0411
		 * and its kind): a server that does this is not to be trusted.
		 */
		if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0) {
			noreply(&why, SMTPC_TLS, "server sent data after its reply to STARTTLS");
			fail(s, &why);
			return;
		}
		tls_start(s);
		return;
	}
	if (s->tls_mode == SMTPC_TLS_OPPORTUNISTIC && r->code / 100 != 2) {
		/* Refused, and the server still speaks SMTP in clear (RFC 3207 §4). */
		after_hello(s);
		return;
	}
	/* Code 0: a refused STARTTLS says nothing about the message. */
	noreply(&why, SMTPC_TLS, "STARTTLS refused: %d %s", r->code, r->text);
	fail(s, &why);
}

/* ---- AUTH ---- */

/* RFC 4648 base64 of n octets; out must hold 4 * ((n + 2) / 3) + 1. */
static void
base64(char *out, const unsigned char *in, size_t n)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	unsigned long v;
	size_t i, o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		v = (unsigned long)in[i] << 16 | (unsigned long)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64[v >> 18 & 63];
		out[o++] = b64[v >> 12 & 63];
		out[o++] = b64[v >> 6 & 63];
		out[o++] = b64[v & 63];
	}
	if (i < n) {
		v = (unsigned long)in[i] << 16 | (i + 1 < n ? (unsigned long)in[i + 1] << 8 : 0);
		out[o++] = b64[v >> 18 & 63];
		out[o++] = b64[v >> 12 & 63];
		out[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
}

/* Whether the EHLO's AUTH line names mech (a whole word, any case). */
static bool
auth_offered(const struct smtpc *s, const char *mech)
{
	size_t n = strlen(mech);
	const char *p = s->auth;

	while (*p != '\0') {
		while (*p == ' ')
			p++;
		if (strncasecmp(p, mech, n) == 0 && (p[n] == ' ' || p[n] == '\0'))
			return true;
		while (*p != ' ' && *p != '\0')
			p++;
	}
	return false;
}

/* One base64 line: "prefix" then the encoding of text (a user name or password). */
static void
send_secret(struct smtpc *s, const char *prefix, const unsigned char *text, size_t n)
{
	char enc[4 * ((2 * AUTH_FIELD_MAX + 2 + 2) / 3) + 1];

	base64(enc, text, n);
	io_printf(s, "%s%s\r\n", prefix, enc);
	explicit_bzero(enc, sizeof enc);
}

/* RFC 4616: authzid (empty), NUL, authcid, NUL, password, as the initial response. */
static void
send_auth_plain(struct smtpc *s)
{
	unsigned char buf[2 * AUTH_FIELD_MAX + 2];
	size_t u = strlen(s->auth_user), p = strlen(s->auth_password);

	buf[0] = '\0';
	memcpy(buf + 1, s->auth_user, u);
	buf[1 + u] = '\0';
	memcpy(buf + 2 + u, s->auth_password, p);
	send_secret(s, "AUTH PLAIN ", buf, u + p + 2);
	explicit_bzero(buf, sizeof buf);
	expect(s, ST_AUTH);
}

static void
auth_start(struct smtpc *s)
{
	struct smtpc_reply why;

	if (!s->tls_on && !s->auth_without_tls) {
		noreply(&why, SMTPC_AUTH, "AUTH refused: connection not encrypted");
		fail(s, &why);
	} else if (auth_offered(s, "PLAIN"))
		send_auth_plain(s);
	else if (auth_offered(s, "LOGIN")) {
		io_printf(s, "AUTH LOGIN\r\n");
		expect(s, ST_AUTH_LOGIN);
	} else {
		if (s->auth[0] != '\0')
			noreply(&why, SMTPC_AUTH, "AUTH PLAIN or LOGIN not offered (server offers %s)", s->auth);
		else
			noreply(&why, SMTPC_AUTH, "AUTH not offered");
		fail(s, &why);
	}
}

/*
 * The replies of the AUTH exchange: 334 asks for the next part (LOGIN's
 * prompts are fixed, their text is not read), 235 ends it. Anything else
 * is the outcome, with the server's code: 535 5.7.8 bad credentials, 454
 * a temporary failure, 534 a mechanism too weak.
 */
static void
auth_reply(struct smtpc *s, const struct reply *r)
{
	struct smtpc_reply why;

	if (r->code == 334 && s->state == ST_AUTH_LOGIN) {
		send_secret(s, "", (const unsigned char *)s->auth_user, strlen(s->auth_user));
		expect(s, ST_AUTH_USER);
	} else if (r->code == 334 && s->state == ST_AUTH_USER) {
		send_secret(s, "", (const unsigned char *)s->auth_password, strlen(s->auth_password));
		expect(s, ST_AUTH);
	} else if (r->code / 100 == 2 && s->state == ST_AUTH)
		become_ready(s);
	else if (r->code == 334 || r->code / 100 == 2) {
		/* A challenge or a success out of turn: the exchange is lost. */
		noreply(&why, SMTPC_AUTH, "unexpected reply to AUTH: %d %s", r->code, r->text);
		fail(s, &why);
	} else {
		reply_out(&why, r, SMTPC_AUTH);
		fail(s, &why);
	}
}

static void
greeting_reply(struct smtpc *s, const struct reply *r)
{
	struct smtpc_reply why;

	if (r->code / 100 == 2) {
		send_ehlo(s);
		return;
	}
	reply_out(&why, r, SMTPC_GREETING);
	fail(s, &why);
}

static void
caps_record(struct smtpc *s, const struct reply *r)
{
	const char *a;
	size_t n, i;

	s->pipelining = reply_ehlo_keyword(r, "PIPELINING", NULL, NULL);
	s->eightbitmime = reply_ehlo_keyword(r, "8BITMIME", NULL, NULL);
	s->starttls = reply_ehlo_keyword(r, "STARTTLS", NULL, NULL);
	s->size_offered = reply_ehlo_keyword(r, "SIZE", &a, &n);
	s->size_max = 0;
	for (i = 0; s->size_offered && i < n && a[i] >= '0' && a[i] <= '9'; i++)
		if (s->size_max < 1000000000000ULL)	/* beyond any message of ours */
			s->size_max = s->size_max * 10 + (unsigned long long)(a[i] - '0');
	s->auth[0] = '\0';
	if (reply_ehlo_keyword(r, "AUTH", &a, &n)) {
		if (n >= sizeof s->auth)
			n = sizeof s->auth - 1;
		memcpy(s->auth, a, n);
		s->auth[n] = '\0';
	}
}

static void
ehlo_reply(struct smtpc *s, const struct reply *r)
{
	struct smtpc_reply why;

	if (r->code / 100 == 2) {
		caps_record(s, r);
		after_hello(s);
	} else if (r->code / 100 == 5) {
		/* An old server: RFC 5321 §3.2 says try HELO. */
		io_printf(s, "HELO %s\r\n", s->helo);
		expect(s, ST_HELO);
	} else {
		reply_out(&why, r, SMTPC_EHLO);
		fail(s, &why);
	}
}

static void
helo_reply(struct smtpc *s, const struct reply *r)
{
	struct smtpc_reply why;

	if (r->code / 100 == 2) {
		after_hello(s);
		return;
	}
	reply_out(&why, r, SMTPC_EHLO);
	fail(s, &why);
}

static void
send_mail(struct smtpc *s)
{
	const struct smtpc_msg *m = s->msg;

	/* RFC 1870: a server that knows the size can refuse before the data. */
	if (s->size_offered)
		io_printf(s, "MAIL FROM:<%s> SIZE=%zu\r\n", m->mail_from, m->head_len + m->body_len);
	else
		io_printf(s, "MAIL FROM:<%s>\r\n", m->mail_from);
}

static void
send_rcpt(struct smtpc *s)
{
	io_printf(s, "RCPT TO:<%s>\r\n", s->msg->rcpt);
}

static void
send_data(struct smtpc *s)
{
	io_printf(s, "DATA\r\n");
}

static void
txn_start(struct smtpc *s, const struct smtpc_msg *m)
{
	s->msg = m;
	s->refused = false;
	s->data_queued = false;
	s->txn_pipelined = s->pipelining;
	send_mail(s);
	if (s->txn_pipelined) {
		/* RFC 2920: MAIL, RCPT and DATA in one write, replies in order. */
		send_rcpt(s);
		send_data(s);
	}
	expect(s, ST_MAIL);
}

/* Keeps the first refusal of the transaction: it is the outcome. */
static void
txn_refuse(struct smtpc *s, const struct reply *r, enum smtpc_stage st)
{
	if (s->refused)
		return;
	s->refused = true;
	reply_out(&s->refusal, r, st);
}

/*
 * The transaction is over: done(), then RSET after a refusal or ready()
 * after a success, unless the owner sent, quit or aborted inside done().
 */
static void
txn_finish(struct smtpc *s, const struct reply *accepted)
{
	const struct smtpc_msg *m = s->msg;
	struct smtpc_reply out;

	if (s->refused)
		out = s->refusal;
	else
		reply_out(&out, accepted, SMTPC_DOT);
	s->msg = NULL;
	s->data_queued = false;
	timer_stop(s);
	s->state = s->refused ? ST_RESET_DUE : ST_READY;
	s->cbs.done(s, m, &out, s->arg);

	if (s->state == ST_RESET_DUE) {
		if (s->quit_due)
			send_quit(s);
		else {
			io_printf(s, "RSET\r\n");
			expect(s, ST_RSET);
		}
	} else if (s->state == ST_READY)
		become_ready(s);
}

/*
 * After the reply to MAIL or RCPT: without pipelining, send the next
 * command, or stop at the first refusal; with it, the next command is
 * already on its way and its reply must be read whatever happened.
 */
static void
txn_step(struct smtpc *s, enum state next)
{
	if (!s->txn_pipelined) {
		if (s->refused) {
			txn_finish(s, NULL);
			return;
		}
		if (next == ST_RCPT)
			send_rcpt(s);
		else
			send_data(s);
	}
	expect(s, next);
}

static void
mail_reply(struct smtpc *s, const struct reply *r)
{
	if (r->code / 100 != 2)
		txn_refuse(s, r, SMTPC_MAIL);
	txn_step(s, ST_RCPT);
}

static void
rcpt_reply(struct smtpc *s, const struct reply *r)
{
	if (r->code / 100 != 2)
		txn_refuse(s, r, SMTPC_RCPT);
	txn_step(s, ST_DATA);
}

static void
data_reply(struct smtpc *s, const struct reply *r)
{
	struct smtpc_reply why;

	if (r->code == 354) {
		/* After a refusal only the dot: RFC 2920 §3.1 for a server
		 * that says 354 with no valid recipient. */
		send_content(s, s->refused ? NULL : s->msg);
		expect(s, ST_DOT);
		return;
	}
	if (!s->refused && r->code / 100 != 4 && r->code / 100 != 5) {
		/* A 250 to DATA: we cannot know what the server will make
		 * of what we send next. */
		noreply(&why, SMTPC_DATA, "unexpected reply to DATA: %d %s", r->code, r->text);
		session_fail(s, &why);
		return;
	}
	txn_refuse(s, r, SMTPC_DATA);
	txn_finish(s, NULL);
}

static void
dot_reply(struct smtpc *s, const struct reply *r)
{
	if (r->code / 100 != 2)
		txn_refuse(s, r, SMTPC_DOT);
	txn_finish(s, r);
}

static void
rset_reply(struct smtpc *s, const struct reply *r)
{
	struct smtpc_reply why;

	if (r->code / 100 == 2) {
		become_ready(s);
		return;
	}
	/* RSET has no stage of its own: it prepares the next MAIL. */
	reply_out(&why, r, SMTPC_MAIL);
	session_fail(s, &why);
}

/* One complete reply, dispatched by state. */
static void
on_reply(struct smtpc *s, const struct reply *r)
{
	struct smtpc_reply why;

	if (s->state == ST_QUIT) {
		session_close(s, NULL);
		return;
	}
	if (r->code == 421) {
		/* RFC 5321 §3.8: the server is closing; whatever we waited for, it is over. */
		reply_out(&why, r, stage_of(s->state));
		session_fail(s, &why);
		return;
	}
	if (s->state == ST_DOT && s->data_queued && r->code / 100 == 2) {
		/* A success before our final dot has left: the server is
		 * out of step, answering what it cannot have read. Taken as
		 * the reply to the dot it would count the message as sent
		 * before it was, so the session ends and the message is
		 * deferred. (A refusal is taken: nothing is counted by it.) */
		noreply(&why, SMTPC_DOT, "reply before the end of the message data: %d %s", r->code, r->text);
		session_fail(s, &why);
		return;
	}
	switch (s->state) {
	case ST_GREETING:
		greeting_reply(s, r);
		break;
	case ST_EHLO:
		ehlo_reply(s, r);
		break;
	case ST_HELO:
		helo_reply(s, r);
		break;
	case ST_STARTTLS:
		starttls_reply(s, r);
		break;
	case ST_AUTH_LOGIN:
	case ST_AUTH_USER:
	case ST_AUTH:
		auth_reply(s, r);
		break;
	case ST_MAIL:
		mail_reply(s, r);
		break;
	case ST_RCPT:
		rcpt_reply(s, r);
		break;
	case ST_DATA:
		data_reply(s, r);
		break;
	case ST_DOT:
		dot_reply(s, r);
		break;
	case ST_RSET:
		rset_reply(s, r);
		break;
	default:
		/* Idle, or a reply to nothing we sent: out of step. */
		noreply(&why, stage_of(s->state), "unexpected reply: %d %s", r->code, r->text);
		fail(s, &why);
		break;
	}
}

/* ---- plain events from the connection ---- */

static void
on_connected(struct smtpc *s)
{
	/* RFC 5321 §4.5.3.2 "data block": no write may stall longer. */
	struct timeval block = { s->to.data_block / 1000, (s->to.data_block % 1000) * 1000 };

	if (s->state == ST_TLS) {
		on_tls_ready(s);
		return;
	}
	if (s->tls_mode == SMTPC_TLS_SMTPS) {
		/* RFC 8314: TLS from the first octet; the greeting comes under it. */
		tls_start(s);
		return;
	}
	bufferevent_set_timeouts(s->bev, NULL, &block);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	expect(s, ST_GREETING);
}

static void
on_line(struct smtpc *s, const char *line, size_t len)
{
	struct smtpc_reply why;

	switch (reply_feed(&s->reply, line, len)) {
	case REPLY_MORE:
		break;
	case REPLY_DONE:
		on_reply(s, &s->reply);
		break;
	case REPLY_MALFORMED:
		noreply(&why, stage_of(s->state), "malformed reply: %s", s->reply.error);
		fail(s, &why);
		break;
	}
}

static void
on_input(struct smtpc *s)
{
	struct smtpc_reply why;
	struct evbuffer *in;
	size_t len;
	char *line;

	/* Every reply is read in order, even several in one segment (pipelining). */
	while (s->bev != NULL && !s->failure_due) {
		in = bufferevent_get_input(s->bev);
		if ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) == NULL) {
			if (evbuffer_get_length(in) > REPLY_LINE_MAX) {
				/* No end of line in sight: do not buffer without bound. */
				noreply(&why, stage_of(s->state), "malformed reply: reply line too long");
				fail(s, &why);
			}
			return;
		}
		on_line(s, line, len);
		free(line);
	}
}

static int
sock_error(struct smtpc *s)
{
	int e = EVUTIL_SOCKET_ERROR();
	socklen_t elen = sizeof e;

	if (e == 0 && s->bev != NULL)
		if (getsockopt(bufferevent_getfd(s->bev), SOL_SOCKET, SO_ERROR, &e, &elen) < 0)
			e = 0;
	return e;
}

static void
on_error(struct smtpc *s, int err)
{
	struct smtpc_reply why;
	char text[400];

	if (s->state == ST_TLS) {
		on_tls_failed(s, err, false);
		return;
	}
	if (s->state == ST_CONNECTING) {
		if (err == ECONNREFUSED)
			noreply(&why, SMTPC_CONNECT, "connection refused");
		else if (err == 0)
			noreply(&why, SMTPC_CONNECT, "connect failed");
		else
			noreply(&why, SMTPC_CONNECT, "connect failed: %s", strerror(err));
		fail(s, &why);
		return;
	}
	/* A last reply may have come just before the reset. */
	on_input(s);
	if (s->state == ST_DEAD || s->state == ST_FAILING || s->bev == NULL)
		return;
	if (s->tls_on && (tls_failure(s->bev, text, sizeof text) || *text != '\0'))
		noreply(&why, stage_of(s->state), "connection lost: TLS: %s", text);
	else if (err == 0)
		noreply(&why, stage_of(s->state), "connection lost");
	else
		noreply(&why, stage_of(s->state), "connection lost: %s", strerror(err));
	fail(s, &why);
}

static void
on_eof(struct smtpc *s)
{
	struct smtpc_reply why;

	if (s->state == ST_TLS) {
		on_tls_failed(s, 0, false);
		return;
	}
	/* A last reply may have come with the FIN ("421 ..." then close). */
	on_input(s);
	if (s->state == ST_DEAD || s->state == ST_FAILING || s->bev == NULL)
		return;
	noreply(&why, stage_of(s->state), "connection lost: server closed the connection");
	fail(s, &why);
}

static void
on_write_stall(struct smtpc *s)
{
	struct smtpc_reply why;

	if (s->state == ST_DOT)
		noreply(&why, SMTPC_DOT, "timeout sending message data");
	else
		noreply(&why, stage_of(s->state), "timeout sending to server");
	fail(s, &why);
}

static void
on_timeout(struct smtpc *s)
{
	struct smtpc_reply why;

	if (s->state == ST_TLS) {
		on_tls_failed(s, 0, true);
		return;
	}
	noreply(&why, stage_of(s->state), "%s", timeout_reason(s->state));
	fail(s, &why);
}

/* The output is empty: the dot is out, now wait for its reply. */
static void
on_drained(struct smtpc *s)
{
	if (s->state == ST_DOT && s->data_queued) {
		s->data_queued = false;
		timer_arm(s, s->to.data_term);
	}
}

/* ---- libevent callbacks: thin, only translating ---- */

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct smtpc *s = arg;

	(void)bev;
	enter(s);
	on_input(s);
	leave(s);
}

static void
write_cb(struct bufferevent *bev, void *arg)
{
	struct smtpc *s = arg;

	(void)bev;
	enter(s);
	on_drained(s);
	leave(s);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtpc *s = arg;

	(void)bev;
	enter(s);
	if (what & BEV_EVENT_CONNECTED)
		on_connected(s);
	else if (what & BEV_EVENT_TIMEOUT)
		on_write_stall(s);
	else if (what & BEV_EVENT_EOF)
		on_eof(s);
	else if (what & BEV_EVENT_ERROR)
		on_error(s, sock_error(s));
	leave(s);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtpc *s = arg;

	(void)fd;
	(void)what;
	enter(s);
	on_timeout(s);
	leave(s);
}

static void
kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtpc *s = arg;
	struct smtpc_reply why;

	(void)fd;
	(void)what;
	enter(s);
	if (s->state == ST_CLOSING)
		session_close(s, NULL);
	else if (s->failure_due && s->state != ST_DEAD) {
		why = s->failure;
		fail(s, &why);
	}
	leave(s);
}

/* ---- the owner's calls ---- */

static unsigned
conf_ms(unsigned v, unsigned def)
{
	return v != 0 ? v : def;
}

static bool
path_ok(const char *p, bool empty_ok)
{
	size_t n;

	if (p == NULL || (!empty_ok && *p == '\0'))
		return false;
	/* No CR, LF or other control can go into a command line of ours. */
	for (n = 0; p[n] != '\0'; n++)
		if ((unsigned char)p[n] < 0x20 || p[n] == 0x7f || n >= PATH_MAX_LEN)
			return false;
	return true;
}

static bool
msg_ok(const struct smtpc_msg *m)
{
	return m != NULL && path_ok(m->mail_from, true) && path_ok(m->rcpt, false) &&
	    (m->head != NULL || m->head_len == 0) && (m->body != NULL || m->body_len == 0);
}

static struct smtpc *
session_new(struct event_base *base, const struct smtpc_conf *c, const struct smtpc_cbs *cbs, void *arg)
{
	struct smtpc *s;

	if ((s = calloc(1, sizeof *s)) == NULL)
		return NULL;
	s->base = base;
	s->cbs = *cbs;
	s->arg = arg;
	s->host = strdup(c->host != NULL ? c->host : "");
	s->helo = strdup(c->helo != NULL && *c->helo != '\0' ? c->helo : "localhost");
	s->timer = evtimer_new(base, timer_cb, s);
	s->kick = event_new(base, -1, 0, kick_cb, s);
	s->to.connect = conf_ms(c->connect_ms, DEFAULT_CONNECT_MS);
	s->to.greeting = conf_ms(c->greeting_ms, DEFAULT_GREETING_MS);
	s->to.command = conf_ms(c->command_ms, DEFAULT_COMMAND_MS);
	s->to.data_init = conf_ms(c->data_init_ms, DEFAULT_DATA_INIT_MS);
	s->to.data_block = conf_ms(c->data_block_ms, DEFAULT_DATA_BLOCK_MS);
	s->to.data_term = conf_ms(c->data_term_ms, DEFAULT_DATA_TERM_MS);
	reply_init(&s->reply);
	s->state = ST_CONNECTING;
	memcpy(&s->addr, c->addr, c->addrlen);
	s->addrlen = c->addrlen;
	s->tls_mode = c->tls;
	s->tls_verify = c->tls_verify;
	/* Its own reference: the owner may drop the context (a reload) at any time. */
	s->tls_ctx = tls_ctx_ref(c->tls_ctx);
	s->tls_name = strdup(c->tls_name != NULL && *c->tls_name != '\0' ? c->tls_name : s->host != NULL ? s->host : "");
	snprintf(s->tls_info, sizeof s->tls_info, "none");
	if (c->auth_user != NULL) {
		s->auth_user = strdup(c->auth_user);
		s->auth_password = strdup(c->auth_password != NULL ? c->auth_password : "");
	}
	s->auth_without_tls = c->auth_without_tls;
	if (s->host == NULL || s->helo == NULL || s->timer == NULL || s->kick == NULL || s->tls_name == NULL ||
	    (c->tls_ctx != NULL && s->tls_ctx == NULL) ||
	    (c->auth_user != NULL && (s->auth_user == NULL || s->auth_password == NULL))) {
		session_free(s);
		return NULL;
	}
	return s;
}

/* What is wrong with the TLS and AUTH settings, reported like a failure to connect. */
static bool
conf_bad(const struct smtpc *s, struct smtpc_reply *why)
{
	if (s->tls_mode < SMTPC_TLS_NONE || s->tls_mode > SMTPC_TLS_OPPORTUNISTIC)
		noreply(why, SMTPC_TLS, "unknown TLS mode %d", s->tls_mode);
	else if (s->tls_mode != SMTPC_TLS_NONE && s->tls_ctx == NULL)
		noreply(why, SMTPC_TLS, "TLS wanted but no TLS context given");
	else if (s->auth_user != NULL && (*s->auth_user == '\0' || strlen(s->auth_user) > AUTH_FIELD_MAX ||
	    strlen(s->auth_password) > AUTH_FIELD_MAX))
		noreply(why, SMTPC_AUTH, "AUTH user name empty, or user name or password over %d octets",
		    AUTH_FIELD_MAX);
	else
		return false;
	return true;
}

/*
 * A socket and its plain bufferevent, connecting to the server; -1 with
 * errno when there is none. A connect that fails at once is reported
 * from the loop.
 */
static int
io_connect(struct smtpc *s)
{
	struct smtpc_reply why;
	int fd, err;

	fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	s->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (s->bev == NULL) {
		err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
	expect(s, ST_CONNECTING);
	if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&s->addr, (int)s->addrlen) < 0) {
		/* There is a socket, so this is the connect failing at once
		 * (no route, no such address): say so from the loop. */
		err = errno;
		if (err == ECONNREFUSED)
			noreply(&why, SMTPC_CONNECT, "connection refused");
		else
			noreply(&why, SMTPC_CONNECT, "connect failed: %s", strerror(err));
		fail_later(s, &why);
	}
	return 0;
}

struct smtpc *
smtpc_open(struct event_base *base, const struct smtpc_conf *c, const struct smtpc_cbs *cbs, void *arg)
{
	struct smtpc_reply why;
	struct smtpc *s;

	if (c == NULL || c->addr == NULL || cbs == NULL || c->addrlen > sizeof(struct sockaddr_storage) ||
	    (s = session_new(base, c, cbs, arg)) == NULL)
		return NULL;
	if (conf_bad(s, &why)) {
		/* Not one packet to a server we could not talk to as asked. */
		fail_later(s, &why);
		return s;
	}
	if (io_connect(s) < 0) {
		session_free(s);
		return NULL;
	}
	return s;
}

int
smtpc_send(struct smtpc *s, const struct smtpc_msg *m)
{
	if (s == NULL || !msg_ok(m) || s->failure_due)
		return -1;
	switch (s->state) {
	case ST_READY:
		txn_start(s, m);
		return 0;
	case ST_RESET_DUE:
	case ST_RSET:
		/* Refused transaction being reset: this one follows the 250. */
		if (s->next != NULL || s->quit_due)
			return -1;
		s->next = m;
		return 0;
	default:
		return -1;
	}
}

void
smtpc_quit(struct smtpc *s)
{
	if (s == NULL)
		return;
	switch (s->state) {
	case ST_READY:
		send_quit(s);
		break;
	case ST_CONNECTING:
	case ST_GREETING:
	case ST_EHLO:
	case ST_HELO:
	case ST_STARTTLS:
	case ST_TLS:
	case ST_AUTH_LOGIN:
	case ST_AUTH_USER:
	case ST_AUTH:
		/* Nothing to be polite about yet: close, and say so from the loop. */
		io_close(s);
		s->state = ST_CLOSING;
		event_active(s->kick, 0, 0);
		break;
	case ST_MAIL:
	case ST_RCPT:
	case ST_DATA:
	case ST_DOT:
	case ST_RESET_DUE:
	case ST_RSET:
		s->quit_due = true;	/* after the transaction (or RSET) */
		break;
	default:
		break;			/* already quitting, failing or closed */
	}
}

void
smtpc_abort(struct smtpc *s)
{
	if (s == NULL || s->state == ST_DEAD)
		return;
	io_close(s);
	event_del(s->kick);
	s->state = ST_DEAD;
	if (s->busy == 0)
		session_free(s);
}
