#ifndef HATO_MAIL_RFC2047_H
#define HATO_MAIL_RFC2047_H
/*
 * rfc2047: header values for outgoing mail. Text that is plain printable
 * ASCII is written as it is (folded); anything else as encoded words
 * (=?UTF-8?B?...?=) of at most 75 octets, folded with CRLF SP. CR, LF and
 * other control characters of the input never reach the output as such.
 */
#include <stddef.h>

/* Encode utf8 as a header value. name_len is the length of "Name: " already
 * on the first line. Returns a malloc'd string without a final CRLF. */
char *rfc2047_encode(const char *utf8, size_t name_len);

#endif
