/*
 * lmtp: the LMTP server of hato-intake.
 *
 * A session reads commands (CRLF or bare LF) and answers them; PIPELINING
 * is offered, so commands are taken from the input buffer in order. DATA
 * lines end only at CRLF: a bare LF, or "\n.\n", is message content and
 * never ends the message, so a message cannot be split in two (SMTP
 * smuggling). A message over the size limit is read to its end and
 * refused with 552 for every recipient, never cut and stored.
 *
 * After DATA the transaction is handed to the owner and the session
 * stops reading until lmtp_txn_reply(); a client that leaves meanwhile is
 * remembered and the session is freed when the reply comes, so the
 * owner's answer always has a session to go to. The server owns its
 * sessions (a list) and frees those left at shutdown.
 */
#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "core/log.h"
#include "intake/lmtp.h"

#define CMD_LINE_MAX 4096
#define DATA_CHUNK (64 * 1024)
#define MAX_RCPTS 100
#define IDLE_TIMEOUT_S 300
#define MAX_LISTENERS 4

enum lmtp_state { ST_CMD, ST_DATA, ST_BUSY };

struct lmtp_session {
	struct lmtp_server *srv;
	struct bufferevent *bev;
	struct lmtp_session *prev, *next;
	enum lmtp_state state;
	unsigned id;
	int lhlo;
	int gone;		/* the client left while the owner was busy */
	int at_line_start;
	struct lmtp_txn *txn;
	/* The message as it comes in, flat: handed over as it is, never
	 * copied (a realloc of a large block moves pages, not bytes). */
	char *data;
	size_t stored, cap;
	size_t data_len;	/* counted against max_size, with line ends */
};

struct lmtp_server {
	struct event_base *base;
	char hostname[256];
	size_t max_size;
	struct lmtp_cbs cbs;
	void *arg;
	struct evconnlistener *listeners[MAX_LISTENERS];
	char *unix_paths[MAX_LISTENERS];
	unsigned nlisteners;
	struct lmtp_session *sessions;
	unsigned next_id;
	unsigned busy;
};

static void session_read(struct bufferevent *bev, void *arg);
static void session_event(struct bufferevent *bev, short what, void *arg);

static void
reply(struct lmtp_session *s, const char *line)
{
	evbuffer_add_printf(bufferevent_get_output(s->bev), "%s\r\n", line);
}

static void
txn_free(struct lmtp_txn *t)
{
	if (!t)
		return;
	free(t->mail_from);
	for (size_t i = 0; i < t->nrcpt; i++)
		free(t->rcpts[i]);
	free(t->rcpts);
	free(t->data);
	free(t);
}

static void
session_free(struct lmtp_session *s)
{
	struct lmtp_server *srv = s->srv;

	if (s->prev)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	txn_free(s->txn);
	free(s->data);
	bufferevent_free(s->bev);
	free(s);
}

/* Close after what is queued for the client has been written. */
static void
session_drain_write(struct bufferevent *bev, void *arg)
{
	(void)bev;
	session_free(arg);
}

static void
session_close_soon(struct lmtp_session *s)
{
	bufferevent_disable(s->bev, EV_READ);
	bufferevent_setcb(s->bev, NULL, session_drain_write, session_event, s);
	/* Never freed from inside a command handler: the write callback runs
	 * once the output is flushed (at once, deferred, when it is empty). */
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		bufferevent_trigger(s->bev, EV_WRITE, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

static void
session_event(struct bufferevent *bev, short what, void *arg)
{
	struct lmtp_session *s = arg;

	(void)bev;
	if (what & BEV_EVENT_TIMEOUT)
		log_info("lmtp session=%u timeout", s->id);
	if (s->state == ST_BUSY) {
		/* The owner still answers this transaction: free later. */
		s->gone = 1;
		bufferevent_disable(s->bev, EV_READ | EV_WRITE);
		return;
	}
	session_free(s);
}

static void
txn_reset(struct lmtp_session *s)
{
	txn_free(s->txn);
	s->txn = NULL;
	free(s->data);
	s->data = NULL;
	s->stored = s->cap = 0;
	s->data_len = 0;
}

/* "FROM:<addr> PARAMS" -> addr (malloc'd) and the rest; NULL on bad syntax. */
static char *
parse_path(const char *arg, const char *keyword, const char **params)
{
	size_t kl = strlen(keyword);
	const char *lt, *gt;

	if (strncasecmp(arg, keyword, kl) != 0)
		return NULL;
	arg += kl;
	while (*arg == ' ')
		arg++;
	if (*arg != '<' || !(gt = strchr(arg, '>')))
		return NULL;
	lt = arg + 1;
	*params = gt + 1;
	return strndup(lt, (size_t)(gt - lt));
}

static void
cmd_lhlo(struct lmtp_session *s, const char *arg)
{
	char line[512];

	if (!*arg) {
		reply(s, "501 5.5.4 LHLO needs a domain");
		return;
	}
	txn_reset(s);
	s->lhlo = 1;
	snprintf(line, sizeof(line), "250-%s", s->srv->hostname);
	reply(s, line);
	reply(s, "250-PIPELINING");
	reply(s, "250-ENHANCEDSTATUSCODES");
	reply(s, "250-8BITMIME");
	snprintf(line, sizeof(line), "250 SIZE %zu", s->srv->max_size);
	reply(s, line);
}

static void
cmd_mail(struct lmtp_session *s, const char *arg)
{
	const char *params;
	char *from;

	if (!s->lhlo) {
		reply(s, "503 5.5.1 LHLO first");
		return;
	}
	if (s->txn) {
		reply(s, "503 5.5.1 nested MAIL command");
		return;
	}
	if (!(from = parse_path(arg, "FROM:", &params))) {
		reply(s, "501 5.5.4 syntax: MAIL FROM:<address>");
		return;
	}
	/* SIZE= declared larger than we take: refuse before the data. */
	const char *sz = strcasestr(params, "SIZE=");
	if (sz && strtoull(sz + 5, NULL, 10) > s->srv->max_size) {
		free(from);
		reply(s, "552 5.3.4 message too big for this intake");
		return;
	}
	if (!(s->txn = calloc(1, sizeof(*s->txn))))
		fatalx("lmtp: out of memory");
	s->txn->mail_from = from;
	reply(s, "250 2.1.0 sender ok");
}

static void
cmd_rcpt(struct lmtp_session *s, const char *arg)
{
	const char *params, *refusal;
	char *to;
	char **nr;

	if (!s->txn) {
		reply(s, "503 5.5.1 MAIL first");
		return;
	}
	if (!(to = parse_path(arg, "TO:", &params))) {
		reply(s, "501 5.5.4 syntax: RCPT TO:<address>");
		return;
	}
	if (s->txn->nrcpt >= MAX_RCPTS) {
		free(to);
		reply(s, "452 4.5.3 too many recipients");
		return;
	}
	if ((refusal = s->srv->cbs.rcpt(to, s->srv->arg))) {
		free(to);
		reply(s, refusal);
		return;
	}
	if (!(nr = realloc(s->txn->rcpts, (s->txn->nrcpt + 1) * sizeof(char *))))
		fatalx("lmtp: out of memory");
	s->txn->rcpts = nr;
	s->txn->rcpts[s->txn->nrcpt++] = to;
	reply(s, "250 2.1.5 recipient ok");
}

static void
cmd_data(struct lmtp_session *s)
{
	if (!s->txn || s->txn->nrcpt == 0) {
		reply(s, "503 5.5.1 no valid recipients");
		return;
	}
	s->state = ST_DATA;
	s->at_line_start = 1;
	s->data_len = 0;
	reply(s, "354 end data with <CR><LF>.<CR><LF>");
}

static void
handle_command(struct lmtp_session *s, char *line)
{
	char *arg = line;

	while (*arg && *arg != ' ')
		arg++;
	if (*arg)
		*arg++ = '\0';
	if (strcasecmp(line, "LHLO") == 0)
		cmd_lhlo(s, arg);
	else if (strcasecmp(line, "MAIL") == 0)
		cmd_mail(s, arg);
	else if (strcasecmp(line, "RCPT") == 0)
		cmd_rcpt(s, arg);
	else if (strcasecmp(line, "DATA") == 0)
		cmd_data(s);
	else if (strcasecmp(line, "RSET") == 0) {
		txn_reset(s);
		reply(s, "250 2.0.0 ok");
	} else if (strcasecmp(line, "NOOP") == 0)
		reply(s, "250 2.0.0 ok");
	else if (strcasecmp(line, "QUIT") == 0) {
		reply(s, "221 2.0.0 bye");
		session_close_soon(s);
	} else if (strcasecmp(line, "HELO") == 0 || strcasecmp(line, "EHLO") == 0)
		reply(s, "500 5.5.1 this is LMTP: use LHLO");
	else
		reply(s, "500 5.5.1 command not recognised");
}

/* Room for n more octets of the message. */
static void
data_room(struct lmtp_session *s, size_t n)
{
	size_t cap = s->cap ? s->cap : 65536;
	char *p;

	if (s->cap - s->stored >= n)
		return;
	while (cap - s->stored < n)
		cap *= 2;
	if (!(p = realloc(s->data, cap)))
		fatalx("lmtp: out of memory");
	s->data = p;
	s->cap = cap;
}

/* The whole message is in: hand it over. */
static void
data_done(struct lmtp_session *s)
{
	struct lmtp_txn *t = s->txn;

	data_room(s, 1);
	t->data = s->data;
	t->len = s->stored;
	t->data[t->len] = '\0';
	s->data = NULL;
	s->stored = s->cap = 0;
	s->txn = NULL;
	s->state = ST_BUSY;
	s->srv->busy++;
	s->srv->cbs.message(s, t, s->srv->arg);
}

/* The size counts line ends, as SIZE does (RFC 1870 §3): CRLF is
 * stored with every line, and a limit that left them out would let a
 * message of short lines in a few per cent over it. */
static void
data_append(struct lmtp_session *s, struct evbuffer *in, size_t n, int line_end)
{
	size_t add = n + (line_end ? 2 : 0);

	if (s->data_len + add > s->srv->max_size) {
		s->txn->too_big = 1;
		evbuffer_drain(in, n);
	} else {
		data_room(s, add);
		evbuffer_remove(in, s->data + s->stored, n);
		s->stored += n;
		if (line_end) {
			memcpy(s->data + s->stored, "\r\n", 2);
			s->stored += 2;
		}
	}
	s->data_len += add;
}

/* Consume DATA lines; returns 1 when the end marker was seen. */
static int
read_data(struct lmtp_session *s, struct evbuffer *in)
{
	for (;;) {
		size_t eol_len;
		struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF_STRICT);
		if (eol.pos < 0) {
			size_t have = evbuffer_get_length(in);
			/* A very long line: keep all but a possible CR of its end. */
			if (have > DATA_CHUNK) {
				char first;
				evbuffer_copyout(in, &first, 1);
				if (s->at_line_start && first == '.')
					evbuffer_drain(in, 1), have--;
				data_append(s, in, have - 1, 0);
				s->at_line_start = 0;
			}
			return 0;
		}
		size_t n = (size_t)eol.pos;
		if (s->at_line_start && n >= 1) {
			char first;
			evbuffer_copyout(in, &first, 1);
			if (first == '.') {
				if (n == 1) {
					evbuffer_drain(in, 1 + eol_len);
					return 1;
				}
				evbuffer_drain(in, 1);	/* dot-stuffing */
				n--;
			}
		}
		data_append(s, in, n, 1);
		evbuffer_drain(in, eol_len);
		s->at_line_start = 1;
	}
}

/* RFC 5321 §2.3.8: CR and LF only as the line end; no NUL or other
 * control character (TAB aside) in a command, nor in what it names. */
static bool
has_control(const char *line, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return true;
	}
	return false;
}

static void
session_read(struct bufferevent *bev, void *arg)
{
	struct lmtp_session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (s->state != ST_BUSY) {
		if (s->state == ST_DATA) {
			if (!read_data(s, in))
				return;
			s->state = ST_CMD;
			if (s->txn->too_big) {
				for (size_t i = 0; i < s->txn->nrcpt; i++)
					reply(s, "552 5.3.4 message too big for this intake");
				txn_reset(s);
				continue;
			}
			data_done(s);
			return;
		}
		size_t len;
		char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
		if (!line) {
			if (evbuffer_get_length(in) > CMD_LINE_MAX) {
				reply(s, "500 5.5.2 line too long");
				session_close_soon(s);
			}
			return;
		}
		if (len > CMD_LINE_MAX)
			reply(s, "500 5.5.2 line too long");
		else if (has_control(line, len))
			reply(s, "500 5.5.2 control character in command");
		else
			handle_command(s, line);
		free(line);
		if ((bufferevent_get_enabled(s->bev) & EV_READ) == 0)
			return;		/* closing */
	}
}

void
lmtp_txn_reply(struct lmtp_session *s, struct lmtp_txn *txn, const char *const *replies)
{
	struct lmtp_server *srv = s->srv;

	srv->busy--;
	if (s->gone) {
		txn_free(txn);
		session_free(s);
		return;
	}
	for (size_t i = 0; i < txn->nrcpt; i++)
		reply(s, replies[i]);
	txn_free(txn);
	s->state = ST_CMD;
	/* Commands pipelined behind the DATA are waiting in the buffer. */
	session_read(s->bev, s);
}

static void
on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct lmtp_server *srv = arg;
	struct lmtp_session *s = calloc(1, sizeof(*s));
	struct timeval idle = { IDLE_TIMEOUT_S, 0 };
	char line[300];

	(void)l, (void)sa, (void)salen;
	if (!s)
		fatalx("lmtp: out of memory");
	s->srv = srv;
	s->id = ++srv->next_id;
	s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	s->next = srv->sessions;
	if (srv->sessions)
		srv->sessions->prev = s;
	srv->sessions = s;
	bufferevent_setcb(s->bev, session_read, NULL, session_event, s);
	bufferevent_set_timeouts(s->bev, &idle, &idle);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	snprintf(line, sizeof(line), "220 %s LMTP hato-intake ready", srv->hostname);
	reply(s, line);
	log_debug("lmtp session=%u connected", s->id);
}

struct lmtp_server *
lmtp_server_new(struct event_base *base, const char *hostname, size_t max_size,
    const struct lmtp_cbs *cbs, void *arg)
{
	struct lmtp_server *srv = calloc(1, sizeof(*srv));

	if (!srv)
		fatalx("lmtp: out of memory");
	srv->base = base;
	snprintf(srv->hostname, sizeof(srv->hostname), "%s", hostname);
	srv->max_size = max_size;
	srv->cbs = *cbs;
	srv->arg = arg;
	return srv;
}

static int
add_listener(struct lmtp_server *srv, evutil_socket_t fd, const char *path, char *err, size_t errlen)
{
	struct evconnlistener *l;

	if (srv->nlisteners >= MAX_LISTENERS) {
		snprintf(err, errlen, "too many listeners");
		evutil_closesocket(fd);
		return -1;
	}
	l = evconnlistener_new(srv->base, on_accept, srv,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 128, fd);
	if (!l) {
		snprintf(err, errlen, "cannot listen: %s", strerror(errno));
		evutil_closesocket(fd);
		return -1;
	}
	srv->unix_paths[srv->nlisteners] = path ? strdup(path) : NULL;
	srv->listeners[srv->nlisteners++] = l;
	return 0;
}

int
lmtp_listen_tcp(struct lmtp_server *srv, const char *hostport, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	int sslen = sizeof(ss), one = 1;
	evutil_socket_t fd;

	if (evutil_parse_sockaddr_port(hostport, (struct sockaddr *)&ss, &sslen) < 0) {
		snprintf(err, errlen, "lmtp_listen '%s': expected host:port with a numeric address", hostport);
		return -1;
	}
	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&ss, (socklen_t)sslen) < 0) {
		snprintf(err, errlen, "lmtp_listen %s: %s", hostport, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return add_listener(srv, fd, NULL, err, errlen);
}

int
lmtp_listen_unix(struct lmtp_server *srv, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	evutil_socket_t fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "lmtp_socket %s: path too long", path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	/* A socket left by an earlier run is replaced; any other file is not. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "lmtp_socket %s: exists and is not a socket", path);
			return -1;
		}
		unlink(path);
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		snprintf(err, errlen, "lmtp_socket %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	/* The MTA runs as its own user. Every submission is authenticated
	 * and intake relays nothing, so the socket may be open to it. */
	chmod(path, 0666);
	return add_listener(srv, fd, path, err, errlen);
}

void
lmtp_server_close_listeners(struct lmtp_server *srv)
{
	for (unsigned i = 0; i < srv->nlisteners; i++) {
		evconnlistener_free(srv->listeners[i]);
		if (srv->unix_paths[i])
			unlink(srv->unix_paths[i]);
		free(srv->unix_paths[i]);
	}
	srv->nlisteners = 0;
}

unsigned
lmtp_server_busy(const struct lmtp_server *srv)
{
	return srv->busy;
}

void
lmtp_server_free(struct lmtp_server *srv)
{
	if (!srv)
		return;
	lmtp_server_close_listeners(srv);
	while (srv->sessions)
		session_free(srv->sessions);
	free(srv);
}
