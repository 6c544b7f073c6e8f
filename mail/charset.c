/*
 * charset: the charsets of Japanese mail to and from UTF-8 (iconv).
 *
 *	utf8_valid		strict UTF-8 (no overlongs, no surrogates)
 *	charset_to_utf8		declared charset -> UTF-8
 *	charset_guess_to_utf8	undeclared bytes (CSV lists) -> UTF-8
 *	charset_from_utf8	UTF-8 -> charset, or the offset that does not fit
 *
 * Charset names are read the way Japanese mail means them, not the way the
 * registry defines them:
 *
 *  - Shift_JIS and its aliases are CP932: handsets and Windows write the
 *    NEC and IBM vendor characters (①, ㈱) and label the result Shift_JIS.
 *  - ISO-2022-JP is decoded as CP50221 does: every JIS X 0208 code, the
 *    NEC row 13 and the IBM rows 89-92 included, is moved to its CP932 code
 *    arithmetically and CP932 does the rest. glibc has no CP50221, and its
 *    ISO-2022-JP refuses those rows. Text with JIS X 0212 or 0213 escapes
 *    falls back to glibc's ISO-2022-JP-2 and ISO-2022-JP-3.
 *  - EUC-JP is EUC-JP-MS when iconv has it.
 *
 * Writing is strict: ISO-2022-JP is written only with what ISO-2022-JP
 * carries, so a caller learns (from *bad) that ① will not fit. The six
 * characters that CP932 and JIS map to different code points (～ and 〜,
 * ∥ and ‖, － and −, ￠ ¢, ￡ £, ￢ ¬) are written as the other one when
 * only that one fits.
 *
 * Guessing, for lists saved without a declared charset, tries in order: a
 * byte order mark (UTF-8, or UTF-16 as Excel's "Unicode text" writes it),
 * ISO-2022-JP escapes in 7-bit text, valid UTF-8, CP932, EUC-JP.
 *
 * A leading U+FEFF is dropped from every conversion to UTF-8: a byte order
 * mark is never text. All results are malloc'd and NUL-terminated; NULL
 * means unknown charset, bytes not valid in it, or out of memory.
 */
#include <errno.h>
#include <iconv.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mail/charset.h"

#define CHARSET_NAME_MAX 40

enum cs_kind {
	CS_ICONV,	/* iconv under the name in cs->name */
	CS_UTF8,
	CS_JIS,		/* ISO-2022-JP family, decoded through CP932 */
};

struct cs {
	enum cs_kind kind;
	char name[CHARSET_NAME_MAX + 1];
};

static const char *const sjis_names[] = {
	"shift_jis", "shift-jis", "sjis", "x-sjis", "cp932", "windows-31j",
	"ms932", "ms_kanji", "csshiftjis", "x-ms-cp932", "ibm-943", "ibm943",
	"csWindows31J", NULL
};
static const char *const jis_names[] = {
	"iso-2022-jp", "csiso2022jp", "iso-2022-jp-1", "iso-2022-jp-2",
	"iso-2022-jp-3", "iso-2022-jp-2004", "cp50220", "cp50221",
	"cp50222", "jis", "x-jis", NULL
};
static const char *const eucjp_names[] = {
	"euc-jp", "eucjp", "x-euc-jp", "euc-jp-ms", "eucjp-ms",
	"eucjp-win", "cp51932", "cseucpkdfmtjapanese", NULL
};
static const char *const utf8_names[] = {
	"utf-8", "utf8", "x-utf-8", NULL
};

static bool
in_list(const char *name, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strcasecmp(name, *list) == 0)
			return true;
	return false;
}

static bool
iconv_has(const char *name)
{
	iconv_t cd;

	if ((cd = iconv_open("UTF-8", name)) == (iconv_t)-1)
		return false;
	iconv_close(cd);
	return true;
}

/*
 * The name comes from mail: only plain charset names reach iconv, never
 * glibc's "//IGNORE" or "//TRANSLIT" suffixes or a gconv path.
 */
static bool
name_plain(const char *name)
{
	size_t i, len = strlen(name);

	if (len == 0 || len > CHARSET_NAME_MAX)
		return false;
	for (i = 0; i < len; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("-_.:+", c) != NULL))
			return false;
	}
	return true;
}

static int
cs_lookup(const char *name, struct cs *cs)
{
	/* Probed once; every thread would find the same answer. */
	static atomic_int have_eucjp_ms = -1;

	if (name == NULL || !name_plain(name))
		return -1;
	cs->kind = CS_ICONV;
	if (in_list(name, utf8_names))
		cs->kind = CS_UTF8;
	else if (in_list(name, jis_names))
		cs->kind = CS_JIS;
	else if (in_list(name, sjis_names))
		name = "CP932";
	else if (in_list(name, eucjp_names)) {
		if (have_eucjp_ms == -1)
			have_eucjp_ms = iconv_has("EUC-JP-MS");
		name = have_eucjp_ms ? "EUC-JP-MS" : "EUC-JP";
	}
	strcpy(cs->name, name);
	return 0;
}

/* Offset of the first byte that does not start a valid sequence, or len. */
static size_t
utf8_check(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n, k;
	uint32_t cp, min;

	while (i < len) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if ((p[i] & 0xe0) == 0xc0) {
			n = 1; cp = p[i] & 0x1f; min = 0x80;
		} else if ((p[i] & 0xf0) == 0xe0) {
			n = 2; cp = p[i] & 0x0f; min = 0x800;
		} else if ((p[i] & 0xf8) == 0xf0) {
			n = 3; cp = p[i] & 0x07; min = 0x10000;
		} else
			return i;
		if (len - i <= n)
			return i;
		for (k = 1; k <= n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return i;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return i;
		i += n + 1;
	}
	return len;
}

bool
utf8_valid(const char *s, size_t len)
{
	return utf8_check(s, len) == len;
}

/* Output buffer that grows; always leaves room for the final NUL. */
struct obuf {
	char *p;
	size_t len, cap;
};

static int
obuf_reserve(struct obuf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->cap - b->len > more)
		return 0;
	cap = b->cap ? b->cap : 64;
	while (cap - b->len <= more)
		cap *= 2;
	if ((p = realloc(b->p, cap)) == NULL)
		return -1;
	b->p = p;
	b->cap = cap;
	return 0;
}

static int
obuf_put(struct obuf *b, const char *s, size_t len)
{
	if (obuf_reserve(b, len) == -1)
		return -1;
	memcpy(b->p + b->len, s, len);
	b->len += len;
	return 0;
}

static char *
obuf_finish(struct obuf *b, size_t *outlen)
{
	if (obuf_reserve(b, 0) == -1) {
		free(b->p);
		return NULL;
	}
	b->p[b->len] = '\0';
	if (outlen != NULL)
		*outlen = b->len;
	return b->p;
}

/*
 * One iconv pass over in. Returns 0 at the end of the input, or -1 with
 * *in and *inleft at the first sequence that does not convert (EILSEQ, or
 * EINVAL for a sequence cut short by the end of the input).
 */
static int
iconv_run(iconv_t cd, char **in, size_t *inleft, struct obuf *b)
{
	char *out;
	size_t outleft;

	for (;;) {
		if (obuf_reserve(b, *inleft * 2 + 16) == -1)
			return -1;
		out = b->p + b->len;
		outleft = b->cap - b->len - 1;
		if (iconv(cd, *inleft ? in : NULL, inleft, &out, &outleft) != (size_t)-1) {
			b->len = (size_t)(out - b->p);
			if (*inleft == 0)
				return 0;
			continue;
		}
		b->len = (size_t)(out - b->p);
		if (errno != E2BIG)
			return -1;
	}
}

static char *
iconv_all(const char *to, const char *from, const char *in, size_t len, size_t *outlen)
{
	struct obuf b = { NULL, 0, 0 };
	iconv_t cd;
	char *ip = (char *)(uintptr_t)in;
	size_t left = len;
	int rc;

	if ((cd = iconv_open(to, from)) == (iconv_t)-1)
		return NULL;
	rc = iconv_run(cd, &ip, &left, &b);
	if (rc == 0) {
		/* Flush a stateful encoder back to its initial state. */
		rc = iconv_run(cd, &ip, &left, &b);
	}
	iconv_close(cd);
	if (rc == -1) {
		free(b.p);
		return NULL;
	}
	return obuf_finish(&b, outlen);
}

enum jis_mode { JM_ASCII, JM_KANJI, JM_KANA };

/* One escape sequence: 0 when it selects a set CP932 has, else 1. */

static int
jis_escape(const unsigned char *p, size_t left, enum jis_mode *mode, size_t *used)
{
	static const struct {
		const char *seq;
		enum jis_mode mode;
	} esc[] = {
		{ "(B", JM_ASCII }, { "(J", JM_ASCII }, { "(H", JM_ASCII },
		{ "$B", JM_KANJI }, { "$@", JM_KANJI }, { "(I", JM_KANA },
	};
	size_t i;

	/* ESC & @ announces JIS X 0208-1990; an ESC $ B follows. */
	if (left >= 3 && p[1] == '&' && p[2] == '@') {
		*used = 3;
		return 0;
	}
	for (i = 0; i < sizeof(esc) / sizeof(esc[0]); i++) {
		if (left >= 3 && p[1] == (unsigned char)esc[i].seq[0] &&
		    p[2] == (unsigned char)esc[i].seq[1]) {
			*mode = esc[i].mode;
			*used = 3;
			return 0;
		}
	}
	return 1;
}

/* JIS X 0208 row and cell to Shift_JIS, by the arithmetic that defines
 * Shift_JIS; CP932's NEC and IBM rows follow it too. */
static void
jis_to_sjis(unsigned char j1, unsigned char j2, char out[2])
{
	unsigned int s1, s2;

	s1 = ((j1 - 0x21u) >> 1) + 0x81u;
	if (s1 > 0x9f)
		s1 += 0x40;
	if (j1 & 1)
		s2 = j2 + (j2 >= 0x60 ? 0x20u : 0x1fu);
	else
		s2 = j2 + 0x7eu;
	out[0] = (char)s1;
	out[1] = (char)s2;
}

/*
 * ISO-2022-JP (and the CP50220-2 variants) to CP932 bytes. Returns 1 when
 * the text uses a set CP932 does not have (JIS X 0212, 0213, the -2 sets),
 * -1 when it is not ISO-2022-JP at all (8-bit bytes, a cut-off pair).
 */
static int
jis_to_cp932(const unsigned char *p, size_t len, struct obuf *b)
{
	enum jis_mode mode = JM_ASCII;
	size_t i = 0, used;
	char two[2];
	int rc;

	while (i < len) {
		unsigned char c = p[i];

		if (c == 0x1b) {
			if ((rc = jis_escape(p + i, len - i, &mode, &used)) != 0)
				return rc;
			i += used;
			continue;
		}
		if (c >= 0x80)
			return -1;
		if (c == 0x0e || c == 0x0f) {
			/* CP50222: SO and SI shift to half-width katakana and back. */
			mode = c == 0x0e ? JM_KANA : JM_ASCII;
			i++;
			continue;
		}
		/* Lenient: line ends and spaces inside a two-byte run are
		 * passed through, as broken encoders forget ESC ( B. */
		if (c < 0x21 || c == 0x7f || mode == JM_ASCII) {
			if (obuf_put(b, (const char *)&c, 1) == -1)
				return -1;
			i++;
		} else if (mode == JM_KANA) {
			if (c > 0x5f)
				return -1;
			two[0] = (char)(c + 0x80);
			if (obuf_put(b, two, 1) == -1)
				return -1;
			i++;
		} else {
			if (i + 1 >= len || p[i + 1] < 0x21 || p[i + 1] > 0x7e)
				return -1;
			jis_to_sjis(c, p[i + 1], two);
			if (obuf_put(b, two, 2) == -1)
				return -1;
			i += 2;
		}
	}
	return 0;
}

static char *
jis_to_utf8(const char *in, size_t len, size_t *outlen)
{
	struct obuf b = { NULL, 0, 0 };
	char *out = NULL;
	int rc;

	rc = jis_to_cp932((const unsigned char *)in, len, &b);
	if (rc == 0)
		out = iconv_all("UTF-8", "CP932", b.p ? b.p : "", b.len, outlen);
	free(b.p);
	if (out != NULL || rc == -1)
		return out;
	if ((out = iconv_all("UTF-8", "ISO-2022-JP-2", in, len, outlen)) != NULL)
		return out;
	return iconv_all("UTF-8", "ISO-2022-JP-3", in, len, outlen);
}

static char *
drop_bom(char *s, size_t *len)
{
	if (s == NULL || strncmp(s, "\xef\xbb\xbf", 3) != 0)
		return s;
	*len -= 3;
	memmove(s, s + 3, *len + 1);
	return s;
}

static char *
copy_utf8(const char *in, size_t len, size_t *outlen)
{
	struct obuf b = { NULL, 0, 0 };

	if (!utf8_valid(in, len))
		return NULL;
	if (obuf_put(&b, in, len) == -1) {
		free(b.p);
		return NULL;
	}
	return obuf_finish(&b, outlen);
}

char *
charset_to_utf8(const char *charset, const char *in, size_t len, size_t *outlen)
{
	return charset_piece_to_utf8(charset, in, len, true, outlen);
}

char *
charset_piece_to_utf8(const char *charset, const char *in, size_t len, bool first, size_t *outlen)
{
	struct cs cs;
	size_t n = 0;
	char *out;

	if (cs_lookup(charset, &cs) == -1)
		return NULL;
	switch (cs.kind) {
	case CS_UTF8:
		out = copy_utf8(in, len, &n);
		break;
	case CS_JIS:
		out = jis_to_utf8(in, len, &n);
		break;
	default:
		out = iconv_all("UTF-8", cs.name, in, len, &n);
		break;
	}
	if (first)
		out = drop_bom(out, &n);
	if (out != NULL && outlen != NULL)
		*outlen = n;
	return out;
}

static bool
has_jis_escape(const char *in, size_t len)
{
	size_t i;

	for (i = 0; i + 2 < len; i++) {
		if (in[i] != 0x1b)
			continue;
		if ((in[i + 1] == '$' && (in[i + 2] == 'B' || in[i + 2] == '@')) ||
		    (in[i + 1] == '(' && in[i + 2] == 'I'))
			return true;
	}
	return false;
}

static bool
seven_bit(const char *in, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)in[i] >= 0x80)
			return false;
	return true;
}

bool
charset_cuttable(const char *charset)
{
	return in_list(charset, utf8_names) || in_list(charset, sjis_names) ||
	    in_list(charset, eucjp_names) || strcasecmp(charset, "us-ascii") == 0;
}

void
charset_guess_feed(struct charset_guess *g, const char *in, size_t len)
{
	if (!g->started) {
		g->started = true;
		g->seven = g->utf8 = true;
		/* Excel's "Unicode text" is UTF-16LE with a byte order mark. */
		g->utf16 = len >= 2 && (memcmp(in, "\xff\xfe", 2) == 0 || memcmp(in, "\xfe\xff", 2) == 0);
		if ((g->bom_utf8 = len >= 3 && memcmp(in, "\xef\xbb\xbf", 3) == 0))
			in += 3, len -= 3;
	}
	if (g->utf16 || g->bom_utf8) {
		g->utf8 = g->utf8 && (!g->bom_utf8 || utf8_valid(in, len));
		return;
	}
	g->seven = g->seven && seven_bit(in, len);
	g->jis = g->jis || has_jis_escape(in, len);
	g->utf8 = g->utf8 && utf8_valid(in, len);
}

/*
 * ISO-2022-JP is tested before UTF-8: it is 7-bit, so it is always valid
 * UTF-8 too, and no UTF-8 text carries a raw ESC $ B.
 */
const char *
charset_guess_name(const struct charset_guess *g)
{
	if (g->utf16)
		return "UTF-16";
	if (g->bom_utf8)
		return g->utf8 ? "UTF-8" : "";
	if (g->seven && g->jis)
		return "ISO-2022-JP";
	if (g->utf8)
		return "UTF-8";
	return NULL;
}

char *
charset_guess_to_utf8(const char *in, size_t len, size_t *outlen)
{
	struct charset_guess g = { 0 };
	const char *name;
	char *out;

	charset_guess_feed(&g, in, len);
	if ((name = charset_guess_name(&g)) != NULL)
		return *name ? charset_to_utf8(name, in, len, outlen) : NULL;
	if ((out = charset_to_utf8("CP932", in, len, outlen)) != NULL)
		return out;
	return charset_to_utf8("EUC-JP", in, len, outlen);
}

/* The CP932 and JIS sides of the characters they map differently. */
static const struct {
	const char *ms, *jis;
} ms_jis_pairs[] = {
	{ "\xef\xbd\x9e", "\xe3\x80\x9c" },	/* U+FF5E, U+301C wave dash */
	{ "\xe2\x88\xa5", "\xe2\x80\x96" },	/* U+2225, U+2016 double bar */
	{ "\xef\xbc\x8d", "\xe2\x88\x92" },	/* U+FF0D, U+2212 minus */
	{ "\xef\xbf\xa0", "\xc2\xa2" },		/* U+FFE0, U+00A2 cent */
	{ "\xef\xbf\xa1", "\xc2\xa3" },		/* U+FFE1, U+00A3 pound */
	{ "\xef\xbf\xa2", "\xc2\xac" },		/* U+FFE2, U+00AC not */
};

static const char *
ms_jis_other(const char *p, size_t left, size_t *used)
{
	size_t i, n;

	for (i = 0; i < sizeof(ms_jis_pairs) / sizeof(ms_jis_pairs[0]); i++) {
		n = strlen(ms_jis_pairs[i].ms);
		if (left >= n && memcmp(p, ms_jis_pairs[i].ms, n) == 0) {
			*used = n;
			return ms_jis_pairs[i].jis;
		}
		n = strlen(ms_jis_pairs[i].jis);
		if (left >= n && memcmp(p, ms_jis_pairs[i].jis, n) == 0) {
			*used = n;
			return ms_jis_pairs[i].ms;
		}
	}
	return NULL;
}

/* Convert through cd, retrying a refused character as its twin. */
static int
from_utf8_run(iconv_t cd, const char *in, size_t len, struct obuf *b, size_t *bad)
{
	char *ip = (char *)(uintptr_t)in, *tp;
	size_t left = len, used, tleft;
	const char *twin;

	for (;;) {
		if (iconv_run(cd, &ip, &left, b) == 0)
			return iconv_run(cd, &ip, &left, b);
		*bad = (size_t)(ip - in);
		if (errno != EILSEQ ||
		    (twin = ms_jis_other(ip, left, &used)) == NULL)
			return -1;
		tp = (char *)(uintptr_t)twin;
		tleft = strlen(twin);
		if (iconv_run(cd, &tp, &tleft, b) == -1)
			return -1;
		ip += used;
		left -= used;
	}
}

char *
charset_from_utf8(const char *charset, const char *in, size_t len, size_t *outlen, size_t *bad)
{
	struct obuf b = { NULL, 0, 0 };
	struct cs cs;
	iconv_t cd;
	size_t dummy;
	int rc;

	if (bad == NULL)
		bad = &dummy;
	/* An unknown charset fits nothing: the offset is the end of the text. */
	*bad = len;
	if (cs_lookup(charset, &cs) == -1)
		return NULL;
	if (cs.kind == CS_UTF8) {
		if ((*bad = utf8_check(in, len)) != len)
			return NULL;
		return copy_utf8(in, len, outlen);
	}
	/* Strict on the way out: plain ISO-2022-JP, as handsets expect it. */
	if (cs.kind == CS_JIS)
		strcpy(cs.name, "ISO-2022-JP");
	if ((cd = iconv_open(cs.name, "UTF-8")) == (iconv_t)-1)
		return NULL;
	rc = from_utf8_run(cd, in, len, &b, bad);
	iconv_close(cd);
	if (rc == -1) {
		free(b.p);
		return NULL;
	}
	return obuf_finish(&b, outlen);
}
