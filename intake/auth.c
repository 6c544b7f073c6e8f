/*
 * auth: Authentication-Results (RFC 8601) from the trusted MTA.
 *
 *	authres_check	one header value -> pass / no pass / unreadable
 *	authres_pass	every header of a mail, for one From address
 *	auth_aligned	organizational alignment by suffix
 *
 * A header value is read in three steps: comments (nested parentheses,
 * outside quoted strings) are blanked, the value is cut at ';' into the
 * authserv-id and its results, and each result is split into words
 * ("dkim=pass", "header.d=example.co.jp"). Anything that does not fit is
 * unreadable and never a pass.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "conf/config.h"
#include "intake/auth.h"
#include "mail/mime.h"

#define AR_MAX 4096		/* longer headers are not read */
#define WORDS_MAX 32

static bool
is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Blank comments in place; -1 when parentheses or quotes do not match. */
static int
strip_comments(char *s)
{
	int depth = 0;
	bool quoted = false;

	for (; *s; s++) {
		if (quoted) {
			if (*s == '\\' && s[1])
				s++;
			else if (*s == '"')
				quoted = false;
			continue;
		}
		if (depth == 0 && *s == '"') {
			quoted = true;
			continue;
		}
		if (*s == '(')
			depth++;
		if (depth > 0) {
			if (*s == ')')
				depth--;
			*s = ' ';
		} else if (*s == ')')
			return -1;
	}
	return depth == 0 && !quoted ? 0 : -1;
}

/* Split at c outside quoted strings, in place. */
static size_t
split(char *s, char c, char **out, size_t max)
{
	size_t n = 0;
	bool quoted = false;

	out[n++] = s;
	for (; *s && n < max; s++) {
		if (*s == '"')
			quoted = !quoted;
		else if (*s == c && !quoted) {
			*s = '\0';
			out[n++] = s + 1;
		} else if (is_ws(c) && is_ws(*s) && !quoted) {
			*s = '\0';
			out[n++] = s + 1;
		}
	}
	return n;
}

static char *
trim(char *s)
{
	char *e;

	while (is_ws(*s))
		s++;
	e = s + strlen(s);
	while (e > s && is_ws(e[-1]))
		*--e = '\0';
	return s;
}

/* A property value: unquoted, and for an address its domain. */
static const char *
value_domain(char *v)
{
	char *at;
	size_t len = strlen(v);

	if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
		v[len - 1] = '\0';
		v++;
	}
	if ((at = strrchr(v, '@')))
		v = at + 1;
	return v;
}

static size_t
labels(const char *d)
{
	size_t n = *d ? 1 : 0;

	for (; *d; d++)
		n += *d == '.';
	return n;
}

bool
auth_aligned(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	const char *longer = la >= lb ? a : b, *shorter = la >= lb ? b : a;
	size_t ll = la >= lb ? la : lb, ls = la >= lb ? lb : la;

	if (ls == 0 || labels(shorter) < 2)
		return false;
	if (ll == ls)
		return strcasecmp(a, b) == 0;
	return longer[ll - ls - 1] == '.' && strcasecmp(longer + ll - ls, shorter) == 0;
}

/* One result ("dkim=pass header.d=x"): 1 when it passes aligned. */
static int
result_passes(char *res, const char *from_domain, char *method, size_t methodlen)
{
	char *w[WORDS_MAX], *eq, *slash;
	size_t n = split(res, ' ', w, WORDS_MAX), first = 0;
	const char *want;

	while (first < n && !*w[first])
		first++;
	if (first == n)
		return 0;
	if (!(eq = strchr(w[first], '=')))
		return strcasecmp(w[first], "none") == 0 ? 0 : -1;	/* "none": nothing checked */
	*eq = '\0';
	if ((slash = strchr(w[first], '/')))
		*slash = '\0';	/* method version */
	if (strcasecmp(w[first], "dkim") == 0)
		want = "header.d";
	else if (strcasecmp(w[first], "spf") == 0)
		want = "smtp.mailfrom";
	else
		return 0;
	if (strcasecmp(trim(eq + 1), "pass") != 0)
		return 0;
	for (size_t i = first + 1; i < n; i++) {
		char *p = strchr(w[i], '=');
		if (!p)
			continue;
		*p = '\0';
		if (strcasecmp(w[i], want) != 0 &&
		    !(strcmp(want, "header.d") == 0 && strcasecmp(w[i], "header.i") == 0))
			continue;
		if (auth_aligned(value_domain(p + 1), from_domain)) {
			snprintf(method, methodlen, "%s", w[first]);
			return 1;
		}
	}
	return 0;
}

int
authres_check(const char *value, const char *authserv_id, const char *from_domain,
    char *method, size_t methodlen, const char **why)
{
	char *buf, *part[WORDS_MAX], *id[4];
	size_t n, len = strlen(value);
	int rc = 0;

	*why = NULL;
	if (len > AR_MAX) {
		*why = "Authentication-Results too long";
		return -1;
	}
	if (!(buf = strdup(value))) {
		*why = "out of memory";
		return -1;
	}
	if (strip_comments(buf) < 0) {
		*why = "unbalanced parentheses or quotes";
		free(buf);
		return -1;
	}
	n = split(buf, ';', part, WORDS_MAX);
	/* authserv-id, then an optional version number. */
	split(trim(part[0]), ' ', id, 4);
	if (!*authserv_id || strcasecmp(id[0], authserv_id) != 0) {
		free(buf);
		return 0;
	}
	for (size_t i = 1; i < n && rc != 1; i++) {
		int r = result_passes(trim(part[i]), from_domain, method, methodlen);
		if (r < 0 && !*why)
			*why = "a result without method=result";
		if (r == 1)
			rc = 1;
	}
	free(buf);
	return rc == 1 ? 1 : *why ? -1 : 0;
}

bool
authres_pass(const struct mime_msg *m, const char *authserv_id, const char *from_addr,
    char *why, size_t whylen)
{
	const char *at = from_addr ? strrchr(from_addr, '@') : NULL, *bad;
	char method[32];
	size_t seen = 0;

	snprintf(why, whylen, "no Authentication-Results");
	if (!at || !*authserv_id)
		return false;
	for (size_t i = 0; i < m->nheaders; i++) {
		if (strcasecmp(m->headers[i].name, "Authentication-Results") != 0)
			continue;
		seen++;
		if (authres_check(m->headers[i].value, authserv_id, at + 1, method, sizeof(method), &bad) == 1) {
			snprintf(why, whylen, "%s=pass aligned with %s (%s)", method, at + 1, authserv_id);
			return true;
		}
	}
	if (seen)
		snprintf(why, whylen, "no dkim or spf pass aligned with %s from %s among %zu Authentication-Results",
		    at + 1, authserv_id, seen);
	return false;
}

bool
auth_token_ok(const struct submitter_conf *sub, const char *token)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;

	if (!token || !sub->has_token)
		return false;
	if (!EVP_Digest(token, strlen(token), md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
		return false;
	return CRYPTO_memcmp(md, sub->token_sha256, 32) == 0;
}

bool
auth_submitter(const struct submitter_conf *sub, const char *authserv_id,
    const struct mime_msg *m, const char *from_addr, const char *token, char *why, size_t whylen)
{
	char ar[300];

	switch (sub->auth) {
	case SUBMITTER_AUTH_AUTHRES:
		if (authres_pass(m, authserv_id, from_addr, ar, sizeof(ar)))
			return true;
		snprintf(why, whylen, "authentication failed: %s", ar);
		return false;
	case SUBMITTER_AUTH_EITHER:
		if (auth_token_ok(sub, token) || authres_pass(m, authserv_id, from_addr, ar, sizeof(ar)))
			return true;
		snprintf(why, whylen, "authentication failed: wrong or missing Token, and %s", ar);
		return false;
	default:
		if (auth_token_ok(sub, token))
			return true;
		snprintf(why, whylen, "authentication failed: wrong or missing Token");
		return false;
	}
}
