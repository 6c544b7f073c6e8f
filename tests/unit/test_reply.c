/*
 * test_reply: the SMTP/LMTP reply codec, by tables of cases: single and
 * multi-line replies, enhanced status codes, malformed lines, bounds, and
 * EHLO keyword lookup.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mail/reply.h"

struct reply_case {
	const char *name;
	const char *lines[8];	/* fed in order, NULL-terminated */
	enum reply_result want;	/* the result of the last feed */
	int code;
	const char *status;
	const char *text;	/* for REPLY_MALFORMED: a part of r.error */
	size_t nlines;
};

static const struct reply_case cases[] = {
	/* single line */
	{ "plain", { "250 Ok" }, REPLY_DONE, 250, "", "Ok", 1 },
	{ "bare code", { "250" }, REPLY_DONE, 250, "", "", 1 },
	{ "code and blank", { "250 " }, REPLY_DONE, 250, "", "", 1 },
	{ "trailing CR", { "221 Bye\r" }, REPLY_DONE, 221, "", "Bye", 1 },
	{ "greeting", { "220 mx.example ESMTP ready" }, REPLY_DONE, 220, "", "mx.example ESMTP ready", 1 },
	{ "354", { "354 End data with <CR><LF>.<CR><LF>" }, REPLY_DONE, 354, "",
	  "End data with <CR><LF>.<CR><LF>", 1 },
	{ "control chars", { "250 a\x1b[31mb\tc\x7f" }, REPLY_DONE, 250, "", "a?[31mb c?", 1 },

	/* multi-line */
	{ "ehlo", { "250-mx.example", "250-PIPELINING", "250 SIZE 1000" }, REPLY_DONE, 250, "",
	  "mx.example PIPELINING SIZE 1000", 3 },
	{ "empty continuation", { "250-", "250 Ok" }, REPLY_DONE, 250, "", "Ok", 2 },
	{ "bare LF lines", { "250-one\r", "250 two\r" }, REPLY_DONE, 250, "", "one two", 2 },

	/* enhanced status codes */
	{ "status", { "550 5.1.1 User unknown" }, REPLY_DONE, 550, "5.1.1", "User unknown", 1 },
	{ "status 4xx", { "451 4.3.0 Try again later" }, REPLY_DONE, 451, "4.3.0", "Try again later", 1 },
	{ "status 2xx", { "250 2.0.0 Ok: queued as 1234" }, REPLY_DONE, 250, "2.0.0", "Ok: queued as 1234", 1 },
	{ "status long parts", { "550 5.7.509 Access denied" }, REPLY_DONE, 550, "5.7.509", "Access denied", 1 },
	{ "status alone", { "250 2.0.0" }, REPLY_DONE, 250, "2.0.0", "", 1 },
	{ "status many blanks", { "250 2.1.5   Ok" }, REPLY_DONE, 250, "2.1.5", "Ok", 1 },
	{ "status every line", { "550-5.1.1 The account", "550-5.1.1 does not", "550 5.1.1 exist" },
	  REPLY_DONE, 550, "5.1.1", "The account does not exist", 3 },
	{ "status later line", { "250-first", "250 2.0.0 second" }, REPLY_DONE, 250, "2.0.0", "first second", 2 },
	{ "status kept once", { "550-5.1.1 one", "550 5.7.1 two" }, REPLY_DONE, 550, "5.1.1", "one two", 2 },
	{ "status wrong class", { "250 5.0.0 odd" }, REPLY_DONE, 250, "", "5.0.0 odd", 1 },
	{ "status class 3", { "354 3.0.0 go" }, REPLY_DONE, 354, "", "3.0.0 go", 1 },
	{ "status two parts", { "250 2.0 ok" }, REPLY_DONE, 250, "", "2.0 ok", 1 },
	{ "status glued", { "250 2.0.0Ok" }, REPLY_DONE, 250, "", "2.0.0Ok", 1 },
	{ "status 4 digits", { "250 2.1234.0 x" }, REPLY_DONE, 250, "", "2.1234.0 x", 1 },
	{ "status empty part", { "550 5..1 x" }, REPLY_DONE, 550, "", "5..1 x", 1 },

	/* continuation: the result of a prefix */
	{ "more", { "250-mx.example" }, REPLY_MORE, 250, "", "mx.example", 1 },

	/* malformed */
	{ "empty", { "" }, REPLY_MALFORMED, 0, "", "three digits", 0 },
	{ "short", { "25" }, REPLY_MALFORMED, 0, "", "three digits", 0 },
	{ "letters", { "2x0 Ok" }, REPLY_MALFORMED, 0, "", "three digits", 0 },
	{ "four digits", { "2500 Ok" }, REPLY_MALFORMED, 0, "", "three digits", 0 },
	{ "text only", { "hello" }, REPLY_MALFORMED, 0, "", "three digits", 0 },
	{ "range 6xx", { "650 x" }, REPLY_MALFORMED, 0, "", "range", 0 },
	{ "range 0xx", { "050 x" }, REPLY_MALFORMED, 0, "", "range", 0 },
	{ "separator", { "250_Ok" }, REPLY_MALFORMED, 0, "", "separator", 0 },
	{ "separator tab", { "250\tOk" }, REPLY_MALFORMED, 0, "", "separator", 0 },
	{ "code changed", { "250-a", "251 b" }, REPLY_MALFORMED, 0, "", "changed", 0 },
	{ "bad second line", { "250-a", "junk" }, REPLY_MALFORMED, 0, "", "three digits", 0 },
};

static void
run_case(const struct reply_case *c)
{
	struct reply r;
	enum reply_result res = REPLY_MALFORMED;
	size_t i;

	reply_init(&r);
	for (i = 0; c->lines[i] != NULL; i++) {
		res = reply_feed(&r, c->lines[i], strlen(c->lines[i]));
		if (c->lines[i + 1] != NULL && res != REPLY_MORE)
			fail_msg("case \"%s\": line %zu gave %d, want REPLY_MORE", c->name, i, res);
	}
	if (res != c->want)
		fail_msg("case \"%s\": result %d, want %d (%s)", c->name, res, c->want,
		    r.error ? r.error : "");
	if (res == REPLY_MALFORMED) {
		if (r.error == NULL || strstr(r.error, c->text) == NULL)
			fail_msg("case \"%s\": error \"%s\", want \"%s\"", c->name,
			    r.error ? r.error : "(null)", c->text);
		return;
	}
	if (r.code != c->code)
		fail_msg("case \"%s\": code %d, want %d", c->name, r.code, c->code);
	if (strcmp(r.status, c->status) != 0)
		fail_msg("case \"%s\": status \"%s\", want \"%s\"", c->name, r.status, c->status);
	if (strcmp(r.text, c->text) != 0)
		fail_msg("case \"%s\": text \"%s\", want \"%s\"", c->name, r.text, c->text);
	if (r.nlines != c->nlines)
		fail_msg("case \"%s\": %zu lines, want %zu", c->name, r.nlines, c->nlines);
}

static void
test_cases(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
		run_case(&cases[i]);
}

static enum reply_result
feed_str(struct reply *r, const char *s)
{
	return reply_feed(r, s, strlen(s));
}

/* A feed after a complete or malformed reply starts a new one. */
static void
test_restart(void **state)
{
	struct reply r;

	(void)state;
	reply_init(&r);
	assert_int_equal(feed_str(&r, "550-5.1.1 a"), REPLY_MORE);
	assert_int_equal(feed_str(&r, "550 5.1.1 b"), REPLY_DONE);
	assert_int_equal(feed_str(&r, "250 Ok"), REPLY_DONE);
	assert_int_equal(r.code, 250);
	assert_string_equal(r.status, "");
	assert_string_equal(r.text, "Ok");
	assert_int_equal(reply_nlines(&r), 1);

	assert_int_equal(feed_str(&r, "250-a"), REPLY_MORE);
	assert_int_equal(feed_str(&r, "2x0 b"), REPLY_MALFORMED);
	assert_int_equal(r.code, 0);
	assert_int_equal(reply_nlines(&r), 0);
	assert_int_equal(feed_str(&r, "221 2.0.0 Bye"), REPLY_DONE);
	assert_int_equal(r.code, 221);
	assert_string_equal(r.status, "2.0.0");
	assert_null(r.error);
}

/* Embedded NULs count as text (the length is given), made printable. */
static void
test_nul(void **state)
{
	struct reply r;

	(void)state;
	reply_init(&r);
	assert_int_equal(reply_feed(&r, "250 a\0b", 7), REPLY_DONE);
	assert_string_equal(r.text, "a?b");
}

static void
test_bound_lines(void **state)
{
	struct reply r;
	int i;

	(void)state;
	reply_init(&r);
	for (i = 0; i < REPLY_LINES_MAX - 1; i++)
		assert_int_equal(feed_str(&r, "250-x"), REPLY_MORE);
	assert_int_equal(feed_str(&r, "250 x"), REPLY_DONE);
	assert_int_equal(reply_nlines(&r), REPLY_LINES_MAX);

	reply_init(&r);
	for (i = 0; i < REPLY_LINES_MAX; i++)
		assert_int_equal(feed_str(&r, "250-x"), REPLY_MORE);
	assert_int_equal(feed_str(&r, "250 x"), REPLY_MALFORMED);
	assert_non_null(strstr(r.error, "too many"));
}

static void
test_bound_line_length(void **state)
{
	char line[REPLY_LINE_MAX + 2];
	struct reply r;

	(void)state;
	memset(line, 'a', sizeof line);
	memcpy(line, "250 ", 4);

	reply_init(&r);
	assert_int_equal(reply_feed(&r, line, REPLY_LINE_MAX), REPLY_DONE);
	assert_int_equal(strlen(r.text), REPLY_LINE_MAX - 4);

	/* The CR of a bare-LF reader does not count. */
	line[REPLY_LINE_MAX] = '\r';
	assert_int_equal(reply_feed(&r, line, REPLY_LINE_MAX + 1), REPLY_DONE);

	line[REPLY_LINE_MAX] = 'a';
	assert_int_equal(reply_feed(&r, line, REPLY_LINE_MAX + 1), REPLY_MALFORMED);
	assert_non_null(strstr(r.error, "too long"));
}

static void
test_bound_text(void **state)
{
	char line[1000];
	struct reply r;
	size_t total = 0;
	enum reply_result res = REPLY_MORE;
	int i;

	(void)state;
	memset(line, 'b', sizeof line);
	memcpy(line, "250-", 4);
	reply_init(&r);
	/* Each line adds 996 octets and a blank: the ninth cannot fit in 8 KiB. */
	for (i = 0; i < 20 && res == REPLY_MORE; i++) {
		res = reply_feed(&r, line, sizeof line);
		if (res == REPLY_MORE)
			total += sizeof line - 4 + (total ? 1 : 0);
	}
	assert_int_equal(res, REPLY_MALFORMED);
	assert_non_null(strstr(r.error, "text too long"));
	assert_true(total < REPLY_TEXT_MAX);
	assert_int_equal(i, (int)(REPLY_TEXT_MAX / (sizeof line - 3)) + 1);
}

static void
expect_keyword(const struct reply *r, const char *kw, const char *args)
{
	const char *a = NULL;
	size_t alen = 99;

	if (!reply_ehlo_keyword(r, kw, &a, &alen))
		fail_msg("keyword %s not found", kw);
	if (alen != strlen(args) || memcmp(a, args, alen) != 0)
		fail_msg("keyword %s: args \"%.*s\", want \"%s\"", kw, (int)alen, a, args);
}

static void
test_ehlo(void **state)
{
	static const char *lines[] = {
		"250-mx.example Hello client [127.0.0.1]",
		"250-PIPELINING",
		"250-SIZE 10240000",
		"250-8BITMIME",
		"250-ENHANCEDSTATUSCODES",
		"250-auth PLAIN LOGIN",
		"250-AUTH=LOGIN",
		"250 STARTTLS",
	};
	struct reply r;
	const char *l;
	size_t i, n;

	(void)state;
	reply_init(&r);
	for (i = 0; i < sizeof lines / sizeof lines[0]; i++)
		assert_int_equal(feed_str(&r, lines[i]),
		    i + 1 < sizeof lines / sizeof lines[0] ? REPLY_MORE : REPLY_DONE);
	assert_int_equal(reply_nlines(&r), 8);
	l = reply_line(&r, 2, &n);
	assert_int_equal(n, strlen("SIZE 10240000"));
	assert_memory_equal(l, "SIZE 10240000", n);
	assert_null(reply_line(&r, 8, &n));
	assert_int_equal(n, 0);

	expect_keyword(&r, "PIPELINING", "");
	expect_keyword(&r, "pipelining", "");
	expect_keyword(&r, "SIZE", "10240000");
	expect_keyword(&r, "8BITMIME", "");
	expect_keyword(&r, "AUTH", "PLAIN LOGIN");
	expect_keyword(&r, "STARTTLS", "");
	assert_false(reply_ehlo_keyword(&r, "SIZ", NULL, NULL));
	assert_false(reply_ehlo_keyword(&r, "DSN", NULL, NULL));
	assert_false(reply_ehlo_keyword(&r, "ENHANCED", NULL, NULL));
	/* The first line is the server's name, not a keyword. */
	assert_false(reply_ehlo_keyword(&r, "mx.example", NULL, NULL));

	/* A one-line EHLO reply advertises nothing. */
	assert_int_equal(feed_str(&r, "250 mx.example"), REPLY_DONE);
	assert_false(reply_ehlo_keyword(&r, "mx.example", NULL, NULL));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_restart),
		cmocka_unit_test(test_nul),
		cmocka_unit_test(test_bound_lines),
		cmocka_unit_test(test_bound_line_length),
		cmocka_unit_test(test_bound_text),
		cmocka_unit_test(test_ehlo),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
