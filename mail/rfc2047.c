/*
 * rfc2047: header values for outgoing mail.
 *
 * rfc2047_encode turns a UTF-8 string into a header value ready to follow
 * "Name: ". First the text is made safe: CR, LF and every other control
 * character but TAB become a space (so nothing of the caller's can end the
 * header or start a new one), and bytes that are not UTF-8 become U+FFFD.
 * Then:
 *
 *  - plain printable ASCII is written as it is, folded (CRLF before a
 *    white space) so that lines stay within 78 octets where a word allows;
 *  - anything else becomes "=?UTF-8?B?...?=" encoded words of at most 75
 *    octets, one a line, folded with CRLF SP, each holding whole UTF-8
 *    characters only, so every word decodes on its own.
 *
 * ASCII that a reader would take for an encoded word ("=?") and ASCII with
 * a word too long to fold within 998 octets are encoded too: the first
 * would not read back as written, the second would break the line limit.
 *
 * rfc2047_encode_charset does the same in another charset (ISO-2022-JP for
 * the carriers that want it). Plain ASCII goes out as above; other text
 * becomes "=?ISO-2022-JP?B?...?=" words, each converted by itself (mail/
 * charset), so each starts in ASCII, ends with ESC ( B and decodes alone
 * (RFC 1468). A word takes as many whole characters as its 75 octets hold
 * once converted. Text with a character the charset lacks is refused as a
 * whole, never written with '?': the caller then picks UTF-8.
 *
 * The result is malloc'd, has no final CRLF, and is NULL only when memory
 * runs out, or, from rfc2047_encode_charset, when the text does not fit
 * the charset (*unfit says which).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/strbuf.h"
#include "mail/charset.h"
#include "mail/rfc2047.h"

#define LINE_SOFT 78		/* RFC 5322 2.1.1: SHOULD */
#define LINE_HARD 998		/* RFC 5322 2.1.1: MUST */
#define WORD_MAX 75		/* RFC 2047 2 */
#define WORD_OVERHEAD 12	/* "=?UTF-8?B?" and "?=" */
#define WORD_MIN (WORD_OVERHEAD + 8)	/* room for one 4-octet character */

/*
 * The length of the well-formed UTF-8 sequence at s (at most n octets), with
 * its code point in *cp, or 0 when it is not one (overlong forms, surrogates
 * and values past U+10FFFF included).
 */
static size_t
utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
	unsigned char c = s[0];
	size_t len, i;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		*cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		*cp = c & 0x0f;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		*cp = c & 0x07;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if (s[i] < lo || s[i] > hi)
			return 0;
		lo = 0x80;
		hi = 0xbf;
		*cp = (*cp << 6) | (s[i] & 0x3f);
	}
	return len;
}

/* The input made safe for a header: see the top of the file. Each
 * malformed octet becomes one U+FFFD. */
static void
clean(const char *in, struct strbuf *out)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t n = strlen(in), i = 0, len;
	uint32_t cp;

	while (i < n) {
		if ((len = utf8_next(s + i, n - i, &cp)) == 0) {
			strbuf_add(out, "\xef\xbf\xbd", 3);
			i++;
			continue;
		}
		/* C0, DEL and C1 controls; TAB is white space in a header. */
		if ((cp < 0x20 && cp != '\t') || (cp >= 0x7f && cp <= 0x9f))
			strbuf_add(out, " ", 1);
		else
			strbuf_add(out, (const char *)s + i, len);
		i += len;
	}
	strbuf_add(out, "", 0);	/* an empty value is "", not NULL */
}

static bool
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* The length of the token at s: white space, then up to the next one. */
static size_t
token_len(const char *s)
{
	size_t i = 0;

	while (is_wsp(s[i]))
		i++;
	while (s[i] != '\0' && !is_wsp(s[i]))
		i++;
	return i;
}

/* Whether s can go out as it is, as far as its octets go: printable ASCII
 * and no "=?". */
static bool
ascii_plain(const char *s)
{
	for (size_t i = 0; s[i] != '\0'; i++)
		if ((unsigned char)s[i] >= 0x7f || (s[i] < 0x20 && s[i] != '\t'))
			return false;
	return strstr(s, "=?") == NULL;
}

/* Fold before a token that would pass 78 octets, unless the line holds
 * nothing yet or the token is only trailing white space (a line of white
 * space alone is not allowed). With out NULL, only measure. Returns the
 * longest line, header name included. */
static size_t
fold_ascii(const char *s, size_t name_len, struct strbuf *out)
{
	size_t i, t, col = name_len, longest = name_len;
	bool used = false;

	for (i = 0; s[i] != '\0'; i += t) {
		t = token_len(s + i);
		if (used && col + t > LINE_SOFT && !is_wsp(s[i + t - 1])) {
			if (out != NULL)
				strbuf_add(out, "\r\n", 2);
			col = 0;
		}
		if (out != NULL)
			strbuf_add(out, s + i, t);
		col += t;
		used = true;
		if (col > longest)
			longest = col;
	}
	return longest;
}

static void
base64(const unsigned char *in, size_t n, struct strbuf *out)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char q[4];

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		q[0] = tab[(v >> 18) & 63];
		q[1] = tab[(v >> 12) & 63];
		q[2] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		q[3] = i + 2 < n ? tab[v & 63] : '=';
		strbuf_add(out, q, 4);
	}
}

/* The most raw octets an encoded word of wmax octets can hold. */
static size_t
word_room_for(size_t wmax, size_t overhead)
{
	return (wmax - overhead) / 4 * 3;
}

static size_t
word_room(size_t wmax)
{
	return word_room_for(wmax, WORD_OVERHEAD);
}

/* Encoded words, one a line. The first one is sized to fit beside the
 * header name when it can; it always holds at least one character. */
static void
encode_words(const char *s, size_t name_len, struct strbuf *out)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), i = 0, room, take, len;
	size_t first = name_len + WORD_MAX <= LINE_SOFT ? WORD_MAX :
	    name_len + WORD_MIN <= LINE_SOFT ? LINE_SOFT - name_len : WORD_MIN;
	uint32_t cp;

	room = word_room(first);
	while (i < n) {
		/* The input is clean: every sequence is whole and valid. */
		for (take = 0; i + take < n; take += len) {
			len = utf8_next(u + i + take, n - i - take, &cp);
			if (len == 0)
				len = 1;	/* not after clean(); never loop forever */
			if (take + len > room)
				break;
		}
		if (i > 0)
			strbuf_add(out, "\r\n ", 3);
		strbuf_add(out, "=?UTF-8?B?", 10);
		base64(u + i, take, out);
		strbuf_add(out, "?=", 2);
		i += take;
		room = word_room(WORD_MAX);
	}
}

/*
 * Encoded words in a charset other than UTF-8. A word grows one whole
 * character at a time and is converted again each time: a stateful charset
 * spends octets on escapes that only the whole word shows, and words are
 * short. The text converts as a whole (checked by the caller), so every
 * part of it does too, and a failed conversion here means no memory.
 */
static void
encode_words_conv(const char *s, size_t name_len, const char *charset, struct strbuf *out)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), i = 0, take, len, clen, best_len, room;
	size_t overhead = strlen(charset) + 7, wmin = overhead + 12;
	size_t first = name_len + WORD_MAX <= LINE_SOFT ? WORD_MAX :
	    name_len + wmin <= LINE_SOFT ? LINE_SOFT - name_len : wmin;
	char *conv, *best;
	uint32_t cp;

	room = word_room_for(first, overhead);
	while (i < n && !out->oom) {
		best = NULL;
		best_len = 0;
		for (take = 0; i + take < n; take += len) {
			if ((len = utf8_next(u + i + take, n - i - take, &cp)) == 0)
				len = 1;	/* not after clean(); never loop forever */
			conv = charset_from_utf8(charset, s + i, take + len, &clen, NULL);
			if (conv == NULL) {
				out->oom = true;
				break;
			}
			/* The first character always goes in: 12 base64 octets
			 * hold any one character with its escapes. */
			if (clen > room && best != NULL) {
				free(conv);
				break;
			}
			free(best);
			best = conv;
			best_len = clen;
		}
		if (best == NULL)
			break;
		if (i > 0)
			strbuf_add(out, "\r\n ", 3);
		strbuf_add(out, "=?", 2);
		strbuf_add(out, charset, strlen(charset));
		strbuf_add(out, "?B?", 3);
		base64((const unsigned char *)best, best_len, out);
		strbuf_add(out, "?=", 2);
		free(best);
		i += take;
		room = word_room_for(WORD_MAX, overhead);
	}
}

char *
rfc2047_encode_charset(const char *utf8, size_t name_len, const char *charset,
    bool *unfit)
{
	struct strbuf text = { 0 }, out = { 0 };
	char *conv;

	if (unfit != NULL)
		*unfit = false;
	if (charset == NULL || strcasecmp(charset, "UTF-8") == 0)
		return rfc2047_encode(utf8, name_len);
	clean(utf8 ? utf8 : "", &text);
	if (text.oom) {
		free(text.p);
		return NULL;
	}
	strbuf_add(&out, "", 0);
	if (ascii_plain(text.p) && fold_ascii(text.p, name_len, NULL) <= LINE_HARD)
		fold_ascii(text.p, name_len, &out);
	else if ((conv = charset_from_utf8(charset, text.p, text.len, NULL, NULL)) != NULL) {
		free(conv);
		encode_words_conv(text.p, name_len, charset, &out);
	} else {
		if (unfit != NULL)
			*unfit = true;
		out.oom = true;
	}
	free(text.p);
	if (out.oom) {
		free(out.p);
		return NULL;
	}
	return out.p;
}

char *
rfc2047_encode(const char *utf8, size_t name_len)
{
	struct strbuf text = { 0 }, out = { 0 };

	clean(utf8 ? utf8 : "", &text);
	if (text.oom) {
		free(text.p);
		return NULL;
	}
	strbuf_add(&out, "", 0);
	if (ascii_plain(text.p) && fold_ascii(text.p, name_len, NULL) <= LINE_HARD)
		fold_ascii(text.p, name_len, &out);
	else
		encode_words(text.p, name_len, &out);
	free(text.p);
	if (out.oom) {
		free(out.p);
		return NULL;
	}
	return out.p;
}
