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

struct sub_rcpt {
	char *raw;		/* as written (trimmed), UTF-8 */
	struct mail_addr addr;	/* valid when verdict != RCPT_INVALID */
	enum rcpt_verdict verdict;
	const char *reason;	/* static text for RCPT_INVALID */
	const char *source;	/* "To" or the attachment's file name */
	size_t line;		/* line in that source, from 1 */
};

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
};

/* Returns 0, or -1 with a specific reason in err (no control block, unknown
 * key, no recipients at all, bad Dry-Run value, ...). */
int submission_parse(const struct mime_msg *m, struct submission *out, char *err, size_t errlen);

void submission_free(struct submission *s);

#endif
