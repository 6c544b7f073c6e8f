/*
 * test_dsn: bounces read by dsn_parse. Real samples from
 * tests/unit/data/dsn/ (see its README for how each was made), RFC 3464
 * edge cases and fallback layouts written inline, garbage, and every
 * sample cut short and damaged, which must never crash. Each sample's
 * recipients also go through bounce_classify, as intake will do.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mail/bounce.h"
#include "mail/charset.h"
#include "mail/dsn.h"

/* ------------------------------------------------- loading, checking */

/* tests/unit/data/dsn/NAME: HATO_SOURCE when the test runner sets it, else
 * the source tree this file was compiled from, else relative paths. */
static char *
load(const char *name, size_t *len)
{
	const char *src = getenv("HATO_SOURCE");
	const char *self = __FILE__, *cut = strstr(__FILE__, "tests/unit/test_dsn.c");
	char path[4096];
	FILE *f;
	char *buf;
	long n;

	if (src != NULL && *src != '\0')
		snprintf(path, sizeof(path), "%s/tests/unit/data/dsn/%s", src, name);
	else if (cut != NULL)
		snprintf(path, sizeof(path), "%.*stests/unit/data/dsn/%s",
		    (int)(cut - self), self, name);
	else
		snprintf(path, sizeof(path), "tests/unit/data/dsn/%s", name);
	if ((f = fopen(path, "rb")) == NULL)
		fail_msg("cannot open %s", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void
parse_ok(const char *data, size_t len, struct dsn *d)
{
	char err[256] = "";

	if (dsn_parse(data, len, d, err, sizeof(err)) != 0)
		fail_msg("dsn_parse: %s", err);
	assert_true(d->nrcpt > 0);
}

static void
parse_fails(const char *data, size_t len, const char *why)
{
	struct dsn d;
	char err[256] = "";

	assert_int_equal(dsn_parse(data, len, &d, err, sizeof(err)), -1);
	if (strstr(err, why) == NULL)
		fail_msg("error \"%s\" does not say \"%s\"", err, why);
	assert_int_equal(d.nrcpt, 0);
	assert_null(d.rcpt);
}

/* Every string bounded, terminated, UTF-8 and without controls. */
static void
check_str(const char *s, size_t size)
{
	size_t n = strnlen(s, size), i;

	assert_true(n < size);
	assert_true(utf8_valid(s, n));
	for (i = 0; i < n; i++)
		assert_true((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
}

static void
check_sane(const struct dsn *d)
{
	size_t i;

	check_str(d->message_id, sizeof(d->message_id));
	check_str(d->envid, sizeof(d->envid));
	check_str(d->orig_sender, sizeof(d->orig_sender));
	check_str(d->reporting_mta, sizeof(d->reporting_mta));
	assert_true(d->nrcpt <= DSN_RCPT_MAX);
	for (i = 0; i < d->nrcpt; i++) {
		const struct dsn_rcpt *r = &d->rcpt[i];

		check_str(r->final_rcpt, sizeof(r->final_rcpt));
		check_str(r->orig_rcpt, sizeof(r->orig_rcpt));
		check_str(r->status, sizeof(r->status));
		check_str(r->diag_type, sizeof(r->diag_type));
		check_str(r->diag_text, sizeof(r->diag_text));
		check_str(r->diag_status, sizeof(r->diag_status));
		check_str(r->remote_mta, sizeof(r->remote_mta));
		assert_true(r->code == 0 || (r->code >= 200 && r->code <= 599));
		assert_true(r->action >= DSN_ACTION_NONE && r->action <= DSN_ACTION_EXPANDED);
		assert_true(r->command >= DSN_CMD_UNKNOWN && r->command <= DSN_CMD_DOT);
	}
}

/* What intake does with a recipient: the stage from the command. */
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

static enum bounce_class
classify(const struct dsn_rcpt *r, bool *soft)
{
	const char *at = strrchr(r->final_rcpt, '@');

	return bounce_classify(r->code, dsn_rcpt_status(r), r->diag_text,
	    stage_of(r->command), at ? at + 1 : NULL, soft);
}

/* ------------------------------------------------------- real samples */

struct want_rcpt {
	const char *final;
	const char *orig;
	enum dsn_action action;
	const char *status;	/* dsn_rcpt_status() */
	int code;
	const char *diag;	/* diag_text, exactly */
	const char *mta;
	enum dsn_command command;
	enum bounce_class class;
	bool soft;
};

struct sample {
	const char *file;
	bool fallback;
	const char *message_id;
	const char *envid;
	const char *sender;
	size_t nrcpt;
	struct want_rcpt r[2];
};

static const struct sample samples[] = {
	/* (a) Postfix 3.7 refusing at RCPT TO, message returned whole. */
	{ "postfix-failed.eml", false, "20251122213000.1234.dm@shop.hato.test",
	  "hato-dlv-1234", "bounce+1234.5f2a9c@bounce.hato.test", 1, {
	  { "nosuch@docomo.ne.jp", "nosuch@docomo.ne.jp", DSN_ACTION_FAILED, "5.1.1", 550,
	    "550 5.1.1 <nosuch@docomo.ne.jp>: Recipient address rejected: User unknown",
	    "127.0.0.1", DSN_CMD_RCPT, BOUNCE_UNKNOWN_USER, false } } },
	/* Postfix with RET=HDRS: text/rfc822-headers. */
	{ "postfix-failed-hdrs.eml", false, "20251122213000.1236.dm@shop.hato.test",
	  "hato-dlv-1236", "bounce+1236.0c4d2f@bounce.hato.test", 1, {
	  { "nosuch@docomo.ne.jp", "nosuch@docomo.ne.jp", DSN_ACTION_FAILED, "5.1.1", 550,
	    "550 5.1.1 <nosuch@docomo.ne.jp>: Recipient address rejected: User unknown",
	    "127.0.0.1", DSN_CMD_RCPT, BOUNCE_UNKNOWN_USER, false } } },
	/* Postfix: docomo's "550 Unknown user" after the end of DATA; the
	 * command is only in the text part; Status is a bare 5.0.0. */
	{ "postfix-docomo-dot.eml", false, "20251122213000.1237.dm@shop.hato.test",
	  "hato-dlv-1237", "bounce+1237.e4a0b9@bounce.hato.test", 1, {
	  { "filtered@docomo.ne.jp", "filtered@docomo.ne.jp", DSN_ACTION_FAILED, "5.0.0", 550,
	    "550 Unknown user filtered@docomo.ne.jp",
	    "127.0.0.1", DSN_CMD_DOT, BOUNCE_POLICY, false } } },
	/* (e) Postfix delay warning: Action: delayed, 452 4.2.2. */
	{ "postfix-delayed.eml", false, "20251122213000.1235.dm@shop.hato.test",
	  "hato-dlv-1235", "bounce+1235.77b01e@bounce.hato.test", 1, {
	  { "later@ezweb.ne.jp", "later@ezweb.ne.jp", DSN_ACTION_DELAYED, "4.2.2", 452,
	    "452 4.2.2 <later@ezweb.ne.jp>: Mailbox full, try again later",
	    "127.0.0.1", DSN_CMD_RCPT, BOUNCE_MAILBOX_FULL, true } } },
	/* (b) Exim 4.96: "Status: 5.0.0" over a "550 5.1.1" diagnostic. */
	{ "exim-failed.eml", false, "20251122213100.2001.dm@shop.hato.test",
	  "hato-dlv-2001", "bounce+2001.9a31c7@bounce.hato.test", 1, {
	  { "gone@docomo.ne.jp", "gone@docomo.ne.jp", DSN_ACTION_FAILED, "5.1.1", 550,
	    "550 5.1.1 <gone@docomo.ne.jp>: Recipient address rejected: User unknown",
	    "127.0.0.1", DSN_CMD_RCPT, BOUNCE_UNKNOWN_USER, false } } },
	/* Exim without DSN support: text only. */
	{ "exim-plain.eml", true, "20261123071000.2002.dm@shop.hato.test", "",
	  "bounce+2002.44e1aa@bounce.hato.test", 1, {
	  { "nobody@example.org", "", DSN_ACTION_FAILED, "5.1.1", 550,
	    "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown "
	    "in local recipient table",
	    "mx.example.org", DSN_CMD_RCPT, BOUNCE_UNKNOWN_USER, false } } },
	/* (c) Japanese ISO-2022-JP notice: au's two kinds of "User unknown". */
	{ "jp-carrier-iso2022jp.eml", true, "20261123091240.3101.dm@shop.hato.test", "",
	  "bounce+3101.5d0e7a@bounce.hato.test", 2, {
	  { "hanako@ezweb.ne.jp", "", DSN_ACTION_FAILED, "", 550,
	    "550 <hanako@ezweb.ne.jp>: User unknown", "", DSN_CMD_RCPT,
	    BOUNCE_UNKNOWN_USER, false },
	  { "jiro@ezweb.ne.jp", "", DSN_ACTION_FAILED, "", 550,
	    "550 : User unknown", "", DSN_CMD_RCPT, BOUNCE_POLICY, false } } },
	/* (d) qmail-send: a remote refusal and a local one. */
	{ "qmail-failed.eml", true, "20261122214500.5001.dm@shop.hato.test", "",
	  "bounce+5001.c0ffee@bounce.hato.test", 2, {
	  { "nobody@example.org", "", DSN_ACTION_FAILED, "5.1.1", 550,
	    "550 5.1.1 <nobody@example.org>... User unknown", "192.0.2.25",
	    DSN_CMD_RCPT, BOUNCE_UNKNOWN_USER, false },
	  { "olduser@example.net", "", DSN_ACTION_FAILED, "5.1.1", 0,
	    "Sorry, no mailbox here by that name. (#5.1.1)", "", DSN_CMD_UNKNOWN,
	    BOUNCE_UNKNOWN_USER, false } } },
	/* sendmail's text: docomo refusing at DATA, seen in the transcript. */
	{ "sendmail-plain.eml", true, "20261123093755.4001.dm@shop.hato.test", "",
	  "bounce+4001.aa01bb@bounce.hato.test", 1, {
	  { "filtered2@docomo.ne.jp", "", DSN_ACTION_FAILED, "", 550,
	    "550 Unknown user filtered2@docomo.ne.jp", "mfsmax.docomo.ne.jp",
	    DSN_CMD_DATA, BOUNCE_POLICY, false } } },
};

static void
check_rcpt(const char *file, const struct dsn_rcpt *r, const struct want_rcpt *w)
{
	bool soft = !w->soft;

	print_message("  %s: %s\n", file, r->final_rcpt);
	assert_string_equal(r->final_rcpt, w->final);
	assert_string_equal(r->orig_rcpt, w->orig);
	assert_int_equal(r->action, w->action);
	assert_string_equal(dsn_rcpt_status(r), w->status);
	assert_int_equal(r->code, w->code);
	assert_string_equal(r->diag_text, w->diag);
	assert_string_equal(r->remote_mta, w->mta);
	assert_int_equal(r->command, w->command);
	assert_string_equal(bounce_class_name(classify(r, &soft)),
	    bounce_class_name(w->class));
	assert_int_equal(soft, w->soft);
}

static void
test_samples(void **state)
{
	const struct sample *s;
	struct dsn d;
	size_t i, j, len;
	char *data;

	(void)state;
	for (i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		s = &samples[i];
		data = load(s->file, &len);
		parse_ok(data, len, &d);
		check_sane(&d);
		assert_int_equal(d.fallback, s->fallback);
		assert_string_equal(d.message_id, s->message_id);
		assert_string_equal(d.envid, s->envid);
		assert_string_equal(d.orig_sender, s->sender);
		assert_int_equal(d.nrcpt, s->nrcpt);
		assert_false(d.truncated);
		for (j = 0; j < s->nrcpt; j++)
			check_rcpt(s->file, &d.rcpt[j], &s->r[j]);
		dsn_free(&d);
		free(data);
	}
}

static void
test_sample_details(void **state)
{
	struct dsn d;
	size_t len;
	char *data;

	(void)state;
	data = load("postfix-failed.eml", &len);
	parse_ok(data, len, &d);
	assert_string_equal(d.reporting_mta, "mx1.hato.test");
	assert_string_equal(d.rcpt[0].diag_type, "smtp");
	assert_string_equal(d.rcpt[0].status, "5.1.1");
	assert_string_equal(d.rcpt[0].diag_status, "5.1.1");
	dsn_free(&d);
	free(data);

	data = load("exim-failed.eml", &len);
	parse_ok(data, len, &d);
	assert_string_equal(d.reporting_mta, "mx2.hato.test");
	assert_string_equal(d.rcpt[0].status, "5.0.0");	/* as written */
	assert_string_equal(d.rcpt[0].diag_status, "5.1.1");
	dsn_free(&d);
	free(data);

	/* The same mail with CRLF turned into LF reads the same. */
	data = load("postfix-delayed.eml", &len);
	{
		size_t r, w = 0;

		for (r = 0; r < len; r++)
			if (data[r] != '\r')
				data[w++] = data[r];
		len = w;
	}
	parse_ok(data, len, &d);
	assert_int_equal(d.rcpt[0].action, DSN_ACTION_DELAYED);
	assert_string_equal(d.rcpt[0].diag_text,
	    "452 4.2.2 <later@ezweb.ne.jp>: Mailbox full, try again later");
	dsn_free(&d);
	free(data);
}

static const char plain_mail[] =
	"From: friend@example.jp\nSubject: lunch?\n\n<a@b.example>: 550 no\n";
static const char empty_bounce[] =
	"From: MAILER-DAEMON@mx.example\nSubject: Undelivered Mail\n\n"
	"Something went wrong.\n";

/* (f) Not a bounce, and garbage: a clear error, never a crash. */
static void
test_not_a_bounce(void **state)
{
	size_t len;
	char *data;

	(void)state;
	data = load("not-a-bounce.eml", &len);
	parse_fails(data, len, "not a bounce");
	free(data);
	parse_fails("", 0, "empty message");
	parse_fails("hello\n", 6, "not a bounce");
	parse_fails("\x00\x01\x02\xff\xfe", 5, "not a bounce");
	parse_fails(plain_mail, strlen(plain_mail), "not a bounce");
	/* A bounce's sender and subject, but no recipient in it anywhere. */
	parse_fails(empty_bounce, strlen(empty_bounce), "no recipient found");
}

static const char ds_garbage[] =
	"From: MAILER-DAEMON@mx.example\r\n"
	"Subject: report\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n"
	"\r\n"
	"--b\r\n"
	"Content-Type: text/plain\r\n"
	"\r\n"
	"Nothing to see.\r\n"
	"--b\r\n"
	"Content-Type: message/delivery-status\r\n"
	"\r\n"
	"Reporting-MTA: dns; mx.example\r\n"
	"\r\n"
	"this is not a field\r\n"
	"--b--\r\n";

static void
test_ds_errors(void **state)
{
	(void)state;
	/* The position of the first line that is no field. */
	parse_fails(ds_garbage, sizeof(ds_garbage) - 1,
	    "delivery-status line 3: not a field");
}

/* --------------------------------------------------- RFC 3464 details */

#define DSN_HEAD \
	"From: Mail Delivery System <MAILER-DAEMON@mx.example>\r\n" \
	"To: bounce+77.aa@bounce.hato.test\r\n" \
	"Subject: Delivery Status Notification\r\n" \
	"MIME-Version: 1.0\r\n" \
	"Content-Type: multipart/report; report-type=delivery-status; boundary=\"BB\"\r\n" \
	"\r\n" \
	"--BB\r\n" \
	"Content-Type: text/plain; charset=us-ascii\r\n" \
	"\r\n" \
	"Delivery report.\r\n" \
	"--BB\r\n" \
	"Content-Type: message/delivery-status\r\n" \
	"\r\n"

#define DSN_TAIL "--BB--\r\n"

static const char multi[] = DSN_HEAD
	"Reporting-MTA: dns;mx.example\r\n"
	"Original-Envelope-Id: env-77\r\n"
	/* no blank line: Final-Recipient opens the first recipient */
	"Final-Recipient: RFC822; <a@Example.ORG>\r\n"
	"Action: failed\r\n"
	"Status: 5.1.1 (bad destination mailbox address)\r\n"
	"Diagnostic-Code: smtp;\r\n"
	"\t550-5.1.1 The email account that you tried to reach does not exist.\r\n"
	"    550 5.1.1 Please try again.\r\n"
	"Remote-MTA: dns; mx.example.org\r\n"
	"\r\n"
	"Original-Recipient: rfc822;b@example.org\r\n"
	"Final-Recipient: rfc822;b@example.org\r\n"
	"Action: delivered (to mailbox)\r\n"
	"Status: 2.0.0\r\n"
	/* no blank line again: a second Final-Recipient is a new recipient */
	"Final-Recipient: rfc822;c@example.org\r\n"
	"Action: relayed\r\n"
	"Status: 2.0.0\r\n"
	"\r\n"
	"Final-Recipient: rfc822;d@example.org\r\n"
	"Action: EXPANDED\r\n"
	"Status: 2.0.0\r\n"
	"X-Unknown-Field: ignored\r\n"
	"\r\n"
	"Final-Recipient: rfc822;e@example.org\r\n"
	"Action: bogus\r\n"
	"Status: 5.7.x\r\n"
	"Diagnostic-Code: X-Postfix; mail for example.org loops back to myself\r\n"
	"\r\n"
	DSN_TAIL;

static void
test_multi(void **state)
{
	struct dsn d;
	bool soft;

	(void)state;
	parse_ok(multi, sizeof(multi) - 1, &d);
	check_sane(&d);
	assert_false(d.fallback);
	assert_string_equal(d.envid, "env-77");
	assert_string_equal(d.reporting_mta, "mx.example");
	assert_int_equal(d.nrcpt, 5);

	assert_string_equal(d.rcpt[0].final_rcpt, "a@example.org");
	assert_int_equal(d.rcpt[0].action, DSN_ACTION_FAILED);
	assert_string_equal(d.rcpt[0].status, "5.1.1");
	assert_string_equal(d.rcpt[0].diag_type, "smtp");
	assert_string_equal(d.rcpt[0].diag_text,
	    "550-5.1.1 The email account that you tried to reach does not exist. "
	    "550 5.1.1 Please try again.");
	assert_int_equal(d.rcpt[0].code, 550);
	assert_string_equal(d.rcpt[0].diag_status, "5.1.1");
	assert_string_equal(d.rcpt[0].remote_mta, "mx.example.org");
	assert_int_equal(classify(&d.rcpt[0], &soft), BOUNCE_UNKNOWN_USER);

	assert_string_equal(d.rcpt[1].orig_rcpt, "b@example.org");
	assert_string_equal(d.rcpt[1].final_rcpt, "b@example.org");
	assert_int_equal(d.rcpt[1].action, DSN_ACTION_DELIVERED);
	assert_int_equal(classify(&d.rcpt[1], &soft), BOUNCE_NONE);
	assert_string_equal(d.rcpt[2].final_rcpt, "c@example.org");
	assert_int_equal(d.rcpt[2].action, DSN_ACTION_RELAYED);
	assert_int_equal(d.rcpt[3].action, DSN_ACTION_EXPANDED);
	assert_string_equal(dsn_action_name(d.rcpt[3].action), "expanded");

	assert_int_equal(d.rcpt[4].action, DSN_ACTION_NONE);
	assert_string_equal(d.rcpt[4].status, "");	/* "5.7.x" is no status */
	assert_string_equal(d.rcpt[4].diag_type, "x-postfix");
	assert_int_equal(d.rcpt[4].code, 0);
	assert_int_equal(classify(&d.rcpt[4], &soft), BOUNCE_OTHER);
	dsn_free(&d);
}

static void
test_bounds(void **state)
{
	size_t cap = 256 * 1024, n = 0, i;
	char *m = malloc(cap);
	struct dsn d;

	(void)state;
	assert_non_null(m);
	n += (size_t)snprintf(m + n, cap - n, "%s", DSN_HEAD "Reporting-MTA: dns; mx\r\n\r\n");
	/* One Diagnostic-Code folded over many lines, past every bound. */
	n += (size_t)snprintf(m + n, cap - n, "Final-Recipient: rfc822; long@example.org\r\n"
	    "Action: failed\r\nDiagnostic-Code: smtp; 550 5.7.1 ");
	for (i = 0; i < 600; i++)
		n += (size_t)snprintf(m + n, cap - n, " \xe3\x81\x82\xe3\x81\x84 blocked %zu\r\n", i);
	n += (size_t)snprintf(m + n, cap - n, "\r\n");
	/* More recipients than are kept. */
	for (i = 0; i < DSN_RCPT_MAX + 50; i++)
		n += (size_t)snprintf(m + n, cap - n,
		    "Final-Recipient: rfc822; r%zu@example.org\r\nAction: failed\r\n"
		    "Status: 5.1.1\r\n\r\n", i);
	n += (size_t)snprintf(m + n, cap - n, "%s", DSN_TAIL);
	assert_true(n < cap - 1);

	parse_ok(m, n, &d);
	check_sane(&d);
	assert_int_equal(d.nrcpt, DSN_RCPT_MAX);
	assert_true(d.truncated);
	assert_string_equal(d.rcpt[0].final_rcpt, "long@example.org");
	assert_int_equal(strlen(d.rcpt[0].diag_text) < DSN_TEXT_MAX, true);
	assert_true(strlen(d.rcpt[0].diag_text) > DSN_TEXT_MAX - 16);
	assert_int_equal(d.rcpt[0].code, 550);
	assert_string_equal(d.rcpt[0].diag_status, "5.7.1");
	assert_string_equal(d.rcpt[DSN_RCPT_MAX - 1].final_rcpt, "r98@example.org");
	dsn_free(&d);
	free(m);
}

/* Controls and 8-bit garbage in fields come out printable and UTF-8. */
static const char dirty[] = DSN_HEAD
	"Reporting-MTA: dns; mx\x1b[31m.example\r\n"
	"Original-Envelope-Id: \xff\xfe id\r\n"
	"\r\n"
	"Final-Recipient: rfc822; x@example.org\r\n"
	"Action: failed\r\n"
	"Status: 5.0.0\r\n"
	"Diagnostic-Code: smtp; 554 \x01\x02\xc3 bad \x7f bytes\r\n"
	"\r\n"
	DSN_TAIL;

static void
test_dirty(void **state)
{
	struct dsn d;

	(void)state;
	parse_ok(dirty, sizeof(dirty) - 1, &d);
	check_sane(&d);
	assert_string_equal(d.reporting_mta, "mx[31m.example");
	assert_int_equal(d.rcpt[0].code, 554);
	dsn_free(&d);
}

/* RFC 6533: message/global-delivery-status, UTF-8 addresses. */
static const char global[] =
	"From: MAILER-DAEMON@mx.example\r\n"
	"Subject: Delivery Status Notification\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/report; report-type=global-delivery-status; boundary=\"G\"\r\n"
	"\r\n"
	"--G\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"\r\n"
	"Failed.\r\n"
	"--G\r\n"
	"Content-Type: message/global-delivery-status\r\n"
	"\r\n"
	"Reporting-MTA: dns; mx.example\r\n"
	"\r\n"
	"Final-Recipient: utf-8; \xe5\xa4\xaa\xe9\x83\x8e@example.jp\r\n"
	"Action: failed\r\n"
	"Status: 5.1.1\r\n"
	"\r\n"
	"--G\r\n"
	"Content-Type: message/global-headers\r\n"
	"\r\n"
	"Message-ID: <g1@shop.hato.test>\r\n"
	"\r\n"
	"--G--\r\n";

static void
test_global(void **state)
{
	struct dsn d;

	(void)state;
	parse_ok(global, sizeof(global) - 1, &d);
	check_sane(&d);
	assert_string_equal(d.rcpt[0].final_rcpt, "\xe5\xa4\xaa\xe9\x83\x8e@example.jp");
	assert_string_equal(d.rcpt[0].status, "5.1.1");
	assert_string_equal(d.message_id, "g1@shop.hato.test");
	dsn_free(&d);
}

/* A report without diagnostics: the reply comes from the text part. */
static const char no_diag[] =
	"From: MAILER-DAEMON@mx.example\r\n"
	"Subject: Undelivered Mail Returned to Sender\r\n"
	"References: <older@x> <20261123.77.dm@shop.hato.test>\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/report; report-type=delivery-status; boundary=\"N\"\r\n"
	"\r\n"
	"--N\r\n"
	"Content-Type: text/plain\r\n"
	"\r\n"
	"<taro@docomo.ne.jp>: host mfsmax.docomo.ne.jp[203.0.113.5] said: 552 too much\r\n"
	"    mail data (in reply to end of DATA command)\r\n"
	"--N\r\n"
	"Content-Type: message/delivery-status\r\n"
	"\r\n"
	"Reporting-MTA: dns; mx.example\r\n"
	"\r\n"
	"Final-Recipient: rfc822; taro@docomo.ne.jp\r\n"
	"Action: failed\r\n"
	"Status: 5.0.0\r\n"
	"\r\n"
	"--N--\r\n";

static void
test_no_diag(void **state)
{
	struct dsn d;
	bool soft;

	(void)state;
	parse_ok(no_diag, sizeof(no_diag) - 1, &d);
	assert_string_equal(d.rcpt[0].diag_text, "552 too much mail data");
	assert_int_equal(d.rcpt[0].code, 552);
	assert_int_equal(d.rcpt[0].command, DSN_CMD_DOT);
	/* No returned headers: the bounce's own References. */
	assert_string_equal(d.message_id, "20261123.77.dm@shop.hato.test");
	assert_int_equal(classify(&d.rcpt[0], &soft), BOUNCE_MAILBOX_FULL);
	assert_true(soft);
	dsn_free(&d);
}

/* ---------------------------------------------------- fallback layouts */

struct fb_case {
	const char *name;
	const char *mail;
	const char *rcpt;
	enum dsn_action action;
	int code;
	const char *status;
	const char *diag;
	enum dsn_command command;
	enum bounce_class class;
};

static const struct fb_case fb_cases[] = {
	/* Postfix without a delivery-status part. */
	{ "postfix text",
	  "From: MAILER-DAEMON@mx.example (Mail Delivery System)\n"
	  "Subject: Undelivered Mail Returned to Sender\n\n"
	  "This is the mail system at host mx.example.\n\n"
	  "<taro@example.jp>: host mx.example.jp[192.0.2.1] said: 550 5.7.1\n"
	  "    <taro@example.jp>: Recipient address rejected: blocked by policy (in\n"
	  "    reply to RCPT TO command)\n",
	  "taro@example.jp", DSN_ACTION_FAILED, 550, "5.7.1",
	  "550 5.7.1 <taro@example.jp>: Recipient address rejected: blocked by policy",
	  DSN_CMD_RCPT, BOUNCE_POLICY },
	/* au EZweb's notice (sisimai's Lhost EZweb layout). */
	{ "ezweb",
	  "From: <Postmaster@ezweb.ne.jp>\n"
	  "Subject: Mail System Error - Returned Mail\n\n"
	  "The user(s) account is disabled.\n\n"
	  "<hanako@ezweb.ne.jp>: 550 user unknown (in reply to RCPT TO command)\n",
	  "hanako@ezweb.ne.jp", DSN_ACTION_FAILED, 550, "",
	  "550 user unknown", DSN_CMD_RCPT, BOUNCE_UNKNOWN_USER },
	/* A carrier's legacy local part, quoted, in a sendmail list. */
	{ "legacy local part",
	  "From: Mail Delivery Subsystem <MAILER-DAEMON@relay.example.jp>\n"
	  "Subject: Returned mail: see transcript for details\n\n"
	  "   ----- The following addresses had permanent fatal errors -----\n"
	  "<\"taro..\"@docomo.ne.jp>\n"
	  "    (reason: 550 Unknown user taro..@docomo.ne.jp)\n\n"
	  "   ----- Transcript of session follows -----\n"
	  "... while talking to mfsmax.docomo.ne.jp.:\n"
	  ">>> RCPT To:<\"taro..\"@docomo.ne.jp>\n"
	  "<<< 550 Unknown user taro..@docomo.ne.jp\n"
	  "550 5.1.1 <\"taro..\"@docomo.ne.jp>... User unknown\n",
	  "taro..@docomo.ne.jp", DSN_ACTION_FAILED, 550, "",
	  "550 Unknown user taro..@docomo.ne.jp", DSN_CMD_RCPT, BOUNCE_UNKNOWN_USER },
	/* A delay warning in text: 4xx -> delayed. */
	{ "exim delay",
	  "From: Mail Delivery System <Mailer-Daemon@mx.example>\n"
	  "Subject: Warning: message 1abc delayed 24 hours\n\n"
	  "This message was created automatically by mail delivery software.\n"
	  "A message that you sent has not yet been delivered to one or more of its\n"
	  "recipients after more than 24 hours on the queue on mx.example.\n\n"
	  "The following address(es) deferred:\n\n"
	  "  slow@example.org\n"
	  "    host mx.example.org [192.0.2.7]: 451 4.3.0 Temporary lookup failure\n\n"
	  "No action is required on your part.\n",
	  "slow@example.org", DSN_ACTION_DELAYED, 451, "4.3.0",
	  "451 4.3.0 Temporary lookup failure", DSN_CMD_UNKNOWN, BOUNCE_TEMPORARY },
	/* Only Exim's X-Failed-Recipients names the address. */
	{ "x-failed-recipients",
	  "From: postmaster@mx.example\n"
	  "X-Failed-Recipients: gone@example.org\n"
	  "Subject: failed\n\n"
	  "Sorry: 550 5.1.2 host unknown.\n",
	  "gone@example.org", DSN_ACTION_FAILED, 550, "5.1.2",
	  "550 5.1.2 host unknown.", DSN_CMD_UNKNOWN, BOUNCE_UNKNOWN_DOMAIN },
	/* DSN fields pasted into a text/plain bounce. */
	{ "fields in text",
	  "From: MAILER-DAEMON@mx.example\n"
	  "Subject: Returned mail\n\n"
	  "Your message could not be delivered.\n\n"
	  "Reporting-MTA: dns; mx.example\n\n"
	  "Final-Recipient: rfc822; big@example.org\n"
	  "Action: failed\n"
	  "Status: 5.3.4\n"
	  "Diagnostic-Code: smtp; 552 5.3.4 Message size exceeds fixed limit\n",
	  "big@example.org", DSN_ACTION_FAILED, 552, "5.3.4",
	  "552 5.3.4 Message size exceeds fixed limit", DSN_CMD_UNKNOWN, BOUNCE_TOO_BIG },
	/* Last resort: an address and a code on one line. */
	{ "generic",
	  "From: Mail Administrator <postmaster@mx.example>\n"
	  "Subject: Undeliverable: hello\n\n"
	  "Delivery failed for the following recipient:\n"
	  "  full@example.org - 552 Requested mail action aborted: exceeded storage allocation\n",
	  "full@example.org", DSN_ACTION_FAILED, 552, "",
	  "552 Requested mail action aborted: exceeded storage allocation",
	  DSN_CMD_UNKNOWN, BOUNCE_MAILBOX_FULL },
};

static void
test_fallback_cases(void **state)
{
	const struct fb_case *c;
	struct dsn d;
	size_t i;
	bool soft;

	(void)state;
	for (i = 0; i < sizeof(fb_cases) / sizeof(fb_cases[0]); i++) {
		c = &fb_cases[i];
		print_message("  %s\n", c->name);
		parse_ok(c->mail, strlen(c->mail), &d);
		check_sane(&d);
		assert_true(d.fallback);
		assert_int_equal(d.nrcpt, 1);
		assert_string_equal(d.rcpt[0].final_rcpt, c->rcpt);
		assert_int_equal(d.rcpt[0].action, c->action);
		assert_int_equal(d.rcpt[0].code, c->code);
		assert_string_equal(dsn_rcpt_status(&d.rcpt[0]), c->status);
		assert_string_equal(d.rcpt[0].diag_text, c->diag);
		assert_int_equal(d.rcpt[0].command, c->command);
		assert_string_equal(bounce_class_name(classify(&d.rcpt[0], &soft)),
		    bounce_class_name(c->class));
		dsn_free(&d);
	}
}

/* ------------------------------------------------------------ damage */

static const char *sample_files[] = {
	"postfix-failed.eml", "postfix-failed-hdrs.eml", "postfix-docomo-dot.eml",
	"postfix-delayed.eml", "exim-failed.eml", "exim-plain.eml",
	"jp-carrier-iso2022jp.eml", "qmail-failed.eml", "sendmail-plain.eml",
	"not-a-bounce.eml",
};

static void
try_parse(const char *data, size_t len)
{
	struct dsn d;
	char err[64];

	if (dsn_parse(data, len, &d, err, sizeof(err)) == 0) {
		check_sane(&d);
		dsn_free(&d);
	} else {
		assert_int_equal(d.nrcpt, 0);
		assert_true(strlen(err) < sizeof(err));
	}
}

/* Every sample cut at every length (in steps), then with bytes damaged. */
static void
test_damage(void **state)
{
	uint32_t seed = 12345;
	size_t f, len, cut, k;
	char *data, *copy;

	(void)state;
	for (f = 0; f < sizeof(sample_files) / sizeof(sample_files[0]); f++) {
		data = load(sample_files[f], &len);
		for (cut = 0; cut <= len; cut += 5) {
			copy = malloc(cut + 1);	/* exact size: ASan sees overreads */
			assert_non_null(copy);
			memcpy(copy, data, cut);
			try_parse(copy, cut);
			free(copy);
		}
		copy = malloc(len);
		assert_non_null(copy);
		for (k = 0; k < 300; k++) {
			size_t j, flips = 1 + k % 8;

			memcpy(copy, data, len);
			for (j = 0; j < flips; j++) {
				seed = seed * 1103515245u + 12345u;
				copy[(seed >> 8) % len] = (char)(seed >> 16);
			}
			try_parse(copy, len);
		}
		free(copy);
		free(data);
	}
}

/* Random bytes, and random lines of bounce-like words. */
static void
test_garbage(void **state)
{
	static const char *words[] = { "Final-Recipient: rfc822; a@b.example",
	    "Action: failed", "Status: 5.1.1", "Diagnostic-Code: smtp; 550 x",
	    "<a@b.example>:", "550 5.1.1 user unknown", ">>> DATA", "<<< 550 no",
	    "   ----- The following addresses had permanent fatal errors -----",
	    "The following address(es) failed:", "  c@d.example", "\t",
	    "宛先：<e@f.example>", "--- Below this line is a copy of the message.",
	    "Message-ID: <x@y>", "", "(reason: 550 x)", "host x.example said: 550",
	    "Content-Type: multipart/report; boundary=q", "--q",
	    "Content-Type: message/delivery-status", "\x1b$B$\"\x1b(B", "@@@<>:" };
	uint32_t seed = 777;
	char buf[4096];
	size_t i, n, k;

	(void)state;
	for (i = 0; i < 400; i++) {
		n = 0;
		if (i % 2 == 0)
			n += (size_t)snprintf(buf, sizeof(buf),
			    "From: MAILER-DAEMON@x.example\nSubject: failure notice\n\n");
		while (n < sizeof(buf) - 200) {
			seed = seed * 1103515245u + 12345u;
			if (i % 4 == 3) {
				buf[n++] = (char)(seed >> 16);
				continue;
			}
			k = (seed >> 16) % (sizeof(words) / sizeof(words[0]));
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s\n", words[k]);
			if ((seed >> 8) % 50 == 0)
				break;
		}
		try_parse(buf, n);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_samples),
		cmocka_unit_test(test_sample_details),
		cmocka_unit_test(test_not_a_bounce),
		cmocka_unit_test(test_ds_errors),
		cmocka_unit_test(test_multi),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_dirty),
		cmocka_unit_test(test_global),
		cmocka_unit_test(test_no_diag),
		cmocka_unit_test(test_fallback_cases),
		cmocka_unit_test(test_damage),
		cmocka_unit_test(test_garbage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
