/*
 * fuzz_dsn: a bounce read with dsn_parse on any bytes, and each of its
 * recipients classified with bounce_classify, as intake does.
 *
 * A read bounce has 1..DSN_RCPT_MAX recipients (truncated only at the
 * limit). Every value is NUL-terminated inside its array, valid UTF-8 and
 * free of control characters (C0 and DEL), so it may go to a log line
 * as it is. Status values are RFC 3463 codes of class 2, 4 or 5, or empty;
 * the diagnostic's status has the class of its code; a code is 200..599
 * and starts the diagnostic text; diagnostic types are lower-case; enums
 * are in range; dsn_rcpt_status is one of the two statuses. A refused
 * mail says why and leaves the struct empty. The classification is one of
 * the classes, "soft" only for mailbox full and temporary failures, and
 * only unknown users and domains count against an address.
 */
#include <stdint.h>
#include <string.h>

#include "mail/bounce.h"
#include "mail/dsn.h"
#include "mail/mime.h"
#include "check.h"

#define VALUE(field) check_value((field), sizeof(field))

/* Controls as mail/mime.h means them: C0 (TAB included here) and DEL. C1
 * controls (U+0080..U+009F) pass, as they do in mime's values. */
static void
check_value(const char *v, size_t size)
{
	size_t n = strnlen(v, size);

	CHECK(n < size);
	CHECK(fuzz_utf8_ok(v, n));
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];

		CHECK(c >= 0x20 && c != 0x7f);
	}
}

static bool
digits(const char **s, size_t min, size_t max)
{
	size_t n = 0;

	while (**s >= '0' && **s <= '9') {
		(*s)++;
		n++;
	}
	return n >= min && n <= max;
}

/* "" or class.subject.detail with class 2, 4 or 5. */
static void
check_status(const char *s)
{
	if (*s == '\0')
		return;
	CHECK(s[0] == '2' || s[0] == '4' || s[0] == '5');
	CHECK(s[1] == '.');
	s += 2;
	CHECK(digits(&s, 1, 3) && *s == '.');
	s++;
	CHECK(digits(&s, 1, 3) && *s == '\0');
}

/* As dsn.h tells intake to map them. */
static enum bounce_stage
stage_of(enum dsn_command c)
{
	switch (c) {
	case DSN_CMD_CONNECT:
	case DSN_CMD_HELO:
	case DSN_CMD_MAIL:
		return BOUNCE_STAGE_CONNECT;
	case DSN_CMD_RCPT:
		return BOUNCE_STAGE_RCPT;
	case DSN_CMD_DATA:
		return BOUNCE_STAGE_DATA;
	case DSN_CMD_DOT:
		return BOUNCE_STAGE_DOT;
	default:
		return BOUNCE_STAGE_DSN;
	}
}

static void
check_rcpt(const struct dsn_rcpt *r)
{
	const char *st, *at;
	enum bounce_class c;
	bool soft = false;

	VALUE(r->final_rcpt);
	VALUE(r->orig_rcpt);
	VALUE(r->status);
	VALUE(r->diag_type);
	VALUE(r->diag_text);
	VALUE(r->diag_status);
	VALUE(r->remote_mta);
	check_status(r->status);
	check_status(r->diag_status);
	CHECK(r->action >= DSN_ACTION_NONE && r->action <= DSN_ACTION_EXPANDED);
	CHECK(dsn_action_name(r->action) != NULL);
	CHECK(r->command >= DSN_CMD_UNKNOWN && r->command <= DSN_CMD_DOT);
	for (const char *t = r->diag_type; *t; t++)
		CHECK(*t < 'A' || *t > 'Z');
	if (r->code != 0) {
		CHECK(r->code >= 200 && r->code <= 599);
		CHECK(r->diag_text[0] == '0' + r->code / 100 &&
		    r->diag_text[1] == '0' + r->code / 10 % 10 &&
		    r->diag_text[2] == '0' + r->code % 10);
		if (r->diag_status[0] != '\0')
			CHECK(r->diag_status[0] == '0' + r->code / 100);
	} else
		CHECK(r->diag_status[0] == '\0');
	st = dsn_rcpt_status(r);
	CHECK(st == r->status || st == r->diag_status);

	at = strrchr(r->final_rcpt, '@');
	c = bounce_classify(r->code, st, r->diag_text, stage_of(r->command), at ? at + 1 : NULL,
	    &soft);
	CHECK(c >= BOUNCE_NONE && c <= BOUNCE_OTHER);
	CHECK(bounce_class_name(c) != NULL);
	CHECK(!soft || c == BOUNCE_MAILBOX_FULL || c == BOUNCE_TEMPORARY);
	CHECK(!bounce_counts_against_address(c) || c == BOUNCE_UNKNOWN_USER ||
	    c == BOUNCE_UNKNOWN_DOMAIN);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	mime_init();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dsn d;
	char err[256] = "";

	fuzz_poison_stack();
	if (dsn_parse((const char *)data, size, &d, err, sizeof(err)) != 0) {
		CHECK(err[0] != '\0');
		CHECK(d.nrcpt == 0 && d.rcpt == NULL);
		return 0;
	}
	CHECK(d.nrcpt >= 1 && d.nrcpt <= DSN_RCPT_MAX && d.rcpt != NULL);
	CHECK(!d.truncated || d.nrcpt == DSN_RCPT_MAX);
	VALUE(d.message_id);
	VALUE(d.envid);
	VALUE(d.orig_sender);
	VALUE(d.reporting_mta);
	for (size_t i = 0; i < d.nrcpt; i++)
		check_rcpt(&d.rcpt[i]);
	dsn_free(&d);
	return 0;
}
