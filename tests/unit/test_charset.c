/*
 * test_charset: the Japanese charsets to and from UTF-8, by tables of
 * byte strings (made with iconv and Python's codecs, written as escapes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mail/charset.h"

#define S(x) x, sizeof(x) - 1

struct valid_case {
	const char *in;
	size_t len;
	bool valid;
};

static const struct valid_case valids[] = {
	{ S(""), true },
	{ S("plain ascii"), true },
	{ S("\xe3\x81\x82\xf0\x9f\x90\xa6"), true },		/* あ🐦 */
	{ S("\xc0\x80"), false },				/* overlong NUL */
	{ S("\xe0\x80\xaf"), false },				/* overlong '/' */
	{ S("\xed\xa0\x80"), false },				/* surrogate */
	{ S("\xf4\x90\x80\x80"), false },			/* over U+10FFFF */
	{ S("\xe3\x81"), false },				/* cut short */
	{ S("\x82\xa0"), false },				/* CP932 あ */
	{ S("\xff"), false },
};

static void
test_utf8_valid(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(valids) / sizeof(valids[0]); i++)
		if (utf8_valid(valids[i].in, valids[i].len) != valids[i].valid)
			fail_msg("case %zu: want %d", i, valids[i].valid);
}

struct to_case {
	const char *charset;
	const char *in;
	size_t len;
	const char *want;	/* NULL: conversion must fail */
};

static const struct to_case tos[] = {
	/* ①㈱あ in CP932 under every name Shift_JIS goes by */
	{ "Shift_JIS", S("\x87@\x87\x8a\x82\xa0"), "①㈱あ" },
	{ "shift-jis", S("\x87@\x87\x8a\x82\xa0"), "①㈱あ" },
	{ "sjis", S("\x87@\x87\x8a\x82\xa0"), "①㈱あ" },
	{ "x-sjis", S("\x87@\x87\x8a\x82\xa0"), "①㈱あ" },
	{ "cp932", S("\x87@\x87\x8a\x82\xa0"), "①㈱あ" },
	{ "Windows-31J", S("\x87@\x87\x8a\x82\xa0"), "①㈱あ" },
	{ "SHIFT_JIS", S("\x81\x60"), "～" },			/* CP932's wave dash */
	/* ISO-2022-JP */
	{ "ISO-2022-JP", S("\x1b$B$3$s$K$A$O\x1b(B"), "こんにちは" },
	{ "iso-2022-jp", S("Hi \x1b$B$3$s\x1b(B!\r\n"), "Hi こん!\r\n" },
	{ "ISO-2022-JP", S("\x1b$@$3\x1b(J$\x1b(B"), "こ$" },
	/* NEC row 13 and an NEC-selected IBM row, as CP50221 writes them */
	{ "ISO-2022-JP", S("\x1b$B-!-j\x1b(B"), "①㈱" },
	{ "ISO-2022-JP", S("\x1b$B|b\x1b(B"), "髙" },
	/* half-width katakana: ESC ( I, and SO/SI as CP50222 writes them */
	{ "ISO-2022-JP", S("\x1b(I123\x1b(B"), "ｱｲｳ" },
	{ "CP50222", S("\x0e" "123\x0f" "a"), "ｱｲｳa" },
	/* a line end inside a two-byte run: the encoder forgot ESC ( B */
	{ "ISO-2022-JP", S("\x1b$B$3\r\n$s\x1b(B"), "こ\r\nん" },
	/* JIS X 0212 is not in CP932: glibc's ISO-2022-JP-2 reads it */
	{ "ISO-2022-JP", S("\x1b$(D0!\x1b(B"), "丂" },
	{ "ISO-2022-JP", S("\x82\xa0"), NULL },			/* 8-bit */
	{ "ISO-2022-JP", S("\x1b$B$"), NULL },			/* odd byte */
	/* EUC-JP, read as EUC-JP-MS: ① is ADA1 there */
	{ "EUC-JP", S("\xa4\xa2\xad\xa1"), "あ①" },
	{ "x-euc-jp", S("\xa4\xa2"), "あ" },
	/* UTF-8 is checked, and a byte order mark never reaches the text */
	{ "UTF-8", S("\xe3\x81\x82"), "あ" },
	{ "utf8", S("\xef\xbb\xbf\xe3\x81\x82"), "あ" },
	{ "UTF-8", S("\x82\xa0"), NULL },
	{ "ISO-8859-1", S("caf\xe9"), "café" },
	{ "us-ascii", S("plain"), "plain" },
	{ "us-ascii", S("\xe3\x81\x82"), NULL },
	/* unknown names, and names that would smuggle iconv options */
	{ "x-klingon", S("abc"), NULL },
	{ "UTF-8//IGNORE", S("abc"), NULL },
	{ "", S("abc"), NULL },
	{ NULL, S("abc"), NULL },
};

static void
test_to_utf8(void **state)
{
	size_t i, n;
	char *out;

	(void)state;
	for (i = 0; i < sizeof(tos) / sizeof(tos[0]); i++) {
		const struct to_case *c = &tos[i];

		n = 12345;
		out = charset_to_utf8(c->charset, c->in, c->len, &n);
		if (c->want == NULL && out != NULL)
			fail_msg("case %zu (%s): converted to '%s'", i, c->charset, out);
		if (c->want != NULL && out == NULL)
			fail_msg("case %zu (%s): failed", i, c->charset);
		if (c->want != NULL && (strcmp(out, c->want) != 0 || n != strlen(c->want)))
			fail_msg("case %zu (%s): '%s' (%zu), want '%s'", i, c->charset,
			    out, n, c->want);
		free(out);
	}
}

struct guess_case {
	const char *in;
	size_t len;
	const char *want;
};

static const struct guess_case guesses[] = {
	{ S("\xef\xbb\xbf" "taro@docomo.ne.jp"), "taro@docomo.ne.jp" },
	{ S("\xe3\x83\xa1\xe3\x83\xbc\xe3\x83\xab"), "メール" },
	{ S("\x1b$B%a!<%k\x1b(B"), "メール" },
	{ S("\x83\x81\x81[\x83\x8b,\x87@"), "メール,①" },
	{ S("\xff\xfe" "a\0\x42\x30"), "aあ" },			/* UTF-16LE */
	{ S("\xfe\xff" "\0a\x30\x42"), "aあ" },			/* UTF-16BE */
	{ S(""), "" },
};

static void
test_guess(void **state)
{
	size_t i, n;
	char *out;

	(void)state;
	for (i = 0; i < sizeof(guesses) / sizeof(guesses[0]); i++) {
		out = charset_guess_to_utf8(guesses[i].in, guesses[i].len, &n);
		if (out == NULL)
			fail_msg("case %zu: failed", i);
		if (strcmp(out, guesses[i].want) != 0 || n != strlen(out))
			fail_msg("case %zu: '%s', want '%s'", i, out, guesses[i].want);
		free(out);
	}
	/* 0xFF is neither UTF-8, CP932 nor EUC-JP */
	assert_null(charset_guess_to_utf8(S("\xff"), NULL));
}

struct from_case {
	const char *charset;
	const char *in;
	size_t len;
	const char *want;	/* NULL: must fail ... */
	size_t wantlen;
	size_t bad;		/* ... at this offset */
};

static const struct from_case froms[] = {
	{ "ISO-2022-JP", S("こんにちは"), S("\x1b$B$3$s$K$A$O\x1b(B"), 0 },
	{ "ISO-2022-JP", S("abc"), S("abc"), 0 },
	/* ① has no place in ISO-2022-JP: the caller learns where */
	{ "ISO-2022-JP", S("あ①"), NULL, 0, 3 },
	{ "ISO-2022-JP", S("ok ㈱"), NULL, 0, 3 },
	/* CP932's ～ (U+FF5E) is written as JIS's 〜 (U+301C) */
	{ "ISO-2022-JP", S("\xef\xbd\x9e"), S("\x1b$B!A\x1b(B"), 0 },
	{ "ISO-2022-JP", S("\xef\xbc\x8d" "1"), S("\x1b$B!]\x1b(B" "1"), 0 },
	{ "Shift_JIS", S("①㈱あ"), S("\x87@\x87\x8a\x82\xa0"), 0 },
	{ "Shift_JIS", S("〜"), S("\x81\x60"), 0 },
	{ "Shift_JIS", S("a\xf0\x9f\x90\xa6"), NULL, 0, 1 },	/* 🐦 */
	{ "EUC-JP", S("あ①"), S("\xa4\xa2\xad\xa1"), 0 },
	{ "UTF-8", S("あ"), S("あ"), 0 },
	{ "UTF-8", S("ab\xe3\x81"), NULL, 0, 2 },
	{ "ISO-2022-JP", S("ab\xff"), NULL, 0, 2 },
	{ "x-klingon", S("abc"), NULL, 0, 3 },
};

static void
test_from_utf8(void **state)
{
	size_t i, n, bad;
	char *out;

	(void)state;
	for (i = 0; i < sizeof(froms) / sizeof(froms[0]); i++) {
		const struct from_case *c = &froms[i];

		bad = 999;
		out = charset_from_utf8(c->charset, c->in, c->len, &n, &bad);
		if (c->want == NULL) {
			if (out != NULL)
				fail_msg("case %zu (%s): converted", i, c->charset);
			if (bad != c->bad)
				fail_msg("case %zu (%s): bad %zu, want %zu", i,
				    c->charset, bad, c->bad);
			continue;
		}
		if (out == NULL)
			fail_msg("case %zu (%s): failed at %zu", i, c->charset, bad);
		if (n != c->wantlen || memcmp(out, c->want, n) != 0 || out[n] != '\0')
			fail_msg("case %zu (%s): wrong bytes (%zu)", i, c->charset, n);
		free(out);
	}
}

/* Large input: the output buffer grows, state is flushed once at the end. */
static void
test_round_trip_large(void **state)
{
	const char unit[] = "週末限定セールのお知らせ ①㈱ abc\n";
	size_t i, n, m, bad, count = 20000, ulen = sizeof(unit) - 1;
	char *text = malloc(ulen * count + 1), *sjis, *back;

	(void)state;
	assert_non_null(text);
	for (i = 0; i < count; i++)
		memcpy(text + i * ulen, unit, ulen);
	text[ulen * count] = '\0';
	sjis = charset_from_utf8("Shift_JIS", text, ulen * count, &n, &bad);
	assert_non_null(sjis);
	back = charset_to_utf8("Shift_JIS", sjis, n, &m);
	assert_non_null(back);
	assert_int_equal(m, ulen * count);
	assert_memory_equal(back, text, m);
	free(back);
	free(sjis);
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8_valid),
		cmocka_unit_test(test_to_utf8),
		cmocka_unit_test(test_guess),
		cmocka_unit_test(test_from_utf8),
		cmocka_unit_test(test_round_trip_large),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
