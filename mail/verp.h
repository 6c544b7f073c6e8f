#ifndef HATO_MAIL_VERP_H
#define HATO_MAIL_VERP_H
/*
 * verp: the unforgeable names Hato puts into mail it sends, so that what
 * comes back can be tied to one delivery: the envelope sender
 * "bounce+<delivery>.<mac>@<bounce domain>" and the unsubscribe token
 * "u<delivery>.<mac>" (in List-Unsubscribe's mailto and URL). The MAC is
 * HMAC-SHA256 under the site secret ([hato] secret_file), truncated to 80
 * bits and written in lower-case base32; the two uses are kept apart by a
 * prefix in the MAC input, so a bounce address is never an unsubscribe
 * token. A delivery names its job and its address in the database.
 */
#include <stddef.h>
#include <stdint.h>

#define VERP_MAC_LEN 16		/* base32 characters */

/* The local part "bounce+<id>.<mac>" (no domain). Returns its length. */
size_t verp_local(const unsigned char *key, size_t keylen, uint64_t delivery, char *buf, size_t size);
/* Parse a local part made by verp_local (case-insensitive). 0 and the
 * delivery id, or -1: not one of ours, or a wrong MAC. */
int verp_parse(const unsigned char *key, size_t keylen, const char *local, size_t len, uint64_t *delivery);

/* The unsubscribe token "u<id>.<mac>"; and its check. */
size_t unsub_token(const unsigned char *key, size_t keylen, uint64_t delivery, char *buf, size_t size);
int unsub_parse(const unsigned char *key, size_t keylen, const char *token, size_t len, uint64_t *delivery);

#endif
