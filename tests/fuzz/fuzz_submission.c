/*
 * fuzz_submission: a submission mail read as intake reads it, mime_parse
 * then approval_reply_code (is it a reply carrying a confirmation code?)
 * and submission_parse, on any bytes.
 *
 * The mail is freed before the submission is looked at, as the submission
 * owns its strings (AddressSanitizer sees any pointer left into the mail).
 * The checks are in check_submission.h.
 */
#include <stdint.h>
#include <string.h>

#include "intake/approval.h"
#include "intake/submission.h"
#include "mail/mime.h"
#include "check_submission.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	mime_init();
	return 0;
}

/* A code found is 8 base32 characters with a letter and a digit; the
 * token fits its buffer. */
static void
check_reply(const struct mime_msg *m)
{
	char code[APPROVAL_CODE_LEN + 1], token[64];
	int letter = 0, digit = 0;

	if (!approval_reply_code(m, code, token, sizeof(token)))
		return;
	CHECK(strlen(code) == APPROVAL_CODE_LEN);
	CHECK(strlen(token) < sizeof(token));
	for (int i = 0; i < APPROVAL_CODE_LEN; i++) {
		CHECK((code[i] >= 'A' && code[i] <= 'Z') || (code[i] >= '2' && code[i] <= '7'));
		letter |= code[i] >= 'A';
		digit |= code[i] <= '7';
	}
	CHECK(letter && digit);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mime_msg m;
	struct submission s;
	char err[256] = "";
	int rc;

	fuzz_poison_stack();
	if (mime_parse((const char *)data, size, &m, err, sizeof(err)) != 0)
		return 0;
	check_reply(&m);
	fuzz_poison_stack();
	rc = submission_parse(&m, &s, err, sizeof(err));
	mime_msg_free(&m);
	if (rc != 0) {
		CHECK(rc == -1);
		check_submission_refused(&s, err);
		return 0;
	}
	check_submission(&s);
	submission_free(&s);
	return 0;
}
