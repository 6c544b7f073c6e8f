/*
 * test_routes: the route table parser and matcher (routes/routes.c), and
 * the table Hato ships (routes/carriers.routes, found through HATO_SOURCE).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "routes/routes.h"

static struct route_table *
parse(const char *text, char *err, size_t errlen)
{
	return routes_parse(text, strlen(text), "t.routes", err, errlen);
}

static const char precedence_table[] =
    "# DOMAIN          ROUTE\n"
    "example.jp        relay:Exact      # exact\n"
    ".example.jp       pace:sub\n"
    "\n"
    "   .a.example.jp\trelay:deep\n"
    "*                 mx\n"
    "other.jp          relay:other\n";

struct match_case {
	const char *domain;
	const char *pattern;	/* NULL: no rule */
	enum route_kind kind;
	const char *name;
};

static void
check_matches(const struct route_table *t, const struct match_case *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct route *r = routes_match(t, c[i].domain);

		if (c[i].pattern == NULL) {
			if (r != NULL)
				fail_msg("%s: got '%s', wanted no rule", c[i].domain, r->pattern);
			continue;
		}
		if (r == NULL)
			fail_msg("%s: no rule, wanted '%s'", c[i].domain, c[i].pattern);
		if (strcmp(r->pattern, c[i].pattern) != 0)
			fail_msg("%s: got '%s', wanted '%s'", c[i].domain, r->pattern, c[i].pattern);
		assert_int_equal(r->kind, c[i].kind);
		assert_string_equal(r->name, c[i].name);
	}
}

static void
test_precedence(void **state)
{
	static const struct match_case cases[] = {
		{ "example.jp", "example.jp", ROUTE_RELAY, "exact" },
		{ "x.example.jp", ".example.jp", ROUTE_PACE, "sub" },
		{ "a.b.c.example.jp", ".example.jp", ROUTE_PACE, "sub" },
		{ "b.a.example.jp", ".a.example.jp", ROUTE_RELAY, "deep" },
		{ "c.b.a.example.jp", ".a.example.jp", ROUTE_RELAY, "deep" },
		/* A suffix does not match its bare domain: the shorter one does. */
		{ "a.example.jp", ".example.jp", ROUTE_PACE, "sub" },
		{ "other.jp", "other.jp", ROUTE_RELAY, "other" },
		{ "x.other.jp", "*", ROUTE_MX, "" },
		{ "example.com", "*", ROUTE_MX, "" },
		{ "jp", "*", ROUTE_MX, "" },
		{ "xexample.jp", "*", ROUTE_MX, "" },
		{ "", "*", ROUTE_MX, "" },
		/* Case and one trailing dot do not matter; two dots do. */
		{ "EXAMPLE.JP", "example.jp", ROUTE_RELAY, "exact" },
		{ "Example.Jp.", "example.jp", ROUTE_RELAY, "exact" },
		{ "X.EXAMPLE.JP.", ".example.jp", ROUTE_PACE, "sub" },
		{ "example.jp..", "*", ROUTE_MX, "" },
		{ ".example.jp", "*", ROUTE_MX, "" },
	};
	char err[256] = "";
	struct route_table *t = parse(precedence_table, err, sizeof(err));

	(void)state;
	if (t == NULL)
		fail_msg("%s", err);
	check_matches(t, cases, sizeof(cases) / sizeof(cases[0]));
	routes_free(t);
}

static void
test_suffix_only(void **state)
{
	static const struct match_case cases[] = {
		{ "vodafone.ne.jp", NULL, ROUTE_MX, "" },
		{ "d.vodafone.ne.jp", ".vodafone.ne.jp", ROUTE_RELAY, "softbank" },
		{ "ne.jp", NULL, ROUTE_MX, "" },
		{ "docomo.ne.jp", NULL, ROUTE_MX, "" },
	};
	char err[256] = "";
	struct route_table *t = parse(".vodafone.ne.jp relay:softbank", err, sizeof(err));

	(void)state;
	if (t == NULL)
		fail_msg("%s", err);
	check_matches(t, cases, sizeof(cases) / sizeof(cases[0]));
	assert_null(routes_match(t, NULL));
	routes_free(t);
}

static void
test_rules_in_order(void **state)
{
	char err[256] = "";
	struct route_table *t;
	const struct route *r;
	static const struct {
		const char *pattern;
		size_t line;
	} want[] = {
		{ "example.jp", 2 }, { ".example.jp", 3 }, { ".a.example.jp", 5 },
		{ "*", 6 }, { "other.jp", 7 },
	};

	(void)state;
	t = parse(precedence_table, err, sizeof(err));
	if (t == NULL)
		fail_msg("%s", err);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		r = routes_at(t, i);
		assert_non_null(r);
		assert_string_equal(r->pattern, want[i].pattern);
		assert_int_equal(r->line, want[i].line);
		assert_string_equal(r->file, "t.routes");
	}
	assert_null(routes_at(t, sizeof(want) / sizeof(want[0])));
	routes_free(t);
}

/* CRLF, no final newline, a comment glued to the route, upper case. */
static void
test_lexical(void **state)
{
	static const char text[] =
	    "# only a comment\r\n"
	    "\t \r\n"
	    "Docomo.NE.jp.\tRELAY:DoCoMo_1-a#glued comment\r\n"
	    "au.com pace:au";
	char err[256] = "";
	struct route_table *t = parse(text, err, sizeof(err));
	const struct route *r;

	(void)state;
	if (t == NULL)
		fail_msg("%s", err);
	r = routes_match(t, "docomo.ne.jp");
	assert_non_null(r);
	assert_int_equal(r->kind, ROUTE_RELAY);
	assert_string_equal(r->name, "docomo_1-a");
	assert_string_equal(r->pattern, "docomo.ne.jp.");
	assert_int_equal(r->line, 3);
	r = routes_match(t, "AU.COM");
	assert_non_null(r);
	assert_string_equal(r->name, "au");
	assert_int_equal(r->line, 4);
	assert_null(routes_match(t, "example.com"));
	routes_free(t);

	/* An empty table is a table. */
	t = routes_parse("", 0, "empty", err, sizeof(err));
	assert_non_null(t);
	assert_null(routes_at(t, 0));
	assert_null(routes_match(t, "docomo.ne.jp"));
	routes_free(t);
}

struct error_case {
	const char *text;
	size_t len;		/* 0: strlen(text) */
	const char *err;
};

static void
test_errors(void **state)
{
	static char long_line[1100], long_label[200], long_name[200], long_domain[400];
	static const char nul_line[] = "a\0b.jp mx\n";
	const struct error_case cases[] = {
		{ "a.jp smtp:x\n", 0,
		  "t.routes:1: unknown route kind 'smtp' (expected relay:NAME, pace:NAME or mx)" },
		{ "a.jp relay\n", 0, "t.routes:1: empty relay name (write relay:NAME)" },
		{ "a.jp mx\n\n# c\nb.jp\n", 0, "t.routes:4: missing route after 'b.jp'" },
		{ "b.jp   # mx\n", 0, "t.routes:1: missing route after 'b.jp'" },
		{ "a.jp mx extra words\n", 0, "t.routes:1: extra words after the route: 'extra'" },
		{ "a.jp relay:\n", 0, "t.routes:1: empty relay name (write relay:NAME)" },
		{ "a.jp pace:\n", 0, "t.routes:1: empty pace name (write pace:NAME)" },
		{ "a.jp mx:x\n", 0, "t.routes:1: mx takes no name" },
		{ "a.jp relay:do.como\n", 0,
		  "t.routes:1: invalid character '.' in name (allowed: a-z 0-9 _ -)" },
		{ "a.jp relay:d\xc3\xb6\n", 0,
		  "t.routes:1: invalid character \\xc3 in name (allowed: a-z 0-9 _ -)" },
		{ long_name, 0, "t.routes:1: name longer than 63 octets" },
		{ "a_b.jp mx\n", 0, "t.routes:1: invalid character '_' in domain" },
		{ "a.jp mx\na/b.jp mx\n", 0, "t.routes:2: invalid character '/' in domain" },
		{ "\xe3\x83\x89.jp mx\n", 0,
		  "t.routes:1: invalid character \\xe3 in domain (write an IDN in its xn-- form)" },
		{ nul_line, sizeof(nul_line) - 1, "t.routes:1: invalid character \\x00 in domain" },
		{ "a..jp mx\n", 0, "t.routes:1: empty label in domain 'a..jp'" },
		{ ". mx\n", 0, "t.routes:1: empty label in domain '.'" },
		{ "..a.jp mx\n", 0, "t.routes:1: empty label in domain '..a.jp'" },
		{ "*.a.jp mx\n", 0, "t.routes:1: '*' must stand alone (write '.a.jp' for every subdomain)" },
		{ "a*.jp mx\n", 0, "t.routes:1: '*' must stand alone" },
		{ long_label, 0, "t.routes:1: label longer than 63 octets in domain" },
		{ long_domain, 0, "t.routes:1: domain longer than 253 octets" },
		{ "a.jp mx\nb.jp mx\n\nA.JP. relay:x\n", 0,
		  "t.routes:4: duplicate domain 'a.jp.' (first on line 1)" },
		{ ".a.jp mx\n.A.jp pace:y\n", 0, "t.routes:2: duplicate domain '.a.jp' (first on line 1)" },
		{ "* mx\na.jp mx\n* relay:local\n", 0,
		  "t.routes:3: duplicate domain '*' (first on line 1)" },
		{ long_line, 0, "t.routes:2: line too long (1025 octets, at most 1024)" },
	};
	char x64[65];
	size_t i;

	(void)state;
	memset(x64, 'x', 64);
	x64[64] = '\0';
	snprintf(long_line, sizeof(long_line), "a.jp mx\n%-1022s mx\n", "b.jp");
	snprintf(long_label, sizeof(long_label), "%s.jp mx\n", x64);
	snprintf(long_name, sizeof(long_name), "a.jp relay:%s\n", x64);
	/* 125 labels "a." and "jp": 252 octets is fine, this is 254. */
	for (i = 0; i < 252; i += 2)
		memcpy(long_domain + i, "a.", 2);
	strcpy(long_domain + i, "jp mx\n");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[512] = "";
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);
		struct route_table *t = routes_parse(cases[i].text, len, "t.routes", err, sizeof(err));

		if (t != NULL)
			fail_msg("case %zu: parsed, wanted \"%s\"", i, cases[i].err);
		if (strcmp(err, cases[i].err) != 0)
			fail_msg("case %zu: got \"%s\", wanted \"%s\"", i, err, cases[i].err);
	}
}

static char *
tmpfile_with(const char *text, size_t len)
{
	char *path = strdup("/tmp/test_routes.XXXXXX");
	int fd;

	assert_non_null(path);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

static void
test_load(void **state)
{
	char err[512] = "", want[512];
	struct route_table *t;
	char *path, *big;
	size_t len = 0, n = 5000;

	(void)state;
	t = routes_load("/nonexistent/hato.routes", err, sizeof(err));
	assert_null(t);
	assert_string_equal(err, "/nonexistent/hato.routes: No such file or directory");

	t = routes_load("/tmp", err, sizeof(err));
	assert_null(t);
	assert_string_equal(err, "/tmp: Is a directory");

	path = tmpfile_with("a.jp mx\nb.jp bogus\n", 19);
	assert_null(routes_load(path, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s:2: unknown route kind 'bogus' (expected relay:NAME, pace:NAME or mx)",
	    path);
	assert_string_equal(err, want);
	unlink(path);
	free(path);

	/* Far more than one read: thousands of rules, each found by its own
	 * domain and by a subdomain. */
	big = malloc(n * 64);
	assert_non_null(big);
	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(big + len, "%sd%zu.example.jp relay:r%zu\n", i % 2 ? "." : "", i, i);
	path = tmpfile_with(big, len);
	t = routes_load(path, err, sizeof(err));
	if (t == NULL)
		fail_msg("%s", err);
	for (size_t i = 0; i < n; i++) {
		char dom[64], name[16];
		const struct route *r;

		snprintf(dom, sizeof(dom), "%sd%zu.example.jp", i % 2 ? "x." : "", i);
		snprintf(name, sizeof(name), "r%zu", i);
		r = routes_match(t, dom);
		assert_non_null(r);
		assert_string_equal(r->name, name);
		assert_int_equal(r->line, i + 1);
		assert_string_equal(r->file, path);
		/* An exact rule does not cover subdomains, nor a suffix its bare domain. */
		snprintf(dom, sizeof(dom), "%sd%zu.example.jp", i % 2 ? "" : "x.", i);
		assert_null(routes_match(t, dom));
	}
	routes_free(t);
	unlink(path);
	free(path);
	free(big);
}

/* routes/carriers.routes: HATO_SOURCE when the test runner sets it, else
 * the source tree this file was compiled from, else relative paths. */
static struct route_table *
load_shipped(char *err, size_t errlen)
{
	const char *src = getenv("HATO_SOURCE");
	const char *self = __FILE__, *cut = strstr(__FILE__, "tests/unit/test_routes.c");
	char path[4096];

	if (src != NULL && *src != '\0') {
		snprintf(path, sizeof(path), "%s/routes/carriers.routes", src);
		return routes_load(path, err, errlen);
	}
	if (cut != NULL) {
		snprintf(path, sizeof(path), "%.*sroutes/carriers.routes", (int)(cut - self), self);
		if (access(path, R_OK) == 0)
			return routes_load(path, err, errlen);
	}
	if (access("routes/carriers.routes", R_OK) == 0)
		return routes_load("routes/carriers.routes", err, errlen);
	return routes_load("../../routes/carriers.routes", err, errlen);
}

static void
test_shipped(void **state)
{
	static const struct match_case cases[] = {
		{ "docomo.ne.jp", "docomo.ne.jp", ROUTE_RELAY, "docomo" },
		{ "softbank.ne.jp", "softbank.ne.jp", ROUTE_RELAY, "softbank" },
		{ "i.softbank.jp", "i.softbank.jp", ROUTE_RELAY, "softbank" },
		{ "disney.ne.jp", "disney.ne.jp", ROUTE_RELAY, "softbank" },
		{ "q.vodafone.ne.jp", "q.vodafone.ne.jp", ROUTE_RELAY, "softbank" },
		{ "y-mobile.ne.jp", "y-mobile.ne.jp", ROUTE_RELAY, "softbank" },
		{ "willcom.com", "willcom.com", ROUTE_RELAY, "softbank" },
		{ "pdx.ne.jp", "pdx.ne.jp", ROUTE_RELAY, "softbank" },
		{ "wm.pdx.ne.jp", ".pdx.ne.jp", ROUTE_RELAY, "softbank" },
		{ "emnet.ne.jp", "emnet.ne.jp", ROUTE_RELAY, "softbank" },
		{ "ezweb.ne.jp", "ezweb.ne.jp", ROUTE_PACE, "au" },
		{ "EZWEB.NE.JP.", "ezweb.ne.jp", ROUTE_PACE, "au" },
		{ "x.ezweb.ne.jp", ".ezweb.ne.jp", ROUTE_PACE, "au" },
		{ "au.com", "au.com", ROUTE_PACE, "au" },
		{ "biz.au.com", "biz.au.com", ROUTE_PACE, "au" },
		{ "biz.ezweb.ne.jp", "biz.ezweb.ne.jp", ROUTE_PACE, "au" },
		{ "x.biz.ezweb.ne.jp", ".biz.ezweb.ne.jp", ROUTE_PACE, "au" },
		{ "uqmobile.jp", "uqmobile.jp", ROUTE_PACE, "au" },
		/* Not shipped, or shipped commented out until confirmed. */
		{ "gmail.com", "*", ROUTE_MX, "" },
		{ "vodafone.ne.jp", "*", ROUTE_MX, "" },
		{ "x.docomo.ne.jp", "*", ROUTE_MX, "" },
		{ "ymobile.ne.jp", "*", ROUTE_MX, "" },
		{ "rakumail.jp", "*", ROUTE_MX, "" },
	};
	char err[512] = "";
	struct route_table *t = load_shipped(err, sizeof(err));
	const struct route *r, *last = NULL;

	(void)state;
	if (t == NULL)
		fail_msg("%s", err);
	check_matches(t, cases, sizeof(cases) / sizeof(cases[0]));
	for (size_t i = 0; (r = routes_at(t, i)) != NULL; i++) {
		assert_true(r->line > 0);
		assert_non_null(strstr(r->file, "carriers.routes"));
		last = r;
	}
	assert_non_null(last);
	assert_string_equal(last->pattern, "*");
	routes_free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_precedence),
		cmocka_unit_test(test_suffix_only),
		cmocka_unit_test(test_rules_in_order),
		cmocka_unit_test(test_lexical),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_shipped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
