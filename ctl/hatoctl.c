/*
 * hatoctl: the operators' command-line tool.
 *
 *   hatoctl [--config FILE] db init|migrate
 *   hatoctl [--config FILE] jobs
 *   hatoctl [--config FILE] job show N
 *   hatoctl [--config FILE] queues
 *   hatoctl [--config FILE] routes check|test ADDRESS
 *   hatoctl token
 *
 * Exit codes: 0 done, 1 the thing asked about is not there or not right
 * (no such job, a bad address), 2 usage, 69 the database is unavailable,
 * 78 the configuration is wrong.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "conf/config.h"
#include "core/log.h"
#include "mail/address.h"
#include "routes/routes.h"
#include "sql/store.h"

enum { EX_OK = 0, EX_NOTFOUND = 1, EX_USAGE_ = 2, EX_UNAVAILABLE_ = 69, EX_CONFIG_ = 78 };

static const char usage_text[] =
    "usage: hatoctl [--config FILE] COMMAND\n"
    "  db init              create the database and schema (idempotent)\n"
    "  db migrate           apply the migrations not applied yet\n"
    "  jobs                 list jobs with their delivery counts\n"
    "  job show N           one job and each recipient's state and last reply\n"
    "  queues               per destination: queued, leased, deferred, rate, suspension, last reply\n"
    "  routes check         load the configuration and route table, report errors\n"
    "  routes test ADDRESS  which rule and destination an address gets\n"
    "  token                make a submitter token and its token_sha256 line\n";

static int
usage(void)
{
	fputs(usage_text, stderr);
	return EX_USAGE_;
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

static int
print_job(void *arg, const struct store_job_row *r)
{
	(void)arg;
	printf("%-6" PRIu64 " %-12s %-8s %6u %6u %8u %6u %6u  %s\n", r->id, r->submitter, r->state,
	    r->total, r->queued, r->deferred, r->sent, r->failed, r->subject);
	return 0;
}

static int
cmd_jobs(struct store *st)
{
	printf("%-6s %-12s %-8s %6s %6s %8s %6s %6s  %s\n", "JOB", "SUBMITTER", "STATE",
	    "TOTAL", "QUEUED", "DEFERRED", "SENT", "FAILED", "SUBJECT");
	if (store_jobs_each(st, print_job, NULL) != STORE_OK)
		return db_failed(st, "jobs");
	return EX_OK;
}

static int
print_delivery(void *arg, const struct store_delivery_row *r)
{
	char code[8] = "-";

	(void)arg;
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
	if (strncmp(dest, "relay:", 6) == 0 && (r = config_relay(cf, dest + 6)))
		lim = &r->lim;
	else if (strncmp(dest, "pace:", 5) == 0 && (p = config_pace(cf, dest + 5)))
		lim = &p->lim;
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
		printf("%s: ok, %zu rules\n", cf->routes_path, n);
		return EX_OK;
	}
	if (argc != 2 || strcmp(argv[0], "test") != 0)
		return usage();
	if (addr_parse(argv[1], strlen(argv[1]), &a, &why) < 0) {
		fprintf(stderr, "hatoctl: %s: %s\n", argv[1], why);
		return EX_NOTFOUND;
	}
	addr_format(&a, shown, sizeof(shown));
	if (!(r = routes_match(cf->routes, a.domain))) {
		printf("%s: no rule matches %s\n", shown, a.domain);
		return EX_NOTFOUND;
	}
	printf("address: %s\nrule: %s:%zu: %s\ndestination: %s\n", shown, r->file, r->line,
	    r->pattern, route_dest(cf, r, a.domain, dest, sizeof(dest)));
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
		{ NULL, 0, NULL, 0 },
	};
	const char *path = config_default_path();
	struct hato_config *cf;
	struct store *st;
	char err[1024];
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'h': fputs(usage_text, stdout); return EX_OK;
		default: return usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		return usage();
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
	else if (strcmp(argv[0], "job") == 0)
		rc = cmd_job(st, argc - 1, argv + 1);
	else if (strcmp(argv[0], "queues") == 0 && argc == 1)
		rc = cmd_queues(st, cf);
	else if (strcmp(argv[0], "routes") == 0)
		rc = cmd_routes(cf, argc - 1, argv + 1);
	else
		rc = usage();
	store_free(st);
	config_free(cf);
	return rc;
}
