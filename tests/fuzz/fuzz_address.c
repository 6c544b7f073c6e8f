/*
 * fuzz_address: addr_parse on any bytes.
 *
 * A parsed address is within its bounds (local part 1-64 printable ASCII
 * octets, a lower-case fully qualified domain of LDH labels), is marked
 * needs_quote exactly when its local part is not a dot-atom, and reads back
 * as itself from its RFC 5321 form, bare, in <> and after a display name.
 * A refused one has a reason.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mail/address.h"
#include "check.h"

static bool
atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static bool
dot_atom(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || s[0] == '.' || s[n - 1] == '.' || strstr(s, "..") != NULL)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] != '.' && !atext((unsigned char)s[i]))
			return false;
	return true;
}

static void
check_domain(const char *d)
{
	size_t n = strnlen(d, ADDR_DOMAIN_MAX + 1), label = 0;
	bool dotted = false, digits_only = true;

	CHECK(n >= 3 && n <= 253);
	CHECK(d[0] != '.' && d[n - 1] != '.' && strstr(d, "..") == NULL);
	for (size_t i = 0; i < n; i++) {
		char c = d[i];

		if (c == '.') {
			CHECK(d[i - 1] != '-' && d[i + 1] != '-');
			dotted = true;
			label = 0;
			digits_only = true;
			continue;
		}
		CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-');
		CHECK(++label <= 63);
		if (c < '0' || c > '9')
			digits_only = false;
	}
	CHECK(d[0] != '-' && d[n - 1] != '-');
	CHECK(dotted);
	CHECK(!digits_only);	/* the last label */
}

static void
same(const struct mail_addr *a, const struct mail_addr *b)
{
	CHECK(strcmp(a->local, b->local) == 0);
	CHECK(strcmp(a->domain, b->domain) == 0);
	CHECK(a->needs_quote == b->needs_quote);
}

static void
reparse(const struct mail_addr *a, const char *s, size_t len)
{
	struct mail_addr b;
	const char *why = NULL;

	if (addr_parse(s, len, &b, &why) != 0) {
		fprintf(stderr, "'%.*s' does not read back: %s\n", (int)len, s, why);
		CHECK(!"the formatted address parses");
	}
	same(a, &b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mail_addr a;
	const char *why = NULL;
	char fmt[ADDR_MAX * 2 + 8], canon[ADDR_MAX + 2], wrap[sizeof(fmt) + 32];
	size_t n, ll;
	int w;

	fuzz_poison_stack();
	if (addr_parse((const char *)data, size, &a, &why) != 0) {
		CHECK(why != NULL && *why != '\0');
		return 0;
	}
	ll = strnlen(a.local, sizeof(a.local));
	CHECK(ll >= 1 && ll <= ADDR_LOCAL_MAX);
	CHECK(fuzz_printable_ascii(a.local, ll) && strchr(a.local, '\t') == NULL);
	check_domain(a.domain);
	CHECK(a.needs_quote == !dot_atom(a.local));

	n = addr_format(&a, fmt, sizeof(fmt));
	CHECK(n < sizeof(fmt) && strlen(fmt) == n);
	CHECK(n <= 254);	/* RFC 5321 path limit, <> aside */
	reparse(&a, fmt, n);

	w = snprintf(wrap, sizeof(wrap), "<%s>", fmt);
	reparse(&a, wrap, (size_t)w);
	w = snprintf(wrap, sizeof(wrap), "\"Name, <x>\" <%s>", fmt);
	reparse(&a, wrap, (size_t)w);

	n = addr_canonical(&a, canon, sizeof(canon));
	CHECK(n < sizeof(canon) && strlen(canon) == n);
	if (!a.needs_quote) {
		CHECK(strcmp(canon, fmt) == 0);
		reparse(&a, canon, n);
	}
	return 0;
}
