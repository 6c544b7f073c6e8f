/*
 * dsn: a bounce, read into the recipients it reports.
 *
 *	dsn_parse	bytes -> struct dsn
 *	dsn_rcpt_status	the most specific status of one recipient
 *	dsn_action_name
 *	dsn_free
 *
 * mail/mime.c takes the mail apart (structure, transfer encodings,
 * charsets: a Japanese ISO-2022-JP notice arrives here as UTF-8). Then:
 *
 * 1. RFC 3464. The message/delivery-status part (or RFC 6533's
 *    message/global-delivery-status) is a per-message field group and one
 *    group per recipient, separated by blank lines, fields folded onto
 *    continuation lines. Field names also start a recipient where an MTA
 *    forgot the blank line, and lines that are no field are skipped (the
 *    first one is named in the error if nothing came of the part). What
 *    the fields do not say, the human-readable part often does: the SMTP
 *    command a reply answered ("in reply to end of DATA command") and,
 *    when the Diagnostic-Code is missing, the reply itself.
 *
 * 2. Fallback, when there is no such part or it had no recipient: the
 *    text, up to the copy of the original message, is read for the
 *    layouts the common MTAs write: DSN fields pasted into the text;
 *    "<addr>:" paragraphs (qmail, Postfix without DSN, au EZweb);
 *    sendmail's "----- The following addresses had permanent fatal
 *    errors -----" lists and ">>>"/"<<<" transcripts; Exim's "The
 *    following address(es) failed:" indented blocks; Japanese notices'
 *    "宛先：" labels; last, any line with an address and a reply code,
 *    and Exim's X-Failed-Recipients header. A mail is read this way only
 *    when it looks like a bounce (a MAILER-DAEMON or postmaster sender,
 *    a bounce subject, or a bounce sentence in the text), so that an
 *    ordinary mail quoting "<a@b>: 550 ..." is not taken for one.
 *
 * The bounced message's Message-ID comes from the returned message or
 * headers (message/rfc822, text/rfc822-headers, or the copy after the
 * text's marker line), else from the bounce's own References.
 *
 * Bounds: the input (DSN_INPUT_MAX), the delivery-status part and the text
 * read (DS_MAX, SCAN_MAX), one folded field (FIELD_MAX), the recipients
 * (DSN_RCPT_MAX, then truncated) and every value (dsn.h); no function here
 * recurses on the input. Failure: -1 with a reason in err and an empty struct, for
 * no mail at all, a mail that is not a bounce, or memory exhaustion.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mail/address.h"
#include "mail/charset.h"
#include "mail/dsn.h"
#include "mail/mime.h"
#include "mail/reply.h"

#define DSN_INPUT_MAX	(64u * 1024 * 1024)	/* a whole bounce */
#define DS_MAX		(1024u * 1024)		/* a delivery-status part */
#define SCAN_MAX	(256u * 1024)		/* text read for the fallback */
#define FIELD_MAX	4096			/* one unfolded field */
#define NAME_MAX_	64			/* a field name */
#define BLOCK_LINES	40			/* lines of one recipient's paragraph */

struct slice {
	const char *p;
	size_t n;
};

/* ---------------------------------------------------------------- text */

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

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Case-insensitive needle in h[0..n), or NULL. */
static const char *
find_ci(const char *h, size_t n, const char *needle)
{
	size_t k = strlen(needle), i, j;

	if (k == 0 || k > n)
		return k == 0 ? h : NULL;
	for (i = 0; i + k <= n; i++) {
		for (j = 0; j < k && lc(h[i + j]) == lc(needle[j]); j++)
			;
		if (j == k)
			return h + i;
	}
	return NULL;
}

static bool
starts_ci(const char *s, size_t n, const char *prefix)
{
	size_t k = strlen(prefix);

	return n >= k && strncasecmp(s, prefix, k) == 0;
}

/* The next line of s[0..len) from *pos, without its LF (and a CR before it). */
static bool
next_line(const char *s, size_t len, size_t *pos, struct slice *line)
{
	const char *nl;

	if (*pos >= len)
		return false;
	line->p = s + *pos;
	nl = memchr(line->p, '\n', len - *pos);
	line->n = nl ? (size_t)(nl - line->p) : len - *pos;
	*pos += line->n + (nl != NULL);
	if (line->n > 0 && line->p[line->n - 1] == '\r')
		line->n--;
	return true;
}

static size_t
indent_of(struct slice l)
{
	size_t i;

	for (i = 0; i < l.n && (l.p[i] == ' ' || l.p[i] == '\t'); i++)
		;
	return i;
}

static bool
blank(struct slice l)
{
	return indent_of(l) == l.n;
}

static struct slice
trim(struct slice s)
{
	while (s.n > 0 && is_space(s.p[0]))
		s.p++, s.n--;
	while (s.n > 0 && is_space(s.p[s.n - 1]))
		s.n--;
	return s;
}

/*
 * Copies s into dst (size octets with the NUL): runs of white space become
 * one blank, other controls go, the ends are trimmed, a cut falls between
 * characters, and what is not UTF-8 after all that becomes '?'.
 */
static void
put_clean(char *dst, size_t size, const char *s, size_t n)
{
	size_t w = 0, i;
	bool space = false, cut = false;
	unsigned char c;

	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (is_space((char)c)) {
			space = w > 0;
			continue;
		}
		if (c < 0x20 || c == 0x7f)
			continue;
		if (w + 1 + space >= size) {
			cut = true;
			break;
		}
		if (space)
			dst[w++] = ' ';
		space = false;
		dst[w++] = (char)c;
	}
	if (cut) {
		while (w > 0 && ((unsigned char)dst[w - 1] & 0xc0) == 0x80)
			w--;
		if (w > 0 && (unsigned char)dst[w - 1] >= 0xc0)
			w--;
	}
	dst[w] = '\0';
	if (!utf8_valid(dst, w))
		for (i = 0; i < w; i++)
			if ((unsigned char)dst[i] >= 0x80)
				dst[i] = '?';
}

static void
put_lower(char *dst, size_t size, const char *s, size_t n)
{
	char *p;

	put_clean(dst, size, s, n);
	for (p = dst; *p != '\0'; p++)
		*p = lc(*p);
}

/* "rfc822; x@y" -> type "rfc822", value "x@y"; no ';': no type. */
static void
split_type(struct slice v, struct slice *type, struct slice *val)
{
	const char *semi = memchr(v.p, ';', v.n);

	if (semi == NULL) {
		type->p = v.p;
		type->n = 0;
		*val = trim(v);
		return;
	}
	type->p = v.p;
	type->n = (size_t)(semi - v.p);
	*type = trim(*type);
	val->p = semi + 1;
	val->n = (size_t)(v.p + v.n - val->p);
	*val = trim(*val);
}

/* The canonical "local@domain" of s into dst, when addr_parse takes it. */
static bool
put_canonical(char *dst, size_t size, struct slice s)
{
	struct mail_addr a;
	const char *why;
	char buf[ADDR_MAX + 3];

	if (s.n == 0 || addr_parse(s.p, s.n, &a, &why) == -1)
		return false;
	addr_canonical(&a, buf, sizeof(buf));
	put_clean(dst, size, buf, strlen(buf));
	return true;
}

/* An address as the canonical "local@domain" when it parses, else as written. */
static void
put_addr(char *dst, size_t size, struct slice s)
{
	s = trim(s);
	if (!put_canonical(dst, size, s))
		put_clean(dst, size, s.p, s.n);
}

/* Length of an RFC 3463 "N.N{1,3}.N{1,3}" (class 2, 4 or 5) at s, or 0. */
static size_t
status_len(const char *s, size_t n)
{
	size_t i = 2, d;
	int part;

	if (n < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return 0;
	for (part = 0; part < 2; part++) {
		for (d = 0; i + d < n && d < 4 && is_digit(s[i + d]); d++)
			;
		if (d == 0 || d > 3)
			return 0;
		i += d;
		if (part == 0 && (i >= n || s[i++] != '.'))
			return 0;
	}
	if (i < n && (is_digit(s[i]) || s[i] == '.'))
		return 0;
	return i;
}

static void
put_status(char *dst, const char *s, size_t n)
{
	size_t sl = status_len(s, n);

	memcpy(dst, s, sl);
	dst[sl] = '\0';
}

/* -------------------------------------------------------- the diagnostic */

/* The code and status at the start of the diagnostic, with the reply codec. */
static void
diag_reply(struct dsn_rcpt *r)
{
	struct reply rp;
	size_t n = strlen(r->diag_text);

	r->code = 0;
	r->diag_status[0] = '\0';
	if (n > REPLY_LINE_MAX)
		n = REPLY_LINE_MAX;	/* the code and status are at the start */
	reply_init(&rp);
	switch (reply_feed(&rp, r->diag_text, n)) {
	case REPLY_DONE:
	case REPLY_MORE:	/* "550-5.1.1 ... 550 5.1.1 ..." glued into one line */
		if (rp.code < 200)
			break;
		r->code = rp.code;
		snprintf(r->diag_status, sizeof(r->diag_status), "%s", rp.status);
		break;
	case REPLY_MALFORMED:
		break;
	}
}

/*
 * Where a reply code starts in s, or NULL: three digits that make a reply
 * code of class 2, 4 or 5 (x0x..x5x), after a blank, a colon, a
 * parenthesis or non-ASCII text ("理由：550"), before a blank, a '-' of a
 * continued reply or the end. IP addresses, dates and "(#5.1.1)" are not.
 */
static const char *
find_code(const char *s, size_t n)
{
	size_t i;
	unsigned char prev;

	for (i = 0; i + 3 <= n; i++) {
		if ((s[i] != '2' && s[i] != '4' && s[i] != '5') ||
		    s[i + 1] < '0' || s[i + 1] > '5' || !is_digit(s[i + 2]))
			continue;
		prev = i > 0 ? (unsigned char)s[i - 1] : ' ';
		if (!(prev == ' ' || prev == '\t' || prev == ':' || prev == '(' ||
		    prev == '"' || prev >= 0x80))
			continue;
		if (i + 3 == n || s[i + 3] == ' ' || s[i + 3] == '\t')
			return s + i;
		/* "550-text" or "550-5.1.1", not "550-1234" */
		if (s[i + 3] == '-' && i + 4 < n && (!is_digit(s[i + 4]) ||
		    status_len(s + i + 4, n - i - 4) > 0))
			return s + i;
	}
	return NULL;
}

/* A status standing alone in s ("(#5.1.1)", "Status: 5.2.2"), or NULL. */
static const char *
find_status(const char *s, size_t n, size_t *sl)
{
	size_t i;
	char prev;

	for (i = 0; i < n; i++) {
		prev = i > 0 ? s[i - 1] : ' ';
		if (!(prev == ' ' || prev == '#' || prev == '(' || prev == ':' ||
		    prev == '\t'))
			continue;
		if ((*sl = status_len(s + i, n - i)) > 0)
			return s + i;
	}
	return NULL;
}

/*
 * The reply in a recipient's paragraph: from its code to the end of that
 * line, with the lines that continue it (indented ones, or ones with the
 * same code, as multi-line replies are printed), without Postfix's
 * trailing "(in reply to ... command)" or the ")" closing sendmail's
 * "(reason: ...". A code after "said:", "<<<" or "reason:" is preferred
 * to one elsewhere.
 */
static bool
block_reply(struct slice b, char *out, size_t size)
{
	static const char *lead[] = { "said:", "<<< ", "reason:" };
	char buf[DSN_TEXT_MAX * 2];
	const char *c = NULL, *m, *end = b.p + b.n, *ls, *tail;
	size_t i, w = 0, k, ind0 = 0;
	struct slice l;
	size_t pos;

	for (i = 0; c == NULL && i < sizeof(lead) / sizeof(lead[0]); i++)
		if ((m = find_ci(b.p, b.n, lead[i])) != NULL)
			c = find_code(m, (size_t)(end - m));
	if (c == NULL && (c = find_code(b.p, b.n)) == NULL)
		return false;
	for (ls = c; ls > b.p && ls[-1] != '\n'; ls--)
		;
	for (; ls + ind0 < c && (ls[ind0] == ' ' || ls[ind0] == '\t'); ind0++)
		;
	pos = (size_t)(c - b.p);
	next_line(b.p, b.n, &pos, &l);
	k = l.n < sizeof(buf) ? l.n : sizeof(buf) - 1;
	memcpy(buf, l.p, k);
	w = k;
	while (next_line(b.p, b.n, &pos, &l) && !blank(l)) {
		k = indent_of(l);
		/* A note of its own in parentheses is not the reply's. */
		if (l.p[k] == '(' || starts_ci(l.p + k, l.n - k, "\xef\xbc\x88"))
			break;
		if (!((k > 0 && k >= ind0) ||
		    (l.n - k > 3 && memcmp(l.p + k, c, 3) == 0 &&
		    (l.p[k + 3] == ' ' || l.p[k + 3] == '-'))))
			break;
		if (w + 1 + l.n >= sizeof(buf))
			break;
		buf[w++] = ' ';
		memcpy(buf + w, l.p, l.n);
		w += l.n;
	}
	buf[w] = '\0';
	/* sendmail's "(reason: 550 ...)": up to its last ")". */
	m = find_ci(b.p, (size_t)(c - b.p), "(reason:");
	if (m != NULL && memchr(m, '\n', (size_t)(c - m)) == NULL &&
	    (tail = memrchr(buf, ')', w)) != NULL)
		w = (size_t)(tail - buf);
	put_clean(out, size, buf, w);
	/* Postfix's own note, after the white space is made single. */
	if ((tail = find_ci(out, strlen(out), " (in reply to ")) != NULL)
		out[tail - out] = '\0';
	return out[0] != '\0';
}

/* --------------------------------------------------------- the command */

static const struct {
	const char *phrase;
	enum dsn_command cmd;
} commands[] = {
	/* Postfix "(in reply to end of DATA command)", Exim "after end of data" */
	{ "end of data", DSN_CMD_DOT },
	/* qmail-remote "failed after I sent the message" */
	{ "after i sent the message", DSN_CMD_DOT },
	/* Postfix "(in reply to RCPT TO command)", Exim "after RCPT TO:<...>" */
	{ "rcpt to", DSN_CMD_RCPT },
	/* qmail-remote "does not like recipient." */
	{ "does not like recipient", DSN_CMD_RCPT },
	/* Postfix "(in reply to MAIL FROM command)", Exim "after MAIL FROM:<...>" */
	{ "mail from command", DSN_CMD_MAIL },
	{ "mail from:", DSN_CMD_MAIL },
	/* qmail-remote "Connected to ... but sender was rejected." */
	{ "sender was rejected", DSN_CMD_MAIL },
	/* Postfix "(in reply to DATA command)", qmail "failed on DATA command" */
	{ "data command", DSN_CMD_DATA },
	/* Exim "after DATA" */
	{ "after data", DSN_CMD_DATA },
	/* Postfix "(in reply to EHLO command)", qmail "but my name was rejected" */
	{ "ehlo command", DSN_CMD_HELO },
	{ "helo command", DSN_CMD_HELO },
	{ "after ehlo", DSN_CMD_HELO },
	{ "after helo", DSN_CMD_HELO },
	{ "my name was rejected", DSN_CMD_HELO },
	/* Postfix "refused to talk to me", qmail "but greeting failed",
	 * Exim "after initial connection" */
	{ "refused to talk to me", DSN_CMD_CONNECT },
	{ "greeting failed", DSN_CMD_CONNECT },
	{ "initial connection", DSN_CMD_CONNECT },
	{ "initial greeting", DSN_CMD_CONNECT },
};

static enum dsn_command
transcript_cmd(struct slice c)
{
	c = trim(c);
	if (starts_ci(c.p, c.n, "rcpt"))
		return DSN_CMD_RCPT;
	if (starts_ci(c.p, c.n, "mail"))
		return DSN_CMD_MAIL;
	if (starts_ci(c.p, c.n, "data"))
		return DSN_CMD_DATA;
	if (starts_ci(c.p, c.n, "ehlo") || starts_ci(c.p, c.n, "helo"))
		return DSN_CMD_HELO;
	if (c.n == 1 && c.p[0] == '.')
		return DSN_CMD_DOT;
	return DSN_CMD_UNKNOWN;
}

static bool
failure_reply(struct slice l)
{
	l = trim(l);
	return l.n > 4 && memcmp(l.p, "<<< ", 4) == 0 &&
	    (l.p[4] == '4' || l.p[4] == '5');
}

/*
 * sendmail's transcript: ">>> RCPT To:<addr>" answered by "<<< 550 ...".
 * With an address, the command naming it whose reply failed; without, the
 * last command before the first failed reply.
 */
static enum dsn_command
transcript(struct slice t, const char *addr)
{
	struct slice l, last = { NULL, 0 };
	size_t pos = 0;
	bool named = false;

	while (next_line(t.p, t.n, &pos, &l)) {
		struct slice tl = trim(l);

		if (tl.n >= 4 && memcmp(tl.p, ">>> ", 4) == 0) {
			last.p = tl.p + 4;
			last.n = tl.n - 4;
			named = addr != NULL && find_ci(tl.p, tl.n, addr) != NULL;
		} else if (failure_reply(l)) {
			if (addr == NULL && last.p == NULL)
				return DSN_CMD_CONNECT;
			if (addr == NULL || named)
				return transcript_cmd(last);
		}
	}
	return DSN_CMD_UNKNOWN;
}

/* The command a text says the reply answered: the earliest phrase wins. */
static enum dsn_command
command_in(struct slice t, const char *addr)
{
	enum dsn_command cmd = DSN_CMD_UNKNOWN;
	const char *best = NULL, *m;
	size_t i;

	if (find_ci(t.p, t.n, ">>> ") != NULL &&
	    (cmd = transcript(t, addr)) != DSN_CMD_UNKNOWN)
		return cmd;
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if ((m = find_ci(t.p, t.n, commands[i].phrase)) != NULL &&
		    (best == NULL || m < best)) {
			best = m;
			cmd = commands[i].cmd;
		}
	return cmd;
}

/* ---------------------------------------------------------- remote MTA */

static bool
host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
	    c == '.' || c == '-' || c == '_' || c == ':';
}

/* "host mx.example[192.0.2.1] said", "Giving up on 192.0.2.1.", ... */
static void
remote_mta_in(struct slice b, char *out, size_t size)
{
	static const char *lead[] = { "host ", "giving up on ", "while talking to ",
	    "connected to ", "remote host " };
	const char *m, *p, *end = b.p + b.n;
	size_t i, n;

	for (i = 0; i < sizeof(lead) / sizeof(lead[0]); i++) {
		for (p = b.p; (m = find_ci(p, (size_t)(end - p), lead[i])) != NULL;
		    p = m + 1)
			if (m == b.p || m[-1] == ' ' || m[-1] == '\n' || m[-1] == '\t')
				break;
		if (m == NULL)
			continue;
		m += strlen(lead[i]);
		for (n = 0; m + n < end && host_char(m[n]); n++)
			;
		while (n > 0 && (m[n - 1] == '.' || m[n - 1] == ':'))
			n--;
		if (n > 0 && memchr(m, '.', n) != NULL) {
			put_clean(out, size, m, n);
			return;
		}
	}
}

/* ------------------------------------------------------ delivery-status */

struct ds {
	struct dsn *d;
	struct dsn_rcpt cur;
	bool in_rcpt;
	char name[NAME_MAX_];
	char value[FIELD_MAX];
	size_t vlen;
	bool open;		/* a field is being read */
	size_t line;		/* line number, from 1 */
	size_t badline;		/* the first line that is no field, or 0 */
	bool oom;
};

static int
add_rcpt(struct dsn *d, const struct dsn_rcpt *r)
{
	struct dsn_rcpt *n;
	size_t cap;

	if (d->nrcpt == DSN_RCPT_MAX) {
		d->truncated = true;
		return 0;
	}
	/* Room for 4, then doubled whenever full: at 4, 8, 16, ... */
	if (d->nrcpt == 0 || (d->nrcpt >= 4 && (d->nrcpt & (d->nrcpt - 1)) == 0)) {
		cap = d->nrcpt ? d->nrcpt * 2 : 4;
		if ((n = realloc(d->rcpt, cap * sizeof(*n))) == NULL)
			return -1;
		d->rcpt = n;
	}
	d->rcpt[d->nrcpt++] = *r;
	return 0;
}

static void
ds_commit(struct ds *s)
{
	struct dsn_rcpt *r = &s->cur;

	if (s->in_rcpt && (r->final_rcpt[0] || r->orig_rcpt[0] ||
	    r->action != DSN_ACTION_NONE || r->status[0] || r->diag_text[0]))
		if (add_rcpt(s->d, r) == -1)
			s->oom = true;
	memset(r, 0, sizeof(*r));
	s->in_rcpt = false;
}

static enum dsn_action
action_of(struct slice v)
{
	static const struct {
		const char *word;
		enum dsn_action a;
	} actions[] = {
		{ "failed", DSN_ACTION_FAILED },
		{ "delayed", DSN_ACTION_DELAYED },
		{ "delivered", DSN_ACTION_DELIVERED },
		{ "relayed", DSN_ACTION_RELAYED },
		{ "expanded", DSN_ACTION_EXPANDED },
	};
	size_t i, n;

	for (n = 0; n < v.n && !is_space(v.p[n]) && v.p[n] != '('; n++)
		;
	for (i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
		if (n == strlen(actions[i].word) &&
		    strncasecmp(v.p, actions[i].word, n) == 0)
			return actions[i].a;
	return DSN_ACTION_NONE;
}

/* A recipient field: starts a recipient when none is open or it repeats. */
static struct dsn_rcpt *
ds_rcpt(struct ds *s, bool repeats)
{
	if (s->in_rcpt && repeats)
		ds_commit(s);
	s->in_rcpt = true;
	return &s->cur;
}

static void
ds_field(struct ds *s)
{
	struct slice v = trim((struct slice){ s->value, s->vlen });
	struct slice type, val;
	struct dsn *d = s->d;
	struct dsn_rcpt *r;
	const char *n = s->name;

	s->open = false;
	split_type(v, &type, &val);
	if (strcasecmp(n, "Original-Envelope-Id") == 0)
		put_clean(d->envid, sizeof(d->envid), v.p, v.n);
	else if (strcasecmp(n, "Reporting-MTA") == 0)
		put_clean(d->reporting_mta, sizeof(d->reporting_mta), val.p, val.n);
	else if (strcasecmp(n, "X-Postfix-Sender") == 0 && d->orig_sender[0] == '\0')
		put_addr(d->orig_sender, sizeof(d->orig_sender), val);
	else if (strcasecmp(n, "Final-Recipient") == 0) {
		r = ds_rcpt(s, s->cur.final_rcpt[0] != '\0');
		put_addr(r->final_rcpt, sizeof(r->final_rcpt), val);
	} else if (strcasecmp(n, "Original-Recipient") == 0) {
		r = ds_rcpt(s, s->cur.orig_rcpt[0] != '\0');
		put_addr(r->orig_rcpt, sizeof(r->orig_rcpt), val);
	} else if (strcasecmp(n, "Action") == 0) {
		r = ds_rcpt(s, s->cur.action != DSN_ACTION_NONE);
		r->action = action_of(v);
	} else if (strcasecmp(n, "Status") == 0) {
		r = ds_rcpt(s, s->cur.status[0] != '\0');
		put_status(r->status, v.p, v.n);
	} else if (strcasecmp(n, "Remote-MTA") == 0) {
		r = ds_rcpt(s, false);
		put_clean(r->remote_mta, sizeof(r->remote_mta), val.p, val.n);
	} else if (strcasecmp(n, "Diagnostic-Code") == 0) {
		r = ds_rcpt(s, false);
		put_lower(r->diag_type, sizeof(r->diag_type), type.p, type.n);
		put_clean(r->diag_text, sizeof(r->diag_text), val.p, val.n);
		diag_reply(r);
	}
	/* Others (Arrival-Date, Last-Attempt-Date, X-...) are not needed. */
}

/* "Name:" at the start of a line: printable ASCII without blanks (RFC 5322 ftext). */
static bool
field_name(struct slice l, struct slice *name, struct slice *rest)
{
	size_t i;

	for (i = 0; i < l.n && l.p[i] != ':'; i++)
		if ((unsigned char)l.p[i] <= ' ' || (unsigned char)l.p[i] >= 0x7f)
			return false;
	if (i == 0 || i == l.n || i >= NAME_MAX_)
		return false;
	name->p = l.p;
	name->n = i;
	rest->p = l.p + i + 1;
	rest->n = l.n - i - 1;
	return true;
}

static void
ds_append(struct ds *s, const char *p, size_t n)
{
	if (s->vlen > 0 && s->vlen + 1 < sizeof(s->value))
		s->value[s->vlen++] = ' ';
	if (n > sizeof(s->value) - 1 - s->vlen)
		n = sizeof(s->value) - 1 - s->vlen;	/* a field past FIELD_MAX is cut */
	memcpy(s->value + s->vlen, p, n);
	s->vlen += n;
}

static void
ds_line(struct ds *s, struct slice l)
{
	struct slice name, rest;

	s->line++;
	if (blank(l)) {
		if (s->open)
			ds_field(s);
		ds_commit(s);
		return;
	}
	if ((l.p[0] == ' ' || l.p[0] == '\t') && s->open) {
		ds_append(s, l.p, l.n);
		return;
	}
	if (s->open)
		ds_field(s);
	if (!field_name(l, &name, &rest)) {
		if (s->badline == 0)
			s->badline = s->line;
		return;
	}
	memcpy(s->name, name.p, name.n);
	s->name[name.n] = '\0';
	s->vlen = 0;
	s->open = true;
	ds_append(s, rest.p, rest.n);
}

/* Reads fields from p[0..n) into d; returns the first line that was no field. */
static int
ds_parse(const char *p, size_t n, struct dsn *d, size_t *badline)
{
	struct ds *s;
	struct slice l;
	size_t pos = 0;
	int rc;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return -1;
	s->d = d;
	if (n > DS_MAX)
		n = DS_MAX;
	while (next_line(p, n, &pos, &l))
		ds_line(s, l);
	if (s->open)
		ds_field(s);
	ds_commit(s);
	*badline = s->badline;
	rc = s->oom ? -1 : 0;
	free(s);
	return rc;
}

/* ---------------------------------------------- the human-readable text */

/* The text up to the copy of the original message. */
static struct slice
report_region(const char *text, size_t len, size_t *copy_at)
{
	static const struct {
		const char *text;
		bool ruled;	/* only on a "----- ... -----" line */
	} markers[] = {
		{ "below this line is a copy of the message", false },	/* qmail-send */
		{ "below the next line is a copy of the message", false },
		{ "this is a copy of the message", false },	/* Exim */
		{ "this is a copy of the headers", false },	/* Exim, headers only */
		{ "original message follows", false },		/* sendmail */
		{ "unsent message follows", false },		/* sendmail */
		{ "message header follows", false },
		/* Japanese notices: words that prose uses too, so ruled only. */
		{ "元のメッセージ", true },
		{ "元のメール", true },
		{ "送信されたメール", true },
	};
	struct slice r = { text, len < SCAN_MAX ? len : SCAN_MAX }, l, t;
	size_t pos = 0, at, i;

	*copy_at = len;
	while (at = pos, next_line(r.p, r.n, &pos, &l))
		for (i = 0; i < sizeof(markers) / sizeof(markers[0]); i++)
			if (find_ci(l.p, l.n, markers[i].text) != NULL &&
			    (!markers[i].ruled || ((t = trim(l)).n > 0 &&
			    (t.p[0] == '-' || t.p[0] == '=')))) {
				r.n = at;
				*copy_at = pos;
				return r;
			}
	return r;
}

/*
 * The paragraph about addr: from the line where the address first
 * appears to the next blank line (at most BLOCK_LINES lines).
 */
static bool
paragraph_of(struct slice r, const char *addr, struct slice *out)
{
	const char *m = find_ci(r.p, r.n, addr), *ls;
	struct slice l;
	size_t pos, k = 0;

	if (m == NULL || *addr == '\0')
		return false;
	for (ls = m; ls > r.p && ls[-1] != '\n'; ls--)
		;
	pos = (size_t)(ls - r.p);
	out->p = ls;
	while (k++ < BLOCK_LINES && next_line(r.p, r.n, &pos, &l) && !blank(l))
		out->n = (size_t)(l.p + l.n - ls);
	return true;
}

/* Fills in what the delivery-status fields left out, from the text. */
static void
enrich(struct dsn_rcpt *rc, struct slice region, size_t nrcpt)
{
	const char *addr = rc->final_rcpt[0] ? rc->final_rcpt : rc->orig_rcpt;
	struct slice para = { NULL, 0 };
	bool have = paragraph_of(region, addr, &para);

	if (rc->command == DSN_CMD_UNKNOWN)
		rc->command = command_in((struct slice){ rc->diag_text,
		    strlen(rc->diag_text) }, NULL);
	if (rc->command == DSN_CMD_UNKNOWN && have)
		rc->command = command_in(para, NULL);
	if (rc->command == DSN_CMD_UNKNOWN && *addr != '\0' &&
	    find_ci(region.p, region.n, ">>> ") != NULL)
		rc->command = transcript(region, addr);
	/* One recipient: the whole report is about it. */
	if (rc->command == DSN_CMD_UNKNOWN && nrcpt == 1)
		rc->command = command_in(region, NULL);
	if (rc->diag_text[0] == '\0' && have &&
	    block_reply(para, rc->diag_text, sizeof(rc->diag_text))) {
		snprintf(rc->diag_type, sizeof(rc->diag_type), "smtp");
		diag_reply(rc);
	}
}

/* ------------------------------------------------------------ fallback */

static bool
atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit((char)c) ||
	    (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~.", c) != NULL);
}

/*
 * The first address in s: a local part (dot-atom, the carriers' legacy
 * dots, or quoted) '@' a domain. Set to the canonical form when
 * addr_parse takes it.
 */
static bool
find_addr(const char *s, size_t n, char *out, size_t size, const char **endp)
{
	size_t at, b, e;
	const char *q;

	for (q = s; (q = memchr(q, '@', n - (size_t)(q - s))) != NULL; q++) {
		at = (size_t)(q - s);
		b = at;
		/* Bounded scans: no address part is longer than address.h allows. */
		if (b >= 2 && s[b - 1] == '"') {
			for (b -= 2; b > 0 && s[b] != '"' && at - b <= ADDR_LOCAL_MAX * 2; b--)
				;
			if (s[b] != '"')
				continue;
		} else
			while (b > 0 && atext((unsigned char)s[b - 1]) &&
			    at - b <= ADDR_LOCAL_MAX * 2)
				b--;
		for (e = at + 1; e < n && host_char(s[e]) && s[e] != ':' && s[e] != '_' &&
		    e - at <= ADDR_DOMAIN_MAX + 1; e++)
			;
		while (e > at + 1 && s[e - 1] == '.')
			e--;
		if (b < at && e > at + 1 &&
		    put_canonical(out, size, (struct slice){ s + b, e - b })) {
			if (endp)
				*endp = s + e;
			return true;
		}
	}
	return false;
}

/* Whether the mail is a bounce at all: its sender, subject or sentences. */
static bool
looks_like_bounce(const struct mime_msg *m, struct slice region)
{
	static const char *senders[] = { "mailer-daemon", "postmaster", "mail delivery",
	    "mail-daemon" };
	static const char *subjects[] = { "undeliver", "failure notice", "returned mail",
	    "delivery fail", "mail delivery", "delivery status notification",
	    "non-delivery", "mail system error", "could not be delivered",
	    "delivery problem", "not delivered", "配信", "不達", "エラー",
	    "届きません", "送信できません", "返送" };
	static const char *sentences[] = { "qmail-send program", "wasn't able to deliver",
	    "created automatically by mail delivery software",
	    "could not be delivered", "following addresses had",
	    "address(es) failed", "undeliverable", "delivery has failed",
	    "this is the mail system at host", "not be delivered",
	    "delivery to the following recipient", "returned mail",
	    "配信できません", "配送できません", "届きませんでした",
	    "送信できませんでした", "届けることができません" };
	const char *from = mime_header(m, "From"), *subj = m->subject;
	size_t i;

	if (mime_header(m, "X-Failed-Recipients") != NULL)
		return true;
	for (i = 0; from && i < sizeof(senders) / sizeof(senders[0]); i++)
		if (find_ci(from, strlen(from), senders[i]) != NULL)
			return true;
	for (i = 0; subj && i < sizeof(subjects) / sizeof(subjects[0]); i++)
		if (find_ci(subj, strlen(subj), subjects[i]) != NULL)
			return true;
	for (i = 0; i < sizeof(sentences) / sizeof(sentences[0]); i++)
		if (find_ci(region.p, region.n, sentences[i]) != NULL)
			return true;
	return false;
}

struct fb {
	struct dsn *d;
	struct slice region;
	bool oom;
};

static bool
have_rcpt(const struct dsn *d, const char *addr)
{
	size_t i;

	for (i = 0; i < d->nrcpt; i++)
		if (strcasecmp(d->rcpt[i].final_rcpt, addr) == 0)
			return true;
	return false;
}

/* One recipient found in the text, with the lines that are about it. */
static void
fb_add(struct fb *f, const char *addr, struct slice block)
{
	struct dsn_rcpt r;
	const char *st;
	size_t sl;

	if (*addr == '\0' || have_rcpt(f->d, addr))
		return;
	memset(&r, 0, sizeof(r));
	snprintf(r.final_rcpt, sizeof(r.final_rcpt), "%s", addr);
	if (block_reply(block, r.diag_text, sizeof(r.diag_text))) {
		snprintf(r.diag_type, sizeof(r.diag_type), "smtp");
		diag_reply(&r);
	} else
		put_clean(r.diag_text, sizeof(r.diag_text), block.p, block.n);
	if (r.diag_status[0] != '\0')
		snprintf(r.status, sizeof(r.status), "%s", r.diag_status);
	else if ((st = find_status(block.p, block.n, &sl)) != NULL)
		put_status(r.status, st, sl);
	r.command = command_in(block, NULL);
	if (r.command == DSN_CMD_UNKNOWN && find_ci(f->region.p, f->region.n, ">>> "))
		r.command = transcript(f->region, addr);
	remote_mta_in(block, r.remote_mta, sizeof(r.remote_mta));
	if (add_rcpt(f->d, &r) == -1)
		f->oom = true;
}

/* Lines after line l's end that continue it: until a blank line or stop(). */
static struct slice
fb_block(struct fb *f, struct slice first, size_t *pos,
    bool (*more)(struct slice line, size_t ind0), size_t ind0)
{
	struct slice b = first, l;
	size_t save, k = 0;

	while (save = *pos, k++ < BLOCK_LINES &&
	    next_line(f->region.p, f->region.n, pos, &l)) {
		if (blank(l) || !more(l, ind0)) {
			*pos = save;
			break;
		}
		b.n = (size_t)(l.p + l.n - b.p);
	}
	return b;
}

static bool
more_any(struct slice l, size_t ind0)
{
	(void)l;
	(void)ind0;
	return true;
}

static bool
more_indented(struct slice l, size_t ind0)
{
	return indent_of(l) > ind0;
}

/* A line that is an address and nothing else ("<a@b>", "a@b"). */
static bool
addr_line(struct slice l, char *out, size_t size)
{
	struct slice t = trim(l);
	const char *e;

	if (t.n == 0 || !find_addr(t.p, t.n, out, size, &e))
		return false;
	if (e < t.p + t.n && *e == '>')
		e++;
	while (e < t.p + t.n && (*e == ' ' || *e == ':' || *e == ','))
		e++;
	return e == t.p + t.n || *e == '(';
}

/* qmail, Postfix without DSN, au EZweb: "<addr>:" opening a paragraph. */
static void
fb_angle(struct fb *f)
{
	struct slice l, t, b, rest;
	size_t pos = 0;
	const char *gt;
	char addr[DSN_ADDR_MAX];

	while (next_line(f->region.p, f->region.n, &pos, &l)) {
		t = trim(l);
		if (t.n < 5 || t.p[0] != '<' || (gt = memchr(t.p, '>', t.n)) == NULL ||
		    gt + 1 >= t.p + t.n || gt[1] != ':' ||
		    !find_addr(t.p + 1, (size_t)(gt - t.p - 1), addr, sizeof(addr), NULL))
			continue;
		/* The paragraph after "<addr>:", which says nothing itself. */
		rest.p = gt + 2;
		rest.n = (size_t)(l.p + l.n - rest.p);
		b = fb_block(f, rest, &pos, more_any, 0);
		fb_add(f, addr, b);
	}
}

/* sendmail: "----- The following addresses had permanent fatal errors -----". */
static void
fb_sendmail(struct fb *f)
{
	struct slice l, b = { NULL, 0 };
	size_t pos = 0;
	bool in = false;
	char addr[DSN_ADDR_MAX] = "", a[DSN_ADDR_MAX];

	while (next_line(f->region.p, f->region.n, &pos, &l)) {
		if (find_ci(l.p, l.n, "following addresses had") != NULL) {
			in = true;
			continue;
		}
		if (!in)
			continue;
		if (blank(l) || addr_line(l, a, sizeof(a))) {
			if (addr[0] != '\0')
				fb_add(f, addr, b);
			addr[0] = '\0';
			if (blank(l)) {
				in = false;
				continue;
			}
			memcpy(addr, a, sizeof(addr));
			b = l;
		} else if (addr[0] != '\0')
			b.n = (size_t)(l.p + l.n - b.p);
	}
	if (in && addr[0] != '\0')
		fb_add(f, addr, b);
}

/* Exim: "The following address(es) failed:", then indented blocks. */
static void
fb_exim(struct fb *f)
{
	struct slice l, b;
	size_t pos = 0, ind;
	bool in = false;
	char a[DSN_ADDR_MAX];

	while (next_line(f->region.p, f->region.n, &pos, &l)) {
		if (find_ci(l.p, l.n, "address(es) failed") != NULL ||
		    find_ci(l.p, l.n, "address(es) deferred") != NULL ||
		    find_ci(l.p, l.n, "following address(es)") != NULL) {
			in = true;
			continue;
		}
		if (!in || blank(l))
			continue;
		if ((ind = indent_of(l)) == 0) {
			in = false;
			continue;
		}
		if (!addr_line(l, a, sizeof(a)))
			continue;
		b = fb_block(f, l, &pos, more_indented, ind);
		fb_add(f, a, b);
	}
}

/* Japanese notices: "宛先：<addr>" and the lines under it; also "Recipient: <addr>". */
static void
fb_labels(struct fb *f)
{
	static const char *labels[] = { "宛先", "宛て先", "あて先", "送信先", "受信者",
	    "受取人", "recipient" };
	struct slice l, t, b;
	size_t pos = 0, i, k;
	char a[DSN_ADDR_MAX];

	while (next_line(f->region.p, f->region.n, &pos, &l)) {
		t = trim(l);
		for (i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
			if (starts_ci(t.p, t.n, labels[i]))
				break;
		if (i == sizeof(labels) / sizeof(labels[0]))
			continue;
		k = strlen(labels[i]);
		while (k < t.n && (t.p[k] == ' ' || t.p[k] == '\t'))
			k++;
		if (k + 3 <= t.n && memcmp(t.p + k, "\xef\xbc\x9a", 3) == 0)	/* '：' */
			k += 3;
		else if (k < t.n && t.p[k] == ':')
			k++;
		else
			continue;
		if (!find_addr(t.p + k, t.n - k, a, sizeof(a), NULL))
			continue;
		b = fb_block(f, l, &pos, more_any, 0);
		fb_add(f, a, b);
	}
}

/* Last resort: a line with an address and, after it, a reply code. */
static void
fb_generic(struct fb *f)
{
	struct slice l, b;
	size_t pos = 0;
	const char *e;
	char a[DSN_ADDR_MAX];

	while (next_line(f->region.p, f->region.n, &pos, &l)) {
		if (!find_addr(l.p, l.n, a, sizeof(a), &e) ||
		    find_code(e, (size_t)(l.p + l.n - e)) == NULL)
			continue;
		b = fb_block(f, l, &pos, more_indented, indent_of(l));
		fb_add(f, a, b);
	}
}

/* Exim's X-Failed-Recipients: addresses, with the region as their text. */
static void
fb_header(struct fb *f, const char *v)
{
	const char *p = v, *e;
	char a[DSN_ADDR_MAX];

	while (p != NULL && *p != '\0' && find_addr(p, strlen(p), a, sizeof(a), &e)) {
		fb_add(f, a, f->region);
		p = e;
	}
}

static enum dsn_action
fb_action(const struct dsn_rcpt *r, struct slice region)
{
	static const char *later[] = { "warning", "delayed", "transient",
	    "will be retried", "still trying", "not yet been delivered",
	    "will continue" };
	size_t i;
	char c = r->code ? (char)('0' + r->code / 100) : r->status[0];

	if (c == '4')
		return DSN_ACTION_DELAYED;
	if (c == '5' || find_ci(region.p, region.n, "permanent") != NULL)
		return DSN_ACTION_FAILED;
	for (i = 0; i < sizeof(later) / sizeof(later[0]); i++)
		if (find_ci(region.p, region.n, later[i]) != NULL)
			return DSN_ACTION_DELAYED;
	return DSN_ACTION_FAILED;
}

static int
fallback(const struct mime_msg *m, struct dsn *d, struct slice region, char *err,
    size_t errlen)
{
	struct fb f = { d, region, false };
	size_t bad, i;
	const char *xf;

	d->fallback = true;
	/* DSN fields pasted into the text. */
	if (find_ci(region.p, region.n, "final-recipient:") != NULL ||
	    find_ci(region.p, region.n, "original-recipient:") != NULL) {
		if (ds_parse(region.p, region.n, d, &bad) == -1)
			goto oom;
		for (i = 0; i < d->nrcpt; i++)
			enrich(&d->rcpt[i], region, d->nrcpt);
	}
	if (d->nrcpt == 0) {
		fb_angle(&f);
		fb_sendmail(&f);
		fb_exim(&f);
		fb_labels(&f);
	}
	if (d->nrcpt == 0)
		fb_generic(&f);
	if (d->nrcpt == 0 && (xf = mime_header(m, "X-Failed-Recipients")) != NULL)
		fb_header(&f, xf);
	if (f.oom)
		goto oom;
	for (i = 0; i < d->nrcpt; i++)
		if (d->rcpt[i].action == DSN_ACTION_NONE)
			d->rcpt[i].action = fb_action(&d->rcpt[i], region);
	/* One recipient: the whole report is about it. */
	if (d->nrcpt == 1 && d->rcpt[0].command == DSN_CMD_UNKNOWN)
		d->rcpt[0].command = command_in(region, NULL);
	if (d->nrcpt == 1 && d->rcpt[0].remote_mta[0] == '\0')
		remote_mta_in(region, d->rcpt[0].remote_mta, sizeof(d->rcpt[0].remote_mta));
	if (d->nrcpt == 0) {
		snprintf(err, errlen, "not a bounce: no recipient found in its text");
		return -1;
	}
	return 0;
oom:
	snprintf(err, errlen, "out of memory reading the bounce");
	return -1;
}

/* ------------------------------------------- the bounced message's ids */

/* The value of header name in the header block at p (up to its blank line). */
static bool
header_in(const char *p, size_t n, const char *name, char *out, size_t size)
{
	struct slice l, nm, rest;
	size_t pos = 0, k = 0;
	char val[1024];
	bool found = false;

	val[0] = '\0';
	while (next_line(p, n, &pos, &l) && !blank(l) && k++ < 1000) {
		if (l.p[0] == ' ' || l.p[0] == '\t') {
			if (found)
				snprintf(val + strlen(val), sizeof(val) - strlen(val),
				    " %.*s", (int)(l.n < 512 ? l.n : 512), l.p);
			continue;
		}
		if (found)
			break;
		if (field_name(l, &nm, &rest) && nm.n == strlen(name) &&
		    strncasecmp(nm.p, name, nm.n) == 0) {
			found = true;
			snprintf(val, sizeof(val), "%.*s", (int)(rest.n < 1000 ? rest.n : 1000),
			    rest.p);
		}
	}
	if (found)
		put_clean(out, size, val, strlen(val));
	return found;
}

/* "<id@host>" -> "id@host"; the last one when last, else the first. */
static void
put_msgid(char *dst, size_t size, const char *v, bool last)
{
	const char *lt = last ? strrchr(v, '<') : strchr(v, '<'), *gt;

	if (lt != NULL && (gt = strchr(lt, '>')) != NULL)
		put_clean(dst, size, lt + 1, (size_t)(gt - lt - 1));
	else if (!last)
		put_clean(dst, size, v, strcspn(v, " "));
}

static void
ids_from(struct dsn *d, const char *p, size_t n)
{
	char v[DSN_ID_MAX * 2];

	while (n > 0 && (*p == '\n' || *p == '\r' || *p == ' ' || *p == '\t'))
		p++, n--;
	if (d->message_id[0] == '\0' && header_in(p, n, "Message-ID", v, sizeof(v)))
		put_msgid(d->message_id, sizeof(d->message_id), v, false);
	if (d->orig_sender[0] == '\0' && header_in(p, n, "Return-Path", v, sizeof(v)))
		put_addr(d->orig_sender, sizeof(d->orig_sender),
		    (struct slice){ v, strlen(v) });
	/* "<>" is no sender: keep nothing. */
	if (strcmp(d->orig_sender, "<>") == 0)
		d->orig_sender[0] = '\0';
}

static void
find_ids(const struct mime_msg *m, struct dsn *d, const char *text, size_t copy_at,
    size_t text_len)
{
	const struct mime_part *a;
	const char *refs;
	size_t i;

	for (i = 0; i < m->nattach; i++) {
		a = &m->attachments[i];
		if (strcmp(a->content_type, "message/rfc822") == 0 ||
		    strcmp(a->content_type, "message/global") == 0 ||
		    strcmp(a->content_type, "text/rfc822-headers") == 0 ||
		    strcmp(a->content_type, "message/global-headers") == 0 ||
		    strcmp(a->content_type, "message/rfc822-headers") == 0)
			ids_from(d, a->data, a->len);
	}
	if (text != NULL && copy_at < text_len)
		ids_from(d, text + copy_at, text_len - copy_at);
	if (d->message_id[0] == '\0' && (refs = mime_header(m, "References")) != NULL)
		put_msgid(d->message_id, sizeof(d->message_id), refs, true);
}

/* -------------------------------------------------------------- public */

static const struct mime_part *
status_part(const struct mime_msg *m)
{
	size_t i;

	for (i = 0; i < m->nattach; i++)
		if (strcmp(m->attachments[i].content_type, "message/delivery-status") == 0 ||
		    strcmp(m->attachments[i].content_type,
		    "message/global-delivery-status") == 0)
			return &m->attachments[i];
	return NULL;
}

static int
parse_msg(const struct mime_msg *m, struct dsn *d, char *err, size_t errlen)
{
	const struct mime_part *ds = status_part(m);
	const char *text = m->text ? m->text : "";
	size_t tlen = m->text ? m->text_len : 0, copy_at, bad = 0, i;
	struct slice region = report_region(text, tlen, &copy_at);
	char dserr[128] = "";

	if (ds != NULL) {
		if (ds_parse(ds->data, ds->len, d, &bad) == -1) {
			snprintf(err, errlen, "out of memory reading the bounce");
			return -1;
		}
		if (d->nrcpt == 0)
			snprintf(dserr, sizeof(dserr), bad ?
			    "delivery-status line %zu: not a field, and no recipient group" :
			    "delivery-status part has no recipient group", bad);
		for (i = 0; i < d->nrcpt; i++)
			enrich(&d->rcpt[i], region, d->nrcpt);
	}
	if (d->nrcpt == 0) {
		if (ds == NULL && !looks_like_bounce(m, region)) {
			snprintf(err, errlen, "not a bounce: no delivery-status part, "
			    "and neither its sender, subject nor text is a bounce's");
			return -1;
		}
		if (fallback(m, d, region, err, errlen) == -1) {
			if (dserr[0] != '\0')
				snprintf(err, errlen, "not a bounce: %s", dserr);
			return -1;
		}
	}
	find_ids(m, d, text, copy_at, tlen);
	return 0;
}

int
dsn_parse(const char *data, size_t len, struct dsn *out, char *err, size_t errlen)
{
	struct mime_msg m;
	char merr[200];
	int rc;

	memset(out, 0, sizeof(*out));
	mime_init();
	if (len == 0) {
		snprintf(err, errlen, "empty message");
		return -1;
	}
	if (len > DSN_INPUT_MAX) {
		snprintf(err, errlen, "bounce of %zu octets is over the %u limit",
		    len, DSN_INPUT_MAX);
		return -1;
	}
	if (mime_parse(data, len, &m, merr, sizeof(merr)) == -1) {
		snprintf(err, errlen, "not a bounce: %s", merr);
		return -1;
	}
	rc = parse_msg(&m, out, err, errlen);
	mime_msg_free(&m);
	if (rc == -1)
		dsn_free(out);
	return rc;
}

const char *
dsn_rcpt_status(const struct dsn_rcpt *r)
{
	if (r->diag_status[0] != '\0' &&
	    (r->status[0] == '\0' || (r->status[0] == r->diag_status[0] &&
	    strcmp(r->status + 1, ".0.0") == 0)))
		return r->diag_status;
	return r->status;
}

const char *
dsn_action_name(enum dsn_action a)
{
	switch (a) {
	case DSN_ACTION_FAILED:
		return "failed";
	case DSN_ACTION_DELAYED:
		return "delayed";
	case DSN_ACTION_DELIVERED:
		return "delivered";
	case DSN_ACTION_RELAYED:
		return "relayed";
	case DSN_ACTION_EXPANDED:
		return "expanded";
	case DSN_ACTION_NONE:
		break;
	}
	return "none";
}

void
dsn_free(struct dsn *d)
{
	free(d->rcpt);
	memset(d, 0, sizeof(*d));
}
