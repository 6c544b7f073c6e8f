/*
 * address: one recipient address as a submitter wrote it.
 *
 *	addr_parse	"local@domain", "<local@domain>", "Name <local@domain>"
 *			or a quoted local part -> struct mail_addr
 *	addr_canonical	"local@domain" unquoted (stored and compared)
 *	addr_format	RFC 5321 form, the local part quoted when needed
 *
 * Besides RFC 5321/5322 dot-atoms, the local part may be one of the legacy
 * Japanese carrier forms that are not dot-atoms: leading, trailing or
 * consecutive dots ("taro..@docomo.ne.jp", ".hanako.@ezweb.ne.jp"). Real
 * people still own them, so they are accepted and marked needs_quote; they
 * go out as "taro.."@docomo.ne.jp.
 *
 * Failure: addr_parse returns -1 with a static, specific reason meant for
 * the submitter's receipt ("domain is not a fully qualified name"). It never
 * allocates. The format functions truncate like snprintf and return the
 * length the full result needs.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mail/address.h"

/* RFC 5321 4.5.3.1.3: a path is at most 256 octets including "<>". */
#define ADDR_PATH_MAX	254
#define ADDR_LABEL_MAX	63
#define ADDR_FQDN_MAX	253

static bool
is_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static bool
is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* U+3000 IDEOGRAPHIC SPACE: what a Japanese input method types for a space. */
static size_t
ideographic_space(const char *s, size_t len)
{
	if (len >= 3 && memcmp(s, "\xe3\x80\x80", 3) == 0)
		return 3;
	return 0;
}

static void
trim(const char **s, size_t *len)
{
	size_t n;

	for (;;) {
		if (*len > 0 && is_wsp((unsigned char)**s)) {
			(*s)++;
			(*len)--;
		} else if ((n = ideographic_space(*s, *len)) != 0) {
			*s += n;
			*len -= n;
		} else
			break;
	}
	for (;;) {
		if (*len > 0 && is_wsp((unsigned char)(*s)[*len - 1]))
			(*len)--;
		else if (*len >= 3 && ideographic_space(*s + *len - 3, 3))
			*len -= 3;
		else
			break;
	}
}

/*
 * The receipt names the offending character, so each printable one that
 * can reach this point has its own static reason.
 */
static const char *
bad_local_char(unsigned char c)
{
	static const struct {
		char c;
		const char *why;
	} tab[] = {
		{ ' ', "character not allowed in local part: ' '" },
		{ '"', "character not allowed in local part: '\"'" },
		{ '(', "character not allowed in local part: '('" },
		{ ')', "character not allowed in local part: ')'" },
		{ ',', "character not allowed in local part: ','" },
		{ ':', "character not allowed in local part: ':'" },
		{ ';', "character not allowed in local part: ';'" },
		{ '<', "character not allowed in local part: '<'" },
		{ '>', "character not allowed in local part: '>'" },
		{ '@', "character not allowed in local part: '@'" },
		{ '[', "character not allowed in local part: '['" },
		{ '\\', "character not allowed in local part: '\\'" },
		{ ']', "character not allowed in local part: ']'" },
	};
	size_t i;

	if (c >= 0x80)
		return "non-ASCII character in local part";
	if (c < 0x20 || c == 0x7f)
		return "control character in local part";
	for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (tab[i].c == (char)c)
			return tab[i].why;
	return "character not allowed in local part";
}

/* Dot-atom: atext runs separated by single dots, none at either end. */
static bool
is_dot_atom(const char *s)
{
	bool prev_dot = true;

	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		if (*s == '.') {
			if (prev_dot)
				return false;
			prev_dot = true;
		} else if (is_atext((unsigned char)*s))
			prev_dot = false;
		else
			return false;
	}
	return !prev_dot;
}

/*
 * Take "Name <spec>" or "<spec>" apart. The '<' is the first one outside a
 * quoted string, so a display name may quote '<' characters.
 */
static int
strip_angle(const char **s, size_t *len, const char **why)
{
	const char *p = *s;
	size_t i, open = SIZE_MAX;
	bool quoted = false;

	if (*len == 0 || p[*len - 1] != '>')
		return 0;
	for (i = 0; i + 1 < *len; i++) {
		if (quoted && p[i] == '\\' && i + 2 < *len)
			i++;
		else if (p[i] == '"')
			quoted = !quoted;
		else if (!quoted && p[i] == '<') {
			open = i;
			break;
		}
	}
	if (open == SIZE_MAX) {
		*why = "'>' without '<'";
		return -1;
	}
	*s = p + open + 1;
	*len = *len - open - 2;
	trim(s, len);
	return 0;
}

/* "...": unescape into out; *end is set past the closing quote. */
static int
parse_quoted(const char *s, size_t len, char *out, size_t *end, const char **why)
{
	size_t i, n = 0;
	unsigned char c;

	for (i = 1; i < len; i++) {
		c = (unsigned char)s[i];
		if (c == '"') {
			out[n] = '\0';
			*end = i + 1;
			return 0;
		}
		if (c == '\\') {
			if (++i == len)
				break;
			c = (unsigned char)s[i];
		}
		if (c >= 0x80) {
			*why = "non-ASCII character in local part";
			return -1;
		}
		if (c < 0x20 || c == 0x7f) {
			*why = "control character in local part";
			return -1;
		}
		if (n == ADDR_LOCAL_MAX) {
			*why = "local part longer than 64 octets";
			return -1;
		}
		out[n++] = (char)c;
	}
	*why = "unterminated quoted local part";
	return -1;
}

static int
parse_local(const char *s, size_t len, struct mail_addr *out, const char **why)
{
	size_t i;
	bool atext_seen = false;

	if (len == 0) {
		*why = "empty local part";
		return -1;
	}
	for (i = 0; i < len; i++) {
		if (s[i] == '.')
			continue;
		if (!is_atext((unsigned char)s[i])) {
			*why = bad_local_char((unsigned char)s[i]);
			return -1;
		}
		atext_seen = true;
	}
	/* Legacy forms still have a name in them; "..." is only a typo. */
	if (!atext_seen) {
		*why = "local part has only dots";
		return -1;
	}
	if (len > ADDR_LOCAL_MAX) {
		*why = "local part longer than 64 octets";
		return -1;
	}
	memcpy(out->local, s, len);
	out->local[len] = '\0';
	return 0;
}

static int
check_label(const char *s, size_t len, const char **why)
{
	size_t i;

	if (len == 0) {
		*why = "empty label in domain";
		return -1;
	}
	if (len > ADDR_LABEL_MAX) {
		*why = "domain label longer than 63 octets";
		return -1;
	}
	if (s[0] == '-' || s[len - 1] == '-') {
		*why = "domain label starts or ends with '-'";
		return -1;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x80) {
			*why = "non-ASCII domain (write it in its xn-- form)";
			return -1;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-')) {
			*why = "character not allowed in domain";
			return -1;
		}
	}
	return 0;
}

static bool
all_digits(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static int
parse_domain(const char *s, size_t len, struct mail_addr *out, const char **why)
{
	size_t i, start = 0, last = 0;
	bool dotted = false;

	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len == 0) {
		*why = "empty domain";
		return -1;
	}
	if (s[0] == '[') {
		*why = "address literals are not accepted";
		return -1;
	}
	if (len > ADDR_FQDN_MAX) {
		*why = "domain longer than 253 octets";
		return -1;
	}
	for (i = 0; i <= len; i++) {
		if (i < len && s[i] != '.')
			continue;
		if (check_label(s + start, i - start, why) == -1)
			return -1;
		if (i < len)
			dotted = true;
		last = start;
		start = i + 1;
	}
	/* au refuses From and To without a fully qualified domain. */
	if (!dotted) {
		*why = "domain is not a fully qualified name";
		return -1;
	}
	if (all_digits(s + last, len - last)) {
		*why = "domain ends in a numeric label";
		return -1;
	}
	for (i = 0; i < len; i++) {
		char c = s[i];

		out->domain[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	out->domain[len] = '\0';
	return 0;
}

static const char *
missing_at(const char *s, size_t len)
{
	/* U+FF20, the full-width '@' a Japanese input method may leave. */
	if (len >= 3 && memmem(s, len, "\xef\xbc\xa0", 3) != NULL)
		return "full-width '\xef\xbc\xa0' instead of '@'";
	return "missing '@'";
}

int
addr_parse(const char *s, size_t len, struct mail_addr *out, const char **why)
{
	const char *at;
	size_t end;
	char buf[ADDR_MAX + 3];

	memset(out, 0, sizeof(*out));
	trim(&s, &len);
	if (strip_angle(&s, &len, why) == -1)
		return -1;
	if (len == 0) {
		*why = "empty address";
		return -1;
	}
	if (s[0] == '"') {
		if (parse_quoted(s, len, out->local, &end, why) == -1)
			return -1;
		if (end == len || s[end] != '@') {
			*why = end == len ? "missing '@'" : "text after quoted local part";
			return -1;
		}
		if (out->local[0] == '\0') {
			*why = "empty local part";
			return -1;
		}
		at = s + end;
	} else {
		/* The last '@': an unquoted '@' in the local part is then
		 * reported as a bad local-part character. */
		at = memrchr(s, '@', len);
		if (at == NULL) {
			*why = missing_at(s, len);
			return -1;
		}
		if (parse_local(s, (size_t)(at - s), out, why) == -1)
			return -1;
	}
	if (parse_domain(at + 1, len - (size_t)(at + 1 - s), out, why) == -1)
		return -1;
	out->needs_quote = !is_dot_atom(out->local);
	if (addr_format(out, buf, sizeof(buf)) > ADDR_PATH_MAX) {
		*why = "address longer than 254 octets";
		return -1;
	}
	return 0;
}

size_t
addr_canonical(const struct mail_addr *a, char *buf, size_t size)
{
	int n;

	n = snprintf(buf, size, "%s@%s", a->local, a->domain);
	return n < 0 ? 0 : (size_t)n;
}

size_t
addr_format(const struct mail_addr *a, char *buf, size_t size)
{
	const char *p;
	size_t n = 0;

	if (!a->needs_quote)
		return addr_canonical(a, buf, size);

#define PUT(c) do { if (n + 1 < size) buf[n] = (c); n++; } while (0)
	PUT('"');
	for (p = a->local; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			PUT('\\');
		PUT(*p);
	}
	PUT('"');
	PUT('@');
	for (p = a->domain; *p != '\0'; p++)
		PUT(*p);
#undef PUT
	if (size > 0)
		buf[n < size ? n : size - 1] = '\0';
	return n;
}
