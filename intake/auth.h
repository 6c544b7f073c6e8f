#ifndef HATO_INTAKE_AUTH_H
#define HATO_INTAKE_AUTH_H
/*
 * auth: who sent a submission, as the local MTA saw it. Reads
 * Authentication-Results headers (RFC 8601) and says whether one written
 * by the trusted authserv-id reports dkim=pass with header.d, or spf=pass
 * with smtp.mailfrom, aligned with the From domain. Pure: no I/O.
 *
 * Alignment is organizational by plain suffix: the two domains are equal,
 * or one ends with "." and the other, and what they share has at least two
 * labels (example.co.jp and mail.example.co.jp align; so do example.co.jp
 * and co.jp, which a public suffix list would refuse: the MTA's checks are
 * trusted, not the sender's choice of d=). A header from any other
 * authserv-id is ignored; the MTA is expected to remove headers that carry
 * its own id before it adds its own (RFC 8601, section 5).
 */
#include <stdbool.h>
#include <stddef.h>

struct mime_msg;

/* One header value: 1 pass (method names what passed, e.g. "dkim"), 0 no
 * pass or another authserv-id, -1 unreadable (why says so). */
int authres_check(const char *value, const char *authserv_id, const char *from_domain,
    char *method, size_t methodlen, const char **why);

/* Every Authentication-Results of the mail: true when a trusted one
 * passes for from_addr's domain. why: what was found, for the log. */
bool authres_pass(const struct mime_msg *m, const char *authserv_id, const char *from_addr,
    char *why, size_t whylen);

/* The two domains align (see above). */
bool auth_aligned(const char *a, const char *b);

struct submitter_conf;
/* The token's SHA-256 is the submitter's (constant-time compare). */
bool auth_token_ok(const struct submitter_conf *sub, const char *token);
/* The submitter's auth method says yes: by the token, or by a trusted
 * Authentication-Results for from_addr, or either. why: the reason of a
 * no, for the error receipt and the log. */
bool auth_submitter(const struct submitter_conf *sub, const char *authserv_id,
    const struct mime_msg *m, const char *from_addr, const char *token, char *why, size_t whylen);

#endif
