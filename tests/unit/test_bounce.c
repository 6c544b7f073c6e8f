/*
 * test_bounce: the failure classification table, by a table of cases:
 * RFC 3463 statuses, reply codes and texts, the stage-dependent rules of
 * docomo and au (CARRIERS.md), and what counts against an address.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mail/bounce.h"

#define CONNECT	BOUNCE_STAGE_CONNECT
#define RCPT	BOUNCE_STAGE_RCPT
#define DATA	BOUNCE_STAGE_DATA
#define DOT	BOUNCE_STAGE_DOT
#define DSN	BOUNCE_STAGE_DSN

struct bounce_case {
	const char *name;
	int code;
	const char *status;
	const char *text;
	enum bounce_stage stage;
	const char *domain;
	enum bounce_class want;
	bool soft;
};

static const struct bounce_case cases[] = {
	/* delivered */
	{ "250", 250, "2.0.0", "Ok: queued as 1234", DOT, "example.org", BOUNCE_NONE, false },
	{ "dsn delivered", 0, "2.0.0", NULL, DSN, "example.org", BOUNCE_NONE, false },

	/* unknown user: RFC 3463 X.1.1, X.1.0, X.1.10, X.1.6 */
	{ "5.1.1", 550, "5.1.1", "<x@example.org>: Recipient address rejected: User unknown",
	  RCPT, "example.org", BOUNCE_UNKNOWN_USER, false },
	{ "5.1.0", 550, "5.1.0", "Address rejected", RCPT, "example.org",
	  BOUNCE_UNKNOWN_USER, false },
	{ "5.1.10 exchange", 550, "5.1.10",
	  "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
	  RCPT, "example.com", BOUNCE_UNKNOWN_USER, false },
	{ "5.1.6 moved", 550, "5.1.6", "Mailbox has moved", RCPT, "example.org",
	  BOUNCE_UNKNOWN_USER, false },
	{ "5.1.1 status only", 0, "5.1.1", NULL, DSN, "example.org",
	  BOUNCE_UNKNOWN_USER, false },
	{ "5.1.1 in the text", 0, NULL, "550 5.1.1 <x@example.org>: User unknown", DSN,
	  "example.org", BOUNCE_UNKNOWN_USER, false },
	/* Exim: a generic Status: 5.0.0 beside a specific diagnostic */
	{ "5.0.0 over 5.1.1", 550, "5.0.0", "550 5.1.1 <x@example.org>: User unknown",
	  DSN, "example.org", BOUNCE_UNKNOWN_USER, false },
	{ "550 user unknown at rcpt", 550, NULL, "<x@example.org>... User unknown", RCPT,
	  "example.org", BOUNCE_UNKNOWN_USER, false },
	{ "550 no such user", 550, "", "No such user here", RCPT, "example.org",
	  BOUNCE_UNKNOWN_USER, false },
	{ "gmail does not exist", 550, "5.1.1",
	  "The email account that you tried to reach does not exist.", RCPT, "gmail.com",
	  BOUNCE_UNKNOWN_USER, false },
	{ "qmail-local", 0, "5.1.1", "Sorry, no mailbox here by that name. (#5.1.1)", DSN,
	  "example.net", BOUNCE_UNKNOWN_USER, false },
	{ "domino not listed", 550, NULL, "User's mailbox is not listed in Domino Directory",
	  RCPT, "example.org", BOUNCE_UNKNOWN_USER, false },

	/* unknown domain: X.1.2, null MX, name service texts */
	{ "5.1.2", 550, "5.1.2", "Host unknown", RCPT, "nx.example", BOUNCE_UNKNOWN_DOMAIN,
	  false },
	{ "5.1.10 null mx", 556, "5.1.10", "Recipient address has null MX", RCPT,
	  "nomail.example", BOUNCE_UNKNOWN_DOMAIN, false },
	{ "5.4.4 postfix", 0, "5.4.4",
	  "Host or domain name not found. Name service error for name=nx.example type=MX",
	  DSN, "nx.example", BOUNCE_UNKNOWN_DOMAIN, false },
	{ "exim unrouteable", 550, NULL, "Unrouteable address", DSN, "nx.example",
	  BOUNCE_UNKNOWN_DOMAIN, false },

	/* mailbox full: X.2.2, soft whatever the class */
	{ "5.2.2", 552, "5.2.2", "Mailbox full", RCPT, "example.org",
	  BOUNCE_MAILBOX_FULL, true },
	{ "4.2.2", 452, "4.2.2", "<later@ezweb.ne.jp>: Mailbox full, try again later", RCPT,
	  "ezweb.ne.jp", BOUNCE_MAILBOX_FULL, true },
	{ "552 storage", 552, NULL,
	  "Requested mail action aborted: exceeded storage allocation", DOT,
	  "example.org", BOUNCE_MAILBOX_FULL, true },
	{ "over quota text", 550, NULL, "user is over quota", RCPT, "example.org",
	  BOUNCE_MAILBOX_FULL, true },

	/* policy: X.7.x and spam/policy texts: never the address's */
	{ "5.7.1", 550, "5.7.1", "Service unavailable; client host blocked", RCPT,
	  "example.org", BOUNCE_POLICY, false },
	{ "5.7.26 dmarc", 550, "5.7.26", "Unauthenticated email is not accepted", DOT,
	  "gmail.com", BOUNCE_POLICY, false },
	{ "5.7.1 says unknown", 554, "5.7.1", "Relay access denied", RCPT, "example.org",
	  BOUNCE_POLICY, false },
	{ "blocked", 554, NULL, "Your message was blocked", DOT, "example.org",
	  BOUNCE_POLICY, false },
	{ "spam", 550, NULL, "Message rejected as spam by Content Filtering", DOT,
	  "example.org", BOUNCE_POLICY, false },
	{ "policy", 550, "5.0.0", "Rejected by local policy", RCPT, "example.org",
	  BOUNCE_POLICY, false },
	{ "rejected due to", 554, NULL, "Message rejected due to content restrictions",
	  DOT, "example.org", BOUNCE_POLICY, false },
	{ "listed", 554, NULL, "Client host [192.0.2.80] listed by zen.spamhaus.org",
	  CONNECT, "example.org", BOUNCE_POLICY, false },
	{ "listed at rcpt", 550, NULL, "Sending IP is listed on a DNSBL", RCPT,
	  "example.org", BOUNCE_POLICY, false },
	{ "sender 5.1.8", 553, "5.1.8", "Sender address rejected: Domain not found",
	  RCPT, "example.org", BOUNCE_POLICY, false },
	{ "greeting 554", 554, NULL, "mx.example.org ESMTP not accepting messages",
	  CONNECT, "example.org", BOUNCE_POLICY, false },
	{ "mail from 550", 550, "5.1.1", "unknown sender", CONNECT, "example.org",
	  BOUNCE_POLICY, false },

	/* too big: X.3.4, X.2.3, 552 with a size text */
	{ "5.3.4", 552, "5.3.4", "Message size exceeds fixed limit", DOT, "example.org",
	  BOUNCE_TOO_BIG, false },
	{ "5.2.3", 552, "5.2.3", "Message length exceeds administrative limit", DOT,
	  "example.org", BOUNCE_TOO_BIG, false },
	{ "552 message size", 552, NULL, "Message size exceeds maximum permitted", DOT,
	  "example.org", BOUNCE_TOO_BIG, false },
	{ "size at mail from", 552, "5.3.4", "Message too big for system", CONNECT,
	  "example.org", BOUNCE_TOO_BIG, false },

	/* temporary: any 4xx */
	{ "421", 421, "4.7.0", "Too many connections, try later", CONNECT, "ezweb.ne.jp",
	  BOUNCE_TEMPORARY, true },
	{ "450 4.1.1", 450, "4.1.1", "Recipient address rejected: unverified address",
	  RCPT, "example.org", BOUNCE_TEMPORARY, true },
	{ "451 greylisted", 451, NULL, "Greylisted, please try again later", RCPT,
	  "example.org", BOUNCE_TEMPORARY, true },
	{ "4.4.1 status only", 0, "4.4.1", NULL, DSN, "example.org", BOUNCE_TEMPORARY, true },

	/* other */
	{ "5.5.3 too many recipients", 552, "5.5.3", "Too many recipients", RCPT,
	  "example.org", BOUNCE_OTHER, false },
	{ "bare 552", 552, NULL, NULL, DOT, "example.org", BOUNCE_OTHER, false },
	{ "nothing known", 0, NULL, NULL, DSN, NULL, BOUNCE_OTHER, false },
	{ "5.0.0 vague", 554, "5.0.0", "Transaction failed", DOT, "example.org",
	  BOUNCE_OTHER, false },
	{ "5.1.3 syntax", 501, "5.1.3", "Bad recipient address syntax", RCPT,
	  "example.org", BOUNCE_OTHER, false },

	/* NTT docomo, CARRIERS.md "What a refusal means" */
	{ "docomo unknown at rcpt", 550, NULL, "Unknown user taro@docomo.ne.jp", RCPT,
	  "docomo.ne.jp", BOUNCE_UNKNOWN_USER, false },
	{ "docomo unknown after data", 550, NULL, "Unknown user taro@docomo.ne.jp", DOT,
	  "docomo.ne.jp", BOUNCE_POLICY, false },
	{ "docomo unknown to DATA", 550, NULL, "Unknown user taro@docomo.ne.jp", DATA,
	  "docomo.ne.jp", BOUNCE_POLICY, false },
	{ "docomo unknown after data, 5.1.1", 550, "5.1.1", "Unknown user", DOT,
	  "DoCoMo.ne.jp", BOUNCE_POLICY, false },
	{ "docomo unknown in a dsn", 0, "5.0.0", "550 Unknown user taro@docomo.ne.jp", DSN,
	  "docomo.ne.jp", BOUNCE_UNKNOWN_USER, false },
	{ "docomo too much mail data", 552, NULL, "too much mail data", DOT,
	  "docomo.ne.jp", BOUNCE_MAILBOX_FULL, true },
	{ "docomo too many recipients", 552, NULL, "too many recipients", RCPT,
	  "docomo.ne.jp", BOUNCE_OTHER, false },
	{ "not docomo: suffix boundary", 550, NULL, "Unknown user", DOT, "xdocomo.ne.jp",
	  BOUNCE_UNKNOWN_USER, false },

	/* au (KDDI), CARRIERS.md */
	{ "au unknown", 550, NULL, "<hanako@ezweb.ne.jp>: User unknown", RCPT,
	  "ezweb.ne.jp", BOUNCE_UNKNOWN_USER, false },
	{ "au unknown, full text", 0, NULL, "550 <hanako@ezweb.ne.jp>: User unknown", DSN,
	  "ezweb.ne.jp", BOUNCE_UNKNOWN_USER, false },
	{ "au filtered", 550, NULL, ": User unknown", RCPT, "ezweb.ne.jp",
	  BOUNCE_POLICY, false },
	{ "au filtered, full text", 0, NULL, "550 : User unknown", DSN, "ezweb.ne.jp",
	  BOUNCE_POLICY, false },
	{ "au.com filtered", 550, NULL, ": User unknown", RCPT, "au.com",
	  BOUNCE_POLICY, false },
	{ "biz.ezweb subdomain", 550, NULL, ": User unknown", RCPT, "sub.biz.ezweb.ne.jp",
	  BOUNCE_POLICY, false },
	/* the same ": User unknown" elsewhere is just an unknown user */
	{ "not au", 550, NULL, ": User unknown", RCPT, "example.org",
	  BOUNCE_UNKNOWN_USER, false },
};

static void
test_cases(void **state)
{
	const struct bounce_case *c;
	enum bounce_class got;
	size_t i;
	bool soft;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		c = &cases[i];
		soft = !c->soft;
		got = bounce_classify(c->code, c->status, c->text, c->stage, c->domain, &soft);
		if (got != c->want || soft != c->soft)
			fail_msg("%s: got %s%s, want %s%s", c->name, bounce_class_name(got),
			    soft ? " (soft)" : "", bounce_class_name(c->want),
			    c->soft ? " (soft)" : "");
	}
}

static void
test_counts(void **state)
{
	(void)state;
	assert_true(bounce_counts_against_address(BOUNCE_UNKNOWN_USER));
	assert_true(bounce_counts_against_address(BOUNCE_UNKNOWN_DOMAIN));
	assert_false(bounce_counts_against_address(BOUNCE_NONE));
	assert_false(bounce_counts_against_address(BOUNCE_MAILBOX_FULL));
	assert_false(bounce_counts_against_address(BOUNCE_POLICY));
	assert_false(bounce_counts_against_address(BOUNCE_TOO_BIG));
	assert_false(bounce_counts_against_address(BOUNCE_TEMPORARY));
	assert_false(bounce_counts_against_address(BOUNCE_OTHER));
}

static void
test_names(void **state)
{
	(void)state;
	assert_string_equal(bounce_class_name(BOUNCE_NONE), "none");
	assert_string_equal(bounce_class_name(BOUNCE_UNKNOWN_USER), "unknown-user");
	assert_string_equal(bounce_class_name(BOUNCE_UNKNOWN_DOMAIN), "unknown-domain");
	assert_string_equal(bounce_class_name(BOUNCE_MAILBOX_FULL), "mailbox-full");
	assert_string_equal(bounce_class_name(BOUNCE_POLICY), "policy");
	assert_string_equal(bounce_class_name(BOUNCE_TOO_BIG), "too-big");
	assert_string_equal(bounce_class_name(BOUNCE_TEMPORARY), "temporary");
	assert_string_equal(bounce_class_name(BOUNCE_OTHER), "other");
	assert_string_equal(bounce_class_name((enum bounce_class)99), "other");
}

/* NULLs everywhere, odd statuses and codes: a class, never a crash. */
static void
test_odd_inputs(void **state)
{
	static const char *statuses[] = { NULL, "", "5", "5.", "5.1", "5.1.", "5.1.1.1",
	    "5.1234.1", "9.1.1", "x.y.z", "5.1.1 ", "5.1.1junk", "4.2.2" };
	static const char *texts[] = { NULL, "", "5", "550", "550-", "550 ", "550 5.1.1",
	    "   550 : user unknown", "\xff\xfe", "^", "|", "5.7.1" };
	static const int codes[] = { -1, 0, 1, 99, 250, 451, 550, 599, 600, 1000, 100000 };
	size_t i, j, k, s;
	bool soft;

	(void)state;
	for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
		for (j = 0; j < sizeof(texts) / sizeof(texts[0]); j++)
			for (k = 0; k < sizeof(codes) / sizeof(codes[0]); k++)
				for (s = CONNECT; s <= DSN; s++) {
					enum bounce_class c = bounce_classify(codes[k],
					    statuses[i], texts[j], (enum bounce_stage)s,
					    j % 2 ? "docomo.ne.jp." : NULL, &soft);

					assert_true(c >= BOUNCE_NONE && c <= BOUNCE_OTHER);
					assert_int_equal(soft, c == BOUNCE_MAILBOX_FULL ||
					    c == BOUNCE_TEMPORARY);
				}
	/* soft may be NULL */
	assert_int_equal(bounce_classify(550, "5.1.1", NULL, RCPT, NULL, NULL),
	    BOUNCE_UNKNOWN_USER);
	/* a status with junk after it is no status */
	assert_int_equal(bounce_classify(550, "5.1.1junk", NULL, RCPT, NULL, NULL),
	    BOUNCE_OTHER);
	/* a trailing dot on the domain still names the carrier */
	assert_int_equal(bounce_classify(550, NULL, "Unknown user", DOT, "docomo.ne.jp.",
	    NULL), BOUNCE_POLICY);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_odd_inputs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
