/*
 * fuzz_submission: a submission mail read as intake reads it, mime_parse
 * then submission_parse, on any bytes.
 *
 * The mail is freed before the submission is looked at, as the submission
 * owns its strings (AddressSanitizer sees any pointer left into the mail).
 * The checks are in check_submission.h.
 */
#include <stdint.h>
#include <string.h>

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
