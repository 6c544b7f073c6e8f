/*
 * reply: the SMTP/LMTP reply codec (RFC 5321 §4.2, RFC 2034/3463 enhanced
 * status codes).
 *
 * Public: reply_init, reply_feed, reply_nlines, reply_line,
 * reply_ehlo_keyword.
 *
 * The caller owns the struct reply, usually inside its session; the codec
 * keeps no pointer to the lines it is fed and allocates nothing. Every
 * bound of reply.h is checked before anything is copied, so the worst a
 * server can do is get REPLY_MALFORMED with a reason. A malformed line
 * leaves the reply unusable (code 0); the next feed starts afresh.
 */
#include <string.h>
#include <strings.h>

#include "mail/reply.h"

_Static_assert(REPLY_TEXT_MAX <= 65535, "line offsets are unsigned short");

void
reply_init(struct reply *r)
{
	r->code = 0;
	r->status[0] = '\0';
	r->text[0] = '\0';
	r->error = NULL;
	r->nlines = 0;
	r->textlen = 0;
	r->over = false;
}

static enum reply_result
malformed(struct reply *r, const char *why)
{
	r->code = 0;
	r->error = why;
	r->over = true;
	return REPLY_MALFORMED;
}

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* 1*3DIGIT at p (at most n octets); returns how many, 0 when none or 4+. */
static size_t
digits13(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n && i < 4 && is_digit(p[i]); i++)
		;
	return i <= 3 ? i : 0;
}

/*
 * The length of an RFC 3463 status code "class.subject.detail" at the start
 * of the text, or 0. The class must be the reply's own (a "250 5.0.0" is
 * text, not a status); it must be followed by a blank or the end.
 */
static size_t
status_len(const char *t, size_t n, int code)
{
	size_t i, d;
	char class = (char)('0' + code / 100);

	if (n < 5 || t[0] != class || (class != '2' && class != '4' && class != '5') ||
	    t[1] != '.')
		return 0;
	i = 2;
	if ((d = digits13(t + i, n - i)) == 0)
		return 0;
	i += d;
	if (i >= n || t[i] != '.')
		return 0;
	i++;
	if ((d = digits13(t + i, n - i)) == 0)
		return 0;
	i += d;
	if (i < n && t[i] != ' ')
		return 0;
	return i;
}

/* Takes the status code off the front of one line's text; the first one is kept. */
static void
strip_status(struct reply *r, const char **t, size_t *n)
{
	size_t sl = status_len(*t, *n, r->code);

	if (sl == 0)
		return;
	if (r->status[0] == '\0') {
		memcpy(r->status, *t, sl);
		r->status[sl] = '\0';
	}
	*t += sl;
	*n -= sl;
	while (*n > 0 && **t == ' ') {
		(*t)++;
		(*n)--;
	}
}

/* Appends one line's text, joined by a blank, made printable. */
static bool
append_line(struct reply *r, const char *t, size_t n)
{
	size_t sep = (r->textlen > 0 && n > 0) ? 1 : 0;
	size_t i;
	char *dst;

	if (r->textlen + sep + n + 1 > REPLY_TEXT_MAX)
		return false;
	if (sep)
		r->text[r->textlen++] = ' ';
	dst = r->text + r->textlen;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)t[i];

		/* A reply ends up in logs and the database: no terminal
		 * escapes, no line breaks, no NULs. */
		if (c == '\t')
			c = ' ';
		else if (c < 0x20 || c == 0x7f)
			c = '?';
		dst[i] = (char)c;
	}
	r->line_off[r->nlines] = (unsigned short)r->textlen;
	r->line_len[r->nlines] = (unsigned short)n;
	r->nlines++;
	r->textlen += n;
	r->text[r->textlen] = '\0';
	return true;
}

enum reply_result
reply_feed(struct reply *r, const char *line, size_t len)
{
	const char *text = "";
	size_t tlen = 0;
	bool last;
	int code;

	if (r->over)
		reply_init(r);
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len > REPLY_LINE_MAX)
		return malformed(r, "reply line too long");
	if (len < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]) ||
	    (len > 3 && is_digit(line[3])))
		return malformed(r, "reply code is not three digits");
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (code < 100 || code > 599)
		return malformed(r, "reply code out of range");

	/* RFC 5321 §4.2: "250-" continues, "250 " or a bare "250" ends. */
	if (len == 3)
		last = true;
	else if (line[3] == ' ')
		last = true;
	else if (line[3] == '-')
		last = false;
	else
		return malformed(r, "bad separator after reply code");
	if (r->nlines > 0 && code != r->code)
		return malformed(r, "reply code changed between lines");
	if (r->nlines == REPLY_LINES_MAX)
		return malformed(r, "too many reply lines");
	r->code = code;

	if (len > 4) {
		text = line + 4;
		tlen = len - 4;
	}
	strip_status(r, &text, &tlen);
	if (!append_line(r, text, tlen))
		return malformed(r, "reply text too long");
	if (!last)
		return REPLY_MORE;
	r->over = true;
	return REPLY_DONE;
}

size_t
reply_nlines(const struct reply *r)
{
	return r->code ? r->nlines : 0;
}

const char *
reply_line(const struct reply *r, size_t i, size_t *len)
{
	if (i >= reply_nlines(r)) {
		*len = 0;
		return NULL;
	}
	*len = r->line_len[i];
	return r->text + r->line_off[i];
}

bool
reply_ehlo_keyword(const struct reply *r, const char *kw, const char **args, size_t *alen)
{
	size_t klen = strlen(kw);
	size_t i, n;
	const char *l;

	for (i = 1; i < reply_nlines(r); i++) {
		l = reply_line(r, i, &n);
		if (n < klen || strncasecmp(l, kw, klen) != 0)
			continue;
		if (n > klen && l[klen] != ' ' && l[klen] != '=')
			continue;	/* "SIZEX" is not "SIZE" */
		l += klen;
		n -= klen;
		while (n > 0 && (*l == ' ' || *l == '=')) {
			l++;
			n--;
		}
		if (args)
			*args = l;
		if (alen)
			*alen = n;
		return true;
	}
	return false;
}
