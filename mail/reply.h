#ifndef HATO_MAIL_REPLY_H
#define HATO_MAIL_REPLY_H
/*
 * reply: the SMTP/LMTP reply codec. Lines go in one at a time, without
 * their CRLF, and come out as one reply: its code, its RFC 3463 enhanced
 * status code, its text, and (for EHLO) its lines one by one.
 *
 *	struct reply r;
 *	reply_init(&r);
 *	while (read a line)
 *		switch (reply_feed(&r, line, len)) {
 *		case REPLY_MORE: continue;
 *		case REPLY_DONE: use r.code, r.status, r.text; break;
 *		case REPLY_MALFORMED: give up, r.error says why; break;
 *		}
 *
 * A reply lives in fixed storage: a hostile server cannot make it grow past
 * REPLY_LINES_MAX lines, REPLY_LINE_MAX octets a line or REPLY_TEXT_MAX
 * octets of text; going past any of them makes the reply malformed.
 * Control characters in the text are replaced by '?', so the text is safe
 * for a log line or a database column. No I/O, no allocation.
 */
#include <stdbool.h>
#include <stddef.h>

#define REPLY_LINE_MAX	1024	/* octets in one line, code included, CRLF not */
#define REPLY_LINES_MAX	64	/* lines in one reply */
#define REPLY_TEXT_MAX	8192	/* octets of joined text, NUL included */
#define REPLY_STATUS_MAX 16	/* "x.yyy.zzz" and its NUL fit */

enum reply_result {
	REPLY_MORE,		/* a continuation line: feed the next one */
	REPLY_DONE,		/* the last line came: the reply is complete */
	REPLY_MALFORMED,	/* not a reply: see r->error */
};

struct reply {
	int code;		/* 100..599, valid once REPLY_DONE */
	char status[REPLY_STATUS_MAX];	/* "5.1.1", or "" when none */
	char text[REPLY_TEXT_MAX];	/* lines' texts joined by one space */
	const char *error;	/* static reason when REPLY_MALFORMED */

	/* The rest is the codec's own. */
	size_t nlines;
	size_t textlen;
	bool over;		/* the last feed ended a reply (or broke it) */
	unsigned short line_off[REPLY_LINES_MAX];	/* each line's text in text[] */
	unsigned short line_len[REPLY_LINES_MAX];
};

void reply_init(struct reply *r);

/*
 * One line, without CRLF (a trailing CR is ignored, for bare-LF servers).
 * A feed after REPLY_DONE or REPLY_MALFORMED starts a new reply.
 * Malformed: a code that is not three digits 1xx..5xx, a separator other
 * than '-' (more lines follow) or ' ' (last line; a bare code is also a last
 * line), a code differing from the first line's, or a bound exceeded.
 */
enum reply_result reply_feed(struct reply *r, const char *line, size_t len);

/*
 * The lines of a complete reply. The text of line i is what follows the
 * code and separator, without the enhanced status code when it had one; it
 * is not NUL-terminated (*len gives its length) and points into r->text.
 */
size_t reply_nlines(const struct reply *r);
const char *reply_line(const struct reply *r, size_t i, size_t *len);

/*
 * EHLO: whether the keyword kw (case-insensitive) is advertised on a line
 * after the first (the first line is the server's name). When it is, *args
 * (may be NULL) gets its parameters, after the blank or the '=' of the old
 * "AUTH=LOGIN" form, and *alen their length (0 for none).
 */
bool reply_ehlo_keyword(const struct reply *r, const char *kw, const char **args, size_t *alen);

#endif
