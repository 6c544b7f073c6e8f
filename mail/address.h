#ifndef HATO_MAIL_ADDRESS_H
#define HATO_MAIL_ADDRESS_H
/*
 * address: recipient addresses as submitters write them, including the
 * legacy Japanese carrier forms that break RFC 5322 ("taro..@docomo.ne.jp",
 * ".hanako.@ezweb.ne.jp"), which belong to real people and must be sent
 * with a quoted local part.
 */
#include <stdbool.h>
#include <stddef.h>

#define ADDR_LOCAL_MAX 64
#define ADDR_DOMAIN_MAX 255
#define ADDR_MAX (ADDR_LOCAL_MAX + 1 + ADDR_DOMAIN_MAX)

struct mail_addr {
	char local[ADDR_LOCAL_MAX + 1];		/* unquoted form, case kept */
	char domain[ADDR_DOMAIN_MAX + 1];	/* lower-cased, no trailing dot */
	bool needs_quote;	/* local part is not a dot-atom: send it quoted */
};

/*
 * Parse one address: "local@domain", "<local@domain>", "Name <local@domain>"
 * or a quoted local part ("a b"@example.com). Surrounding white space is
 * ignored. Returns 0, or -1 with *why set to a static reason.
 */
int addr_parse(const char *s, size_t len, struct mail_addr *out, const char **why);

/* "local@domain" unquoted: the stored and compared form. Returns its length. */
size_t addr_canonical(const struct mail_addr *a, char *buf, size_t size);

/* RFC 5321 form for RCPT TO and headers: the local part quoted (with
 * backslash escapes) when it is not a dot-atom. Returns its length. */
size_t addr_format(const struct mail_addr *a, char *buf, size_t size);

#endif
