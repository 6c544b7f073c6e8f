/*
 * test_mxres: the MX resolver against a real DNS server over real sockets:
 * the test DNS server (tests/harness/dnsserver.py), started as a
 * subprocess on 127.0.0.1 for each test with the zone below, and killed by
 * its pid at the end. Its query log (--log) tells which questions reached
 * it, for the cache tests. Each test runs under alarm() and a guard timer
 * on the event loop, so none can hang; the server also dies with this
 * process (PR_SET_PDEATHSIG) and after --max-time seconds whatever happens.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "tests/unit/peer.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "gateway/mxres.h"

#define SMTP_PORT	2525
#define MAX_CALLS	8
#define MAX_HOSTS	8
#define GUARD_SECS	10	/* one lookup, at most */
#define ALARM_SECS	60	/* one test, at most */

static const char zone[] =
    "{\n"
    " \"example.test\": {\"MX\": [[20, \"mx2.example.test\"], [10, \"mx1.example.test\"]]},\n"
    " \"mx1.example.test\": {\"A\": [\"127.0.0.1\"], \"AAAA\": [\"::1\"]},\n"
    " \"mx2.example.test\": {\"A\": [\"127.0.0.2\"]},\n"
    " \"mx3.example.test\": {\"A\": [\"127.0.0.4\"]},\n"
    " \"alias.example.test\": {\"CNAME\": \"mx1.example.test\"},\n"
    " \"empty.example.test\": {\"TXT\": [\"no address here\"]},\n"
    " \"nomx.test\": {\"A\": [\"127.0.0.3\"], \"AAAA\": [\"::3\"]},\n"
    " \"nullmx.test\": {\"MX\": [[0, \".\"]]},\n"
    " \"broken.test\": \"SERVFAIL\",\n"
    " \"refused.test\": \"REFUSED\",\n"
    " \"slow.test\": {\"DELAY\": 10, \"MX\": [[10, \"mx1.example.test\"]]},\n"
    " \"short.test\": {\"MX\": {\"ttl\": 1, \"records\": [[10, \"mx1.example.test\"]]}},\n"
    " \"partial.test\": {\"MX\": [[10, \"gone.example.test\"], [20, \"mx2.example.test\"]]},\n"
    " \"noaddr.test\": {\"MX\": [[10, \"gone.example.test\"], [20, \"empty.example.test\"]]},\n"
    " \"tempaddr.test\": {\"MX\": [[10, \"broken.test\"], [20, \"gone.example.test\"]]},\n"
    " \"equal.test\": {\"MX\": [[10, \"mx1.example.test\"], [10, \"mx2.example.test\"],"
    " [5, \"mx3.example.test\"]]},\n"
    " \"dup.test\": {\"MX\": [[10, \"mx1.example.test\"], [20, \"MX1.Example.Test\"],"
    " [30, \"alias.example.test\"]]},\n"
    " \"soa.test\": {\"SOA\": {\"ttl\": 3600, \"records\": [[\"ns.soa.test\", \"hm.soa.test\","
    " 1, 3600, 600, 86400, 1]]}},\n"
    " \"slowaddr.test\": {\"MX\": [[10, \"slow.test\"]]},\n"
    " \"odd.test\": {\"MX\": [[5, \"127.0.0.1\"], [6, \"::1\"], [7, \"localhost\"],"
    " [8, \".\"], [20, \"mx2.example.test\"]]},\n"
    " \"oddonly.test\": {\"MX\": [[5, \"127.0.0.1\"], [7, \"localhost\"]]},\n"
    " \"*.big.test\": {\"A\": [\"127.0.0.5\"]},\n"
    /* "big.test": BIG_MX exchangers, written by write_zone() */
    ;

/* Exchangers of big.test: more than mxres follows (32), and an answer
 * too long for UDP (512 bytes), so c-ares asks again over TCP. */
#define BIG_MX	40

struct result {
	int status;
	char why[256];
	size_t nhosts;
	struct mxres_host hosts[MAX_HOSTS];
};

struct fx {
	char dir[64];
	char zonef[128], portf[128], logf[128];
	pid_t pid;
	int port;
	char servers[64];
	struct event_base *base;
	struct event *guard;
	struct mxres *r;

	/* The plan. */
	int want;			/* break the loop after this many callbacks */
	bool free_in_cb;		/* mxres_free inside the first callback */
	const char *again_in_cb;	/* mxres_lookup of this inside the first callback */

	/* What happened. */
	bool in_call;			/* inside mxres_lookup */
	int sync_callbacks;		/* callbacks from inside it: must stay 0 */
	int ncalls;
	struct result res[MAX_CALLS];
	bool guard_fired;
};

/* ---- the server subprocess ---- */

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
write_zone(struct fx *fx)
{
	char *text = malloc(sizeof zone + BIG_MX * 80 + 64);
	size_t n;
	int i;

	assert_non_null(text);
	n = (size_t)sprintf(text, "%s \"big.test\": {\"MX\": [", zone);
	for (i = 0; i < BIG_MX; i++)
		n += (size_t)sprintf(text + n, "%s[%d, \"exchanger-number-%02d.big.test\"]", i ? ", " : "",
		    100 - i, i);
	sprintf(text + n, "]}\n}\n");
	write_file(fx->zonef, text);
	free(text);
}

static void
server_start(struct fx *fx)
{
	char script[600];
	const char *argv[] = { "python3", script, "--zone", fx->zonef, "--port", "0",
	    "--port-file", fx->portf, "--log", fx->logf, "--max-time", "90", NULL };

	write_zone(fx);
	snprintf(script, sizeof script, "%s/tests/harness/dnsserver.py", source_dir());
	fx->port = peer_start(&fx->pid, argv, fx->portf, NULL, "DNS server");
	snprintf(fx->servers, sizeof fx->servers, "127.0.0.1:%d", fx->port);
}

static void
server_stop(struct fx *fx)
{
	peer_stop(&fx->pid);
}

/* How many times the server was asked this ("example.test MX"), or
 * anything at all (NULL). */
static int
queries(struct fx *fx, const char *question)
{
	char *log = read_file(fx->logf), *line, *save = NULL;
	int n = 0;

	for (line = strtok_r(log, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
		if (question == NULL || strcmp(line, question) == 0)
			n++;
	free(log);
	return n;
}

/* ---- the callbacks ---- */

static void
cb_answer(const struct mxres_answer *a, void *arg)
{
	struct fx *fx = arg;
	struct result *res;
	size_t i;

	if (fx->in_call)
		fx->sync_callbacks++;
	if (fx->ncalls < MAX_CALLS) {
		res = &fx->res[fx->ncalls];
		res->status = a->status;
		snprintf(res->why, sizeof res->why, "%s", a->why);
		res->nhosts = a->nhosts;
		for (i = 0; i < a->nhosts && i < MAX_HOSTS; i++)
			res->hosts[i] = a->hosts[i];
	}
	fx->ncalls++;
	if (fx->ncalls == 1 && fx->free_in_cb) {
		mxres_free(fx->r);
		fx->r = NULL;
	}
	if (fx->ncalls == 1 && fx->again_in_cb != NULL) {
		fx->in_call = true;
		mxres_lookup(fx->r, fx->again_in_cb, cb_answer, fx);
		fx->in_call = false;
	}
	if (fx->ncalls >= fx->want)
		event_base_loopbreak(fx->base);
}

static void
guard_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fx *fx = arg;

	(void)fd;
	(void)what;
	fx->guard_fired = true;
	event_base_loopbreak(fx->base);
}

static void
noop_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* ---- running lookups ---- */

static void
resolver(struct fx *fx, unsigned timeout_ms)
{
	char err[256] = "";

	fx->r = mxres_new(fx->base, fx->servers, SMTP_PORT, timeout_ms, err, sizeof err);
	if (fx->r == NULL)
		fail_msg("mxres_new: %s", err);
}

static void
lookup(struct fx *fx, const char *domain)
{
	fx->in_call = true;
	mxres_lookup(fx->r, domain, cb_answer, fx);
	fx->in_call = false;
}

/* Runs the loop until `total` callbacks have run in all, at most GUARD_SECS. */
static void
run_until(struct fx *fx, int total)
{
	struct timeval tv = { GUARD_SECS, 0 };

	fx->want = total;
	if (fx->ncalls >= total)
		return;
	evtimer_add(fx->guard, &tv);
	event_base_dispatch(fx->base);
	evtimer_del(fx->guard);
	if (fx->guard_fired)
		fail_msg("%d callbacks after %d s, want %d", fx->ncalls, GUARD_SECS, total);
	assert_int_equal(fx->sync_callbacks, 0);
}

/* Runs the loop for ms milliseconds. */
static void
run_for(struct fx *fx, long ms)
{
	struct event *ev = evtimer_new(fx->base, noop_cb, NULL);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	assert_non_null(ev);
	evtimer_add(ev, &tv);
	event_base_loop(fx->base, EVLOOP_ONCE);
	while (evtimer_pending(ev, NULL))
		event_base_loop(fx->base, EVLOOP_ONCE);
	event_free(ev);
}

/* One lookup, its answer. */
static const struct result *
resolve(struct fx *fx, const char *domain)
{
	int n = fx->ncalls;

	lookup(fx, domain);
	assert_int_equal(fx->ncalls, n);
	run_until(fx, n + 1);
	return &fx->res[n];
}

static const char *
addr_text(const struct mxres_host *h, char *buf, size_t size)
{
	const void *a;

	if (h->addr.ss_family == AF_INET)
		a = &((const struct sockaddr_in *)&h->addr)->sin_addr;
	else
		a = &((const struct sockaddr_in6 *)&h->addr)->sin6_addr;
	return inet_ntop(h->addr.ss_family, a, buf, (socklen_t)size);
}

static unsigned
host_port(const struct mxres_host *h)
{
	if (h->addr.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&h->addr)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)&h->addr)->sin6_port);
}

static void
expect_host(const struct mxres_host *h, const char *name, unsigned pref, const char *addr)
{
	char buf[INET6_ADDRSTRLEN];

	addr_text(h, buf, sizeof buf);
	if (strcmp(h->name, name) != 0 || h->pref != pref || strcmp(buf, addr) != 0)
		fail_msg("host %s pref %u addr %s, want %s pref %u addr %s", h->name, h->pref, buf,
		    name, pref, addr);
	assert_int_equal(host_port(h), SMTP_PORT);
	assert_int_equal(h->addrlen, h->addr.ss_family == AF_INET ? sizeof(struct sockaddr_in) :
	    sizeof(struct sockaddr_in6));
}

/* Hosts [from, from + n) are these addresses of one exchanger, in any order. */
static void
expect_hosts_any_order(const struct result *res, size_t from, size_t n, const char *name,
    unsigned pref, const char *const *addrs)
{
	char buf[INET6_ADDRSTRLEN];
	size_t i, j;

	assert_true(res->nhosts >= from + n);
	for (j = 0; j < n; j++) {
		for (i = from; i < from + n; i++)
			if (strcmp(addr_text(&res->hosts[i], buf, sizeof buf), addrs[j]) == 0)
				break;
		if (i == from + n)
			fail_msg("%s not among hosts %zu..%zu", addrs[j], from, from + n - 1);
		expect_host(&res->hosts[i], name, pref, addrs[j]);
	}
}

static void
expect_fail(const struct result *res, int status, const char *why)
{
	if (res->status != status || strstr(res->why, why) == NULL || res->nhosts != 0)
		fail_msg("status %d \"%s\" (%zu hosts), want %d \"%s\"", res->status, res->why,
		    res->nhosts, status, why);
}

/* ---- fixture ---- */

static int
setup(void **state)
{
	struct fx *fx = calloc(1, sizeof *fx);

	if (fx == NULL)
		return -1;
	alarm(ALARM_SECS);
	snprintf(fx->dir, sizeof fx->dir, "/tmp/hato-mxres-XXXXXX");
	if (mkdtemp(fx->dir) == NULL)
		return -1;
	snprintf(fx->zonef, sizeof fx->zonef, "%s/zone.json", fx->dir);
	snprintf(fx->portf, sizeof fx->portf, "%s/port", fx->dir);
	snprintf(fx->logf, sizeof fx->logf, "%s/queries.log", fx->dir);
	fx->base = event_base_new();
	fx->guard = evtimer_new(fx->base, guard_cb, fx);
	if (fx->base == NULL || fx->guard == NULL)
		return -1;
	server_start(fx);
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *fx = *state;

	if (fx->r != NULL)
		mxres_free(fx->r);
	server_stop(fx);
	event_free(fx->guard);
	event_base_free(fx->base);
	unlink(fx->zonef);
	unlink(fx->portf);
	unlink(fx->logf);
	rmdir(fx->dir);
	free(fx);
	alarm(0);
	return 0;
}

/* ---- the tests ---- */

static const char *const mx1_addrs[] = { "127.0.0.1", "::1" };

static void
test_mx_order(void **state)
{
	struct fx *fx = *state;
	const struct result *res;

	resolver(fx, 2000);
	res = resolve(fx, "example.test");
	assert_int_equal(res->status, MXRES_OK);
	assert_int_equal(res->nhosts, 3);
	expect_hosts_any_order(res, 0, 2, "mx1.example.test", 10, mx1_addrs);
	expect_host(&res->hosts[2], "mx2.example.test", 20, "127.0.0.2");
	assert_string_equal(res->why, "");
}

static void
test_implicit_mx(void **state)
{
	static const char *const addrs[] = { "127.0.0.3", "::3" };
	struct fx *fx = *state;
	const struct result *res;

	resolver(fx, 2000);
	res = resolve(fx, "nomx.test");
	assert_int_equal(res->status, MXRES_OK);
	assert_int_equal(res->nhosts, 2);
	expect_hosts_any_order(res, 0, 2, "nomx.test", 0, addrs);
	assert_int_equal(queries(fx, "nomx.test MX"), 1);
	assert_int_equal(queries(fx, "nomx.test A"), 1);
	assert_int_equal(queries(fx, "nomx.test AAAA"), 1);
}

static void
test_null_mx(void **state)
{
	struct fx *fx = *state;

	resolver(fx, 2000);
	expect_fail(resolve(fx, "nullmx.test"), MXRES_PERMFAIL, "null MX: domain accepts no mail");
	/* Nothing else asked: no address of "." */
	assert_int_equal(queries(fx, "nullmx.test MX"), 1);
	assert_int_equal(queries(fx, NULL), 1);
}

static void
test_nxdomain(void **state)
{
	struct fx *fx = *state;

	resolver(fx, 2000);
	expect_fail(resolve(fx, "nowhere.test"), MXRES_PERMFAIL, "domain does not exist");
	/* No fallback to addresses for a name that does not exist. */
	assert_int_equal(queries(fx, "nowhere.test A"), 0);
}

static void
test_servfail_refused(void **state)
{
	struct fx *fx = *state;

	resolver(fx, 2000);
	expect_fail(resolve(fx, "broken.test"), MXRES_TEMPFAIL, "SERVFAIL");
	expect_fail(resolve(fx, "refused.test"), MXRES_TEMPFAIL, "REFUSED");
}

static void
test_timeout(void **state)
{
	struct fx *fx = *state;
	double t0 = now_s();

	resolver(fx, 200);
	expect_fail(resolve(fx, "slow.test"), MXRES_TEMPFAIL, "timeout");
	/* Two tries of 200 ms, the second one doubled by c-ares. */
	assert_true(now_s() - t0 < 3.0);
	assert_int_equal(queries(fx, "slow.test MX"), 2);
}

static void
test_server_unreachable(void **state)
{
	struct fx *fx = *state;
	char err[256];

	server_stop(fx);
	/* Nothing listens there any more: refused or timed out, temporary. */
	fx->r = mxres_new(fx->base, fx->servers, SMTP_PORT, 300, err, sizeof err);
	assert_non_null(fx->r);
	assert_int_equal(resolve(fx, "example.test")->status, MXRES_TEMPFAIL);
}

static void
test_exchanger_without_address(void **state)
{
	struct fx *fx = *state;
	const struct result *res;

	resolver(fx, 2000);
	res = resolve(fx, "partial.test");
	assert_int_equal(res->status, MXRES_OK);
	assert_int_equal(res->nhosts, 1);
	expect_host(&res->hosts[0], "mx2.example.test", 20, "127.0.0.2");

	expect_fail(resolve(fx, "noaddr.test"), MXRES_PERMFAIL, "no address for any MX host");
	/* One exchanger permanently without address, one failing for now. */
	expect_fail(resolve(fx, "tempaddr.test"), MXRES_TEMPFAIL, "broken.test: DNS server failure");
}

static void
test_unusable_exchangers(void **state)
{
	struct fx *fx = *state;
	const struct result *res;

	resolver(fx, 2000);
	/* An address where a name must be, localhost, "." among others. */
	res = resolve(fx, "odd.test");
	assert_int_equal(res->status, MXRES_OK);
	assert_int_equal(res->nhosts, 1);
	expect_host(&res->hosts[0], "mx2.example.test", 20, "127.0.0.2");
	expect_fail(resolve(fx, "oddonly.test"), MXRES_PERMFAIL, "no address for any MX host");
	assert_int_equal(queries(fx, "127.0.0.1 A"), 0);
	assert_int_equal(queries(fx, "localhost A"), 0);
}

static void
test_big_answer_over_tcp(void **state)
{
	struct fx *fx = *state;
	const struct result *res;
	char *log;
	int i, n = 0;

	resolver(fx, 2000);
	res = resolve(fx, "big.test");
	assert_int_equal(res->status, MXRES_OK);
	/* Every exchanger has the same address: listed once, for the best. */
	assert_int_equal(res->nhosts, 1);
	expect_host(&res->hosts[0], "exchanger-number-39.big.test", 61, "127.0.0.5");
	/* Asked twice: over UDP (truncated), then over TCP. */
	assert_int_equal(queries(fx, "big.test MX"), 2);
	/* The 32 best exchangers only: 39 down to 8. */
	log = read_file(fx->logf);
	for (i = 0; i < BIG_MX; i++) {
		char q[64];

		snprintf(q, sizeof q, "exchanger-number-%02d.big.test A\n", i);
		if (strstr(log, q) != NULL) {
			n++;
			assert_true(i >= BIG_MX - 32);
		}
	}
	free(log);
	assert_int_equal(n, 32);
}

static void
test_equal_preference(void **state)
{
	struct fx *fx = *state;
	const struct result *res;
	int i, first_mx1 = 0, first_mx2 = 0;

	/* A fresh resolver each time: no cache, a new shuffle. */
	for (i = 0; i < 40 && (first_mx1 == 0 || first_mx2 == 0); i++) {
		fx->ncalls = 0;
		resolver(fx, 2000);
		res = resolve(fx, "equal.test");
		assert_int_equal(res->status, MXRES_OK);
		assert_int_equal(res->nhosts, 4);
		expect_host(&res->hosts[0], "mx3.example.test", 5, "127.0.0.4");
		if (strcmp(res->hosts[1].name, "mx1.example.test") == 0) {
			first_mx1++;
			expect_hosts_any_order(res, 1, 2, "mx1.example.test", 10, mx1_addrs);
			expect_host(&res->hosts[3], "mx2.example.test", 10, "127.0.0.2");
		} else {
			first_mx2++;
			expect_host(&res->hosts[1], "mx2.example.test", 10, "127.0.0.2");
			expect_hosts_any_order(res, 2, 2, "mx1.example.test", 10, mx1_addrs);
		}
		mxres_free(fx->r);
		fx->r = NULL;
	}
	assert_true(first_mx1 > 0 && first_mx2 > 0);
}

static void
test_duplicates(void **state)
{
	struct fx *fx = *state;
	const struct result *res;

	resolver(fx, 2000);
	res = resolve(fx, "dup.test");
	assert_int_equal(res->status, MXRES_OK);
	/* The same name twice, and an alias of it: its addresses once. */
	assert_int_equal(res->nhosts, 2);
	expect_hosts_any_order(res, 0, 2, "mx1.example.test", 10, mx1_addrs);
}

static void
test_invalid_domain(void **state)
{
	struct fx *fx = *state;

	resolver(fx, 2000);
	expect_fail(resolve(fx, ""), MXRES_PERMFAIL, "invalid domain name");
	expect_fail(resolve(fx, "a..b"), MXRES_PERMFAIL, "invalid domain name");
	expect_fail(resolve(fx, "bad domain.test"), MXRES_PERMFAIL, "invalid domain name");
	expect_fail(resolve(fx, "[127.0.0.1]"), MXRES_PERMFAIL, "invalid domain name");
	assert_int_equal(queries(fx, "a..b MX"), 0);
}

static void
test_cache(void **state)
{
	struct fx *fx = *state;
	const struct result *res;

	resolver(fx, 2000);
	assert_int_equal(resolve(fx, "example.test")->status, MXRES_OK);
	assert_int_equal(queries(fx, "example.test MX"), 1);
	assert_int_equal(queries(fx, "mx1.example.test A"), 1);

	/* Within the TTL, in any case, with a final dot: no question asked,
	 * and still never answered from inside mxres_lookup. */
	res = resolve(fx, "EXAMPLE.Test.");
	assert_int_equal(res->status, MXRES_OK);
	assert_int_equal(res->nhosts, 3);
	expect_host(&res->hosts[2], "mx2.example.test", 20, "127.0.0.2");
	assert_int_equal(queries(fx, "example.test MX"), 1);
	assert_int_equal(queries(fx, "mx1.example.test A"), 1);
	assert_int_equal(queries(fx, "mx2.example.test A"), 1);

	/* Negative answers too. */
	expect_fail(resolve(fx, "nowhere.test"), MXRES_PERMFAIL, "domain does not exist");
	expect_fail(resolve(fx, "nowhere.test"), MXRES_PERMFAIL, "domain does not exist");
	assert_int_equal(queries(fx, "nowhere.test MX"), 1);
	expect_fail(resolve(fx, "nullmx.test"), MXRES_PERMFAIL, "null MX");
	expect_fail(resolve(fx, "nullmx.test"), MXRES_PERMFAIL, "null MX");
	assert_int_equal(queries(fx, "nullmx.test MX"), 1);
}

static void
test_concurrent_share(void **state)
{
	struct fx *fx = *state;
	int i;

	resolver(fx, 2000);
	lookup(fx, "nomx.test");
	lookup(fx, "NoMX.test");
	lookup(fx, "nomx.test.");
	assert_int_equal(fx->ncalls, 0);
	run_until(fx, 3);
	for (i = 0; i < 3; i++) {
		assert_int_equal(fx->res[i].status, MXRES_OK);
		assert_int_equal(fx->res[i].nhosts, 2);
	}
	assert_int_equal(queries(fx, "nomx.test MX"), 1);
	assert_int_equal(queries(fx, "nomx.test A"), 1);
}

static void
test_ttl_expiry(void **state)
{
	struct fx *fx = *state;

	resolver(fx, 2000);
	assert_int_equal(resolve(fx, "short.test")->status, MXRES_OK);
	assert_int_equal(resolve(fx, "short.test")->status, MXRES_OK);
	assert_int_equal(queries(fx, "short.test MX"), 1);
	/* The MX TTL (1 s) is the smallest of the records involved. */
	run_for(fx, 1300);
	assert_int_equal(resolve(fx, "short.test")->status, MXRES_OK);
	assert_int_equal(queries(fx, "short.test MX"), 2);
	/* The exchanger's own answer (TTL 300) is not cached apart. */
	assert_int_equal(queries(fx, "mx1.example.test A"), 2);
}

static void
test_negative_ttl_from_soa(void **state)
{
	struct fx *fx = *state;

	/* The zone's SOA says 1 s for negative answers (RFC 2308). */
	resolver(fx, 2000);
	expect_fail(resolve(fx, "gone.soa.test"), MXRES_PERMFAIL, "domain does not exist");
	expect_fail(resolve(fx, "gone.soa.test"), MXRES_PERMFAIL, "domain does not exist");
	assert_int_equal(queries(fx, "gone.soa.test MX"), 1);
	run_for(fx, 1300);
	expect_fail(resolve(fx, "gone.soa.test"), MXRES_PERMFAIL, "domain does not exist");
	assert_int_equal(queries(fx, "gone.soa.test MX"), 2);
}

static void
test_free_pending(void **state)
{
	struct fx *fx = *state;
	int i;

	resolver(fx, 2000);
	assert_int_equal(resolve(fx, "example.test")->status, MXRES_OK);
	/* One lookup waits for the server, one for the loop (cached). */
	lookup(fx, "slow.test");
	lookup(fx, "example.test");
	run_for(fx, 100);
	assert_int_equal(fx->ncalls, 2);	/* the cached one has run */
	lookup(fx, "example.test");
	assert_int_equal(fx->ncalls, 2);
	mxres_free(fx->r);
	fx->r = NULL;
	assert_int_equal(fx->ncalls, 4);
	expect_fail(&fx->res[2], MXRES_TEMPFAIL, "resolver shut down");
	expect_fail(&fx->res[3], MXRES_TEMPFAIL, "resolver shut down");
	assert_int_equal(queries(fx, "slow.test MX"), 1);

	/* Shut down while the exchangers' addresses are asked for. */
	fx->ncalls = 0;
	resolver(fx, 2000);
	lookup(fx, "slowaddr.test");
	for (i = 0; i < 250 && (queries(fx, "slow.test A") == 0 || queries(fx, "slow.test AAAA") == 0); i++)
		run_for(fx, 20);
	assert_int_equal(queries(fx, "slowaddr.test MX"), 1);
	assert_int_equal(fx->ncalls, 0);
	mxres_free(fx->r);
	fx->r = NULL;
	assert_int_equal(fx->ncalls, 1);
	expect_fail(&fx->res[0], MXRES_TEMPFAIL, "resolver shut down");
	/* Nothing left on the loop. */
	run_for(fx, 50);
	assert_int_equal(fx->ncalls, 1);
}

static void
test_free_in_callback(void **state)
{
	struct fx *fx = *state;

	resolver(fx, 2000);
	assert_int_equal(resolve(fx, "example.test")->status, MXRES_OK);
	fx->ncalls = 0;
	fx->free_in_cb = true;
	lookup(fx, "example.test");	/* answered from the cache: frees the resolver */
	lookup(fx, "example.test");	/* then shut down */
	lookup(fx, "slow.test");	/* shut down */
	run_until(fx, 3);
	assert_null(fx->r);
	assert_int_equal(fx->res[0].status, MXRES_OK);
	expect_fail(&fx->res[1], MXRES_TEMPFAIL, "resolver shut down");
	expect_fail(&fx->res[2], MXRES_TEMPFAIL, "resolver shut down");
	run_for(fx, 50);
	assert_int_equal(fx->ncalls, 3);
}

static void
test_lookup_in_callback(void **state)
{
	struct fx *fx = *state;

	resolver(fx, 2000);
	fx->again_in_cb = "nomx.test";
	lookup(fx, "example.test");
	run_until(fx, 2);
	assert_int_equal(fx->res[0].status, MXRES_OK);
	assert_int_equal(fx->res[1].status, MXRES_OK);
	assert_string_equal(fx->res[1].hosts[0].name, "nomx.test");
}

static void
test_new_errors(void **state)
{
	struct fx *fx = *state;
	char err[256] = "";

	assert_null(mxres_new(fx->base, "127.0.0.1:53", 0, 1000, err, sizeof err));
	assert_non_null(strstr(err, "port"));
	err[0] = '\0';
	assert_null(mxres_new(fx->base, "not a server list", 25, 1000, err, sizeof err));
	assert_non_null(strstr(err, "DNS server list"));
	/* The system's configuration. */
	fx->r = mxres_new(fx->base, NULL, 25, 1000, err, sizeof err);
	assert_non_null(fx->r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mx_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_implicit_mx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_null_mx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nxdomain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_servfail_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_server_unreachable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exchanger_without_address, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unusable_exchangers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_answer_over_tcp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_equal_preference, setup, teardown),
		cmocka_unit_test_setup_teardown(test_duplicates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_domain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_share, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ttl_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_negative_ttl_from_soa, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_in_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lookup_in_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_new_errors, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
