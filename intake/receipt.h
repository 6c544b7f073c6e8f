#ifndef HATO_INTAKE_RECEIPT_H
#define HATO_INTAKE_RECEIPT_H
/*
 * receipt: the mails Hato writes back to a submitter. A receipt right after
 * intake (the job number, counts per carrier route and outcome, the
 * rejected addresses, the scheduled time, how to approve a held job), an
 * error receipt when a known submitter's mail made no job, and the
 * completion report when a job ends. Pure: values in, one whole RFC 5322
 * message out (CRLF line ends, UTF-8 text in base64, subject in RFC 2047),
 * stored as the body of a "notice" job and sent as it is with an empty
 * envelope sender. Every one carries Auto-Submitted: auto-replied, so that
 * well-behaved software never answers it, and In-Reply-To/References of
 * the submission, so that mail programs thread it.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* What became of each recipient of a submission. */
enum receipt_outcome { RO_ACCEPTED = 0, RO_DUPLICATE, RO_INVALID, RO_SUPPRESSED, RO_OVER_QUOTA, RO_COUNT };
const char *receipt_outcome_name(int outcome);

/* Lists longer than this go in a text/csv attachment. */
#define RECEIPT_INLINE_MAX 50

struct notice_head {
	const char *from;		/* receipt_from */
	const char *to;			/* the submitter */
	const char *domain;		/* right side of the Message-ID */
	const char *in_reply_to;	/* the submission's Message-ID without <>, or NULL */
};

struct receipt_dest {
	const char *dest;		/* destination key ("relay:docomo"), "" unrouted */
	size_t n[RO_COUNT];
};

struct receipt_reject {
	const char *address;		/* as written */
	int outcome;			/* RO_DUPLICATE .. RO_OVER_QUOTA */
	const char *reason;		/* or NULL */
	const char *source;		/* "To" or the attachment's name, or NULL */
	size_t line;
};

struct receipt {
	struct notice_head h;
	uint64_t job_id;		/* 0: an error receipt (no job) */
	const char *error;		/* error receipt: what went wrong */
	const char *subject;		/* the DM's subject, or NULL */
	const char *dm_from;		/* the DM's From, or NULL */
	const struct receipt_dest *dests;
	size_t ndests;
	size_t total[RO_COUNT];
	const struct receipt_reject *rejects;
	size_t nrejects;
	double send_at;			/* Unix time; 0: now */
	bool dry_run;
	const char *confirm_code;	/* the job is held: how to approve it */
	double hold_expires;		/* Unix time, or 0 */
};

/* The receipt, malloc'd (length in *len), or NULL when memory runs out.
 * Times are written in the process's time zone (TZ). */
char *receipt_compose(const struct receipt *r, time_t now, size_t *len);

struct report_dest {
	const char *dest;
	unsigned sent, failed, suppressed, cancelled, other;
};

struct report_failure {
	const char *address;
	int code;			/* last reply code, 0: none */
	const char *status;		/* enhanced status or "" */
	const char *text;		/* last reply text */
};

struct report {
	struct notice_head h;
	uint64_t job_id;
	const char *subject;		/* the DM's */
	const char *state;		/* "done", "cancelled", ... */
	const struct report_dest *dests;
	size_t ndests;
	const struct report_failure *failures;
	size_t nfailures;
};

/* The completion report: counts per destination, and every failure in a
 * CSV attachment (address, code, status, text). */
char *report_compose(const struct report *r, time_t now, size_t *len);

#endif
