#ifndef HATO_GATEWAY_COMPOSE_H
#define HATO_GATEWAY_COMPOSE_H
/*
 * compose: the outgoing message. A DM body is the same for every recipient,
 * so it is encoded once per job and charset (compose_prepare); each
 * recipient then gets only its own header block (compose_head). The message
 * on the wire is head followed by body, CRLF line ends, not dot-stuffed.
 * Nothing from a submission reaches a header unencoded: no CR or LF of a
 * submitter's can start a header.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct dkim_key;

struct compose_job {
	uint64_t job_id;
	const char *from;	/* From header: "addr" or "Display <addr>", UTF-8 */
	const char *reply_to;	/* or NULL */
	const char *subject;	/* UTF-8 */
	const char *body;	/* UTF-8, LF or CRLF line ends */
	const char *charset;	/* "utf-8" (base64) or "iso-2022-jp" (7bit); NULL: utf-8 */
	const char *domain;	/* right side of Message-IDs */
	const struct dkim_key *dkim;	/* sign with it, or NULL; not owned, must outlive the body */
};

struct compose_body {
	char *mime_headers;	/* "MIME-Version: ...\r\nContent-Type: ...\r\nContent-Transfer-Encoding: ...\r\n" */
	char *subject;		/* encoded and folded Subject value */
	char *from;		/* encoded From value */
	char *reply_to;		/* encoded Reply-To value, or NULL */
	char *domain;
	uint64_t job_id;
	char *body;		/* encoded body, CRLF lines, ends with CRLF */
	size_t body_len;
	const struct dkim_key *dkim;	/* from the job, or NULL */
	char *dkim_bh;		/* body hash for the DKIM signatures, or NULL */
	const char *charset_used;	/* MIME name written: "UTF-8", "ISO-2022-JP" */
	bool fell_back;		/* the job's charset could not carry the text */
	bool notice;		/* a notice: body is the whole message, head is empty */
	char fallback[128];	/* why, for the log: "Subject: U+2460 not in ISO-2022-JP" */
};

/* NULL with a reason in err when the job cannot be written. Text that the
 * job's charset cannot carry is written in UTF-8 instead, with fell_back
 * set and the reason in fallback. */
struct compose_body *compose_prepare(const struct compose_job *j, char *err, size_t errlen);
void compose_body_free(struct compose_body *b);

/* A notice (receipt or report to a submitter): the stored message is sent
 * as it is, CRLF line ends, with a DKIM-Signature in front when dkim is
 * given (signed here, once). NULL with a reason in err when the stored
 * text is no message (no empty line after the header). */
struct compose_body *compose_notice(uint64_t job_id, const char *msg, const struct dkim_key *dkim,
    char *err, size_t errlen);

struct compose_rcpt {
	const char *to;		/* RFC 5321 form of the recipient (addr_format) */
	uint64_t delivery_id;
	const char *extra;	/* more header lines, each ending CRLF, or NULL */
};

/* The header block for one recipient, ending with the empty line. Returns a
 * malloc'd string (length in *len). Date from now; Message-ID
 * <job.delivery.random@domain>. With a DKIM key, the block starts with its
 * DKIM-Signature, time-stamped now; NULL when it cannot be signed. */
char *compose_head(const struct compose_body *b, const struct compose_rcpt *r, time_t now, size_t *len);

#endif
