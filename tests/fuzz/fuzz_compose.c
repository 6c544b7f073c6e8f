/*
 * fuzz_compose: an outgoing message from a submitter's From, Reply-To,
 * Subject and body, and a recipient's To and extra header lines.
 *
 * Input: one octet of flags (charset, whether Reply-To and extra lines
 * are given, whether to sign with DKIM), four octets of time, then the
 * fields separated by NUL: From, Reply-To, Subject, body, To, extra. The
 * DKIM key is an Ed25519 key made at start-up (its PEM file is removed as
 * soon as it is loaded).
 *
 * Whatever the fields hold, the head is a header block: CRLF lines only,
 * none over 998 octets, no control but TAB, each line a "Name: value"
 * field or a fold of the one before, one empty line and only at its end.
 * Its fields are exactly ours (DKIM-Signature when signed, first; Date,
 * From, To, Subject, Message-ID, Reply-To when given, the MIME headers)
 * plus the caller's extra lines,
 * which appear as given: no CR or LF of a submitter's starts a field.
 * The encoded values are folded header values. The body ends in CRLF, its
 * lines are within 998 octets; in UTF-8 it is base64 of the text with its
 * line ends made CRLF, in ISO-2022-JP it is 7-bit and each line ends in
 * ASCII.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "gateway/compose.h"
#include "gateway/dkim.h"
#include "check.h"

#define NFIELDS 6

enum { F_FROM, F_REPLY_TO, F_SUBJECT, F_BODY, F_TO, F_EXTRA };

/* The number of fields (lines not starting with white space) in a block
 * of CRLF lines. */
static size_t
count_fields(const char *s)
{
	size_t n = 0;

	for (const char *l = s; *l != '\0';) {
		const char *crlf = strstr(l, "\r\n");

		if (*l != ' ' && *l != '\t')
			n++;
		if (crlf == NULL)
			break;
		l = crlf + 2;
	}
	return n;
}

static struct dkim_key *key;

static const char *const our_names[] = {
	"DKIM-Signature", "Date", "From", "To", "Subject", "Message-ID", "Reply-To",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding",
};

static void
check_head(const char *head, size_t len, const struct compose_body *b, const char *extra)
{
	size_t fields = 0, want;
	const char *l = head, *end = head + len;

	CHECK(strlen(head) == len);
	CHECK(len >= 4 && memcmp(end - 4, "\r\n\r\n", 4) == 0);
	while (l < end - 2) {
		const char *crlf = strstr(l, "\r\n");
		size_t n;

		CHECK(crlf != NULL);
		n = (size_t)(crlf - l);
		CHECK(n >= 1 && n <= 998);	/* the empty line only at the end */
		CHECK(memchr(l, '\n', n) == NULL && memchr(l, '\r', n) == NULL);
		CHECK(fuzz_printable_ascii(l, n) || extra != NULL);
		for (size_t i = 0; i < n; i++)
			CHECK(((unsigned char)l[i] >= 0x20 || l[i] == '\t') && l[i] != 0x7f);
		if (*l == ' ' || *l == '\t') {
			CHECK(l != head);
		} else {
			const char *colon = memchr(l, ':', n);
			bool ours = false;

			CHECK(colon != NULL && colon > l);
			fields++;
			for (size_t i = 0; i < sizeof(our_names) / sizeof(our_names[0]); i++)
				ours |= strlen(our_names[i]) == (size_t)(colon - l) &&
				    strncasecmp(l, our_names[i], (size_t)(colon - l)) == 0;
			CHECK(ours || extra != NULL);
		}
		l = crlf + 2;
	}
	CHECK(l == end - 2);
	want = 8 + (b->reply_to != NULL) + (b->dkim != NULL) + (extra ? count_fields(extra) : 0);
	if (b->dkim != NULL)
		CHECK(strncmp(head, "DKIM-Signature:", 15) == 0);
	CHECK(fields == want);
	if (extra != NULL)
		CHECK(strstr(head, extra) != NULL);
}

/* The text with each LF, CRLF and lone CR made CRLF. */
static char *
crlf_text(const char *s, size_t *len)
{
	size_t n = strlen(s), o = 0;
	char *out = malloc(n * 2 + 1);

	if (out == NULL)
		abort();
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\r' && s[i + 1] == '\n')
			i++;
		if (s[i] == '\r' || s[i] == '\n') {
			out[o++] = '\r';
			out[o++] = '\n';
		} else
			out[o++] = s[i];
	}
	out[o] = '\0';
	*len = o;
	return out;
}

static void
check_body(const struct compose_body *b, const char *text)
{
	const char *l = b->body, *end = b->body + b->body_len;

	CHECK(strlen(b->body) == b->body_len);
	CHECK(b->body_len >= 2 && memcmp(end - 2, "\r\n", 2) == 0);
	if (strcmp(b->charset_used, "UTF-8") == 0) {
		size_t want_len, got = 0;
		char *want = crlf_text(text, &want_len);
		unsigned char *dec = malloc(b->body_len);

		if (dec == NULL)
			abort();
		while (l < end) {
			const char *crlf = strstr(l, "\r\n");
			size_t n = (size_t)(crlf - l), d;

			CHECK(n <= 76);
			d = fuzz_base64_decode(l, n, dec + got);
			CHECK(d != (size_t)-1);
			got += d;
			l = crlf + 2;
		}
		CHECK(got == want_len && memcmp(dec, want, got) == 0);
		free(dec);
		free(want);
		return;
	}
	CHECK(strcmp(b->charset_used, "ISO-2022-JP") == 0);
	while (l < end) {
		const char *crlf = strstr(l, "\r\n");
		size_t n;
		bool ascii = true;

		CHECK(crlf != NULL);
		n = (size_t)(crlf - l);
		CHECK(n <= 998);
		for (size_t i = 0; i < n; i++) {
			CHECK((unsigned char)l[i] < 0x80 && l[i] != '\r' && l[i] != '\n');
			if (l[i] == 0x1b && i + 2 < n)
				ascii = l[i + 1] == '(' && (l[i + 2] == 'B' || l[i + 2] == 'J');
		}
		CHECK(ascii);
		l = crlf + 2;
	}
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[] = "/tmp/hato-fuzz-dkim.XXXXXX", err[256];
	EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	int fd = mkstemp(path);		/* mode 600, as dkim_key_load wants */
	FILE *f;

	(void)argc, (void)argv;
	if (pk == NULL || fd < 0 || (f = fdopen(fd, "w")) == NULL)
		abort();
	if (PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL) != 1 || fclose(f) != 0)
		abort();
	key = dkim_key_load(path, "hato.example", "fuzz", err, sizeof(err));
	unlink(path);
	EVP_PKEY_free(pk);
	if (key == NULL) {
		fprintf(stderr, "dkim_key_load: %s\n", err);
		abort();
	}
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *field[NFIELDS] = { "", "", "", "", "", "" };
	struct compose_job j = { 0 };
	struct compose_rcpt r = { 0 };
	struct compose_body *b;
	char err[256] = "", *copy, *head;
	size_t pos, nf = 0, len = 0;
	uint8_t flags;
	time_t now;

	if (size < 5)
		return 0;
	flags = data[0];
	now = (time_t)((uint32_t)data[1] << 24 | (uint32_t)data[2] << 16 |
	    (uint32_t)data[3] << 8 | data[4]);
	copy = fuzz_strndup(data + 5, size - 5);
	for (pos = 0; nf < NFIELDS && pos <= size - 5; nf++) {
		field[nf] = copy + pos;
		pos += strlen(copy + pos) + 1;
	}
	j.job_id = (uint64_t)now * 7;
	j.from = field[F_FROM];
	j.reply_to = (flags & 1) ? field[F_REPLY_TO] : NULL;
	j.subject = field[F_SUBJECT];
	j.body = field[F_BODY];
	j.charset = (flags & 2) ? "iso-2022-jp" : "utf-8";
	j.domain = "hato.example";
	j.dkim = (flags & 8) ? key : NULL;

	fuzz_poison_stack();
	b = compose_prepare(&j, err, sizeof(err));
	if (b == NULL) {
		CHECK(err[0] != '\0');
		free(copy);
		return 0;
	}
	CHECK(fuzz_header_value_ok(b->from, strlen("From: ")));
	CHECK(fuzz_header_value_ok(b->subject, strlen("Subject: ")));
	CHECK((b->reply_to != NULL) == (j.reply_to != NULL));
	if (b->reply_to != NULL)
		CHECK(fuzz_header_value_ok(b->reply_to, strlen("Reply-To: ")));
	CHECK(b->charset_used != NULL);
	CHECK(b->dkim == j.dkim && (b->dkim == NULL || b->dkim_bh != NULL));
	if (b->fell_back)
		CHECK(strcmp(b->charset_used, "UTF-8") == 0 && b->fallback[0] != '\0');
	check_body(b, j.body);

	r.to = field[F_TO];
	r.delivery_id = (uint64_t)now;
	r.extra = (flags & 4) ? field[F_EXTRA] : NULL;
	fuzz_poison_stack();
	head = compose_head(b, &r, now, &len);
	if (head != NULL) {
		check_head(head, len, b, r.extra);
		free(head);
	}
	compose_body_free(b);
	free(copy);
	return 0;
}
