#ifndef HATO_MAIL_DSN_H
#define HATO_MAIL_DSN_H
/*
 * dsn: reading a bounce. An RFC 3464 delivery status notification
 * (multipart/report; report-type=delivery-status) is read field by field;
 * a bounce without a message/delivery-status part is read from its text
 * the way the common MTAs write it (qmail, Exim, sendmail, Postfix without
 * DSN, Japanese ISO-2022-JP notices), and says so (fallback).
 *
 *	struct dsn d;
 *	char err[256];
 *
 *	if (dsn_parse(mail, len, &d, err, sizeof(err)) == -1)
 *		not a bounce: err says why;
 *	for (i = 0; i < d.nrcpt; i++)
 *		bounce_classify(d.rcpt[i].code, dsn_rcpt_status(&d.rcpt[i]),
 *		    d.rcpt[i].diag_text, stage from d.rcpt[i].command, ...);
 *	dsn_free(&d);
 *
 * Pure: bytes in, values out, no I/O. Every value is bounded (the sizes
 * below; longer ones are cut), NUL-terminated, UTF-8, and free of control
 * characters, so it may go to a log line or a database column as it is.
 * It calls mime_init(), which is not thread-safe the first time.
 */
#include <stdbool.h>
#include <stddef.h>

#define DSN_ADDR_MAX	322	/* an address, NUL included */
#define DSN_STATUS_MAX	16	/* "5.1.1" */
#define DSN_TYPE_MAX	32	/* "smtp", "x-postfix" */
#define DSN_TEXT_MAX	1024	/* a diagnostic text */
#define DSN_HOST_MAX	256	/* an MTA name */
#define DSN_ID_MAX	256	/* a Message-ID or envelope id */
#define DSN_RCPT_MAX	100	/* recipients kept from one report */

enum dsn_action {
	DSN_ACTION_NONE,	/* no Action field (or one not in RFC 3464) */
	DSN_ACTION_FAILED,
	DSN_ACTION_DELAYED,
	DSN_ACTION_DELIVERED,
	DSN_ACTION_RELAYED,
	DSN_ACTION_EXPANDED,
};

/*
 * The SMTP command the remote reply answered, when the report tells
 * (Postfix "in reply to end of DATA command", Exim "after RCPT TO:",
 * sendmail's ">>> DATA" transcript, qmail "does not like recipient").
 * DATA is the reply to the DATA command itself, DOT the reply after the
 * content. For bounce_classify: CONNECT, HELO and MAIL are
 * BOUNCE_STAGE_CONNECT, UNKNOWN is BOUNCE_STAGE_DSN.
 */
enum dsn_command {
	DSN_CMD_UNKNOWN,
	DSN_CMD_CONNECT,
	DSN_CMD_HELO,
	DSN_CMD_MAIL,
	DSN_CMD_RCPT,
	DSN_CMD_DATA,
	DSN_CMD_DOT,
};

struct dsn_rcpt {
	char final_rcpt[DSN_ADDR_MAX];	/* "taro@docomo.ne.jp" (type and <> removed), or "" */
	char orig_rcpt[DSN_ADDR_MAX];	/* Original-Recipient, or "" */
	enum dsn_action action;
	char status[DSN_STATUS_MAX];	/* Status "5.1.1", or "" */
	char diag_type[DSN_TYPE_MAX];	/* "smtp", lower-cased, or "" */
	char diag_text[DSN_TEXT_MAX];	/* "550 5.1.1 <x@y>: Recipient address rejected: User unknown" */
	int code;			/* reply code at the start of diag_text, or 0 */
	char diag_status[DSN_STATUS_MAX];	/* enhanced status after that code, or "" */
	char remote_mta[DSN_HOST_MAX];	/* "mx.example.jp" (type removed), or "" */
	enum dsn_command command;
};

struct dsn {
	bool fallback;		/* read from the text of a non-standard bounce */
	char message_id[DSN_ID_MAX];	/* the bounced message's Message-ID, without <>, or "" */
	char envid[DSN_ID_MAX];	/* Original-Envelope-Id, or "" */
	char orig_sender[DSN_ADDR_MAX];	/* the bounced message's envelope sender
					 * (its Return-Path, Postfix's X-Postfix-Sender), or "" */
	char reporting_mta[DSN_HOST_MAX];	/* Reporting-MTA (type removed), or "" */
	struct dsn_rcpt *rcpt;	/* nrcpt of them, in the report's order */
	size_t nrcpt;
	bool truncated;		/* the report had more than DSN_RCPT_MAX */
};

/*
 * Returns 0 with at least one recipient, or -1 with the reason in err
 * ("not a bounce: ...", "delivery-status line 7: ...") and *out empty.
 * A recipient group of a delivery-status part without an address is kept
 * (the VERP envelope names the delivery anyway).
 */
int dsn_parse(const char *data, size_t len, struct dsn *out, char *err, size_t errlen);

/* The most specific status known: Status, unless it is empty or a
 * generic "N.0.0" and the diagnostic has one of the same class. */
const char *dsn_rcpt_status(const struct dsn_rcpt *r);

const char *dsn_action_name(enum dsn_action a);

void dsn_free(struct dsn *d);

#endif
