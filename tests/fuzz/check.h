#ifndef HATO_TESTS_FUZZ_CHECK_H
#define HATO_TESTS_FUZZ_CHECK_H
/*
 * check: what the fuzz targets share. CHECK(cond) prints the broken
 * invariant with its file and line and traps, so that libFuzzer records
 * the input as a crash. The predicates below are written here, apart from
 * the code under test, so that a target does not check a parser with the
 * parser's own idea of, say, valid UTF-8.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
		__builtin_trap(); \
	} \
} while (0)

/*
 * A local that is read before it is written holds whatever an earlier call
 * left on the stack, and may work by chance. Calling this just before the
 * code under test fills the stack below with 0xa5 octets, so such a read
 * gives a wild pointer or a huge number, and crashes the same way on every
 * run instead of now and then.
 */
static inline __attribute__((noinline)) void
fuzz_poison_stack(void)
{
	unsigned char junk[8192];

	memset(junk, 0xa5, sizeof(junk));
	__asm__ volatile("" : : "r"(junk) : "memory");
}

/* The input as a NUL-terminated string of its own (the harness's buffer
 * is not terminated). */
static inline char *
fuzz_strndup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (s == NULL)
		abort();
	if (size > 0)
		memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. */
static inline bool
fuzz_utf8_ok(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n, k;
	uint32_t cp, min;

	while (i < len) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if (p[i] >= 0xc0 && p[i] < 0xe0) {
			n = 2; cp = p[i] & 0x1fu; min = 0x80;
		} else if (p[i] >= 0xe0 && p[i] < 0xf0) {
			n = 3; cp = p[i] & 0x0fu; min = 0x800;
		} else if (p[i] >= 0xf0 && p[i] < 0xf8) {
			n = 4; cp = p[i] & 0x07u; min = 0x10000;
		} else
			return false;
		if (len - i < n)
			return false;
		for (k = 1; k < n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3fu);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n;
	}
	return true;
}

/* No C0 control but TAB, no DEL: what a header value or a log field holds. */
static inline bool
fuzz_no_controls(const char *s)
{
	for (; *s != '\0'; s++)
		if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
			return false;
	return true;
}

/* Printable ASCII only (TAB and space included). */
static inline bool
fuzz_printable_ascii(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c < 0x20 && c != '\t') || c >= 0x7f)
			return false;
	}
	return true;
}

/*
 * A header field body as it goes on the wire: printable ASCII and TAB,
 * line breaks only as CRLF followed by white space (folding), no line of
 * white space alone, no line over 998 octets (first_col octets of the
 * first line are the field name already written).
 */
static inline bool
fuzz_header_value_ok(const char *v, size_t first_col)
{
	size_t col = first_col;
	bool line_has_text = true;	/* the first line may be blank: "Subject: " */

	for (size_t i = 0; v[i] != '\0'; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c == '\r') {
			if (v[i + 1] != '\n' || (v[i + 2] != ' ' && v[i + 2] != '\t'))
				return false;
			if (!line_has_text)
				return false;
			i++;
			col = 0;
			line_has_text = false;
			continue;
		}
		if ((c < 0x20 && c != '\t') || c >= 0x7f)
			return false;
		if (c != ' ' && c != '\t')
			line_has_text = true;
		if (++col > 998)
			return false;
	}
	return line_has_text;
}

/*
 * The text rfc2047 promises to encode: each octet that does not start a
 * well-formed UTF-8 sequence is U+FFFD, each C0 control but TAB, DEL and
 * each C1 control is a space. Written out of the header's own words.
 */
static inline char *
fuzz_clean_header_text(const char *in)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t n = strlen(in), i = 0, o = 0;
	char *out = malloc(n * 3 + 1);

	if (out == NULL)
		abort();
	while (i < n) {
		size_t len = 0, k;
		uint32_t cp = 0, min = 0;

		if (s[i] < 0x80) {
			len = 1;
			cp = s[i];
		} else if (s[i] >= 0xc0 && s[i] < 0xe0) {
			len = 2; cp = s[i] & 0x1fu; min = 0x80;
		} else if (s[i] >= 0xe0 && s[i] < 0xf0) {
			len = 3; cp = s[i] & 0x0fu; min = 0x800;
		} else if (s[i] >= 0xf0 && s[i] < 0xf8) {
			len = 4; cp = s[i] & 0x07u; min = 0x10000;
		}
		if (len > 1) {
			if (n - i < len)
				len = 0;
			for (k = 1; len && k < len; k++) {
				if ((s[i + k] & 0xc0) != 0x80)
					len = 0;
				else
					cp = (cp << 6) | (s[i + k] & 0x3fu);
			}
			if (len && (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)))
				len = 0;
		}
		if (len == 0) {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else if ((cp < 0x20 && cp != '\t') || (cp >= 0x7f && cp <= 0x9f)) {
			out[o++] = ' ';
			i += len;
		} else {
			memcpy(out + o, s + i, len);
			o += len;
			i += len;
		}
	}
	out[o] = '\0';
	return out;
}

/* base64 (RFC 4648, with padding) into out; the decoded length, or
 * (size_t)-1 when the text is not base64. */
static inline size_t
fuzz_base64_decode(const char *in, size_t len, unsigned char *out)
{
	size_t o = 0, i;
	uint32_t acc = 0;
	int bits = 0, pad = 0;

	if (len % 4 != 0)
		return (size_t)-1;
	for (i = 0; i < len; i++) {
		char c = in[i];
		int v;

		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= 'a' && c <= 'z')
			v = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			v = c - '0' + 52;
		else if (c == '+')
			v = 62;
		else if (c == '/')
			v = 63;
		else if (c == '=' && i + 2 >= len) {
			pad++;
			continue;
		} else
			return (size_t)-1;
		if (pad)
			return (size_t)-1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	return o;
}

#endif
