/*
 * mime: an incoming mail, read with GMime into plain UTF-8 values.
 *
 *	mime_init	once per process (g_mime_init)
 *	mime_parse	bytes -> struct mime_msg
 *	mime_parse_lazy	the same, big attachments left in the mail
 *	mime_header	first top-level header of a name
 *	mime_part_open, mime_reader_read, mime_reader_close
 *			an attachment's decoded bytes in pieces
 *	mime_msg_free
 *
 * GMime does the MIME structure, the transfer encodings and the address
 * lists. Text is converted with mail/charset.c, and header values are
 * RFC 2047-decoded here from GMime's raw values: GMime converts encoded
 * words with plain iconv, which turns the vendor characters of
 * ISO-2022-JP and Shift_JIS subjects (①, ㈱) into '?' and stray control
 * bytes. Decoding them here gives them the same CP932 reading as bodies,
 * and also joins adjacent encoded words of one charset before converting,
 * since Japanese mailers split multibyte characters across words.
 *
 * Header values never keep CR, LF or other C0 controls (TAB excepted),
 * however they were encoded: callers copy them into new mail.
 *
 * The text is the first text/plain leaf that is not an attachment (in a
 * multipart/alternative, its text/plain version), in UTF-8 with LF line
 * ends, format=flowed undone. A part without a charset, or with one its
 * bytes do not fit, is guessed (charset_guess_to_utf8); bytes nothing
 * reads become U+FFFD rather than losing the whole mail.
 *
 * The mail is never copied: GMime reads the caller's bytes in place, and
 * the parser keeps each part's body as a substream of them (an offset
 * and a length). A submission is up to ~20 MB, mostly one base64 CSV;
 * decoding it into memory as well costs 15 MB more per mail in flight.
 * mime_parse_lazy therefore leaves an attachment whose encoded body is
 * longer than a limit where it is: the part keeps a reference on its
 * GMimeDataWrapper (whose stream holds the mail's stream), and each
 * mime_part_open decodes it from its own substream with the filter that
 * g_mime_data_wrapper_write_to_stream uses, a few KB at a time. The mail
 * must outlive the mime_msg and its readers; nothing is shared between
 * two mime_msgs, so each thread parses its own.
 *
 * Failure: -1 with a reason in err for an empty input, one over 4 GB (a
 * GByteArray's length is a guint), one GMime finds no message in, or
 * memory exhaustion; the struct is then empty. GLib's own allocation
 * failures abort, as GLib does.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

#include "core/strbuf.h"
#include "mail/address.h"
#include "mail/charset.h"
#include "mail/mime.h"

#define EW_CHARSET_MAX 64

static void
strip_controls(char *s)
{
	char *w = s;

	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x20 && *s != 0x7f)
			*w++ = *s;
		else if (*s == '\t')
			*w++ = *s;
	*w = '\0';
}

/* Last resort for bytes that fit no charset: U+FFFD for each bad byte.
 * The length goes to *outlen when it is not NULL. */
static char *
scrub_utf8(const char *s, size_t len, size_t *outlen)
{
	struct strbuf b = { 0 };
	size_t i = 0, n;
	unsigned char c;

	while (i < len) {
		c = (unsigned char)s[i];
		n = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
		if (n <= len - i && utf8_valid(s + i, n)) {
			strbuf_add(&b, s + i, n);
			i += n;
		} else {
			strbuf_add(&b, "\xef\xbf\xbd", 3);
			i++;
		}
	}
	if (outlen != NULL)
		*outlen = b.len;
	return strbuf_take(&b);
}

static char *
any_to_utf8(const char *charset, const char *s, size_t len, size_t *outlen)
{
	char *out = NULL;

	if (charset != NULL)
		out = charset_to_utf8(charset, s, len, outlen);
	if (out == NULL)
		out = charset_guess_to_utf8(s, len, outlen);
	if (out == NULL)
		out = scrub_utf8(s, len, outlen);
	return out;
}

/*
 * RFC 2047. An encoded word: =?charset[*lang]?B|Q?text?= with no white
 * space in it. Words are decoded wherever they stand (as GMime's loose
 * mode does); white space between two words is dropped.
 */
struct ew {
	char charset[EW_CHARSET_MAX + 1];
	char enc;
	const char *text;
	size_t textlen;
	size_t end;
};

static bool
ew_scan(const char *s, size_t len, size_t i, struct ew *ew)
{
	size_t p, n = 0;
	bool lang = false;
	const char *q;
	char c;

	if (i + 1 >= len || s[i] != '=' || s[i + 1] != '?')
		return false;
	for (p = i + 2; p < len && s[p] != '?'; p++) {
		c = s[p];
		if ((unsigned char)c <= 0x20 || (unsigned char)c >= 0x7f)
			return false;
		if (c == '*')
			lang = true;	/* RFC 2231 language tag: not kept */
		if (lang)
			continue;
		if (n == EW_CHARSET_MAX)
			return false;
		ew->charset[n++] = c;
	}
	if (n == 0 || p + 3 >= len || s[p + 2] != '?')
		return false;
	ew->charset[n] = '\0';
	ew->enc = s[p + 1];
	if (strchr("BbQq", ew->enc) == NULL)
		return false;
	ew->text = s + p + 3;
	q = memchr(ew->text, '?', len - (p + 3));
	if (q == NULL || (size_t)(q - s) + 1 >= len || q[1] != '=')
		return false;
	ew->textlen = (size_t)(q - ew->text);
	if (memchr(ew->text, ' ', ew->textlen) || memchr(ew->text, '\t', ew->textlen))
		return false;
	ew->end = (size_t)(q - s) + 2;
	return true;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int
b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* A decoded NUL would cut the C string short: it goes with the controls. */
static void
ew_put(struct strbuf *b, char c)
{
	if (c != '\0')
		strbuf_add(b, &c, 1);
}

/* Decoded bytes of one word, appended to b. Lenient about padding. */
static void
ew_decode(const struct ew *ew, struct strbuf *b)
{
	unsigned int acc = 0, bits = 0;
	size_t i;
	char c;
	int v, h, l;

	for (i = 0; i < ew->textlen; i++) {
		c = ew->text[i];
		if (ew->enc == 'B' || ew->enc == 'b') {
			if ((v = b64val(c)) == -1)
				continue;
			acc = (acc << 6) | (unsigned int)v;
			if ((bits += 6) >= 8) {
				bits -= 8;
				c = (char)((acc >> bits) & 0xff);
				ew_put(b, c);
			}
		} else if (c == '_') {
			ew_put(b, ' ');
		} else if (c == '=' && i + 2 < ew->textlen &&
		    (h = hexval(ew->text[i + 1])) != -1 &&
		    (l = hexval(ew->text[i + 2])) != -1) {
			ew_put(b, (char)(h * 16 + l));
			i += 2;
		} else
			ew_put(b, c);
	}
}

static void
ew_flush(struct strbuf *out, struct strbuf *pend, const char *charset)
{
	char *u;

	if (pend->len == 0)
		return;
	if ((u = any_to_utf8(charset, pend->p, pend->len, NULL)) == NULL)
		out->oom = true;
	else {
		strbuf_add(out, u, strlen(u));
		free(u);
	}
	pend->len = 0;
}

static bool
all_space(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t')
			return false;
	return true;
}

static char *
rfc2047_decode(const char *s, size_t len)
{
	struct strbuf out = { 0 }, pend = { 0 };
	char cs[EW_CHARSET_MAX + 1] = "";
	bool after_word = false;
	size_t i = 0, lit = 0;
	struct ew ew;

	while (i < len) {
		if (s[i] != '=' || !ew_scan(s, len, i, &ew)) {
			i++;
			continue;
		}
		if (!after_word || !all_space(s + lit, i - lit)) {
			ew_flush(&out, &pend, cs);
			strbuf_add(&out, s + lit, i - lit);
		}
		if (strcasecmp(cs, ew.charset) != 0) {
			ew_flush(&out, &pend, cs);
			strcpy(cs, ew.charset);
		}
		ew_decode(&ew, &pend);
		after_word = true;
		i = lit = ew.end;
	}
	ew_flush(&out, &pend, cs);
	strbuf_add(&out, s + lit, len - lit);
	free(pend.p);
	out.oom |= pend.oom;
	return strbuf_take(&out);
}

/*
 * A raw header value: unfolded, raw 8-bit text read as UTF-8, ISO-2022-JP
 * or CP932, encoded words decoded, controls dropped, ends trimmed.
 */
static char *
header_decode(const char *raw)
{
	struct strbuf unf = { 0 };
	const char *p;
	char *u, *v;
	size_t a, z;

	/* Unfolding is removing the line breaks (RFC 5322 2.2.3). */
	for (p = raw; *p != '\0'; p++)
		if (*p != '\r' && *p != '\n')
			strbuf_add(&unf, p, 1);
	if ((u = strbuf_take(&unf)) == NULL)
		return NULL;
	v = any_to_utf8(NULL, u, strlen(u), NULL);
	free(u);
	if (v == NULL)
		return NULL;
	u = rfc2047_decode(v, strlen(v));
	free(v);
	if (u == NULL)
		return NULL;
	strip_controls(u);
	for (a = 0; u[a] == ' ' || u[a] == '\t'; a++)
		;
	for (z = strlen(u); z > a && (u[z - 1] == ' ' || u[z - 1] == '\t'); z--)
		;
	memmove(u, u + a, z - a);
	u[z - a] = '\0';
	return u;
}

/* A value GMime decoded itself (file names, Message-Id): made safe. */
static char *
gmime_value(const char *s)
{
	char *v;

	if (s == NULL)
		return NULL;
	if (utf8_valid(s, strlen(s)))
		v = strdup(s);
	else
		v = scrub_utf8(s, strlen(s), NULL);
	if (v != NULL)
		strip_controls(v);
	return v;
}

static int
add_header(GMimeHeader *h, struct mime_msg *m)
{
	struct mime_header *mh = &m->headers[m->nheaders++];
	const char *raw = g_mime_header_get_raw_value(h);

	mh->name = gmime_value(g_mime_header_get_name(h));
	mh->value = header_decode(raw ? raw : "");
	return mh->name == NULL || mh->value == NULL ? -1 : 0;
}

/*
 * GMime keeps the top-level Content-* headers on the body part and the
 * others on the message; their offsets in the mail put them back in order.
 */
static int
read_headers(GMimeMessage *msg, struct mime_msg *m)
{
	GMimeObject *body = g_mime_message_get_mime_part(msg);
	GMimeHeaderList *a = g_mime_object_get_header_list(GMIME_OBJECT(msg));
	GMimeHeaderList *b = body ? g_mime_object_get_header_list(body) : NULL;
	int i = 0, j = 0, na = g_mime_header_list_get_count(a);
	int nb = b ? g_mime_header_list_get_count(b) : 0;
	GMimeHeader *ha, *hb;

	if (na + nb <= 0)
		return 0;
	if ((m->headers = calloc((size_t)(na + nb), sizeof(*m->headers))) == NULL)
		return -1;
	while (i < na || j < nb) {
		ha = i < na ? g_mime_header_list_get_header_at(a, i) : NULL;
		hb = j < nb ? g_mime_header_list_get_header_at(b, j) : NULL;
		if (hb == NULL || (ha != NULL &&
		    g_mime_header_get_offset(ha) <= g_mime_header_get_offset(hb))) {
			i++;
			if (add_header(ha, m) == -1)
				return -1;
		} else {
			j++;
			if (add_header(hb, m) == -1)
				return -1;
		}
	}
	return 0;
}

static InternetAddressMailbox *
first_mailbox(InternetAddressList *list)
{
	InternetAddress *a;

	while (list != NULL && internet_address_list_length(list) > 0) {
		a = internet_address_list_get_address(list, 0);
		if (INTERNET_ADDRESS_IS_MAILBOX(a))
			return INTERNET_ADDRESS_MAILBOX(a);
		list = internet_address_group_get_members(INTERNET_ADDRESS_GROUP(a));
	}
	return NULL;
}

/*
 * The addr-spec of the first From address, in addr_format's form when it
 * parses as one of ours. GMime refuses the legacy carrier local parts, so
 * a From GMime finds nothing in is read with addr_parse.
 */
static int
read_from(GMimeMessage *msg, struct mime_msg *m)
{
	InternetAddressMailbox *mb = first_mailbox(g_mime_message_get_from(msg));
	const char *s = mb ? internet_address_mailbox_get_addr(mb) : NULL;
	const char *why;
	struct mail_addr a;
	char buf[ADDR_MAX * 2 + 3];

	/* An address needs a domain: "From: nobody" has no address. */
	if (s != NULL && strchr(s, '@') == NULL)
		return 0;
	if (s == NULL)
		s = mime_header(m, "From");
	if (s == NULL || *s == '\0')
		return 0;
	if (addr_parse(s, strlen(s), &a, &why) == 0) {
		addr_format(&a, buf, sizeof(buf));
		m->from = strdup(buf);
	} else if (mb != NULL)
		m->from = gmime_value(s);
	else
		return 0;
	return m->from == NULL ? -1 : 0;
}

/* Transfer-decoded body of a leaf; *len 0 when it has none. */
static char *
part_bytes(GMimeObject *obj, size_t *len)
{
	GMimeStream *mem = g_mime_stream_mem_new();
	GMimeDataWrapper *dw;
	GByteArray *ba;
	char *out;

	if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));

		if (inner != NULL)
			g_mime_object_write_to_stream(GMIME_OBJECT(inner), NULL, mem);
	} else if ((dw = g_mime_part_get_content(GMIME_PART(obj))) != NULL)
		g_mime_data_wrapper_write_to_stream(dw, mem);
	ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
	*len = ba->len;
	if ((out = malloc(ba->len + 1)) != NULL) {
		if (ba->len > 0)	/* an empty GByteArray has no data */
			memcpy(out, ba->data, ba->len);
		out[ba->len] = '\0';
	}
	g_object_unref(mem);
	return out;
}

static char *
lower(char *s)
{
	char *p;

	for (p = s; p != NULL && *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return s;
}

/* CRLF and lone CR to LF; NUL bytes dropped. In place. */
static size_t
to_lf(char *s, size_t len)
{
	size_t r, w = 0;

	for (r = 0; r < len; r++) {
		if (s[r] == '\r') {
			s[w++] = '\n';
			if (r + 1 < len && s[r + 1] == '\n')
				r++;
		} else if (s[r] != '\0')
			s[w++] = s[r];
	}
	s[w] = '\0';
	return w;
}

/*
 * RFC 3676 format=flowed: a line ending in a space continues on the next
 * line of the same quote depth. Mail clients wrap long "To:" lines of a
 * control block this way, so the block must be read unwrapped.
 */
static char *
unflow(const char *s, size_t len, bool delsp, size_t *outlen)
{
	struct strbuf b = { 0 };
	size_t i = 0, n, depth, prev_depth = 0;
	bool prev_flowed = false, first = true;
	const char *line;

	while (i < len) {
		line = s + i;
		n = strcspn(line, "\n");
		i += n + (i + n < len);
		for (depth = 0; depth < n && line[depth] == '>'; depth++)
			;
		line += depth;
		n -= depth;
		if (n > 0 && line[0] == ' ')	/* space-stuffing */
			line++, n--;
		if (!(prev_flowed && depth == prev_depth)) {
			if (!first)
				strbuf_add(&b, "\n", 1);
			for (size_t k = 0; k < depth; k++)
				strbuf_add(&b, ">", 1);
			if (depth > 0)
				strbuf_add(&b, " ", 1);
		}
		first = false;
		prev_flowed = n > 0 && line[n - 1] == ' ' &&
		    !(n == 3 && memcmp(line, "-- ", 3) == 0);
		prev_depth = depth;
		strbuf_add(&b, line, n - (prev_flowed && delsp));
	}
	if (len > 0 && s[len - 1] == '\n')
		strbuf_add(&b, "\n", 1);
	*outlen = b.len;
	return strbuf_take(&b);
}

static int
set_text(GMimeObject *obj, const char *charset, char *data, size_t len,
    struct mime_msg *m)
{
	const char *fmt = g_mime_object_get_content_type_parameter(obj, "format");
	const char *delsp = g_mime_object_get_content_type_parameter(obj, "delsp");
	char *u, *f;
	size_t n;

	/* By the converted length, not strlen(): a NUL octet in the text is
	 * dropped by to_lf, and must not end the DM there. */
	if ((u = any_to_utf8(charset, data, len, &n)) == NULL)
		return -1;
	n = to_lf(u, n);
	if (fmt != NULL && strcasecmp(fmt, "flowed") == 0) {
		f = unflow(u, n, delsp != NULL && strcasecmp(delsp, "yes") == 0, &n);
		free(u);
		if ((u = f) == NULL)
			return -1;
	}
	m->text = u;
	m->text_len = n;
	return 0;
}

static void
part_free(struct mime_part *p)
{
	free(p->content_type);
	free(p->filename);
	free(p->charset);
	free(p->data);
	if (p->lazy != NULL)
		g_object_unref(p->lazy);
}

/* Takes p's strings, or frees them when it fails. */
static int
add_attachment(struct mime_msg *m, struct mime_part *p, bool complete)
{
	struct mime_part *a;

	if (!complete ||
	    (a = realloc(m->attachments, (m->nattach + 1) * sizeof(*a))) == NULL) {
		part_free(p);
		return -1;
	}
	m->attachments = a;
	a[m->nattach++] = *p;
	return 0;
}

static bool
is_attachment(GMimeObject *obj, const char *filename)
{
	GMimeContentDisposition *d = g_mime_object_get_content_disposition(obj);

	return filename != NULL ||
	    (d != NULL && g_mime_content_disposition_is_attachment(d));
}

/*
 * The content of a plain part whose encoded body is longer than lazy_min,
 * or NULL. Its stream is a substream of the mail (test_mime checks it):
 * keeping it keeps the offsets, not a copy.
 */
static GMimeDataWrapper *
lazy_content(GMimeObject *obj, size_t lazy_min)
{
	GMimeDataWrapper *dw;
	gint64 n;

	if (!GMIME_IS_PART(obj) ||
	    (dw = g_mime_part_get_content(GMIME_PART(obj))) == NULL ||
	    g_mime_data_wrapper_get_stream(dw) == NULL)
		return NULL;
	n = g_mime_stream_length(g_mime_data_wrapper_get_stream(dw));
	if (n < 0 || (uint64_t)n <= lazy_min)
		return NULL;
	return dw;
}

static int
walk_leaf(GMimeObject *obj, size_t lazy_min, struct mime_msg *m)
{
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	const char *filename = NULL, *charset;
	struct mime_part p = { 0 };
	GMimeDataWrapper *dw;
	char *type;
	int rc;

	if (GMIME_IS_PART(obj))
		filename = g_mime_part_get_filename(GMIME_PART(obj));
	charset = g_mime_object_get_content_type_parameter(obj, "charset");
	if (m->text == NULL && GMIME_IS_PART(obj) &&
	    g_mime_content_type_is_type(ct, "text", "plain") &&
	    !is_attachment(obj, filename)) {
		if ((p.data = part_bytes(obj, &p.len)) == NULL)
			return -1;
		rc = set_text(obj, charset, p.data, p.len, m);
		free(p.data);
		return rc;
	}
	/* A lazy part's body is not empty (its encoded length is over
	 * lazy_min), so it is listed even should it decode to nothing. */
	if ((dw = lazy_content(obj, lazy_min)) != NULL)
		p.lazy = g_object_ref(dw);
	else if ((p.data = part_bytes(obj, &p.len)) == NULL)
		return -1;
	else if (p.len == 0) {
		free(p.data);
		return 0;
	}
	/* Copied: the struct is freed with free(), not g_free(). */
	type = g_mime_content_type_get_mime_type(ct);
	p.content_type = lower(type ? strdup(type) : NULL);
	g_free(type);
	p.filename = gmime_value(filename);
	p.charset = gmime_value(charset);
	return add_attachment(m, &p, p.content_type != NULL &&
	    (filename == NULL || p.filename != NULL) &&
	    (charset == NULL || p.charset != NULL));
}

static int walk(GMimeObject *obj, size_t lazy_min, struct mime_msg *m);

static bool
has_plain(GMimeObject *obj)
{
	GMimeMultipart *mp;
	int i;

	if (GMIME_IS_PART(obj))
		return g_mime_content_type_is_type(
		    g_mime_object_get_content_type(obj), "text", "plain") &&
		    !is_attachment(obj, g_mime_part_get_filename(GMIME_PART(obj)));
	if (!GMIME_IS_MULTIPART(obj))
		return false;
	mp = GMIME_MULTIPART(obj);
	for (i = 0; i < g_mime_multipart_get_count(mp); i++)
		if (has_plain(g_mime_multipart_get_part(mp, i)))
			return true;
	return false;
}

/* multipart/alternative: its text/plain version only; HTML and the other
 * renderings of the same text are not attachments. */
static int
walk_alternative(GMimeMultipart *mp, size_t lazy_min, struct mime_msg *m)
{
	int i, n = g_mime_multipart_get_count(mp);

	for (i = 0; i < n; i++)
		if (has_plain(g_mime_multipart_get_part(mp, i)))
			return walk(g_mime_multipart_get_part(mp, i), lazy_min, m);
	return 0;
}

static int
walk(GMimeObject *obj, size_t lazy_min, struct mime_msg *m)
{
	GMimeMultipart *mp;
	int i;

	if (GMIME_IS_MULTIPART(obj)) {
		mp = GMIME_MULTIPART(obj);
		if (g_mime_content_type_is_type(g_mime_object_get_content_type(obj),
		    "multipart", "alternative"))
			return walk_alternative(mp, lazy_min, m);
		for (i = 0; i < g_mime_multipart_get_count(mp); i++)
			if (walk(g_mime_multipart_get_part(mp, i), lazy_min, m) == -1)
				return -1;
		return 0;
	}
	if (GMIME_IS_PART(obj) || GMIME_IS_MESSAGE_PART(obj))
		return walk_leaf(obj, lazy_min, m);
	return 0;
}

void
mime_init(void)
{
	static bool done;

	if (!done) {
		g_mime_init();
		done = true;
	}
}

/* The stream over the mail is gone: only the array's wrapper is ours to
 * free, never the mail itself. */
static void
unwrap_mail(gpointer ba, GObject *stream)
{
	(void)stream;
	g_byte_array_free(ba, FALSE);
}

/*
 * The mail is wrapped, not copied: a GByteArray over the caller's bytes,
 * in a memory stream that does not own it. Every substream the parser
 * makes of it (one per part body, kept by persist_stream on a seekable
 * stream) holds a reference on that stream, so the wrapper goes when the
 * last of them does, whichever of the message, a lazy part or a reader
 * that is. Nothing here writes to the stream, so the bytes stay as they
 * are.
 */
static GMimeStream *
mail_stream(const char *data, size_t len)
{
	GByteArray *ba = g_byte_array_new_take((guint8 *)data, len);
	GMimeStream *stream = g_mime_stream_mem_new_with_byte_array(ba);

	g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(stream), FALSE);
	g_object_weak_ref(G_OBJECT(stream), unwrap_mail, ba);
	return stream;
}

static GMimeMessage *
parse_message(const char *data, size_t len)
{
	static const char *fallback[] = { "UTF-8", "CP932", NULL };
	GMimeParserOptions *opts = g_mime_parser_options_new();
	GMimeStream *stream;
	GMimeParser *parser;
	GMimeMessage *msg;

	g_mime_parser_options_set_fallback_charsets(opts, fallback);
	g_mime_parser_options_set_rfc2047_compliance_mode(opts, GMIME_RFC_COMPLIANCE_LOOSE);
	g_mime_parser_options_set_parameter_compliance_mode(opts, GMIME_RFC_COMPLIANCE_LOOSE);
	stream = mail_stream(data, len);
	parser = g_mime_parser_new_with_stream(stream);
	/* The default; said here because lazy parts depend on it. */
	g_mime_parser_set_persist_stream(parser, TRUE);
	msg = g_mime_parser_construct_message(parser, opts);
	g_object_unref(parser);
	g_object_unref(stream);
	g_mime_parser_options_free(opts);
	return msg;
}

int
mime_parse(const char *data, size_t len, struct mime_msg *out, char *err, size_t errlen)
{
	return mime_parse_lazy(data, len, SIZE_MAX, out, err, errlen);
}

int
mime_parse_lazy(const char *data, size_t len, size_t lazy_min,
    struct mime_msg *out, char *err, size_t errlen)
{
	GMimeMessage *msg;
	GMimeObject *body;
	const char *s;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	if (len == 0) {
		snprintf(err, errlen, "empty message");
		return -1;
	}
	if (len > G_MAXUINT) {
		snprintf(err, errlen, "message too large: %zu octets", len);
		return -1;
	}
	if ((msg = parse_message(data, len)) == NULL) {
		snprintf(err, errlen, "not a mail message: no header block");
		return -1;
	}
	if (read_headers(msg, out) == -1 || read_from(msg, out) == -1)
		goto fail;
	if ((s = mime_header(out, "Subject")) != NULL &&
	    (out->subject = strdup(s)) == NULL)
		goto fail;
	if ((s = g_mime_message_get_message_id(msg)) != NULL &&
	    (out->message_id = gmime_value(s)) == NULL)
		goto fail;
	body = g_mime_message_get_mime_part(msg);
	if (body != NULL && walk(body, lazy_min, out) == -1)
		goto fail;
	rc = 0;
fail:
	/* Lazy parts keep their own references: the rest goes now. */
	g_object_unref(msg);
	if (rc == -1) {
		mime_msg_free(out);
		snprintf(err, errlen, "out of memory reading the message");
	}
	return rc;
}

const char *
mime_header(const struct mime_msg *m, const char *name)
{
	size_t i;

	for (i = 0; i < m->nheaders; i++)
		if (m->headers[i].name != NULL &&
		    strcasecmp(m->headers[i].name, name) == 0)
			return m->headers[i].value;
	return NULL;
}

void
mime_msg_free(struct mime_msg *m)
{
	size_t i;

	free(m->from);
	free(m->subject);
	free(m->message_id);
	free(m->text);
	for (i = 0; i < m->nattach; i++)
		part_free(&m->attachments[i]);
	free(m->attachments);
	for (i = 0; i < m->nheaders; i++) {
		free(m->headers[i].name);
		free(m->headers[i].value);
	}
	free(m->headers);
	memset(m, 0, sizeof(*m));
}

struct mime_reader {
	GMimeStream *s;		/* decoding a part left in the mail, or NULL */
	const char *p;		/* else what is left of its data */
	size_t left;
};

/*
 * What g_mime_data_wrapper_write_to_stream does, as a stream to read
 * from. It reads on its own substream of the content: the wrapper's
 * stream has one position, which two readers would move under each
 * other (and write_to_stream resets).
 */
static GMimeStream *
lazy_stream(GMimeDataWrapper *dw)
{
	GMimeStream *content = g_mime_data_wrapper_get_stream(dw);
	GMimeContentEncoding enc = g_mime_data_wrapper_get_encoding(dw);
	GMimeStream *sub, *fs;
	GMimeFilter *f;

	sub = g_mime_stream_substream(content, content->bound_start,
	    content->bound_end);
	if (enc != GMIME_CONTENT_ENCODING_BASE64 &&
	    enc != GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE &&
	    enc != GMIME_CONTENT_ENCODING_UUENCODE)
		return sub;
	fs = g_mime_stream_filter_new(sub);
	g_object_unref(sub);
	f = g_mime_filter_basic_new(enc, FALSE);
	g_mime_stream_filter_add(GMIME_STREAM_FILTER(fs), f);
	g_object_unref(f);
	return fs;
}

struct mime_reader *
mime_part_open(const struct mime_part *p)
{
	struct mime_reader *r;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	if (p->lazy != NULL)
		r->s = lazy_stream(p->lazy);
	else {
		r->p = p->data;
		r->left = p->len;
	}
	return r;
}

ssize_t
mime_reader_read(struct mime_reader *r, char *buf, size_t n)
{
	ssize_t got;

	if (n > SSIZE_MAX)
		n = SSIZE_MAX;
	if (r->s == NULL) {
		if (n > r->left)
			n = r->left;
		if (n > 0)
			memcpy(buf, r->p, n);
		r->p += n;
		r->left -= n;
		return (ssize_t)n;
	}
	if (n == 0)
		return 0;
	/* A filter stream returns 0 before its end when a block of input
	 * decodes to nothing (a run of line breaks or junk in base64). */
	do
		got = g_mime_stream_read(r->s, buf, n);
	while (got == 0 && !g_mime_stream_eos(r->s));
	return got < 0 ? -1 : got;
}

void
mime_reader_close(struct mime_reader *r)
{
	if (r == NULL)
		return;
	if (r->s != NULL)
		g_object_unref(r->s);
	free(r);
}
