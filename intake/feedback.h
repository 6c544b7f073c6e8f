#ifndef HATO_INTAKE_FEEDBACK_H
#define HATO_INTAKE_FEEDBACK_H
/*
 * feedback: mail that comes back about mail Hato sent. Bounces (DSNs) go
 * to each message's envelope sender "bounce+<delivery>.<mac>@<bounce
 * domain>"; unsubscribe requests go to "unsub+<token>@<bounce domain>",
 * the mailto of List-Unsubscribe. Both name one delivery under the site's
 * MAC (mail/verp.h). A forged name, an unknown delivery or a mail that is
 * no bounce changes nothing and is answered 250 all the same, with a log
 * line: a refusal would make the MTA bounce a bounce, or send backscatter
 * to a forged sender. 451 only when the job store is unavailable.
 *
 * The functions below block on the database: call them on a worker thread.
 */
#include <stddef.h>

struct hato_config;
struct store;

enum feedback_kind {
	FEEDBACK_NONE,		/* not at the bounce domain, or neither prefix */
	FEEDBACK_BOUNCE,	/* bounce+...@bounce_domain */
	FEEDBACK_UNSUB,		/* unsub+...@bounce_domain */
};

/* What an envelope recipient is, by its local part's prefix and its domain
 * (both case-insensitive). The MAC is checked later, on the whole mail. */
enum feedback_kind feedback_kind(const struct hato_config *cf, const char *rcpt);

/* A bounce to rcpt: read it (dsn_parse) and record it against the
 * delivery (store_bounce). Writes one reply line (no CRLF). */
void feedback_bounce(struct store *st, const struct hato_config *cf, const char *rcpt,
    const char *env_from, const char *data, size_t len, char *reply, size_t replylen);

/* An unsubscribe mail to rcpt: suppress the delivery's address. */
void feedback_unsubscribe(struct store *st, const struct hato_config *cf, const char *rcpt,
    const char *env_from, char *reply, size_t replylen);

#endif
