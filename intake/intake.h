#ifndef HATO_INTAKE_INTAKE_H
#define HATO_INTAKE_INTAKE_H
/*
 * intake: turns a submission mail into a stored job, and records the
 * bounces and unsubscribe mails that come back. The LMTP server hands each
 * finished transaction to a worker thread, which parses, checks the
 * submitter and commits the job (or the bounce); the reply goes back to
 * the LMTP client only after the commit (250), or says why not (4xx: try
 * again, 5xx: the mail itself is wrong).
 */
#include <stddef.h>
#include <event2/event.h>

struct hato_config;
struct store;
struct intake;

struct intake *intake_new(struct event_base *base, const struct hato_config *cf);
int intake_listen(struct intake *in, char *err, size_t errlen);
/* Stop accepting; on_idle runs once no transaction is in the works. */
void intake_stop(struct intake *in, void (*on_idle)(void *), void *arg);
void intake_free(struct intake *in);

/* One mail to one recipient, on a thread that may block: a submission
 * (the submit address: intake_process), a bounce to a bounce+ address or
 * an unsubscribe mail to an unsub+ address at the bounce domain
 * (intake/feedback.h). Writes the reply (one line, no CRLF) into reply. */
void intake_deliver(struct store *st, const struct hato_config *cf, const char *env_from,
    const char *rcpt, const char *data, size_t len, char *reply, size_t replylen);

/* The whole decision for one submission, on a thread that may block:
 * parse, authenticate, skip suppressed addresses, store. Writes the reply
 * (one line, no CRLF) into reply. */
void intake_process(struct store *st, const struct hato_config *cf, const char *env_from,
    const char *data, size_t len, char *reply, size_t replylen);

/* Send-At: "YYYY-MM-DD HH:MM[:SS]" in the process's time zone (TZ), or
 * ISO 8601 with "Z" or an offset. Returns 0 and Unix time, or -1 and why. */
int intake_parse_send_at(const char *s, double *when, const char **why);

#endif
