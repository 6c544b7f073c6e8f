/*
 * test_compose: the outgoing message (gateway/compose.c). Whole messages
 * are built and read back: header lines and their order, the Date and
 * Message-ID forms, the body decoded to the original text with CRLF line
 * ends, line lengths, and submitted text that tries to add a header.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "gateway/compose.h"

static const struct compose_job base_job = {
	.job_id = 12,
	.from = "Hato 配信 <dm@example.jp>",
	.reply_to = NULL,
	.subject = "週末限定セールのお知らせ",
	.body = "一行目\nsecond line\r\nthird\rfourth\n\n",
	.charset = NULL,
	.domain = "hato.example",
};

static int
b64val(char c)
{
	const char *tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = c ? strchr(tab, c) : NULL;

	return p ? (int)(p - tab) : -1;
}

/* The body as base64 lines: each at most 76 characters and ending in CRLF,
 * all but the last exactly 76. Returns the decoded octets (malloc'd). */
static unsigned char *
decode_body(const char *b, size_t len, size_t *outlen)
{
	unsigned char *out = malloc(len + 1);
	size_t n = 0, i = 0;

	assert_non_null(out);
	while (i < len) {
		const char *crlf = strstr(b + i, "\r\n");
		size_t ll;

		assert_non_null(crlf);
		ll = (size_t)(crlf - (b + i));
		assert_true(ll <= 76);
		assert_int_equal(ll % 4, 0);
		if (crlf + 2 < b + len)
			assert_int_equal(ll, 76);
		for (size_t k = i; k < i + ll; k += 4) {
			int v[4];

			for (int q = 0; q < 4; q++) {
				v[q] = b[k + q] == '=' ? 0 : b64val(b[k + q]);
				assert_true(v[q] >= 0);
			}
			out[n++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
			if (b[k + 2] != '=')
				out[n++] = (unsigned char)(v[1] << 4 | v[2] >> 2);
			if (b[k + 3] != '=')
				out[n++] = (unsigned char)(v[2] << 6 | v[3]);
		}
		i += ll + 2;
	}
	out[n] = '\0';
	*outlen = n;
	return out;
}

/* Every line of s ends in CRLF, holds no other CR or LF, and is at most
 * 998 octets. Returns the number of lines. */
static size_t
check_lines(const char *s, size_t len)
{
	size_t lines = 0, col = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\r') {
			assert_true(i + 1 < len && s[i + 1] == '\n');
			i++;
			lines++;
			col = 0;
			continue;
		}
		assert_true(s[i] != '\n');
		assert_true(++col <= 998);
	}
	assert_int_equal(col, 0);
	return lines;
}

/* The field names of a header block, in order, joined by spaces; folded
 * lines are skipped. */
static void
field_names(const char *head, char *out, size_t size)
{
	const char *p = head;

	*out = '\0';
	while (*p != '\0' && strncmp(p, "\r\n", 2) != 0) {
		const char *colon = strchr(p, ':'), *eol = strstr(p, "\r\n");

		assert_non_null(eol);
		if (*p != ' ' && *p != '\t') {
			assert_true(colon != NULL && colon < eol);
			snprintf(out + strlen(out), size - strlen(out), "%s%.*s", *out ? " " : "",
			    (int)(colon - p), p);
		}
		p = eol + 2;
	}
}

/* The value of the first field of that name, unfolded (static buffer). */
static const char *
field(const char *head, const char *name)
{
	static char buf[4096];
	size_t nl = strlen(name), n = 0;
	const char *p = head;

	while (*p != '\0' && strncmp(p, "\r\n", 2) != 0) {
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			for (p += nl + 1; *p == ' '; p++)
				;
			for (; *p != '\0'; p++) {
				if (p[0] == '\r' && p[1] == '\n' && p[2] != ' ' && p[2] != '\t')
					break;
				if (*p != '\r' && *p != '\n')
					buf[n++] = *p;
			}
			buf[n] = '\0';
			return buf;
		}
		p = strstr(p, "\r\n") + 2;
	}
	return NULL;
}

static struct compose_body *
prepare(const struct compose_job *j)
{
	char err[256] = "";
	struct compose_body *b = compose_prepare(j, err, sizeof(err));

	if (b == NULL)
		fail_msg("compose_prepare: %s", err);
	return b;
}

static char *
head_for(const struct compose_body *b, const char *to, const char *extra)
{
	struct compose_rcpt r = { .to = to, .delivery_id = 3456, .extra = extra };
	size_t len = 0;
	char *h = compose_head(b, &r, 1700000000, &len);

	if (h != NULL)
		assert_int_equal(len, strlen(h));
	return h;
}

static void
test_message(void **state)
{
	static const char want_body[] = "一行目\r\nsecond line\r\nthird\r\nfourth\r\n\r\n";
	struct compose_body *b = prepare(&base_job);
	char *h = head_for(b, "\"taro..\"@docomo.ne.jp", NULL), *msg, names[512];
	unsigned char *text;
	size_t hl, tl;

	(void)state;
	assert_non_null(h);
	hl = strlen(h);
	/* One block: one empty line, at its end. */
	assert_true(hl > 4);
	assert_string_equal(h + hl - 4, "\r\n\r\n");
	assert_ptr_equal(strstr(h, "\r\n\r\n"), h + hl - 4);
	field_names(h, names, sizeof(names));
	assert_string_equal(names, "Date From To Subject Message-ID MIME-Version Content-Type "
	    "Content-Transfer-Encoding");
	assert_string_equal(field(h, "To"), "\"taro..\"@docomo.ne.jp");
	assert_string_equal(field(h, "MIME-Version"), "1.0");
	assert_string_equal(field(h, "Content-Type"), "text/plain; charset=UTF-8");
	assert_string_equal(field(h, "Content-Transfer-Encoding"), "base64");
	assert_memory_equal(field(h, "Subject"), "=?UTF-8?B?", 10);
	assert_memory_equal(field(h, "From"), "=?UTF-8?B?", 10);
	assert_non_null(strstr(field(h, "From"), "?= <dm@example.jp>"));

	/* The whole message as it goes on the wire. */
	assert_non_null(msg = malloc(hl + b->body_len + 1));
	memcpy(msg, h, hl);
	memcpy(msg + hl, b->body, b->body_len + 1);
	check_lines(msg, hl + b->body_len);
	text = decode_body(b->body, b->body_len, &tl);
	assert_int_equal(tl, strlen(want_body));
	assert_memory_equal(text, want_body, tl);
	free(text);
	free(msg);
	free(h);
	compose_body_free(b);
}

static void
test_body(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "", "" },
		{ "a", "a" },
		{ "a\n", "a\r\n" },
		{ "\r\r\n\n\r", "\r\n\r\n\r\n\r\n" },
		{ "no end", "no end" },
		{ "日本語\r\n", "日本語\r\n" },
	};
	struct compose_job j = base_job;
	char *big, *want;
	unsigned char *text;
	size_t tl, n = 100000;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct compose_body *b;

		j.body = cases[i].in;
		b = prepare(&j);
		assert_int_equal(b->body_len, strlen(b->body));
		assert_true(b->body_len >= 2);
		assert_string_equal(b->body + b->body_len - 2, "\r\n");
		text = decode_body(b->body, b->body_len, &tl);
		assert_int_equal(tl, strlen(cases[i].want));
		assert_memory_equal(text, cases[i].want, tl);
		free(text);
		compose_body_free(b);
	}

	/* A large body with every line-end form, its lines cut across the
	 * 57-octet groups of the base64 lines. */
	big = malloc(n + 1);
	want = malloc(2 * n + 1);
	assert_non_null(big);
	assert_non_null(want);
	size_t bl = 0, w = 0;
	for (size_t i = 0; bl + 2 < n; i++) {
		static const char *const ends[] = { "\n", "\r\n", "\r" };
		const char *e = ends[(i / 61) % 3];

		if (i % 61 == 60) {
			memcpy(big + bl, e, strlen(e));
			bl += strlen(e);
			memcpy(want + w, "\r\n", 2);
			w += 2;
		} else
			big[bl++] = want[w++] = (char)('a' + i % 26);
	}
	big[bl] = '\0';
	j.body = big;
	struct compose_body *b = prepare(&j);
	check_lines(b->body, b->body_len);
	text = decode_body(b->body, b->body_len, &tl);
	assert_int_equal(tl, w);
	assert_memory_equal(text, want, w);
	free(text);
	compose_body_free(b);
	free(big);
	free(want);
}

static void
test_message_id(void **state)
{
	struct compose_body *b = prepare(&base_job);
	char *h1 = head_for(b, "a@ezweb.ne.jp", NULL), *h2 = head_for(b, "a@ezweb.ne.jp", NULL);
	char id1[256];
	regex_t re;

	(void)state;
	assert_int_equal(regcomp(&re, "^<12\\.3456\\.[0-9a-f]{16}@hato\\.example>$", REG_EXTENDED | REG_NOSUB), 0);
	snprintf(id1, sizeof(id1), "%s", field(h1, "Message-ID"));
	if (regexec(&re, id1, 0, NULL, 0) != 0)
		fail_msg("Message-ID %s", id1);
	/* A second attempt of the same delivery gets an id of its own. */
	assert_string_not_equal(id1, field(h2, "Message-ID"));
	regfree(&re);
	free(h1);
	free(h2);
	compose_body_free(b);
}

static void
test_date(void **state)
{
	static const struct {
		const char *tz;
		time_t t;
		const char *want;
	} cases[] = {
		{ "JST-9", 0, "Thu, 01 Jan 1970 09:00:00 +0900" },
		{ "UTC0", 1700000000, "Tue, 14 Nov 2023 22:13:20 +0000" },
		{ "JST-9", 1700000000, "Wed, 15 Nov 2023 07:13:20 +0900" },
		{ "EST5EDT,M3.2.0,M11.1.0", 1700000000, "Tue, 14 Nov 2023 17:13:20 -0500" },
		{ "EST5EDT,M3.2.0,M11.1.0", 1690000000, "Sat, 22 Jul 2023 00:26:40 -0400" },
	};
	const char *old = getenv("TZ");
	char *saved = old ? strdup(old) : NULL;
	struct compose_body *b = prepare(&base_job);
	struct compose_rcpt r = { .to = "a@au.com", .delivery_id = 1 };

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *h;

		setenv("TZ", cases[i].tz, 1);
		tzset();
		h = compose_head(b, &r, cases[i].t, NULL);
		assert_non_null(h);
		assert_string_equal(field(h, "Date"), cases[i].want);
		free(h);
	}
	if (saved) {
		setenv("TZ", saved, 1);
		free(saved);
	} else
		unsetenv("TZ");
	tzset();
	compose_body_free(b);
}

/* Submitted text that tries to add a header of its own. */
static void
test_injection(void **state)
{
	static const struct {
		const char *subject, *from;
	} cases[] = {
		{ "Hello\r\nBcc: x@y", "dm@example.jp" },
		{ "Hello\nBcc: x@y", "dm@example.jp" },
		{ "Hello\rBcc: x@y", "dm@example.jp" },
		{ "件名\r\nBcc: x@y", "dm@example.jp" },
		{ "Hello\r\n\r\nBcc: x@y", "dm@example.jp" },
		{ "ok", "Evil\r\nBcc: x@y <dm@example.jp>" },
		{ "ok", "\"Evil\r\nBcc: x@y\" <dm@example.jp>" },
		{ "ok", "配信\r\nBcc: x@y <dm@example.jp>" },
	};
	struct compose_job j = base_job;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct compose_body *b;
		char *h, names[512];

		j.subject = cases[i].subject;
		j.from = cases[i].from;
		j.reply_to = cases[i].from;
		b = prepare(&j);
		h = head_for(b, "a@docomo.ne.jp", NULL);
		assert_non_null(h);
		check_lines(h, strlen(h));
		field_names(h, names, sizeof(names));
		if (strcmp(names, "Date From To Subject Message-ID Reply-To MIME-Version "
		    "Content-Type Content-Transfer-Encoding") != 0)
			fail_msg("case %zu: fields %s", i, names);
		assert_null(strstr(h, "\r\nBcc:"));
		assert_ptr_equal(strstr(h, "\r\n\r\n"), h + strlen(h) - 4);
		free(h);
		compose_body_free(b);
	}
}

static void
test_from_forms(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "dm@example.jp", "dm@example.jp" },
		{ "  dm@example.jp  ", "dm@example.jp" },
		{ "<dm@example.jp>", "<dm@example.jp>" },
		{ "\"\" <dm@example.jp>", "<dm@example.jp>" },
		{ " \t<dm@example.jp>", "<dm@example.jp>" },
		{ "\r\n <dm@example.jp>", "<dm@example.jp>" },
		{ "\"\r\nEvil\" <dm@example.jp>", "Evil <dm@example.jp>" },
		{ "\" Taro \" <dm@example.jp>", "Taro <dm@example.jp>" },
		{ "Hato Team <dm@example.jp>", "Hato Team <dm@example.jp>" },
		{ "Hato Team<dm@example.jp>", "Hato Team <dm@example.jp>" },
		{ "\"Hato Team\" <dm@example.jp>", "Hato Team <dm@example.jp>" },
		/* Specials in a display name need quotes, or the address splits. */
		{ "Yamada, Taro <t@example.jp>", "\"Yamada, Taro\" <t@example.jp>" },
		{ "\"Yamada, Taro\" <t@example.jp>", "\"Yamada, Taro\" <t@example.jp>" },
		{ "\"Say \\\"hi\\\"\" <t@example.jp>", "\"Say \\\"hi\\\"\" <t@example.jp>" },
		{ "Dr. Who <t@example.jp>", "\"Dr. Who\" <t@example.jp>" },
		{ "\"taro..\"@docomo.ne.jp", "\"taro..\"@docomo.ne.jp" },
		{ "Taro <\"a b\"@docomo.ne.jp>", "Taro <\"a b\"@docomo.ne.jp>" },
		{ "日本語 <t@example.jp>", "=?UTF-8?B?5pel5pys6Kqe?= <t@example.jp>" },
	};
	struct compose_job j = base_job;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct compose_body *b;

		j.from = cases[i].in;
		b = prepare(&j);
		if (strcmp(b->from, cases[i].want) != 0)
			fail_msg("case %zu: From %s, wanted %s", i, b->from, cases[i].want);
		compose_body_free(b);
	}
}

/* A long Japanese display name: encoded words folded, the address after
 * them, every line within 78 octets. */
static void
test_from_long(void **state)
{
	struct compose_job j = base_job;
	struct compose_body *b;
	char *h;
	const char *p, *eol;

	(void)state;
	j.from = "株式会社ハト配信センター 東京本社 営業部 マーケティング課 <marketing-team@example.co.jp>";
	j.reply_to = "返信先 <reply@example.co.jp>";
	b = prepare(&j);
	h = head_for(b, "a@docomo.ne.jp", NULL);
	check_lines(h, strlen(h));
	for (p = h; (eol = strstr(p, "\r\n")) != NULL && eol != p; p = eol + 2)
		assert_true(eol - p <= 78);
	assert_non_null(strstr(field(h, "From"), "?= <marketing-team@example.co.jp>"));
	assert_memory_equal(field(h, "Reply-To"), "=?UTF-8?B?", 10);
	assert_non_null(strstr(field(h, "Reply-To"), "?= <reply@example.co.jp>"));
	free(h);
	compose_body_free(b);
}

static void
test_prepare_errors(void **state)
{
	static const struct {
		const char *from, *reply_to, *charset, *domain, *err;
	} cases[] = {
		{ "no-at-sign", NULL, NULL, "h.example", "From: address lacks local@domain" },
		{ "a@b@c", NULL, NULL, "h.example", "From: address lacks local@domain" },
		{ "@example.jp", NULL, NULL, "h.example", "From: address lacks local@domain" },
		{ "dm@", NULL, NULL, "h.example", "From: address lacks local@domain" },
		{ "", NULL, NULL, "h.example", "From: empty address" },
		{ "Name <>", NULL, NULL, "h.example", "From: empty address" },
		{ "dm@example.jp\r\nBcc: x@y", NULL, NULL, "h.example",
		  "From: control or non-ASCII character in address" },
		{ "Name <dm@example.jp\r\n>", NULL, NULL, "h.example",
		  "From: control or non-ASCII character in address" },
		{ "Name <dm\n@example.jp>", NULL, NULL, "h.example",
		  "From: control or non-ASCII character in address" },
		{ "Name <dm@例え.jp>", NULL, NULL, "h.example",
		  "From: control or non-ASCII character in address" },
		{ "Name dm@example.jp>", NULL, NULL, "h.example", "From: '>' without '<'" },
		{ "dm @example.jp", NULL, NULL, "h.example",
		  "From: white space or special character in address" },
		{ "a@x.jp, b@x.jp", NULL, NULL, "h.example",
		  "From: white space or special character in address" },
		{ "\"open@example.jp", NULL, NULL, "h.example", "From: unterminated quote in address" },
		{ "dm@example.jp", "nobody", NULL, "h.example", "Reply-To: address lacks local@domain" },
		{ "dm@example.jp", NULL, "euc-jp", "h.example", "charset euc-jp not supported yet" },
		{ "dm@example.jp", NULL, "shift_jis", "h.example", "charset shift_jis not supported yet" },
		{ "dm@example.jp", NULL, NULL, "h.example>\r\nBcc: x", "invalid Message-ID domain" },
		{ "dm@example.jp", NULL, NULL, "", "invalid Message-ID domain" },
		{ "dm@example.jp", NULL, NULL, NULL, "invalid Message-ID domain" },
	};
	struct compose_job j = base_job;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[256] = "";
		struct compose_body *b;

		j.from = cases[i].from;
		j.reply_to = cases[i].reply_to;
		j.charset = cases[i].charset;
		j.domain = cases[i].domain;
		b = compose_prepare(&j, err, sizeof(err));
		if (b != NULL)
			fail_msg("case %zu: prepared, wanted \"%s\"", i, cases[i].err);
		if (strcmp(err, cases[i].err) != 0)
			fail_msg("case %zu: \"%s\", wanted \"%s\"", i, err, cases[i].err);
	}

	/* A display name of more than 256 octets is refused. */
	char from[400];
	memset(from, 'n', 300);
	strcpy(from + 300, " <a@example.jp>");
	char err[256] = "";
	j = base_job;
	j.from = from;
	assert_null(compose_prepare(&j, err, sizeof(err)));
	assert_string_equal(err, "From: display name longer than 256 octets");
	assert_null(compose_prepare(&j, NULL, 0));

	/* The charset's spelling does not matter; NULL means UTF-8. */
	j = base_job;
	j.charset = "UTF-8";
	compose_body_free(prepare(&j));
}

static void
test_extra(void **state)
{
	static const char unsub[] =
	    "List-Unsubscribe: <mailto:unsub+abc@hato.example>,\r\n"
	    " <https://hato.example/u/abc>\r\n"
	    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n";
	static const char *const bad[] = {
		"X-A: a",			/* no CRLF at the end */
		"X-A: a\n",
		"X-A: a\nBcc: x@y\r\n",		/* a bare LF inside */
		"X-A: a\rBcc: x@y\r\n",		/* a bare CR inside */
		"X-A: a\r\n\r\nBody\r\n",	/* an empty line ends the header */
		"\r\n",
		" continues Subject\r\n",	/* would continue our header */
		"X-A: a\r\n   \r\n",		/* a line of white space alone */
		"no colon\r\n",
		": no name\r\n",
		"X-A: \x01\r\n",
	};
	struct compose_body *b = prepare(&base_job);
	char *h, names[512], longline[1100];

	(void)state;
	h = head_for(b, "a@au.com", unsub);
	assert_non_null(h);
	field_names(h, names, sizeof(names));
	assert_string_equal(names, "Date From To Subject Message-ID List-Unsubscribe "
	    "List-Unsubscribe-Post MIME-Version Content-Type Content-Transfer-Encoding");
	assert_non_null(strstr(h, unsub));
	free(h);
	h = head_for(b, "a@au.com", "");
	assert_non_null(h);
	free(h);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if ((h = head_for(b, "a@au.com", bad[i])) != NULL)
			fail_msg("case %zu: accepted", i);
	memset(longline, 'x', 1000);
	memcpy(longline, "X-Long: ", 8);
	strcpy(longline + 999, "\r\n");
	assert_null(head_for(b, "a@au.com", longline));
	strcpy(longline + 998, "\r\n");
	h = head_for(b, "a@au.com", longline);
	assert_non_null(h);
	free(h);

	/* The recipient is one line of printable ASCII. */
	assert_null(head_for(b, "a@au.com\r\nBcc: x@y", NULL));
	assert_null(head_for(b, "", NULL));
	assert_null(head_for(b, NULL, NULL));
	compose_body_free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_message),
		cmocka_unit_test(test_body),
		cmocka_unit_test(test_message_id),
		cmocka_unit_test(test_date),
		cmocka_unit_test(test_injection),
		cmocka_unit_test(test_from_forms),
		cmocka_unit_test(test_from_long),
		cmocka_unit_test(test_prepare_errors),
		cmocka_unit_test(test_extra),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
