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
 * encoder and its body encoder. UTF-8 goes in base64; ISO-2022-JP in 7bit,
 * converted by mail/charset and then cut into lines that each start and
 * end in ASCII (RFC 1468), a line over 998 octets broken between two
 * characters with the character set closed before the break and opened
 * again after it. A job whose text holds a character ISO-2022-JP lacks
 * (①, ㈱, emoji, half-width kana) is written in UTF-8 as a whole, never
 * with '?', and compose_body says so (fell_back, fallback) for the log.
 *
 * With a DKIM key, compose_prepare also hashes the encoded body once, and
 * compose_head puts the DKIM-Signature of each recipient's header block
 * (gateway/dkim) on top of it. It signs From, To, Subject, Date,
 * Message-ID, Reply-To when there is one, the List-Unsubscribe and
 * List-Unsubscribe-Post lines of the caller's extra, and the MIME headers:
 * what a receiver shows or acts on.
 *
 * Failure: compose_prepare returns NULL with a reason in err (an unknown
 * charset, a bad From or Reply-To address, a bad domain, no memory);
 * compose_head returns NULL when the recipient or the extra lines could
 * break the header, when no random Message-ID can be drawn, when the
 * header cannot be signed, or without memory.
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
#include "core/strbuf.h"
#include "gateway/dkim.h"
#include "mail/charset.h"
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

/*
 * The encoders return NULL without memory, or with *unfit set when the
 * text holds a character the charset cannot carry.
 */
struct compose_charset {
	const char *name;	/* as configured, matched case-insensitively */
	const char *mime_name;
	const char *mime_headers;
	char *(*header)(const char *utf8, size_t name_len, bool *unfit);
	char *(*body)(const char *text, size_t len, size_t *outlen, bool *unfit);
};

static char *header_utf8(const char *utf8, size_t name_len, bool *unfit);
static char *header_jis(const char *utf8, size_t name_len, bool *unfit);
static char *body_base64(const char *text, size_t len, size_t *outlen, bool *unfit);
static char *body_jis(const char *text, size_t len, size_t *outlen, bool *unfit);

/* The first row is the fallback for text another row cannot carry. */
static const struct compose_charset charsets[] = {
	{ "utf-8", "UTF-8",
	  "MIME-Version: 1.0\r\n"
	  "Content-Type: text/plain; charset=UTF-8\r\n"
	  "Content-Transfer-Encoding: base64\r\n",
	  header_utf8, body_base64 },
	{ "iso-2022-jp", "ISO-2022-JP",
	  "MIME-Version: 1.0\r\n"
	  "Content-Type: text/plain; charset=ISO-2022-JP\r\n"
	  "Content-Transfer-Encoding: 7bit\r\n",
	  header_jis, body_jis },
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
body_base64(const char *text, size_t len, size_t *outlen, bool *unfit)
{
	struct b64_out o = { .fill = 0 };
	size_t n, lines;

	*unfit = false;
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

static char *
header_utf8(const char *utf8, size_t name_len, bool *unfit)
{
	*unfit = false;
	return rfc2047_encode(utf8, name_len);
}

static char *
header_jis(const char *utf8, size_t name_len, bool *unfit)
{
	return rfc2047_encode_charset(utf8, name_len, "ISO-2022-JP", unfit);
}

/* The character sets of ISO-2022-JP (RFC 1468), by their escapes, and the
 * octets a character takes in each. Half-width kana (ESC ( I) are not
 * among them: a text that needs them is not ISO-2022-JP. */
enum jis_set { JIS_ASCII, JIS_ROMAN, JIS_KANJI, JIS_KANJI78, JIS_NSETS };

static const struct {
	char esc[4];
	size_t width;
} jis_sets[JIS_NSETS] = {
	[JIS_ASCII] = { "\x1b(B", 1 },
	[JIS_ROMAN] = { "\x1b(J", 1 },
	[JIS_KANJI] = { "\x1b$B", 2 },
	[JIS_KANJI78] = { "\x1b$@", 2 },
};

#define JIS_ESC_LEN 3

/* Lines written out of ISO-2022-JP text: the set the output is in and the
 * octets on the current line. */
struct jis_out {
	FILE *fp;
	enum jis_set set;
	size_t col;
};

/* End a line in ASCII, as RFC 1468 wants every line to end. */
static void
jis_eol(struct jis_out *o)
{
	if (o->set != JIS_ASCII)
		fputs(jis_sets[JIS_ASCII].esc, o->fp);
	fputs("\r\n", o->fp);
	o->set = JIS_ASCII;
	o->col = 0;
}

/*
 * One character of set. It goes on this line when the line, closed in
 * ASCII, stays within 998 octets; else the line is broken before it, and
 * the set is opened again on the next one. So a break never falls inside
 * an escape or a two-octet character.
 */
static void
jis_char(struct jis_out *o, enum jis_set set, const char *c)
{
	size_t w = jis_sets[set].width;
	size_t open = set != o->set ? JIS_ESC_LEN : 0;
	size_t close = set != JIS_ASCII ? JIS_ESC_LEN : 0;

	if (o->col + open + w + close > LINE_HARD) {
		jis_eol(o);
		open = set != JIS_ASCII ? JIS_ESC_LEN : 0;
	}
	if (open > 0) {
		fputs(jis_sets[set].esc, o->fp);
		o->set = set;
	}
	fwrite(c, 1, w, o->fp);
	o->col += open + w;
}

/*
 * ISO-2022-JP text with CRLF line ends (what iconv wrote) as 7bit lines:
 * each starting and ending in ASCII, none over 998 octets, the last ending
 * in CRLF. The escapes of the input only set the set of what follows; the
 * output writes its own, where the set really changes. -1 on anything
 * that is not plain ISO-2022-JP, or without memory.
 */
static int
jis_lines(const char *in, size_t len, char **out, size_t *outlen)
{
	struct jis_out o = { .set = JIS_ASCII, .col = 0 };
	enum jis_set set = JIS_ASCII;
	size_t i = 0;
	int bad = 0;

	if ((o.fp = open_memstream(out, outlen)) == NULL)
		return -1;
	while (i < len && bad == 0) {
		unsigned char c = (unsigned char)in[i];

		if (c == 0x1b) {
			int k;

			for (k = 0; k < JIS_NSETS; k++)
				if (len - i >= JIS_ESC_LEN && memcmp(in + i, jis_sets[k].esc, JIS_ESC_LEN) == 0)
					break;
			if (k == JIS_NSETS)
				bad = -1;
			else
				set = (enum jis_set)k;
			i += JIS_ESC_LEN;
		} else if (c == '\r' && i + 1 < len && in[i + 1] == '\n') {
			jis_eol(&o);
			i += 2;
		} else if (c >= 0x80 || c == '\r' || c == '\n' || c == 0x0e || c == 0x0f ||
		    (jis_sets[set].width == 2 && (i + 1 >= len || c < 0x21 || c > 0x7e ||
		    (unsigned char)in[i + 1] < 0x21 || (unsigned char)in[i + 1] > 0x7e))) {
			bad = -1;
		} else {
			jis_char(&o, set, in + i);
			i += jis_sets[set].width;
		}
	}
	/* The body ends with a line end, as it does in base64. */
	if (o.col > 0 || o.set != JIS_ASCII || ftell(o.fp) == 0)
		jis_eol(&o);
	if (ferror(o.fp))
		bad = -1;
	if (fclose(o.fp) != 0 || bad == -1) {
		free(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}

/*
 * A body in ISO-2022-JP: line ends made CRLF, the text converted strictly
 * (mail/charset), then cut into 7bit lines. The text's own ESC, SO and SI
 * would switch sets in the middle of ours, so they are characters
 * ISO-2022-JP cannot carry here; base64 UTF-8 carries them.
 */
static char *
body_jis(const char *text, size_t len, size_t *outlen, bool *unfit)
{
	char *norm, *conv, *out = NULL;
	size_t n = 0, clen;

	*unfit = false;
	for (size_t i = 0; i < len; i++)
		if (text[i] == 0x1b || text[i] == 0x0e || text[i] == 0x0f) {
			*unfit = true;
			return NULL;
		}
	if (len > SIZE_MAX / 2 || (norm = malloc(crlf_len(text, len) + 1)) == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (text[i] == '\r' && i + 1 < len && text[i + 1] == '\n')
			i++;
		if (text[i] == '\r' || text[i] == '\n') {
			norm[n++] = '\r';
			norm[n++] = '\n';
		} else
			norm[n++] = text[i];
	}
	conv = charset_from_utf8("ISO-2022-JP", norm, n, &clen, NULL);
	free(norm);
	/* A failed strict conversion is a character the charset lacks (or
	 * text that is not UTF-8); no memory there ends up as UTF-8 too,
	 * which then fails on its own. */
	if (conv == NULL) {
		*unfit = true;
		return NULL;
	}
	if (jis_lines(conv, clen, &out, outlen) == -1) {
		*unfit = true;
		out = NULL;
	}
	free(conv);
	return out;
}

/*
 * Why text does not fit ISO-2022-JP, for the log: the first character
 * that does not convert, as U+XXXX, or the octet that is not UTF-8.
 */
static void
describe_unfit(char *why, size_t size, const char *field, const char *text)
{
	const unsigned char *u;
	size_t len = strlen(text), bad = len, i, n;
	uint32_t cp;
	char *conv;

	for (i = 0; i < len; i++)
		if (text[i] == 0x1b || text[i] == 0x0e || text[i] == 0x0f)
			break;
	if (i < len)
		bad = i;
	else if ((conv = charset_from_utf8("ISO-2022-JP", text, len, NULL, &bad)) != NULL) {
		free(conv);
		bad = len;
	}
	if (bad >= len) {
		snprintf(why, size, "%s: text does not fit ISO-2022-JP", field);
		return;
	}
	u = (const unsigned char *)text + bad;
	n = u[0] < 0x80 ? 1 : u[0] >= 0xf0 ? 4 : u[0] >= 0xe0 ? 3 : u[0] >= 0xc2 ? 2 : 0;
	if (n == 0 || bad + n > len || !utf8_valid(text + bad, n)) {
		snprintf(why, size, "%s: octet %zu is not UTF-8", field, bad);
		return;
	}
	cp = n == 1 ? u[0] : (uint32_t)(u[0] & (0x7f >> n));
	for (i = 1; i < n; i++)
		cp = (cp << 6) | (u[i] & 0x3f);
	snprintf(why, size, "%s: U+%04" PRIX32 " not in ISO-2022-JP", field, cp);
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
encode_phrase(const struct compose_charset *cs, const char *d, size_t name_len, bool *unfit)
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
		return cs->header(d, name_len, unfit);
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
	r = cs->header(q, name_len, unfit);
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
 * address kept as it is. NULL with a reason in err, or with *unfit set.
 */
static char *
encode_mailbox(const struct compose_charset *cs, const char *field, const char *s,
    bool *unfit, char *err, size_t errlen)
{
	size_t name_len = strlen(field) + 2, len;
	struct mailbox m;
	const char *why;
	char *disp, *phrase, *v;

	*unfit = false;
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
	phrase = encode_phrase(cs, disp, name_len, unfit);
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

/* The parts of b that depend on the charset, dropped before another try. */
static void
drop_encoded(struct compose_body *b)
{
	free(b->mime_headers);
	free(b->subject);
	free(b->from);
	free(b->reply_to);
	free(b->body);
	b->mime_headers = b->subject = b->from = b->reply_to = b->body = NULL;
	b->body_len = 0;
}

/*
 * Write the job's text in cs. 0 when done; 1 when some text does not fit
 * cs, its field and character in b->fallback; -1 on an error in err (a bad
 * address, or "out of memory", set beforehand).
 */
static int
encode_in(const struct compose_charset *cs, const struct compose_job *j,
    struct compose_body *b, char *err, size_t errlen)
{
	const char *body = j->body ? j->body : "";
	const char *subject = j->subject ? j->subject : "";
	bool unfit = false;

	if ((b->from = encode_mailbox(cs, "From", j->from, &unfit, err, errlen)) == NULL) {
		if (unfit)
			describe_unfit(b->fallback, sizeof(b->fallback), "From", j->from);
		return unfit ? 1 : -1;
	}
	if (j->reply_to != NULL &&
	    (b->reply_to = encode_mailbox(cs, "Reply-To", j->reply_to, &unfit, err, errlen)) == NULL) {
		if (unfit)
			describe_unfit(b->fallback, sizeof(b->fallback), "Reply-To", j->reply_to);
		return unfit ? 1 : -1;
	}
	if ((b->subject = cs->header(subject, strlen("Subject: "), &unfit)) == NULL) {
		if (unfit)
			describe_unfit(b->fallback, sizeof(b->fallback), "Subject", subject);
		return unfit ? 1 : -1;
	}
	if ((b->body = cs->body(body, strlen(body), &b->body_len, &unfit)) == NULL) {
		if (unfit)
			describe_unfit(b->fallback, sizeof(b->fallback), "body", body);
		return unfit ? 1 : -1;
	}
	if ((b->mime_headers = strdup(cs->mime_headers)) == NULL)
		return -1;
	b->charset_used = cs->mime_name;
	return 0;
}

struct compose_body *
compose_prepare(const struct compose_job *j, char *err, size_t errlen)
{
	const struct compose_charset *cs;
	const char *charset = j->charset ? j->charset : "utf-8";
	struct compose_body *b;
	int rc;

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
	b->dkim = j->dkim;
	rc = encode_in(cs, j, b, err, errlen);
	if (rc == 1 && cs != &charsets[0]) {
		/* The whole message in UTF-8: a Subject in one charset and a
		 * body in another would only confuse. */
		drop_encoded(b);
		b->fell_back = true;
		rc = encode_in(&charsets[0], j, b, err, errlen);
	}
	if (rc != 0 || (b->domain = strdup(j->domain)) == NULL ||
	    (b->dkim != NULL && (b->dkim_bh = dkim_body_hash(b->body, b->body_len)) == NULL)) {
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
	drop_encoded(b);
	free(b->domain);
	free(b->dkim_bh);
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

#define SIGNED_BASE "from:to:subject:date:message-id"
#define SIGNED_MIME "mime-version:content-type:content-transfer-encoding"
#define UNSUB_SIGNED_MAX 4	/* List-Unsubscribe lines of each name signed */

/*
 * The names dkim_sign is to sign, in h= order. The List-Unsubscribe lines
 * are signed one name per line (5.4.2 takes them bottom-up), so a receiver
 * acting on one-click unsubscribe (RFC 8058 4) sees them covered.
 */
static void
signed_names(const struct compose_body *b, const char *extra, char *out, size_t size)
{
	int unsub = 0, post = 0;
	size_t n;

	n = (size_t)snprintf(out, size, "%s%s", SIGNED_BASE, b->reply_to != NULL ? ":reply-to" : "");
	for (const char *x = extra; x != NULL && *x != '\0';) {
		const char *crlf = strstr(x, "\r\n");

		/* The lines were checked: each has a name and ends in CRLF. */
		if (strncasecmp(x, "List-Unsubscribe:", 17) == 0 && unsub++ < UNSUB_SIGNED_MAX)
			n += (size_t)snprintf(out + n, size - n, ":list-unsubscribe");
		else if (strncasecmp(x, "List-Unsubscribe-Post:", 22) == 0 && post++ < UNSUB_SIGNED_MAX)
			n += (size_t)snprintf(out + n, size - n, ":list-unsubscribe-post");
		x = crlf != NULL ? crlf + 2 : x + strlen(x);
	}
	snprintf(out + n, size - n, ":%s", SIGNED_MIME);
}

/* The head with its DKIM-Signature on top; head is consumed. NULL when it
 * cannot be signed. */
static char *
sign_head(const struct compose_body *b, const struct compose_rcpt *r, char *head,
    size_t *size, time_t now)
{
	/* Room for every name above: 31 + 9 + 4 * (17 + 22) + 53 octets. */
	char names[256], *sig, *out;
	size_t sl;

	signed_names(b, r->extra, names, sizeof(names));
	sig = dkim_sign(b->dkim, head, *size, b->dkim_bh, names, (long)now);
	if (sig == NULL) {
		free(head);
		return NULL;
	}
	sl = strlen(sig);
	if ((out = malloc(sl + *size + 1)) != NULL) {
		memcpy(out, sig, sl);
		memcpy(out + sl, head, *size + 1);
		*size += sl;
	}
	free(sig);
	free(head);
	return out;
}

/* RFC 5322 date-time in the local time zone, with English names whatever
 * the locale says (strftime's %a and %b follow LC_TIME). */
static int
format_date(char *buf, size_t size, time_t now)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;
	char zone[8];

	if (localtime_r(&now, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 ||
	    tm.tm_mon < 0 || tm.tm_mon > 11 || strftime(zone, sizeof(zone), "%z", &tm) == 0)
		return -1;
	snprintf(buf, size, "Date: %s, %02d %s %04d %02d:%02d:%02d %s\r\n", days[tm.tm_wday], tm.tm_mday,
	    months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, zone);
	return 0;
}

static void
add_header(struct strbuf *sb, const char *name, const char *value)
{
	strbuf_add(sb, name, strlen(name));
	strbuf_add(sb, value, strlen(value));
	strbuf_add(sb, "\r\n", 2);
}

char *
compose_head(const struct compose_body *b, const struct compose_rcpt *r, time_t now, size_t *len)
{
	/* One random start a thread. */
	static _Thread_local uint64_t rnd;
	static _Thread_local bool seeded;
	char date[80], msgid[400], *head;
	struct strbuf sb = { 0 };
	size_t size;

	if (b == NULL || r == NULL || r->to == NULL || !to_ok(r->to) ||
	    (r->extra != NULL && !extra_ok(r->extra)))
		return NULL;
	/* Job and delivery make it unique; the third part, a random start
	 * counted up, keeps a retry of the same delivery (by this process or
	 * another) from reusing the id of an attempt that may have arrived
	 * after all. */
	if (!seeded) {
		if (RAND_bytes((unsigned char *)&rnd, sizeof(rnd)) != 1)
			return NULL;
		seeded = true;
	}
	rnd++;
	if (format_date(date, sizeof(date), now) < 0)
		return NULL;
	snprintf(msgid, sizeof(msgid), "<%" PRIu64 ".%" PRIu64 ".%016" PRIx64 "@%s>", b->job_id,
	    r->delivery_id, rnd, b->domain);
	strbuf_add(&sb, date, strlen(date));
	add_header(&sb, "From: ", b->from);
	add_header(&sb, "To: ", r->to);
	add_header(&sb, "Subject: ", b->subject);
	add_header(&sb, "Message-ID: ", msgid);
	if (b->reply_to != NULL)
		add_header(&sb, "Reply-To: ", b->reply_to);
	if (r->extra != NULL)
		strbuf_add(&sb, r->extra, strlen(r->extra));
	strbuf_add(&sb, b->mime_headers, strlen(b->mime_headers));
	strbuf_add(&sb, "\r\n", 2);
	size = sb.len;
	if ((head = strbuf_take(&sb)) == NULL)
		return NULL;
	if (b->dkim != NULL && (head = sign_head(b, r, head, &size, now)) == NULL)
		return NULL;
	if (len != NULL)
		*len = size;
	return head;
}

/* The headers a notice's signature covers: every notice has all of them. */
#define NOTICE_SIGNED "from:to:subject:date:message-id:auto-submitted:mime-version:content-type"

struct compose_body *
compose_notice(uint64_t job_id, const char *msg, const struct dkim_key *dkim, char *err, size_t errlen)
{
	struct compose_body *b;
	const char *sep;
	char *sig = NULL, *bh;
	size_t hlen, len = strlen(msg);

	if ((sep = strstr(msg, "\r\n\r\n")) == NULL) {
		seterr(err, errlen, "the stored notice has no header block");
		return NULL;
	}
	hlen = (size_t)(sep - msg) + 2;
	if ((b = calloc(1, sizeof(*b))) == NULL) {
		seterr(err, errlen, "out of memory");
		return NULL;
	}
	b->notice = true;
	b->job_id = job_id;
	if (dkim != NULL) {
		if ((bh = dkim_body_hash(sep + 4, len - hlen - 2)) != NULL)
			sig = dkim_sign(dkim, msg, hlen, bh, NOTICE_SIGNED, (long)time(NULL));
		free(bh);
		if (sig == NULL) {
			seterr(err, errlen, "the notice cannot be signed");
			free(b);
			return NULL;
		}
	}
	b->body_len = (sig ? strlen(sig) : 0) + len;
	bool crlf = len >= 2 && memcmp(msg + len - 2, "\r\n", 2) == 0;
	if ((b->body = malloc(b->body_len + 3)) == NULL) {
		free(sig);
		free(b);
		seterr(err, errlen, "out of memory");
		return NULL;
	}
	snprintf(b->body, b->body_len + 3, "%s%s%s", sig ? sig : "", msg, crlf ? "" : "\r\n");
	b->body_len += crlf ? 0 : 2;
	free(sig);
	return b;
}
