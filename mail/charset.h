#ifndef HATO_MAIL_CHARSET_H
#define HATO_MAIL_CHARSET_H
/*
 * charset: conversions between the charsets Japanese mail uses and UTF-8.
 * Shift_JIS is read as CP932 (what Windows and the handsets really write).
 */
#include <stdbool.h>
#include <stddef.h>

bool utf8_valid(const char *s, size_t len);

/* Convert len bytes in charset to UTF-8. Returns a malloc'd NUL-terminated
 * string (length in *outlen when not NULL), or NULL when the charset is
 * unknown or the input is not valid in it. */
char *charset_to_utf8(const char *charset, const char *in, size_t len, size_t *outlen);

/* For files without a declared charset (CSV lists): a UTF-8 BOM is dropped;
 * valid UTF-8 is kept; ISO-2022-JP escapes mean ISO-2022-JP; anything else
 * is read as CP932. NULL when nothing fits. */
char *charset_guess_to_utf8(const char *in, size_t len, size_t *outlen);

/* charset_to_utf8 for one piece of a longer text cut at line ends: a
 * leading U+FEFF is dropped from the first piece only, as from the whole. */
char *charset_piece_to_utf8(const char *charset, const char *in, size_t len, bool first,
    size_t *outlen);

/* Whether text in this charset converts the same cut in pieces at line
 * ends as whole: UTF-8, Shift_JIS (CP932), EUC-JP and US-ASCII. Not
 * ISO-2022-JP: which decoder reads it depends on every escape in it. */
bool charset_cuttable(const char *charset);

/*
 * The same guess for a list too long to hold whole: feed every piece in
 * order, each cut at a line end (no character of these charsets holds a
 * CR or LF octet), then ask. The name says what fits all of it ("" when
 * nothing does); NULL means "CP932, else EUC-JP": the caller tries them
 * in that order. UTF-16
 * cannot be cut at an octet: it is read whole.
 */
struct charset_guess {
	bool started, bom_utf8, utf16, seven, jis, utf8;
};
void charset_guess_feed(struct charset_guess *g, const char *in, size_t len);
const char *charset_guess_name(const struct charset_guess *g);

/* Convert UTF-8 to charset. Returns NULL (and sets *bad to the byte offset
 * of the first character that cannot be written) when the text does not fit. */
char *charset_from_utf8(const char *charset, const char *in, size_t len, size_t *outlen, size_t *bad);

#endif
