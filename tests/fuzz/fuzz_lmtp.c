/*
 * fuzz_lmtp: an LMTP session fed any bytes.
 *
 * Each input gets its own event base and lmtp_server listening on a unix
 * socket (/tmp/hato-fuzz-lmtp.PID.sock, removed by lmtp_server_free). A
 * client connects and writes the input after its first octet; the loop
 * runs one non-blocking pass at a time, at most LOOP_MAX passes, while the
 * client reads what the server says. When the input is written and the
 * server has been quiet for a few passes with no answer owed, the client
 * shuts its side; the session must then end (the client reads EOF).
 *
 * The first octet sets the size limit (64, 1024 or 65536 octets), whether
 * the owner answers a transaction at once (from inside the message
 * callback) or later (from a timer, as intake does after its database
 * work), and whether the odd recipients of each transaction are refused
 * then. Recipients containing "refuse" or "later" are refused at RCPT.
 *
 * Invariants: every line the server writes ends in CRLF and is a well-formed
 * reply; nothing follows "221"; the owner gets paths without '>', CR or LF
 * (RFC 5321 2.3.8: CR and LF only as CRLF, the line's end); a transaction
 * handed over has 1..100 recipients and data that is NUL-terminated,
 * within its length and, unless empty, ends in CRLF; it is never one that
 * went over the limit; the session ends after the client leaves.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "intake/lmtp.h"
#include "mail/reply.h"
#include "check.h"

#define LOOP_MAX 20000
#define QUIET_PASSES 3

enum {
	M_LATER = 1 << 0,	/* answer from a timer */
	M_REFUSE_ODD = 1 << 1,	/* the odd recipients get 452 */
};

struct run {
	struct event_base *base;
	unsigned mode;
	unsigned owed;		/* transactions handed over, not answered */
	/* The server's output, line by line. */
	char line[8192];
	size_t linelen;
	bool bye;		/* "221" seen */
	struct reply r;
};

struct answer {
	struct run *run;
	struct lmtp_session *s;
	struct lmtp_txn *t;
};

static char sock_path[108];

static const char *
on_rcpt(const char *rcpt, void *arg)
{
	(void)arg;
	CHECK(rcpt != NULL);
	CHECK(strpbrk(rcpt, ">\r\n") == NULL);
	if (strstr(rcpt, "refuse") != NULL)
		return "550 5.1.1 no such user here";
	if (strstr(rcpt, "later") != NULL)
		return "450 4.2.1 try again later";
	return NULL;
}

static void
answer(struct run *run, struct lmtp_session *s, struct lmtp_txn *t)
{
	const char *replies[100];

	for (size_t i = 0; i < t->nrcpt; i++)
		replies[i] = (run->mode & M_REFUSE_ODD) && (i & 1) ?
		    "452 4.2.2 mailbox full" : "250 2.0.0 stored";
	run->owed--;
	lmtp_txn_reply(s, t, replies);
}

static void
answer_later(evutil_socket_t fd, short what, void *arg)
{
	struct answer *a = arg;

	(void)fd, (void)what;
	answer(a->run, a->s, a->t);
	free(a);
}

static void
on_message(struct lmtp_session *s, struct lmtp_txn *t, void *arg)
{
	struct run *run = arg;
	static const struct timeval now = { 0, 0 };

	CHECK(t->mail_from != NULL && strpbrk(t->mail_from, ">\r\n") == NULL);
	CHECK(t->nrcpt >= 1 && t->nrcpt <= 100);
	for (size_t i = 0; i < t->nrcpt; i++)
		CHECK(t->rcpts[i] != NULL && strpbrk(t->rcpts[i], ">\r\n") == NULL);
	CHECK(t->data != NULL && t->data[t->len] == '\0');
	CHECK(t->len == 0 || (t->len >= 2 && memcmp(t->data + t->len - 2, "\r\n", 2) == 0));
	CHECK(!t->too_big);
	run->owed++;
	if (run->mode & M_LATER) {
		struct answer *a = malloc(sizeof(*a));

		if (a == NULL)
			abort();
		a->run = run;
		a->s = s;
		a->t = t;
		if (event_base_once(run->base, -1, EV_TIMEOUT, answer_later, a, &now) != 0)
			abort();
	} else
		answer(run, s, t);
}

/* One line of the server's, CRLF taken off. */
static void
server_line(struct run *run, const char *l, size_t n)
{
	enum reply_result rr;

	CHECK(!run->bye);
	CHECK(n >= 1 && l[n - 1] == '\r');
	rr = reply_feed(&run->r, l, n - 1);
	CHECK(rr != REPLY_MALFORMED);
	if (rr == REPLY_DONE && run->r.code == 221)
		run->bye = true;
}

static void
server_output(struct run *run, const char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			server_line(run, run->line, run->linelen);
			run->linelen = 0;
			continue;
		}
		CHECK(run->linelen < sizeof(run->line));
		run->line[run->linelen++] = buf[i];
	}
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	/* The daemon ignores SIGPIPE too: a peer that left is an error return. */
	signal(SIGPIPE, SIG_IGN);
	snprintf(sock_path, sizeof(sock_path), "/tmp/hato-fuzz-lmtp.%ld.sock", (long)getpid());
	return 0;
}

static int
client_connect(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		abort();
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)
		abort();
	return fd;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t limits[] = { 64, 1024, 65536 };
	static struct run run;
	static const struct lmtp_cbs cbs = { on_rcpt, on_message };
	struct lmtp_server *srv;
	char err[256], buf[4096];
	size_t written = 0, quiet = 0, pass;
	bool shut = false, eof = false;
	ssize_t n;
	int fd;

	if (size < 1)
		return 0;
	fuzz_poison_stack();
	memset(&run, 0, sizeof(run));
	reply_init(&run.r);
	run.mode = data[0] & 3;
	if ((run.base = event_base_new()) == NULL)
		abort();
	srv = lmtp_server_new(run.base, "lmtp.fuzz.example", limits[(data[0] >> 2) % 3], &cbs, &run);
	if (lmtp_listen_unix(srv, sock_path, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
	fd = client_connect();
	data++, size--;

	for (pass = 0; !eof; pass++) {
		if (pass == LOOP_MAX) {
			fprintf(stderr, "the session did not end after %d loop passes\n", LOOP_MAX);
			CHECK(!"the session ends");
		}
		if (written < size) {
			n = write(fd, data + written, size - written);
			if (n > 0)
				written += (size_t)n;
			else if (n < 0 && errno != EAGAIN && errno != EINTR)
				written = size;		/* the server closed: EPIPE */
		} else if (!shut && quiet >= QUIET_PASSES && run.owed == 0) {
			shutdown(fd, SHUT_WR);
			shut = true;
		}
		event_base_loop(run.base, EVLOOP_NONBLOCK);
		while ((n = read(fd, buf, sizeof(buf))) > 0) {
			server_output(&run, buf, (size_t)n);
			quiet = 0;
		}
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			eof = true;
		else
			quiet++;
	}
	CHECK(run.owed == 0);
	close(fd);
	lmtp_server_free(srv);
	event_base_free(run.base);
	return 0;
}
