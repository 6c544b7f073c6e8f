/*
 * test_mime: real mails as byte strings (Japanese charsets made with
 * Python's codecs and pasted as escapes) read by mime_parse; built mails
 * with big attachments read by mime_parse_lazy and mime_reader.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <gmime/gmime.h>

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

/*
 * Lazy parts (mime_parse_lazy): a built mail with big attachments in
 * each transfer encoding, read through mime_reader in pieces of every
 * size, must give exactly the bytes mime_parse decodes, which come from
 * GMime's own g_mime_data_wrapper_write_to_stream.
 */
struct buf {
	char *p;
	size_t len, cap;
};

static void
bput(struct buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		assert_non_null(b->p = realloc(b->p, b->cap));
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
bstr(struct buf *b, const char *s)
{
	bput(b, s, strlen(s));
}

/* Header lines with their line end; "\n" in s becomes nl. */
static void
bhead(struct buf *b, const char *nl, const char *s)
{
	const char *e;

	for (; (e = strchr(s, '\n')) != NULL; s = e + 1) {
		bput(b, s, (size_t)(e - s));
		bstr(b, nl);
	}
	bstr(b, s);
}

static uint32_t
rnd(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

static void
base64_put(struct buf *b, const unsigned char *s, size_t len, const char *nl)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char q[4];
	size_t i, col = 0;
	uint32_t v;

	for (i = 0; i < len; i += 3) {
		v = (uint32_t)s[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)s[i + 1] << 8;
		if (i + 2 < len)
			v |= s[i + 2];
		q[0] = tab[v >> 18 & 63];
		q[1] = tab[v >> 12 & 63];
		q[2] = i + 1 < len ? tab[v >> 6 & 63] : '=';
		q[3] = i + 2 < len ? tab[v & 63] : '=';
		bput(b, q, 4);
		if ((col += 4) == 76) {
			bstr(b, nl);
			col = 0;
		}
	}
	if (col > 0)
		bstr(b, nl);
}

/* Quoted-printable with soft breaks; the text's own line ends stay hard
 * breaks, written as nl. */
static void
qp_put(struct buf *b, const char *s, size_t len, const char *nl)
{
	char hex[4];
	size_t i, col = 0;
	unsigned char c;

	for (i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		if (c == '\n') {
			bstr(b, nl);
			col = 0;
			continue;
		}
		if (col >= 72) {
			bstr(b, "=");
			bstr(b, nl);
			col = 0;
		}
		if ((c >= 33 && c <= 126 && c != '=') ||
		    (c == ' ' && i + 1 < len && s[i + 1] != '\n')) {
			bput(b, &c, 1);
			col++;
		} else {
			snprintf(hex, sizeof(hex), "=%02X", c);
			bstr(b, hex);
			col += 3;
		}
	}
	bstr(b, nl);
}

/* Verbatim (7bit, 8bit): its lines ended with nl. */
static void
lines_put(struct buf *b, const char *s, size_t len, const char *nl)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (s[i] == '\n')
			bstr(b, nl);
		else
			bput(b, s + i, 1);
}

enum { BIG_MIN = 100000 };

/* The random bytes of a.bin, to check the decoding itself too. */
static unsigned char bin[300000];

/*
 * Parts, in order: the text (base64), then
 *	0 a.bin		base64, 300,000 random octets
 *	1 gap.bin	base64 after 6,000 octets of empty lines (decodes to
 *			nothing for more than one read of GMime's filter)
 *	2 名簿.txt	quoted-printable UTF-8 text, ~220 KB
 *	3 c.csv		7bit CSV, ~250 KB
 *	4 (no name)	8bit Shift_JIS, attachment by disposition, ~210 KB
 *	5 small.csv	base64, 42 octets
 *	6 message/rfc822 with a ~150 KB body
 *	7 a second inline text/plain: an attachment, 7bit
 */
static char *
big_mail(const char *nl, size_t *len)
{
	struct buf b = { 0 }, t = { 0 };
	uint32_t x = 2463534242u;
	char line[128];
	size_t i;

	for (i = 0; i < sizeof(bin); i++)
		bin[i] = (unsigned char)rnd(&x);
	bhead(&b, nl, "From: a@example.jp\nSubject: big\nMIME-Version: 1.0\n"
	    "Content-Type: multipart/mixed; boundary=\"=_b\"\n\n--=_b\n"
	    "Content-Type: text/plain; charset=UTF-8\n"
	    "Content-Transfer-Encoding: base64\n\n");
	base64_put(&b, (const unsigned char *)"本文です。\r\n", 17, nl);

	bhead(&b, nl, "--=_b\nContent-Type: application/octet-stream; name=\"a.bin\"\n"
	    "Content-Transfer-Encoding: base64\n"
	    "Content-Disposition: attachment; filename=\"a.bin\"\n\n");
	base64_put(&b, bin, sizeof(bin), nl);

	bhead(&b, nl, "--=_b\nContent-Type: application/octet-stream\n"
	    "Content-Transfer-Encoding: base64\n"
	    "Content-Disposition: attachment; filename=gap.bin\n\n");
	for (i = 0; i < 6000; i += strlen(nl))
		bstr(&b, nl);
	base64_put(&b, bin, 10000, nl);

	bhead(&b, nl, "--=_b\nContent-Type: text/plain; charset=UTF-8\n"
	    "Content-Transfer-Encoding: quoted-printable\n"
	    "Content-Disposition: attachment;\n"
	    " filename*=UTF-8''%E5%90%8D%E7%B0%BF.txt\n\n");
	for (i = 0; t.len < 220000; i++) {
		snprintf(line, sizeof(line), "%zu: 名簿=リスト a=b trailing \n", i);
		bstr(&t, line);
		if (i % 7 == 0)
			bstr(&t, "a line far longer than seventy-six octets, "
			    "which quoted-printable must break softly, twice over "
			    "at least, and then ends here\n");
	}
	qp_put(&b, t.p, t.len, nl);

	bhead(&b, nl, "--=_b\nContent-Type: text/csv; charset=us-ascii; name=c.csv\n"
	    "Content-Transfer-Encoding: 7bit\n\n");
	t.len = 0;
	for (i = 0; t.len < 250000; i++) {
		snprintf(line, sizeof(line), "%06zu,user%zu@example.jp,Name %zu\n", i, i, i);
		bstr(&t, line);
	}
	lines_put(&b, t.p, t.len, nl);

	bhead(&b, nl, "--=_b\nContent-Type: text/plain; charset=Shift_JIS\n"
	    "Content-Transfer-Encoding: 8bit\n"
	    "Content-Disposition: attachment\n\n");
	t.len = 0;
	while (t.len < 210000)
		bstr(&t, "\x96\x7b\x95\xb6\x82\xc5\x82\xb7\x87\x40,taro@docomo.ne.jp\n");
	lines_put(&b, t.p, t.len, nl);

	bhead(&b, nl, "--=_b\nContent-Type: text/csv; name=small.csv\n"
	    "Content-Transfer-Encoding: base64\n\n");
	base64_put(&b, (const unsigned char *)
	    "a@example.jp\r\nb@example.jp\r\nc@example.jp\r\n", 42, nl);

	bhead(&b, nl, "--=_b\nContent-Type: message/rfc822\n\n"
	    "From: inner@example.jp\nSubject: inner\n\n");
	t.len = 0;
	while (t.len < 150000)
		bstr(&t, "inner body line\n");
	lines_put(&b, t.p, t.len, nl);

	bhead(&b, nl, "--=_b\nContent-Type: text/plain; charset=us-ascii\n\n"
	    "second text\n--=_b--\n");
	free(t.p);
	*len = b.len;
	return b.p;
}

/* Which parts are lazy for each lazy_min (1: lazy). */
static const struct {
	size_t lazy_min;
	int lazy[8];
} lazy_cases[] = {
	{ 0, { 1, 1, 1, 1, 1, 1, 0, 1 } },
	{ BIG_MIN, { 1, 0, 1, 1, 1, 0, 0, 0 } },
	{ 64 * 1024 * 1024, { 0, 0, 0, 0, 0, 0, 0, 0 } },
};

/* The whole part through a reader, in pieces of piece octets. */
static char *
read_part(const struct mime_part *p, size_t piece, size_t *len)
{
	struct mime_reader *r;
	struct buf b = { 0 };
	char *chunk;
	ssize_t n;

	assert_non_null(chunk = malloc(piece));
	assert_non_null(r = mime_part_open(p));
	bput(&b, "", 0);
	while ((n = mime_reader_read(r, chunk, piece)) > 0) {
		assert_true((size_t)n <= piece);
		bput(&b, chunk, (size_t)n);
	}
	assert_int_equal(n, 0);
	assert_int_equal(mime_reader_read(r, chunk, piece), 0);	/* stays at the end */
	mime_reader_close(r);
	free(chunk);
	*len = b.len;
	return b.p;
}

static void
assert_reads_as(const struct mime_part *p, const char *want, size_t wantlen)
{
	static const size_t pieces[] = { 1, 3, 4096, 1024 * 1024 };
	size_t i, len;
	char *got;

	for (i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		got = read_part(p, pieces[i], &len);
		if (len != wantlen || memcmp(got, want, len) != 0)
			fail_msg("%s, pieces of %zu: %zu octets, want %zu",
			    p->content_type, pieces[i], len, wantlen);
		free(got);
	}
}

static void
assert_same_string(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		assert_ptr_equal(a, b);
	else
		assert_string_equal(a, b);
}

/* Two readers of one part at once, taking turns: neither moves the other. */
static void
assert_readers_apart(const struct mime_part *p, const char *want, size_t wantlen)
{
	struct mime_reader *r1, *r2;
	size_t off1 = 0, off2 = 0;
	char c1[1000], c2[777];
	ssize_t n1 = 1, n2 = 1;

	assert_non_null(r1 = mime_part_open(p));
	assert_non_null(r2 = mime_part_open(p));
	while (n1 > 0 || n2 > 0) {
		if (n1 > 0 && (n1 = mime_reader_read(r1, c1, sizeof(c1))) > 0) {
			assert_true(off1 + (size_t)n1 <= wantlen);
			assert_memory_equal(c1, want + off1, (size_t)n1);
			off1 += (size_t)n1;
		}
		if (n2 > 0 && (n2 = mime_reader_read(r2, c2, sizeof(c2))) > 0) {
			assert_true(off2 + (size_t)n2 <= wantlen);
			assert_memory_equal(c2, want + off2, (size_t)n2);
			off2 += (size_t)n2;
		}
	}
	assert_int_equal(n1, 0);
	assert_int_equal(n2, 0);
	assert_int_equal(off1, wantlen);
	assert_int_equal(off2, wantlen);
	mime_reader_close(r1);
	mime_reader_close(r2);
}

/*
 * A lazy part's content must be a substream of the caller's bytes, not
 * a copy: what the parser's persist_stream gives on a seekable stream.
 */
static void
assert_in_mail(const struct mime_part *p, const char *mail, size_t len)
{
	GMimeStream *s = g_mime_data_wrapper_get_stream(p->lazy);
	GByteArray *ba;

	assert_true(GMIME_IS_STREAM_MEM(s));
	ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(s));
	assert_ptr_equal(ba->data, mail);
	assert_int_equal(ba->len, len);
	assert_true(s->bound_start > 0 && s->bound_end <= (gint64)len);
}

static void
check_lazy(const char *mail, size_t len)
{
	struct mime_msg e, l;
	const struct mime_part *ep, *lp;
	char err[256] = "";
	size_t c, i;

	if (mime_parse(mail, len, &e, err, sizeof(err)) != 0)
		fail_msg("mime_parse: %s", err);
	assert_string_equal(e.text, "本文です。\n");
	assert_int_equal(e.nattach, 8);
	/* every part decoded; each reads back through a reader as its data */
	for (i = 0; i < e.nattach; i++) {
		ep = &e.attachments[i];
		assert_non_null(ep->data);
		assert_null(ep->lazy);
		assert_true(ep->len > 0);
		assert_reads_as(ep, ep->data, ep->len);
	}
	assert_int_equal(e.attachments[0].len, sizeof(bin));
	assert_memory_equal(e.attachments[0].data, bin, sizeof(bin));
	assert_int_equal(e.attachments[1].len, 10000);
	assert_memory_equal(e.attachments[1].data, bin, 10000);
	assert_string_equal(e.attachments[2].filename, "名簿.txt");
	assert_string_equal(e.attachments[6].content_type, "message/rfc822");

	for (c = 0; c < sizeof(lazy_cases) / sizeof(lazy_cases[0]); c++) {
		if (mime_parse_lazy(mail, len, lazy_cases[c].lazy_min, &l, err,
		    sizeof(err)) != 0)
			fail_msg("mime_parse_lazy: %s", err);
		assert_string_equal(l.text, e.text);	/* the text is never lazy */
		assert_int_equal(l.text_len, e.text_len);
		assert_string_equal(l.subject, e.subject);
		assert_int_equal(l.nheaders, e.nheaders);
		assert_int_equal(l.nattach, e.nattach);
		for (i = 0; i < l.nattach; i++) {
			ep = &e.attachments[i];
			lp = &l.attachments[i];
			assert_string_equal(lp->content_type, ep->content_type);
			assert_same_string(lp->filename, ep->filename);
			assert_same_string(lp->charset, ep->charset);
			if (lazy_cases[c].lazy[i]) {
				assert_null(lp->data);
				assert_int_equal(lp->len, 0);
				assert_non_null(lp->lazy);
				assert_in_mail(lp, mail, len);
			} else {
				assert_null(lp->lazy);
				assert_int_equal(lp->len, ep->len);
				assert_memory_equal(lp->data, ep->data, ep->len);
			}
			/* twice over: opening again starts from the start */
			assert_reads_as(lp, ep->data, ep->len);
			assert_readers_apart(lp, ep->data, ep->len);
		}
		mime_msg_free(&l);
	}
	mime_msg_free(&e);
}

static void
test_lazy_crlf(void **state)
{
	size_t len;
	char *mail = big_mail("\r\n", &len);

	(void)state;
	check_lazy(mail, len);
	free(mail);
}

static void
test_lazy_lf(void **state)
{
	size_t len;
	char *mail = big_mail("\n", &len);

	(void)state;
	check_lazy(mail, len);
	free(mail);
}

/* The leaves of test_leaves with lazy_min 0: the named text/plain is
 * lazy, the attached mail is not, the empty part is still not listed. */
static void
test_lazy_leaves(void **state)
{
	struct mime_msg m;
	char err[256];

	(void)state;
	assert_int_equal(mime_parse_lazy(mixed_mail, strlen(mixed_mail), 0, &m,
	    err, sizeof(err)), 0);
	assert_int_equal(m.nattach, 2);
	assert_string_equal(m.attachments[0].content_type, "text/plain");
	assert_string_equal(m.attachments[0].filename, "notes.txt");
	assert_string_equal(m.attachments[0].charset, "us-ascii");
	assert_null(m.attachments[0].data);
	assert_reads_as(&m.attachments[0], "note", 4);
	assert_string_equal(m.attachments[1].content_type, "message/rfc822");
	assert_null(m.attachments[1].lazy);
	assert_non_null(strstr(m.attachments[1].data, "inner body"));
	mime_msg_free(&m);

	assert_int_equal(mime_parse_lazy(sjis_csv_mail, strlen(sjis_csv_mail), 0,
	    &m, err, sizeof(err)), 0);
	assert_string_equal(m.text, "本文はここから。");
	assert_int_equal(m.nattach, 1);
	assert_string_equal(m.attachments[0].filename, "宛先.csv");
	assert_string_equal(m.attachments[0].charset, "Shift_JIS");
	assert_null(m.attachments[0].data);
	mime_msg_free(&m);
}

/* x-uuencode, the third encoding GMime decodes with its basic filter. */
static const char uuencode_mail[] =
	"From: a@example.jp\r\n"
	"Content-Type: multipart/mixed; boundary=x\r\n"
	"\r\n"
	"--x\r\n"
	"Content-Type: text/plain; name=u.txt\r\n"
	"Content-Transfer-Encoding: x-uuencode\r\n"
	"\r\n"
	"begin 644 u.txt\r\n"
	"M=75E;F-O9&5D(&QI;F4@;VYE#0IL:6YE('1W;RP@82!B:70@;&]N9V5R('1H\r\n"
	"B86X@9F]R='DM9FEV92!O8W1E=',@<V\\@:70@=W)A<',-\"@  \r\n"
	"`\r\n"
	"end\r\n"
	"--x--\r\n";

static void
test_lazy_uuencode(void **state)
{
	static const char want[] = "uuencoded line one\r\n"
	    "line two, a bit longer than forty-five octets so it wraps\r\n";
	struct mime_msg e, l;
	char err[256];

	(void)state;
	parse_ok(uuencode_mail, &e);
	assert_int_equal(e.nattach, 1);
	assert_int_equal(e.attachments[0].len, sizeof(want) - 1);
	assert_memory_equal(e.attachments[0].data, want, sizeof(want) - 1);
	assert_int_equal(mime_parse_lazy(uuencode_mail, strlen(uuencode_mail), 0,
	    &l, err, sizeof(err)), 0);
	assert_int_equal(l.nattach, 1);
	assert_null(l.attachments[0].data);
	assert_string_equal(l.attachments[0].filename, "u.txt");
	assert_reads_as(&l.attachments[0], want, sizeof(want) - 1);
	mime_msg_free(&l);
	mime_msg_free(&e);
}

/*
 * The mail is read in place: never written to, and never freed by GLib
 * (the GByteArray over it lets go of it, not free it). The mail is in a
 * buffer of its own, freed here after mime_msg_free, so that a GLib free
 * of it, or a read after, shows under AddressSanitizer.
 */
static void
test_input_untouched(void **state)
{
	struct mime_msg m;
	struct mime_reader *r;
	char err[256], chunk[4096];
	size_t len, i, c;
	char *mail, *copy;

	(void)state;
	mail = big_mail("\r\n", &len);
	assert_non_null(copy = malloc(len));
	memcpy(copy, mail, len);
	for (c = 0; c < sizeof(lazy_cases) / sizeof(lazy_cases[0]); c++) {
		assert_int_equal(mime_parse_lazy(mail, len, lazy_cases[c].lazy_min,
		    &m, err, sizeof(err)), 0);
		for (i = 0; i < m.nattach; i++) {
			assert_non_null(r = mime_part_open(&m.attachments[i]));
			while (mime_reader_read(r, chunk, sizeof(chunk)) > 0)
				;
			mime_reader_close(r);
		}
		mime_msg_free(&m);
		assert_memory_equal(mail, copy, len);
	}
	assert_int_equal(mime_parse(mail, len, &m, err, sizeof(err)), 0);
	mime_msg_free(&m);
	assert_memory_equal(mail, copy, len);
	/* a failed parse lets go of the buffer too */
	(void)mime_parse_lazy(mail, 1, 0, &m, err, sizeof(err));
	mime_msg_free(&m);
	assert_memory_equal(mail, copy, len);
	free(mail);
	free(copy);
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
		cmocka_unit_test(test_lazy_crlf),
		cmocka_unit_test(test_lazy_lf),
		cmocka_unit_test(test_lazy_leaves),
		cmocka_unit_test(test_lazy_uuencode),
		cmocka_unit_test(test_input_untouched),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
