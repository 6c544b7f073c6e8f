/*
 * approval: confirmation codes, and approval by a reply mail (see
 * approval.h). The job state itself is the job store's: store_job_approve
 * locks the job row, so a reply and an operator never both release it.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/rand.h>

#include "conf/config.h"
#include "core/duration.h"
#include "core/log.h"
#include "intake/approval.h"
#include "mail/mime.h"
#include "sql/store.h"

static const char B32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

static bool
is_b32(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7');
}

/* A letter and a digit: "DISCOUNT" or "SALEDAYS" in a subject is no code. */
static bool
code_shaped(const char *s)
{
	bool letter = false, digit = false;

	for (int i = 0; i < APPROVAL_CODE_LEN; i++) {
		if (!is_b32((unsigned char)s[i]))
			return false;
		letter |= s[i] >= 'A';
		digit |= s[i] <= '7';
	}
	return letter && digit;
}

int
approval_code_new(char *code)
{
	unsigned char r[APPROVAL_CODE_LEN];

	/* 40 bits; the few draws without a letter and a digit are redrawn. */
	do {
		if (RAND_bytes(r, sizeof(r)) != 1)
			return -1;
		for (int i = 0; i < APPROVAL_CODE_LEN; i++)
			code[i] = B32[r[i] & 31];
		code[APPROVAL_CODE_LEN] = '\0';
	} while (!code_shaped(code));
	return 0;
}

int
approval_hold(const struct hato_config *cf, struct store_job_new *j, char *code)
{
	double now = (double)clock_wall_ms() / 1000;

	if (approval_code_new(code) < 0)
		return -1;
	j->held = true;
	j->confirm_code = code;
	j->hold_expires = now + (double)cf->approval_expiry_ms / 1000;
	return 0;
}

/* The first code-shaped word of s[0..len) (case as written). */
static bool
find_code(const char *s, size_t len, char *code)
{
	for (size_t i = 0; i + APPROVAL_CODE_LEN <= len; i++) {
		if (i > 0 && isalnum((unsigned char)s[i - 1]))
			continue;
		if (i + APPROVAL_CODE_LEN < len && isalnum((unsigned char)s[i + APPROVAL_CODE_LEN]))
			continue;
		if (code_shaped(s + i)) {
			memcpy(code, s + i, APPROVAL_CODE_LEN);
			code[APPROVAL_CODE_LEN] = '\0';
			return true;
		}
	}
	return false;
}

static bool
key_is(const char *line, size_t len, const char *key)
{
	size_t k = strlen(key);

	return len > k && strncasecmp(line, key, k) == 0 && line[k] == ':';
}

/*
 * Walk the text's first lines: a Token line gives the token, any other
 * control key (To, Send-At, ...) means a submission, and the first other
 * non-empty line is "the first text line".
 */
static bool
scan_text(const char *t, char *code, char *token, size_t toklen, bool *found)
{
	while (t && *t) {
		const char *nl = strchr(t, '\n');
		size_t len = nl ? (size_t)(nl - t) : strlen(t);
		if (key_is(t, len, "Token")) {
			const char *v = t + 6;
			while (*v == ' ' || *v == '\t')
				v++;
			snprintf(token, toklen, "%.*s", (int)(len - (size_t)(v - t)), v);
			while (*token && isspace((unsigned char)token[strlen(token) - 1]))
				token[strlen(token) - 1] = '\0';
		} else if (key_is(t, len, "To") || key_is(t, len, "Send-At") || key_is(t, len, "Dry-Run"))
			return false;
		else if (len > 0 && !(len == 1 && *t == '\r')) {
			*found = *found || find_code(t, len, code);
			return true;
		}
		t = nl ? nl + 1 : NULL;
	}
	return true;
}

bool
approval_reply_code(const struct mime_msg *m, char *code, char *token, size_t toklen)
{
	bool found = false;

	*token = '\0';
	if (m->nattach > 0)
		return false;
	if (!scan_text(m->text, code, token, toklen, &found))
		return false;
	if (m->subject && find_code(m->subject, strlen(m->subject), code))
		found = true;
	return found;
}

int
approval_by_reply(struct store *st, const struct submitter_conf *who, const char *from,
    const char *code, char *line, size_t linelen)
{
	struct store_jobctl_result r;

	if (store_job_approve_code(st, who->name, code, from, &r) != STORE_OK) {
		log_warn("intake submitter=%s approval=reply status=tempfail reason=\"%s\"", who->name, store_error(st));
		return -1;
	}
	if (r.status == JOBCTL_NO_JOB)
		snprintf(line, linelen, "approval refused: no held job of yours has that confirmation code");
	else if (r.status != JOBCTL_DONE) {
		snprintf(line, linelen, "approval refused: ");
		store_jobctl_describe("approved", &r, line + strlen(line), linelen - strlen(line));
	} else
		store_jobctl_describe("approved", &r, line, linelen);
	log_notice("intake job=%llu submitter=%s approval=reply status=%s released=%zu by=%s",
	    (unsigned long long)r.job_id, who->name, r.status == JOBCTL_DONE ? "approved" : "refused",
	    r.changed, from);
	return r.status == JOBCTL_DONE ? 0 : 1;
}
