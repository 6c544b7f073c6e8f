/*
 * approval: confirmation codes and the replies that carry them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "intake/approval.h"
#include "mail/mime.h"

static bool
shaped(const char *c)
{
	bool letter = false, digit = false;

	if (strlen(c) != APPROVAL_CODE_LEN)
		return false;
	for (const char *p = c; *p; p++) {
		if (*p >= 'A' && *p <= 'Z')
			letter = true;
		else if (*p >= '2' && *p <= '7')
			digit = true;
		else
			return false;
	}
	return letter && digit;
}

static void
codes(void **state)
{
	char a[APPROVAL_CODE_LEN + 1], b[APPROVAL_CODE_LEN + 1];
	int same = 0;

	(void)state;
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(approval_code_new(a), 0);
		assert_true(shaped(a));
		assert_int_equal(approval_code_new(b), 0);
		same += strcmp(a, b) == 0;
	}
	assert_int_equal(same, 0);
}

/* A mail with this subject and text, no attachment. */
static struct mime_msg
mail(const char *subject, const char *text)
{
	struct mime_msg m;

	memset(&m, 0, sizeof(m));
	m.subject = (char *)subject;
	m.text = (char *)text;
	m.text_len = text ? strlen(text) : 0;
	return m;
}

static void
replies(void **state)
{
	static const struct {
		const char *subject, *text, *code, *token;
	} yes[] = {
		{ "Re: job 12 held: approve with K7QXM2PA", "Token: abc\n\n> quoted\n", "K7QXM2PA", "abc" },
		{ "Re: your DM", "Token: t0k  \n\nok K7QXM2PA thanks\n", "K7QXM2PA", "t0k" },
		{ "Re: your DM", "approve K7QXM2PA\n", "K7QXM2PA", "" },
		{ "K7QXM2PA", "", "K7QXM2PA", "" },
	};
	static const struct {
		const char *subject, *text;
	} no[] = {
		{ "DISCOUNT SALEDAYS", "Token: x\n\nok\n" },		/* words, not codes */
		{ "Re: K7QXM2PA", "Token: x\nTo: a@example.com\n\nbody\n" },	/* a submission */
		{ "Re: K7QXM2PA", "Token: x\nSend-At: 2026-12-01 09:00\n\nbody\n" },
		{ "Re: K7QXM2PAX", "Token: x\n\nok\n" },		/* too long */
		{ "Re: k7qxm2pa", "Token: x\n\nok\n" },		/* codes are upper case */
		{ "Re: job", "Token: x\n\nok\n\nK7QXM2PA\n" },	/* not the first line */
		{ "Re: K7QXM2P1", "Token: x\n\nok\n" },		/* 1 is not base32 */
	};
	char code[APPROVAL_CODE_LEN + 1], token[64];
	struct mime_msg m;

	(void)state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		m = mail(yes[i].subject, yes[i].text);
		assert_true(approval_reply_code(&m, code, token, sizeof(token)));
		assert_string_equal(code, yes[i].code);
		assert_string_equal(token, yes[i].token);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		m = mail(no[i].subject, no[i].text);
		assert_false(approval_reply_code(&m, code, token, sizeof(token)));
	}
	/* A CSV attachment makes it a submission whatever the subject says. */
	struct mime_part part = { .content_type = "text/csv", .data = "a@example.com\n", .len = 14 };
	m = mail("Re: K7QXM2PA", "Token: x\n\nok\n");
	m.attachments = &part;
	m.nattach = 1;
	assert_false(approval_reply_code(&m, code, token, sizeof(token)));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(codes),
		cmocka_unit_test(replies),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
