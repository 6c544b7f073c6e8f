#ifndef HATO_INTAKE_APPROVAL_H
#define HATO_INTAKE_APPROVAL_H
/*
 * approval: jobs of submitters with approval = yes are stored held, with a
 * confirmation code, until an operator approves them (hatoctl job approve)
 * or the submitter replies to the receipt with the code; [intake]
 * approval_expiry later they expire (the gateway's upkeep).
 *
 * A code is 8 characters of the RFC 4648 base32 alphabet from the CSPRNG,
 * always with a letter and a digit, so that an ordinary word of a subject
 * is never taken for one. A reply is a mail from the submitter with no
 * recipients and no attachment whose Subject or first text line (after a
 * Token line) holds a code: it approves and creates no job.
 */
#include <stdbool.h>
#include <stddef.h>

struct hato_config;
struct mime_msg;
struct store;
struct store_job_new;
struct submitter_conf;

#define APPROVAL_CODE_LEN 8

/* Mark j held with a new code (in code, APPROVAL_CODE_LEN + 1 bytes) and
 * its expiry. Returns -1 when no randomness could be had. */
int approval_hold(const struct hato_config *cf, struct store_job_new *j, char *code);

/* Make a code; -1 without randomness. */
int approval_code_new(char *code);

/* Whether the mail is a reply carrying a code: code gets it, token the
 * control block's Token ("" when none). */
bool approval_reply_code(const struct mime_msg *m, char *code, char *token, size_t toklen);

/* Approve by reply, with a log line: 0 approved, 1 refused (line says
 * why: a wrong code, a job not held, expired), -1 the job store is
 * unavailable. line: what to tell the submitter. */
int approval_by_reply(struct store *st, const struct submitter_conf *who, const char *from,
    const char *code, char *line, size_t linelen);

#endif
