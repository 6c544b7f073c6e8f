/*
 * test_address: addr_parse, addr_canonical and addr_format by tables of
 * addresses as submitters write them, legacy carrier forms included.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mail/address.h"

struct good {
	const char *in;
	const char *canonical;
	const char *formatted;
	bool needs_quote;
};

static const struct good goods[] = {
	{ "taro@docomo.ne.jp", "taro@docomo.ne.jp", "taro@docomo.ne.jp", false },
	/* legacy carrier local parts: kept, sent quoted */
	{ "taro..@docomo.ne.jp", "taro..@docomo.ne.jp", "\"taro..\"@docomo.ne.jp", true },
	{ "taro.@docomo.ne.jp", "taro.@docomo.ne.jp", "\"taro.\"@docomo.ne.jp", true },
	{ ".hanako.@ezweb.ne.jp", ".hanako.@ezweb.ne.jp", "\".hanako.\"@ezweb.ne.jp", true },
	{ "a..b@ezweb.ne.jp", "a..b@ezweb.ne.jp", "\"a..b\"@ezweb.ne.jp", true },
	{ "<taro..@docomo.ne.jp>", "taro..@docomo.ne.jp", "\"taro..\"@docomo.ne.jp", true },
	{ "\"taro..\"@docomo.ne.jp", "taro..@docomo.ne.jp", "\"taro..\"@docomo.ne.jp", true },
	/* atext that looks odd but is fine */
	{ "a/b?c-d_e+f@example.jp", "a/b?c-d_e+f@example.jp", "a/b?c-d_e+f@example.jp", false },
	{ "x!#$%&'*=^`{|}~@example.jp", "x!#$%&'*=^`{|}~@example.jp", "x!#$%&'*=^`{|}~@example.jp", false },
	/* domain lower-cased, one trailing dot dropped, local part kept */
	{ "Taro.Yamada@Example.COM", "Taro.Yamada@example.com", "Taro.Yamada@example.com", false },
	{ "taro@docomo.ne.jp.", "taro@docomo.ne.jp", "taro@docomo.ne.jp", false },
	/* display names, angle brackets, white space */
	{ "<hanako@ezweb.ne.jp>", "hanako@ezweb.ne.jp", "hanako@ezweb.ne.jp", false },
	{ "山田 太郎 <taro@docomo.ne.jp>", "taro@docomo.ne.jp", "taro@docomo.ne.jp", false },
	{ "\"Yamada, Taro <x>\" <taro@docomo.ne.jp>", "taro@docomo.ne.jp", "taro@docomo.ne.jp", false },
	{ "  \ttaro@docomo.ne.jp \r\n", "taro@docomo.ne.jp", "taro@docomo.ne.jp", false },
	{ "\xe3\x80\x80taro@docomo.ne.jp\xe3\x80\x80", "taro@docomo.ne.jp", "taro@docomo.ne.jp", false },
	{ "Taro < taro@docomo.ne.jp >", "taro@docomo.ne.jp", "taro@docomo.ne.jp", false },
	/* quoted local parts */
	{ "\"a b\"@example.com", "a b@example.com", "\"a b\"@example.com", true },
	{ "\"taro\"@docomo.ne.jp", "taro@docomo.ne.jp", "taro@docomo.ne.jp", false },
	{ "\"a\\\"b\"@example.com", "a\"b@example.com", "\"a\\\"b\"@example.com", true },
	{ "\"a\\\\b\"@example.com", "a\\b@example.com", "\"a\\\\b\"@example.com", true },
	{ "\"a@b\"@example.com", "a@b@example.com", "\"a@b\"@example.com", true },
	/* 64 octets of local part is the limit, not over it */
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x.jp",
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x.jp",
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x.jp", false },
	{ "taro@xn--eckwd4c7c.jp", "taro@xn--eckwd4c7c.jp", "taro@xn--eckwd4c7c.jp", false },
	{ "taro@a-b.c-d.jp", "taro@a-b.c-d.jp", "taro@a-b.c-d.jp", false },
};

struct bad {
	const char *in;
	const char *why;
};

#define L65 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define LAB63 "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static const struct bad bads[] = {
	{ "", "empty address" },
	{ "   ", "empty address" },
	{ "<>", "empty address" },
	{ "@docomo.ne.jp", "empty local part" },
	{ "\"\"@docomo.ne.jp", "empty local part" },
	{ "taro", "missing '@'" },
	{ "taro\xef\xbc\xa0" "docomo.ne.jp", "full-width '\xef\xbc\xa0' instead of '@'" },
	{ "taro@", "empty domain" },
	{ "taro@.", "empty domain" },
	{ "taro@localhost", "domain is not a fully qualified name" },
	{ "taro@docomo..ne.jp", "empty label in domain" },
	{ "taro@.docomo.ne.jp", "empty label in domain" },
	{ "taro@docomo.ne.jp..", "empty label in domain" },
	{ "taro@-docomo.ne.jp", "domain label starts or ends with '-'" },
	{ "taro@docomo-.ne.jp", "domain label starts or ends with '-'" },
	{ "taro@" LAB63 "b.jp", "domain label longer than 63 octets" },
	{ "taro@doco_mo.ne.jp", "character not allowed in domain" },
	{ "taro@docomo.ne.jp>", "'>' without '<'" },
	{ "taro@\xe3\x83\x89\xe3\x82\xb3\xe3\x83\xa2.jp", "non-ASCII domain (write it in its xn-- form)" },
	{ "taro@[192.0.2.1]", "address literals are not accepted" },
	{ "taro@192.0.2.1", "domain ends in a numeric label" },
	{ L65 "@x.jp", "local part longer than 64 octets" },
	{ "\"" L65 "\"@x.jp", "local part longer than 64 octets" },
	{ "a@" LAB63 "." LAB63 "." LAB63 "." LAB63 ".jp", "domain longer than 253 octets" },
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@"
	  LAB63 "." LAB63 "." LAB63 ".jp", "address longer than 254 octets" },
	{ "ta ro@docomo.ne.jp", "character not allowed in local part: ' '" },
	{ "Taro taro@docomo.ne.jp", "character not allowed in local part: ' '" },
	{ "ta,ro@docomo.ne.jp", "character not allowed in local part: ','" },
	{ "ta(ro)@docomo.ne.jp", "character not allowed in local part: '('" },
	{ "a@b@example.com", "character not allowed in local part: '@'" },
	{ "ta\\ro@docomo.ne.jp", "character not allowed in local part: '\\'" },
	{ "\xe3\x81\x9f\xe3\x82\x8d\xe3\x81\x86@docomo.ne.jp", "non-ASCII character in local part" },
	{ "ta\x01ro@docomo.ne.jp", "control character in local part" },
	{ "\"ta\x01ro\"@docomo.ne.jp", "control character in local part" },
	{ "...@docomo.ne.jp", "local part has only dots" },
	{ "\"taro@docomo.ne.jp", "unterminated quoted local part" },
	{ "\"taro\"x@docomo.ne.jp", "text after quoted local part" },
};

static void
test_good(void **state)
{
	struct mail_addr a;
	const char *why = NULL;
	char buf[ADDR_MAX * 2 + 3];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
		const struct good *g = &goods[i];

		if (addr_parse(g->in, strlen(g->in), &a, &why) != 0)
			fail_msg("'%s': refused: %s", g->in, why);
		if (addr_canonical(&a, buf, sizeof(buf)) != strlen(g->canonical) ||
		    strcmp(buf, g->canonical) != 0)
			fail_msg("'%s': canonical '%s', want '%s'", g->in, buf, g->canonical);
		if (addr_format(&a, buf, sizeof(buf)) != strlen(g->formatted) ||
		    strcmp(buf, g->formatted) != 0)
			fail_msg("'%s': formatted '%s', want '%s'", g->in, buf, g->formatted);
		if (a.needs_quote != g->needs_quote)
			fail_msg("'%s': needs_quote %d", g->in, a.needs_quote);
	}
}

static void
test_bad(void **state)
{
	struct mail_addr a;
	const char *why;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		const struct bad *b = &bads[i];

		why = NULL;
		if (addr_parse(b->in, strlen(b->in), &a, &why) != -1)
			fail_msg("'%s': accepted", b->in);
		if (why == NULL || strcmp(why, b->why) != 0)
			fail_msg("'%s': reason '%s', want '%s'", b->in,
			    why ? why : "(null)", b->why);
	}
}

/* The length argument bounds the parse: no NUL needed, nothing read past. */
static void
test_length_bounded(void **state)
{
	const char s[] = "taro@docomo.ne.jpXXXX";
	struct mail_addr a;
	const char *why;

	(void)state;
	assert_int_equal(addr_parse(s, 17, &a, &why), 0);
	assert_string_equal(a.domain, "docomo.ne.jp");
	assert_int_equal(addr_parse("a@b.jp\0c", 8, &a, &why), -1);
}

static void
test_format_truncates(void **state)
{
	struct mail_addr a;
	const char *why;
	char small[8];

	(void)state;
	assert_int_equal(addr_parse("taro..@docomo.ne.jp", 19, &a, &why), 0);
	assert_int_equal(addr_format(&a, small, sizeof(small)), 21);
	assert_string_equal(small, "\"taro..");
	assert_int_equal(addr_canonical(&a, small, sizeof(small)), 19);
	assert_string_equal(small, "taro..@");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_length_bounded),
		cmocka_unit_test(test_format_truncates),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
