/*
 * intake: the submission pipeline behind the LMTP server.
 *
 * Three kinds of recipient are taken: the submit address, and at the bounce
 * domain the bounce+ and unsub+ addresses of mail Hato sent (feedback.c).
 * Each transaction is handled on one of the worker threads (each with its
 * own database connection), so a large list or a slow database never
 * stalls other LMTP sessions; each recipient gets its own reply. Replies
 * to a submission:
 *   250 2.0.0  job committed (and only then), with how many recipients
 *              were accepted, rejected, and skipped as suppressed;
 *   250 2.0.0  a retry of a mail already stored (same submitter, same
 *              Message-ID, within a day): the first job's number, and
 *              nothing new is stored;
 *   250 2.0.0  from an unknown sender: nothing is created and nothing is
 *              sent back (no backscatter); a log line says so. A refusal
 *              would make the MTA bounce to a possibly forged sender.
 *   250 2.0.0  automatic mail from a known sender (an auto-reply, a
 *              bounce, list mail: answer_allowed): dropped with a log
 *              line, never answered, so that nothing loops;
 *   250 2.0.0  a known submitter's mail that makes no job (authentication
 *              failed, unreadable control block, a From it may not use, no
 *              recipient left): an error receipt is committed instead
 *              (answer.c); with [intake] receipts = no, these are
 *              550 5.7.8, 550 5.6.0, 550 5.7.1 and 550 5.1.3 instead;
 *   451 4.3.0  the job store is unavailable: the MTA keeps the mail;
 *   552 5.3.4  too big (from the LMTP layer).
 * The receipt of a job is committed in the job's own transaction.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "conf/config.h"
#include "core/duration.h"
#include "core/strbuf.h"
#include "core/log.h"
#include "core/worker.h"
#include "intake/answer.h"
#include "intake/approval.h"
#include "intake/auth.h"
#include "intake/feedback.h"
#include "intake/intake.h"
#include "intake/lmtp.h"
#include "intake/rehearsal.h"
#include "intake/schedule.h"
#include "intake/submission.h"
#include "mail/mime.h"
#include "routes/routes.h"
#include "sql/store.h"

#define MAX_WORKERS 64
/* Attachments longer than this (encoded) stay in the mail until read. */
#define LIST_LAZY_MIN 65536

struct intake {
	struct event_base *base;
	const struct hato_config *cf;
	struct lmtp_server *lmtp;
	struct worker *workers[MAX_WORKERS];
	unsigned nworkers, next;
	void (*on_idle)(void *);
	void *idle_arg;
	char rcpt_refusal[400];
};

#define REPLY_MAX 512
/*
 * A mail whose Message-ID this submitter used in a job of the last day is
 * the MTA's retry after a lost 250 (intake died, or the connection did,
 * between the commit and the reply), not a new job: it gets the first
 * job's number. A day covers an MTA's retries after a short outage; a
 * submitter's mail client makes a new Message-ID for every new mail. Two
 * copies arriving at the same moment are not caught (no unique key), which
 * an MTA retrying a lost reply does not do.
 */
#define RETRY_WINDOW_S (24 * 3600)
/* Times a job is stored before a lock conflict is answered with 451. */
#define CONFLICT_TRIES 4

struct intake_task {
	struct intake *in;
	struct lmtp_session *sess;
	struct lmtp_txn *txn;
	char (*replies)[REPLY_MAX];	/* one per recipient */
};

int
intake_parse_send_at(const char *s, double *when, const char **why)
{
	struct tm tm = { 0 };
	int n = 0, sec = 0, oh = 0, om = 0;
	char sep, sign = 0;
	time_t t;

	if (sscanf(s, "%4d-%2d-%2d%c%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
	    &sep, &tm.tm_hour, &tm.tm_min, &n) != 6 || (sep != ' ' && sep != 'T')) {
		*why = "Send-At: expected YYYY-MM-DD HH:MM";
		return -1;
	}
	s += n;
	if (*s == ':' && sscanf(s, ":%2d%n", &sec, &n) == 1)
		s += n;
	while (*s == ' ')
		s++;
	if (*s == 'Z' || *s == 'z')
		sign = 'Z', s++;
	else if ((*s == '+' || *s == '-') && sscanf(s + 1, "%2d:%2d%n", &oh, &om, &n) == 2)
		sign = *s, s += 1 + n;
	while (*s == ' ')
		s++;
	if (*s || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || sec > 60 || oh > 23 || om > 59) {
		*why = "Send-At: not a valid date and time";
		return -1;
	}
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	tm.tm_sec = sec;
	if (sign) {
		long off = sign == 'Z' ? 0 : (long)(oh * 3600 + om * 60) * (sign == '+' ? 1 : -1);
		t = timegm(&tm) - off;
	} else {
		tm.tm_isdst = -1;
		t = mktime(&tm);
	}
	*when = (double)t;
	return 0;
}

/*
 * The accepted recipients are read from the submission as they are
 * needed, a chunk at a time, never copied whole: a list of a million
 * costs its packed entries and a bit each for the suppressed ones.
 */

/* The destination of a domain by the route table, looked up once per run
 * of the same domain. */
struct dest_cache {
	const struct hato_config *cf;
	const char *domain;
	char dest[128];
};

static const char *
dest_of(struct dest_cache *c, const char *domain)
{
	const struct route *rt;

	if (c->domain == NULL || strcmp(c->domain, domain) != 0) {
		c->dest[0] = '\0';
		if ((rt = routes_match(c->cf->routes, domain)))
			routes_dest_key(rt, domain, c->dest, sizeof(c->dest));
		c->domain = domain;
	}
	return c->dest;
}

/* The walk over the accepted recipients that are not suppressed. */
struct kept_walk {
	struct sub_iter it;
	const uint8_t *gone;	/* bit per accepted recipient: suppressed */
	size_t nth;		/* accepted recipients seen */
};

static void
kept_first(struct kept_walk *w, const struct submission *sub, const uint8_t *gone)
{
	sub_first(&w->it, sub);
	w->gone = gone;
	w->nth = 0;
}

static bool
kept_next(struct kept_walk *w, struct sub_rcpt *r)
{
	while (sub_next(&w->it, r)) {
		if (r->verdict != RCPT_ACCEPTED)
			continue;
		w->nth++;
		if (w->gone == NULL || !(w->gone[(w->nth - 1) / 8] & (1u << ((w->nth - 1) % 8))))
			return true;
	}
	return false;
}

/*
 * The suppressed addresses among the accepted: one lookup per chunk of
 * addresses. Their bits are set in *bits (one per accepted recipient),
 * their addresses go to *gone and their reasons to *reasons (grown as
 * needed), *ngone of them; the caller frees all three. Returns a STORE_
 * code.
 */
#define SUPP_LOOKUP 1024
static int
find_suppressed(struct store *st, const struct submission *sub, uint8_t **bits,
    const char ***gone, char (**reasons)[17], size_t *ngone)
{
	const char *addrs[SUPP_LOOKUP];
	char (*why)[17] = malloc(SUPP_LOOKUP * sizeof(*why));
	struct kept_walk w;
	struct sub_rcpt r;
	size_t k = 0, base = 0, cap = 0;
	bool more = true;
	int rc = STORE_OK;

	if (!why || !(*bits = calloc(sub->naccepted / 8 + 1, 1)))
		fatalx("intake: out of memory");
	*ngone = 0;
	kept_first(&w, sub, NULL);
	while (more && rc == STORE_OK) {
		if ((more = kept_next(&w, &r)))
			addrs[k++] = r.addr;
		if (k < SUPP_LOOKUP && more)
			continue;
		if (k > 0 && (rc = store_suppressed(st, addrs, k, why)) != STORE_OK)
			break;
		for (size_t j = 0; j < k; j++) {
			if (!why[j][0])
				continue;
			(*bits)[(base + j) / 8] |= (uint8_t)(1u << ((base + j) % 8));
			if (*ngone == cap) {
				cap = cap ? cap * 2 : 16;
				if (!(*gone = realloc(*gone, cap * sizeof(**gone))) ||
				    !(*reasons = realloc(*reasons, cap * sizeof(**reasons))))
					fatalx("intake: out of memory");
			}
			(*gone)[*ngone] = addrs[j];
			memcpy((*reasons)[*ngone], why[j], sizeof(why[j]));
			(*ngone)++;
		}
		base += k;
		k = 0;
	}
	free(why);
	return rc;
}

/* The rows of the job for store_job_create: the kept recipients up to the
 * quota, each with its destination and, for a spread job, its time. */
#define ROW_DESTS 1024
struct row_src {
	struct kept_walk w;
	struct dest_cache dc;
	size_t keep, given;
	double start, spacing;
	char (*dests)[128];	/* the chunk's distinct runs of destinations */
};

static size_t
row_next(void *arg, struct store_rcpt_new *rows, size_t max)
{
	struct row_src *src = arg;
	struct sub_rcpt r;
	size_t n = 0, nd = 0;
	const char *d;

	if (max > ROW_DESTS)
		max = ROW_DESTS;
	while (n < max && src->given < src->keep && kept_next(&src->w, &r)) {
		d = dest_of(&src->dc, r.domain);
		if (nd == 0 || strcmp(src->dests[nd - 1], d) != 0)
			memcpy(src->dests[nd++], d, sizeof(src->dests[0]));
		rows[n] = (struct store_rcpt_new){
			.address = r.addr, .domain = r.domain, .dest = src->dests[nd - 1],
			.at = src->spacing > 0 ? src->start + src->spacing * (double)src->given : 0,
		};
		n++;
		src->given++;
	}
	return n;
}

/* Approval and rehearsal, set on the job before it is stored. -1: no
 * randomness for a confirmation code. */
static int
job_extras(const struct hato_config *cf, const struct submitter_conf *who,
    const char *const *routes, size_t nroutes, struct store_job_new *j, struct rehearsal *rh,
    char *code)
{
	if (j->dry_run) {
		rehearsal_plan(cf, who, routes, nroutes, j->send_at, rh);
		j->rehearse = rh->copies;
		j->nrehearse = rh->n;
	}
	if (who->approval && approval_hold(cf, j, code) < 0)
		return -1;
	return 0;
}

/* What the reply adds for a held or rehearsal job (never the code: it is
 * the submitter's, sent in the receipt, not for the MTA's log). */
static void
job_extras_say(uint64_t job_id, const char *submitter, const struct store_job_new *j,
    const struct rehearsal *rh, char *reply, size_t replylen)
{
	size_t len = strlen(reply);

	if (j->dry_run && len < replylen) {
		len += (size_t)snprintf(reply + len, replylen - len,
		    "; rehearsal: %zu copies (%zu routes) to the rehearsal addresses, recipients not sent",
		    rh->n, rh->routes);
		log_info("intake job=%llu submitter=%s status=rehearsal copies=%zu routes=%zu",
		    (unsigned long long)job_id, submitter, rh->n, rh->routes);
	}
	if (j->held && len < replylen) {
		snprintf(reply + len, replylen - len, "; held for approval");
		log_info("intake job=%llu submitter=%s status=held expires_in=%.0fs",
		    (unsigned long long)job_id, submitter, j->hold_expires - (double)clock_wall_ms() / 1000);
	}
}

/* A known submitter's mail that makes no job: an error receipt and 250
 * (so that the MTA sends no bounce of its own), or with receipts off the
 * 5xx reply smtp. An error receipt that cannot be stored is a 451: the
 * MTA keeps the mail and tries again. */
static void
refuse(struct store *st, const struct hato_config *cf, struct answer *a, const char *smtp,
    const char *why, char *reply, size_t replylen)
{
	char q[400];

	log_info("intake submitter=%s status=refused reason=%s", a->who->name, log_quote(q, sizeof(q), why));
	if (!cf->receipts) {
		snprintf(reply, replylen, "%s %s", smtp, why);
		return;
	}
	if (answer_refuse(a, st, why) != STORE_OK) {
		log_warn("intake submitter=%s status=tempfail reason=\"%s\"", a->who->name, store_error(st));
		snprintf(reply, replylen, "451 4.3.0 job store unavailable, try again later");
		return;
	}
	snprintf(reply, replylen, "250 2.0.0 not accepted, error receipt sent: %s", why);
}

/* The start of today in the process's zone ([intake] timezone). */
static double
day_start(void)
{
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	tm.tm_isdst = -1;
	return (double)mktime(&tm);
}

/* The invalid and duplicate recipients of the parse, for the receipt. */
static void
add_unaccepted(struct answer *a, const struct submission *sub)
{
	struct sub_iter it;
	struct sub_rcpt r;

	for (sub_first(&it, sub); sub_next(&it, &r);) {
		if (r.verdict == RCPT_INVALID)
			answer_add(a, "", RO_INVALID, r.raw, r.reason, r.source, r.line);
		else if (r.verdict == RCPT_DUPLICATE)
			answer_add(a, "", RO_DUPLICATE, r.raw, "given before", r.source, r.line);
	}
}

/* The distinct routes of a dry run's recipients, in order of first
 * appearance: a list has few (a handful of carriers and MX domains). */
struct routes_seen {
	char (*dest)[128];
	const char **v;
	size_t n, cap;
};

static void
route_seen(struct routes_seen *rs, const char *dest)
{
	for (size_t i = 0; i < rs->n; i++)
		if (strcmp(rs->dest[i], dest) == 0)
			return;
	if (rs->n == rs->cap) {
		rs->cap = rs->cap ? rs->cap * 2 : 8;
		if (!(rs->dest = realloc(rs->dest, rs->cap * sizeof(*rs->dest))) ||
		    !(rs->v = realloc(rs->v, rs->cap * sizeof(*rs->v))))
			fatalx("intake: out of memory");
	}
	snprintf(rs->dest[rs->n++], sizeof(rs->dest[0]), "%s", dest);
	for (size_t i = 0; i < rs->n; i++)
		rs->v[i] = rs->dest[i];
}

/*
 * Every recipient's outcome for the receipt, and the quotas: of the
 * recipients left after suppression (*n), those past the job's limit
 * (max_recipients) or the day's (max_per_day, counted from the jobs of
 * the day) are "over quota"; *n becomes how many are kept. Two
 * submissions of one submitter at the same moment may each see the day's
 * count before the other's commit: the day's limit can be passed by one
 * job's worth then, never more. For a dry run, the routes of the kept
 * ones go to *rs.
 */
static int
count_outcomes(struct store *st, const struct hato_config *cf, const struct submitter_conf *who,
    const struct submission *sub, const uint8_t *gone_bits, size_t *n,
    const char **gone, char (*reasons)[17], size_t ngone, struct answer *a, struct routes_seen *rs)
{
	struct dest_cache dc = { .cf = cf };
	struct kept_walk w;
	struct sub_rcpt r;
	size_t keep = *n, left, i = 0;
	const char *why = NULL, *at;
	char dest[128];
	uint64_t used;
	int rc;

	add_unaccepted(a, sub);
	for (size_t k = 0; k < ngone; k++) {
		struct dest_cache one = { .cf = cf };
		at = strrchr(gone[k], '@');
		snprintf(dest, sizeof(dest), "%s", at ? dest_of(&one, at + 1) : "");
		answer_add(a, dest, RO_SUPPRESSED, gone[k], reasons[k], NULL, 0);
	}
	if (who->max_recipients && keep > who->max_recipients) {
		keep = who->max_recipients;
		why = "past the limit of one job (max_recipients)";
	}
	if (who->max_per_day && keep > 0) {
		if ((rc = store_submitter_recipients_since(st, who->name, day_start(), &used)) != STORE_OK)
			return rc;
		left = used >= who->max_per_day ? 0 : who->max_per_day - (size_t)used;
		if (keep > left) {
			keep = left;
			why = "past the limit of the day (max_per_day)";
		}
	}
	for (kept_first(&w, sub, gone_bits); kept_next(&w, &r); i++) {
		const char *d = dest_of(&dc, r.domain);
		answer_add(a, d, i < keep ? RO_ACCEPTED : RO_OVER_QUOTA, r.addr, i < keep ? NULL : why, NULL, 0);
		if (rs != NULL && i < keep)
			route_seen(rs, d);
	}
	if (keep < *n)
		log_info("intake submitter=%s over_quota=%zu reason=\"%s\"", who->name, *n - keep, why);
	*n = keep;
	return STORE_OK;
}

/* The From of the DM: the control block's From when the submitter may use
 * it (from, or without it their own addresses), else the mail's From. */
static bool
pick_from(const struct submitter_conf *who, const struct mime_msg *m, const struct submission *sub,
    struct answer *a, char *err, size_t errlen)
{
	char q[200];

	a->subject = sub->subject;
	a->dm_from = m->from;
	if (!sub->from)
		return true;
	for (size_t i = 0; i < who->nfrom; i++)
		if (strcasecmp(who->froms[i], sub->from) == 0)
			return (a->dm_from = sub->from), true;
	for (size_t i = 0; who->nfrom == 0 && i < who->naddr; i++)
		if (strcasecmp(who->addresses[i], sub->from) == 0)
			return (a->dm_from = sub->from), true;
	snprintf(err, errlen, "From: '%s' is not one of the From addresses allowed for you",
	    log_quote(q, sizeof(q), sub->from));
	return false;
}

static void
store_submission(struct store *st, const struct hato_config *cf, const struct submitter_conf *who, const char *env_from,
    const struct mime_msg *m, const struct submission *sub, struct answer *a, char *reply, size_t replylen)
{
	struct store_job_new j = {
		.submitter = who->name, .env_from = env_from, .from_addr = a->dm_from,
		.subject = sub->subject ? sub->subject : "", .body = sub->body,
		.source_msgid = m->message_id, .dry_run = sub->dry_run,
	};
	const char **gone = NULL;
	char (*reasons)[17] = NULL;
	uint8_t *gone_bits = NULL;
	size_t n = 0, ngone = 0, rejected = sub->nrcpt - sub->naccepted;
	uint64_t job_id = 0;
	int rc;

	struct schedule plan;
	struct rehearsal rh = { 0 };
	struct routes_seen rs = { 0 };
	struct row_src src = { .dc = { .cf = cf } };
	struct store_rcpt_src from = { row_next, &src };
	char err[300], code[APPROVAL_CODE_LEN + 1];

	if (m->message_id && *m->message_id) {
		if ((rc = store_job_find_retry(st, who->name, m->message_id, RETRY_WINDOW_S, &job_id)) != STORE_OK) {
			log_warn("intake submitter=%s status=tempfail reason=\"%s\"", who->name, store_error(st));
			snprintf(reply, replylen, "451 4.3.0 job store unavailable, try again later");
			return;
		}
		if (job_id) {
			log_notice("intake job=%llu submitter=%s status=retry reason=\"Message-ID stored before\"",
			    (unsigned long long)job_id, who->name);
			snprintf(reply, replylen, "250 2.0.0 job %llu already queued: this mail was stored before",
			    (unsigned long long)job_id);
			return;
		}
	}
	/* Checked before anything is stored: a bad Send-At, Rate or Send-By
	 * is the submitter's to fix. */
	if (schedule_plan(sub, sub->naccepted, (double)clock_wall_ms() / 1000, &plan, err, sizeof(err)) < 0) {
		refuse(st, cf, a, "550 5.6.0", err, reply, replylen);
		return;
	}
	if (sub->dry_run && who->nrehearsal == 0) {
		snprintf(err, sizeof(err), "Dry-Run: no rehearsal addresses are configured for %s", who->name);
		refuse(st, cf, a, "550 5.7.0", err, reply, replylen);
		return;
	}
	/* A spread job starts at its plan's start, not at the insert's NOW():
	 * held or paused rows keep their offsets from send_at. */
	if (sub->send_at || plan.spacing > 0)
		j.send_at = plan.start;
	if ((rc = find_suppressed(st, sub, &gone_bits, &gone, &reasons, &ngone)) == STORE_OK) {
		n = sub->naccepted - ngone;
		rc = count_outcomes(st, cf, who, sub, gone_bits, &n, gone, reasons, ngone, a,
		    sub->dry_run ? &rs : NULL);
	}
	if (rc == STORE_OK && n > 0) {
		/* Spread evenly over what is left to send. */
		if (plan.spacing > 0 && sub->send_by && n > 1)
			plan.spacing = plan.spacing * (double)sub->naccepted / (double)n;
		a->send_at = j.send_at;
		a->dry_run = j.dry_run;
		if (cf->receipts)
			answer_attach(a, st, &j);
		if (!(src.dests = malloc(ROW_DESTS * sizeof(*src.dests))))
			fatalx("intake: out of memory");
		if (job_extras(cf, who, rs.v, rs.n, &j, &rh, code) < 0) {
			snprintf(err, sizeof(err), "no randomness for a confirmation code");
			rc = STORE_RETRY;
		} else {
			/* A deadlock with the gateway's claims rolls the whole job
			 * back: it is stored again at once rather than answered
			 * 451, the rows read from the start again. */
			for (int tries = 1;; tries++) {
				kept_first(&src.w, sub, gone_bits);
				src.dc.domain = NULL;
				src.keep = n;
				src.given = 0;
				src.start = plan.start;
				src.spacing = plan.spacing;
				rc = store_job_create(st, &j, n, &from, &job_id);
				if (rc != STORE_RETRY || !store_conflict(st) || tries >= CONFLICT_TRIES)
					break;
				log_info("intake submitter=%s status=retry reason=\"%s\"", who->name, store_error(st));
			}
		}
	}
	if (rc != STORE_OK) {
		log_warn("intake submitter=%s status=tempfail reason=\"%s\"", who->name, store_error(st));
		snprintf(reply, replylen, "451 4.3.0 job store unavailable, try again later");
	} else if (n == 0) {
		log_info("intake submitter=%s recipients=0 rejected=%zu suppressed=%zu over_quota=%zu status=refused",
		    who->name, rejected, ngone, a->total[RO_OVER_QUOTA]);
		snprintf(err, sizeof(err), "no recipient left to send to: %zu suppressed, %zu over quota, %zu rejected",
		    ngone, a->total[RO_OVER_QUOTA], rejected);
		refuse(st, cf, a, "550 5.1.3", err, reply, replylen);
	} else {
		log_info("intake job=%llu submitter=%s recipients=%zu rejected=%zu suppressed=%zu status=queued",
		    (unsigned long long)job_id, who->name, n, rejected, ngone);
		snprintf(reply, replylen, "250 2.0.0 job %llu queued: %zu accepted, %zu rejected, %zu suppressed",
		    (unsigned long long)job_id, n, rejected, ngone);
		job_extras_say(job_id, who->name, &j, &rh, reply, replylen);
	}
	/* One line per address skipped, so that one grep follows an address. */
	for (size_t i = 0; rc == STORE_OK && i < ngone; i++) {
		if (job_id)
			log_info("intake job=%llu submitter=%s address=%s status=suppressed reason=%s",
			    (unsigned long long)job_id, who->name, gone[i], reasons[i]);
		else
			log_info("intake submitter=%s address=%s status=suppressed reason=%s",
			    who->name, gone[i], reasons[i]);
	}
	free(gone);
	free(reasons);
	free(gone_bits);
	free(src.dests);
	free(rs.dest);
	free(rs.v);
	rehearsal_free(&rh);
}

/* A reply carrying a confirmation code: it approves and stores no job; a
 * refusal is answered like any other (an error receipt, or a 5xx). */
static void
approve_by_reply(struct store *st, const struct hato_config *cf, struct answer *a, const char *code,
    char *reply, size_t replylen)
{
	char line[300];

	switch (approval_by_reply(st, a->who, a->m->from, code, line, sizeof(line))) {
	case 0:
		snprintf(reply, replylen, "250 2.0.0 %s", line);
		break;
	case 1:
		refuse(st, cf, a, "550 5.7.0", line, reply, replylen);
		break;
	default:
		snprintf(reply, replylen, "451 4.3.0 job store unavailable, try again later");
	}
}

void
intake_process(struct store *st, const struct hato_config *cf, const char *env_from,
    const char *data, size_t len, char *reply, size_t replylen)
{
	struct mime_msg m;
	struct submission sub;
	const struct submitter_conf *who;
	struct answer a;
	const char *why;
	char err[400], q[400], code[APPROVAL_CODE_LEN + 1], tok[256];

	memset(&sub, 0, sizeof(sub));
	/* A list attachment is read from the mail as it is parsed, a chunk at
	 * a time: never decoded whole. */
	if (mime_parse_lazy(data, len, LIST_LAZY_MIN, &m, err, sizeof(err)) < 0) {
		snprintf(reply, replylen, "550 5.6.0 cannot read the mail: %s", err);
		return;
	}
	if (!m.from || !(who = config_submitter_by_address(cf, m.from))) {
		log_notice("intake status=discarded reason=\"unknown sender\" from=%s env_from=%s",
		    log_quote(q, sizeof(q), m.from ? m.from : ""), env_from);
		snprintf(reply, replylen, "250 2.0.0 message discarded");
		mime_msg_free(&m);
		return;
	}
	/* Before anything else: an auto-reply must never approve, submit or
	 * be answered (answer.h). */
	if (!answer_allowed(&m, env_from, &why)) {
		log_notice("intake submitter=%s status=discarded reason=\"%s\" env_from=%s (never answered)",
		    who->name, why, *env_from ? env_from : "<>");
		snprintf(reply, replylen, "250 2.0.0 message discarded: automatic mail is not answered");
		mime_msg_free(&m);
		return;
	}
	answer_init(&a, cf, who, &m, m.from);
	if (approval_reply_code(&m, code, tok, sizeof(tok))) {
		/* A reply to a receipt: authenticated like a submission. */
		if (!auth_submitter(who, cf->authserv_id, &m, m.from, *tok ? tok : NULL, err, sizeof(err)))
			refuse(st, cf, &a, "550 5.7.8", err, reply, replylen);
		else
			approve_by_reply(st, cf, &a, code, reply, replylen);
	} else if (submission_parse(&m, &sub, err, sizeof(err)) < 0)
		refuse(st, cf, &a, "550 5.6.0", err, reply, replylen);
	else if (!auth_submitter(who, cf->authserv_id, &m, m.from, sub.token, err, sizeof(err)))
		refuse(st, cf, &a, "550 5.7.8", err, reply, replylen);
	else if (!pick_from(who, &m, &sub, &a, err, sizeof(err)))
		refuse(st, cf, &a, "550 5.7.1", err, reply, replylen);
	else if (sub.naccepted == 0) {
		add_unaccepted(&a, &sub);
		snprintf(err, sizeof(err), "no valid recipient among %zu given", sub.nrcpt);
		refuse(st, cf, &a, "550 5.1.3", err, reply, replylen);
	} else
		store_submission(st, cf, who, env_from, &m, &sub, &a, reply, replylen);
	answer_free(&a);
	submission_free(&sub);
	mime_msg_free(&m);
}

void
intake_deliver(struct store *st, const struct hato_config *cf, const char *env_from, const char *rcpt,
    const char *data, size_t len, char *reply, size_t replylen)
{
	switch (feedback_kind(cf, rcpt)) {
	case FEEDBACK_BOUNCE:
		feedback_bounce(st, cf, rcpt, env_from, data, len, reply, replylen);
		break;
	case FEEDBACK_UNSUB:
		feedback_unsubscribe(st, cf, rcpt, env_from, reply, replylen);
		break;
	case FEEDBACK_NONE:
		intake_process(st, cf, env_from, data, len, reply, replylen);
		break;
	}
}

/* The reply for recipient i. Every recipient that is the submit address
 * shares one job and one answer (on_rcpt took no other address than the
 * submit, bounce and unsubscribe ones), and a recipient given twice is
 * handled once. */
static void
answer_rcpt(struct store *st, struct intake_task *t, size_t i, size_t *submit)
{
	const struct hato_config *cf = t->in->cf;
	const struct lmtp_txn *x = t->txn;
	char *reply = t->replies[i];
	bool is_submit = feedback_kind(cf, x->rcpts[i]) == FEEDBACK_NONE;

	for (size_t j = 0; j < i; j++)
		if (strcasecmp(x->rcpts[j], x->rcpts[i]) == 0) {
			memcpy(reply, t->replies[j], REPLY_MAX);
			return;
		}
	if (is_submit && *submit < x->nrcpt) {
		memcpy(reply, t->replies[*submit], REPLY_MAX);
		return;
	}
	intake_deliver(st, cf, x->mail_from, x->rcpts[i], x->data, x->len, reply, REPLY_MAX);
	if (is_submit)
		*submit = i;
}

static void
task_run(void *ctx, void *arg)
{
	struct intake_task *t = arg;
	size_t submit = t->txn->nrcpt;

	for (size_t i = 0; i < t->txn->nrcpt; i++)
		answer_rcpt(ctx, t, i, &submit);
}

static void
task_done(void *arg)
{
	struct intake_task *t = arg;
	struct intake *in = t->in;
	const char **replies = calloc(t->txn->nrcpt ? t->txn->nrcpt : 1, sizeof(char *));

	if (!replies)
		fatalx("intake: out of memory");
	for (size_t i = 0; i < t->txn->nrcpt; i++)
		replies[i] = t->replies[i];
	lmtp_txn_reply(t->sess, t->txn, replies);
	free(replies);
	free(t->replies);
	free(t);
	if (in->on_idle && lmtp_server_busy(in->lmtp) == 0)
		in->on_idle(in->idle_arg);
}

static void
on_message(struct lmtp_session *sess, struct lmtp_txn *txn, void *arg)
{
	struct intake *in = arg;
	struct intake_task *t = calloc(1, sizeof(*t));

	if (!t || !(t->replies = calloc(txn->nrcpt ? txn->nrcpt : 1, sizeof(*t->replies))))
		fatalx("intake: out of memory");
	t->in = in;
	t->sess = sess;
	t->txn = txn;
	worker_submit(in->workers[in->next++ % in->nworkers], task_run, task_done, t);
}

static const char *
on_rcpt(const char *rcpt, void *arg)
{
	struct intake *in = arg;

	/* Bounce and unsubscribe addresses are taken whatever their MAC: a
	 * forged one is found out after DATA, logged and answered 250 (a
	 * refusal here would bounce a bounce). */
	if (strcasecmp(rcpt, in->cf->submit_address) == 0 || feedback_kind(in->cf, rcpt) != FEEDBACK_NONE)
		return NULL;
	snprintf(in->rcpt_refusal, sizeof(in->rcpt_refusal),
	    "550 5.1.1 <%.200s>: no such address here", rcpt);
	return in->rcpt_refusal;
}

struct intake *
intake_new(struct event_base *base, const struct hato_config *cf)
{
	struct intake *in = calloc(1, sizeof(*in));
	struct lmtp_cbs cbs = { .rcpt = on_rcpt, .message = on_message };

	if (!in)
		fatalx("intake: out of memory");
	in->base = base;
	in->cf = cf;
	in->nworkers = cf->intake_workers < MAX_WORKERS ? cf->intake_workers : MAX_WORKERS;
	for (unsigned i = 0; i < in->nworkers; i++)
		in->workers[i] = worker_create(base, "intake-db", store_worker_init, store_worker_fini, (void *)cf);
	in->lmtp = lmtp_server_new(base, cf->hostname, cf->max_message_size, &cbs, in);
	return in;
}

int
intake_listen(struct intake *in, char *err, size_t errlen)
{
	if (*in->cf->lmtp_listen && lmtp_listen_tcp(in->lmtp, in->cf->lmtp_listen, err, errlen) < 0)
		return -1;
	if (*in->cf->lmtp_socket && lmtp_listen_unix(in->lmtp, in->cf->lmtp_socket, err, errlen) < 0)
		return -1;
	if (!*in->cf->lmtp_listen && !*in->cf->lmtp_socket) {
		snprintf(err, errlen, "[intake] has neither lmtp_listen nor lmtp_socket");
		return -1;
	}
	return 0;
}

void
intake_stop(struct intake *in, void (*on_idle)(void *), void *arg)
{
	lmtp_server_close_listeners(in->lmtp);
	in->on_idle = on_idle;
	in->idle_arg = arg;
	if (lmtp_server_busy(in->lmtp) == 0)
		on_idle(arg);
}

void
intake_free(struct intake *in)
{
	if (!in)
		return;
	for (unsigned i = 0; i < in->nworkers; i++)
		worker_free(in->workers[i]);
	lmtp_server_free(in->lmtp);
	free(in);
}
