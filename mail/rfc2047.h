#ifndef HATO_MAIL_RFC2047_H
#define HATO_MAIL_RFC2047_H
/*
 * rfc2047: header values for outgoing mail. Text that is plain printable
 * ASCII is written as it is (folded); anything else as encoded words
 * (=?UTF-8?B?...?=) of at most 75 octets, folded with CRLF SP. CR, LF and
 * other control characters of the input never reach the output as such.
 */
#include <stdbool.h>
#include <stddef.h>

/* Encode utf8 as a header value. name_len is the length of "Name: " already
 * on the first line. Returns a malloc'd string without a final CRLF. */
char *rfc2047_encode(const char *utf8, size_t name_len);

/* The same in another charset (its MIME name, "ISO-2022-JP"): encoded words
 * =?CHARSET?B?...?= of at most 75 octets, each converted on its own, so a
 * word of a stateful charset starts and ends in ASCII and decodes alone.
 * "UTF-8" is rfc2047_encode. NULL when memory runs out, or, with *unfit
 * set (when unfit is not NULL), when the text holds a character the
 * charset cannot carry. */
char *rfc2047_encode_charset(const char *utf8, size_t name_len, const char *charset,
    bool *unfit);

#endif
