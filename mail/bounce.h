#ifndef HATO_MAIL_BOUNCE_H
#define HATO_MAIL_BOUNCE_H
/*
 * bounce: what a refusal means for the address it was about. One table
 * of rules (bounce.c) maps an SMTP reply code, an RFC 3463 enhanced status
 * code, the reply text, the stage of the session it came at and the
 * recipient's domain to a small set of classes. List cleaning counts only
 * the classes that say the address itself is dead.
 *
 *	bool soft;
 *	enum bounce_class c = bounce_classify(550, "5.1.1",
 *	    "<taro@example.jp>: Recipient address rejected: User unknown",
 *	    BOUNCE_STAGE_RCPT, "example.jp", &soft);
 *	if (bounce_counts_against_address(c)) ...
 *
 * Pure: no I/O, no allocation, no state.
 */
#include <stdbool.h>

enum bounce_class {
	BOUNCE_NONE,		/* delivered (2xx, 2.x.x): nothing failed */
	BOUNCE_UNKNOWN_USER,	/* the mailbox does not exist (5.1.1) */
	BOUNCE_UNKNOWN_DOMAIN,	/* the domain does not exist or takes no mail (5.1.2) */
	BOUNCE_MAILBOX_FULL,	/* over quota (x.2.2): soft, the address is alive */
	BOUNCE_POLICY,		/* refused for the sender's sake: block lists,
				 * spam filters, the recipient's own filter
				 * (5.7.x); never the address's fault */
	BOUNCE_TOO_BIG,		/* the message is over a size limit (5.3.4) */
	BOUNCE_TEMPORARY,	/* any other 4xx: soft, try again later */
	BOUNCE_OTHER,		/* a permanent failure none of the above explains */
};

/*
 * Where in the session the reply came. CONNECT covers everything before
 * the first RCPT (greeting, EHLO, MAIL FROM): nothing said there is about
 * a recipient. DATA is the reply to the DATA command, DOT the reply after
 * the end of the content. DSN is a reply read from a delivery report that
 * does not say which command it answered.
 */
enum bounce_stage {
	BOUNCE_STAGE_CONNECT,
	BOUNCE_STAGE_RCPT,
	BOUNCE_STAGE_DATA,
	BOUNCE_STAGE_DOT,
	BOUNCE_STAGE_DSN,
};

/*
 * code: the SMTP reply code, 0 when unknown. status: "5.1.1", or NULL/""
 * when none. text: the reply text, with or without its leading code and
 * status (a Diagnostic-Code's "550 5.1.1 <x@y>: ..." may be passed as it
 * is; a code or status found there fills in a missing one, and a more
 * specific status there beats a generic "5.0.0"), or NULL. domain: the
 * recipient's domain, for the carriers' own rules, or NULL. *soft (may be
 * NULL) is set to true when the failure is worth retrying later (mailbox
 * full, temporary).
 */
enum bounce_class bounce_classify(int code, const char *status, const char *text,
    enum bounce_stage stage, const char *domain, bool *soft);

/* True only for unknown user and unknown domain. */
bool bounce_counts_against_address(enum bounce_class c);

/* "unknown-user", "unknown-domain", "mailbox-full", "policy", "too-big",
 * "temporary", "other"; "none" for BOUNCE_NONE. */
const char *bounce_class_name(enum bounce_class c);

#endif
