/*
 * fuzz_reply: the SMTP/LMTP reply codec fed what a hostile server sends.
 *
 * The input is cut at LF into lines, fed one by one into one struct reply
 * (which starts afresh after each complete or malformed reply). A complete
 * reply has a code in 100..599, 1..64 lines, a status code of its own class
 * or none, printable text that is its lines' texts joined by one blank, and
 * lines and EHLO parameters that point inside that text. A malformed one
 * has a reason and no lines.
 */
#include <stdint.h>
#include <string.h>

#include "mail/reply.h"
#include "check.h"

static void
check_status(const struct reply *r)
{
	const char *s = r->status;
	size_t i = 2, d;

	if (s[0] == '\0')
		return;
	CHECK(s[0] == (char)('0' + r->code / 100));
	CHECK(s[0] == '2' || s[0] == '4' || s[0] == '5');
	CHECK(s[1] == '.');
	for (d = 0; s[i] >= '0' && s[i] <= '9'; i++)
		d++;
	CHECK(d >= 1 && d <= 3 && s[i] == '.');
	for (i++, d = 0; s[i] >= '0' && s[i] <= '9'; i++)
		d++;
	CHECK(d >= 1 && d <= 3 && s[i] == '\0');
}

static void
check_keyword(const struct reply *r, const char *kw)
{
	const char *args = NULL;
	size_t alen = 0;

	if (!reply_ehlo_keyword(r, kw, &args, &alen))
		return;
	CHECK(args != NULL);
	CHECK(args >= r->text && args + alen <= r->text + r->textlen);
}

static void
check_done(const struct reply *r)
{
	char joined[REPLY_TEXT_MAX];
	size_t n = reply_nlines(r), jl = 0, len;
	const char *l;

	CHECK(r->code >= 100 && r->code <= 599);
	CHECK(n >= 1 && n <= REPLY_LINES_MAX);
	CHECK(r->textlen < REPLY_TEXT_MAX && strlen(r->text) == r->textlen);
	CHECK(fuzz_no_controls(r->text) && strchr(r->text, '\t') == NULL);
	check_status(r);
	for (size_t i = 0; i < n; i++) {
		l = reply_line(r, i, &len);
		CHECK(l != NULL && l >= r->text && l + len <= r->text + r->textlen);
		if (jl > 0 && len > 0)
			joined[jl++] = ' ';
		CHECK(jl + len < sizeof(joined));
		memcpy(joined + jl, l, len);
		jl += len;
	}
	CHECK(jl == r->textlen && memcmp(joined, r->text, jl) == 0);
	l = reply_line(r, n, &len);
	CHECK(l == NULL && len == 0);
	check_keyword(r, "SIZE");
	check_keyword(r, "AUTH");
	check_keyword(r, "STARTTLS");
	check_keyword(r, "");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct reply r;	/* 8 KiB of text: off the stack */
	const char *s = (const char *)data;
	size_t pos = 0;

	fuzz_poison_stack();
	reply_init(&r);
	while (pos < size) {
		const char *nl = memchr(s + pos, '\n', size - pos);
		size_t len = nl ? (size_t)(nl - (s + pos)) : size - pos;

		switch (reply_feed(&r, s + pos, len)) {
		case REPLY_MORE:
			CHECK(r.code >= 100 && r.code <= 599);
			CHECK(r.nlines >= 1 && r.nlines <= REPLY_LINES_MAX);
			break;
		case REPLY_DONE:
			check_done(&r);
			break;
		case REPLY_MALFORMED:
			CHECK(r.error != NULL && *r.error != '\0');
			CHECK(r.code == 0 && reply_nlines(&r) == 0);
			break;
		default:
			CHECK(!"a known result");
		}
		pos += len + (nl != NULL);
	}
	return 0;
}
