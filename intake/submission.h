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
 * One recipient as written, as sub_next gives it: a view into the
 * submission, valid as long as the submission is.
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

/*
 * A list may hold a million recipients: they are kept packed, one after
 * the other in blocks (a flag octet, the line as a difference, the
 * canonical address; the text as written only where it differs), and read
 * back in order with sub_next. List attachments are read a chunk at a
 * time, never decoded whole.
 */
struct submission {
	char *token;		/* NULL when absent */
	char *subject;		/* control-block Subject, else the mail's, else NULL */
	char *send_at;		/* raw Send-At value, or NULL */
	char *rate;		/* raw Rate value ("300/h", "20/min", "2/s"), or NULL */
	char *send_by;		/* raw Send-By value, or NULL */
	char *from;		/* raw From value (one of the submitter's allowed ones), or NULL */
	bool dry_run;
	char *body;		/* UTF-8 DM text after the control block, LF line ends */
	size_t nrcpt;
	size_t naccepted;
	struct sub_block **blocks;	/* the recipients, in order */
	size_t nblocks, capblocks;
	char **sources;		/* [0] "To", then the attachments' names */
	size_t nsources;
};

/* Returns 0, or -1 with a specific reason in err (no control block, unknown
 * key, no recipients at all, bad Dry-Run value, ...). */
int submission_parse(const struct mime_msg *m, struct submission *out, char *err, size_t errlen);
/* The same, reading list attachments chunk octets at a time (the default
 * is 64 KiB): the result never depends on it. */
int submission_parse_chunked(const struct mime_msg *m, size_t chunk, struct submission *out,
    char *err, size_t errlen);

void submission_free(struct submission *s);

/* The recipients in order: sub_first, then sub_next until it is false. */
struct sub_iter {
	const struct submission *s;
	size_t block, off;
	size_t source;
	unsigned line;
};
void sub_first(struct sub_iter *it, const struct submission *s);
bool sub_next(struct sub_iter *it, struct sub_rcpt *r);

/* The address of an accepted or duplicate recipient, parsed. */
void sub_rcpt_addr(const struct sub_rcpt *r, struct mail_addr *a);

#endif
