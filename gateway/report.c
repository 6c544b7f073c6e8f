/*
 * report: completion reports (report.h).
 *
 * The report goes where the job's receipt went (the submitter's address
 * the submission came from); a job without a receipt (receipts were off
 * when it came in) goes to its submitter's first configured address. The
 * counts are per destination and per final state of the deliveries; the
 * failures, with their last reply, go in a CSV attachment.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conf/config.h"
#include "core/log.h"
#include "gateway/report.h"
#include "intake/receipt.h"
#include "routes/routes.h"
#include "sql/store.h"

struct report_ctx {
	const struct hato_config *cf;
	char to[321], domain[256], dest[128];
};

static const struct submitter_conf *
submitter_named(const struct hato_config *cf, const char *name)
{
	for (size_t i = 0; i < cf->nsubmitters; i++)
		if (strcmp(cf->submitters[i].name, name) == 0)
			return &cf->submitters[i];
	return NULL;
}

/* Per destination: the states counted into the report's columns. */
static struct report_dest *
dest_rows(const struct store_report_data *d, size_t *n)
{
	struct report_dest *v = calloc(d->ncounts ? d->ncounts : 1, sizeof(*v));

	if (!v)
		fatalx("report: out of memory");
	*n = 0;
	for (size_t i = 0; i < d->ncounts; i++) {
		const struct store_report_count *c = &d->counts[i];
		struct report_dest *r = *n && strcmp(v[*n - 1].dest, c->dest) == 0 ? &v[*n - 1] : NULL;
		if (!r) {
			r = &v[(*n)++];
			r->dest = c->dest;
		}
		if (strcmp(c->state, "sent") == 0)
			r->sent += c->n;
		else if (strcmp(c->state, "failed") == 0)
			r->failed += c->n;
		else if (strcmp(c->state, "suppressed") == 0)
			r->suppressed += c->n;
		else if (strcmp(c->state, "cancelled") == 0)
			r->cancelled += c->n;
		else
			r->other += c->n;
	}
	return v;
}

static int
compose(void *arg, const struct store_report_data *d, struct store_notice_new *out)
{
	struct report_ctx *c = arg;
	const struct submitter_conf *who;
	struct report_failure *f;
	struct report_dest *dests;
	struct report r = { 0 };
	const struct route *rt;
	const char *at;
	char *msg;
	size_t nd;

	if (*d->receipt_to)
		snprintf(c->to, sizeof(c->to), "%s", d->receipt_to);
	else if ((who = submitter_named(c->cf, d->submitter)) && who->naddr)
		snprintf(c->to, sizeof(c->to), "%s", who->addresses[0]);
	else {
		log_notice("report job=%llu status=skipped reason=\"submitter %s is not configured\"",
		    (unsigned long long)d->job_id, d->submitter);
		return -1;
	}
	at = strrchr(c->to, '@');
	snprintf(c->domain, sizeof(c->domain), "%s", at ? at + 1 : "");
	c->dest[0] = '\0';
	if ((rt = routes_match(c->cf->routes, c->domain)))
		routes_dest_key(rt, c->domain, c->dest, sizeof(c->dest));
	if (!(f = calloc(d->nfailures ? d->nfailures : 1, sizeof(*f))))
		fatalx("report: out of memory");
	for (size_t i = 0; i < d->nfailures; i++)
		f[i] = (struct report_failure){ d->failures[i].address, d->failures[i].code,
		    d->failures[i].status, d->failures[i].text };
	dests = dest_rows(d, &nd);
	r.h.from = *c->cf->receipt_from ? c->cf->receipt_from : c->cf->submit_address;
	r.h.to = c->to;
	r.h.domain = c->cf->hostname;
	r.h.in_reply_to = *d->source_msgid ? d->source_msgid : NULL;
	r.job_id = d->job_id;
	r.subject = d->subject;
	r.state = d->state;
	r.dests = dests;
	r.ndests = nd;
	r.failures = f;
	r.nfailures = d->nfailures;
	msg = report_compose(&r, time(NULL), NULL);
	free(f);
	free(dests);
	if (!msg) {
		log_warn("report job=%llu status=error reason=\"the report cannot be written\"",
		    (unsigned long long)d->job_id);
		return -1;
	}
	*out = (struct store_notice_new){
		.submitter = d->submitter, .from_addr = r.h.from, .subject = "[Hato] report",
		.to = c->to, .domain = c->domain, .dest = c->dest, .msg = msg, .parent_id = d->job_id,
	};
	return 0;
}

void
report_sweep(struct store *st, const struct hato_config *cf)
{
	uint64_t ids[REPORT_BATCH], notice;
	struct report_ctx c = { .cf = cf };
	size_t n = 0;
	bool made;
	int rc;

	if ((rc = store_unreported_jobs(st, ids, REPORT_BATCH, &n)) != STORE_OK) {
		log_warn("report status=deferred reason=\"%s\"", store_error(st));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if ((rc = store_job_report(st, ids[i], compose, &c, &made, &notice)) != STORE_OK) {
			log_warn("report job=%llu status=deferred reason=\"%s\"", (unsigned long long)ids[i],
			    store_error(st));
			return;
		}
		if (made)
			log_info("report job=%llu notice=%llu to=%s status=queued", (unsigned long long)ids[i],
			    (unsigned long long)notice, c.to);
	}
}
