/*
 * test_smtpc_tls: the SMTP client session's STARTTLS, SMTPS and AUTH
 * against the scriptable sink (tests/harness/smtpsink.py) over real
 * sockets on 127.0.0.1, with certificates made by this test when it
 * starts: a CA, a server certificate for localhost and 127.0.0.1 signed by
 * it, a client certificate, and a second CA that signed nothing the sink
 * shows. The sink runs as a subprocess with --verbose, its dialogue in a
 * log file, so a test can tell what reached it in clear; it is killed by
 * its pid after each test. Each test runs under alarm() and a guard timer
 * on the event loop; the sink also dies with this process
 * (PR_SET_PDEATHSIG) and after --max-time seconds whatever happens.
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

#include "core/tls.h"
#include "gateway/smtpc.h"

#define GUARD_SECS	20	/* one session, at most */
#define ALARM_SECS	60	/* one test, at most */

/* The certificates, made once for all tests. */
static struct {
	char dir[64];
	char ca[128], other_ca[128];
	char server_crt[128], server_key[128];
	char client_crt[128], client_key[128];
} certs;

enum sink_tls { SINK_PLAIN, SINK_STARTTLS, SINK_SMTPS };

struct fx {
	char dir[64];
	char script[128], record[128], portf[128], log[128];
	pid_t pid;
	int port;
	struct event_base *base;
	struct event *guard;
	struct smtpc *s;
	SSL_CTX *ctx;
	bool drop_ctx;		/* free ctx as soon as the session holds it */

	/* What happened. */
	int nready, ndone, nclosed;
	bool closed_null;
	struct smtpc_reply done, closed;
	char tls_info[128], tls_peer[256];
	bool guard_fired;
};

/* ---- files ---- */

static bool
file_has(const char *path, const char *s)
{
	char *text = read_file(path);
	bool found = strstr(text, s) != NULL;

	free(text);
	return found;
}

static int
file_count(const char *path, const char *s)
{
	char *text = read_file(path), *p;
	int n = 0;

	for (p = text; (p = strstr(p, s)) != NULL; p += strlen(s))
		n++;
	free(text);
	return n;
}

/* Whether a occurs in the file, and before b when b occurs too. */
static bool
file_order(const char *path, const char *a, const char *b)
{
	char *text = read_file(path), *pa = strstr(text, a), *pb = strstr(text, b);
	bool ok = pa != NULL && (pb == NULL || pa < pb);

	free(text);
	return ok;
}

/* ---- the certificates, made with the openssl command ---- */

static const char gen_script[] =
    "set -e\n"
    "ec='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'\n"
    "ca_ext='-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign'\n"
    "openssl req -x509 $ec -keyout ca.key -out ca.crt -days 2 -subj '/CN=Hato Test CA' $ca_ext\n"
    "openssl req -x509 $ec -keyout other-ca.key -out other-ca.crt -days 2 -subj '/CN=Hato Other CA' $ca_ext\n"
    "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n"
    "keyUsage=critical,digitalSignature\\nextendedKeyUsage=serverAuth\\n' > server.ext\n"
    "openssl req -new $ec -keyout server.key -out server.csr -subj '/CN=localhost'\n"
    "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
    "-out server.crt -extfile server.ext\n"
    "printf 'basicConstraints=CA:FALSE\\nkeyUsage=critical,digitalSignature\\n"
    "extendedKeyUsage=clientAuth\\n' > client.ext\n"
    "openssl req -new $ec -keyout client.key -out client.csr -subj '/CN=hato client'\n"
    "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
    "-out client.crt -extfile client.ext\n";

static int
certs_make(void **state)
{
	char path[128], cmd[256];

	(void)state;
	snprintf(certs.dir, sizeof certs.dir, "/tmp/hato-tls-XXXXXX");
	if (mkdtemp(certs.dir) == NULL)
		return -1;
	snprintf(path, sizeof path, "%s/gen.sh", certs.dir);
	write_file(path, gen_script);
	snprintf(cmd, sizeof cmd, "cd '%s' && /bin/sh gen.sh > gen.log 2>&1", certs.dir);
	if (system(cmd) != 0) {
		snprintf(path, sizeof path, "%s/gen.log", certs.dir);
		fprintf(stderr, "cannot make the test certificates (openssl):\n%s", read_file(path));
		return -1;
	}
	snprintf(certs.ca, sizeof certs.ca, "%s/ca.crt", certs.dir);
	snprintf(certs.other_ca, sizeof certs.other_ca, "%s/other-ca.crt", certs.dir);
	snprintf(certs.server_crt, sizeof certs.server_crt, "%s/server.crt", certs.dir);
	snprintf(certs.server_key, sizeof certs.server_key, "%s/server.key", certs.dir);
	snprintf(certs.client_crt, sizeof certs.client_crt, "%s/client.crt", certs.dir);
	snprintf(certs.client_key, sizeof certs.client_key, "%s/client.key", certs.dir);
	return 0;
}

static int
certs_remove(void **state)
{
	static const char *const files[] = {
		"gen.sh", "gen.log", "ca.key", "ca.crt", "ca.srl", "other-ca.key", "other-ca.crt",
		"server.ext", "server.key", "server.csr", "server.crt",
		"client.ext", "client.key", "client.csr", "client.crt",
	};
	char path[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof files / sizeof files[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", certs.dir, files[i]);
		unlink(path);
	}
	rmdir(certs.dir);
	return 0;
}

/* ---- the sink subprocess ---- */

static void
sink_start_with(struct fx *fx, const char *script, enum sink_tls tls, bool client_ca)
{
	const char *argv[32];
	char sink[600];
	int n = 0;

	write_file(fx->script, script);
	snprintf(sink, sizeof sink, "%s/tests/harness/smtpsink.py", source_dir());
	argv[n++] = "python3";
	argv[n++] = sink;
	argv[n++] = "--port";
	argv[n++] = "0";
	argv[n++] = "--port-file";
	argv[n++] = fx->portf;
	argv[n++] = "--script";
	argv[n++] = fx->script;
	argv[n++] = "--record";
	argv[n++] = fx->record;
	argv[n++] = "--max-time";
	argv[n++] = "90";
	argv[n++] = "--name";
	argv[n++] = "test";
	argv[n++] = "--verbose";
	if (tls != SINK_PLAIN) {
		argv[n++] = "--tls-cert";
		argv[n++] = certs.server_crt;
		argv[n++] = "--tls-key";
		argv[n++] = certs.server_key;
		argv[n++] = "--tls-mode";
		argv[n++] = tls == SINK_SMTPS ? "smtps" : "starttls";
	}
	if (client_ca) {
		argv[n++] = "--tls-client-ca";
		argv[n++] = certs.ca;
	}
	argv[n] = NULL;
	fx->port = peer_start(&fx->pid, argv, fx->portf, fx->log, "sink");
}

static void
sink_start(struct fx *fx, const char *script, enum sink_tls tls)
{
	sink_start_with(fx, script, tls, false);
}

static void
sink_stop(struct fx *fx)
{
	peer_stop(&fx->pid);
}

/* Another sink in the same test: the log and the record start over. */
static void
sink_restart(struct fx *fx, const char *script, enum sink_tls tls)
{
	sink_stop(fx);
	unlink(fx->portf);
	unlink(fx->record);
	sink_start(fx, script, tls);
}

/* ---- the owner's callbacks: one message, then QUIT ---- */

static const struct smtpc_msg msg = {
	"bounce+7.abc@hato.test", "taro@example.net", "Subject: tls\r\n\r\n", 16, "over TLS\r\n", 10, NULL,
};

static void
cb_ready(struct smtpc *s, void *arg)
{
	struct fx *fx = arg;

	fx->nready++;
	snprintf(fx->tls_info, sizeof fx->tls_info, "%s", smtpc_tls_info(s));
	snprintf(fx->tls_peer, sizeof fx->tls_peer, "%s", smtpc_tls_peer(s));
	if (fx->nready == 1)
		assert_int_equal(smtpc_send(s, &msg), 0);
	else
		smtpc_quit(s);
}

static void
cb_done(struct smtpc *s, const struct smtpc_msg *m, const struct smtpc_reply *r, void *arg)
{
	struct fx *fx = arg;

	(void)s;
	(void)m;
	fx->ndone++;
	fx->done = *r;
}

static void
cb_closed(struct smtpc *s, const struct smtpc_reply *why, void *arg)
{
	struct fx *fx = arg;

	(void)s;
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

/* A TLS context trusting ca (NULL: none made), with the client certificate or not. */
static void
use_ctx(struct fx *fx, const char *ca, bool client_cert)
{
	char err[256] = "";

	if (fx->ctx != NULL)
		tls_ctx_free(fx->ctx);
	fx->ctx = NULL;
	if (ca == NULL)
		return;
	fx->ctx = tls_client_ctx(ca, client_cert ? certs.client_crt : NULL,
	    client_cert ? certs.client_key : NULL, err, sizeof err);
	if (fx->ctx == NULL)
		fail_msg("tls_client_ctx: %s", err);
}

static struct smtpc_conf
conf_for(struct fx *fx, const struct sockaddr_in *sin, int tls)
{
	struct smtpc_conf c;

	memset(&c, 0, sizeof c);
	c.addr = (const struct sockaddr *)sin;
	c.addrlen = sizeof *sin;
	c.host = "localhost";
	c.helo = "client.hato.test";
	c.connect_ms = c.greeting_ms = c.command_ms = 5000;
	c.data_init_ms = c.data_block_ms = c.data_term_ms = 5000;
	c.tls = tls;
	c.tls_verify = true;
	c.tls_ctx = fx->ctx;
	return c;
}

static void
fx_clear(struct fx *fx)
{
	fx->nready = fx->ndone = fx->nclosed = 0;
	fx->closed_null = false;
	memset(&fx->done, 0, sizeof fx->done);
	memset(&fx->closed, 0, sizeof fx->closed);
	fx->tls_info[0] = fx->tls_peer[0] = '\0';
}

static void
run_session(struct fx *fx, const struct smtpc_conf *c)
{
	struct timeval guard = { GUARD_SECS, 0 };

	fx_clear(fx);
	fx->s = smtpc_open(fx->base, c, &cbs, fx);
	assert_non_null(fx->s);
	if (fx->drop_ctx) {
		tls_ctx_free(fx->ctx);
		fx->ctx = NULL;
	}
	evtimer_add(fx->guard, &guard);
	event_base_dispatch(fx->base);
	evtimer_del(fx->guard);
	assert_false(fx->guard_fired);
	assert_int_equal(fx->nclosed, 1);
}

static void
expect_reply(const struct smtpc_reply *r, int code, const char *status, enum smtpc_stage st, const char *text)
{
	if (r->code != code || r->stage != st || strcmp(r->status, status) != 0 ||
	    strstr(r->text, text) == NULL)
		fail_msg("reply %d %s \"%s\" at %s, want %d %s \"%s\" at %s", r->code, r->status, r->text,
		    smtpc_stage_name(r->stage), code, status, text, smtpc_stage_name(st));
}

/* The message went, and the session ended with QUIT. */
static void
expect_delivered(struct fx *fx)
{
	if (fx->ndone != 1 || !fx->closed_null)
		fail_msg("not delivered: %d done, closed: %d %s \"%s\" at %s", fx->ndone, fx->closed.code,
		    fx->closed.status, fx->closed.text, smtpc_stage_name(fx->closed.stage));
	expect_reply(&fx->done, 250, "2.0.0", SMTPC_DOT, "queued as");
	assert_int_equal(file_count(fx->record, "\n"), 1);
}

/* Closed before any message, and nothing of a message reached the sink. */
static void
expect_refused(struct fx *fx, int code, enum smtpc_stage st, const char *text)
{
	assert_int_equal(fx->ndone, 0);
	assert_int_equal(fx->nready, 0);
	assert_false(fx->closed_null);
	expect_reply(&fx->closed, code, code == 535 ? "5.7.8" : "", st, text);
	assert_false(file_has(fx->log, "< MAIL"));
	assert_false(file_has(fx->log, "< RCPT"));
	assert_int_equal(file_count(fx->record, "\n"), 0);
}

/* ---- fixture ---- */

static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof *fx);

	if (fx == NULL)
		return -1;
	alarm(ALARM_SECS);
	snprintf(fx->dir, sizeof fx->dir, "/tmp/hato-smtpc-tls-XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	snprintf(fx->script, sizeof fx->script, "%s/script.json", fx->dir);
	snprintf(fx->record, sizeof fx->record, "%s/record.jsonl", fx->dir);
	snprintf(fx->portf, sizeof fx->portf, "%s/port", fx->dir);
	snprintf(fx->log, sizeof fx->log, "%s/sink.log", fx->dir);
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
	if (fx->ctx != NULL)
		tls_ctx_free(fx->ctx);
	event_free(fx->guard);
	event_base_free(fx->base);
	unlink(fx->script);
	unlink(fx->record);
	unlink(fx->portf);
	unlink(fx->log);
	rmdir(fx->dir);
	free(fx);
	alarm(0);
	return 0;
}

/* ---- the tests ---- */

/* STARTTLS with the right CA: delivered under TLS, nothing of the mail in clear. */
static void
test_starttls_verified(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in sin;
	struct smtpc_conf c;

	sink_start(fx, "{}", SINK_STARTTLS);
	use_ctx(fx, certs.ca, false);
	sin = loopback(fx->port);
	c = conf_for(fx, &sin, SMTPC_TLS_STARTTLS);
	run_session(fx, &c);
	expect_delivered(fx);
	assert_true(strncmp(fx->tls_info, "TLSv1.", 6) == 0);
	assert_non_null(strstr(fx->tls_info, " verified"));
	assert_string_equal(fx->tls_peer, "CN=localhost");
	assert_true(file_has(fx->record, "\"tls\": \"TLSv1."));
	assert_int_equal(file_count(fx->log, "< EHLO"), 2);	/* again under TLS */
	assert_true(file_order(fx->log, "* TLS TLSv1.", "< MAIL"));
}

/* SMTPS: TLS from the first octet, greeting included. */
static void
test_smtps_verified(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in sin;
	struct smtpc_conf c;

	sink_start(fx, "{}", SINK_SMTPS);
	use_ctx(fx, certs.ca, false);
	sin = loopback(fx->port);
	c = conf_for(fx, &sin, SMTPC_TLS_SMTPS);
	run_session(fx, &c);
	expect_delivered(fx);
	assert_non_null(strstr(fx->tls_info, " verified"));
	assert_true(file_has(fx->record, "\"tls\": \"TLSv1."));
	assert_int_equal(file_count(fx->log, "< EHLO"), 1);
	assert_false(file_has(fx->log, "< STARTTLS"));

	/* The IP address is in the certificate too; and the session keeps
	 * the context alive when the owner drops it (a reload). */
	c.tls_name = "127.0.0.1";
	fx->drop_ctx = true;
	run_session(fx, &c);
	assert_true(fx->closed_null);
	assert_int_equal(fx->ndone, 1);
}

/* A name the certificate does not carry: closed at stage tls, no MAIL. */
static void
test_wrong_name(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in sin;
	struct smtpc_conf c;

	sink_start(fx, "{}", SINK_STARTTLS);
	use_ctx(fx, certs.ca, false);
	sin = loopback(fx->port);
	c = conf_for(fx, &sin, SMTPC_TLS_STARTTLS);
	c.tls_name = "wrong.example";
	run_session(fx, &c);
	expect_refused(fx, 0, SMTPC_TLS, "host name mismatch: expected wrong.example");
	assert_int_equal(file_count(fx->log, "< EHLO"), 1);	/* and nothing after STARTTLS */

	/* The same with SMTPS, and with an IP address that is not in it. */
	sink_restart(fx, "{}", SINK_SMTPS);
	sin = loopback(fx->port);
	c = conf_for(fx, &sin, SMTPC_TLS_SMTPS);
	c.tls_name = "wrong.example";
	run_session(fx, &c);
	expect_refused(fx, 0, SMTPC_TLS, "host name mismatch: expected wrong.example");
	c.tls_name = "127.0.0.2";
	run_session(fx, &c);
	expect_refused(fx, 0, SMTPC_TLS, "IP address mismatch: expected 127.0.0.2");
	assert_false(file_has(fx->log, "< EHLO"));
}

/* A CA the client does not trust: closed with the verification error. */
static void
test_untrusted_ca(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in sin;
	struct smtpc_conf c;

	sink_start(fx, "{}", SINK_STARTTLS);
	use_ctx(fx, certs.other_ca, false);
	sin = loopback(fx->port);
	c = conf_for(fx, &sin, SMTPC_TLS_STARTTLS);
	run_session(fx, &c);
	expect_refused(fx, 0, SMTPC_TLS, "certificate verify failed: unable to get local issuer certificate");
	assert_int_equal(file_count(fx->log, "< EHLO"), 1);
	assert_string_equal(fx->tls_info, "");	/* never ready */

	/* Opportunistic without verification takes it, and says so. */
	c.tls = SMTPC_TLS_OPPORTUNISTIC;
	c.tls_verify = false;
	run_session(fx, &c);
	expect_delivered(fx);
	assert_non_null(strstr(fx->tls_info, " unverified"));
	assert_true(file_has(fx->record, "\"tls\": \"TLSv1."));
}

/* STARTTLS required and not offered, or refused: closed, nothing sent. */
static void
test_starttls_missing(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in sin;
	struct smtpc_conf c;

	sink_start(fx, "{}", SINK_PLAIN);
	use_ctx(fx, certs.ca, false);
	sin = loopback(fx->port);
	c = conf_for(fx, &sin, SMTPC_TLS_STARTTLS);
	run_session(fx, &c);
	expect_refused(fx, 0, SMTPC_TLS, "STARTTLS required but not offered");
	assert_false(file_has(fx->log, "< STARTTLS"));

	/* Offered, then refused. */
	sink_restart(fx, "{\"starttls\": \"454 4.7.0 TLS not available due to local problem\"}", SINK_STARTTLS);
	sin = loopback(fx->port);
	c = conf_for(fx, &sin, SMTPC_TLS_STARTTLS);
	run_session(fx, &c);
	expect_refused(fx, 0, SMTPC_TLS, "STARTTLS refused: 454 TLS not available due to local problem");

	/* Opportunistic goes on in clear after the refusal. */
	c.tls = SMTPC_TLS_OPPORTUNISTIC;
	run_session(fx, &c);
	expect_delivered(fx);
	assert_string_equal(fx->tls_info, "none");
	assert_true(file_has(fx->record, "\"tls\": null"));
}

/* Opportunistic STARTTLS with a server without TLS: delivered in clear. */
static void
test_opportunistic_clear(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in sin;
	struct smtpc_conf c;

	sink_start(fx, "{}", SINK_PLAIN);
	use_ctx(fx, certs.ca, false);
	sin = loopback(fx->port);
	c = conf_for(fx, &sin, SMTPC_TLS_OPPORTUNISTIC);
	c.tls_verify = false;
	run_session(fx, &c);
	expect_delivered(fx);
	assert_string_equal(fx->tls_info, "none");
	assert_string_equal(fx->tls_peer, "");
	assert_false(file_has(fx->log, "< STARTTLS"));
	assert_true(file_has(fx->record, "\"tls\": null"));
}

/*
 * A server that says 220 to STARTTLS and then never does TLS: required,
 * the session ends at the handshake timeout; opportunistic, it connects
 * again in clear and delivers.
 */
static void
test_handshake_broken(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in sin;
	struct smtpc_conf c;

	sink_start(fx, "{\"extensions\": [\"STARTTLS\"], \"starttls\": \"220 2.0.0 Go ahead\"}", SINK_PLAIN);
	use_ctx(fx, certs.ca, false);
	sin = loopback(fx->port);
	c = conf_for(fx, &sin, SMTPC_TLS_STARTTLS);
	c.command_ms = 400;
	run_session(fx, &c);
	/* A timeout, or a failure when the sink answers our ClientHello as a command. */
	expect_refused(fx, 0, SMTPC_TLS, "TLS handshake");

	c.tls = SMTPC_TLS_OPPORTUNISTIC;
	c.tls_verify = false;
	run_session(fx, &c);
	expect_delivered(fx);
	assert_string_equal(fx->tls_info, "none");
	assert_true(file_has(fx->record, "\"conn\": 3"));	/* the second of this session */
	assert_true(file_has(fx->record, "\"tls\": null"));
}

/* A server that never answers the ClientHello: the handshake's own timeout. */
static void
test_handshake_timeout(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in sin;
	struct smtpc_conf c;
	struct timespec t0, t1;

	sink_start(fx, "{\"greeting\": \"hang\"}", SINK_PLAIN);
	use_ctx(fx, certs.ca, false);
	sin = loopback(fx->port);
	c = conf_for(fx, &sin, SMTPC_TLS_SMTPS);
	c.command_ms = 300;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	run_session(fx, &c);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	expect_refused(fx, 0, SMTPC_TLS, "timeout in TLS handshake");
	assert_true(t1.tv_sec - t0.tv_sec < 4);
}

/* Replies in clear after the 220 to STARTTLS (an injection): refused. */
static void
test_starttls_injection(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in sin;
	struct smtpc_conf c;

	sink_start(fx, "{\"starttls\": \"220 2.0.0 Ready\\n250 2.0.0 injected\"}", SINK_STARTTLS);
	use_ctx(fx, certs.ca, false);
	sin = loopback(fx->port);
	c = conf_for(fx, &sin, SMTPC_TLS_STARTTLS);
	run_session(fx, &c);
	expect_refused(fx, 0, SMTPC_TLS, "server sent data after its reply to STARTTLS");
}

static const char script_users[] = "{\"users\": {\"hato\": \"s3cret pass\"}}";

/* AUTH PLAIN over STARTTLS; the sink records the user. */
static void
test_auth_plain(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in sin;
	struct smtpc_conf c;

	sink_start(fx, script_users, SINK_STARTTLS);
	use_ctx(fx, certs.ca, false);
	sin = loopback(fx->port);
	c = conf_for(fx, &sin, SMTPC_TLS_STARTTLS);
	c.auth_user = "hato";
	c.auth_password = "s3cret pass";
	run_session(fx, &c);
	expect_delivered(fx);
	assert_true(file_has(fx->record, "\"auth_user\": \"hato\""));
	assert_true(file_has(fx->log, "< AUTH PLAIN (credentials)"));
	assert_true(file_order(fx->log, "* TLS TLSv1.", "< AUTH"));
}

/* AUTH LOGIN when PLAIN is not offered, over SMTPS. */
static void
test_auth_login(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in sin;
	struct smtpc_conf c;

	sink_start(fx, "{\"users\": {\"hato\": \"s3cret\"}, \"auth_mechanisms\": [\"LOGIN\"]}", SINK_SMTPS);
	use_ctx(fx, certs.ca, false);
	sin = loopback(fx->port);
	c = conf_for(fx, &sin, SMTPC_TLS_SMTPS);
	c.auth_user = "hato";
	c.auth_password = "s3cret";
	run_session(fx, &c);
	expect_delivered(fx);
	assert_true(file_has(fx->record, "\"auth_user\": \"hato\""));
	assert_true(file_has(fx->log, "< AUTH LOGIN"));
}

/* A wrong password: closed at stage auth with the server's 535 and text. */
static void
test_auth_wrong_password(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in sin;
	struct smtpc_conf c;

	sink_start(fx, script_users, SINK_STARTTLS);
	use_ctx(fx, certs.ca, false);
	sin = loopback(fx->port);
	c = conf_for(fx, &sin, SMTPC_TLS_STARTTLS);
	c.auth_user = "hato";
	c.auth_password = "not it";
	run_session(fx, &c);
	expect_refused(fx, 535, SMTPC_AUTH, "Error: authentication failed");
	assert_null(strstr(fx->closed.text, "not it"));

	/* And through LOGIN. */
	sink_restart(fx, "{\"users\": {\"hato\": \"s3cret pass\"}, \"auth_mechanisms\": [\"LOGIN\"]}",
	    SINK_STARTTLS);
	sin = loopback(fx->port);
	c = conf_for(fx, &sin, SMTPC_TLS_STARTTLS);
	c.auth_user = "hato";
	c.auth_password = "not it";
	run_session(fx, &c);
	expect_refused(fx, 535, SMTPC_AUTH, "Error: authentication failed");
	assert_true(file_has(fx->log, "< AUTH LOGIN"));
}

/* AUTH in clear: refused by the client unless allowed. */
static void
test_auth_needs_tls(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in sin;
	struct smtpc_conf c;

	sink_start(fx, script_users, SINK_PLAIN);
	sin = loopback(fx->port);
	c = conf_for(fx, &sin, SMTPC_TLS_NONE);
	c.auth_user = "hato";
	c.auth_password = "s3cret pass";
	run_session(fx, &c);
	expect_refused(fx, 0, SMTPC_AUTH, "AUTH refused: connection not encrypted");
	assert_false(file_has(fx->log, "< AUTH"));

	/* Opportunistic TLS that did not happen is no better. */
	use_ctx(fx, certs.ca, false);
	c = conf_for(fx, &sin, SMTPC_TLS_OPPORTUNISTIC);
	c.auth_user = "hato";
	c.auth_password = "s3cret pass";
	run_session(fx, &c);
	expect_refused(fx, 0, SMTPC_AUTH, "AUTH refused: connection not encrypted");
	assert_false(file_has(fx->log, "< AUTH"));

	c.auth_without_tls = true;
	run_session(fx, &c);
	expect_delivered(fx);
	assert_true(file_has(fx->record, "\"auth_user\": \"hato\""));
	assert_true(file_has(fx->record, "\"tls\": null"));
}

/* A server that offers AUTH only under TLS; and one that offers neither mechanism. */
static void
test_auth_after_tls_only(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in sin;
	struct smtpc_conf c;

	sink_start(fx, "{\"users\": {\"hato\": \"pw\"}, \"auth_without_tls\": false}", SINK_STARTTLS);
	use_ctx(fx, certs.ca, false);
	sin = loopback(fx->port);
	c = conf_for(fx, &sin, SMTPC_TLS_OPPORTUNISTIC);
	c.auth_user = "hato";
	c.auth_password = "pw";
	run_session(fx, &c);
	expect_delivered(fx);
	assert_true(file_has(fx->record, "\"auth_user\": \"hato\""));

	sink_restart(fx, "{\"users\": {\"hato\": \"pw\"}, \"auth_mechanisms\": []}", SINK_STARTTLS);
	sin = loopback(fx->port);
	c = conf_for(fx, &sin, SMTPC_TLS_OPPORTUNISTIC);
	c.auth_user = "hato";
	c.auth_password = "pw";
	run_session(fx, &c);
	expect_refused(fx, 0, SMTPC_AUTH, "AUTH not offered");
}

/* A client certificate, checked by the sink; and contexts that cannot be made. */
static void
test_client_cert(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in sin;
	struct smtpc_conf c;
	char err[256];
	SSL_CTX *bad;

	sink_start_with(fx, "{}", SINK_STARTTLS, true);
	use_ctx(fx, certs.ca, true);
	sin = loopback(fx->port);
	c = conf_for(fx, &sin, SMTPC_TLS_STARTTLS);
	run_session(fx, &c);
	expect_delivered(fx);
	assert_true(file_has(fx->record, "\"tls_client\": \"commonName=hato client\""));

	bad = tls_client_ctx("/nonexistent/ca.pem", NULL, NULL, err, sizeof err);
	assert_null(bad);
	assert_non_null(strstr(err, "/nonexistent/ca.pem"));
	bad = tls_client_ctx(certs.ca, certs.client_crt, certs.server_key, err, sizeof err);
	assert_null(bad);
	if (strstr(err, "does not match") == NULL)
		fail_msg("%s", err);
	bad = tls_client_ctx(NULL, NULL, NULL, err, sizeof err);	/* the system store */
	assert_non_null(bad);
	tls_ctx_free(bad);
}

/* Settings that cannot work are reported as closed(why), before connecting. */
static void
test_conf_checks(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in sin = loopback(1);
	struct smtpc_conf c;
	char longname[300];

	c = conf_for(fx, &sin, SMTPC_TLS_STARTTLS);	/* no context */
	run_session(fx, &c);
	expect_reply(&fx->closed, 0, "", SMTPC_TLS, "no TLS context");

	use_ctx(fx, certs.ca, false);
	c = conf_for(fx, &sin, 7);
	run_session(fx, &c);
	expect_reply(&fx->closed, 0, "", SMTPC_TLS, "unknown TLS mode 7");

	memset(longname, 'x', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	c = conf_for(fx, &sin, SMTPC_TLS_NONE);
	c.auth_user = longname;
	c.auth_password = "pw";
	run_session(fx, &c);
	expect_reply(&fx->closed, 0, "", SMTPC_AUTH, "over 255 octets");
	assert_int_equal(fx->nready, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_starttls_verified, setup, teardown),
		cmocka_unit_test_setup_teardown(test_smtps_verified, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_untrusted_ca, setup, teardown),
		cmocka_unit_test_setup_teardown(test_starttls_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_opportunistic_clear, setup, teardown),
		cmocka_unit_test_setup_teardown(test_handshake_broken, setup, teardown),
		cmocka_unit_test_setup_teardown(test_handshake_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_starttls_injection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_plain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_login, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_wrong_password, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_needs_tls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auth_after_tls_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_cert, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conf_checks, setup, teardown),
	};

	/* A dead peer must not kill the test with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, certs_make, certs_remove);
}
