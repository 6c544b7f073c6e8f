/*
 * fuzz_csv: recipient lists (CSV and text attachments) on any bytes.
 *
 * The mail is built here, without MIME, so that every input reaches the
 * list reader: a fixed control block (with or without a To: line) and one
 * attachment whose body is the input after its first octet. That octet
 * picks the attachment's type and file name, its declared charset (none,
 * the Japanese ones, UTF-16, an unknown one) and whether To: is there.
 * The attachment is exactly as long as the input, with no NUL after it.
 *
 * Beyond check_submission.h: each recipient's source is "To" or the
 * attachment's name, the lines of one source never go backwards, and the
 * list read 1 or 7 octets at a time gives what it gives read whole.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "intake/submission.h"
#include "mail/mime.h"
#include "check_submission.h"

static const struct {
	const char *type, *name;
} parts[] = {
	{ "text/csv", "list.csv" },
	{ "text/plain", "rcpts.txt" },
	{ "application/vnd.ms-excel", "\xe5\x90\x8d\xe7\xb0\xbf.csv" },	/* 名簿.csv */
	{ "text/csv", NULL },
	{ "application/octet-stream", "LIST.CSV" },
	{ "text/tab-separated-values", NULL },
	{ "text/plain", NULL },		/* a footer, not a list */
	{ "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "list.xlsx" },
};

static const char *const charsets[] = {
	NULL, "UTF-8", "Shift_JIS", "ISO-2022-JP", "EUC-JP", "UTF-16", "x-unknown", NULL,
};

static void
check_sources(const struct submission *s, const struct mime_part *p)
{
	const char *name = p->filename ? p->filename : p->content_type;
	size_t last_to = 0, last_list = 0;

	struct sub_iter it;
	struct sub_rcpt rr;

	for (sub_first(&it, s); sub_next(&it, &rr);) {
		const struct sub_rcpt *r = &rr;

		if (strcmp(r->source, "To") == 0) {
			CHECK(r->line >= last_to);
			last_to = r->line;
		} else {
			CHECK(strcmp(r->source, name) == 0);
			CHECK(r->line >= last_list);
			last_list = r->line;
		}
	}
}

static bool
same_str(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* A list read a few octets at a time gives what it gives read whole. */
static void
check_chunked(const struct mime_msg *m, int rc, const struct submission *s, const char *err, size_t chunk)
{
	struct submission t;
	struct sub_iter i, j;
	struct sub_rcpt a, b;
	char err2[256] = "";
	int rc2 = submission_parse_chunked(m, chunk, &t, err2, sizeof(err2));

	CHECK(rc2 == rc);
	if (rc != 0) {
		CHECK(strcmp(err, err2) == 0);
		return;
	}
	CHECK(t.nrcpt == s->nrcpt && t.naccepted == s->naccepted);
	sub_first(&i, s);
	sub_first(&j, &t);
	while (sub_next(&i, &a)) {
		CHECK(sub_next(&j, &b));
		CHECK(strcmp(a.raw, b.raw) == 0 && same_str(a.addr, b.addr) && a.verdict == b.verdict);
		CHECK(strcmp(a.source, b.source) == 0 && a.line == b.line && same_str(a.reason, b.reason));
		CHECK(a.needs_quote == b.needs_quote);
	}
	CHECK(!sub_next(&j, &b));
	submission_free(&t);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char with_to[] = "To: taro..@docomo.ne.jp, Hanako <hanako@ezweb.ne.jp>\n"
	    "Subject: list\n\nbody\n";
	static char without_to[] = "Subject: list\n\nbody\n";
	struct mime_msg m = { 0 };
	struct mime_part p = { 0 };
	struct submission s;
	char err[256] = "", type[128], name[64];
	unsigned sel;
	int rc;

	if (size < 1)
		return 0;
	sel = data[0];
	m.text = (sel & 0x80) ? with_to : without_to;
	m.text_len = strlen(m.text);
	m.subject = "subject of the mail";
	/* Writable copies, as mime_parse would give. */
	snprintf(type, sizeof(type), "%s", parts[sel & 7].type);
	p.content_type = type;
	if (parts[sel & 7].name != NULL) {
		snprintf(name, sizeof(name), "%s", parts[sel & 7].name);
		p.filename = name;
	}
	p.charset = (char *)(uintptr_t)charsets[(sel >> 3) & 7];
	p.len = size - 1;
	p.data = malloc(p.len ? p.len : 1);
	if (p.data == NULL)
		abort();
	if (p.len > 0)
		memcpy(p.data, data + 1, p.len);
	m.attachments = &p;
	m.nattach = 1;

	fuzz_poison_stack();
	rc = submission_parse(&m, &s, err, sizeof(err));
	check_chunked(&m, rc, &s, err, 1);
	check_chunked(&m, rc, &s, err, 7);
	if (rc != 0) {
		CHECK(rc == -1);
		check_submission_refused(&s, err);
	} else {
		check_submission(&s);
		check_sources(&s, &p);
		submission_free(&s);
	}
	free(p.data);
	return 0;
}
