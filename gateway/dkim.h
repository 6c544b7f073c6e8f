#ifndef HATO_GATEWAY_DKIM_H
#define HATO_GATEWAY_DKIM_H
/*
 * dkim: DKIM signatures (RFC 6376; RFC 8463 for ed25519) with
 * relaxed/relaxed canonicalisation. The body hash is computed once per job
 * body (dkim_body_hash); each message then only canonicalises and signs
 * its own header block.
 */
#include <stddef.h>

struct dkim_key;

/* Load a PEM private key (RSA or Ed25519) from a secrets file (refused when
 * others can read it). NULL with the reason in err. */
struct dkim_key *dkim_key_load(const char *path, const char *domain, const char *selector,
    char *err, size_t errlen);
void dkim_key_free(struct dkim_key *k);

/* base64 of the hash of the relaxed-canonical body (CRLF lines). malloc'd. */
char *dkim_body_hash(const char *body, size_t len);

/* The "DKIM-Signature: ..." header (folded, ending CRLF) for a message
 * whose header block is head (CRLF lines, up to and without the empty
 * line, or with it) and whose body hash is bh. Signs the headers named in
 * `headers` ("from:to:subject:date:message-id:mime-version:content-type"),
 * in that order, as found in head. malloc'd, NULL on error. */
char *dkim_sign(const struct dkim_key *k, const char *head, size_t head_len,
    const char *bh, const char *headers, long now);

#endif
