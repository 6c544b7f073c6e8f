/*
 * test_compose_jis: ISO-2022-JP messages (gateway/compose.c with
 * rfc2047_encode_charset from mail/rfc2047.c).
 *
 * Bodies are read back through mail/charset (iconv) to the original text;
 * every line is checked to be 7-bit, at most 998 octets, and to start and
 * end in ASCII, with long lines broken between characters only. Subjects
 * are cut into their encoded words, each checked for its size and decoded
 * alone. Text ISO-2022-JP cannot carry makes the whole message UTF-8, and
 * says so.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway/compose.h"
#include "mail/charset.h"
#include "mail/rfc2047.h"

static const struct compose_job base_job = {
	.job_id = 7,
	.from = "ハト配信センター <dm@example.jp>",
	.reply_to = NULL,
	.subject = "週末限定セールのお知らせ",
	.body = "こんにちは。\n週末限定のセールです。\r\nABC 123 ¥500\n\n",
	.charset = "iso-2022-jp",
	.domain = "hato.example",
};

static int
b64val(char c)
{
	const char *tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = c ? strchr(tab, c) : NULL;

	return p ? (int)(p - tab) : -1;
}

/* Base64 of len characters (no white space) onto out; returns octets. */
static size_t
b64_decode(const char *in, size_t len, unsigned char *out)
{
	size_t n = 0;

	assert_int_equal(len % 4, 0);
	for (size_t i = 0; i < len; i += 4) {
		int v[4];

		for (int k = 0; k < 4; k++) {
			v[k] = in[i + k] == '=' ? 0 : b64val(in[i + k]);
			assert_true(v[k] >= 0);
		}
		out[n++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (in[i + 2] != '=')
			out[n++] = (unsigned char)(v[1] << 4 | v[2] >> 2);
		if (in[i + 3] != '=')
			out[n++] = (unsigned char)(v[2] << 6 | v[3]);
	}
	return n;
}

static struct compose_body *
prepare(const struct compose_job *j)
{
	char err[256] = "";
	struct compose_body *b = compose_prepare(j, err, sizeof(err));

	if (b == NULL)
		fail_msg("compose_prepare: %s", err);
	return b;
}

/* text with every LF, CR and CRLF made CRLF and a CRLF at the end, as the
 * body goes out (malloc'd). */
static char *
crlf_text(const char *s)
{
	char *out = malloc(strlen(s) * 2 + 3);
	size_t n = 0;

	assert_non_null(out);
	for (; *s != '\0'; s++) {
		if (s[0] == '\r' && s[1] == '\n')
			s++;
		if (*s == '\r' || *s == '\n') {
			out[n++] = '\r';
			out[n++] = '\n';
		} else
			out[n++] = *s;
	}
	if (n < 2 || out[n - 2] != '\r' || out[n - 1] != '\n') {
		out[n++] = '\r';
		out[n++] = '\n';
	}
	out[n] = '\0';
	return out;
}

/*
 * An ISO-2022-JP body as it must go out in 7bit: CRLF lines of at most
 * 998 octets, 7-bit, no NUL, no bare CR or LF, each line starting in ASCII
 * (as every line does after one that ended in ASCII) and ending in ASCII,
 * no two-octet character or escape cut by a line end. Returns the longest
 * line.
 */
static size_t
check_jis_lines(const char *s, size_t len)
{
	size_t col = 0, longest = 0;
	bool ascii = true, kanji = false;

	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];

		assert_true(c != 0 && c < 0x80);
		if (c == '\r') {
			assert_true(i + 1 < len && s[i + 1] == '\n');
			if (!ascii)
				fail_msg("line ending at octet %zu not in ASCII", i);
			if (col > longest)
				longest = col;
			col = 0;
			i += 2;
			continue;
		}
		assert_true(c != '\n');
		if (c == 0x1b) {
			assert_true(i + 2 < len);
			if (memcmp(s + i, "\x1b(B", 3) == 0)
				ascii = true, kanji = false;
			else if (memcmp(s + i, "\x1b$B", 3) == 0)
				ascii = false, kanji = true;
			else if (memcmp(s + i, "\x1b(J", 3) == 0)
				ascii = false, kanji = false;
			else
				fail_msg("escape %02x %02x at octet %zu", s[i + 1], s[i + 2], i);
			col += 3;
			i += 3;
			continue;
		}
		if (kanji) {
			assert_true(i + 1 < len && c >= 0x21 && c <= 0x7e);
			assert_true((unsigned char)s[i + 1] >= 0x21 && (unsigned char)s[i + 1] <= 0x7e);
			col += 2;
			i += 2;
		} else {
			col++;
			i++;
		}
		if (col > 998)
			fail_msg("line over 998 octets at octet %zu", i);
	}
	assert_int_equal(col, 0);	/* ends with CRLF */
	assert_true(ascii);
	return longest;
}

/*
 * What the reader below gives back for text: mail/charset reads JIS X 0201
 * Roman (ESC ( J) as ASCII, as CP50221 does, so the ¥ and ‾ that iconv
 * writes there come back as \ and ~ (a WHATWG or Python reader gives ¥
 * and ‾; the integration test checks that). Everything else is itself.
 */
static char *
as_read(const char *text)
{
	char *out = crlf_text(text), *p;

	while ((p = strstr(out, "¥")) != NULL) {
		*p = '\\';
		memmove(p + 1, p + 2, strlen(p + 2) + 1);
	}
	while ((p = strstr(out, "‾")) != NULL) {
		*p = '~';
		memmove(p + 1, p + 3, strlen(p + 3) + 1);
	}
	return out;
}

/* The body back in UTF-8, the way a reader would decode it. */
static char *
read_back(const struct compose_body *b)
{
	size_t n = 0;
	char *u = charset_to_utf8("ISO-2022-JP", b->body, b->body_len, &n);

	assert_non_null(u);
	assert_int_equal(n, strlen(u));
	return u;
}

static char *
strip_crlf(const char *s)
{
	char *out = malloc(strlen(s) + 1), *w = out;

	assert_non_null(out);
	for (; *s != '\0'; s++)
		if (*s != '\r' && *s != '\n')
			*w++ = *s;
	*w = '\0';
	return out;
}

/* The value of the first field of that name, with its folding kept. */
static char *
raw_field(const char *head, const char *name)
{
	size_t nl = strlen(name);

	for (const char *p = head; *p != '\0'; p = strstr(p, "\r\n") + 2) {
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *e = p;

			do
				e = strstr(e, "\r\n") + 2;
			while (*e == ' ' || *e == '\t');
			return strndup(p + nl + 2, (size_t)(e - 2 - (p + nl + 2)));
		}
	}
	return NULL;
}

/*
 * A header value of ISO-2022-JP encoded words, one a line: each word at
 * most 75 octets and its line at most 78, each decoding alone and ending
 * in ASCII. Returns the words' text joined, in UTF-8 (malloc'd).
 */
static char *
decode_words(const char *v, size_t name_len)
{
	char *out = calloc(1, strlen(v) * 3 + 1);
	const char *p = v;
	bool first = true;

	assert_non_null(out);
	while (*p != '\0') {
		const char *e = strstr(p, "\r\n"), *end = e ? e : p + strlen(p), *q;
		unsigned char raw[128];
		size_t wl, n, ul;
		char *u;

		if (!first) {
			assert_true(*p == ' ');
			p++;
		}
		wl = (size_t)(end - p);
		assert_true(wl <= 75);
		/* Beside a long name the first word is as short as it can be
		 * (30 octets: one character with its escapes) rather than
		 * within 78. */
		if (first)
			assert_true(name_len + wl <= 78 || wl <= 30);
		else
			assert_true(1 + wl <= 78);
		assert_int_equal(strncmp(p, "=?ISO-2022-JP?B?", 16), 0);
		assert_int_equal(strncmp(end - 2, "?=", 2), 0);
		q = p + 16;
		n = b64_decode(q, (size_t)(end - 2 - q), raw);
		/* Self-contained: 7-bit, starting in ASCII (its first escape, if
		 * any, leaves ASCII) and back in ASCII at its end. */
		bool ascii = true;
		for (size_t i = 0; i < n; i++) {
			assert_true(raw[i] < 0x80);
			if (raw[i] == 0x1b) {
				assert_true(i + 2 < n);
				ascii = memcmp(raw + i, "\x1b(B", 3) == 0;
				i += 2;
			}
		}
		assert_true(ascii);
		assert_non_null(u = charset_to_utf8("ISO-2022-JP", (char *)raw, n, &ul));
		strcat(out, u);
		free(u);
		first = false;
		p = e ? e + 2 : end;
	}
	return out;
}

static void
test_message(void **state)
{
	struct compose_body *b = prepare(&base_job);
	struct compose_rcpt r = { .to = "a@ezweb.ne.jp", .delivery_id = 1 };
	char *h, *v, *text, *want, *words;
	size_t hl;

	(void)state;
	assert_string_equal(b->charset_used, "ISO-2022-JP");
	assert_false(b->fell_back);
	assert_string_equal(b->fallback, "");
	assert_non_null(h = compose_head(b, &r, 1700000000, &hl));
	assert_non_null(strstr(h, "\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n"));
	assert_non_null(strstr(h, "\r\nContent-Transfer-Encoding: 7bit\r\n"));
	assert_non_null(strstr(h, "\r\nMIME-Version: 1.0\r\n"));

	assert_non_null(v = raw_field(h, "Subject"));
	words = decode_words(v, 9);
	assert_string_equal(words, base_job.subject);
	free(words);
	free(v);
	assert_non_null(v = raw_field(h, "From"));
	assert_non_null(strstr(v, "?= <dm@example.jp>"));
	*strstr(v, " <dm@example.jp>") = '\0';
	words = decode_words(v, 6);
	assert_string_equal(words, "ハト配信センター");
	free(words);
	free(v);

	check_jis_lines(b->body, b->body_len);
	assert_int_equal(b->body_len, strlen(b->body));
	text = read_back(b);
	want = as_read(base_job.body);
	assert_string_equal(text, want);
	assert_non_null(strstr(b->body, "ABC 123 \x1b(J\\500\x1b(B\r\n"));
	free(text);
	free(want);
	free(h);
	compose_body_free(b);
}

static void
test_body_round_trip(void **state)
{
	static const char *const bodies[] = {
		"",
		"a",
		"\n",
		"plain ASCII only\n",
		"日本語",
		"漢字とかなとカナ、ＡＢＣ全角、ASCII混在 and more\r\n二行目\r\r\n",
		"¥100 と ‾ (JIS X 0201 Roman)\n¥\n",
		"Ω α β 〒 ※ → ∀ ∃\n",
		"〒100-0001 東京都千代田区千代田1-1\n",
		"\t字下げ\n  空白  \n",
		"行末が漢字\n漢字\n\n\n",
	};
	struct compose_job j = base_job;

	(void)state;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		struct compose_body *b;
		char *text, *want;

		j.body = bodies[i];
		b = prepare(&j);
		if (b->fell_back)
			fail_msg("case %zu fell back: %s", i, b->fallback);
		check_jis_lines(b->body, b->body_len);
		text = read_back(b);
		want = as_read(bodies[i]);
		if (strcmp(text, want) != 0)
			fail_msg("case %zu: read back \"%s\", wanted \"%s\"", i, text, want);
		free(text);
		free(want);
		compose_body_free(b);
	}
}

/* U+FF5E and its kin, written by Windows, go out as their JIS twins. */
static void
test_body_twins(void **state)
{
	struct compose_job j = base_job;
	struct compose_body *b;

	(void)state;
	j.body = "10時～12時\n";
	b = prepare(&j);
	assert_false(b->fell_back);
	assert_string_equal(b->body, "10\x1b$B;~!A\x1b(B12\x1b$B;~\x1b(B\r\n");
	compose_body_free(b);
}

/*
 * Long lines are broken at 998 octets between two characters, the
 * two-octet set closed before the break and opened again after it; the
 * text read back is the original with those breaks added only.
 */
static void
test_long_lines(void **state)
{
	struct compose_job j = base_job;
	char *body = malloc(20000);

	(void)state;
	assert_non_null(body);
	/* Every alignment of the kanji against the limit, in each set. */
	for (int form = 0; form < 4; form++)
		for (int shift = 0; shift < 8; shift++) {
			struct compose_body *b;
			char *text, *a, *want;
			size_t n = 0, longest;

			for (int k = 0; k < shift; k++)
				body[n++] = 'a';
			for (int k = 0; k < 1500; k++) {
				const char *c = form == 0 ? "漢" : form == 1 ? (k % 7 == 0 ? "x" : "字") :
				    form == 2 ? "¥" : "y";

				memcpy(body + n, c, strlen(c));
				n += strlen(c);
			}
			memcpy(body + n, "\n次の行\n", strlen("\n次の行\n") + 1);
			j.body = body;
			b = prepare(&j);
			assert_false(b->fell_back);
			longest = check_jis_lines(b->body, b->body_len);
			/* Broken only where needed: the first line is full. */
			assert_true(longest >= 990 && longest <= 998);
			text = read_back(b);
			a = strip_crlf(text);
			char *r = as_read(body);
			want = strip_crlf(r);
			free(r);
			if (strcmp(a, want) != 0)
				fail_msg("form %d shift %d: text changed", form, shift);
			assert_non_null(strstr(text, "\r\n次の行\r\n"));
			free(a);
			free(want);
			free(text);
			compose_body_free(b);
		}
	free(body);
}

static void
test_subject_words(void **state)
{
	static const char *const subjects[] = {
		"週末限定セールのお知らせ",
		"【重要】ご注文の商品を発送しました。お届け予定日は12月1日(火)です。詳しくはマイページをご確認ください",
		"Sale 50% OFF 本日限定 - 先着100名様 ¥1,000 クーポン付き",
		"あ",
		"ASCII だけではない =?ISO-2022-JP?B?x?= を含む",
		"ｶﾀｶﾅ抜きの全角カタカナ",
	};
	static const size_t name_lens[] = { 9, 30, 60, 70, 77 };
	struct compose_job j = base_job;

	(void)state;
	for (size_t i = 0; i < sizeof(subjects) / sizeof(subjects[0]); i++) {
		bool unfit = true;

		for (size_t k = 0; k < sizeof(name_lens) / sizeof(name_lens[0]); k++) {
			char *v = rfc2047_encode_charset(subjects[i], name_lens[k], "ISO-2022-JP", &unfit);
			char *back;

			if (i == 5) {
				/* Half-width kana are not ISO-2022-JP. */
				assert_null(v);
				assert_true(unfit);
				continue;
			}
			assert_non_null(v);
			assert_false(unfit);
			back = decode_words(v, name_lens[k]);
			char *r = as_read(subjects[i]);
			r[strlen(r) - 2] = '\0';	/* as_read adds a line end */
			assert_string_equal(back, r);
			free(r);
			free(back);
			free(v);
		}
		j.subject = subjects[i];
		struct compose_body *b = prepare(&j);
		assert_true(b->fell_back == (i == 5));
		compose_body_free(b);
	}
}

/* Plain ASCII needs no encoded word; ASCII that looks like one does. */
static void
test_subject_ascii(void **state)
{
	char *v;

	(void)state;
	v = rfc2047_encode_charset("Weekend sale", 9, "ISO-2022-JP", NULL);
	assert_string_equal(v, "Weekend sale");
	free(v);
	v = rfc2047_encode_charset("a =?x?= b", 9, "ISO-2022-JP", NULL);
	assert_int_equal(strncmp(v, "=?ISO-2022-JP?B?", 16), 0);
	free(v);
	/* Controls become spaces before anything else. */
	v = rfc2047_encode_charset("件名\r\nBcc: x@y", 9, "ISO-2022-JP", NULL);
	assert_null(strstr(v, "\r\nBcc"));
	char *back = decode_words(v, 9);
	assert_string_equal(back, "件名  Bcc: x@y");
	free(back);
	free(v);
	/* UTF-8 is the plain encoder. */
	char *a = rfc2047_encode_charset("日本語", 9, "UTF-8", NULL), *b = rfc2047_encode("日本語", 9);
	assert_string_equal(a, b);
	free(a);
	free(b);
}

static void
test_fallback(void **state)
{
	static const struct {
		const char *subject, *from, *body, *why;
	} cases[] = {
		{ "丸数字①のお知らせ", NULL, NULL, "Subject: U+2460 not in ISO-2022-JP" },
		{ NULL, NULL, "株式会社は㈱と書く\n", "body: U+3231 not in ISO-2022-JP" },
		{ NULL, "鳩😀 <dm@example.jp>", NULL, "From: U+1F600 not in ISO-2022-JP" },
		{ NULL, NULL, "ﾊﾝｶｸ\n", "body: U+FF8A not in ISO-2022-JP" },
		{ NULL, NULL, "é café\n", "body: U+00E9 not in ISO-2022-JP" },
		/* An ESC of the text's own would switch sets in ours. */
		{ NULL, NULL, "a\x1b$Bb\n", "body: U+001B not in ISO-2022-JP" },
		{ NULL, NULL, "bad \xff octet\n", "body: octet 4 is not UTF-8" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct compose_job j = base_job;
		struct compose_rcpt r = { .to = "a@docomo.ne.jp", .delivery_id = 2 };
		struct compose_body *b;
		char *h;

		if (cases[i].subject)
			j.subject = cases[i].subject;
		if (cases[i].from)
			j.from = cases[i].from;
		if (cases[i].body)
			j.body = cases[i].body;
		b = prepare(&j);
		assert_true(b->fell_back);
		assert_string_equal(b->charset_used, "UTF-8");
		if (strcmp(b->fallback, cases[i].why) != 0)
			fail_msg("case %zu: \"%s\", wanted \"%s\"", i, b->fallback, cases[i].why);
		/* The whole message is UTF-8: headers and body. */
		assert_non_null(h = compose_head(b, &r, 1700000000, NULL));
		assert_non_null(strstr(h, "Content-Type: text/plain; charset=UTF-8\r\n"));
		assert_non_null(strstr(h, "Content-Transfer-Encoding: base64\r\n"));
		assert_null(strstr(h, "ISO-2022-JP"));
		assert_non_null(strstr(h, "Subject: =?UTF-8?B?"));
		/* Nothing became '?': the body decodes to the text. */
		unsigned char *raw = malloc(b->body_len);
		size_t n = 0;
		char *src = strip_crlf(b->body), *want = crlf_text(j.body);
		assert_non_null(raw);
		n = b64_decode(src, strlen(src), raw);
		assert_int_equal(n, strlen(want));
		assert_memory_equal(raw, want, n);
		free(raw);
		free(src);
		free(want);
		free(h);
		compose_body_free(b);
	}

	/* Straight from the header encoder. */
	bool unfit = false;
	assert_null(rfc2047_encode_charset("①", 9, "ISO-2022-JP", &unfit));
	assert_true(unfit);
	unfit = true;
	char *v = rfc2047_encode_charset("丸", 9, "ISO-2022-JP", &unfit);
	assert_non_null(v);
	assert_false(unfit);
	free(v);
}

/* UTF-8 jobs say what they are and never fall back. */
static void
test_utf8_reports(void **state)
{
	struct compose_job j = base_job;
	struct compose_body *b;

	(void)state;
	j.charset = "UTF-8";
	j.body = "①㈱😀";
	b = prepare(&j);
	assert_string_equal(b->charset_used, "UTF-8");
	assert_false(b->fell_back);
	compose_body_free(b);
	j.charset = "ISO-2022-JP";
	j.body = "漢字";
	b = prepare(&j);
	assert_string_equal(b->charset_used, "ISO-2022-JP");
	compose_body_free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_message),
		cmocka_unit_test(test_body_round_trip),
		cmocka_unit_test(test_body_twins),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_subject_words),
		cmocka_unit_test(test_subject_ascii),
		cmocka_unit_test(test_fallback),
		cmocka_unit_test(test_utf8_reports),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
