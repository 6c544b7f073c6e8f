/*
 * bounce: the failure classification table.
 *
 *	bounce_classify			code, status, text, stage, domain -> class
 *	bounce_counts_against_address	only unknown user/domain do
 *	bounce_class_name		the class as a word for logs and reports
 *
 * All the knowledge is in rules[] below: the first row that matches
 * decides, so the carriers' own rows come first, then the statuses of
 * RFC 3463 and last the texts. A row leaves a field NULL (or 0) to match
 * anything; a row with a field set never matches an input that lacks it.
 *
 *	domain	recipient domain suffixes, '|' between them; "docomo.ne.jp"
 *		matches itself and "x.docomo.ne.jp", never "xdocomo.ne.jp"
 *	stages	a set of BOUNCE_STAGE_*, 0 for any
 *	code	"550", "5xx" ('x' any digit), '|' between alternatives. A
 *		class pattern ("5xx") also matches an unknown code when the
 *		status has that class, or when nothing is known at all: a
 *		report that gives only a text is still a failure.
 *	status	"5.1.1", "*.2.2", "5.7.*" ('*' any component)
 *	text	case-insensitive substrings, '|' between them; a leading
 *		'^' anchors at the start of the text after its code and
 *		status ("550 : User unknown" has the text ": User unknown")
 *
 * Extending: add a row where its precedence belongs and a case to
 * tests/unit/test_bounce.c; cite the source in a comment on the row.
 *
 * Pure: no I/O, no allocation; every input may be NULL.
 */
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "mail/bounce.h"

#define ST(s)		(1u << (s))
#define AFTER_RCPT	(ST(BOUNCE_STAGE_RCPT) | ST(BOUNCE_STAGE_DATA) | \
			 ST(BOUNCE_STAGE_DOT) | ST(BOUNCE_STAGE_DSN))
#define POST_RCPT	(ST(BOUNCE_STAGE_DATA) | ST(BOUNCE_STAGE_DOT))

#define STATUS_MAX	16

/* Domains of au (KDDI): CARRIERS.md "Domains"; subdomains follow by suffix. */
#define AU_DOMAINS	"ezweb.ne.jp|au.com"

struct rule {
	const char *domain;
	unsigned stages;
	const char *code;
	const char *status;
	const char *text;
	enum bounce_class class;
};

static const struct rule rules[] = {
	/*
	 * NTT docomo. CARRIERS.md "What a refusal means": "550 Unknown
	 * user" after the end of DATA is the recipient's own filter (the
	 * address is alive); sendmail reports the same refusal as the
	 * reply to DATA. At RCPT TO it means the address does not exist.
	 */
	{ "docomo.ne.jp", POST_RCPT, "550", NULL, "unknown user", BOUNCE_POLICY },
	{ "docomo.ne.jp", ST(BOUNCE_STAGE_RCPT) | ST(BOUNCE_STAGE_DSN), "550", NULL,
	  "unknown user", BOUNCE_UNKNOWN_USER },
	/* CARRIERS.md: "552 too much mail data" is a full mailbox. */
	{ "docomo.ne.jp", 0, "552", NULL, "too much mail data", BOUNCE_MAILBOX_FULL },
	/* CARRIERS.md: "552 too many recipients" in one transaction: ours. */
	{ "docomo.ne.jp", 0, "552", NULL, "too many recipients", BOUNCE_OTHER },

	/*
	 * au (KDDI). CARRIERS.md: "550 : User unknown" without an address
	 * is the recipient's filter; "550 <address>: User unknown" is an
	 * address that does not exist (au refuses those at RCPT).
	 */
	{ AU_DOMAINS, 0, "550", NULL, "^: user unknown", BOUNCE_POLICY },
	{ AU_DOMAINS, ST(BOUNCE_STAGE_RCPT) | ST(BOUNCE_STAGE_DSN), "550", NULL,
	  ">: user unknown", BOUNCE_UNKNOWN_USER },

	/* RFC 5321 4.2.1 "2yz Positive Completion"; RFC 3463 "2.X.X Success". */
	{ NULL, 0, "2xx", NULL, NULL, BOUNCE_NONE },
	{ NULL, 0, NULL, "2.*.*", NULL, BOUNCE_NONE },

	/* RFC 3463 "X.2.2 Mailbox full", temporary or not. */
	{ NULL, 0, NULL, "*.2.2", NULL, BOUNCE_MAILBOX_FULL },
	/* RFC 5321 4.2.2 "552 Requested mail action aborted: exceeded storage
	 * allocation"; qmail's error_str "disk quota exceeded"; the rest
	 * are the usual wordings of the same. */
	{ NULL, 0, NULL, NULL, "exceeded storage allocation|mailbox full|mailbox is full|"
	  "over quota|quota exceeded|disk quota|insufficient storage", BOUNCE_MAILBOX_FULL },

	/* RFC 3463 "X.3.4 Message too big for system", "X.2.3 Message
	 * length exceeds administrative limit". */
	{ NULL, 0, NULL, "*.3.4", NULL, BOUNCE_TOO_BIG },
	{ NULL, 0, NULL, "*.2.3", NULL, BOUNCE_TOO_BIG },
	/* RFC 1870 4: 552 for a message over the SIZE the server takes. */
	{ NULL, 0, "5xx", NULL, "message size|message too big|message is too big|"
	  "message file too big|too large|size limit|maximum size", BOUNCE_TOO_BIG },

	/* RFC 5321 4.2.1 "4yz Transient Negative Completion"; RFC 3463
	 * "4.X.X Persistent Transient Failure": try again later. */
	{ NULL, 0, "4xx", NULL, NULL, BOUNCE_TEMPORARY },
	{ NULL, 0, NULL, "4.*.*", NULL, BOUNCE_TEMPORARY },

	/* Before the first RCPT TO nothing can be about the recipient: a
	 * refused connection, EHLO or MAIL FROM is a block of the sender. */
	{ NULL, ST(BOUNCE_STAGE_CONNECT), NULL, NULL, NULL, BOUNCE_POLICY },

	/* RFC 3463 "X.7.X Security or Policy Status": DESIGN.md, the
	 * sender's problem, never the address's. */
	{ NULL, 0, NULL, "*.7.*", NULL, BOUNCE_POLICY },
	/* RFC 3463 "X.1.7 Bad sender's mailbox address syntax", "X.1.8 Bad
	 * sender's system address": about our envelope sender. */
	{ NULL, 0, NULL, "*.1.7", NULL, BOUNCE_POLICY },
	{ NULL, 0, NULL, "*.1.8", NULL, BOUNCE_POLICY },

	/* RFC 3463 "X.1.2 Bad destination system address". */
	{ NULL, 0, NULL, "5.1.2", NULL, BOUNCE_UNKNOWN_DOMAIN },
	/* RFC 7505 3.2 "X.1.10 Recipient address has null MX". */
	{ NULL, 0, NULL, "5.1.10", "null mx", BOUNCE_UNKNOWN_DOMAIN },
	/* RFC 3463 "X.1.1 Bad destination mailbox address", "X.1.0 Other
	 * address status"; X.1.10 is also what Exchange Online answers for
	 * "Recipient not found by SMTP address lookup". */
	{ NULL, 0, NULL, "5.1.1", NULL, BOUNCE_UNKNOWN_USER },
	{ NULL, 0, NULL, "5.1.0", NULL, BOUNCE_UNKNOWN_USER },
	{ NULL, 0, NULL, "5.1.10", NULL, BOUNCE_UNKNOWN_USER },
	/* RFC 3463 "X.1.6 Destination mailbox has moved, No forwarding
	 * address": the address is gone for good. */
	{ NULL, 0, NULL, "5.1.6", NULL, BOUNCE_UNKNOWN_USER },
	/* RFC 3463 "X.4.4 Unable to route" with a name service failure:
	 * Postfix's "Host or domain name not found". */
	{ NULL, 0, NULL, "5.4.4", "not found|no such domain|nxdomain|null mx",
	  BOUNCE_UNKNOWN_DOMAIN },

	/* Lotus Domino's "... not listed in Domino Directory" and the like
	 * are unknown recipients: kept from the "listed" of the row below. */
	{ NULL, AFTER_RCPT, "5xx", NULL, "not listed in|is not listed", BOUNCE_UNKNOWN_USER },
	/* Spam and policy refusals without a 5.7 status (DESIGN.md: the
	 * sender's problem): block lists, content filters, reputation. */
	{ NULL, 0, "5xx", NULL, "blocked|spam|policy|rejected due to|listed|blacklist|"
	  "blocklist|reputation|denied|banned|prohibited|dnsbl|junk mail",
	  BOUNCE_POLICY },

	/* Texts of a domain that takes no mail (qmail-remote's "Sorry, I
	 * couldn't find any host named", Exim's "Unrouteable address"). */
	{ NULL, AFTER_RCPT, "5xx", NULL, "domain not found|unknown domain|no such domain|"
	  "domain does not exist|host not found|host or domain name not found|"
	  "couldn't find any host|unrouteable address|unroutable address|"
	  "no mx record|null mx", BOUNCE_UNKNOWN_DOMAIN },
	/* RFC 5321 4.2.2 550 "mailbox unavailable (e.g., mailbox not
	 * found)" with the usual "user unknown" wordings; qmail-local's
	 * "Sorry, no mailbox here by that name". */
	{ NULL, AFTER_RCPT, "5xx", NULL, "user unknown|unknown user|no such user|"
	  "unknown recipient|recipient unknown|no such recipient|invalid recipient|"
	  "no such mailbox|mailbox not found|unknown mailbox|user not found|"
	  "recipient not found|no mailbox here|addressee unknown|unknown address|"
	  "account does not exist|address does not exist|user does not exist|"
	  "does not exist", BOUNCE_UNKNOWN_USER },
};

static char
lc(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Length of an "N.N{1,3}.N{1,3}" status at s (class 2, 4 or 5), or 0. */
static size_t
status_len(const char *s)
{
	size_t i = 2, d;
	int part;

	if ((s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return 0;
	for (part = 0; part < 2; part++) {
		for (d = 0; d < 4 && is_digit(s[i + d]); d++)
			;
		if (d == 0 || d > 3)
			return 0;
		i += d;
		if (part == 0 && s[i++] != '.')
			return 0;
	}
	return i;
}

/* Whether a code pattern alternative ("550", "5xx") takes this code. */
static bool
code_alt(const char *p, size_t n, int code, char class)
{
	char digits[4];

	if (n != 3)
		return false;
	if (code == 0)
		/* Unknown code: only a class pattern, by the status's
		 * class; with no status either, a report of a failure. */
		return p[1] == 'x' && p[2] == 'x' &&
		    (class == p[0] || (class == '\0' && p[0] == '5'));
	if (code < 100 || code > 999)
		return false;
	digits[0] = (char)('0' + code / 100);
	digits[1] = (char)('0' + code / 10 % 10);
	digits[2] = (char)('0' + code % 10);
	return (p[0] == 'x' || p[0] == digits[0]) &&
	    (p[1] == 'x' || p[1] == digits[1]) &&
	    (p[2] == 'x' || p[2] == digits[2]);
}

static bool
code_match(const char *pat, int code, const char *status)
{
	const char *p = pat, *bar;
	size_t n;

	for (;;) {
		bar = strchr(p, '|');
		n = bar ? (size_t)(bar - p) : strlen(p);
		if (code_alt(p, n, code, status[0]))
			return true;
		if (bar == NULL)
			return false;
		p = bar + 1;
	}
}

/* "5.7.*" against "5.7.26": component by component, '*' takes any. */
static bool
status_match(const char *pat, const char *status)
{
	const char *p = pat, *s = status;
	size_t pn, sn;

	if (*s == '\0')
		return false;
	for (;;) {
		pn = strcspn(p, ".");
		sn = strcspn(s, ".");
		if (!(pn == 1 && *p == '*') && (pn != sn || strncmp(p, s, pn) != 0))
			return false;
		p += pn;
		s += sn;
		if (*p == '\0' || *s == '\0')
			return *p == '\0' && *s == '\0';
		p++;
		s++;
	}
}

/* Case-insensitive: needle (n octets) in hay. */
static bool
contains(const char *hay, const char *needle, size_t n)
{
	size_t i;

	if (n == 0)
		return true;
	for (; *hay != '\0'; hay++) {
		for (i = 0; i < n && hay[i] != '\0' && lc(hay[i]) == lc(needle[i]); i++)
			;
		if (i == n)
			return true;
	}
	return false;
}

static bool
text_match(const char *pat, const char *text)
{
	const char *p = pat, *bar;
	size_t n;

	if (text == NULL)
		return false;
	for (;;) {
		bar = strchr(p, '|');
		n = bar ? (size_t)(bar - p) : strlen(p);
		if (n > 0 && *p == '^') {
			if (strlen(text) >= n - 1 && strncasecmp(text, p + 1, n - 1) == 0)
				return true;
		} else if (contains(text, p, n))
			return true;
		if (bar == NULL)
			return false;
		p = bar + 1;
	}
}

/* "docomo.ne.jp" takes "docomo.ne.jp" and "mail.docomo.ne.jp". */
static bool
domain_match(const char *pat, const char *domain)
{
	const char *p = pat, *bar;
	size_t n, dl;

	if (domain == NULL)
		return false;
	dl = strlen(domain);
	while (dl > 0 && domain[dl - 1] == '.')
		dl--;
	for (;;) {
		bar = strchr(p, '|');
		n = bar ? (size_t)(bar - p) : strlen(p);
		if (dl >= n && strncasecmp(domain + dl - n, p, n) == 0 &&
		    (dl == n || domain[dl - n - 1] == '.'))
			return true;
		if (bar == NULL)
			return false;
		p = bar + 1;
	}
}

struct input {
	int code;
	char status[STATUS_MAX];
	const char *text;	/* after any leading code and status */
	enum bounce_stage stage;
	const char *domain;
};

/*
 * The text may start with its reply: "550 5.1.1 <x@y>: ...", or the
 * glued lines of a multi-line one ("550-5.1.1 ..."). What it says fills
 * in what the caller did not know; a specific status there beats a
 * generic X.0.0 of the same class (Exim's DSNs say "Status: 5.0.0" over
 * a "550 5.1.1" diagnostic).
 */
static void
normalise(struct input *in, int code, const char *status, const char *text)
{
	const char *t = text;
	int tcode = 0;
	size_t sl;

	in->code = code;
	in->status[0] = '\0';
	if (status != NULL && (sl = status_len(status)) > 0 && sl < STATUS_MAX &&
	    (status[sl] == '\0' || status[sl] == ' ')) {
		memcpy(in->status, status, sl);
		in->status[sl] = '\0';
	}
	in->text = NULL;
	if (t == NULL)
		return;
	while (*t == ' ' || *t == '\t')
		t++;
	if (is_digit(t[0]) && is_digit(t[1]) && is_digit(t[2]) &&
	    (t[3] == ' ' || t[3] == '-' || t[3] == '\0')) {
		tcode = (t[0] - '0') * 100 + (t[1] - '0') * 10 + (t[2] - '0');
		t += t[3] == '\0' ? 3 : 4;
		while (*t == ' ')
			t++;
	}
	if ((sl = status_len(t)) > 0 && sl < STATUS_MAX &&
	    (t[sl] == ' ' || t[sl] == '\0')) {
		if (in->status[0] == '\0' ||
		    (in->status[0] == t[0] && strcmp(in->status + 1, ".0.0") == 0)) {
			memcpy(in->status, t, sl);
			in->status[sl] = '\0';
		}
		t += sl;
		while (*t == ' ')
			t++;
	}
	if (in->code == 0 && tcode >= 200 && tcode <= 599)
		in->code = tcode;
	in->text = t;
}

static bool
rule_match(const struct rule *r, const struct input *in)
{
	if (r->domain != NULL && !domain_match(r->domain, in->domain))
		return false;
	if (r->stages != 0 && (r->stages & ST(in->stage)) == 0)
		return false;
	if (r->code != NULL && !code_match(r->code, in->code, in->status))
		return false;
	if (r->status != NULL && !status_match(r->status, in->status))
		return false;
	if (r->text != NULL && !text_match(r->text, in->text))
		return false;
	return true;
}

enum bounce_class
bounce_classify(int code, const char *status, const char *text,
    enum bounce_stage stage, const char *domain, bool *soft)
{
	enum bounce_class c = BOUNCE_OTHER;
	struct input in;
	size_t i;

	normalise(&in, code, status, text);
	in.stage = stage;
	in.domain = domain;
	for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
		if (rule_match(&rules[i], &in)) {
			c = rules[i].class;
			break;
		}
	if (soft != NULL)
		*soft = c == BOUNCE_MAILBOX_FULL || c == BOUNCE_TEMPORARY;
	return c;
}

bool
bounce_counts_against_address(enum bounce_class c)
{
	return c == BOUNCE_UNKNOWN_USER || c == BOUNCE_UNKNOWN_DOMAIN;
}

const char *
bounce_class_name(enum bounce_class c)
{
	switch (c) {
	case BOUNCE_NONE:
		return "none";
	case BOUNCE_UNKNOWN_USER:
		return "unknown-user";
	case BOUNCE_UNKNOWN_DOMAIN:
		return "unknown-domain";
	case BOUNCE_MAILBOX_FULL:
		return "mailbox-full";
	case BOUNCE_POLICY:
		return "policy";
	case BOUNCE_TOO_BIG:
		return "too-big";
	case BOUNCE_TEMPORARY:
		return "temporary";
	case BOUNCE_OTHER:
		break;
	}
	return "other";
}
