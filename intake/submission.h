#ifndef HATO_INTAKE_SUBMISSION_H
#define HATO_INTAKE_SUBMISSION_H
/*
 * submission: the control block and recipient list of a submission mail
 * (DESIGN.md, "Submission format"). Pure: takes a parsed mail, returns
 * values or a specific error; no I/O, no database, no configuration.
 *
 * The first text/plain part starts with "Key: value" lines up to the first
 * empty line; the rest of the part is the DM body. Known keys: Token, To
 * (repeatable, comma-separated), Subject, Send-At, Dry-Run, Rate, Send-By, From. An unknown key
 * is an error (a submitter must not be able to set headers Hato does not
 * allow). Recipients also come from text/csv and text/plain attachments.
 */
#include <stdbool.h>
#include <stddef.h>
#include "mail/address.h"
#include "mail/mime.h"

enum rcpt_verdict {
	RCPT_ACCEPTED = 0,
	RCPT_DUPLICATE,		/* same canonical address seen before in this submission */
	RCPT_INVALID,		/* syntax; reason set */
};

/*
 * One recipient as written. A list may hold hundreds of thousands: the
 * strings live in the submission's blocks, and an address is kept in its
 * canonical form only (sub_rcpt_addr gives it back parsed).
 */
struct sub_rcpt {
	const char *raw;	/* as written (trimmed), UTF-8 */
	const char *addr;	/* canonical "local@domain" (addr_canonical); NULL when invalid */
	const char *domain;	/* the domain within addr */
	const char *reason;	/* static text for RCPT_INVALID */
	const char *source;	/* "To" or the attachment's file name */
	unsigned line;		/* line in that source, from 1 */
	enum rcpt_verdict verdict;
	bool needs_quote;	/* the local part goes out quoted (addr_format) */
};
struct sub_block;

struct submission {
	char *token;		/* NULL when absent */
	char *subject;		/* control-block Subject, else the mail's, else NULL */
	char *send_at;		/* raw Send-At value, or NULL */
	char *rate;		/* raw Rate value ("300/h", "20/min", "2/s"), or NULL */
	char *send_by;		/* raw Send-By value, or NULL */
	char *from;		/* raw From value (one of the submitter's allowed ones), or NULL */
	bool dry_run;
	char *body;		/* UTF-8 DM text after the control block, LF line ends */
	struct sub_rcpt *rcpts;
	size_t nrcpt;
	size_t naccepted;
	struct sub_block *blocks;	/* the recipients' strings */
};

/* Returns 0, or -1 with a specific reason in err (no control block, unknown
 * key, no recipients at all, bad Dry-Run value, ...). */
int submission_parse(const struct mime_msg *m, struct submission *out, char *err, size_t errlen);

void submission_free(struct submission *s);

/* The address of an accepted or duplicate recipient, parsed. */
void sub_rcpt_addr(const struct sub_rcpt *r, struct mail_addr *a);

#endif
