/*
 * test_rfc2047: header values for outgoing mail (mail/rfc2047.c). Every
 * output is checked for its shape (folding, word and line lengths, no CR or
 * LF but in CRLF SP) and decoded back here, by a decoder of the test's own.
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

#include "mail/rfc2047.h"

#define SUBJ 9			/* strlen("Subject: ") */

static int
b64val(char c)
{
	const char *tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = c ? strchr(tab, c) : NULL;

	return p ? (int)(p - tab) : -1;
}

/* Decode base64 (len a multiple of 4) onto out; returns octets written. */
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

/* Whether s[0..len) is whole, well-formed UTF-8 (enough for the test: lead
 * and continuation octets agree). */
static bool
utf8_whole(const unsigned char *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		size_t n = s[i] < 0x80 ? 1 : s[i] >= 0xf0 ? 4 : s[i] >= 0xe0 ? 3 : s[i] >= 0xc2 ? 2 : 0;

		if (n == 0 || i + n > len)
			return false;
		for (size_t k = 1; k < n; k++)
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
		i += n;
	}
	return true;
}

/*
 * Check the shape of v as a header value after name_len octets, and return
 * the text it stands for (malloc'd). Shape: CR and LF only as CRLF followed
 * by SP or TAB, no line over 998 octets (over 78 only when plain_long),
 * and either plain ASCII or encoded words only, each at most 75 octets and
 * holding whole UTF-8 characters.
 */
static char *
check_decode(const char *v, size_t name_len, bool *encoded, size_t *longest)
{
	size_t len = strlen(v), col = name_len, n = 0;
	char *unfolded = malloc(len + 1), *out = malloc(len + 1), *tok, *save = NULL;

	assert_non_null(unfolded);
	assert_non_null(out);
	*longest = 0;
	for (size_t i = 0; i < len; i++) {
		if (v[i] == '\r') {
			assert_true(v[i + 1] == '\n');
			assert_true(v[i + 2] == ' ' || v[i + 2] == '\t');
			/* A line of white space alone is not allowed. */
			assert_true(i > 0 && v[i - 1] != ' ' && v[i - 1] != '\t');
			i++;
			if (col > *longest)
				*longest = col;
			col = 0;
			continue;
		}
		assert_true(v[i] != '\n');
		assert_true((unsigned char)v[i] >= 0x20 || v[i] == '\t');
		assert_true((unsigned char)v[i] < 0x7f);
		unfolded[n++] = v[i];
		col++;
	}
	if (col > *longest)
		*longest = col;
	assert_true(*longest <= 998);
	unfolded[n] = '\0';

	*encoded = strncmp(unfolded, "=?", 2) == 0;
	if (!*encoded) {
		free(out);
		return unfolded;
	}
	/* Encoded words separated by white space only: decode and join. */
	n = 0;
	for (tok = strtok_r(unfolded, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
		size_t tl = strlen(tok), got;

		assert_true(tl <= 75);
		assert_true(tl > 12);
		assert_memory_equal(tok, "=?UTF-8?B?", 10);
		assert_memory_equal(tok + tl - 2, "?=", 2);
		got = b64_decode(tok + 10, tl - 12, (unsigned char *)out + n);
		assert_true(utf8_whole((unsigned char *)out + n, got));
		n += got;
	}
	out[n] = '\0';
	free(unfolded);
	return out;
}

struct enc_case {
	const char *in;
	size_t name_len;
	const char *decoded;	/* what the value reads as */
	bool encoded;		/* whether encoded words are expected */
	bool short_lines;	/* every line within 78 octets */
};

static void
run_cases(const struct enc_case *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char *v = rfc2047_encode(c[i].in, c[i].name_len), *d;
		size_t longest;
		bool enc;

		assert_non_null(v);
		d = check_decode(v, c[i].name_len, &enc, &longest);
		if (strcmp(d, c[i].decoded) != 0)
			fail_msg("case %zu: reads as \"%s\", wanted \"%s\" (value \"%s\")", i, d,
			    c[i].decoded, v);
		if (enc != c[i].encoded)
			fail_msg("case %zu: %s, wanted %s", i, enc ? "encoded" : "plain",
			    c[i].encoded ? "encoded" : "plain");
		if (c[i].short_lines && longest > 78)
			fail_msg("case %zu: a line of %zu octets", i, longest);
		free(d);
		free(v);
	}
}

static void
test_ascii(void **state)
{
	static const struct enc_case cases[] = {
		{ "Hello world", SUBJ, "Hello world", false, true },
		{ "", SUBJ, "", false, true },
		{ "  leading and trailing  ", SUBJ, "  leading and trailing  ", false, true },
		{ "tab\there", SUBJ, "tab\there", false, true },
		{ "50% off! (today) <only> \"quoted\" a@b.c", SUBJ,
		  "50% off! (today) <only> \"quoted\" a@b.c", false, true },
		/* What would read as an encoded word is encoded. */
		{ "=?UTF-8?B?5pel?=", SUBJ, "=?UTF-8?B?5pel?=", true, true },
		{ "a =? b", SUBJ, "a =? b", true, true },
	};

	(void)state;
	run_cases(cases, sizeof(cases) / sizeof(cases[0]));
	/* Plain ASCII comes back octet for octet. */
	char *v = rfc2047_encode("Hello world", SUBJ);
	assert_string_equal(v, "Hello world");
	free(v);
	v = rfc2047_encode(NULL, SUBJ);
	assert_string_equal(v, "");
	free(v);
}

static void
test_controls(void **state)
{
	static const struct enc_case cases[] = {
		{ "Hello\r\nBcc: x@y", SUBJ, "Hello  Bcc: x@y", false, true },
		{ "a\rb\nc\x01" "d\x7f" "e\x1b[0m", SUBJ, "a b c d e [0m", false, true },
		{ "\r\n", SUBJ, "  ", false, true },
		{ "件名\r\nBcc: x@y", SUBJ, "件名  Bcc: x@y", true, true },
		/* U+0085 (NEL) and U+009B (CSI) are controls too. */
		{ "a\xc2\x85" "b\xc2\x9b" "c", SUBJ, "a b c", false, true },
		{ "日\xc2\x85本", SUBJ, "日 本", true, true },
	};

	(void)state;
	run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void
test_invalid_utf8(void **state)
{
	static const struct enc_case cases[] = {
		{ "a\xff" "b", SUBJ, "a\xef\xbf\xbd" "b", true, true },
		{ "\xe3\x81", SUBJ, "\xef\xbf\xbd\xef\xbf\xbd", true, true },
		/* Overlong '/', a surrogate, past U+10FFFF, a lone continuation. */
		{ "\xc0\xaf", SUBJ, "\xef\xbf\xbd\xef\xbf\xbd", true, true },
		{ "\xed\xa0\x80", SUBJ, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", true, true },
		{ "\xf4\x90\x80\x80", SUBJ,
		  "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", true, true },
		{ "\x80日", SUBJ, "\xef\xbf\xbd日", true, true },
		/* The largest valid characters stay as they are. */
		{ "\xf4\x8f\xbf\xbf\xef\xbf\xbf", SUBJ, "\xf4\x8f\xbf\xbf\xef\xbf\xbf", true, true },
	};

	(void)state;
	run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void
test_japanese(void **state)
{
	static const struct enc_case cases[] = {
		{ "週末限定セールのお知らせ", SUBJ, "週末限定セールのお知らせ", true, true },
		{ "【重要】12/1 09:00 から 50% OFF ①㈱ 🎉🎉🎉", SUBJ,
		  "【重要】12/1 09:00 から 50% OFF ①㈱ 🎉🎉🎉", true, true },
		{ "ａ", SUBJ, "ａ", true, true },
		/* A long header name leaves less room on the first line, and an
		 * absurd one still gets one character in a word. */
		{ "週末限定セールのお知らせ", 50, "週末限定セールのお知らせ", true, true },
		{ "🎉🎉", 70, "🎉🎉", true, false },
	};
	char *v;

	(void)state;
	run_cases(cases, sizeof(cases) / sizeof(cases[0]));
	v = rfc2047_encode("日本語", SUBJ);
	assert_string_equal(v, "=?UTF-8?B?5pel5pys6Kqe?=");
	free(v);
}

/* Long text of 1-, 3- and 4-octet characters: many words, each holding
 * whole characters (checked in check_decode), one a line. */
static void
test_long_encoded(void **state)
{
	static const char *const pieces[] = { "あ", "a", "🎉", "漢字", " ", "é" };
	char in[8192] = "";
	struct enc_case c = { in, SUBJ, in, true, true };

	(void)state;
	for (size_t i = 0; strlen(in) < sizeof(in) - 16; i++)
		strcat(in, pieces[(i * 7) % 6]);
	run_cases(&c, 1);
	for (size_t shift = 0; shift < 4; shift++) {
		c.in = in + shift;
		/* Starting inside a character: the cut octets read as U+FFFD. */
		if (((unsigned char)in[shift] & 0xc0) == 0x80)
			continue;
		c.decoded = c.in;
		run_cases(&c, 1);
	}
}

static void
test_ascii_folding(void **state)
{
	char in[2048] = "", word[2100];
	struct enc_case c = { in, SUBJ, in, false, true };
	char *v;

	(void)state;
	for (int i = 0; strlen(in) < 1500; i++)
		snprintf(in + strlen(in), sizeof(in) - strlen(in), "%sword%d", i ? " " : "", i);
	run_cases(&c, 1);
	v = rfc2047_encode(in, SUBJ);
	assert_non_null(strstr(v, "\r\n "));
	free(v);

	/* A word longer than 78 stands on its own line. */
	memset(word, 'x', 200);
	strcpy(word + 200, " short tail");
	memmove(word + 6, word, strlen(word) + 1);
	memcpy(word, "start ", 6);
	c.in = c.decoded = word;
	c.short_lines = false;
	run_cases(&c, 1);
	v = rfc2047_encode(word, SUBJ);
	assert_non_null(strstr(v, "start\r\n xxx"));
	assert_non_null(strstr(v, "xxx\r\n short tail"));
	free(v);

	/* One that cannot fit in 998 octets is encoded rather than sent too long. */
	memset(word, 'y', 2000);
	word[2000] = '\0';
	c.encoded = true;
	c.short_lines = true;
	run_cases(&c, 1);

	/* Trailing white space stays on its line, never on a line alone. */
	memset(word, 'z', 70);
	memset(word + 70, ' ', 30);
	word[100] = '\0';
	c.encoded = false;
	c.short_lines = false;
	run_cases(&c, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ascii),
		cmocka_unit_test(test_controls),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_japanese),
		cmocka_unit_test(test_long_encoded),
		cmocka_unit_test(test_ascii_folding),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
