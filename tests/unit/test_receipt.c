/*
 * receipt: receipts, error receipts and completion reports, read back with
 * the same MIME reader intake uses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "intake/receipt.h"
#include "mail/mime.h"

static const struct notice_head head = {
	.from = "dm@hato.test", .to = "dm-team@example.co.jp", .domain = "gw.hato.test",
	.in_reply_to = "abc.123@client.example",
};

static void
parse(const char *msg, struct mime_msg *m)
{
	char err[200];

	assert_non_null(msg);
	assert_int_equal(mime_parse(msg, strlen(msg), m, err, sizeof(err)), 0);
}

static void
headers_ok(const char *msg, const struct mime_msg *m)
{
	assert_string_equal(mime_header(m, "Auto-Submitted"), "auto-replied");
	assert_string_equal(mime_header(m, "X-Auto-Response-Suppress"), "All");
	assert_string_equal(mime_header(m, "In-Reply-To"), "<abc.123@client.example>");
	assert_string_equal(mime_header(m, "References"), "<abc.123@client.example>");
	assert_string_equal(m->from, "dm@hato.test");
	/* CRLF line ends only; no bare LF. */
	for (const char *p = msg; *p; p++)
		if (*p == '\n')
			assert_true(p > msg && p[-1] == '\r');
}

static void
accepted(void **state)
{
	struct receipt_dest dests[] = {
		{ "relay:docomo", { [RO_ACCEPTED] = 2 } },
		{ "pace:au", { [RO_ACCEPTED] = 1, [RO_SUPPRESSED] = 1 } },
		{ "(not routed)", { [RO_INVALID] = 1, [RO_DUPLICATE] = 1 } },
	};
	struct receipt_reject rej[] = {
		{ "bad@@example", RO_INVALID, "two @", "To", 2 },
		{ "taro@docomo.ne.jp", RO_DUPLICATE, "given before", "list.csv", 7 },
		{ "gone@ezweb.ne.jp", RO_SUPPRESSED, "unsubscribed", NULL, 0 },
	};
	struct receipt r = {
		.h = head, .job_id = 123, .subject = "週末セール", .dests = dests, .ndests = 3,
		.total = { [RO_ACCEPTED] = 3, [RO_INVALID] = 1, [RO_DUPLICATE] = 1, [RO_SUPPRESSED] = 1 },
		.rejects = rej, .nrejects = 3, .send_at = 1922313600,	/* 2030-12-01 09:00 JST */
	};
	struct mime_msg m;
	size_t len;
	char *msg;

	(void)state;
	setenv("TZ", "Asia/Tokyo", 1);
	tzset();
	msg = receipt_compose(&r, time(NULL), &len);
	assert_int_equal(len, strlen(msg));
	parse(msg, &m);
	headers_ok(msg, &m);
	assert_string_equal(m.subject, "[Hato] job 123 accepted: 3 recipients");
	assert_non_null(strstr(m.text, "Your submission is job 123."));
	assert_non_null(strstr(m.text, "Subject: 週末セール"));
	assert_non_null(strstr(m.text, "2030-12-01 09:00:00 JST"));
	assert_non_null(strstr(m.text, "relay:docomo             accepted 2"));
	assert_non_null(strstr(m.text, "pace:au                  accepted 1 suppressed 1"));
	assert_non_null(strstr(m.text, "bad@@example: invalid (two @), To line 2"));
	assert_non_null(strstr(m.text, "taro@docomo.ne.jp: duplicate (given before), list.csv line 7"));
	assert_non_null(strstr(m.text, "gone@ezweb.ne.jp: suppressed (unsubscribed)"));
	assert_null(strstr(m.text, "HELD"));
	assert_int_equal(m.nattach, 0);
	mime_msg_free(&m);
	free(msg);
}

static void
held_and_long(void **state)
{
	struct receipt_reject *rej = calloc(60, sizeof(*rej));
	char (*addr)[40] = calloc(60, sizeof(*addr));
	struct receipt r = { .h = head, .job_id = 7, .confirm_code = "K7QX2M", .hold_expires = 1922918400 };
	struct mime_msg m;
	char *msg;

	(void)state;
	for (int i = 0; i < 60; i++) {
		snprintf(addr[i], sizeof(addr[i]), "x%d@,bad", i);
		rej[i] = (struct receipt_reject){ addr[i], RO_INVALID, "no \"domain\"", "big.csv", (size_t)i + 2 };
	}
	r.rejects = rej;
	r.nrejects = 60;
	r.total[RO_ACCEPTED] = 1;
	r.total[RO_INVALID] = 60;
	msg = receipt_compose(&r, time(NULL), NULL);
	parse(msg, &m);
	headers_ok(msg, &m);
	assert_string_equal(m.subject, "[Hato] job 7 held for approval (code K7QX2M): 1 recipient");
	assert_non_null(strstr(m.text, "hatoctl job approve 7"));
	assert_non_null(strstr(m.text, "keeping the code K7QX2M in the subject"));
	assert_non_null(strstr(m.text, "rejected.csv"));
	assert_null(strstr(m.text, "x1@,bad"));	/* not inline */
	assert_int_equal(m.nattach, 1);
	assert_string_equal(m.attachments[0].content_type, "text/csv");
	assert_string_equal(m.attachments[0].filename, "rejected.csv");
	/* Quoted CSV fields: the comma and the quotes survive. */
	assert_non_null(strstr(m.attachments[0].data, "address,outcome,reason,source,line\r\n"));
	assert_non_null(strstr(m.attachments[0].data, "\"x0@,bad\",invalid,\"no \"\"domain\"\"\",big.csv,2\r\n"));
	mime_msg_free(&m);
	free(msg);
	free(rej);
	free(addr);
}

static void
refused(void **state)
{
	struct notice_head h = head;
	struct receipt r = { .error = "authentication failed: wrong or missing Token" };
	struct mime_msg m;
	char *msg;

	(void)state;
	/* A Message-ID that could smuggle a header is left out. */
	h.in_reply_to = "x>\r\nBcc: victim@example.com";
	r.h = h;
	msg = receipt_compose(&r, time(NULL), NULL);
	parse(msg, &m);
	assert_null(mime_header(&m, "In-Reply-To"));
	assert_null(mime_header(&m, "Bcc"));
	assert_string_equal(m.subject, "[Hato] submission refused: authentication failed: wrong or missing Token");
	assert_non_null(strstr(m.text, "no job was created and nothing will be sent"));
	mime_msg_free(&m);
	free(msg);
	/* A recipient address that is no address: nothing written. */
	h.to = "a@b>\r\nBcc: x@y";
	r.h = h;
	assert_null(receipt_compose(&r, time(NULL), NULL));
}

static void
report(void **state)
{
	struct report_dest dests[] = {
		{ "relay:docomo", 10, 2, 1, 0, 0 },
		{ "mx:example.com", 5, 0, 0, 3, 0 },
	};
	struct report_failure f[] = {
		{ "a@docomo.ne.jp", 550, "5.1.1", "user unknown" },
		{ "b@docomo.ne.jp", 0, "", "gave up after 5 attempts: connection refused, \"again\"" },
	};
	struct report r = { .h = head, .job_id = 42, .subject = "お知らせ", .state = "done",
	    .dests = dests, .ndests = 2, .failures = f, .nfailures = 2 };
	struct mime_msg m;
	char *msg;

	(void)state;
	msg = report_compose(&r, time(NULL), NULL);
	parse(msg, &m);
	headers_ok(msg, &m);
	assert_string_equal(m.subject, "[Hato] job 42 finished: 15 sent, 2 failed");
	assert_non_null(strstr(m.text, "relay:docomo             sent 10, failed 2, suppressed 1, cancelled 0"));
	assert_non_null(strstr(m.text, "In all: sent 15, failed 2, suppressed 1, cancelled 3"));
	assert_int_equal(m.nattach, 1);
	assert_string_equal(m.attachments[0].filename, "failures.csv");
	assert_non_null(strstr(m.attachments[0].data, "a@docomo.ne.jp,550,5.1.1,user unknown\r\n"));
	assert_non_null(strstr(m.attachments[0].data,
	    "b@docomo.ne.jp,,,\"gave up after 5 attempts: connection refused, \"\"again\"\"\"\r\n"));
	mime_msg_free(&m);
	free(msg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(accepted),
		cmocka_unit_test(held_and_long),
		cmocka_unit_test(refused),
		cmocka_unit_test(report),
	};
	mime_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
