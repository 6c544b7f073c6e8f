/*
 * test_smtpc: the SMTP client session against a real SMTP peer over real
 * sockets: the scriptable sink (tests/harness/smtpsink.py), started as a
 * subprocess on 127.0.0.1 for each test and killed by its pid at the end.
 * Each test runs under alarm() and a guard timer on the event loop, so
 * none can hang; the sink also dies with this process (PR_SET_PDEATHSIG)
 * and after --max-time seconds whatever happens.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "tests/unit/peer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "gateway/smtpc.h"

#define MAX_MSGS	8
#define GUARD_SECS	20	/* one session, at most */
#define ALARM_SECS	60	/* one test, at most */

struct fx {
	char dir[64];
	char script[128], record[128], portf[128];
	pid_t pid;
	int port;
	struct event_base *base;
	struct event *guard;
	struct smtpc *s;

	/* The plan. */
	const struct smtpc_msg *msgs[MAX_MSGS];
	int nmsgs, sent;
	bool send_in_done;	/* hand over messages after the first inside done() */
	bool abort_in_done;	/* smtpc_abort inside the last done() */
	bool quit_in_done;	/* smtpc_quit inside the first done() */

	/* What happened. */
	bool in_call;		/* inside one of our calls to smtpc_* */
	int sync_callbacks;	/* callbacks from inside our calls: must stay 0 */
	int send_errors;
	int nready, ndone, nclosed;
	bool pipelining;
	const struct smtpc_msg *done_msg[MAX_MSGS];
	struct smtpc_reply done[MAX_MSGS];
	bool closed_null;
	struct smtpc_reply closed;
	bool guard_fired;
};

/* ---- the sink subprocess ---- */

static void
sink_start(struct fx *fx, const char *script)
{
	char sink[600];
	const char *argv[] = { "python3", sink, "--port", "0", "--port-file", fx->portf,
	    "--script", fx->script, "--record", fx->record, "--max-time", "90", "--name", "test", NULL };

	write_file(fx->script, script);
	snprintf(sink, sizeof sink, "%s/tests/harness/smtpsink.py", source_dir());
	fx->port = peer_start(&fx->pid, argv, fx->portf, NULL, "sink");
}

static void
sink_stop(struct fx *fx)
{
	peer_stop(&fx->pid);
}

/* ---- the owner's callbacks ---- */

static void
send_next(struct fx *fx, struct smtpc *s)
{
	if (smtpc_send(s, fx->msgs[fx->sent]) != 0)
		fx->send_errors++;
	fx->sent++;
}

static void
cb_ready(struct smtpc *s, void *arg)
{
	struct fx *fx = arg;

	if (fx->in_call)
		fx->sync_callbacks++;
	fx->nready++;
	fx->pipelining = smtpc_has_pipelining(s);
	if (fx->sent < fx->nmsgs && (fx->sent == 0 || !fx->send_in_done))
		send_next(fx, s);
	else
		smtpc_quit(s);
}

static void
cb_done(struct smtpc *s, const struct smtpc_msg *m, const struct smtpc_reply *r, void *arg)
{
	struct fx *fx = arg;

	if (fx->in_call)
		fx->sync_callbacks++;
	if (fx->ndone < MAX_MSGS) {
		fx->done_msg[fx->ndone] = m;
		fx->done[fx->ndone] = *r;
	}
	fx->ndone++;
	if (fx->abort_in_done && fx->ndone == fx->nmsgs) {
		smtpc_abort(s);
		fx->s = NULL;
		event_base_loopbreak(fx->base);
	} else if (fx->quit_in_done && fx->ndone == 1)
		smtpc_quit(s);
	else if (fx->send_in_done && fx->sent < fx->nmsgs)
		send_next(fx, s);
}

static void
cb_closed(struct smtpc *s, const struct smtpc_reply *why, void *arg)
{
	struct fx *fx = arg;

	(void)s;
	if (fx->in_call)
		fx->sync_callbacks++;
	fx->nclosed++;
	fx->closed_null = why == NULL;
	if (why != NULL)
		fx->closed = *why;
	fx->s = NULL;
	event_base_loopbreak(fx->base);
}

static const struct smtpc_cbs cbs = { cb_ready, cb_done, cb_closed };

static void
guard_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fx *fx = arg;

	(void)fd;
	(void)what;
	fx->guard_fired = true;
	event_base_loopbreak(fx->base);
}

/* ---- running a session ---- */

static struct sockaddr_in
loopback(int port)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sin;
}

static struct smtpc_conf
conf_for(const struct sockaddr_in *sin)
{
	struct smtpc_conf c;

	memset(&c, 0, sizeof c);
	c.addr = (const struct sockaddr *)sin;
	c.addrlen = sizeof *sin;
	c.host = "sink.test";
	c.helo = "client.hato.test";
	/* Short enough that a lost reply fails a test quickly. */
	c.connect_ms = c.greeting_ms = c.command_ms = 5000;
	c.data_init_ms = c.data_block_ms = c.data_term_ms = 5000;
	return c;
}

static void
run_session(struct fx *fx, const struct smtpc_conf *c)
{
	struct timeval guard = { GUARD_SECS, 0 };

	fx->in_call = true;
	fx->s = smtpc_open(fx->base, c, &cbs, fx);
	fx->in_call = false;
	assert_non_null(fx->s);
	evtimer_add(fx->guard, &guard);
	event_base_dispatch(fx->base);
	evtimer_del(fx->guard);
	assert_false(fx->guard_fired);
	assert_int_equal(fx->sync_callbacks, 0);
	assert_int_equal(fx->send_errors, 0);
}

static void
run(struct fx *fx)
{
	struct sockaddr_in sin = loopback(fx->port);
	struct smtpc_conf c = conf_for(&sin);

	run_session(fx, &c);
}

/* Clears what a session recorded, for a second one in the same test. */
static void
fx_clear(struct fx *fx)
{
	fx->nmsgs = fx->sent = fx->ndone = fx->nready = fx->nclosed = 0;
	fx->closed_null = false;
	memset(&fx->closed, 0, sizeof fx->closed);
}

static void
plan(struct fx *fx, const struct smtpc_msg *m)
{
	assert_true(fx->nmsgs < MAX_MSGS);
	fx->msgs[fx->nmsgs++] = m;
}

#define MSG(from, to, head, body) \
	{ (from), (to), (head), sizeof(head) - 1, (body), sizeof(body) - 1, NULL }

/* ---- checking the record ---- */

/* JSON as Python's json.dumps writes it, for ASCII text. */
static void
json_escape(const char *in, size_t n, char *out, size_t size)
{
	size_t i, o = 0;

	for (i = 0; i < n && o + 7 < size; i++) {
		unsigned char ch = (unsigned char)in[i];

		if (ch == '"' || ch == '\\') {
			out[o++] = '\\';
			out[o++] = (char)ch;
		} else if (ch == '\r') {
			out[o++] = '\\';
			out[o++] = 'r';
		} else if (ch == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else if (ch < 0x20 || ch >= 0x7f) {
			o += (size_t)snprintf(out + o, size - o, "\\u%04x", ch);
		} else
			out[o++] = (char)ch;
	}
	out[o] = '\0';
}

/* How many records hold exactly this data. */
static int
recorded(struct fx *fx, const char *data)
{
	char esc[8192], want[8300];
	char *rec = read_file(fx->record), *p;
	int n = 0;

	json_escape(data, strlen(data), esc, sizeof esc);
	snprintf(want, sizeof want, "\"data\": \"%s\"", esc);
	for (p = rec; (p = strstr(p, want)) != NULL; p += strlen(want))
		n++;
	free(rec);
	return n;
}

static int
record_count(struct fx *fx)
{
	char *rec = read_file(fx->record), *p;
	int n = 0;

	for (p = rec; (p = strchr(p, '\n')) != NULL; p++)
		n++;
	free(rec);
	return n;
}

static bool
record_has(struct fx *fx, const char *s)
{
	char *rec = read_file(fx->record);
	bool found = strstr(rec, s) != NULL;

	free(rec);
	return found;
}

static void
expect_reply(const struct smtpc_reply *r, int code, const char *status, enum smtpc_stage st, const char *text)
{
	if (r->code != code || r->stage != st || strcmp(r->status, status) != 0 ||
	    strstr(r->text, text) == NULL)
		fail_msg("reply %d %s \"%s\" at %s, want %d %s \"%s\" at %s", r->code, r->status, r->text,
		    smtpc_stage_name(r->stage), code, status, text, smtpc_stage_name(st));
}

/* ---- fixture ---- */

static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof *fx);

	if (fx == NULL)
		return -1;
	alarm(ALARM_SECS);
	snprintf(fx->dir, sizeof fx->dir, "/tmp/hato-smtpc-XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	snprintf(fx->script, sizeof fx->script, "%s/script.json", fx->dir);
	snprintf(fx->record, sizeof fx->record, "%s/record.jsonl", fx->dir);
	snprintf(fx->portf, sizeof fx->portf, "%s/port", fx->dir);
	fx->base = event_base_new();
	fx->guard = evtimer_new(fx->base, guard_cb, fx);
	if (fx->base == NULL || fx->guard == NULL)
		return -1;
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *fx = *state;

	if (fx->s != NULL)
		smtpc_abort(fx->s);
	sink_stop(fx);
	event_free(fx->guard);
	event_base_free(fx->base);
	unlink(fx->script);
	unlink(fx->record);
	unlink(fx->portf);
	rmdir(fx->dir);
	free(fx);
	alarm(0);
	return 0;
}

/* ---- the tests ---- */

static const struct smtpc_msg msg_dots = MSG("bounce+1.abc@hato.test", "taro@example.net",
    "Subject: one\r\nFrom: a@hato.test\r\n\r\n",
    ".starts with a dot\r\nmiddle\r\n.line\r\n..two dots\r\n.\r\nno final line end");
static const char data_dots[] = "Subject: one\r\nFrom: a@hato.test\r\n\r\n"
    ".starts with a dot\r\nmiddle\r\n.line\r\n..two dots\r\n.\r\nno final line end\r\n";
static const struct smtpc_msg msg_plain = MSG("bounce+2.def@hato.test", "hanako@example.net",
    "Subject: two\r\n\r\n", "hello\r\n");
static const char data_plain[] = "Subject: two\r\n\r\nhello\r\n";

/* Two messages over one connection, with dot-stuffing round trips. */
static void
test_two_messages(void **state)
{
	struct fx *fx = *state;

	sink_start(fx, "{}");
	plan(fx, &msg_dots);
	plan(fx, &msg_plain);
	run(fx);
	assert_int_equal(fx->ndone, 2);
	assert_ptr_equal(fx->done_msg[0], &msg_dots);
	assert_ptr_equal(fx->done_msg[1], &msg_plain);
	expect_reply(&fx->done[0], 250, "2.0.0", SMTPC_DOT, "Ok: queued as");
	expect_reply(&fx->done[1], 250, "2.0.0", SMTPC_DOT, "Ok: queued as");
	assert_int_equal(fx->nclosed, 1);
	assert_true(fx->closed_null);
	assert_true(fx->pipelining);
	assert_int_equal(record_count(fx), 2);
	assert_int_equal(recorded(fx, data_dots), 1);
	assert_int_equal(recorded(fx, data_plain), 1);
	assert_true(record_has(fx, "\"mail_from\": \"bounce+1.abc@hato.test\""));
	assert_true(record_has(fx, "\"rcpts\": [\"hanako@example.net\"]"));
	assert_true(record_has(fx, "\"helo\": \"client.hato.test\""));
	assert_false(record_has(fx, "\"conn\": 2"));	/* one connection */
	assert_false(record_has(fx, "\"pipelined\": false"));
}

/* Bare LF and lone CR in content go out as CRLF; an empty body is fine. */
static void
test_line_ends(void **state)
{
	static const struct smtpc_msg bare = MSG("", "a@example.net", "Subject: lf\n\n", "one\n.two\rthree\r\n");
	static const struct smtpc_msg empty = MSG("", "b@example.net", "", "");
	struct fx *fx = *state;

	sink_start(fx, "{}");
	plan(fx, &bare);
	plan(fx, &empty);
	run(fx);
	assert_int_equal(fx->ndone, 2);
	expect_reply(&fx->done[0], 250, "2.0.0", SMTPC_DOT, "");
	expect_reply(&fx->done[1], 250, "2.0.0", SMTPC_DOT, "");
	assert_int_equal(recorded(fx, "Subject: lf\r\n\r\none\r\n.two\r\nthree\r\n"), 1);
	assert_int_equal(recorded(fx, ""), 1);
	assert_true(record_has(fx, "\"mail_from\": \"\""));
}

static const char script_550[] =
    "{\"rules\": [{\"match\": \"*@fail.example\", \"rcpt\": [\"550 5.1.1 User unknown\"]}]}";
static const struct smtpc_msg msg_fail = MSG("bounce+3.x@hato.test", "nobody@FAIL.example",
    "Subject: fail\r\n\r\n", "never\r\n");

/* 550 at RCPT: reported at stage rcpt with 5.1.1; RSET; the next one goes. */
static void
test_rcpt_550(void **state)
{
	struct fx *fx = *state;

	sink_start(fx, script_550);
	plan(fx, &msg_fail);
	plan(fx, &msg_plain);
	run(fx);
	assert_int_equal(fx->ndone, 2);
	assert_ptr_equal(fx->done_msg[0], &msg_fail);
	expect_reply(&fx->done[0], 550, "5.1.1", SMTPC_RCPT, "User unknown");
	assert_string_equal(fx->done[0].text, "User unknown");
	expect_reply(&fx->done[1], 250, "2.0.0", SMTPC_DOT, "");
	assert_int_equal(fx->nready, 3);	/* after EHLO, after RSET, after the second */
	assert_true(fx->closed_null);
	assert_int_equal(record_count(fx), 1);
	assert_int_equal(recorded(fx, data_plain), 1);
}

/* The same without PIPELINING: one command at a time, never pipelined. */
static void
test_no_pipelining(void **state)
{
	struct fx *fx = *state;

	sink_start(fx, "{\"pipelining\": false, \"rules\": [{\"match\": \"*@fail.example\", "
	    "\"rcpt\": \"550-5.1.1 No such user\\n550 5.1.1 here\"}]}");
	plan(fx, &msg_dots);
	plan(fx, &msg_fail);
	plan(fx, &msg_plain);
	run(fx);
	assert_false(fx->pipelining);
	assert_int_equal(fx->ndone, 3);
	expect_reply(&fx->done[0], 250, "2.0.0", SMTPC_DOT, "");
	expect_reply(&fx->done[1], 550, "5.1.1", SMTPC_RCPT, "");
	assert_string_equal(fx->done[1].text, "No such user here");
	expect_reply(&fx->done[2], 250, "2.0.0", SMTPC_DOT, "");
	assert_true(fx->closed_null);
	assert_int_equal(recorded(fx, data_dots), 1);
	assert_int_equal(recorded(fx, data_plain), 1);
	assert_false(record_has(fx, "\"pipelined\": true"));
}

/* 550 at MAIL while pipelining: the RCPT and DATA replies are read, MAIL's is the outcome. */
static void
test_mail_refused_pipelined(void **state)
{
	struct fx *fx = *state;
	static const struct smtpc_msg bad = MSG("spammer@bad.example", "a@example.net", "", "x\r\n");

	sink_start(fx, "{\"rules\": [{\"from\": \"*@bad.example\", \"mail\": \"553 5.7.1 Sender refused\"}]}");
	plan(fx, &bad);
	plan(fx, &msg_plain);
	run(fx);
	assert_int_equal(fx->ndone, 2);
	expect_reply(&fx->done[0], 553, "5.7.1", SMTPC_MAIL, "Sender refused");
	expect_reply(&fx->done[1], 250, "2.0.0", SMTPC_DOT, "");
	assert_int_equal(record_count(fx), 1);
}

/* 451 after the dot: reported at stage dot; the next message goes. */
static void
test_dot_451(void **state)
{
	static const struct smtpc_msg later = MSG("s@hato.test", "later@example.net", "Subject: l\r\n\r\n", "l\r\n");
	struct fx *fx = *state;

	sink_start(fx, "{\"rules\": [{\"match\": \"later@*\", \"dot\": \"451 4.3.0 Try again later\"}]}");
	plan(fx, &later);
	plan(fx, &msg_plain);
	run(fx);
	assert_int_equal(fx->ndone, 2);
	expect_reply(&fx->done[0], 451, "4.3.0", SMTPC_DOT, "Try again later");
	expect_reply(&fx->done[1], 250, "2.0.0", SMTPC_DOT, "");
	assert_int_equal(record_count(fx), 1);
	assert_int_equal(recorded(fx, data_plain), 1);
}

/* 554 to DATA: reported at stage data. */
static void
test_data_554(void **state)
{
	struct fx *fx = *state;

	sink_start(fx, "{\"rules\": [{\"match\": \"*\", \"data\": \"554 5.3.0 No data today\"}]}");
	plan(fx, &msg_plain);
	run(fx);
	assert_int_equal(fx->ndone, 1);
	expect_reply(&fx->done[0], 554, "5.3.0", SMTPC_DATA, "No data today");
	assert_true(fx->closed_null);
	assert_int_equal(record_count(fx), 0);
}

/* A server that never answers after the dot, then one that never answers RCPT. */
static void
test_hang_timeouts(void **state)
{
	static const struct smtpc_msg slow = MSG("s@hato.test", "slow@example.net", "", "x\r\n");
	static const struct smtpc_msg stuck = MSG("s@hato.test", "stuck@example.net", "", "x\r\n");
	struct fx *fx = *state;
	struct sockaddr_in sin;
	struct smtpc_conf c;
	struct timespec t0, t1;

	sink_start(fx, "{\"rules\": [{\"match\": \"slow@*\", \"dot\": \"hang\"},"
	    " {\"match\": \"stuck@*\", \"rcpt\": \"hang\"}]}");
	sin = loopback(fx->port);
	c = conf_for(&sin);
	c.data_term_ms = 300;
	c.command_ms = 300;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	plan(fx, &slow);
	run_session(fx, &c);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(fx->ndone, 1);
	expect_reply(&fx->done[0], 0, "", SMTPC_DOT, "timeout waiting for reply to end of data");
	assert_int_equal(fx->nclosed, 1);
	assert_false(fx->closed_null);
	expect_reply(&fx->closed, 0, "", SMTPC_DOT, "timeout");
	assert_true(t1.tv_sec - t0.tv_sec < 4);

	fx_clear(fx);
	plan(fx, &stuck);
	run_session(fx, &c);
	assert_int_equal(fx->ndone, 1);
	expect_reply(&fx->done[0], 0, "", SMTPC_RCPT, "timeout waiting for reply to RCPT");
	expect_reply(&fx->closed, 0, "", SMTPC_RCPT, "timeout waiting for reply to RCPT");
	assert_int_equal(record_count(fx), 0);
}

/* SIZE advertised: a message over it is refused at MAIL, before its data. */
static void
test_size_refused(void **state)
{
	struct fx *fx = *state;

	sink_start(fx, "{\"size\": 20}");
	plan(fx, &msg_dots);
	run(fx);
	assert_int_equal(fx->ndone, 1);
	expect_reply(&fx->done[0], 552, "5.3.4", SMTPC_MAIL, "size exceeds");
	assert_true(fx->closed_null);
}

/* A server that stops reading mid-message: the data block timeout. */
static void
test_data_block_timeout(void **state)
{
	/* More than the socket buffers of loopback can hold. */
	static const size_t size = 16 << 20;
	struct fx *fx = *state;
	struct smtpc_msg big = { "s@hato.test", "big@example.net", "Subject: big\r\n\r\n", 15, NULL, 0, NULL };
	struct sockaddr_in sin;
	struct smtpc_conf c;
	char *body;
	size_t i;

	body = malloc(size);
	assert_non_null(body);
	for (i = 0; i < size; i++)
		body[i] = (i % 100 == 98) ? '\r' : (i % 100 == 99) ? '\n' : 'x';
	big.body = body;
	big.body_len = size;

	sink_start(fx, "{\"size\": 0, \"rules\": [{\"match\": \"big@*\", \"content\": \"freeze\"}]}");
	sin = loopback(fx->port);
	c = conf_for(&sin);
	c.data_block_ms = 300;
	plan(fx, &big);
	run_session(fx, &c);
	free(body);
	assert_int_equal(fx->ndone, 1);
	expect_reply(&fx->done[0], 0, "", SMTPC_DOT, "timeout sending message data");
	expect_reply(&fx->closed, 0, "", SMTPC_DOT, "timeout sending message data");
}

/* A hanging greeting: before any message, only closed(why). */
static void
test_greeting_timeout(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in sin;
	struct smtpc_conf c;

	sink_start(fx, "{\"greeting\": \"hang\"}");
	sin = loopback(fx->port);
	c = conf_for(&sin);
	c.greeting_ms = 200;
	plan(fx, &msg_plain);
	run_session(fx, &c);
	assert_int_equal(fx->ndone, 0);
	assert_int_equal(fx->nready, 0);
	expect_reply(&fx->closed, 0, "", SMTPC_GREETING, "timeout waiting for greeting");
}

/* Nobody listening: closed(why) with code 0 at stage connect. */
static void
test_connection_refused(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in sin = loopback(0);
	socklen_t len = sizeof sin;
	int fd;

	/* A port that was free a moment ago and that nobody listens on. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	fx->port = ntohs(sin.sin_port);

	plan(fx, &msg_plain);
	run(fx);
	assert_int_equal(fx->ndone, 0);
	assert_int_equal(fx->nready, 0);
	assert_int_equal(fx->nclosed, 1);
	assert_false(fx->closed_null);
	expect_reply(&fx->closed, 0, "", SMTPC_CONNECT, "connection refused");
	assert_string_equal(fx->closed.text, "connection refused");
}

/* 421 greeting: closed with it. */
static void
test_greeting_421(void **state)
{
	struct fx *fx = *state;

	sink_start(fx, "{\"greeting\": \"421 4.3.2 Service not available\"}");
	plan(fx, &msg_plain);
	run(fx);
	assert_int_equal(fx->ndone, 0);
	assert_int_equal(fx->nclosed, 1);
	expect_reply(&fx->closed, 421, "4.3.2", SMTPC_GREETING, "Service not available");
}

/* 421 in the middle of a transaction: done() with it, then closed(). */
static void
test_rcpt_421(void **state)
{
	struct fx *fx = *state;

	sink_start(fx, "{\"rules\": [{\"match\": \"*\", \"rcpt\": \"421 4.4.2 Closing now\"}]}");
	plan(fx, &msg_plain);
	plan(fx, &msg_dots);
	run(fx);
	assert_int_equal(fx->ndone, 1);
	expect_reply(&fx->done[0], 421, "4.4.2", SMTPC_RCPT, "Closing now");
	expect_reply(&fx->closed, 421, "4.4.2", SMTPC_RCPT, "Closing now");
}

/* The server drops the connection at DATA. */
static void
test_connection_lost(void **state)
{
	struct fx *fx = *state;

	sink_start(fx, "{\"rules\": [{\"match\": \"*\", \"data\": \"close\"}]}");
	plan(fx, &msg_plain);
	run(fx);
	assert_int_equal(fx->ndone, 1);
	expect_reply(&fx->done[0], 0, "", SMTPC_DATA, "connection lost");
	expect_reply(&fx->closed, 0, "", SMTPC_DATA, "connection lost");
}

/* EHLO refused with 5xx: HELO, and no capabilities. */
static void
test_helo_fallback(void **state)
{
	struct fx *fx = *state;

	sink_start(fx, "{\"ehlo\": \"502 5.5.2 Error: command not recognized\"}");
	plan(fx, &msg_plain);
	run(fx);
	assert_false(fx->pipelining);
	assert_int_equal(fx->ndone, 1);
	expect_reply(&fx->done[0], 250, "2.0.0", SMTPC_DOT, "");
	assert_true(record_has(fx, "\"helo\": \"client.hato.test\""));
	assert_int_equal(recorded(fx, data_plain), 1);
}

/* RSET refused: the session closes with its reply. */
static void
test_rset_refused(void **state)
{
	struct fx *fx = *state;

	sink_start(fx, "{\"rset\": \"554 5.5.1 No reset\", \"rules\": "
	    "[{\"match\": \"*@fail.example\", \"rcpt\": \"550 5.1.1 User unknown\"}]}");
	fx->send_in_done = true;	/* the second waits behind the RSET */
	plan(fx, &msg_fail);
	plan(fx, &msg_plain);
	run(fx);
	assert_int_equal(fx->ndone, 2);
	expect_reply(&fx->done[0], 550, "5.1.1", SMTPC_RCPT, "");
	assert_ptr_equal(fx->done_msg[1], &msg_plain);
	expect_reply(&fx->done[1], 0, "", SMTPC_MAIL, "not sent: 554 No reset");
	expect_reply(&fx->closed, 554, "5.5.1", SMTPC_MAIL, "No reset");
}

/* Messages handed over inside done(), after a refusal and after a success, then abort inside done(). */
static void
test_reentrant(void **state)
{
	struct fx *fx = *state;

	sink_start(fx, script_550);
	fx->send_in_done = true;
	fx->abort_in_done = true;
	plan(fx, &msg_fail);
	plan(fx, &msg_dots);
	plan(fx, &msg_plain);
	run(fx);
	assert_int_equal(fx->ndone, 3);
	expect_reply(&fx->done[0], 550, "5.1.1", SMTPC_RCPT, "");
	expect_reply(&fx->done[1], 250, "2.0.0", SMTPC_DOT, "");
	expect_reply(&fx->done[2], 250, "2.0.0", SMTPC_DOT, "");
	assert_int_equal(fx->nready, 1);	/* the rest went from done() */
	assert_int_equal(fx->nclosed, 0);	/* aborted: no callback */
	assert_null(fx->s);
	assert_int_equal(record_count(fx), 2);
}

/* smtpc_quit inside done() after a refusal: QUIT instead of RSET. */
static void
test_quit_in_done(void **state)
{
	struct fx *fx = *state;

	sink_start(fx, script_550);
	fx->quit_in_done = true;
	plan(fx, &msg_fail);
	plan(fx, &msg_plain);
	run(fx);
	assert_int_equal(fx->ndone, 1);
	assert_int_equal(fx->nready, 1);
	assert_int_equal(fx->nclosed, 1);
	assert_true(fx->closed_null);
}

/* smtpc_quit before the session is ready: closed(NULL), from the loop. */
static void
test_quit_early(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in sin;
	struct smtpc_conf c;
	struct timeval guard = { GUARD_SECS, 0 };

	sink_start(fx, "{}");
	sin = loopback(fx->port);
	c = conf_for(&sin);
	fx->in_call = true;
	fx->s = smtpc_open(fx->base, &c, &cbs, fx);
	assert_non_null(fx->s);
	smtpc_quit(fx->s);
	smtpc_quit(fx->s);	/* twice is harmless */
	fx->in_call = false;
	assert_int_equal(fx->nclosed, 0);
	evtimer_add(fx->guard, &guard);
	event_base_dispatch(fx->base);
	assert_false(fx->guard_fired);
	assert_int_equal(fx->sync_callbacks, 0);
	assert_int_equal(fx->nclosed, 1);
	assert_true(fx->closed_null);
	assert_int_equal(fx->nready, 0);
}

/* Bad envelopes are refused by smtpc_send; abort with nothing running. */
static void
test_send_checks(void **state)
{
	static const struct smtpc_msg crlf = MSG("a@b\r\nRSET", "c@d", "", "");
	static const struct smtpc_msg norcpt = MSG("a@b", "", "", "");
	struct fx *fx = *state;
	struct sockaddr_in sin = loopback(1);
	struct smtpc_conf c = conf_for(&sin);

	assert_string_equal(smtpc_stage_name(SMTPC_CONNECT), "connect");
	assert_string_equal(smtpc_stage_name(SMTPC_RCPT), "rcpt");
	assert_string_equal(smtpc_stage_name(SMTPC_DOT), "dot");
	assert_string_equal(smtpc_stage_name(SMTPC_TLS), "tls");
	assert_string_equal(smtpc_stage_name(SMTPC_QUIT), "quit");

	fx->s = smtpc_open(fx->base, &c, &cbs, fx);
	assert_non_null(fx->s);
	assert_int_equal(smtpc_send(fx->s, &msg_plain), -1);	/* not ready */
	assert_int_equal(smtpc_send(fx->s, &crlf), -1);
	assert_int_equal(smtpc_send(fx->s, &norcpt), -1);
	assert_int_equal(smtpc_send(fx->s, NULL), -1);
	smtpc_abort(fx->s);
	fx->s = NULL;
	event_base_loop(fx->base, EVLOOP_NONBLOCK);
	assert_int_equal(fx->nclosed, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_two_messages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_line_ends, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rcpt_550, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_pipelining, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mail_refused_pipelined, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dot_451, setup, teardown),
		cmocka_unit_test_setup_teardown(test_data_554, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hang_timeouts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_size_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_data_block_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_greeting_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_greeting_421, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rcpt_421, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_lost, setup, teardown),
		cmocka_unit_test_setup_teardown(test_helo_fallback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rset_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reentrant, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quit_in_done, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quit_early, setup, teardown),
		cmocka_unit_test_setup_teardown(test_send_checks, setup, teardown),
	};

	/* A dead peer must not kill the test with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
