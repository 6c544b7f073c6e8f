/*
 * hatoctl: the operators' command-line tool.
 *
 *   hatoctl [--config FILE] [--json] COMMAND ...
 *   hatoctl help [COMMAND]
 *   hatoctl [--config FILE] db init|migrate
 *   hatoctl [--config FILE] jobs
 *   hatoctl [--config FILE] job show N
 *   hatoctl [--config FILE] job approve|pause|resume|cancel N
 *   hatoctl [--config FILE] job reschedule N TIME
 *   hatoctl [--config FILE] queues
 *   hatoctl [--config FILE] log [--job N] [--address A] [--limit N] [--follow]
 *   hatoctl [--config FILE] trace ADDRESS|MESSAGE-ID
 *   hatoctl [--config FILE] doctor [--ip ADDR] [--domain D]
 *   hatoctl [--config FILE] routes check|test ADDRESS|reload
 *   hatoctl [--config FILE] suppress list|export
 *   hatoctl [--config FILE] suppress add ADDRESS [--reason manual|unknown-user|unsubscribed]
 *   hatoctl [--config FILE] suppress remove ADDRESS
 *   hatoctl [--config FILE] report cleaning [--since YYYY-MM-DD]
 *   hatoctl token
 *
 * export and report write CSV (RFC 4180) to stdout, with a header line;
 * with --json every listing is one JSON document instead (see ctl/out.c).
 *
 * Exit codes: 0 done, 1 the thing asked about is not there or not right
 * (no such job, a bad address, an address that is not suppressed), 2
 * usage, 69 the database is unavailable, 78 the configuration is wrong.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "conf/config.h"
#include "core/log.h"
#include "ctl/doctor.h"
#include "ctl/jobctl.h"
#include "ctl/out.h"
#include "ctl/sendlog.h"
#include "mail/address.h"
#include "routes/routes.h"
#include "sql/store.h"

enum {
	EX_OK = CTL_OK, EX_NOTFOUND = CTL_NOTFOUND, EX_USAGE_ = CTL_USAGE,
	EX_UNAVAILABLE_ = CTL_UNAVAILABLE, EX_CONFIG_ = CTL_CONFIG
};

/* One entry per command: `hatoctl help` lists them all, `help CMD` the
 * entries of one command with their details. */
static const struct help {
	const char *cmd, *synopsis, *text;
} helps[] = {
	{ "db", "db init|migrate", "create the database and schema (idempotent), or apply the migrations not applied yet" },
	{ "jobs", "jobs", "jobs with their counts; on a terminal a progress bar per job\n"
	    "(sent #, failed x, waiting .), the send rate of the last minute and the time left" },
	{ "job", "job show N", "one job and each recipient's state and last reply" },
	{ "job", "job approve N", "release a job held for approval: its deliveries become due (a Rate or\n"
	    "Send-By spread kept, from its Send-At or now, whichever is later)" },
	{ "job", "job pause N", "hold back a job's waiting deliveries; those in flight finish" },
	{ "job", "job resume N", "give a paused job's deliveries back their due times (never before now)" },
	{ "job", "job cancel N", "cancel a job's waiting, held and paused deliveries; the job ends 'cancelled'" },
	{ "job", "job reschedule N TIME", "a new start (as Send-At: YYYY-MM-DD HH:MM[:SS] in [intake] timezone,\n"
	    "or ISO 8601 with an offset); the deliveries not attempted yet move with it,\n"
	    "keeping their spread. Each job command prints one line saying what it did;\n"
	    "exit 1 with the reason when the job's state does not allow it (\"job 12 is done\")" },
	{ "queues", "queues", "per destination: queued, leased, deferred, pace, rate now, suspension, last reply" },
	{ "log", "log [--job N] [--address A] [--limit N] [--follow]",
	    "the send log, one line per attempt: time, job, delivery, address, destination,\n"
	    "relay host, outcome, queue time, reply; the last N rows (100). --follow then\n"
	    "shows new attempts as they happen until interrupted (with --json: one object a line)" },
	{ "trace", "trace ADDRESS|MESSAGE-ID", "every job, attempt, bounce, failure and suppression of an address,\n"
	    "of a message the gateway sent (its Message-ID names the delivery), or of a\n"
	    "submission (its Message-ID); exit 1 when nothing is known" },
	{ "doctor", "doctor [--ip ADDR] [--domain D]", "check the sending setup in DNS: PTR and forward match of the IP,\n"
	    "MX and SPF of the envelope domain (does SPF allow the IP?), the DKIM key of\n"
	    "each [dkim] selector, DMARC of the From domain, [doctor] blocklists;\n"
	    "a pass/warn/fail table, exit 1 when a check fails" },
	{ "routes", "routes check", "load the configuration and route table, report errors" },
	{ "routes", "routes test ADDRESS", "which rule and destination an address gets" },
	{ "routes", "routes reload", "make the running gateway read its configuration and route table again:\n"
	    "SIGHUP to the process in [gateway] pid_file (check first: a table that does\n"
	    "not load is refused by the gateway, which keeps the old one)" },
	{ "suppress", "suppress list", "suppressed addresses: reason and since when (UTC)" },
	{ "suppress", "suppress add ADDRESS [--reason manual|unknown-user|unsubscribed]",
	    "suppress an address; its waiting deliveries are cancelled" },
	{ "suppress", "suppress remove ADDRESS", "lift a suppression (exit 1 when it was not suppressed)" },
	{ "suppress", "suppress export", "the suppression list as CSV" },
	{ "report", "report cleaning [--since YYYY-MM-DD]", "CSV of addresses that failed as unknown (per address:\n"
	    "carrier, failures, days, last reply), since a UTC day" },
	{ "token", "token", "make a submitter token and its token_sha256 line" },
	{ "help", "help [COMMAND]", "this text, or one command's" },
};

static const char usage_head[] =
    "usage: hatoctl [--config FILE] [--json] COMMAND [ARGS]\n"
    "  --config FILE   the configuration (default $HATO_CONFIG or /etc/hato/hato.ini)\n"
    "  --json          listings as JSON (strings UTF-8, escaped per RFC 8259)\n";
static const char usage_tail[] =
    "exit status: 0 done; 1 not found, not right, or a check failed; 2 usage;\n"
    "69 the database (or DNS) is unavailable; 78 the configuration does not load\n";

static void
help_print(FILE *f, const char *only)
{
	bool any = false;

	fputs(usage_head, f);
	for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
		const char *t;
		if (only && strcmp(only, helps[i].cmd) != 0)
			continue;
		any = true;
		fprintf(f, "  %s\n", helps[i].synopsis);
		for (t = helps[i].text; *t;) {
			size_t n = strcspn(t, "\n");
			bool more = t[n] == '\n' && t[n + 1];

			/* The overview shows the first line, marked when there is more. */
			fprintf(f, "      %.*s%s\n", (int)n, t, !only && more ? " ..." : "");
			t += n;
			if (*t)
				t++;
			if (!only)
				break;
		}
	}
	if (only && !any)
		fprintf(f, "hatoctl: no command '%s'\n", only);
	fputs(usage_tail, f);
}

int
ctl_usage(void)
{
	help_print(stderr, NULL);
	return EX_USAGE_;
}

static int
usage(void)
{
	return ctl_usage();
}

static int
db_failed(struct store *st, const char *what)
{
	fprintf(stderr, "hatoctl: %s: %s\n", what, store_error(st));
	return EX_UNAVAILABLE_;
}

static int
cmd_db(struct store *st, int argc, char **argv)
{
	int from, to;

	if (argc != 1 || (strcmp(argv[0], "init") != 0 && strcmp(argv[0], "migrate") != 0))
		return usage();
	if (store_migrate(st, strcmp(argv[0], "init") == 0, &from, &to) != STORE_OK)
		return db_failed(st, argv[0]);
	if (from == to)
		printf("schema is at version %d; nothing to do\n", to);
	else
		printf("schema migrated from version %d to %d\n", from, to);
	return EX_OK;
}

static void
job_json(const struct store_job_row *r)
{
	j_u64("id", r->id);
	j_str("submitter", r->submitter);
	j_str("subject", r->subject);
	j_str("state", r->state);
	j_str("created", r->created);
	j_int("total", r->total);
	j_int("queued", r->queued);
	j_int("deferred", r->deferred);
	j_int("sent", r->sent);
	j_int("failed", r->failed);
}

#define RATE_WINDOW 60	/* s: the rate of a job is that of the last minute */

/* The rows are collected first: the rate of each is another statement,
 * which cannot run while the job list is being fetched. */
struct jobs_ctx {
	struct store_job_row *rows;
	size_t n, cap;
};

static int
collect_job_row(void *arg, const struct store_job_row *r)
{
	struct jobs_ctx *c = arg;

	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 32;
		struct store_job_row *p = realloc(c->rows, cap * sizeof(*p));
		if (!p)
			return 1;
		c->rows = p;
		c->cap = cap;
	}
	c->rows[c->n++] = *r;
	return 0;
}

/* Sent per second over the last minute, and the time the rest takes at
 * that rate (-1: unknown). */
static int
job_rate(struct store *st, const struct store_job_row *r, double *rate, double *left)
{
	unsigned n = 0;
	unsigned waiting = r->total - r->sent - r->failed;

	*rate = 0;
	*left = waiting ? -1 : 0;
	if (waiting == 0 || strcmp(r->state, "done") == 0)
		return STORE_OK;
	if (store_job_sent_since(st, r->id, RATE_WINDOW, &n) != STORE_OK)
		return STORE_ERROR;
	*rate = n / (double)RATE_WINDOW;
	if (n)
		*left = waiting / *rate;
	return STORE_OK;
}

static void
print_job_line(const struct store_job_row *r, double rate, double left, bool bars)
{
	char bar[40], eta[16];

	if (!bars) {
		printf("%-6" PRIu64 " %-12s %-8s %6u %6u %8u %6u %6u %7.1f  %s\n", r->id, r->submitter,
		    r->state, r->total, r->queued, r->deferred, r->sent, r->failed, rate, r->subject);
		return;
	}
	out_bar(bar, sizeof(bar), r->sent, r->failed, r->total, 24);
	out_duration(eta, sizeof(eta), left);
	printf("%-6" PRIu64 " %-8s %s %u/%u sent, %u failed, %u queued  %.1f/s  left %s  %s\n", r->id,
	    r->state, bar, r->sent, r->total, r->failed, r->total - r->sent - r->failed, rate, eta,
	    r->subject);
}

static int
cmd_jobs(struct store *st)
{
	struct jobs_ctx c = { 0 };
	bool bars = !out_json() && out_tty();
	double rate, left;
	int rc = EX_OK;

	if (store_jobs_each(st, collect_job_row, &c) != STORE_OK) {
		free(c.rows);
		return db_failed(st, "jobs");
	}
	if (out_json())
		j_array(NULL);
	else if (!bars)
		printf("%-6s %-12s %-8s %6s %6s %8s %6s %6s %7s  %s\n", "JOB", "SUBMITTER", "STATE",
		    "TOTAL", "QUEUED", "DEFERRED", "SENT", "FAILED", "RATE/S", "SUBJECT");
	for (size_t i = 0; i < c.n && rc == EX_OK; i++) {
		if (job_rate(st, &c.rows[i], &rate, &left) != STORE_OK) {
			rc = db_failed(st, "jobs");
			break;
		}
		if (out_json()) {
			j_object(NULL);
			job_json(&c.rows[i]);
			j_num("rate_per_second", rate);
			if (left >= 0)
				j_num("seconds_left", left);
			else
				j_null("seconds_left");
			j_object_end();
		} else
			print_job_line(&c.rows[i], rate, left, bars);
	}
	if (out_json() && rc == EX_OK)
		j_array_end();
	free(c.rows);
	return rc;
}

static int
print_delivery(void *arg, const struct store_delivery_row *r)
{
	char code[8] = "-";

	(void)arg;
	if (out_json()) {
		j_object(NULL);
		j_u64("id", r->id);
		j_str("address", r->address);
		j_str("state", r->state);
		j_int("attempts", r->attempts);
		if (r->code >= 0)
			j_int("code", r->code);
		else
			j_null("code");
		j_str("status", r->status);
		j_str("text", r->text);
		j_str("updated", r->updated);
		j_object_end();
		return 0;
	}
	if (r->code >= 0)
		snprintf(code, sizeof(code), "%d", r->code);
	printf("%-10" PRIu64 " %-40s %-9s %8u %4s %-7s %s\n", r->id, r->address, r->state,
	    r->attempts, code, *r->status ? r->status : "-", *r->text ? r->text : "");
	return 0;
}

static int
cmd_job(struct store *st, int argc, char **argv)
{
	struct store_job_row row;
	uint64_t id;
	char *end;
	bool found;

	if (argc != 2 || strcmp(argv[0], "show") != 0)
		return usage();
	id = strtoull(argv[1], &end, 10);
	if (!*argv[1] || *end) {
		fprintf(stderr, "hatoctl: '%s' is not a job number\n", argv[1]);
		return EX_USAGE_;
	}
	if (store_job_row_get(st, id, &row, &found) != STORE_OK)
		return db_failed(st, "job show");
	if (!found) {
		fprintf(stderr, "hatoctl: no job %" PRIu64 "\n", id);
		return EX_NOTFOUND;
	}
	if (out_json()) {
		j_object(NULL);
		job_json(&row);
		j_array("deliveries");
		if (store_deliveries_each(st, id, print_delivery, NULL) != STORE_OK)
			return db_failed(st, "job show");
		j_array_end();
		j_object_end();
		return EX_OK;
	}
	printf("job %" PRIu64 "\nsubmitter: %s\nsubject: %s\nstate: %s\ncreated: %s UTC\n"
	    "recipients: %u (queued %u, deferred %u, sent %u, failed %u)\n\n",
	    row.id, row.submitter, row.subject, row.state, row.created, row.total,
	    row.queued, row.deferred, row.sent, row.failed);
	printf("%-10s %-40s %-9s %8s %4s %-7s %s\n", "DELIVERY", "ADDRESS", "STATE", "ATTEMPTS",
	    "CODE", "STATUS", "LAST REPLY");
	if (store_deliveries_each(st, id, print_delivery, NULL) != STORE_OK)
		return db_failed(st, "job show");
	return EX_OK;
}

/* The configured pace of a destination key, as "N/interval" or "-". */
static void
configured_rate(const struct hato_config *cf, const char *dest, char *buf, size_t len, double *per_s)
{
	const struct limits *lim = NULL;
	const struct relay_conf *r;
	const struct pace_conf *p;

	*per_s = 0;
	config_dest(cf, dest, &r, &p);
	lim = r ? &r->lim : p ? &p->lim : NULL;
	if (!lim || !lim->messages || !lim->interval_ms) {
		snprintf(buf, len, "-");
		return;
	}
	*per_s = lim->messages * 1000.0 / (double)lim->interval_ms;
	snprintf(buf, len, "%u/%llums", lim->messages, (unsigned long long)lim->interval_ms);
}

struct queues_ctx {
	const struct hato_config *cf;
};

static int
print_queue(void *arg, const struct store_queue_row *r)
{
	struct queues_ctx *qc = arg;
	char conf[64], now[32];
	double per_s;

	configured_rate(qc->cf, r->dest, conf, sizeof(conf), &per_s);
	if (out_json()) {
		j_object(NULL);
		j_str("destination", r->dest);
		j_int("queued", r->queued);
		j_int("leased", r->leased);
		j_int("deferred", r->deferred);
		j_str("pace", conf);
		if (per_s > 0)
			j_num("rate_per_second", per_s * r->factor);
		else
			j_null("rate_per_second");
		j_num("factor", r->factor);
		if (*r->suspended_until)
			j_str("suspended_until", r->suspended_until);
		else
			j_null("suspended_until");
		j_str("reason", r->reason);
		j_str("last_reply", r->last_reply);
		j_object_end();
		return 0;
	}
	if (per_s > 0)
		snprintf(now, sizeof(now), "%.2f/s", per_s * r->factor);
	else
		snprintf(now, sizeof(now), "-");
	printf("%-28s %7u %7u %8u %-14s %-10s %-19s %s\n", r->dest, r->queued, r->leased, r->deferred,
	    conf, now, *r->suspended_until ? r->suspended_until : "-", r->last_reply);
	return 0;
}

static int
cmd_queues(struct store *st, const struct hato_config *cf)
{
	struct queues_ctx qc = { cf };

	if (out_json()) {
		j_array(NULL);
		if (store_queues_each(st, print_queue, &qc) != STORE_OK)
			return db_failed(st, "queues");
		j_array_end();
		return EX_OK;
	}
	printf("%-28s %7s %7s %8s %-14s %-10s %-19s %s\n", "DESTINATION", "QUEUED", "LEASED",
	    "DEFERRED", "PACE", "RATE NOW", "SUSPENDED UNTIL", "LAST REPLY");
	if (store_queues_each(st, print_queue, &qc) != STORE_OK)
		return db_failed(st, "queues");
	return EX_OK;
}

static const char *
route_dest(const struct hato_config *cf, const struct route *r, const char *domain, char *buf, size_t len)
{
	const struct relay_conf *rel;
	const struct pace_conf *p;

	switch (r->kind) {
	case ROUTE_RELAY:
		rel = config_relay(cf, r->name);
		snprintf(buf, len, "relay:%s (%s port %u)", r->name, rel->host, rel->port);
		break;
	case ROUTE_PACE:
		p = config_pace(cf, r->name);
		if (*p->relay)
			snprintf(buf, len, "pace:%s (%u per %llu ms, through relay %s)", r->name,
			    p->lim.messages, (unsigned long long)p->lim.interval_ms, p->relay);
		else
			snprintf(buf, len, "pace:%s (%u per %llu ms, MX hosts of %s)", r->name,
			    p->lim.messages, (unsigned long long)p->lim.interval_ms, p->mx_domain);
		break;
	case ROUTE_MX:
		snprintf(buf, len, "mx:%s", domain);
		break;
	}
	return buf;
}

/*
 * routes reload: SIGHUP to the gateway whose pid [gateway] pid_file holds.
 * The gateway reads the file again itself and refuses a table that does
 * not load, so a signal is all a reload needs; the table is checked here
 * first only to say so at once.
 */
static int
routes_reload(const struct hato_config *cf)
{
	FILE *f;
	long pid = 0;

	if (!*cf->pid_file) {
		fprintf(stderr, "hatoctl: [gateway] pid_file is not set: send SIGHUP to hato-gateway"
		    " yourself (systemctl reload hato-gateway)\n");
		return EX_CONFIG_;
	}
	if (!(f = fopen(cf->pid_file, "r"))) {
		fprintf(stderr, "hatoctl: %s: %s: is hato-gateway running?\n", cf->pid_file, strerror(errno));
		return EX_NOTFOUND;
	}
	if (fscanf(f, "%ld", &pid) != 1 || pid <= 1) {
		fclose(f);
		fprintf(stderr, "hatoctl: %s: no process id in it\n", cf->pid_file);
		return EX_NOTFOUND;
	}
	fclose(f);
	if (kill((pid_t)pid, SIGHUP) < 0) {
		fprintf(stderr, "hatoctl: SIGHUP to %ld (from %s): %s\n", pid, cf->pid_file, strerror(errno));
		return EX_NOTFOUND;
	}
	if (out_json()) {
		j_object(NULL);
		j_int("pid", pid);
		j_str("signal", "SIGHUP");
		j_object_end();
	} else
		printf("hato-gateway %ld: SIGHUP sent; it logs \"reload\" or why it refused the files\n", pid);
	return EX_OK;
}

static int
cmd_routes(const struct hato_config *cf, int argc, char **argv)
{
	const struct route *r;
	struct mail_addr a;
	const char *why;
	char dest[400], shown[ADDR_MAX + 8];

	if (argc == 1 && strcmp(argv[0], "check") == 0) {
		size_t n = 0;
		while (routes_at(cf->routes, n))
			n++;
		if (out_json()) {
			j_object(NULL);
			j_str("routes", cf->routes_path);
			j_bool("ok", true);
			j_int("rules", (long long)n);
			j_object_end();
		} else
			printf("%s: ok, %zu rules\n", cf->routes_path, n);
		return EX_OK;
	}
	if (argc == 1 && strcmp(argv[0], "reload") == 0)
		return routes_reload(cf);
	if (argc != 2 || strcmp(argv[0], "test") != 0)
		return usage();
	if (addr_parse(argv[1], strlen(argv[1]), &a, &why) < 0) {
		fprintf(stderr, "hatoctl: %s: %s\n", argv[1], why);
		return EX_NOTFOUND;
	}
	addr_format(&a, shown, sizeof(shown));
	r = routes_match(cf->routes, a.domain);
	if (out_json()) {
		j_object(NULL);
		j_str("address", shown);
		j_bool("matched", r != NULL);
		if (r) {
			j_str("file", r->file);
			j_int("line", (long long)r->line);
			j_str("pattern", r->pattern);
			j_str("destination", route_dest(cf, r, a.domain, dest, sizeof(dest)));
			if (routes_dest_key(r, a.domain, dest, sizeof(dest)))
				j_str("key", dest);
		}
		j_object_end();
		return r ? EX_OK : EX_NOTFOUND;
	}
	if (!r) {
		printf("%s: no rule matches %s\n", shown, a.domain);
		return EX_NOTFOUND;
	}
	printf("address: %s\nrule: %s:%zu: %s\ndestination: %s\n", shown, r->file, r->line,
	    r->pattern, route_dest(cf, r, a.domain, dest, sizeof(dest)));
	return EX_OK;
}

/* One CSV field (RFC 4180): quoted when it holds a comma, a quote or a
 * line break. */
static void
csv_field(const char *s, bool last)
{
	if (strpbrk(s, ",\"\r\n")) {
		putchar('"');
		for (; *s; s++) {
			if (*s == '"')
				putchar('"');
			putchar(*s);
		}
		putchar('"');
	} else
		fputs(s, stdout);
	fputs(last ? "\r\n" : ",", stdout);
}

static int
print_suppression(void *arg, const struct store_suppression_row *r)
{
	(void)arg;
	if (out_json()) {
		j_object(NULL);
		j_str("address", r->address);
		j_str("reason", r->reason);
		j_str("since", r->created);
		j_u64("delivery", r->delivery_id);
		j_str("last_reply", r->last_reply);
		j_object_end();
		return 0;
	}
	printf("%-40s %-13s %s\n", r->address, r->reason, r->created);
	return 0;
}

static int
export_suppression(void *arg, const struct store_suppression_row *r)
{
	char id[24] = "";

	(void)arg;
	if (r->delivery_id)
		snprintf(id, sizeof(id), "%" PRIu64, r->delivery_id);
	csv_field(r->address, false);
	csv_field(r->reason, false);
	csv_field(r->created, false);
	csv_field(id, false);
	csv_field(r->last_reply, true);
	return 0;
}

static int
suppress_add(struct store *st, const struct hato_config *cf, int argc, char **argv)
{
	static const char *reasons[] = { STORE_SUPPRESS_MANUAL, STORE_SUPPRESS_UNKNOWN, STORE_SUPPRESS_UNSUB };
	const char *reason = STORE_SUPPRESS_MANUAL, *address = NULL, *v;
	char addr[ADDR_MAX + 1];
	size_t cancelled;
	bool added, known = false;

	for (int i = 1; i < argc; i++) {
		if ((v = ctl_option_value(argc, argv, &i, "--reason")))
			reason = v;
		else if (!address && argv[i][0] != '-')
			address = argv[i];
		else
			return usage();
	}
	if (!address)
		return usage();
	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		known |= strcmp(reason, reasons[i]) == 0;
	if (!known) {
		fprintf(stderr, "hatoctl: reason '%s': use manual, unknown-user or unsubscribed\n", reason);
		return EX_USAGE_;
	}
	if (ctl_canonical_address(address, addr, sizeof(addr)) < 0)
		return EX_NOTFOUND;
	if (store_suppress(st, cf->node, addr, reason, &added, &cancelled) != STORE_OK)
		return db_failed(st, "suppress add");
	if (added)
		printf("%s: suppressed (%s); %zu waiting deliveries cancelled\n", addr, reason, cancelled);
	else
		printf("%s: suppressed already (the reason stays); %zu waiting deliveries cancelled\n",
		    addr, cancelled);
	return EX_OK;
}

static int
suppress_remove(struct store *st, int argc, char **argv)
{
	char addr[ADDR_MAX + 1];
	bool removed;

	if (argc != 2)
		return usage();
	if (ctl_canonical_address(argv[1], addr, sizeof(addr)) < 0)
		return EX_NOTFOUND;
	if (store_unsuppress(st, addr, &removed) != STORE_OK)
		return db_failed(st, "suppress remove");
	if (!removed) {
		fprintf(stderr, "hatoctl: %s is not suppressed\n", addr);
		return EX_NOTFOUND;
	}
	printf("%s: no longer suppressed\n", addr);
	return EX_OK;
}

static int
cmd_suppress(struct store *st, const struct hato_config *cf, int argc, char **argv)
{
	if (argc == 1 && strcmp(argv[0], "list") == 0) {
		if (out_json())
			j_array(NULL);
		else
			printf("%-40s %-13s %s\n", "ADDRESS", "REASON", "SINCE (UTC)");
		if (store_suppressions_each(st, print_suppression, NULL) != STORE_OK)
			return db_failed(st, "suppress list");
		if (out_json())
			j_array_end();
		return EX_OK;
	}
	if (argc == 1 && strcmp(argv[0], "export") == 0) {
		fputs("address,reason,since,delivery,last_reply\r\n", stdout);
		if (store_suppressions_each(st, export_suppression, NULL) != STORE_OK)
			return db_failed(st, "suppress export");
		return EX_OK;
	}
	if (argc >= 1 && strcmp(argv[0], "add") == 0)
		return suppress_add(st, cf, argc, argv);
	if (argc >= 1 && strcmp(argv[0], "remove") == 0)
		return suppress_remove(st, argc, argv);
	return usage();
}

/* The carrier of an address as the route table sees it: its destination
 * ("relay:docomo", "pace:au", "mx:example.com"), or its domain. */
static void
carrier_of(const struct hato_config *cf, const char *addr, char *buf, size_t size)
{
	const char *at = strrchr(addr, '@'), *domain = at ? at + 1 : "";
	const struct route *r = routes_match(cf->routes, domain);

	if (!r || routes_dest_key(r, domain, buf, size) == 0)
		snprintf(buf, size, "%s", domain);
}

static int
print_cleaning(void *arg, const struct store_cleaning_row *r)
{
	const struct hato_config *cf = arg;
	char carrier[300], n[16];

	carrier_of(cf, r->address, carrier, sizeof(carrier));
	if (out_json()) {
		j_object(NULL);
		j_str("address", r->address);
		j_str("carrier", carrier);
		j_int("failures", r->failures);
		j_int("days", r->days);
		j_str("last_reply", r->last_reply);
		j_str("last_at", r->last_at);
		j_object_end();
		return 0;
	}
	csv_field(r->address, false);
	csv_field(carrier, false);
	snprintf(n, sizeof(n), "%u", r->failures);
	csv_field(n, false);
	snprintf(n, sizeof(n), "%u", r->days);
	csv_field(n, false);
	csv_field(r->last_reply, true);
	return 0;
}

/* "YYYY-MM-DD", a real day. */
static bool
valid_day(const char *s)
{
	struct tm tm = { 0 };
	int y, m, d, n = 0;

	if (strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &n) != 3 || n != 10 ||
	    m < 1 || m > 12 || d < 1 || d > 31)
		return false;
	tm.tm_year = y - 1900;
	tm.tm_mon = m - 1;
	tm.tm_mday = d;
	tm.tm_hour = 12;
	timegm(&tm);
	return tm.tm_mday == d && tm.tm_mon == m - 1;
}

static int
cmd_report(struct store *st, const struct hato_config *cf, int argc, char **argv)
{
	const char *since = NULL, *v;

	if (argc < 1 || strcmp(argv[0], "cleaning") != 0)
		return usage();
	for (int i = 1; i < argc; i++) {
		if (!(v = ctl_option_value(argc, argv, &i, "--since")))
			return usage();
		since = v;
	}
	if (since && !valid_day(since)) {
		fprintf(stderr, "hatoctl: --since '%s': expected a day as YYYY-MM-DD\n", since);
		return EX_USAGE_;
	}
	if (out_json())
		j_array(NULL);
	else
		fputs("address,carrier,failures,days,last_reply\r\n", stdout);
	if (store_cleaning_each(st, since, print_cleaning, (void *)cf) != STORE_OK)
		return db_failed(st, "report cleaning");
	if (out_json())
		j_array_end();
	return EX_OK;
}

static int
cmd_token(void)
{
	unsigned char raw[24], md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	char tok[sizeof(raw) * 2 + 1];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return fprintf(stderr, "hatoctl: no randomness\n"), EX_UNAVAILABLE_;
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(tok + 2 * i, 3, "%02x", raw[i]);
	EVP_Digest(tok, strlen(tok), md, &mdlen, EVP_sha256(), NULL);
	printf("token (give it to the submitter, for the Token: line): %s\n", tok);
	printf("token_sha256 = ");
	for (unsigned i = 0; i < mdlen; i++)
		printf("%02x", md[i]);
	printf("\n");
	return EX_OK;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = config_default_path();
	struct hato_config *cf;
	struct store *st;
	char err[1024];
	bool json = false;
	int ch, rc, n;

	while ((ch = getopt_long(argc, argv, "+c:hj", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'h': help_print(stdout, NULL); return EX_OK;
		case 'j': json = true; break;
		default: return usage();
		}
	}
	argc -= optind;
	argv += optind;
	/* --json may also follow the command: "hatoctl jobs --json". */
	n = 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else
			argv[n++] = argv[i];
	}
	argc = n;
	out_init(json);
	if (argc < 1)
		return usage();
	if (strcmp(argv[0], "help") == 0) {
		if (argc > 2)
			return usage();
		help_print(stdout, argc == 2 ? argv[1] : NULL);
		if (argc == 2) {
			for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++)
				if (strcmp(helps[i].cmd, argv[1]) == 0)
					return EX_OK;
			return EX_USAGE_;
		}
		return EX_OK;
	}
	if (strcmp(argv[0], "token") == 0)
		return argc == 1 ? cmd_token() : usage();
	log_init("hatoctl", false, 0);
	if (config_load(path, &cf, err, sizeof(err)) < 0) {
		fprintf(stderr, "hatoctl: %s\n", err);
		return EX_CONFIG_;
	}
	st = store_new(cf);
	if (strcmp(argv[0], "db") == 0)
		rc = cmd_db(st, argc - 1, argv + 1);
	else if (strcmp(argv[0], "jobs") == 0 && argc == 1)
		rc = cmd_jobs(st);
	else if (strcmp(argv[0], "job") == 0 && argc >= 2 && jobctl_verb(argv[1]))
		rc = jobctl_cmd(st, cf, argc - 1, argv + 1);
	else if (strcmp(argv[0], "job") == 0)
		rc = cmd_job(st, argc - 1, argv + 1);
	else if (strcmp(argv[0], "queues") == 0 && argc == 1)
		rc = cmd_queues(st, cf);
	else if (strcmp(argv[0], "routes") == 0)
		rc = cmd_routes(cf, argc - 1, argv + 1);
	else if (strcmp(argv[0], "suppress") == 0)
		rc = cmd_suppress(st, cf, argc - 1, argv + 1);
	else if (strcmp(argv[0], "report") == 0)
		rc = cmd_report(st, cf, argc - 1, argv + 1);
	else if (strcmp(argv[0], "log") == 0)
		rc = cmd_log(st, argc - 1, argv + 1);
	else if (strcmp(argv[0], "trace") == 0)
		rc = cmd_trace(st, argc - 1, argv + 1);
	else if (strcmp(argv[0], "doctor") == 0)
		rc = cmd_doctor(cf, argc - 1, argv + 1);
	else
		rc = usage();
	store_free(st);
	config_free(cf);
	return rc;
}
