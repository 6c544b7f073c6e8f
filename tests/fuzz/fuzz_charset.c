/*
 * fuzz_charset: conversions between the charsets of Japanese mail and
 * UTF-8, on any bytes.
 *
 * Input: one octet choosing the operation and the charset, then the bytes
 * (for a charset named in the input: its name, a NUL, then the bytes).
 *
 *  - utf8_valid agrees with a strict validator written here;
 *  - charset_to_utf8 and charset_guess_to_utf8 return valid UTF-8,
 *    NUL-terminated at the length they report;
 *  - charset_from_utf8 succeeds on valid UTF-8 for UTF-8, fails with the
 *    offset of the first octet it cannot write inside the text, and what it
 *    writes reads back with charset_to_utf8 (ISO-2022-JP: 7-bit, ending in
 *    ASCII; both only for text without ESC, SO and SI, which its callers
 *    never pass).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mail/charset.h"
#include "check.h"

static const char *const charsets[] = {
	/* What Japanese mail declares. */
	"UTF-8", "ISO-2022-JP", "Shift_JIS", "CP932", "EUC-JP", "ISO-2022-JP-2",
	"ISO-2022-JP-3", "csWindows31J", "x-sjis", "eucJP-ms", "CP50221", "utf8",
	/* Anything else a mail may name reaches iconv. */
	"UTF-16", "UTF-16LE", "UTF-7", "UTF-32", "GB18030", "BIG5", "EUC-KR",
	"ISO-8859-1", "KOI8-R", "ISO-2022-KR", "US-ASCII",
};
#define NCHARSETS (sizeof(charsets) / sizeof(charsets[0]))
#define NAMED NCHARSETS	/* the charset's name comes from the input */

/* Charsets Hato writes: what it writes, it must read back. */
static bool
written_by_hato(const char *cs)
{
	return strcasecmp(cs, "UTF-8") == 0 || strcasecmp(cs, "ISO-2022-JP") == 0 ||
	    strcasecmp(cs, "Shift_JIS") == 0 || strcasecmp(cs, "CP932") == 0 ||
	    strcasecmp(cs, "EUC-JP") == 0;
}

/* Callers keep ESC, SO and SI out of ISO-2022-JP (compose refuses them,
 * rfc2047 makes them spaces): written raw, they switch sets on the reader. */
static bool
switches_sets(const char *cs, const char *in, size_t len)
{
	return strcasecmp(cs, "ISO-2022-JP") == 0 &&
	    (memchr(in, 0x1b, len) != NULL || memchr(in, 0x0e, len) != NULL ||
	    memchr(in, 0x0f, len) != NULL);
}

static void
check_utf8_out(char *out, size_t outlen)
{
	if (out == NULL)
		return;
	CHECK(out[outlen] == '\0');
	CHECK(fuzz_utf8_ok(out, outlen));
	free(out);
}

static void
check_jis_out(const char *out, size_t len)
{
	bool ascii = true;

	for (size_t i = 0; i < len; i++) {
		CHECK((unsigned char)out[i] < 0x80);
		if (out[i] == 0x1b && i + 2 < len)
			ascii = out[i + 1] == '(' && (out[i + 2] == 'B' || out[i + 2] == 'J');
	}
	CHECK(ascii);
}

static void
from_utf8(const char *cs, const char *in, size_t len)
{
	size_t outlen = 0, bad = 0, backlen = 0;
	char *out, *back;

	out = charset_from_utf8(cs, in, len, &outlen, &bad);
	if (out == NULL) {
		CHECK(bad <= len);
		if (strcasecmp(cs, "UTF-8") == 0 || strcasecmp(cs, "utf8") == 0 ||
		    strcasecmp(cs, "x-utf-8") == 0) {
			CHECK(!fuzz_utf8_ok(in, len));
			CHECK(fuzz_utf8_ok(in, bad));
		}
		return;
	}
	CHECK(out[outlen] == '\0');
	if (switches_sets(cs, in, len)) {
		free(out);
		return;
	}
	if (strcasecmp(cs, "ISO-2022-JP") == 0)
		check_jis_out(out, outlen);
	if (written_by_hato(cs)) {
		back = charset_to_utf8(cs, out, outlen, &backlen);
		CHECK(back != NULL);
		check_utf8_out(back, backlen);
	}
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in, *cs;
	char name[64];
	size_t len, outlen = 0, which;
	unsigned op;
	bool valid;

	if (size < 1)
		return 0;
	op = data[0] % 3;
	which = (data[0] / 3) % (NCHARSETS + 1);
	in = (const char *)data + 1;
	len = size - 1;
	if (which == NAMED) {
		const char *nul = memchr(in, '\0', len < sizeof(name) ? len : sizeof(name));

		if (nul == NULL)
			return 0;
		memcpy(name, in, (size_t)(nul - in) + 1);
		cs = name;
		len -= (size_t)(nul - in) + 1;
		in = nul + 1;
	} else
		cs = charsets[which];

	fuzz_poison_stack();
	valid = fuzz_utf8_ok(in, len);
	CHECK(utf8_valid(in, len) == valid);
	switch (op) {
	case 0:
		check_utf8_out(charset_guess_to_utf8(in, len, &outlen), outlen);
		break;
	case 1:
		check_utf8_out(charset_to_utf8(cs, in, len, &outlen), outlen);
		break;
	default:
		from_utf8(cs, in, len);
		break;
	}
	return 0;
}
