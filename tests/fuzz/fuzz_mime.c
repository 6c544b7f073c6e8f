/*
 * fuzz_mime: mime_parse on any bytes.
 *
 * Every header value, the Subject, From and Message-ID, attachment file
 * names and charsets come out as valid UTF-8 without CR, LF or any other
 * control but TAB, however they were encoded. The text is valid UTF-8
 * with LF line ends and no NUL, text_len long. Attachments have a
 * lower-case type and a body, NUL-terminated after len octets. A refused
 * mail leaves the struct empty and says why.
 */
#include <stdint.h>
#include <string.h>

#include "mail/mime.h"
#include "check.h"

static void
check_value(const char *v)
{
	if (v == NULL)
		return;
	CHECK(fuzz_utf8_ok(v, strlen(v)));
	CHECK(fuzz_no_controls(v));
}

static void
check_msg(const struct mime_msg *m)
{
	for (size_t i = 0; i < m->nheaders; i++) {
		CHECK(m->headers[i].name != NULL && m->headers[i].value != NULL);
		check_value(m->headers[i].name);
		check_value(m->headers[i].value);
	}
	check_value(m->subject);
	check_value(m->from);
	check_value(m->message_id);
	if (m->subject != NULL)
		CHECK(strcmp(m->subject, mime_header(m, "Subject")) == 0);
	if (m->text != NULL) {
		CHECK(strlen(m->text) == m->text_len);
		CHECK(fuzz_utf8_ok(m->text, m->text_len));
		CHECK(strchr(m->text, '\r') == NULL);
	} else
		CHECK(m->text_len == 0);
	for (size_t i = 0; i < m->nattach; i++) {
		const struct mime_part *p = &m->attachments[i];

		CHECK(p->content_type != NULL);
		for (const char *c = p->content_type; *c; c++)
			CHECK(*c < 'A' || *c > 'Z');
		check_value(p->filename);
		check_value(p->charset);
		CHECK(p->data != NULL && p->len > 0 && p->data[p->len] == '\0');
	}
}

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
	char err[256] = "";

	fuzz_poison_stack();
	if (mime_parse((const char *)data, size, &m, err, sizeof(err)) != 0) {
		CHECK(err[0] != '\0');
		CHECK(m.from == NULL && m.subject == NULL && m.message_id == NULL && m.text == NULL);
		CHECK(m.nattach == 0 && m.attachments == NULL && m.nheaders == 0 && m.headers == NULL);
		return 0;
	}
	check_msg(&m);
	mime_msg_free(&m);
	return 0;
}
