/*
 * answer: receipts of intake (answer.h).
 *
 *	answer_allowed	the loop guard
 *	answer_init, answer_add, answer_free
 *	answer_attach	the receipt, committed with the job
 *	answer_refuse	an error receipt, committed alone
 *
 * The receipt is routed like any address (the route table of intake's
 * configuration; the gateway re-routes on reload) and sent by the gateway
 * with an empty envelope sender. A suppressed submitter address still
 * gets its receipt, with a log line: the submitter asked for this mail.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "conf/config.h"
#include "core/log.h"
#include "intake/answer.h"
#include "mail/mime.h"
#include "routes/routes.h"
#include "sql/store.h"

static bool
header_is(const struct mime_msg *m, const char *name, const char *const *values)
{
	for (size_t i = 0; i < m->nheaders; i++) {
		if (strcasecmp(m->headers[i].name, name) != 0)
			continue;
		const char *v = m->headers[i].value;
		while (*v == ' ' || *v == '\t')
			v++;
		if (!values)
			return true;
		for (size_t k = 0; values[k]; k++)
			if (strncasecmp(v, values[k], strlen(values[k])) == 0)
				return true;
	}
	return false;
}

bool
answer_allowed(const struct mime_msg *m, const char *env_from, const char **why)
{
	static const char *const bulk[] = { "bulk", "junk", "list", NULL };

	if (!env_from || !*env_from) {
		*why = "empty envelope sender (a bounce or an auto-reply)";
		return false;
	}
	for (size_t i = 0; i < m->nheaders; i++) {
		const char *v = m->headers[i].value;
		if (strcasecmp(m->headers[i].name, "Auto-Submitted") != 0)
			continue;
		while (*v == ' ' || *v == '\t')
			v++;
		/* "no" is the only value a person's own mail may carry. */
		if (strncasecmp(v, "no", 2) != 0 || (v[2] && v[2] != ' ' && v[2] != ';' && v[2] != '(')) {
			*why = "Auto-Submitted";
			return false;
		}
	}
	if (header_is(m, "Precedence", bulk)) {
		*why = "Precedence bulk, junk or list";
		return false;
	}
	if (header_is(m, "List-Id", NULL)) {
		*why = "List-Id (mailing-list mail)";
		return false;
	}
	if (header_is(m, "X-Auto-Response-Suppress", NULL)) {
		*why = "X-Auto-Response-Suppress";
		return false;
	}
	*why = NULL;
	return true;
}

void
answer_init(struct answer *a, const struct hato_config *cf, const struct submitter_conf *who,
    const struct mime_msg *m, const char *to)
{
	const char *at = strrchr(to, '@');
	const struct route *rt;

	memset(a, 0, sizeof(*a));
	a->cf = cf;
	a->who = who;
	a->m = m;
	a->last = SIZE_MAX;
	snprintf(a->to, sizeof(a->to), "%s", to);
	snprintf(a->to_domain, sizeof(a->to_domain), "%s", at ? at + 1 : "");
	for (char *p = a->to_domain; *p; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
	if (*a->to_domain && (rt = routes_match(cf->routes, a->to_domain)))
		routes_dest_key(rt, a->to_domain, a->to_dest, sizeof(a->to_dest));
}

static struct answer_dest *
dest_of(struct answer *a, const char *dest)
{
	if (a->last < a->ndests && strcmp(a->dests[a->last].dest, dest) == 0)
		return &a->dests[a->last];
	for (a->last = 0; a->last < a->ndests; a->last++)
		if (strcmp(a->dests[a->last].dest, dest) == 0)
			return &a->dests[a->last];
	if (a->ndests == a->capdests) {
		a->capdests = a->capdests ? a->capdests * 2 : 8;
		if (!(a->dests = realloc(a->dests, a->capdests * sizeof(*a->dests))))
			fatalx("intake: out of memory");
	}
	memset(&a->dests[a->ndests], 0, sizeof(*a->dests));
	snprintf(a->dests[a->ndests].dest, sizeof(a->dests[0].dest), "%s", dest);
	a->last = a->ndests;
	return &a->dests[a->ndests++];
}

void
answer_add(struct answer *a, const char *dest, int outcome, const char *address,
    const char *reason, const char *source, size_t line)
{
	dest_of(a, dest && *dest ? dest : "(not routed)")->n[outcome]++;
	a->total[outcome]++;
	if (outcome == RO_ACCEPTED)
		return;
	if (a->nrejects == a->caprejects) {
		a->caprejects = a->caprejects ? a->caprejects * 2 : 64;
		if (!(a->rejects = realloc(a->rejects, a->caprejects * sizeof(*a->rejects))))
			fatalx("intake: out of memory");
	}
	a->rejects[a->nrejects++] = (struct receipt_reject){
		.address = address, .outcome = outcome, .reason = reason, .source = source, .line = line,
	};
}

static const char *
receipt_from(const struct hato_config *cf)
{
	return *cf->receipt_from ? cf->receipt_from : cf->submit_address;
}

static void
fill_receipt(const struct answer *a, struct receipt *r, uint64_t job_id, const char *error)
{
	memset(r, 0, sizeof(*r));
	r->h.from = receipt_from(a->cf);
	r->h.to = a->to;
	r->h.domain = a->cf->hostname;
	r->h.in_reply_to = a->m->message_id;
	r->job_id = job_id;
	r->error = error;
	r->subject = a->subject;
	r->dm_from = a->dm_from;
	memcpy(r->total, a->total, sizeof(r->total));
	r->rejects = a->rejects;
	r->nrejects = a->nrejects;
	r->send_at = a->send_at;
	r->dry_run = a->dry_run;
}

/* answer_dest and receipt_dest differ (a buffer, a pointer): copied. */
static struct receipt_dest *
dest_view(const struct answer *a)
{
	struct receipt_dest *v = calloc(a->ndests ? a->ndests : 1, sizeof(*v));

	if (!v)
		fatalx("intake: out of memory");
	for (size_t i = 0; i < a->ndests; i++) {
		v[i].dest = a->dests[i].dest;
		memcpy(v[i].n, a->dests[i].n, sizeof(v[i].n));
	}
	return v;
}

static char *
receipt_msg(void *arg, uint64_t job_id, const struct store_job_new *j)
{
	struct answer *a = arg;
	struct receipt r;
	struct receipt_dest *v = dest_view(a);
	char *msg;

	fill_receipt(a, &r, job_id, NULL);
	r.dests = v;
	r.ndests = a->ndests;
	if (j->held && j->confirm_code) {
		r.confirm_code = j->confirm_code;
		r.hold_expires = j->hold_expires;
	}
	msg = receipt_compose(&r, time(NULL), NULL);
	free(v);
	return msg;
}

static void
check_suppressed(struct answer *a, struct store *st)
{
	const char *addr = a->to;
	char why[1][17];

	if (store_suppressed(st, &addr, 1, why) == STORE_OK && why[0][0])
		log_notice("intake submitter=%s address=%s status=receipt-to-suppressed reason=%s"
		    " (the receipt is sent all the same)", a->who->name, a->to, why[0]);
}

void
answer_attach(struct answer *a, struct store *st, struct store_job_new *j)
{
	check_suppressed(a, st);
	if (!(a->tmpl = calloc(1, sizeof(*a->tmpl))))
		fatalx("intake: out of memory");
	*a->tmpl = (struct store_notice_new){
		.submitter = a->who->name, .from_addr = receipt_from(a->cf), .subject = "[Hato] receipt",
		.to = a->to, .domain = a->to_domain, .dest = a->to_dest,
	};
	j->receipt = a->tmpl;
	j->receipt_msg = receipt_msg;
	j->receipt_arg = a;
}

int
answer_refuse(struct answer *a, struct store *st, const char *why)
{
	struct store_notice_new n = {
		.submitter = a->who->name, .from_addr = receipt_from(a->cf), .subject = "[Hato] refused",
		.to = a->to, .domain = a->to_domain, .dest = a->to_dest,
	};
	struct receipt r;
	struct receipt_dest *v = dest_view(a);
	uint64_t id = 0;
	char *msg;
	int rc;

	fill_receipt(a, &r, 0, why);
	r.dests = v;
	r.ndests = a->ndests;
	msg = receipt_compose(&r, time(NULL), NULL);
	free(v);
	if (!msg) {
		log_warn("intake submitter=%s status=error reason=\"the error receipt cannot be written\"", a->who->name);
		return STORE_ERROR;
	}
	check_suppressed(a, st);
	n.msg = msg;
	if ((rc = store_notice_create(st, &n, &id)) == STORE_OK)
		log_info("intake submitter=%s notice=%llu to=%s status=refused-receipt", a->who->name,
		    (unsigned long long)id, a->to);
	free(msg);
	return rc;
}

void
answer_free(struct answer *a)
{
	free(a->dests);
	free(a->rejects);
	free(a->tmpl);
	memset(a, 0, sizeof(*a));
}
