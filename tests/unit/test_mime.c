/*
 * test_mime: real mails as byte strings (Japanese charsets made with
 * Python's codecs and pasted as escapes) read by mime_parse.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mail/mime.h"

static void
parse_ok(const char *mail, struct mime_msg *m)
{
	char err[256] = "";

	if (mime_parse(mail, strlen(mail), m, err, sizeof(err)) != 0)
		fail_msg("mime_parse: %s", err);
}

static void
assert_no_crlf(const char *s)
{
	assert_non_null(s);
	assert_null(strchr(s, '\r'));
	assert_null(strchr(s, '\n'));
}

/* The conservative Japanese bulk mail: ISO-2022-JP, 7bit, RFC 2047 B. */
static const char iso2022jp_mail[] =
	"Return-Path: <taro@example.jp>\r\n"
	"From: =?ISO-2022-JP?B?GyRCOzNFREJATzobKEI=?= <taro@Example.JP>\r\n"
	"To: submit@hato.example\r\n"
	"Subject: =?ISO-2022-JP?B?GyRCPTVLdjhCRGolOyE8JWskTiQqQ04kaSQ7GyhC?=\r\n"
	"Message-ID: <20260101.abc@example.jp>\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: text/plain; charset=ISO-2022-JP\r\n"
	"Content-Transfer-Encoding: 7bit\r\n"
	"\r\n"
	"\x1b$BK\\J8$O$3$3$+$i!#\x1b(B\r\n"
	"\x1b$BFs9TL\\$G$9!#\x1b(B\r\n";

static void
test_iso2022jp(void **state)
{
	struct mime_msg m;

	(void)state;
	parse_ok(iso2022jp_mail, &m);
	assert_string_equal(m.subject, "週末限定セールのお知らせ");
	assert_string_equal(m.text, "本文はここから。\n二行目です。\n");
	assert_int_equal(m.text_len, strlen(m.text));
	assert_string_equal(m.from, "taro@example.jp");
	assert_string_equal(m.message_id, "20260101.abc@example.jp");
	assert_int_equal(m.nattach, 0);
	/* top-level headers in order, decoded, found without regard to case */
	assert_int_equal(m.nheaders, 8);
	assert_string_equal(m.headers[0].name, "Return-Path");
	assert_string_equal(m.headers[1].name, "From");
	assert_string_equal(m.headers[1].value, "山田太郎 <taro@Example.JP>");
	assert_string_equal(m.headers[7].name, "Content-Transfer-Encoding");
	assert_string_equal(mime_header(&m, "content-type"),
	    "text/plain; charset=ISO-2022-JP");
	assert_null(mime_header(&m, "Cc"));
	mime_msg_free(&m);
}

static const char utf8_base64_mail[] =
	"From: hanako@ezweb.ne.jp\r\n"
	"Subject: =?UTF-8?B?5Lu25ZCN44OG44K544OI?=\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: text/plain; charset=\"utf-8\"\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"44GT44KT44Gr44Gh44GvDQrkuJbnlYwNCg==\r\n";

static void
test_utf8_base64(void **state)
{
	struct mime_msg m;

	(void)state;
	parse_ok(utf8_base64_mail, &m);
	assert_string_equal(m.subject, "件名テスト");
	assert_string_equal(m.text, "こんにちは\n世界\n");
	assert_string_equal(m.from, "hanako@ezweb.ne.jp");
	assert_null(m.message_id);
	mime_msg_free(&m);
}

static const char utf8_qp_mail[] =
	"From: a@example.jp\r\n"
	"Subject: =?utf-8?q?=E4=BB=B6=E5=90=8D_test?=\r\n"
	"Content-Type: text/plain; charset=UTF-8\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n"
	"\r\n"
	"=E4=BB=B6=E5=90=8D=E3=83=86=E3=82=B9=E3=83=88 =E3=81=82=E3=81=84=E3=81=86=\r\n"
	"=E3=81=88=E3=81=8A\r\n"
	"=E4=BA=8C=E8=A1=8C=E7=9B=AE\r\n";

static void
test_utf8_qp(void **state)
{
	struct mime_msg m;

	(void)state;
	parse_ok(utf8_qp_mail, &m);
	assert_string_equal(m.subject, "件名 test");
	assert_string_equal(m.text, "件名テスト あいうえお\n二行目\n");
	mime_msg_free(&m);
}

static const char alternative_mail[] =
	"From: a@example.jp\r\n"
	"Subject: alt\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/alternative; boundary=\"b1\"\r\n"
	"\r\n"
	"--b1\r\n"
	"Content-Type: text/plain; charset=UTF-8\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"44GT44KT44Gr44Gh44GvDQrkuJbnlYwNCg==\r\n"
	"--b1\r\n"
	"Content-Type: text/html; charset=UTF-8\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"PHA+44GT44KT44Gr44Gh44GvPC9wPg==\r\n"
	"--b1--\r\n";

static void
test_alternative(void **state)
{
	struct mime_msg m;

	(void)state;
	parse_ok(alternative_mail, &m);
	assert_string_equal(m.text, "こんにちは\n世界\n");
	assert_int_equal(m.nattach, 0);
	mime_msg_free(&m);
}

/* HTML first in the alternative, and the whole inside multipart/mixed. */
static const char alternative_html_first_mail[] =
	"From: a@example.jp\r\n"
	"Content-Type: multipart/mixed; boundary=\"m\"\r\n"
	"\r\n"
	"--m\r\n"
	"Content-Type: multipart/alternative; boundary=\"b1\"\r\n"
	"\r\n"
	"--b1\r\n"
	"Content-Type: text/html; charset=UTF-8\r\n"
	"\r\n"
	"<p>html</p>\r\n"
	"--b1\r\n"
	"Content-Type: text/plain; charset=UTF-8\r\n"
	"\r\n"
	"plain\r\n"
	"--b1--\r\n"
	"--m\r\n"
	"Content-Type: text/plain; charset=UTF-8\r\n"
	"Content-Disposition: attachment; filename=\"list.txt\"\r\n"
	"\r\n"
	"a@example.jp\r\n"
	"--m--\r\n";

static void
test_alternative_html_first(void **state)
{
	struct mime_msg m;

	(void)state;
	parse_ok(alternative_html_first_mail, &m);
	assert_string_equal(m.text, "plain");	/* the CRLF is the boundary's */
	assert_int_equal(m.nattach, 1);
	assert_string_equal(m.attachments[0].content_type, "text/plain");
	assert_string_equal(m.attachments[0].filename, "list.txt");
	assert_string_equal(m.attachments[0].charset, "UTF-8");
	assert_int_equal(m.attachments[0].len, 12);
	assert_memory_equal(m.attachments[0].data, "a@example.jp", 12);
	mime_msg_free(&m);
}

/* multipart/mixed: an ISO-2022-JP text and a Shift_JIS CSV in base64 with
 * an RFC 2231 file name (宛先.csv), the way a Windows mailer sends them. */
static const char sjis_csv_mail[] =
	"From: Taro <TARO@Example.JP>\r\n"
	"Subject: list\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: Multipart/Mixed; boundary=\"=_sep\"\r\n"
	"\r\n"
	"preamble\r\n"
	"--=_sep\r\n"
	"Content-Type: text/plain; charset=iso-2022-jp\r\n"
	"\r\n"
	"\x1b$BK\\J8$O$3$3$+$i!#\x1b(B\r\n"
	"--=_sep\r\n"
	"Content-Type: Text/CSV; charset=Shift_JIS\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"Content-Disposition: attachment;\r\n"
	" filename*=UTF-8''%E5%AE%9B%E5%85%88.csv\r\n"
	"\r\n"
	"g4GBW4OLg0GDaIOMg1gslryRTw0KdGFyby4uQGRvY29tby5uZS5qcCyOUpNjkb6YWQ0KImhhbmFr\r\n"
	"b0BlendlYi5uZS5qcCIsIonUjnEsIJfpltgiDQo=\r\n"
	"--=_sep--\r\n";

static void
test_sjis_csv_attachment(void **state)
{
	static const char csv[] =
		"\x83\x81\x81[\x83\x8b\x83\x41\x83h\x83\x8c\x83X,\x96\xbc\x91O\r\n"
		"taro..@docomo.ne.jp,\x8eR\x93\x63\x91\xbe\x98Y\r\n"
		"\"hanako@ezweb.ne.jp\",\"\x89\xd4\x8eq, \x97\xe9\x96\xd8\"\r\n";
	struct mime_msg m;
	struct mime_part *a;

	(void)state;
	parse_ok(sjis_csv_mail, &m);
	assert_string_equal(m.text, "本文はここから。");
	assert_string_equal(m.from, "TARO@example.jp");
	assert_int_equal(m.nattach, 1);
	a = &m.attachments[0];
	assert_string_equal(a->content_type, "text/csv");
	assert_string_equal(a->filename, "宛先.csv");
	assert_string_equal(a->charset, "Shift_JIS");
	assert_int_equal(a->len, sizeof(csv) - 1);
	assert_memory_equal(a->data, csv, a->len);
	mime_msg_free(&m);
}

struct subject_case {
	const char *raw;	/* as on the wire, after "Subject:" */
	const char *want;
};

static const struct subject_case subjects[] = {
	{ "=?UTF-8?B?5Lu25ZCN44OG44K544OI?=", "件名テスト" },
	{ "=?utf-8?Q?=E4=BB=B6=E5=90=8D_test?=", "件名 test" },
	{ "Re: =?UTF-8?B?5Lu25ZCN?= (2)", "Re: 件名 (2)" },
	/* white space between words goes; a character split across two
	 * words (as some Japanese mailers do) is joined before converting */
	{ "=?UTF-8?B?5Lu2?= =?UTF-8?B?5ZCN?=", "件名" },
	{ "=?UTF-8?Q?=E4=BB?=\r\n =?UTF-8?Q?=B6?=", "件" },
	{ "=?UTF-8?B?5Lu2?=\r\n\t=?ISO-2022-JP?B?GyRCOzNFRBsoQg==?=", "件山田" },
	/* vendor characters in ISO-2022-JP and Shift_JIS words */
	{ "=?ISO-2022-JP?B?GyRCLSEkTiQqQ04kaSQ7GyhC?=", "①のお知らせ" },
	{ "=?Shift_JIS?B?h0CHQQ==?=", "①②" },
	{ "=?iso-2022-jp?B?GyRCPTVLdjhCRGolOyE8JWskTiQqQ04kaSQ7GyhC?=",
	  "週末限定セールのお知らせ" },
	/* folded plain text, language tags, words that are not words */
	{ "first\r\n second", "first second" },
	{ "=?UTF-8*ja?B?5Lu2?=", "件" },
	{ "=?UTF-8?X?abc?=", "=?UTF-8?X?abc?=" },
	{ "=?UTF-8?B?5Lu2 ?=", "=?UTF-8?B?5Lu2 ?=" },
	{ "price 100=?", "price 100=?" },
	/* raw 8-bit text without encoded words: UTF-8, else CP932 */
	{ "\xe4\xbb\xb6\xe5\x90\x8d", "件名" },
	{ "\x8c\x8f\x96\xbc", "件名" },
	{ "\x1b$B7oL>\x1b(B", "件名" },
	/* controls never survive, TAB does */
	{ "=?UTF-8?Q?Hello=0D=0ABcc:_evil@example.com?=", "HelloBcc: evil@example.com" },
	{ "=?UTF-8?B?SGVsbG8NCkJjYzogZXZpbEBleGFtcGxlLmNvbQ==?=", "HelloBcc: evil@example.com" },
	{ "=?UTF-8?Q?a=00b=01c=09d=7Fe?=", "abc\tde" },
};

static void
test_subjects(void **state)
{
	struct mime_msg m;
	char mail[1024];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(subjects) / sizeof(subjects[0]); i++) {
		snprintf(mail, sizeof(mail), "From: a@example.jp\r\nSubject: %s\r\n"
		    "X-Copy: %s\r\n\r\nbody\r\n", subjects[i].raw, subjects[i].raw);
		parse_ok(mail, &m);
		if (m.subject == NULL || strcmp(m.subject, subjects[i].want) != 0)
			fail_msg("case %zu: '%s', want '%s'", i,
			    m.subject ? m.subject : "(null)", subjects[i].want);
		assert_no_crlf(m.subject);
		assert_string_equal(mime_header(&m, "x-copy"), subjects[i].want);
		mime_msg_free(&m);
	}
}

struct from_case {
	const char *raw;
	const char *want;	/* NULL: no From address */
};

static const struct from_case froms[] = {
	{ "taro@docomo.ne.jp", "taro@docomo.ne.jp" },
	{ "Taro <Taro@DOCOMO.ne.jp>", "Taro@docomo.ne.jp" },
	/* GMime refuses legacy local parts; they are still someone's */
	{ "taro..@docomo.ne.jp", "\"taro..\"@docomo.ne.jp" },
	{ "=?UTF-8?B?5aSq6YOO?= <.hanako.@ezweb.ne.jp>", "\".hanako.\"@ezweb.ne.jp" },
	{ "\"a b\"@example.jp", "\"a b\"@example.jp" },
	{ "list: first@example.jp, second@example.jp;", "first@example.jp" },
	{ "root@localhost", "root@localhost" },
	{ "nobody", NULL },
};

static void
test_from(void **state)
{
	struct mime_msg m;
	char mail[512];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(froms) / sizeof(froms[0]); i++) {
		snprintf(mail, sizeof(mail), "From: %s\r\n\r\nbody\r\n", froms[i].raw);
		parse_ok(mail, &m);
		if (froms[i].want == NULL ? m.from != NULL :
		    m.from == NULL || strcmp(m.from, froms[i].want) != 0)
			fail_msg("case %zu: '%s', want '%s'", i,
			    m.from ? m.from : "(null)",
			    froms[i].want ? froms[i].want : "(null)");
		mime_msg_free(&m);
	}
}

/* No charset parameter: UTF-8 when valid, ISO-2022-JP on its escapes,
 * else CP932. Also: a lone CR is a line end, NUL bytes go. */
static void
test_undeclared_charset(void **state)
{
	static const struct {
		const char *body, *want;
	} cases[] = {
		{ "\x96{\x95\xb6\x82\xc5\x82\xb7\x87@\r\n", "本文です①\n" },
		{ "\x1b$BK\\J8\x1b(B\r\n", "本文\n" },
		{ "\xe6\x9c\xac\xe6\x96\x87\r\n", "本文\n" },
		{ "a\rb\r\nc\n", "a\nb\nc\n" },
	};
	struct mime_msg m;
	char mail[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(mail, sizeof(mail), "From: a@example.jp\r\n"
		    "Content-Type: text/plain\r\n\r\n%s", cases[i].body);
		parse_ok(mail, &m);
		if (strcmp(m.text, cases[i].want) != 0)
			fail_msg("case %zu: '%s'", i, m.text);
		mime_msg_free(&m);
	}
}

/* A mislabelled part (8-bit UTF-8 said to be ISO-2022-JP) is still read. */
static void
test_wrong_charset(void **state)
{
	struct mime_msg m;

	(void)state;
	parse_ok("Content-Type: text/plain; charset=iso-2022-jp\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n\r\n"
	    "\xe6\x9c\xac\xe6\x96\x87\r\n", &m);
	assert_string_equal(m.text, "本文\n");
	mime_msg_free(&m);
}

/* format=flowed: the soft breaks a mail client put into a long line go. */
static void
test_flowed(void **state)
{
	struct mime_msg m;

	(void)state;
	parse_ok("Content-Type: text/plain; charset=UTF-8; format=flowed\r\n\r\n"
	    "To: a@example.jp, \r\n"
	    "b@example.jp\r\n"
	    " From stuffed\r\n"
	    "> quoted \r\n"
	    "> more\r\n"
	    "-- \r\n"
	    "sig\r\n", &m);
	assert_string_equal(m.text, "To: a@example.jp, b@example.jp\n"
	    "From stuffed\n> quoted more\n-- \nsig\n");
	mime_msg_free(&m);

	parse_ok("Content-Type: text/plain; charset=UTF-8; format=flowed; delsp=yes\r\n\r\n"
	    "\xe3\x81\x93\xe3\x82\x93 \r\n"
	    "\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf\r\n", &m);
	assert_string_equal(m.text, "こんにちは\n");
	mime_msg_free(&m);
}

/* Leaves that are not the text: named text/plain, an attached mail, an
 * HTML-only alternative (no text), an empty part (not listed). */
static const char mixed_mail[] =
	"From: a@example.jp\r\n"
	"Content-Type: multipart/mixed; boundary=x\r\n"
	"\r\n"
	"--x\r\n"
	"Content-Type: multipart/alternative; boundary=y\r\n"
	"\r\n"
	"--y\r\n"
	"Content-Type: text/html\r\n"
	"\r\n"
	"<p>only html</p>\r\n"
	"--y--\r\n"
	"--x\r\n"
	"Content-Type: text/plain; charset=us-ascii; name=\"notes.txt\"\r\n"
	"\r\n"
	"note\r\n"
	"--x\r\n"
	"Content-Type: application/octet-stream\r\n"
	"\r\n"
	"\r\n"
	"--x\r\n"
	"Content-Type: message/rfc822\r\n"
	"\r\n"
	"Subject: inner\r\n"
	"\r\n"
	"inner body\r\n"
	"--x--\r\n";

static void
test_leaves(void **state)
{
	struct mime_msg m;

	(void)state;
	parse_ok(mixed_mail, &m);
	assert_null(m.text);
	assert_null(m.subject);
	assert_int_equal(m.nattach, 2);
	assert_string_equal(m.attachments[0].content_type, "text/plain");
	assert_string_equal(m.attachments[0].filename, "notes.txt");
	assert_memory_equal(m.attachments[0].data, "note", 4);
	assert_string_equal(m.attachments[1].content_type, "message/rfc822");
	assert_null(m.attachments[1].filename);
	assert_non_null(strstr(m.attachments[1].data, "inner body"));
	mime_msg_free(&m);
}

static void
test_errors(void **state)
{
	struct mime_msg m;
	char err[128] = "";

	(void)state;
	assert_int_equal(mime_parse("", 0, &m, err, sizeof(err)), -1);
	assert_string_equal(err, "empty message");
	assert_null(m.text);
	mime_msg_free(&m);	/* harmless on the emptied struct */
}

static int
setup(void **state)
{
	(void)state;
	mime_init();
	mime_init();	/* once is enough; twice is harmless */
	return 0;
}

/*
 * NUL octets in the text are dropped; the text goes on after them. (The
 * converted text was once measured with strlen(), which ended the DM at
 * the first NUL and lost the rest without a word.) Base64 and 8bit, in
 * UTF-8 and in Shift_JIS.
 */
static void
test_nul_in_text(void **state)
{
	static const struct {
		const char *cte_charset;
		const char *body;
		size_t bodylen;
		const char *want;
	} cases[] = {
		{ "8bit\r\nContent-Type: text/plain; charset=utf-8",
		  "To: a@example.com\x00, b@example.com\r\n\r\nbefore\x00" "after\r\nend\r\n", 56,
		  "To: a@example.com, b@example.com\n\nbeforeafter\nend\n" },
		{ "base64\r\nContent-Type: text/plain; charset=utf-8",
		  "YmVmb3JlAGFmdGVyDQplbmQNCg==\r\n", 30, "beforeafter\nend\n" },
		{ "8bit\r\nContent-Type: text/plain; charset=shift_jis",
		  "\x96\x7b\x95\xb6\x00\x82\xc5\x82\xb7\r\n", 11, "本文です\n" },
	};
	char mail[512], err[256];
	struct mime_msg m;
	size_t i;
	int n;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		n = snprintf(mail, sizeof(mail), "From: a@example.jp\r\nSubject: nul\r\n"
		    "MIME-Version: 1.0\r\nContent-Transfer-Encoding: %s\r\n\r\n", cases[i].cte_charset);
		assert_true(n > 0 && (size_t)n + cases[i].bodylen < sizeof(mail));
		memcpy(mail + n, cases[i].body, cases[i].bodylen);
		if (mime_parse(mail, (size_t)n + cases[i].bodylen, &m, err, sizeof(err)) != 0)
			fail_msg("case %zu: mime_parse: %s", i, err);
		assert_non_null(m.text);
		assert_string_equal(m.text, cases[i].want);
		assert_int_equal(m.text_len, strlen(cases[i].want));
		mime_msg_free(&m);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_iso2022jp),
		cmocka_unit_test(test_utf8_base64),
		cmocka_unit_test(test_utf8_qp),
		cmocka_unit_test(test_alternative),
		cmocka_unit_test(test_alternative_html_first),
		cmocka_unit_test(test_sjis_csv_attachment),
		cmocka_unit_test(test_subjects),
		cmocka_unit_test(test_from),
		cmocka_unit_test(test_undeclared_charset),
		cmocka_unit_test(test_wrong_charset),
		cmocka_unit_test(test_flowed),
		cmocka_unit_test(test_leaves),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_nul_in_text),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
