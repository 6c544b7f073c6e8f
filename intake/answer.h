#ifndef HATO_INTAKE_ANSWER_H
#define HATO_INTAKE_ANSWER_H
/*
 * answer: what intake sends back to a known submitter, and when it must
 * not. An answer collects the outcome of every recipient (per carrier
 * route), then becomes either the receipt committed with the job
 * (answer_attach: composed inside the job's transaction, once the job
 * number is known) or an error receipt stored on its own (answer_refuse).
 * Runs on intake's worker threads.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "intake/receipt.h"

struct hato_config;
struct mime_msg;
struct store;
struct store_job_new;
struct store_notice_new;
struct submitter_conf;

/* false (with why) for mail that must never be answered: Auto-Submitted
 * other than "no", Precedence bulk/junk/list, an empty envelope sender,
 * List-Id or X-Auto-Response-Suppress. No receipt ever answers those, so
 * a receipt that comes back by an auto-responder cannot start a loop. */
bool answer_allowed(const struct mime_msg *m, const char *env_from, const char **why);

struct answer_dest {
	char dest[128];
	size_t n[RO_COUNT];
};

struct answer {
	const struct hato_config *cf;
	const struct submitter_conf *who;
	const struct mime_msg *m;
	char to[321], to_domain[256], to_dest[128];
	struct answer_dest *dests;
	size_t ndests, capdests, last;
	struct receipt_reject *rejects;
	size_t nrejects, caprejects;
	size_t total[RO_COUNT];
	/* For the receipt: */
	const char *subject, *dm_from;
	double send_at;
	bool dry_run;
	struct store_notice_new *tmpl;
};

/* to: the submitter's address the mail came from (the receipt goes there). */
void answer_init(struct answer *a, const struct hato_config *cf, const struct submitter_conf *who,
    const struct mime_msg *m, const char *to);
/* One recipient's outcome; dest "" when it was not routed (invalid). The
 * strings must outlive the answer. */
void answer_add(struct answer *a, const char *dest, int outcome, const char *address,
    const char *reason, const char *source, size_t line);
/* The receipt goes with the job: sets j->receipt and its callback. The
 * answer must outlive store_job_create. */
void answer_attach(struct answer *a, struct store *st, struct store_job_new *j);
/* An error receipt (no job), stored now. Returns a STORE_ code. */
int answer_refuse(struct answer *a, struct store *st, const char *why);
void answer_free(struct answer *a);

#endif
