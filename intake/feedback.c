/*
 * feedback: bounces and unsubscribe mails (see feedback.h).
 *
 *	feedback_kind		which of the two a recipient is
 *	feedback_bounce		MAC, dsn_parse, pick the report's recipient,
 *				bounce_classify, store_bounce
 *	feedback_unsubscribe	MAC, store_unsubscribe
 *
 * A bounce is read against the delivery its VERP address names: of the
 * recipients a report lists, the one with that delivery's address (a
 * forwarded or multi-recipient report may list others), else the first
 * that failed. Action "failed" (or no Action and a 5xx) fails the
 * delivery; "delayed" and the rest are only logged. The failure counts
 * for list cleaning only when its class is unknown user or domain, never
 * for a policy block or a refusal after DATA (bounce_classify decides).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "conf/config.h"
#include "core/log.h"
#include "intake/feedback.h"
#include "mail/address.h"
#include "mail/bounce.h"
#include "mail/dsn.h"
#include "mail/verp.h"
#include "sql/store.h"

#define BOUNCE_PREFIX "bounce+"
#define UNSUB_PREFIX "unsub+"

static const char REPLY_DISCARDED[] = "250 2.0.0 message discarded";
static const char REPLY_TEMPFAIL[] = "451 4.3.0 job store unavailable, try again later";

enum feedback_kind
feedback_kind(const struct hato_config *cf, const char *rcpt)
{
	const char *at = strrchr(rcpt, '@');

	if (!at || !*cf->bounce_domain || strcasecmp(at + 1, cf->bounce_domain) != 0)
		return FEEDBACK_NONE;
	if (strncasecmp(rcpt, BOUNCE_PREFIX, strlen(BOUNCE_PREFIX)) == 0)
		return FEEDBACK_BOUNCE;
	if (strncasecmp(rcpt, UNSUB_PREFIX, strlen(UNSUB_PREFIX)) == 0)
		return FEEDBACK_UNSUB;
	return FEEDBACK_NONE;
}

/* The local part's length (up to the last '@'). */
static size_t
local_len(const char *rcpt)
{
	const char *at = strrchr(rcpt, '@');

	return at ? (size_t)(at - rcpt) : strlen(rcpt);
}

/* An address of a report compared with the delivery's: both canonical,
 * the local part as it is (a legacy "taro.."@ arrives quoted). */
static bool
same_address(const char *reported, const char *canonical)
{
	struct mail_addr a;
	const char *why;
	char buf[ADDR_MAX + 1];

	if (!*reported)
		return false;
	if (addr_parse(reported, strlen(reported), &a, &why) == 0) {
		addr_canonical(&a, buf, sizeof(buf));
		return strcasecmp(buf, canonical) == 0;
	}
	return strcasecmp(reported, canonical) == 0;
}

static const struct dsn_rcpt *
pick_rcpt(const struct dsn *d, const char *address)
{
	for (size_t i = 0; i < d->nrcpt; i++)
		if (same_address(d->rcpt[i].final_rcpt, address) ||
		    same_address(d->rcpt[i].orig_rcpt, address))
			return &d->rcpt[i];
	for (size_t i = 0; i < d->nrcpt; i++)
		if (d->rcpt[i].action == DSN_ACTION_FAILED)
			return &d->rcpt[i];
	return &d->rcpt[0];
}

static enum bounce_stage
stage_of(enum dsn_command c)
{
	switch (c) {
	case DSN_CMD_CONNECT:
	case DSN_CMD_HELO:
	case DSN_CMD_MAIL:
		return BOUNCE_STAGE_CONNECT;
	case DSN_CMD_RCPT:
		return BOUNCE_STAGE_RCPT;
	case DSN_CMD_DATA:
		return BOUNCE_STAGE_DATA;
	case DSN_CMD_DOT:
		return BOUNCE_STAGE_DOT;
	case DSN_CMD_UNKNOWN:
		break;
	}
	return BOUNCE_STAGE_DSN;
}

/* A permanent failure: Action "failed", or no Action and a 5xx or 5.x.x. */
static bool
permanent(const struct dsn_rcpt *r, const char *status)
{
	if (r->action == DSN_ACTION_FAILED)
		return true;
	if (r->action != DSN_ACTION_NONE)
		return false;
	return status[0] == '5' || (r->code >= 500 && r->code < 600);
}

static void
record_bounce(struct store *st, const struct hato_config *cf, uint64_t id, const char *address,
    const struct dsn *d, char *reply, size_t replylen)
{
	const struct dsn_rcpt *r = pick_rcpt(d, address);
	const char *status = dsn_rcpt_status(r), *at = strrchr(address, '@');
	char outcome[24], text[DSN_TEXT_MAX + 32], q[600];
	enum bounce_class bc;
	bool found, suppressed;
	uint64_t job = 0;
	struct store_bounce b = { .id = id, .code = r->code, .status = status, .text = text, .job_id = &job };
	int rc;

	b.failed = permanent(r, status);
	if (b.failed)
		snprintf(outcome, sizeof(outcome), "bounced");
	else if (r->action == DSN_ACTION_DELAYED)
		snprintf(outcome, sizeof(outcome), "delayed");
	else
		snprintf(outcome, sizeof(outcome), "dsn-%s", dsn_action_name(r->action));
	b.outcome = outcome;
	if (*r->diag_text)
		snprintf(text, sizeof(text), "%s", r->diag_text);
	else
		snprintf(text, sizeof(text), "Action: %s", dsn_action_name(r->action));
	bc = bounce_classify(r->code, status, r->diag_text, stage_of(r->command),
	    at ? at + 1 : NULL, NULL);
	b.bclass = bc == BOUNCE_NONE ? "" : bounce_class_name(bc);
	b.host = *r->remote_mta ? r->remote_mta : d->reporting_mta;
	if ((rc = store_bounce(st, cf->node, &b, &found, &suppressed)) != STORE_OK) {
		log_warn("bounce dlv=%llu status=tempfail reason=\"%s\"", (unsigned long long)id, store_error(st));
		snprintf(reply, replylen, "%s", REPLY_TEMPFAIL);
		return;
	}
	if (!found) {
		log_notice("bounce dlv=%llu status=discarded reason=\"no such delivery\"", (unsigned long long)id);
		snprintf(reply, replylen, "%s", REPLY_DISCARDED);
		return;
	}
	log_info("bounce job=%llu dlv=%llu address=%s action=%s dsn_status=%s class=%s fallback=%s status=%s%s reply=%s",
	    (unsigned long long)job, (unsigned long long)id, address, dsn_action_name(r->action), *status ? status : "-",
	    *b.bclass ? b.bclass : "-", d->fallback ? "yes" : "no", b.failed ? "failed" : "logged",
	    suppressed ? " cleaning=suppressed" : "", log_quote(q, sizeof(q), text));
	snprintf(reply, replylen, "250 2.0.0 bounce recorded for delivery %llu", (unsigned long long)id);
}

void
feedback_bounce(struct store *st, const struct hato_config *cf, const char *rcpt,
    const char *env_from, const char *data, size_t len, char *reply, size_t replylen)
{
	char address[ADDR_MAX + 1], err[256], q[300], qr[400];
	struct dsn d;
	uint64_t id;
	bool found;
	int rc;

	if (verp_parse(cf->secret, cf->secret_len, rcpt, local_len(rcpt), &id) < 0) {
		log_notice("bounce rcpt=%s env_from=%s status=discarded reason=\"not a bounce address of ours\"",
		    log_quote(qr, sizeof(qr), rcpt), log_quote(q, sizeof(q), env_from));
		snprintf(reply, replylen, "%s", REPLY_DISCARDED);
		return;
	}
	if (dsn_parse(data, len, &d, err, sizeof(err)) < 0) {
		log_notice("bounce dlv=%llu env_from=%s status=discarded reason=%s", (unsigned long long)id,
		    log_quote(q, sizeof(q), env_from), log_quote(qr, sizeof(qr), err));
		snprintf(reply, replylen, "%s", REPLY_DISCARDED);
		return;
	}
	if ((rc = store_delivery_address(st, id, address, sizeof(address), &found)) != STORE_OK) {
		log_warn("bounce dlv=%llu status=tempfail reason=\"%s\"", (unsigned long long)id, store_error(st));
		snprintf(reply, replylen, "%s", REPLY_TEMPFAIL);
	} else if (!found) {
		log_notice("bounce dlv=%llu status=discarded reason=\"no such delivery\"", (unsigned long long)id);
		snprintf(reply, replylen, "%s", REPLY_DISCARDED);
	} else
		record_bounce(st, cf, id, address, &d, reply, replylen);
	dsn_free(&d);
}

void
feedback_unsubscribe(struct store *st, const struct hato_config *cf, const char *rcpt,
    const char *env_from, char *reply, size_t replylen)
{
	size_t pl = strlen(UNSUB_PREFIX), ll = local_len(rcpt);
	char address[ADDR_MAX + 1], q[300], qr[400];
	uint64_t id;
	bool found;
	int rc;

	if (ll <= pl || unsub_parse(cf->secret, cf->secret_len, rcpt + pl, ll - pl, &id) < 0) {
		log_notice("unsubscribe rcpt=%s env_from=%s status=discarded reason=\"not a token of ours\"",
		    log_quote(qr, sizeof(qr), rcpt), log_quote(q, sizeof(q), env_from));
		snprintf(reply, replylen, "%s", REPLY_DISCARDED);
		return;
	}
	if ((rc = store_unsubscribe(st, cf->node, id, "mail", address, sizeof(address), &found)) != STORE_OK) {
		log_warn("unsubscribe dlv=%llu status=tempfail reason=\"%s\"", (unsigned long long)id, store_error(st));
		snprintf(reply, replylen, "%s", REPLY_TEMPFAIL);
		return;
	}
	if (!found) {
		log_notice("unsubscribe dlv=%llu status=discarded reason=\"no such delivery\"", (unsigned long long)id);
		snprintf(reply, replylen, "%s", REPLY_DISCARDED);
		return;
	}
	log_info("unsubscribe dlv=%llu address=%s via=mail env_from=%s status=suppressed",
	    (unsigned long long)id, address, log_quote(q, sizeof(q), env_from));
	snprintf(reply, replylen, "250 2.0.0 unsubscribed");
}
