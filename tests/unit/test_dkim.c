/*
 * test_dkim: DKIM signatures (gateway/dkim.c).
 *
 * Body canonicalisation is checked through dkim_body_hash against the
 * SHA-256 of the canonical form a table gives (RFC 6376 3.4.5, RFC 8463
 * appendix A). Header canonicalisation and field selection are checked by
 * a verifier of the test's own: it canonicalises the fields h= names and
 * the signature header itself, and checks b= with the public key of a key
 * pair the test generates (RSA 2048 and Ed25519), written to a 0600 file.
 * Key files that must be refused: readable by others, not PEM, encrypted,
 * of another type, too short; bad d= and s=. Finally a composed message
 * (gateway/compose) is signed and verified the same way.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "gateway/compose.h"
#include "gateway/dkim.h"

struct keys {
	EVP_PKEY *rsa, *ed;
	char rsa_path[64], ed_path[64];
};

static struct keys K;

/* A PEM private key in a new file of the given mode; its path to path. */
static void
write_key(EVP_PKEY *pkey, mode_t mode, char *path, size_t size, const EVP_CIPHER *enc)
{
	FILE *fp;
	int fd;

	snprintf(path, size, "/tmp/test_dkim.XXXXXX");
	assert_true((fd = mkstemp(path)) >= 0);
	assert_int_equal(fchmod(fd, mode), 0);
	assert_non_null(fp = fdopen(fd, "w"));
	assert_int_equal(PEM_write_PrivateKey(fp, pkey, enc, enc ? (unsigned char *)"pw" : NULL,
	    enc ? 2 : 0, NULL, NULL), 1);
	assert_int_equal(fclose(fp), 0);
}

static int
setup(void **state)
{
	(void)state;
	K.rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	K.ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	if (K.rsa == NULL || K.ed == NULL)
		return -1;
	write_key(K.rsa, 0600, K.rsa_path, sizeof(K.rsa_path), NULL);
	write_key(K.ed, 0600, K.ed_path, sizeof(K.ed_path), NULL);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	unlink(K.rsa_path);
	unlink(K.ed_path);
	EVP_PKEY_free(K.rsa);
	EVP_PKEY_free(K.ed);
	return 0;
}

static struct dkim_key *
load(const char *path)
{
	char err[256] = "";
	struct dkim_key *k = dkim_key_load(path, "example.jp", "sel2026", err, sizeof(err));

	if (k == NULL)
		fail_msg("dkim_key_load: %s", err);
	return k;
}

static char *
b64(const unsigned char *in, size_t n)
{
	char *out = malloc((n + 2) / 3 * 4 + 1);

	assert_non_null(out);
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	return out;
}

/* ---- The test's own verifier ---- */

/* Relaxed canonical form of one field (name: value, folded or not, without
 * its final CRLF), onto out. */
static void
t_canon(const char *f, size_t len, char *out)
{
	const char *colon = memchr(f, ':', len);
	size_t nl, n = 0, i;
	char *v;

	assert_non_null(colon);
	for (nl = (size_t)(colon - f); nl > 0 && (f[nl - 1] == ' ' || f[nl - 1] == '\t'); nl--)
		;
	for (i = 0; i < nl; i++)
		out[n++] = (char)tolower((unsigned char)f[i]);
	out[n++] = ':';
	v = out + n;
	for (i = (size_t)(colon - f) + 1; i < len; i++) {
		if (f[i] == '\r' || f[i] == '\n')
			continue;
		if (f[i] == ' ' || f[i] == '\t') {
			if (n > (size_t)(v - out) && out[n - 1] != ' ')
				out[n++] = ' ';
			continue;
		}
		out[n++] = f[i];
	}
	if (n > (size_t)(v - out) && out[n - 1] == ' ')
		n--;
	out[n] = '\0';
}

struct tfield {
	const char *p;
	size_t len;
	bool used;
};

static size_t
t_fields(const char *head, struct tfield *f, size_t max)
{
	size_t n = 0;

	for (const char *p = head; *p != '\0' && strncmp(p, "\r\n", 2) != 0;) {
		const char *e = strstr(p, "\r\n");

		assert_non_null(e);
		if (*p == ' ' || *p == '\t')
			f[n - 1].len = (size_t)(e - f[n - 1].p);
		else {
			assert_true(n < max);
			f[n].p = p;
			f[n].len = (size_t)(e - p);
			f[n].used = false;
			n++;
		}
		p = e + 2;
	}
	return n;
}

/* The value of tag t in a canonical signature header ("dkim-signature:..."). */
static void
t_tag(const char *sig, const char *t, char *out, size_t size)
{
	char key[8];
	const char *p, *e;

	snprintf(key, sizeof(key), "%s=", t);
	for (p = strchr(sig, ':') + 1; p != NULL; p = strchr(p, ';')) {
		while (*p == ';' || *p == ' ')
			p++;
		if (strncmp(p, key, strlen(key)) == 0)
			break;
	}
	assert_non_null(p);
	p += strlen(key);
	e = strchr(p, ';');
	if (e == NULL)
		e = p + strlen(p);
	assert_true((size_t)(e - p) < size);
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = '\0';
	/* Base64 values may hold folding white space. */
	for (char *q = out, *w = out;; q++) {
		if (*q != ' ')
			*w++ = *q;
		if (*q == '\0')
			break;
	}
}

/*
 * Verify the DKIM-Signature at the top of msg (a header block) with pkey.
 * When want is not NULL, the canonical data of the signed fields must be
 * exactly want. Returns whether the signature holds.
 */
static bool
t_verify(const char *msg, EVP_PKEY *pkey, const char *want)
{
	struct tfield f[64];
	char canon[4096], data[16384] = "", hv[2048], bv[2048], a[32], *cut;
	unsigned char sig[1024], hash[32];
	size_t nf = t_fields(msg, f, 64), dl, siglen;
	EVP_MD_CTX *ctx;
	bool ok;

	assert_true(nf > 0);
	assert_int_equal(strncmp(f[0].p, "DKIM-Signature:", 15), 0);
	t_canon(f[0].p, f[0].len, canon);
	t_tag(canon, "h", hv, sizeof(hv));
	t_tag(canon, "b", bv, sizeof(bv));
	t_tag(canon, "a", a, sizeof(a));
	f[0].used = true;
	for (char *name = strtok(hv, ":"); name != NULL; name = strtok(NULL, ":"))
		for (size_t i = nf; i-- > 1;)
			if (!f[i].used && strncasecmp(f[i].p, name, strlen(name)) == 0 &&
			    (f[i].p[strlen(name)] == ':' || f[i].p[strlen(name)] == ' ' ||
			    f[i].p[strlen(name)] == '\t')) {
				char one[4096];

				f[i].used = true;
				t_canon(f[i].p, f[i].len, one);
				strcat(data, one);
				strcat(data, "\r\n");
				break;
			}
	if (want != NULL && strcmp(data, want) != 0)
		fail_msg("signed data\n%s\nwanted\n%s", data, want);
	/* The signature header itself, b= empty, no CRLF. */
	assert_non_null(cut = strstr(canon, "; b="));
	cut[4] = '\0';
	strcat(data, canon);
	dl = strlen(data);

	/* EVP_DecodeBlock counts the padding as zero octets. */
	siglen = (size_t)EVP_DecodeBlock(sig, (unsigned char *)bv, (int)strlen(bv));
	for (size_t i = strlen(bv); i > 0 && bv[i - 1] == '='; i--)
		siglen--;
	assert_non_null(ctx = EVP_MD_CTX_new());
	if (strcmp(a, "rsa-sha256") == 0) {
		assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey), 1);
		ok = EVP_DigestVerify(ctx, sig, siglen, (unsigned char *)data, dl) == 1;
	} else {
		assert_string_equal(a, "ed25519-sha256");
		assert_int_equal(siglen, 64);
		assert_int_equal(EVP_Digest(data, dl, hash, NULL, EVP_sha256(), NULL), 1);
		assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey), 1);
		ok = EVP_DigestVerify(ctx, sig, siglen, hash, sizeof(hash)) == 1;
	}
	EVP_MD_CTX_free(ctx);
	return ok;
}

/* The signature header's shape: CRLF lines, continuations start with a
 * space, lines within 78 octets. */
static void
check_shape(const char *sig)
{
	size_t n = strlen(sig);
	const char *p = sig, *e;

	assert_true(n > 2);
	assert_string_equal(sig + n - 2, "\r\n");
	assert_int_equal(strncmp(sig, "DKIM-Signature: v=1; a=", 23), 0);
	for (; *p != '\0'; p = e + 2) {
		assert_non_null(e = strstr(p, "\r\n"));
		if (p != sig)
			assert_true(*p == ' ');
		if (e - p > 78)
			fail_msg("line of %d octets: %.*s", (int)(e - p), (int)(e - p), p);
		for (const char *q = p; q < e; q++)
			assert_true(*q != '\r' && *q != '\n');
	}
}

/* ---- Body ---- */

static void
test_body_canon(void **state)
{
	static const struct {
		const char *in, *canon;
	} cases[] = {
		/* RFC 6376 3.4.5 */
		{ " C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n" },
		/* 3.4.4: an empty body stays empty; so does one of empty lines. */
		{ "", "" },
		{ "\r\n", "" },
		{ "\r\n\r\n\r\n", "" },
		{ " \t \r\n\t\r\n", "" },
		/* A last line without CRLF gets one. */
		{ "abc", "abc\r\n" },
		{ "abc  ", "abc\r\n" },
		{ "abc\r\n", "abc\r\n" },
		{ "a  b\t\tc \t\r\n\r\nd\r\n\r\n", "a b c\r\n\r\nd\r\n" },
		/* Leading empty lines and leading white space stay (as one SP). */
		{ "\r\n\r\nx", "\r\n\r\nx\r\n" },
		{ "\t\tindented\r\n", " indented\r\n" },
		/* A line of white space is an empty line: inside kept, at the end gone. */
		{ "x\r\n \t\r\ny\r\n", "x\r\n\r\ny\r\n" },
		{ "x \r\n \r\n", "x\r\n" },
		/* A lone LF or CR is text of its line, not a line end. */
		{ "a\nb\r\n", "a\nb\r\n" },
		{ "a\r\rb\r\n", "a\r\rb\r\n" },
		/* 8-bit text is passed as it is. */
		{ "日本語  テキスト \r\n", "日本語 テキスト\r\n" },
	};
	unsigned char md[32];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *want, *got;

		assert_int_equal(EVP_Digest(cases[i].canon, strlen(cases[i].canon), md, NULL,
		    EVP_sha256(), NULL), 1);
		want = b64(md, sizeof(md));
		got = dkim_body_hash(cases[i].in, strlen(cases[i].in));
		assert_non_null(got);
		if (strcmp(got, want) != 0)
			fail_msg("case %zu: bh %s, wanted %s", i, got, want);
		free(want);
		free(got);
	}
}

static void
test_body_vectors(void **state)
{
	/* RFC 8463 appendix A: the body of its example and its bh=. */
	static const char rfc8463[] = "Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n";
	char *bh, *big;
	size_t n = 200000;

	(void)state;
	bh = dkim_body_hash(rfc8463, strlen(rfc8463));
	assert_string_equal(bh, "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=");
	free(bh);
	bh = dkim_body_hash("", 0);
	assert_string_equal(bh, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
	free(bh);

	/* A body larger than the internal buffer, one long line and many
	 * short ones, hashes the same as its canonical form. */
	assert_non_null(big = malloc(n + 1));
	for (size_t i = 0; i < n; i++)
		big[i] = i < 10000 ? 'x' : (i % 7 == 5 ? '\r' : i % 7 == 6 ? '\n' : 'y');
	big[n] = '\0';
	char *b1 = dkim_body_hash(big, n), *b2;
	unsigned char md[32];
	/* Already canonical but for the end: the last line lacks its CRLF. */
	size_t cl = n;
	char *canon = malloc(n + 3);
	assert_non_null(canon);
	memcpy(canon, big, n);
	if (!(n >= 2 && big[n - 2] == '\r' && big[n - 1] == '\n')) {
		memcpy(canon + n, "\r\n", 2);
		cl += 2;
	}
	assert_int_equal(EVP_Digest(canon, cl, md, NULL, EVP_sha256(), NULL), 1);
	b2 = b64(md, sizeof(md));
	assert_string_equal(b1, b2);
	free(b1);
	free(b2);
	free(canon);
	free(big);
}

/* ---- Header ---- */

static void
test_header_canon(void **state)
{
	static const struct {
		const char *head, *names, *want;
	} cases[] = {
		/* RFC 6376 3.4.5, with the From that every signature needs. */
		{ "From: f@example.jp\r\nA: X\r\nB : Y\t\r\n\tZ  \r\n\r\n", "from:a:b",
		  "from:f@example.jp\r\na:X\r\nb:Y Z\r\n" },
		/* The same without the empty line at the end of the head. */
		{ "From: f@example.jp\r\nA: X\r\nB : Y\t\r\n\tZ  \r\n", "from:a:b",
		  "from:f@example.jp\r\na:X\r\nb:Y Z\r\n" },
		/* Names in any case; values unfolded and squeezed. */
		{ "FROM:   Taro   <t@example.jp>  \r\nSUBJECT:\tHello  \t World\r\n", "from:subject",
		  "from:Taro <t@example.jp>\r\nsubject:Hello World\r\n" },
		{ "From: f@x.jp\r\nSubject: =?UTF-8?B?5pel?=\r\n =?UTF-8?B?5pys?=\r\n", "From:SUBJECT",
		  "from:f@x.jp\r\nsubject:=?UTF-8?B?5pel?= =?UTF-8?B?5pys?=\r\n" },
		/* Empty values. */
		{ "From: f@x.jp\r\nX-Empty:\r\nX-Blank:   \t \r\n", "from:x-empty:x-blank",
		  "from:f@x.jp\r\nx-empty:\r\nx-blank:\r\n" },
		/* A name listed again takes the next instance up; one with none
		 * left, or none at all, adds nothing. */
		{ "X-A: 1\r\nFrom: f@x.jp\r\nX-A: 2\r\n", "from:x-a:x-a:x-a:cc",
		  "from:f@x.jp\r\nx-a:2\r\nx-a:1\r\n" },
		/* The order of h=, not that of the head. */
		{ "To: t@x.jp\r\nFrom: f@x.jp\r\n", "from:to", "from:f@x.jp\r\nto:t@x.jp\r\n" },
		/* A prefix of a name is another name. */
		{ "From: f@x.jp\r\nList-Unsubscribe-Post: a\r\nList-Unsubscribe: <u>\r\n",
		  "from:list-unsubscribe", "from:f@x.jp\r\nlist-unsubscribe:<u>\r\n" },
	};
	struct dkim_key *rsa = load(K.rsa_path), *ed = load(K.ed_path);
	char *bh = dkim_body_hash("body\r\n", 6);

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (int k = 0; k < 2; k++) {
			char *sig = dkim_sign(k ? ed : rsa, cases[i].head, strlen(cases[i].head), bh,
			    cases[i].names, 1700000000), *msg;

			if (sig == NULL)
				fail_msg("case %zu: not signed", i);
			check_shape(sig);
			assert_non_null(msg = malloc(strlen(sig) + strlen(cases[i].head) + 1));
			strcpy(msg, sig);
			strcat(msg, cases[i].head);
			if (!t_verify(msg, k ? K.ed : K.rsa, cases[i].want))
				fail_msg("case %zu key %d: signature does not verify", i, k);
			free(msg);
			free(sig);
		}
	}
	free(bh);
	dkim_key_free(rsa);
	dkim_key_free(ed);
}

static void
test_sign_refused(void **state)
{
	static const struct {
		const char *head, *names, *bh;
	} cases[] = {
		{ "From: f@x.jp\r\nTo: t@x.jp\r\n", "to:subject", NULL },	/* From not signed */
		{ "To: t@x.jp\r\n", "from:to", NULL },			/* no From in the head */
		{ "From: f@x.jp\n", "from", NULL },			/* not CRLF lines */
		{ "From: f@x.jp", "from", NULL },
		{ " cont\r\nFrom: f@x.jp\r\n", "from", NULL },		/* continuation first */
		{ "no colon\r\nFrom: f@x.jp\r\n", "from", NULL },
		{ "From: f@x.jp\r\n", "from:bad name", NULL },
		{ "From: f@x.jp\r\n", "from::to", NULL },		/* empty name */
		{ "From: f@x.jp\r\n", "from;to", NULL },
		{ "From: f@x.jp\r\n", "from", "not base64;" },
		{ "From: f@x.jp\r\n", "from", "" },
	};
	struct dkim_key *ed = load(K.ed_path);
	char *bh = dkim_body_hash("", 0);

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *sig = dkim_sign(ed, cases[i].head, strlen(cases[i].head),
		    cases[i].bh ? cases[i].bh : bh, cases[i].names, 1700000000);

		if (sig != NULL)
			fail_msg("case %zu: signed:\n%s", i, sig);
	}
	assert_null(dkim_sign(NULL, "From: f@x.jp\r\n", 14, bh, "from", 0));
	assert_null(dkim_sign(ed, "From: f@x.jp\r\n", 14, bh, "from", -1));
	free(bh);
	dkim_key_free(ed);
}

/* ---- Signing with each key type ---- */

static const char head[] =
    "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
    "From: =?UTF-8?B?44OP44OI6YWN5L+h?= <dm@example.jp>\r\n"
    "To: \"taro..\"@docomo.ne.jp\r\n"
    "Subject: =?UTF-8?B?6YCx5pyr6ZmQ5a6a44K744O844Or44Gu44GK55+l44KJ44Gb?=\r\n"
    "Message-ID: <12.3456.0123456789abcdef@hato.example>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=UTF-8\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n";
static const char names[] =
    "from:to:subject:date:message-id:mime-version:content-type:content-transfer-encoding";

static void
sign_with(const char *path, EVP_PKEY *pkey, const char *alg)
{
	struct dkim_key *k = load(path);
	char *bh = dkim_body_hash("44GT44KT44Gr44Gh44Gv\r\n", 22), *sig, *msg, want[160];
	size_t n;

	sig = dkim_sign(k, head, strlen(head), bh, names, 1700000000);
	assert_non_null(sig);
	check_shape(sig);
	snprintf(want, sizeof(want), "DKIM-Signature: v=1; a=%s; c=relaxed/relaxed; d=example.jp;", alg);
	assert_int_equal(strncmp(sig, want, strlen(want)), 0);
	assert_non_null(strstr(sig, " s=sel2026;"));
	assert_non_null(strstr(sig, " t=1700000000;"));
	snprintf(want, sizeof(want), "bh=%s;", bh);
	assert_non_null(strstr(sig, want));
	/* b= starts a line of its own and is the last tag. */
	assert_non_null(strstr(sig, ";\r\n b="));
	n = strlen(sig) + strlen(head);
	assert_non_null(msg = malloc(n + 64));
	strcpy(msg, sig);
	strcat(msg, head);
	assert_true(t_verify(msg, pkey, NULL));

	/* Any change to a signed field breaks it; so does another bh. */
	char *sub = strstr(msg, "Subject: =?UTF-8?B?6YCx") + 20;
	*sub = *sub == 'A' ? 'B' : 'A';
	assert_false(t_verify(msg, pkey, NULL));
	*sub = 'Y';
	assert_true(t_verify(msg, pkey, NULL));
	char *b = strstr(msg, "bh=") + 3;
	*b = *b == 'A' ? 'B' : 'A';
	assert_false(t_verify(msg, pkey, NULL));

	/* Folding white space added or removed is nothing to relaxed. */
	strcpy(msg, sig);
	strcat(msg, "Date:   Tue, 14 Nov 2023\r\n\t22:13:20 +0000 \r\n");
	strcat(msg, strstr(head, "From:"));
	assert_true(t_verify(msg, pkey, NULL));

	free(msg);
	free(sig);
	free(bh);
	dkim_key_free(k);
}

static void
test_sign_rsa(void **state)
{
	(void)state;
	sign_with(K.rsa_path, K.rsa, "rsa-sha256");
}

static void
test_sign_ed25519(void **state)
{
	(void)state;
	sign_with(K.ed_path, K.ed, "ed25519-sha256");
}

/* Long d=, s= and h= still fold within 78 columns where they can. */
static void
test_sign_folding(void **state)
{
	struct dkim_key *k;
	char err[256], d[80], *sig, *bh = dkim_body_hash("", 0), many[1024] = "from";

	(void)state;
	memset(d, 'd', 60);
	strcpy(d + 60, ".example.jp");
	assert_non_null(k = dkim_key_load(K.rsa_path, d, "a-rather-long-selector-2026-11", err, sizeof(err)));
	for (int i = 0; i < 30; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), ":x-header-%02d", i);
	assert_non_null(sig = dkim_sign(k, "From: f@x.jp\r\n", 14, bh, many, 1700000000));
	check_shape(sig);
	free(sig);
	dkim_key_free(k);
	free(bh);
}

/* ---- Key files ---- */

static void
expect_refused(const char *path, const char *domain, const char *selector, const char *why)
{
	char err[512] = "";

	assert_null(dkim_key_load(path, domain, selector, err, sizeof(err)));
	if (strstr(err, why) == NULL)
		fail_msg("%s: \"%s\", wanted \"%s\"", path, err, why);
}

static void
test_key_refused(void **state)
{
	char path[64];
	EVP_PKEY *ec, *small;
	EVP_PKEY_CTX *ctx;
	FILE *fp;
	int fd;

	(void)state;
	/* Readable by others. */
	write_key(K.rsa, 0644, path, sizeof(path), NULL);
	expect_refused(path, "example.jp", "s", "readable by others");
	unlink(path);
	write_key(K.ed, 0640, path, sizeof(path), NULL);
	expect_refused(path, "example.jp", "s", "readable by others");
	unlink(path);
	expect_refused("/nonexistent/key.pem", "example.jp", "s", "No such file");

	/* Encrypted: refused, not asked for on a terminal. */
	write_key(K.rsa, 0600, path, sizeof(path), EVP_aes_128_cbc());
	expect_refused(path, "example.jp", "s", "no unencrypted PEM private key");
	unlink(path);

	/* Not a key. */
	snprintf(path, sizeof(path), "/tmp/test_dkim.XXXXXX");
	assert_true((fd = mkstemp(path)) >= 0);
	assert_non_null(fp = fdopen(fd, "w"));
	fputs("-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n", fp);
	fclose(fp);
	expect_refused(path, "example.jp", "s", "no unencrypted PEM private key");
	unlink(path);

	/* Another type, and an RSA key too short for DKIM. */
	assert_non_null(ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"));
	write_key(ec, 0600, path, sizeof(path), NULL);
	expect_refused(path, "example.jp", "s", "neither RSA nor Ed25519");
	unlink(path);
	EVP_PKEY_free(ec);
	small = NULL;
	assert_non_null(ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL));
	assert_int_equal(EVP_PKEY_keygen_init(ctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 512), 1);
	assert_int_equal(EVP_PKEY_keygen(ctx, &small), 1);
	EVP_PKEY_CTX_free(ctx);
	write_key(small, 0600, path, sizeof(path), NULL);
	expect_refused(path, "example.jp", "s", "RSA key of 512 bits");
	unlink(path);
	EVP_PKEY_free(small);

	/* d= and s= go into a header: nothing but DNS names. */
	expect_refused(K.ed_path, "exa mple.jp", "s", "domain");
	expect_refused(K.ed_path, "example.jp; x=1", "s", "domain");
	expect_refused(K.ed_path, "a..jp", "s", "domain");
	expect_refused(K.ed_path, "", "s", "domain");
	expect_refused(K.ed_path, NULL, "s", "domain");
	expect_refused(K.ed_path, "example.jp", "s;b=", "selector");
	expect_refused(K.ed_path, "example.jp", "s\r\nBcc: x", "selector");
	expect_refused(K.ed_path, "example.jp", ".s", "selector");
}

/* ---- A composed message ---- */

static void
test_compose_signed(void **state)
{
	static const char unsub[] =
	    "List-Unsubscribe: <mailto:unsub+abc@hato.example>,\r\n"
	    " <https://hato.example/u/abc>\r\n"
	    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
	    "X-Other: not signed\r\n";
	struct dkim_key *k = load(K.ed_path);
	struct compose_job j = {
		.job_id = 12, .from = "Hato 配信 <dm@example.jp>", .reply_to = "r@example.jp",
		.subject = "週末限定セールのお知らせ", .body = "本文\n", .domain = "hato.example",
		.dkim = k,
	};
	struct compose_rcpt r = { .to = "a@docomo.ne.jp", .delivery_id = 3, .extra = unsub };
	char err[256] = "", *h, *bh, *end;
	struct compose_body *b;
	size_t len;

	(void)state;
	for (int cs = 0; cs < 2; cs++) {
		j.charset = cs ? "iso-2022-jp" : "utf-8";
		assert_non_null(b = compose_prepare(&j, err, sizeof(err)));
		bh = dkim_body_hash(b->body, b->body_len);
		assert_string_equal(b->dkim_bh, bh);
		free(bh);
		assert_non_null(h = compose_head(b, &r, 1700000000, &len));
		assert_int_equal(len, strlen(h));
		assert_int_equal(strncmp(h, "DKIM-Signature: v=1; a=ed25519-sha256;", 38), 0);
		end = strstr(h, "\r\nDate: ");
		assert_non_null(end);
		char sig[2048];
		snprintf(sig, sizeof(sig), "%.*s", (int)(end - h + 2), h);
		check_shape(sig);
		char canon[2048], hv[512];
		t_canon(sig, strlen(sig) - 2, canon);
		t_tag(canon, "h", hv, sizeof(hv));
		assert_string_equal(hv, "from:to:subject:date:message-id:reply-to:list-unsubscribe:"
		    "list-unsubscribe-post:mime-version:content-type:content-transfer-encoding");
		assert_true(t_verify(h, K.ed, NULL));
		/* One header block: its only empty line at its end. */
		assert_ptr_equal(strstr(h, "\r\n\r\n"), h + len - 4);
		free(h);

		/* Only the List-Unsubscribe lines there are get signed. */
		r.extra = "List-Unsubscribe: <a>\r\n";
		assert_non_null(h = compose_head(b, &r, 1700000000, &len));
		t_canon(h, (size_t)(strstr(h, "\r\nDate: ") - h), canon);
		t_tag(canon, "h", hv, sizeof(hv));
		assert_string_equal(hv, "from:to:subject:date:message-id:reply-to:list-unsubscribe:"
		    "mime-version:content-type:content-transfer-encoding");
		assert_true(t_verify(h, K.ed, NULL));
		free(h);
		r.extra = unsub;
		compose_body_free(b);
	}

	/* Without a key nothing is signed. */
	j.dkim = NULL;
	assert_non_null(b = compose_prepare(&j, err, sizeof(err)));
	assert_null(b->dkim_bh);
	assert_non_null(h = compose_head(b, &r, 1700000000, &len));
	assert_int_equal(strncmp(h, "Date: ", 6), 0);
	free(h);
	compose_body_free(b);
	dkim_key_free(k);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_body_canon),
		cmocka_unit_test(test_body_vectors),
		cmocka_unit_test(test_header_canon),
		cmocka_unit_test(test_sign_refused),
		cmocka_unit_test(test_sign_rsa),
		cmocka_unit_test(test_sign_ed25519),
		cmocka_unit_test(test_sign_folding),
		cmocka_unit_test(test_key_refused),
		cmocka_unit_test(test_compose_signed),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
