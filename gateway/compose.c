/*
 * compose: the outgoing message.
 *
 * compose_prepare writes once per job what every recipient shares: the
 * MIME headers of the charset, the encoded Subject, From and Reply-To
 * values, and the encoded body. compose_head then writes one recipient's
 * header block: Date, From, To, Subject, Message-ID, Reply-To, the caller's
 * extra lines, the MIME headers and the empty line. The caller owns the
 * compose_body (compose_body_free) and each head (free).
 *
 * Header values from a submission go through the charset's header encoder
 * (rfc2047 for UTF-8), which turns CR, LF and other controls into spaces;
 * addresses are checked instead, since an encoded address is no address.
 * Every line written here stays within 998 octets.
 *
 * A charset is one row of the table below: its MIME headers, its header
 * encoder and its body encoder. Only UTF-8 (base64) is there so far.
 *
 * Failure: compose_prepare returns NULL with a reason in err (an unknown
 * charset, a bad From or Reply-To address, a bad domain, no memory);
 * compose_head returns NULL when the recipient or the extra lines could
 * break the header, when no random Message-ID can be drawn, or without
 * memory.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "gateway/compose.h"
#include "mail/rfc2047.h"

#define LINE_SOFT 78
#define LINE_HARD 998
#define B64_LINE 76		/* RFC 2045 6.8: at most 76 characters a line */
#define B64_CHUNK (B64_LINE / 4 * 3)
#define ADDR_LEN_MAX 512	/* generous: a quoted local part may be escaped */
#define DISPLAY_MAX 256		/* quoted and escaped, still far within a line */
#define STR(x) #x
#define XSTR(x) STR(x)
#define DOMAIN_MAX 253

struct compose_charset {
	const char *name;	/* as configured, matched case-insensitively */
	const char *mime_headers;
	char *(*header)(const char *utf8, size_t name_len);
	char *(*body)(const char *text, size_t len, size_t *outlen);
};

static char *body_base64(const char *text, size_t len, size_t *outlen);

static const struct compose_charset charsets[] = {
	{ "utf-8",
	  "MIME-Version: 1.0\r\n"
	  "Content-Type: text/plain; charset=UTF-8\r\n"
	  "Content-Transfer-Encoding: base64\r\n",
	  rfc2047_encode, body_base64 },
};

static void seterr(char *, size_t, const char *, ...) __attribute__((format(printf, 3, 4)));

static void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static const struct compose_charset *
charset_find(const char *name)
{
	for (size_t i = 0; i < sizeof(charsets) / sizeof(charsets[0]); i++)
		if (strcasecmp(charsets[i].name, name) == 0)
			return &charsets[i];
	return NULL;
}

/* The length of text once every LF, CRLF and lone CR is a CRLF. */
static size_t
crlf_len(const char *s, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n')
			i++;
		n += (s[i] == '\r' || s[i] == '\n') ? 2 : 1;
	}
	return n;
}

struct b64_out {
	unsigned char chunk[B64_CHUNK];
	size_t fill;
	char *out;
	size_t len;
};

static void
b64_flush(struct b64_out *o)
{
	if (o->fill == 0)
		return;
	/* EVP_EncodeBlock writes a NUL after the text; the CRLF covers it. */
	o->len += (size_t)EVP_EncodeBlock((unsigned char *)o->out + o->len, o->chunk, (int)o->fill);
	memcpy(o->out + o->len, "\r\n", 2);
	o->len += 2;
	o->fill = 0;
}

static void
b64_put(struct b64_out *o, unsigned char c)
{
	o->chunk[o->fill++] = c;
	if (o->fill == B64_CHUNK)
		b64_flush(o);
}

/*
 * UTF-8 text to base64 lines of 76 characters, each ending in CRLF, with
 * the line ends normalised to CRLF first (RFC 2045 6.8: text is encoded in
 * its canonical form). Counted first, so the output is one allocation and
 * the text is never copied. An empty body is one empty line, so the body
 * always ends in CRLF.
 */
static char *
body_base64(const char *text, size_t len, size_t *outlen)
{
	struct b64_out o = { .fill = 0 };
	size_t n, lines;

	if (len > SIZE_MAX / 4)
		return NULL;
	n = crlf_len(text, len);
	lines = n / B64_CHUNK + 1;
	if ((o.out = malloc(lines * (B64_LINE + 2) + 3)) == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (text[i] == '\r' && i + 1 < len && text[i + 1] == '\n')
			i++;
		if (text[i] == '\r' || text[i] == '\n') {
			b64_put(&o, '\r');
			b64_put(&o, '\n');
		} else
			b64_put(&o, (unsigned char)text[i]);
	}
	b64_flush(&o);
	if (o.len == 0) {
		memcpy(o.out, "\r\n", 2);
		o.len = 2;
	}
	o.out[o.len] = '\0';
	*outlen = o.len;
	return o.out;
}

static bool
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* RFC 5322 atext: what a display name may hold without quotes. */
static bool
is_atext(unsigned char c)
{
	return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/*
 * An address as it may stand in From or Reply-To: printable ASCII, one @
 * outside quotes with something on both sides, white space and specials
 * only inside a quoted local part ("taro.."@docomo.ne.jp). The reason or
 * NULL.
 */
static const char *
check_addr(const char *a, size_t len)
{
	size_t at = 0, nat = 0;
	bool quoted = false;

	if (len == 0)
		return "empty address";
	if (len > ADDR_LEN_MAX)
		return "address too long";
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)a[i];

		if (c < 0x20 || c >= 0x7f)
			return "control or non-ASCII character in address";
		if (quoted) {
			if (c == '\\' && i + 1 < len)
				i++;
			else if (c == '"')
				quoted = false;
			continue;
		}
		if (c == '"')
			quoted = true;
		else if (c == '@') {
			at = i;
			nat++;
		} else if (c != '.' && !is_atext(c))
			return "white space or special character in address";
	}
	if (quoted)
		return "unterminated quote in address";
	if (nat != 1 || at == 0 || at + 1 == len)
		return "address lacks local@domain";
	return NULL;
}

/* The display name with its quotes and backslash escapes removed, its
 * controls turned into spaces (so they cannot decide the quoting) and the
 * white space at its ends dropped, or NULL without memory. */
static char *
display_text(const char *s, size_t len)
{
	char *d = malloc(len + 1);
	size_t n = 0;
	bool quoted = len >= 2 && s[0] == '"' && s[len - 1] == '"';

	if (d == NULL)
		return NULL;
	if (quoted) {
		s++;
		len -= 2;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (quoted && c == '\\' && i + 1 < len)
			c = (unsigned char)s[++i];
		c = (c < 0x20 || c == 0x7f) ? ' ' : c;
		if (n > 0 || !is_wsp((char)c))
			d[n++] = (char)c;
	}
	while (n > 0 && is_wsp(d[n - 1]))
		n--;
	d[n] = '\0';
	return d;
}

/*
 * A display name as a phrase: atoms as they are; other plain ASCII as a
 * quoted string (a comma or a colon in a bare phrase would split or end the
 * address); anything else as encoded words, which are atoms themselves.
 */
static char *
encode_phrase(const struct compose_charset *cs, const char *d, size_t name_len)
{
	bool atoms = true, ascii = true;
	char *q, *r;
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)d; *p != '\0'; p++) {
		if (*p >= 0x80)
			ascii = false;
		else if (!is_wsp((char)*p) && !is_atext(*p))
			atoms = false;
	}
	if (atoms || !ascii || strstr(d, "=?") != NULL)
		return cs->header(d, name_len);
	if ((q = malloc(strlen(d) * 2 + 3)) == NULL)
		return NULL;
	q[n++] = '"';
	for (; *d != '\0'; d++) {
		if (*d == '"' || *d == '\\')
			q[n++] = '\\';
		q[n++] = *d;
	}
	q[n++] = '"';
	q[n] = '\0';
	/* Plain ASCII without "=?": the encoder only folds it, at white space,
	 * which a quoted string allows. */
	r = cs->header(q, name_len);
	free(q);
	return r;
}

/* The length of the last line of a folded value, and of the header name
 * too when the value holds a single line. */
static size_t
last_col(const char *v, size_t name_len)
{
	const char *nl = strrchr(v, '\n');

	return nl ? strlen(nl + 1) : name_len + strlen(v);
}

/* A From or Reply-To as written, cut into its parts (nothing copied). */
struct mailbox {
	const char *addr, *disp;
	size_t alen, dlen;
	bool angle;		/* the address was written in <> */
};

/*
 * Cut "addr", "<addr>" or "Display <addr>" (white space around ignored);
 * the address is the text inside the last "<" of a value ending in ">".
 * Returns the reason it cannot be used, or NULL.
 */
static const char *
split_mailbox(const char *s, struct mailbox *m)
{
	size_t len;

	while (is_wsp(*s))
		s++;
	len = strlen(s);
	while (len > 0 && is_wsp(s[len - 1]))
		len--;
	memset(m, 0, sizeof(*m));
	m->addr = m->disp = s;
	m->alen = len;
	if (len > 0 && s[len - 1] == '>') {
		const char *lt = NULL;

		for (size_t i = len - 1; i-- > 0;)
			if (s[i] == '<') {
				lt = s + i;
				break;
			}
		if (lt == NULL)
			return "'>' without '<'";
		m->angle = true;
		m->addr = lt + 1;
		m->alen = (size_t)(s + len - 1 - m->addr);
		m->dlen = (size_t)(lt - s);
		while (m->dlen > 0 && is_wsp(s[m->dlen - 1]))
			m->dlen--;
	}
	if (m->dlen > DISPLAY_MAX)
		return "display name longer than " XSTR(DISPLAY_MAX) " octets";
	return check_addr(m->addr, m->alen);
}

/*
 * The value of a From or Reply-To header: the display name encoded, the
 * address kept as it is. NULL with a reason in err.
 */
static char *
encode_mailbox(const struct compose_charset *cs, const char *field, const char *s,
    char *err, size_t errlen)
{
	size_t name_len = strlen(field) + 2, len;
	struct mailbox m;
	const char *why;
	char *disp, *phrase, *v;

	if ((why = split_mailbox(s, &m)) != NULL) {
		seterr(err, errlen, "%s: %s", field, why);
		return NULL;
	}
	if (!m.angle)
		return strndup(m.addr, m.alen);
	if ((disp = display_text(m.disp, m.dlen)) == NULL)
		return NULL;
	/* No display name, or an empty or blank one ("" <addr>): <addr>. */
	if (disp[0] == '\0') {
		free(disp);
		if ((v = malloc(m.alen + 3)) != NULL)
			snprintf(v, m.alen + 3, "<%.*s>", (int)m.alen, m.addr);
		return v;
	}
	phrase = encode_phrase(cs, disp, name_len);
	free(disp);
	if (phrase == NULL)
		return NULL;
	/* The address on the same line when it fits, else on a folded one. */
	len = strlen(phrase) + m.alen + 6;
	if ((v = malloc(len)) != NULL)
		snprintf(v, len, "%s%s<%.*s>", phrase,
		    last_col(phrase, name_len) + m.alen + 3 <= LINE_SOFT ? " " : "\r\n ",
		    (int)m.alen, m.addr);
	free(phrase);
	return v;
}

static bool
domain_ok(const char *d)
{
	size_t n = strlen(d);

	if (n == 0 || n > DOMAIN_MAX || d[0] == '.' || d[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)d[i]) && d[i] != '-' && d[i] != '.')
			return false;
	return true;
}

struct compose_body *
compose_prepare(const struct compose_job *j, char *err, size_t errlen)
{
	const struct compose_charset *cs;
	const char *charset = j->charset ? j->charset : "utf-8";
	const char *body = j->body ? j->body : "";
	struct compose_body *b;

	if ((cs = charset_find(charset)) == NULL) {
		seterr(err, errlen, "charset %.40s not supported yet", charset);
		return NULL;
	}
	if (j->from == NULL) {
		seterr(err, errlen, "no From address");
		return NULL;
	}
	if (j->domain == NULL || !domain_ok(j->domain)) {
		seterr(err, errlen, "invalid Message-ID domain");
		return NULL;
	}
	/* Any failure from here on is out of memory unless encode_mailbox
	 * says otherwise; err is only read when NULL is returned. */
	seterr(err, errlen, "out of memory");
	if ((b = calloc(1, sizeof(*b))) == NULL)
		return NULL;
	b->job_id = j->job_id;
	if ((b->from = encode_mailbox(cs, "From", j->from, err, errlen)) == NULL ||
	    (j->reply_to != NULL &&
	    (b->reply_to = encode_mailbox(cs, "Reply-To", j->reply_to, err, errlen)) == NULL) ||
	    (b->subject = cs->header(j->subject ? j->subject : "", strlen("Subject: "))) == NULL ||
	    (b->mime_headers = strdup(cs->mime_headers)) == NULL ||
	    (b->domain = strdup(j->domain)) == NULL ||
	    (b->body = cs->body(body, strlen(body), &b->body_len)) == NULL) {
		compose_body_free(b);
		return NULL;
	}
	return b;
}

void
compose_body_free(struct compose_body *b)
{
	if (b == NULL)
		return;
	free(b->mime_headers);
	free(b->subject);
	free(b->from);
	free(b->reply_to);
	free(b->domain);
	free(b->body);
	free(b);
}

/* The recipient as it goes into To: one line of printable ASCII. */
static bool
to_ok(const char *to)
{
	size_t n = strlen(to);

	if (n == 0 || n > ADDR_LEN_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)to[i] < 0x20 || (unsigned char)to[i] >= 0x7f)
			return false;
	return true;
}

/*
 * The caller's extra header lines: each ends in CRLF and holds no other CR
 * or LF, no empty line (it would end the header block early), no line over
 * 998 octets, no controls but TAB. A line starting with white space
 * continues the one before, so not the first one (it would continue ours).
 */
static bool
extra_ok(const char *x)
{
	bool first = true;

	while (*x != '\0') {
		const char *crlf = strstr(x, "\r\n");
		size_t n, name;

		if (crlf == NULL || crlf == x || (size_t)(crlf - x) > LINE_HARD)
			return false;
		n = (size_t)(crlf - x);
		for (size_t i = 0; i < n; i++)
			if (((unsigned char)x[i] < 0x20 && x[i] != '\t') || x[i] == 0x7f)
				return false;
		if (is_wsp(x[0])) {
			if (first || strspn(x, " \t") == n)
				return false;
		} else {
			/* A field name: printable ASCII but ':', then ':'. */
			for (name = 0; name < n && x[name] > 0x20 && x[name] < 0x7f && x[name] != ':'; name++)
				;
			if (name == 0 || name == n || x[name] != ':')
				return false;
		}
		first = false;
		x = crlf + 2;
	}
	return true;
}

/* RFC 5322 date-time in the local time zone, with English names whatever
 * the locale says (strftime's %a and %b follow LC_TIME). */
static int
write_date(FILE *fp, time_t now)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;
	char zone[8];

	if (localtime_r(&now, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 ||
	    tm.tm_mon < 0 || tm.tm_mon > 11 || strftime(zone, sizeof(zone), "%z", &tm) == 0)
		return -1;
	fprintf(fp, "Date: %s, %02d %s %04d %02d:%02d:%02d %s\r\n", days[tm.tm_wday], tm.tm_mday,
	    months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, zone);
	return 0;
}

char *
compose_head(const struct compose_body *b, const struct compose_rcpt *r, time_t now, size_t *len)
{
	unsigned char rnd[8];
	char hex[sizeof(rnd) * 2 + 1], *head = NULL;
	size_t size = 0;
	FILE *fp;
	int bad;

	if (b == NULL || r == NULL || r->to == NULL || !to_ok(r->to) ||
	    (r->extra != NULL && !extra_ok(r->extra)))
		return NULL;
	/* Job and delivery make it unique; the random part keeps a retry of
	 * the same delivery from reusing the id of an attempt that may have
	 * arrived after all. */
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return NULL;
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
	if ((fp = open_memstream(&head, &size)) == NULL)
		return NULL;
	bad = write_date(fp, now);
	fprintf(fp, "From: %s\r\n", b->from);
	fprintf(fp, "To: %s\r\n", r->to);
	fprintf(fp, "Subject: %s\r\n", b->subject);
	fprintf(fp, "Message-ID: <%" PRIu64 ".%" PRIu64 ".%s@%s>\r\n", b->job_id, r->delivery_id,
	    hex, b->domain);
	if (b->reply_to != NULL)
		fprintf(fp, "Reply-To: %s\r\n", b->reply_to);
	if (r->extra != NULL)
		fputs(r->extra, fp);
	fputs(b->mime_headers, fp);
	fputs("\r\n", fp);
	if (ferror(fp))
		bad = -1;
	if (fclose(fp) != 0 || bad == -1) {
		free(head);
		return NULL;
	}
	if (len != NULL)
		*len = size;
	return head;
}
