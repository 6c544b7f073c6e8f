/*
 * auth: Authentication-Results from the trusted MTA, alignment with the
 * From domain, forged headers from other ids.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "intake/auth.h"
#include "mail/mime.h"

#define ID "mx.hato.test"

static void
aligned(void **state)
{
	(void)state;
	assert_true(auth_aligned("example.co.jp", "example.co.jp"));
	assert_true(auth_aligned("mail.example.co.jp", "example.co.jp"));
	assert_true(auth_aligned("EXAMPLE.co.jp", "news.example.co.jp"));
	assert_false(auth_aligned("badexample.co.jp", "example.co.jp"));
	assert_false(auth_aligned("example.com", "example.co.jp"));
	assert_false(auth_aligned("jp", "example.jp"));	/* one label: never */
	assert_false(auth_aligned("", "example.jp"));
}

static void
results(void **state)
{
	static const struct { const char *v; int want; const char *method; } cases[] = {
		{ ID "; dkim=pass header.d=example.co.jp header.s=s1", 1, "dkim" },
		{ ID " 1; dkim=pass (good signature) header.d=mail.example.co.jp", 1, "dkim" },
		{ ID "; spf=pass smtp.mailfrom=dm-team@example.co.jp", 1, "spf" },
		{ ID "; spf=pass smtp.mailfrom=example.co.jp", 1, "spf" },
		{ ID "; dkim=pass header.i=@example.co.jp", 1, "dkim" },
		{ "MX.HATO.TEST; DKIM=PASS header.d=example.co.jp", 1, "DKIM" },
		{ ID "; dkim=fail header.d=example.co.jp; spf=softfail smtp.mailfrom=x@example.co.jp", 0, NULL },
		{ ID "; dkim=pass header.d=other.example", 0, NULL },
		{ ID "; spf=pass smtp.mailfrom=a@evil.example; dkim=pass header.d=example.co.jp", 1, "dkim" },
		{ ID "; none", 0, NULL },
		{ ID "; dmarc=pass header.from=example.co.jp", 0, NULL },
		/* Another id: a header the sender wrote. */
		{ "evil.example; dkim=pass header.d=example.co.jp", 0, NULL },
		{ "mx.hato.test.evil; dkim=pass header.d=example.co.jp", 0, NULL },
		/* A comment does not pass. */
		{ ID "; dkim=fail (dkim=pass header.d=example.co.jp) header.d=example.co.jp", 0, NULL },
		{ ID "; dkim=pass header.d=\"example.co.jp\"", 1, "dkim" },
		/* Unreadable. */
		{ ID "; dkim=pass (unclosed header.d=example.co.jp", -1, NULL },
		{ ID "; dkim header.d=example.co.jp", -1, NULL },
	};
	char method[32];
	const char *why;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		method[0] = '\0';
		int r = authres_check(cases[i].v, ID, "example.co.jp", method, sizeof(method), &why);
		if (r != cases[i].want)
			fail_msg("case %zu '%s': got %d, want %d", i, cases[i].v, r, cases[i].want);
		if (cases[i].method)
			assert_string_equal(method, cases[i].method);
		if (r < 0)
			assert_non_null(why);
	}
	/* No trusted id configured: nothing passes. */
	assert_int_equal(authres_check(ID "; dkim=pass header.d=example.co.jp", "", "example.co.jp",
	    method, sizeof(method), &why), 0);
}

static void
whole_mail(void **state)
{
	static const char forged[] =
	    "Authentication-Results: evil.example; dkim=pass header.d=example.co.jp\r\n"
	    "From: dm-team@example.co.jp\r\nTo: dm@hato.test\r\nSubject: x\r\n\r\nbody\r\n";
	static const char good[] =
	    "Authentication-Results: " ID "; dkim=pass header.d=example.co.jp\r\n"
	    "Authentication-Results: evil.example; dkim=fail\r\n"
	    "From: dm-team@example.co.jp\r\nTo: dm@hato.test\r\nSubject: x\r\n\r\nbody\r\n";
	struct mime_msg m;
	char err[200], why[300];

	(void)state;
	mime_init();
	assert_int_equal(mime_parse(forged, sizeof(forged) - 1, &m, err, sizeof(err)), 0);
	assert_false(authres_pass(&m, ID, m.from, why, sizeof(why)));
	assert_non_null(strstr(why, "no dkim or spf pass aligned with example.co.jp from " ID));
	mime_msg_free(&m);
	assert_int_equal(mime_parse(good, sizeof(good) - 1, &m, err, sizeof(err)), 0);
	assert_true(authres_pass(&m, ID, m.from, why, sizeof(why)));
	assert_non_null(strstr(why, "dkim=pass"));
	assert_false(authres_pass(&m, "other.id", m.from, why, sizeof(why)));
	mime_msg_free(&m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(aligned),
		cmocka_unit_test(results),
		cmocka_unit_test(whole_mail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
