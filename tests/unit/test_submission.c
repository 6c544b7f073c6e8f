/*
 * test_submission: submission mails, read by mime_parse and then
 * submission_parse. The mail is always freed before the submission is
 * looked at: the submission owns its strings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "intake/submission.h"
#include "mail/mime.h"

static int
parse_mail(const char *mail, size_t len, struct submission *s, char *err, size_t errlen)
{
	struct mime_msg m;
	char merr[256];
	int rc;

	if (mime_parse(mail, len, &m, merr, sizeof(merr)) != 0)
		fail_msg("mime_parse: %s", merr);
	rc = submission_parse(&m, s, err, errlen);
	mime_msg_free(&m);
	return rc;
}

/* A one-part UTF-8 mail around text. */
static int
parse_text(const char *text, struct submission *s, char *err, size_t errlen)
{
	char mail[4096];
	int n;

	n = snprintf(mail, sizeof(mail), "From: sender@example.jp\r\n"
	    "Subject: =?UTF-8?B?5Lu25ZCN?=\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=UTF-8\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n\r\n%s", text);
	assert_true(n > 0 && (size_t)n < sizeof(mail));
	return parse_mail(mail, (size_t)n, s, err, errlen);
}

/* Recipient i of s, as sub_next gives it back (a list is read in order,
 * not indexed). Each call has its own slot among the last eight. */
static const struct sub_rcpt *
rcpt_at(const struct submission *s, size_t i)
{
	static struct sub_rcpt got[8];
	static unsigned k;
	struct sub_rcpt *r = &got[k++ % 8];
	struct sub_iter it;
	size_t n = 0;

	sub_first(&it, s);
	while (sub_next(&it, r))
		if (n++ == i)
			return r;
	fail_msg("no recipient %zu (of %zu)", i, s->nrcpt);
	return NULL;
}

static void
expect_rcpt(const struct sub_rcpt *r, const char *raw, enum rcpt_verdict v,
    const char *reason, const char *source, size_t line)
{
	if (strcmp(r->raw, raw) != 0 || r->verdict != v ||
	    strcmp(r->source, source) != 0 || r->line != line ||
	    (reason != NULL && (r->reason == NULL || strcmp(r->reason, reason) != 0)))
		fail_msg("rcpt '%s' verdict %d reason '%s' source '%s' line %u; "
		    "want '%s' %d '%s' '%s' %zu", r->raw, r->verdict,
		    r->reason ? r->reason : "", r->source, r->line,
		    raw, v, reason ? reason : "", source, line);
}

static void
test_design_example(void **state)
{
	struct mail_addr a;
	struct submission s;
	char err[256];
	char buf[ADDR_MAX * 2];

	(void)state;
	if (parse_text("Token: 7f3c9a\r\n"
	    "To: taro..@docomo.ne.jp, hanako@ezweb.ne.jp\r\n"
	    "To: jiro@i.softbank.jp\r\n"
	    "Subject: 週末限定セールのお知らせ\r\n"
	    "Send-At: 2026-12-01 09:00\r\n"
	    "Dry-Run: yes\r\n"
	    "\r\n"
	    "本文はここから。\r\n"
	    "二行目\r\n", &s, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_string_equal(s.token, "7f3c9a");
	assert_string_equal(s.subject, "週末限定セールのお知らせ");
	assert_string_equal(s.send_at, "2026-12-01 09:00");
	assert_true(s.dry_run);
	assert_string_equal(s.body, "本文はここから。\n二行目\n");
	assert_int_equal(s.nrcpt, 3);
	assert_int_equal(s.naccepted, 3);
	expect_rcpt(rcpt_at(&s, 0), "taro..@docomo.ne.jp", RCPT_ACCEPTED, NULL, "To", 2);
	expect_rcpt(rcpt_at(&s, 1), "hanako@ezweb.ne.jp", RCPT_ACCEPTED, NULL, "To", 2);
	expect_rcpt(rcpt_at(&s, 2), "jiro@i.softbank.jp", RCPT_ACCEPTED, NULL, "To", 3);
	assert_true(rcpt_at(&s, 0)->needs_quote);
	assert_string_equal(rcpt_at(&s, 0)->addr, "taro..@docomo.ne.jp");
	assert_string_equal(rcpt_at(&s, 0)->domain, "docomo.ne.jp");
	sub_rcpt_addr(rcpt_at(&s, 0), &a);
	addr_format(&a, buf, sizeof(buf));
	assert_string_equal(buf, "\"taro..\"@docomo.ne.jp");
	submission_free(&s);
}

/* Keys in any case; names and quoted commas in To; folded values; the
 * full-width colon; blank lines before the block; the mail's Subject. */
static void
test_control_forms(void **state)
{
	struct mail_addr a;
	struct submission s;
	char err[256];

	(void)state;
	if (parse_text("\r\n"
	    "to: \"Yamada, Taro\" <taro@docomo.ne.jp>; Hanako <hanako@ezweb.ne.jp>,\r\n"
	    "  jiro@i.softbank.jp,\r\n"
	    "\tsaburo@docomo.ne.jp\r\n"
	    "TO\xef\xbc\x9a shiro@au.com\r\n"
	    "dry-RUN: No\r\n"
	    "\r\n"
	    "body\r\n", &s, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_null(s.token);
	assert_null(s.send_at);
	assert_false(s.dry_run);
	assert_string_equal(s.subject, "件名");	/* the mail's own */
	assert_string_equal(s.body, "body\n");
	assert_int_equal(s.nrcpt, 5);
	assert_int_equal(s.naccepted, 5);
	expect_rcpt(rcpt_at(&s, 0), "\"Yamada, Taro\" <taro@docomo.ne.jp>",
	    RCPT_ACCEPTED, NULL, "To", 2);
	expect_rcpt(rcpt_at(&s, 1), "Hanako <hanako@ezweb.ne.jp>", RCPT_ACCEPTED, NULL, "To", 2);
	expect_rcpt(rcpt_at(&s, 2), "jiro@i.softbank.jp", RCPT_ACCEPTED, NULL, "To", 3);
	expect_rcpt(rcpt_at(&s, 3), "saburo@docomo.ne.jp", RCPT_ACCEPTED, NULL, "To", 4);
	expect_rcpt(rcpt_at(&s, 4), "shiro@au.com", RCPT_ACCEPTED, NULL, "To", 5);
	sub_rcpt_addr(rcpt_at(&s, 0), &a);
	assert_string_equal(a.local, "taro");
	submission_free(&s);
}

static void
test_dry_run(void **state)
{
	static const struct {
		const char *value;
		int want;	/* -1: refused */
	} cases[] = {
		{ "yes", 1 }, { "YES", 1 }, { "true", 1 }, { "1", 1 },
		{ "no", 0 }, { "No", 0 }, { "false", 0 }, { "0", 0 },
		{ "maybe", -1 }, { "", -1 }, { "y", -1 }, { "2", -1 },
	};
	struct submission s;
	char text[128], err[256], want[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "To: a@example.jp\nDry-Run: %s\n\nbody\n",
		    cases[i].value);
		err[0] = '\0';
		if (parse_text(text, &s, err, sizeof(err)) == -1) {
			snprintf(want, sizeof(want), "control block line 2: Dry-Run "
			    "must be yes or no, not '%s'", cases[i].value);
			if (cases[i].want != -1 || strcmp(err, want) != 0)
				fail_msg("'%s': %s", cases[i].value, err);
			continue;
		}
		if (cases[i].want != (int)s.dry_run)
			fail_msg("'%s': dry_run %d", cases[i].value, s.dry_run);
		submission_free(&s);
	}
}

static void
test_errors(void **state)
{
	static const struct {
		const char *text, *err;
	} cases[] = {
		{ "本文だけです。\n",
		  "no control block: the first text/plain part must start with "
		  "Key: value lines (To:, Subject:, ...)" },
		{ "Bcc: x@example.jp\nTo: a@example.jp\n\nbody\n",
		  "no control block: the first text/plain part must start with "
		  "Key: value lines (To:, Subject:, ...)" },
		{ "\n\n",
		  "no control block: the first text/plain part must start with "
		  "Key: value lines (To:, Subject:, ...)" },
		{ "To: a@example.jp\nSubject: s\nBcc: x@example.jp\n\nbody\n",
		  "control block line 3: unknown key 'Bcc'" },
		{ "To: a@example.jp\nReply-To: x@example.jp\n\nbody\n",
		  "control block line 2: unknown key 'Reply-To'" },
		{ "To: a@example.jp\n宛先: b@example.jp\n\nbody\n",
		  "control block line 2: unknown key '宛先'" },
		{ "To: a@example.jp\njust a line\n\nbody\n",
		  "control block line 2: not a Key: value line (end the control "
		  "block with an empty line)" },
		{ "To: a@example.jp\nSubject: a\nSubject: b\n\nbody\n",
		  "control block line 3: Subject given twice" },
		{ "Token: a\nTo: a@example.jp\ntoken: b\n\nbody\n",
		  "control block line 3: Token given twice" },
		{ "Subject: s\n\nbody\n",
		  "no recipients: add To: lines or a CSV attachment" },
		{ "To: \nSubject: s\n\nbody\n",
		  "no recipients: add To: lines or a CSV attachment" },
		{ "To: a@example.jp\n\n \n\n",
		  "empty DM body: write the text after the control block and an empty line" },
		{ "To: a@example.jp\n",
		  "empty DM body: write the text after the control block and an empty line" },
	};
	struct submission s;
	char err[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		if (parse_text(cases[i].text, &s, err, sizeof(err)) != -1)
			fail_msg("case %zu: accepted", i);
		if (strcmp(err, cases[i].err) != 0)
			fail_msg("case %zu: '%s'", i, err);
		/* failure leaves nothing to free */
		assert_null(s.blocks);
		assert_int_equal(s.nrcpt, 0);
	}
}

static void
test_no_text_part(void **state)
{
	static const char mail[] =
		"From: a@example.jp\r\n"
		"Content-Type: text/html; charset=UTF-8\r\n\r\n"
		"<p>To: a@example.jp</p>\r\n";
	struct submission s;
	char err[256];

	(void)state;
	assert_int_equal(parse_mail(mail, sizeof(mail) - 1, &s, err, sizeof(err)), -1);
	assert_string_equal(err, "no text/plain part: the submission must have "
	    "one, starting with the control block");
}

/* Duplicates: same local part (case kept) and domain (case ignored). */
static void
test_verdicts(void **state)
{
	struct submission s;
	char err[256];

	(void)state;
	if (parse_text("To: taro@docomo.ne.jp, Taro@docomo.ne.jp\n"
	    "To: taro@DOCOMO.NE.JP., taro docomo.ne.jp\n"
	    "To: taro..@docomo.ne.jp, \"taro..\"@docomo.ne.jp, <Taro@docomo.ne.jp>\n"
	    "To: ta ro@docomo.ne.jp, taro@localhost\n"
	    "\nbody\n", &s, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(s.nrcpt, 9);
	assert_int_equal(s.naccepted, 3);
	expect_rcpt(rcpt_at(&s, 0), "taro@docomo.ne.jp", RCPT_ACCEPTED, NULL, "To", 1);
	expect_rcpt(rcpt_at(&s, 1), "Taro@docomo.ne.jp", RCPT_ACCEPTED, NULL, "To", 1);
	expect_rcpt(rcpt_at(&s, 2), "taro@DOCOMO.NE.JP.", RCPT_DUPLICATE, NULL, "To", 2);
	expect_rcpt(rcpt_at(&s, 3), "taro docomo.ne.jp", RCPT_INVALID, "missing '@'", "To", 2);
	expect_rcpt(rcpt_at(&s, 4), "taro..@docomo.ne.jp", RCPT_ACCEPTED, NULL, "To", 3);
	expect_rcpt(rcpt_at(&s, 5), "\"taro..\"@docomo.ne.jp", RCPT_DUPLICATE, NULL, "To", 3);
	expect_rcpt(rcpt_at(&s, 6), "<Taro@docomo.ne.jp>", RCPT_DUPLICATE, NULL, "To", 3);
	expect_rcpt(rcpt_at(&s, 7), "ta ro@docomo.ne.jp", RCPT_INVALID,
	    "character not allowed in local part: ' '", "To", 4);
	expect_rcpt(rcpt_at(&s, 8), "taro@localhost", RCPT_INVALID,
	    "domain is not a fully qualified name", "To", 4);
	submission_free(&s);
}

/* The Shift_JIS CSV of test_mime, plus a To line that it repeats:
 * header row (メールアドレス,名前), CRLF, a quoted first column. */
static const char sjis_csv_mail[] =
	"From: Taro <taro@example.jp>\r\n"
	"Subject: =?ISO-2022-JP?B?GyRCPTVLdjhCRGolOyE8JWskTiQqQ04kaSQ7GyhC?=\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"=_sep\"\r\n"
	"\r\n"
	"--=_sep\r\n"
	"Content-Type: text/plain; charset=iso-2022-jp\r\n"
	"\r\n"
	"To: hanako@ezweb.ne.jp\r\n"
	"\r\n"
	"\x1b$BK\\J8$O$3$3$+$i!#\x1b(B\r\n"
	"--=_sep\r\n"
	"Content-Type: text/csv; charset=Shift_JIS\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"Content-Disposition: attachment;\r\n"
	" filename*=UTF-8''%E5%AE%9B%E5%85%88.csv\r\n"
	"\r\n"
	"g4GBW4OLg0GDaIOMg1gslryRTw0KdGFyby4uQGRvY29tby5uZS5qcCyOUpNjkb6YWQ0KImhhbmFr\r\n"
	"b0BlendlYi5uZS5qcCIsIonUjnEsIJfpltgiDQo=\r\n"
	"--=_sep\r\n"
	"Content-Type: text/plain; charset=us-ascii\r\n"
	"\r\n"
	"-- \r\n"
	"Footer added by a list server, not a list of recipients.\r\n"
	"--=_sep--\r\n";

static void
test_sjis_csv(void **state)
{
	struct submission s;
	char err[256];

	(void)state;
	if (parse_mail(sjis_csv_mail, sizeof(sjis_csv_mail) - 1, &s, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_string_equal(s.subject, "週末限定セールのお知らせ");
	assert_string_equal(s.body, "本文はここから。");
	assert_int_equal(s.nrcpt, 3);
	assert_int_equal(s.naccepted, 2);
	expect_rcpt(rcpt_at(&s, 0), "hanako@ezweb.ne.jp", RCPT_ACCEPTED, NULL, "To", 1);
	expect_rcpt(rcpt_at(&s, 1), "taro..@docomo.ne.jp", RCPT_ACCEPTED, NULL, "宛先.csv", 2);
	expect_rcpt(rcpt_at(&s, 2), "hanako@ezweb.ne.jp", RCPT_DUPLICATE, NULL, "宛先.csv", 3);
	/* both attachment recipients share one copy of the name */
	assert_ptr_equal(rcpt_at(&s, 1)->source, rcpt_at(&s, 2)->source);
	submission_free(&s);
}

/*
 * A UTF-8 CSV with a byte order mark and the awkward rows: blank lines,
 * an all-empty row, a quoted second column running over two lines,
 * doubled quotes inside a quoted first column, a quoted local part
 * written without CSV quoting, a row with no address.
 */
static const char bom_csv_mail[] =
	"From: a@example.jp\r\n"
	"Content-Type: multipart/mixed; boundary=b\r\n"
	"\r\n"
	"--b\r\n"
	"Content-Type: text/plain; charset=UTF-8\r\n"
	"\r\n"
	"Subject: DM\r\n"
	"\r\n"
	"body\r\n"
	"--b\r\n"
	"Content-Type: application/vnd.ms-excel; name=\"list.csv\"\r\n"
	"Content-Disposition: attachment; filename=\"list.csv\"\r\n"
	"\r\n"
	"\xef\xbb\xbf" "email,name,note\r\n"
	"\r\n"
	"a@example.jp,A,\"two\r\n"
	"lines, with comma\"\r\n"
	",,\r\n"
	"\"\"\"x y\"\"@example.jp\",X,\r\n"
	"\"p q\"@example.jp\r\n"
	" b@example.jp ;B\r\n"
	",no address,\r\n"
	"\"c@example.jp\"\r\n"
	"--b--\r\n";

static void
test_bom_csv(void **state)
{
	struct mail_addr a;
	struct submission s;
	char err[256];

	(void)state;
	if (parse_mail(bom_csv_mail, sizeof(bom_csv_mail) - 1, &s, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_string_equal(s.subject, "DM");
	assert_int_equal(s.nrcpt, 6);
	assert_int_equal(s.naccepted, 5);
	expect_rcpt(rcpt_at(&s, 0), "a@example.jp", RCPT_ACCEPTED, NULL, "list.csv", 3);
	expect_rcpt(rcpt_at(&s, 1), "\"x y\"@example.jp", RCPT_ACCEPTED, NULL, "list.csv", 6);
	expect_rcpt(rcpt_at(&s, 2), "\"p q\"@example.jp", RCPT_ACCEPTED, NULL, "list.csv", 7);
	expect_rcpt(rcpt_at(&s, 3), "b@example.jp", RCPT_ACCEPTED, NULL, "list.csv", 8);
	expect_rcpt(rcpt_at(&s, 4), "", RCPT_INVALID, "empty address", "list.csv", 9);
	expect_rcpt(rcpt_at(&s, 5), "c@example.jp", RCPT_ACCEPTED, NULL, "list.csv", 10);
	sub_rcpt_addr(rcpt_at(&s, 1), &a);
	assert_string_equal(a.local, "x y");
	submission_free(&s);
}

/* Lists in other shapes: a .txt of LF lines without a title row, Shift_JIS
 * without a declared charset, old Mac CR line ends; and an Excel workbook,
 * which is refused rather than read as text. */
static void
test_other_lists(void **state)
{
	static const char txt_mail[] =
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
		"--b\r\nContent-Type: text/plain\r\n\r\nTo: z@example.jp\r\n\r\nbody\r\n"
		"--b\r\nContent-Type: application/octet-stream; name=list.TXT\r\n\r\n"
		"a@example.jp\nb@example.jp\n\n\xe3\x81\x82@example.jp\r\n"
		"--b\r\nContent-Type: text/csv\r\n\r\n"
		"\x83\x81\x81[\x83\x8b\r" "c@example.jp\r" "d@example.jp,\x8eR\x93\x63\r\n"
		"--b--\r\n";
	static const char xlsx_mail[] =
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
		"--b\r\nContent-Type: text/plain\r\n\r\nTo: z@example.jp\r\n\r\nbody\r\n"
		"--b\r\nContent-Type: application/vnd.openxmlformats-officedocument"
		".spreadsheetml.sheet; name=list.xlsx\r\n"
		"Content-Transfer-Encoding: base64\r\n\r\nUEsDBBQAAAAIAA==\r\n"
		"--b--\r\n";
	struct submission s;
	char err[256];

	(void)state;
	if (parse_mail(txt_mail, sizeof(txt_mail) - 1, &s, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(s.nrcpt, 6);
	assert_int_equal(s.naccepted, 5);
	expect_rcpt(rcpt_at(&s, 1), "a@example.jp", RCPT_ACCEPTED, NULL, "list.TXT", 1);
	expect_rcpt(rcpt_at(&s, 3), "あ@example.jp", RCPT_INVALID,
	    "non-ASCII character in local part", "list.TXT", 4);
	expect_rcpt(rcpt_at(&s, 4), "c@example.jp", RCPT_ACCEPTED, NULL, "text/csv", 2);
	expect_rcpt(rcpt_at(&s, 5), "d@example.jp", RCPT_ACCEPTED, NULL, "text/csv", 3);
	submission_free(&s);

	assert_int_equal(parse_mail(xlsx_mail, sizeof(xlsx_mail) - 1, &s, err, sizeof(err)), -1);
	assert_string_equal(err, "attachment 'list.xlsx' is an Excel workbook: save the list as CSV");
}

/* 100,000 CSV lines, every tenth repeating the line before it. */
static void
test_large_list(void **state)
{
	static const char head[] =
		"From: a@example.jp\r\n"
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
		"--b\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n"
		"Subject: big\r\n\r\nbody\r\n"
		"--b\r\nContent-Type: text/csv; charset=UTF-8\r\n"
		"Content-Disposition: attachment; filename=big.csv\r\n\r\n"
		"email,name\r\n";
	const size_t lines = 100000;
	size_t i, n, cap = sizeof(head) + lines * 40 + 16;
	char *mail = malloc(cap), err[256];
	struct submission s;

	(void)state;
	assert_non_null(mail);
	n = (size_t)snprintf(mail, cap, "%s", head);
	for (i = 0; i < lines; i++)
		n += (size_t)snprintf(mail + n, cap - n, "user%06zu@Example.JP,name\r\n",
		    i % 10 == 9 ? i - 1 : i);
	n += (size_t)snprintf(mail + n, cap - n, "--b--\r\n");
	if (parse_mail(mail, n, &s, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	free(mail);
	assert_int_equal(s.nrcpt, lines);
	assert_int_equal(s.naccepted, lines - lines / 10);
	expect_rcpt(rcpt_at(&s, 0), "user000000@Example.JP", RCPT_ACCEPTED, NULL, "big.csv", 2);
	expect_rcpt(rcpt_at(&s, 9), "user000008@Example.JP", RCPT_DUPLICATE, NULL, "big.csv", 11);
	expect_rcpt(rcpt_at(&s, lines - 1), "user099998@Example.JP", RCPT_DUPLICATE,
	    NULL, "big.csv", lines + 1);
	assert_string_equal(rcpt_at(&s, lines - 2)->domain, "example.jp");
	submission_free(&s);
}

/* One To value folded over 100,000 lines: each entry keeps its own line. */
static void
test_large_to_block(void **state)
{
	static const char head[] =
		"Content-Type: text/plain; charset=UTF-8\r\n\r\n"
		"Subject: folded\r\nTo: first@example.jp,\r\n";
	const size_t lines = 100000;
	size_t i, n, cap = sizeof(head) + lines * 32 + 32;
	char *mail = malloc(cap), err[256];
	struct submission s;

	(void)state;
	assert_non_null(mail);
	n = (size_t)snprintf(mail, cap, "%s", head);
	for (i = 0; i < lines; i++)
		n += (size_t)snprintf(mail + n, cap - n, " u%zu@example.jp,\r\n", i);
	n += (size_t)snprintf(mail + n, cap - n, "\r\nbody\r\n");
	if (parse_mail(mail, n, &s, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	free(mail);
	assert_int_equal(s.nrcpt, lines + 1);
	assert_int_equal(s.naccepted, lines + 1);
	expect_rcpt(rcpt_at(&s, 1), "u0@example.jp", RCPT_ACCEPTED, NULL, "To", 3);
	expect_rcpt(rcpt_at(&s, lines), "u99999@example.jp", RCPT_ACCEPTED, NULL, "To", lines + 2);
	assert_string_equal(s.body, "body\n");
	submission_free(&s);
}

static int
setup(void **state)
{
	(void)state;
	mime_init();
	return 0;
}

static void
expect_same(const struct submission *a, const struct submission *b)
{
	struct sub_iter i, j;
	struct sub_rcpt x, y;

	assert_int_equal(a->nrcpt, b->nrcpt);
	assert_int_equal(a->naccepted, b->naccepted);
	assert_string_equal(a->body, b->body);
	sub_first(&i, a);
	sub_first(&j, b);
	while (sub_next(&i, &x)) {
		assert_true(sub_next(&j, &y));
		expect_rcpt(&y, x.raw, x.verdict, x.reason, x.source, x.line);
		assert_true((x.addr == NULL) == (y.addr == NULL));
		if (x.addr != NULL)
			assert_string_equal(x.addr, y.addr);
		assert_int_equal(x.needs_quote, y.needs_quote);
	}
	assert_false(sub_next(&j, &y));
}

/* A list of n records with every awkward shape, CRLF line ends: a title
 * row, duplicates, invalid lines, blank lines, quoted fields and a
 * quoted second column running over three lines. */
static char *
awkward_list_mail(size_t n, const char *cte, size_t *len)
{
	size_t cap = n * 80 + 1024, k;
	char *m = malloc(cap);

	assert_non_null(m);
	k = (size_t)snprintf(m, cap, "From: a@example.jp\r\n"
	    "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	    "--b\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n"
	    "To: to1@example.jp, \"q r\"@example.jp\r\n\r\nbody\r\n"
	    "--b\r\nContent-Type: text/csv; name=\"big.csv\"\r\n"
	    "Content-Transfer-Encoding: %s\r\n\r\nemail,note\r\n", cte);
	for (size_t i = 0; i < n; i++) {
		switch (i % 7) {
		case 0:
			k += (size_t)snprintf(m + k, cap - k, "u%zu@Example.JP,\"a\r\nb\r\nc\"\r\n", i);
			break;
		case 1:
			k += (size_t)snprintf(m + k, cap - k, "u%zu@example.jp\r\n", i - 1);
			break;
		case 2:
			k += (size_t)snprintf(m + k, cap - k, "not an address %zu\r\n\r\n", i);
			break;
		case 3:
			k += (size_t)snprintf(m + k, cap - k, "\"\"\"x %zu\"\"@example.jp\",x\r\n", i);
			break;
		case 4:
			k += (size_t)snprintf(m + k, cap - k, " Name %zu <n%zu@example.jp> ;y\r\n", i, i);
			break;
		default:
			k += (size_t)snprintf(m + k, cap - k, "v%zu@docomo.ne.jp\r\n", i % 50);
		}
	}
	k += (size_t)snprintf(m + k, cap - k, "--b--\r\n");
	*len = k;
	return m;
}

/* How a list is cut into chunks, and whether it is decoded from the mail
 * as it is read, never changes what is read. */
static void
test_chunked(void **state)
{
	static const size_t chunks[] = { 1, 2, 3, 5, 17, 4096 };
	const struct {
		const char *mail;
		size_t len;
	} mails[] = {
		{ sjis_csv_mail, sizeof(sjis_csv_mail) - 1 },
		{ bom_csv_mail, sizeof(bom_csv_mail) - 1 },
	};
	struct submission whole, s;
	struct mime_msg m, lazy;
	char err[256], merr[256];
	size_t biglen;
	char *big = awkward_list_mail(3000, "8bit", &biglen);

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		const char *mail = i < 2 ? mails[i].mail : big;
		size_t len = i < 2 ? mails[i].len : biglen;

		if (mime_parse(mail, len, &m, merr, sizeof(merr)) != 0 ||
		    mime_parse_lazy(mail, len, 0, &lazy, merr, sizeof(merr)) != 0)
			fail_msg("mime: %s", merr);
		if (submission_parse(&m, &whole, err, sizeof(err)) != 0)
			fail_msg("%s", err);
		for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
			if (submission_parse_chunked(&m, chunks[c], &s, err, sizeof(err)) != 0)
				fail_msg("chunk %zu: %s", chunks[c], err);
			expect_same(&whole, &s);
			submission_free(&s);
			if (submission_parse_chunked(&lazy, chunks[c], &s, err, sizeof(err)) != 0)
				fail_msg("lazy, chunk %zu: %s", chunks[c], err);
			expect_same(&whole, &s);
			submission_free(&s);
		}
		if (i == 2) {
			/* 2 To; of 3000 records (i % 7), accepted: 429 u, 429
			 * x, 428 n and the 50 distinct v of 856. */
			assert_int_equal(whole.nrcpt, 3002);
			assert_int_equal(whole.naccepted, 2 + 429 + 429 + 428 + 50);
			expect_rcpt(rcpt_at(&whole, 2), "u0@Example.JP", RCPT_ACCEPTED, NULL, "big.csv", 2);
			expect_rcpt(rcpt_at(&whole, 3), "u0@example.jp", RCPT_DUPLICATE, NULL, "big.csv", 5);
			expect_rcpt(rcpt_at(&whole, 4), "not an address 2", RCPT_INVALID, NULL, "big.csv", 6);
			expect_rcpt(rcpt_at(&whole, 5), "\"x 3\"@example.jp", RCPT_ACCEPTED, NULL, "big.csv", 8);
			expect_rcpt(rcpt_at(&whole, 6), "Name 4 <n4@example.jp>", RCPT_ACCEPTED, NULL, "big.csv", 9);
		}
		submission_free(&whole);
		mime_msg_free(&lazy);
		mime_msg_free(&m);
	}
	free(big);
}

/* A NUL in a record makes it invalid, shown up to the NUL, and the
 * records after it are read as they are. */
static void
test_nul_in_list(void **state)
{
	static const char mail[] =
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
		"--b\r\nContent-Type: text/plain\r\n\r\nSubject: s\r\n\r\nbody\r\n"
		"--b\r\nContent-Type: text/csv; name=l.csv\r\n\r\n"
		"a@example.jp\r\nx\0 <b@example.jp>\r\nc@example.jp\r\n"
		"--b--\r\n";
	struct submission s;
	char err[256];

	(void)state;
	if (parse_mail(mail, sizeof(mail) - 1, &s, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(s.nrcpt, 3);
	assert_int_equal(s.naccepted, 2);
	expect_rcpt(rcpt_at(&s, 0), "a@example.jp", RCPT_ACCEPTED, NULL, "l.csv", 1);
	expect_rcpt(rcpt_at(&s, 1), "x", RCPT_INVALID, "NUL byte in the line", "l.csv", 2);
	expect_rcpt(rcpt_at(&s, 2), "c@example.jp", RCPT_ACCEPTED, NULL, "l.csv", 3);
	submission_free(&s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_design_example),
		cmocka_unit_test(test_control_forms),
		cmocka_unit_test(test_dry_run),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_no_text_part),
		cmocka_unit_test(test_verdicts),
		cmocka_unit_test(test_sjis_csv),
		cmocka_unit_test(test_bom_csv),
		cmocka_unit_test(test_other_lists),
		cmocka_unit_test(test_large_list),
		cmocka_unit_test(test_chunked),
		cmocka_unit_test(test_nul_in_list),
		cmocka_unit_test(test_large_to_block),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
