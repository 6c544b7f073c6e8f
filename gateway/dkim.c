/*
 * dkim: DKIM signatures for outgoing mail (RFC 6376), relaxed/relaxed,
 * rsa-sha256 or ed25519-sha256 (RFC 8463).
 *
 *	dkim_key_load	PEM private key from a secrets file, with d= and s=
 *	dkim_key_free
 *	dkim_body_hash	bh= of a body: base64 SHA-256 of its canonical form
 *	dkim_sign	the DKIM-Signature header for one header block
 *
 * A key is read once at start-up and then only read: one key may sign in
 * several threads at once, each call with its own digest context. A job's
 * body is the same for all its recipients, so its hash is taken once
 * (dkim_body_hash) and each message only canonicalises and signs its own
 * header block.
 *
 * Canonicalisation is relaxed for both parts (RFC 6376 3.4.2, 3.4.4).
 * Body: lines end at CRLF; each line loses its trailing white space and
 * has every other run of it cut to one SP; the empty lines at the end go;
 * a last line without CRLF gets one. A body that is empty after that
 * stays empty (zero octets, the hash 47DEQpj8...): 3.4.4 adds a CRLF only
 * to a non-empty body, unlike "simple", and verifiers agree on that.
 * Header: the name in lower case, no white space around the colon, the
 * value unfolded, its runs of white space cut to one SP and its ends
 * trimmed.
 *
 * The signature header is written folded within 78 columns where a tag
 * allows it; b= starts a line of its own and its value is cut into folded
 * chunks. What is signed is the selected header fields, bottom-up for a
 * name listed more than once (5.4.2), then this header itself as it will
 * stand, with an empty b= and without its final CRLF (3.7).
 *
 * Failure: dkim_key_load returns NULL with a reason (unreadable or
 * group/other-readable file, no PEM key, a key type other than RSA or
 * Ed25519, an RSA key under 1024 bits, a bad domain or selector);
 * dkim_sign returns NULL when From is not signed or not in the head, a
 * header name is malformed, the head is not CRLF lines, it holds more than
 * 128 fields or h= more than 64 names, or OpenSSL or memory fails;
 * dkim_body_hash returns NULL only when OpenSSL or memory fails.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "core/strbuf.h"
#include "core/daemon.h"
#include "gateway/dkim.h"

#define LINE_SOFT 78
#define NAME_MAX_LEN 253	/* a domain; selectors too are DNS names */
#define RSA_MIN_BITS 1024	/* RFC 8301 3.2 */
#define NAMES_MAX 64		/* names in h= */
#define NAME_LEN_MAX 128	/* one name in h= */
#define FIELDS_MAX 128		/* fields in a head */
#define SIG_MAX 1024		/* octets of a signature: RSA 8192 bits */

enum dkim_alg {
	DKIM_RSA_SHA256,
	DKIM_ED25519_SHA256,
};

struct dkim_key {
	EVP_PKEY *pkey;
	enum dkim_alg alg;
	char *domain;
	char *selector;
};

static bool
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* d= and s= go into a header and a DNS name: LDH labels, no empty label. */
static bool
dns_name_ok(const char *s)
{
	size_t n = strlen(s), label = 0;

	if (n == 0 || n > NAME_MAX_LEN)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_') || ++label > 63)
			return false;
	}
	return label > 0;
}

/* Never ask a terminal for a passphrase: a daemon has none, so an
 * encrypted key is refused instead of blocking start-up. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static EVP_PKEY *
pem_key(const char *path, char *err, size_t errlen)
{
	EVP_PKEY *pkey = NULL;
	char *pem;
	size_t len;
	BIO *bio;

	if ((pem = secret_file_read(path, err, errlen)) == NULL)
		return NULL;
	len = strlen(pem);
	if ((bio = BIO_new_mem_buf(pem, (int)len)) != NULL) {
		pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
		BIO_free(bio);
	}
	OPENSSL_cleanse(pem, len);
	free(pem);
	if (pkey == NULL)
		snprintf(err, errlen, "%s: no unencrypted PEM private key", path);
	return pkey;
}

struct dkim_key *
dkim_key_load(const char *path, const char *domain, const char *selector,
    char *err, size_t errlen)
{
	struct dkim_key *k;
	EVP_PKEY *pkey;

	if (domain == NULL || !dns_name_ok(domain)) {
		snprintf(err, errlen, "DKIM domain is not a domain name");
		return NULL;
	}
	if (selector == NULL || !dns_name_ok(selector)) {
		snprintf(err, errlen, "DKIM selector is not a DNS name");
		return NULL;
	}
	if ((pkey = pem_key(path, err, errlen)) == NULL)
		return NULL;
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		snprintf(err, errlen, "out of memory");
		EVP_PKEY_free(pkey);
		return NULL;
	}
	k->pkey = pkey;
	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_RSA:
		k->alg = DKIM_RSA_SHA256;
		if (EVP_PKEY_get_bits(pkey) < RSA_MIN_BITS) {
			snprintf(err, errlen, "%s: RSA key of %d bits; DKIM needs at least %d",
			    path, EVP_PKEY_get_bits(pkey), RSA_MIN_BITS);
			dkim_key_free(k);
			return NULL;
		}
		break;
	case EVP_PKEY_ED25519:
		k->alg = DKIM_ED25519_SHA256;
		break;
	default:
		snprintf(err, errlen, "%s: key is neither RSA nor Ed25519", path);
		dkim_key_free(k);
		return NULL;
	}
	if ((k->domain = strdup(domain)) == NULL || (k->selector = strdup(selector)) == NULL) {
		snprintf(err, errlen, "out of memory");
		dkim_key_free(k);
		return NULL;
	}
	return k;
}

void
dkim_key_free(struct dkim_key *k)
{
	if (k == NULL)
		return;
	EVP_PKEY_free(k->pkey);
	free(k->domain);
	free(k->selector);
	free(k);
}

/* Base64 without line breaks, malloc'd. */
static char *
b64(const unsigned char *in, size_t n)
{
	char *out = malloc((n + 2) / 3 * 4 + 1);

	if (out != NULL)
		EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	return out;
}

/*
 * The body hash, fed through a small buffer so that a body of short lines
 * does not become one digest call per line.
 */
struct bodyhash {
	EVP_MD_CTX *md;
	unsigned char buf[4096];
	size_t fill;
	bool fail;
};

static void
bh_put(struct bodyhash *h, const char *s, size_t n)
{
	if (h->fill + n > sizeof(h->buf)) {
		if (EVP_DigestUpdate(h->md, h->buf, h->fill) != 1)
			h->fail = true;
		h->fill = 0;
		if (n > sizeof(h->buf)) {
			if (EVP_DigestUpdate(h->md, s, n) != 1)
				h->fail = true;
			return;
		}
	}
	memcpy(h->buf + h->fill, s, n);
	h->fill += n;
}

/* One line without its CRLF, canonical: each run of white space becomes
 * one SP, a run at the end goes. */
static void
bh_line(struct bodyhash *h, const char *s, size_t n)
{
	size_t i = 0, w, t;

	while (i < n) {
		for (w = 0; i + w < n && is_wsp(s[i + w]); w++)
			;
		if (i + w == n)
			break;
		for (t = 0; i + w + t < n && !is_wsp(s[i + w + t]); t++)
			;
		if (w > 0)
			bh_put(h, " ", 1);
		bh_put(h, s + i + w, t);
		i += w + t;
	}
	bh_put(h, "\r\n", 2);
}

/* Whether a line is empty once canonical. */
static bool
line_blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_wsp(s[i]))
			return false;
	return true;
}

char *
dkim_body_hash(const char *body, size_t len)
{
	struct bodyhash h = { .fill = 0, .fail = false };
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	size_t i = 0, blank = 0;

	if ((h.md = EVP_MD_CTX_new()) == NULL)
		return NULL;
	if (EVP_DigestInit_ex(h.md, EVP_sha256(), NULL) != 1)
		h.fail = true;
	while (i < len) {
		const char *s = body + i, *e = NULL;
		size_t n;

		/* The next CRLF; a lone CR or LF is text of the line. */
		for (const char *p = s; (p = memchr(p, '\r', (size_t)(body + len - p))) != NULL; p++)
			if (p + 1 < body + len && p[1] == '\n') {
				e = p;
				break;
			}
		n = e ? (size_t)(e - s) : len - i;
		i += n + (e ? 2 : 0);
		/* Empty lines are held back: they count only when text follows. */
		if (line_blank(s, n)) {
			blank++;
			continue;
		}
		for (; blank > 0; blank--)
			bh_put(&h, "\r\n", 2);
		bh_line(&h, s, n);
	}
	if (h.fill > 0 && EVP_DigestUpdate(h.md, h.buf, h.fill) != 1)
		h.fail = true;
	if (EVP_DigestFinal_ex(h.md, md, &mdlen) != 1)
		h.fail = true;
	EVP_MD_CTX_free(h.md);
	return h.fail ? NULL : b64(md, mdlen);
}

/* One header field of a head: its text from the name to the end of its
 * last line, without the CRLF. */
struct field {
	const char *p;
	size_t len, name_len;
};

/*
 * Cut head into fields, at most max of them. Stops at the empty line or at
 * the end. -1 when a line does not end in CRLF, a field has no colon, or a
 * continuation line comes first.
 */
static int
head_fields(const char *head, size_t len, struct field *f, size_t max, size_t *nf)
{
	size_t i = 0, n = 0;

	while (i < len) {
		const char *s = head + i, *e;
		size_t ll;

		if ((e = memmem(s, len - i, "\r\n", 2)) == NULL)
			return -1;
		ll = (size_t)(e - s);
		if (ll == 0)
			break;
		if (is_wsp(s[0])) {
			if (n == 0)
				return -1;
			f[n - 1].len = (size_t)(e - f[n - 1].p);
		} else {
			const char *colon = memchr(s, ':', ll);

			if (colon == NULL || colon == s || n == max)
				return -1;
			f[n].p = s;
			f[n].len = ll;
			f[n].name_len = (size_t)(colon - s);
			while (f[n].name_len > 0 && is_wsp(s[f[n].name_len - 1]))
				f[n].name_len--;
			n++;
		}
		i += ll + 2;
	}
	*nf = n;
	return 0;
}

/* A field in relaxed canonical form, with its CRLF when crlf is set. */
static void
canon_field(struct strbuf *out, const char *p, size_t len, bool crlf)
{
	const char *colon = memchr(p, ':', len);
	size_t name_len = (size_t)(colon - p), i;
	bool wsp = false, any = false;

	while (name_len > 0 && is_wsp(p[name_len - 1]))
		name_len--;
	for (i = 0; i < name_len; i++) {
		char c = p[i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		strbuf_add(out, &c, 1);
	}
	strbuf_add(out, ":", 1);
	for (i = (size_t)(colon - p) + 1; i < len; i++) {
		/* Unfolding: a CRLF inside a field is always followed by WSP. */
		if (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n') {
			i++;
			wsp = true;
			continue;
		}
		if (is_wsp(p[i])) {
			wsp = true;
			continue;
		}
		if (wsp && any)
			strbuf_add(out, " ", 1);
		wsp = false;
		any = true;
		strbuf_add(out, p + i, 1);
	}
	if (crlf)
		strbuf_add(out, "\r\n", 2);
}

/* A header field name as h= may list it: printable ASCII but ':', no
 * white space. */
static bool
name_ok(const char *s, size_t n)
{
	if (n == 0 || n > NAME_LEN_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == ':')
			return false;
	return true;
}

/*
 * The fields named in headers, canonical, in the order named; a name
 * listed twice takes the next instance up from the bottom (5.4.2), and a
 * name with no instance left adds nothing. The names, lower case, go to
 * names[] for h=. -1 on a bad name or a head without From.
 */
static int
signed_fields(const struct field *f, size_t nf, const char *headers,
    struct strbuf *data, char names[][NAME_LEN_MAX + 1], size_t *nnames)
{
	bool used[FIELDS_MAX] = { false }, from = false;
	const char *p = headers;
	size_t nn = 0;

	while (*p != '\0') {
		size_t n = strcspn(p, ":");

		if (!name_ok(p, n) || nn == NAMES_MAX)
			return -1;
		for (size_t i = 0; i < n; i++)
			names[nn][i] = (char)((p[i] >= 'A' && p[i] <= 'Z') ? p[i] - 'A' + 'a' : p[i]);
		names[nn][n] = '\0';
		for (size_t i = nf; i-- > 0;)
			if (!used[i] && f[i].name_len == n && strncasecmp(f[i].p, p, n) == 0) {
				used[i] = true;
				canon_field(data, f[i].p, f[i].len, true);
				if (strcmp(names[nn], "from") == 0)
					from = true;
				break;
			}
		nn++;
		p += n;
		if (*p == ':')
			p++;
	}
	*nnames = nn;
	return from ? 0 : -1;
}

/* Writes tags and folds before one that would pass column 78. */
struct tagw {
	struct strbuf b;
	size_t col;
};

static void
tag_fold(struct tagw *w, size_t next)
{
	if (w->col + 1 + next > LINE_SOFT) {
		strbuf_add(&w->b, "\r\n ", 3);
		w->col = 1;
	} else {
		strbuf_add(&w->b, " ", 1);
		w->col++;
	}
}

static void
tag_add(struct tagw *w, const char *s, size_t n)
{
	strbuf_add(&w->b, s, n);
	w->col += n;
}

static void tag(struct tagw *, const char *, ...) __attribute__((format(printf, 2, 3)));

/* One whole tag with its semicolon, on this line when it fits. A tag
 * longer than a line (a d= of 253 octets) stands alone on its own. */
static void
tag(struct tagw *w, const char *fmt, ...)
{
	char t[NAME_MAX_LEN + 64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(t, sizeof(t), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(t)) {
		w->b.oom = true;
		return;
	}
	tag_fold(w, (size_t)n);
	tag_add(w, t, (size_t)n);
}

/* h=, folded after a colon where the next name would not fit. */
static void
tag_h(struct tagw *w, char names[][NAME_LEN_MAX + 1], size_t nn)
{
	tag_fold(w, 2 + strlen(names[0]) + (nn > 1 ? 1 : 0));
	tag_add(w, "h=", 2);
	for (size_t i = 0; i < nn; i++) {
		size_t n = strlen(names[i]) + 1;	/* the colon or semicolon after it */

		if (i > 0 && w->col + n > LINE_SOFT) {
			strbuf_add(&w->b, "\r\n ", 3);
			w->col = 1;
		}
		tag_add(w, names[i], n - 1);
		tag_add(w, i + 1 < nn ? ":" : ";", 1);
	}
}

static int
sign_data(const struct dkim_key *k, const char *data, size_t len,
    unsigned char *sig, size_t *siglen)
{
	unsigned char hash[32];
	EVP_MD_CTX *ctx;
	int ok;

	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return -1;
	if (k->alg == DKIM_RSA_SHA256) {
		ok = EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k->pkey) == 1 &&
		    EVP_DigestSign(ctx, sig, siglen, (const unsigned char *)data, len) == 1;
	} else {
		/* RFC 8463 3: Ed25519 signs the SHA-256 hash of the data, not
		 * the data itself (PureEdDSA over those 32 octets). */
		ok = EVP_Digest(data, len, hash, NULL, EVP_sha256(), NULL) == 1 &&
		    EVP_DigestSignInit(ctx, NULL, NULL, NULL, k->pkey) == 1 &&
		    EVP_DigestSign(ctx, sig, siglen, hash, sizeof(hash)) == 1;
	}
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : -1;
}

/* The tags up to and with "b=", folded: what is signed and what the
 * signature then completes. */
static void
sig_tags(struct tagw *w, const struct dkim_key *k, const char *bh,
    char names[][NAME_LEN_MAX + 1], size_t nn, long now)
{
	tag_add(w, "DKIM-Signature: v=1;", strlen("DKIM-Signature: v=1;"));
	tag(w, "a=%s;", k->alg == DKIM_RSA_SHA256 ? "rsa-sha256" : "ed25519-sha256");
	tag(w, "c=relaxed/relaxed;");
	tag(w, "d=%s;", k->domain);
	tag(w, "s=%s;", k->selector);
	tag(w, "t=%ld;", now);
	tag_h(w, names, nn);
	tag(w, "bh=%s;", bh);
	/* b= on a line of its own: its value then folds the same way
	 * whatever its length. */
	strbuf_add(&w->b, "\r\n b=", 5);
	w->col = 3;
}

/* The signature's base64, cut into chunks that fill each line to 78. */
static void
sig_value(struct tagw *w, const char *b, size_t n)
{
	while (n > 0) {
		size_t room = LINE_SOFT - w->col, take = n < room ? n : room;

		if (room == 0) {
			strbuf_add(&w->b, "\r\n ", 3);
			w->col = 1;
			continue;
		}
		tag_add(w, b, take);
		b += take;
		n -= take;
	}
	strbuf_add(&w->b, "\r\n", 2);
}

char *
dkim_sign(const struct dkim_key *k, const char *head, size_t head_len,
    const char *bh, const char *headers, long now)
{
	struct field f[FIELDS_MAX];
	char names[NAMES_MAX][NAME_LEN_MAX + 1];
	unsigned char sig[SIG_MAX];
	size_t nf, nn, siglen = sizeof(sig);
	struct strbuf data = { 0 };
	struct tagw w = { .col = 0 };
	char *b = NULL;

	if (k == NULL || head == NULL || bh == NULL || headers == NULL || now < 0 ||
	    bh[0] == '\0' || strlen(bh) > 128 ||
	    strspn(bh, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") != strlen(bh) ||
	    head_fields(head, head_len, f, sizeof(f) / sizeof(f[0]), &nf) == -1 ||
	    signed_fields(f, nf, headers, &data, names, &nn) == -1)
		goto fail;
	sig_tags(&w, k, bh, names, nn, now);
	if (w.b.oom)
		goto fail;
	/* This header itself closes the signed data, b= empty, no CRLF. */
	canon_field(&data, w.b.p, w.b.len, false);
	if (data.oom || sign_data(k, data.p, data.len, sig, &siglen) == -1 ||
	    (b = b64(sig, siglen)) == NULL)
		goto fail;
	sig_value(&w, b, strlen(b));
	free(b);
	free(data.p);
	if (w.b.oom) {
		free(w.b.p);
		return NULL;
	}
	return w.b.p;
fail:
	free(data.p);
	free(w.b.p);
	return NULL;
}
