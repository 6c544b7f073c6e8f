/*
 * fuzz_rfc2047: the header encoder on any text.
 *
 * Input: one octet for the length of "Name: " already on the line (0-200),
 * one for the charset, then the text (up to a NUL, as the encoder reads a
 * C string). The output is a header value: printable ASCII, line breaks
 * only as CRLF + white space, no blank continuation line, no line over 998
 * octets, encoded words of at most 75 octets. In UTF-8 it reads back as
 * exactly the cleaned input (invalid octets as U+FFFD, controls as
 * spaces): unfolded when it is plain, word by word when encoded, each word
 * whole characters. In another charset, each word converts back alone and,
 * for ISO-2022-JP, is 7-bit and ends in ASCII; text the charset cannot
 * carry is refused with *unfit set.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mail/charset.h"
#include "mail/rfc2047.h"
#include "check.h"

static const char *const charsets[] = {
	"UTF-8", "ISO-2022-JP", "Shift_JIS", "EUC-JP",
};

/* The encoded words of v, one a line: "=?CS?B?...?=" each. Calls fn on
 * the decoded octets of each; false when v is not made of such words. */
static bool
each_word(const char *v, const char *cs, void (*fn)(const unsigned char *, size_t, void *), void *arg)
{
	size_t cl = strlen(cs), len;
	unsigned char *dec;

	for (;;) {
		const char *end = strstr(v, "\r\n");

		len = end ? (size_t)(end - v) : strlen(v);
		CHECK(len <= 75);
		if (len < cl + 7 || strncmp(v, "=?", 2) != 0 || strncasecmp(v + 2, cs, cl) != 0 ||
		    strncmp(v + 2 + cl, "?B?", 3) != 0 || strncmp(v + len - 2, "?=", 2) != 0)
			return false;
		dec = malloc(len);
		if (dec == NULL)
			abort();
		size_t n = fuzz_base64_decode(v + cl + 5, len - cl - 7, dec);
		CHECK(n != (size_t)-1);
		fn(dec, n, arg);
		free(dec);
		if (end == NULL)
			return true;
		CHECK(end[2] == ' ');
		v = end + 3;
	}
}

struct utf8_join {
	char *p;
	size_t len;
};

static void
utf8_word(const unsigned char *w, size_t n, void *arg)
{
	struct utf8_join *j = arg;

	CHECK(n > 0);
	CHECK(fuzz_utf8_ok((const char *)w, n));	/* whole characters only */
	memcpy(j->p + j->len, w, n);
	j->len += n;
	j->p[j->len] = '\0';
}

static const char *word_charset;

static void
other_word(const unsigned char *w, size_t n, void *arg)
{
	char *u;

	(void)arg;
	CHECK(n > 0);
	if (strcasecmp(word_charset, "ISO-2022-JP") == 0) {
		bool ascii = true;

		for (size_t i = 0; i < n; i++) {
			CHECK(w[i] < 0x80);
			if (w[i] == 0x1b && i + 2 < n)
				ascii = w[i + 1] == '(' && (w[i + 2] == 'B' || w[i + 2] == 'J');
		}
		CHECK(ascii);
	}
	u = charset_to_utf8(word_charset, (const char *)w, n, NULL);
	CHECK(u != NULL);
	free(u);
}

/* Plain ASCII: the value with its folds taken out. */
static char *
unfold(const char *v)
{
	char *u = malloc(strlen(v) + 1);
	size_t n = 0;

	if (u == NULL)
		abort();
	for (; *v != '\0'; v++)
		if (*v != '\r' && *v != '\n')
			u[n++] = *v;
	u[n] = '\0';
	return u;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *cs;
	size_t name_len;
	char *text, *out, *clean, *plain;
	bool unfit = false;

	if (size < 2)
		return 0;
	name_len = data[0] % 201;
	cs = charsets[data[1] % (sizeof(charsets) / sizeof(charsets[0]))];
	text = fuzz_strndup(data + 2, size - 2);
	fuzz_poison_stack();
	/* Both ways of asking for UTF-8 are one encoder. */
	if (strcmp(cs, "UTF-8") == 0 && (data[1] & 0x80))
		out = rfc2047_encode(text, name_len);
	else
		out = rfc2047_encode_charset(text, name_len, cs, &unfit);
	if (out == NULL) {
		CHECK(strcmp(cs, "UTF-8") != 0 && unfit);
		free(text);
		return 0;
	}
	CHECK(!unfit);
	CHECK(fuzz_header_value_ok(out, name_len));
	clean = fuzz_clean_header_text(text);
	if (strncmp(out, "=?", 2) != 0) {
		/* Plain: printable ASCII without "=?", only folded. */
		plain = unfold(out);
		CHECK(strcmp(plain, clean) == 0);
		free(plain);
	} else if (strcmp(cs, "UTF-8") == 0) {
		struct utf8_join j = { malloc(strlen(out) + 1), 0 };

		if (j.p == NULL)
			abort();
		j.p[0] = '\0';
		CHECK(each_word(out, "UTF-8", utf8_word, &j));
		CHECK(strcmp(j.p, clean) == 0);
		free(j.p);
	} else {
		word_charset = cs;
		CHECK(each_word(out, cs, other_word, NULL));
	}
	free(clean);
	free(out);
	free(text);
	return 0;
}
