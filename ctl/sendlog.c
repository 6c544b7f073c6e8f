/*
 * sendlog: hatoctl log and hatoctl trace.
 *
 *   log [--job N] [--address A] [--limit N] [--follow]
 *	The send log, one line per attempt (or bounce, unsubscribe,
 *	cancellation): time, job, delivery, address, destination, relay
 *	host, outcome, reply, queue time. Without --follow, the last --limit
 *	rows (100). --follow then polls for rows with a higher id (the
 *	primary key, so each poll is one range read) every FOLLOW_MS and
 *	prints them as they come, until SIGINT, SIGTERM or a closed pipe.
 *	With --json: an array, or with --follow one object per line.
 *
 *   trace ADDRESS|MESSAGE-ID
 *	Everything about an address (its deliveries in every job, their
 *	attempts and bounces, its unknown-user failures, its suppression),
 *	or about a message: a Message-ID the gateway gave an outgoing
 *	message (<JOB.DELIVERY.RANDOM@host>, see gateway/compose.c) names
 *	its delivery; any other is looked up as a submission's Message-ID.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf/config.h"
#include "ctl/out.h"
#include "ctl/sendlog.h"
#include "mail/address.h"
#include "sql/store.h"

#define FOLLOW_MS	250	/* a new attempt shows within a second */
#define TAIL_DEFAULT	100
#define TRACE_MAX	1000	/* rows of each kind shown by trace */

static volatile sig_atomic_t stop_now;

static void
on_signal(int sig)
{
	(void)sig;
	stop_now = 1;
}

/* ---- log ---- */

struct log_ctx {
	struct store_log_row *rows;	/* the tail, to print oldest first */
	size_t n, cap;
	uint64_t last_id;
	bool broken;			/* stdout is gone (EPIPE) */
};

static void
log_header(void)
{
	if (!out_json())
		printf("%-23s %6s %9s %-32s %-18s %-18s %-12s %8s  %s\n", "TIME (UTC)", "JOB", "DELIVERY",
		    "ADDRESS", "DESTINATION", "RELAY HOST", "OUTCOME", "QUEUED", "REPLY");
}

static void
log_print(const struct store_log_row *r)
{
	char code[8] = "", q[16];

	if (r->code >= 0)
		snprintf(code, sizeof(code), "%d", r->code);
	if (out_json()) {
		j_object(NULL);
		j_u64("id", r->id);
		j_str("at", r->at);
		j_u64("job", r->job_id);
		j_u64("delivery", r->delivery_id);
		j_str("address", r->address);
		j_str("destination", r->dest);
		j_str("host", r->host);
		j_str("outcome", r->outcome);
		j_int("attempt", r->attempt);
		if (r->code >= 0)
			j_int("code", r->code);
		else
			j_null("code");
		j_str("status", r->status);
		j_str("text", r->text);
		j_str("class", r->bclass);
		j_num("queue_seconds", r->queue_s);
		j_object_end();
		return;
	}
	out_duration(q, sizeof(q), r->queue_s);
	printf("%-23.23s %6" PRIu64 " %9" PRIu64 " %-32s %-18s %-18s %-12s %8s  %s%s%s%s%s\n", r->at,
	    r->job_id, r->delivery_id, r->address, *r->dest ? r->dest : "-", *r->host ? r->host : "-",
	    r->outcome, q, code, *code ? " " : "", r->status, *r->status ? " " : "", r->text);
}

static int
log_collect(void *arg, const struct store_log_row *r)
{
	struct log_ctx *c = arg;

	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		struct store_log_row *p = realloc(c->rows, cap * sizeof(*p));
		if (!p)
			return 1;
		c->rows = p;
		c->cap = cap;
	}
	c->rows[c->n++] = *r;
	return 0;
}

static int
log_stream(void *arg, const struct store_log_row *r)
{
	struct log_ctx *c = arg;

	c->last_id = r->id;
	log_print(r);
	if (fflush(stdout) == EOF) {
		c->broken = true;
		return 1;
	}
	return 0;
}

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	/* A signal cuts the sleep short; stop_now says whether to go on. */
	nanosleep(&ts, NULL);
}

static int
log_follow(struct store *st, struct store_log_filter *f, struct log_ctx *c)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	f->limit = 500;
	while (!stop_now && !c->broken) {
		f->after_id = c->last_id;
		if (store_log_each(st, f, false, log_stream, c) != STORE_OK)
			return stop_now ? CTL_OK : ctl_db_failed(st, "log");
		if (!stop_now && !c->broken)
			sleep_ms(FOLLOW_MS);
	}
	return CTL_OK;
}

int
cmd_log(struct store *st, int argc, char **argv)
{
	struct store_log_filter f = { .limit = TAIL_DEFAULT };
	struct log_ctx c = { 0 };
	char addr[ADDR_MAX + 1];
	bool follow = false;
	const char *v;
	uint64_t n;
	unsigned want;
	int rc = CTL_OK;

	for (int i = 0; i < argc; i++) {
		if ((v = ctl_option_value(argc, argv, &i, "--job"))) {
			if (ctl_parse_id(v, "job", &f.job_id) < 0)
				return CTL_USAGE;
		} else if ((v = ctl_option_value(argc, argv, &i, "--address"))) {
			if (ctl_canonical_address(v, addr, sizeof(addr)) < 0)
				return CTL_USAGE;
			f.address = addr;
		} else if ((v = ctl_option_value(argc, argv, &i, "--limit"))) {
			/* 0: none of the past, with --follow only what comes. */
			char *end;
			n = strtoull(v, &end, 10);
			if (!*v || *end || *v == '-' || n > 1000000) {
				fprintf(stderr, "hatoctl: --limit '%s': a number of rows, 0 to 1000000\n", v);
				return CTL_USAGE;
			}
			f.limit = (unsigned)n;
		} else if (strcmp(argv[i], "--follow") == 0 || strcmp(argv[i], "-f") == 0)
			follow = true;
		else
			return ctl_usage();
	}
	/* With --follow --limit 0, the newest row only marks where to start. */
	want = f.limit;
	if (follow && want == 0)
		f.limit = 1;
	if (store_log_each(st, &f, true, log_collect, &c) != STORE_OK) {
		free(c.rows);
		return ctl_db_failed(st, "log");
	}
	if (!follow || !out_json())
		log_header();
	if (out_json() && !follow)
		j_array(NULL);
	for (size_t i = c.n; i-- > 0;) {
		if (want)
			log_print(&c.rows[i]);
		c.last_id = c.rows[i].id > c.last_id ? c.rows[i].id : c.last_id;
	}
	if (out_json() && !follow)
		j_array_end();
	free(c.rows);
	c.rows = NULL;
	if (follow) {
		fflush(stdout);
		rc = log_follow(st, &f, &c);
	}
	return rc;
}

/* ---- trace ---- */

struct trace_ctx {
	struct store *st;
	char addrs[8][ADDR_MAX + 1];	/* the addresses met, for their failures */
	size_t naddr;
	size_t found;
};

static int
trace_delivery(void *arg, const struct store_trace_delivery *d)
{
	struct trace_ctx *t = arg;
	char code[8] = "-";
	size_t i;

	if (t->found++ >= TRACE_MAX)
		return 1;
	for (i = 0; i < t->naddr && strcmp(t->addrs[i], d->address) != 0; i++)
		;
	if (i == t->naddr && t->naddr < sizeof(t->addrs) / sizeof(t->addrs[0]))
		snprintf(t->addrs[t->naddr++], sizeof(t->addrs[0]), "%s", d->address);
	if (out_json()) {
		j_object(NULL);
		j_u64("delivery", d->id);
		j_u64("job", d->job_id);
		j_str("address", d->address);
		j_str("destination", d->dest);
		j_str("state", d->state);
		j_int("attempts", d->attempts);
		if (d->code >= 0)
			j_int("code", d->code);
		else
			j_null("code");
		j_str("status", d->status);
		j_str("text", d->text);
		j_str("created", d->created);
		j_str("updated", d->updated);
		j_str("submitter", d->submitter);
		j_str("subject", d->subject);
		j_str("source_message_id", d->source_msgid);
		j_object_end();
		return 0;
	}
	if (d->code >= 0)
		snprintf(code, sizeof(code), "%d", d->code);
	printf("delivery %" PRIu64 " of job %" PRIu64 " (%s, \"%s\"): %s to %s via %s, %u attempts,"
	    " created %s, last change %s; last reply %s %s %s\n", d->id, d->job_id, d->submitter,
	    d->subject, d->state, d->address, *d->dest ? d->dest : "-", d->attempts, d->created,
	    d->updated, code, d->status, d->text);
	return 0;
}

static int
trace_attempt(void *arg, const struct store_log_row *r)
{
	struct trace_ctx *t = arg;

	if (t->found++ >= TRACE_MAX)
		return 1;
	log_print(r);
	return 0;
}

static int
trace_failure(void *arg, const struct store_failure_row *r)
{
	struct trace_ctx *t = arg;

	t->found++;
	if (out_json()) {
		j_object(NULL);
		j_str("at", r->at);
		j_str("day", r->day);
		j_str("class", r->bclass);
		j_str("source", r->source);
		j_u64("delivery", r->delivery_id);
		j_str("reply", r->reply);
		j_object_end();
	} else
		printf("failure %s (day %s): %s from %s, delivery %" PRIu64 ": %s\n", r->at, r->day,
		    r->bclass, r->source, r->delivery_id, r->reply);
	return 0;
}

/* "<JOB.DELIVERY.HEX@host>" (brackets optional; HEX is 16 digits): the
 * delivery id, or 0. */
static uint64_t
gateway_msgid(const char *s)
{
	unsigned long long job, dlv;
	int h0 = 0, h1 = 0;

	if (*s == '<')
		s++;
	if (sscanf(s, "%llu.%llu.%n%*[0-9a-f]%n@", &job, &dlv, &h0, &h1) != 2 || h1 - h0 != 16 ||
	    s[h1] != '@' || dlv == 0)
		return 0;
	return (uint64_t)dlv;
}

struct job_ids {
	uint64_t id[16];
	size_t n;
};

static int
collect_job(void *arg, uint64_t id)
{
	struct job_ids *j = arg;

	if (j->n < sizeof(j->id) / sizeof(j->id[0]))
		j->id[j->n++] = id;
	return 0;
}

static int
trace_section(struct store *st, struct trace_ctx *t, const char *addr, uint64_t dlv, const struct job_ids *jobs)
{
	struct store_log_filter f = { .limit = TRACE_MAX, .address = addr, .delivery_id = dlv };

	if (out_json())
		j_array("deliveries");
	else
		printf("== deliveries\n");
	t->found = 0;
	if (addr || dlv) {
		if (store_trace_deliveries_each(st, addr, dlv, 0, trace_delivery, t) != STORE_OK)
			return -1;
	}
	for (size_t i = 0; jobs && i < jobs->n; i++)
		if (store_trace_deliveries_each(st, NULL, 0, jobs->id[i], trace_delivery, t) != STORE_OK)
			return -1;
	if (out_json())
		j_array_end();
	if (out_json())
		j_array("attempts");
	else
		printf("== attempts, bounces and other events\n");
	t->found = 0;
	if (addr || dlv) {
		if (store_log_each(st, &f, false, trace_attempt, t) != STORE_OK)
			return -1;
	}
	for (size_t i = 0; jobs && i < jobs->n; i++) {
		struct store_log_filter jf = { .limit = TRACE_MAX, .job_id = jobs->id[i] };
		if (store_log_each(st, &jf, false, trace_attempt, t) != STORE_OK)
			return -1;
	}
	if (out_json())
		j_array_end();
	return 0;
}

/* The failures and suppressions of the addresses met; -1 on a database
 * error, else how many there were. */
static int
trace_address_state(struct store *st, struct trace_ctx *t)
{
	int n;

	struct store_suppression_row sup;
	bool found;

	if (out_json())
		j_array("failures");
	else
		printf("== unknown-user failures\n");
	t->found = 0;
	for (size_t i = 0; i < t->naddr; i++)
		if (store_address_failures_each(st, t->addrs[i], trace_failure, t) != STORE_OK)
			return -1;
	n = (int)t->found;
	if (out_json())
		j_array_end();
	if (out_json())
		j_array("suppressions");
	else
		printf("== suppression\n");
	for (size_t i = 0; i < t->naddr; i++) {
		if (store_suppression_get(st, t->addrs[i], &sup, &found) != STORE_OK)
			return -1;
		if (!found)
			continue;
		n++;
		if (out_json()) {
			j_object(NULL);
			j_str("address", sup.address);
			j_str("reason", sup.reason);
			j_str("since", sup.created);
			j_u64("delivery", sup.delivery_id);
			j_str("last_reply", sup.last_reply);
			j_object_end();
		} else
			printf("%s suppressed since %s UTC (%s): %s\n", sup.address, sup.created, sup.reason,
			    sup.last_reply);
	}
	if (out_json())
		j_array_end();
	return n;
}

int
cmd_trace(struct store *st, int argc, char **argv)
{
	struct trace_ctx t = { .st = st };
	struct job_ids jobs = { .n = 0 };
	char addr[ADDR_MAX + 1];
	const char *what, *kind, *a = NULL;
	uint64_t dlv;
	size_t known;
	int n = 0;

	if (argc != 1)
		return ctl_usage();
	what = argv[0];
	if ((dlv = gateway_msgid(what)) != 0) {
		kind = "gateway-message-id";
	} else if (*what != '<' && strchr(what, '@') && ctl_canonical_address(what, addr, sizeof(addr)) == 0) {
		kind = "address";
		a = addr;
	} else
		kind = "submission-message-id";
	/* A submission's Message-ID may look like an address, or even like
	 * one of the gateway's: ask for it as well. */
	{
		char id[300];
		size_t l;
		snprintf(id, sizeof(id), "%s", *what == '<' ? what + 1 : what);
		if ((l = strlen(id)) > 0 && id[l - 1] == '>')
			id[l - 1] = '\0';
		if (store_jobs_by_msgid_each(st, id, collect_job, &jobs) != STORE_OK)
			return ctl_db_failed(st, "trace");
		if (jobs.n && !a)
			kind = "submission-message-id";
	}
	if (out_json()) {
		j_object(NULL);
		j_str("query", what);
		j_str("kind", kind);
		if (dlv)
			j_u64("delivery", dlv);
		j_array("jobs");
		for (size_t i = 0; i < jobs.n; i++)
			j_u64(NULL, jobs.id[i]);
		j_array_end();
	} else {
		printf("trace %s (%s)\n", what, kind);
		for (size_t i = 0; i < jobs.n; i++)
			printf("submission of job %" PRIu64 "\n", jobs.id[i]);
	}
	if (trace_section(st, &t, a, dlv, &jobs) < 0)
		return ctl_db_failed(st, "trace");
	known = t.naddr + jobs.n;
	if (a && t.naddr == 0)
		snprintf(t.addrs[t.naddr++], sizeof(t.addrs[0]), "%s", a);
	if ((a || dlv) && (n = trace_address_state(st, &t)) < 0)
		return ctl_db_failed(st, "trace");
	if (out_json())
		j_object_end();
	if (known == 0 && n == 0) {
		fprintf(stderr, "hatoctl: nothing known about %s\n", what);
		return CTL_NOTFOUND;
	}
	return CTL_OK;
}
