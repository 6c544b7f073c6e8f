/*
 * doctor: hatoctl doctor [--ip ADDR] [--domain D].
 *
 * Asks DNS, through c-ares (the [gateway] dns_servers, else the system's),
 * what a receiving MTA will ask about the gateway, and prints one row per
 * check with a verdict (pass, warn, fail) and what to fix:
 *
 *   ptr        the PTR of the sending IP, and whether that name resolves
 *              back to the IP (forward-confirmed reverse DNS)
 *   mx         the MX of the envelope domain ([gateway] bounce_domain):
 *              where bounces and replies come back
 *   spf        the SPF record of the envelope domain, evaluated for the
 *              IP (RFC 7208: ip4, ip6, a, mx, include, redirect, all; at
 *              most 10 lookups). ptr, exists and macros are not evaluated:
 *              a record that needs them gets "neutral/unknown", a warning.
 *   dkim       for each [dkim NAME]: a key at SELECTOR._domainkey.DOMAIN,
 *              and that it is the public half of key_file when hatoctl can
 *              read that file
 *   dmarc      the DMARC policy of each From domain (the submitters')
 *   blocklist  the IP in each [doctor] blocklists zone: an A answer in
 *              127.0.0.0/8 means listed, with its TXT as the reason
 *
 * --domain D checks D as both the envelope and the From domain. Exit 1
 * when a check fails, 69 when DNS cannot be asked at all.
 *
 * A CLI has no event loop to share, so each query runs c-ares' own
 * select() loop until it is answered or times out: the resolver never
 * blocks in a system call of its own (no getaddrinfo, no res_query).
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/select.h>

#include <ares.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "conf/config.h"
#include "ctl/doctor.h"
#include "ctl/out.h"

#define SPF_MAX_LOOKUPS	10	/* RFC 7208 §4.6.4 */
#define SPF_MAX_MX	10	/* addresses looked up per mx mechanism */
#define MAX_NAMES	16

enum verdict { V_PASS, V_WARN, V_FAIL };
static const char *verdict_name[] = { "pass", "warn", "fail" };

struct doctor {
	ares_channel ch;
	int nfail, nwarn;
	/* the IP under test */
	int family;
	unsigned char ip[16];
	char ipstr[INET6_ADDRSTRLEN];
	/* SPF evaluation */
	int lookups;
	char spf_why[300];
};

/* ---- DNS through c-ares ---- */

struct dnsans {
	bool done;
	int status;
	unsigned char *buf;
	int len;
};

static void
query_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dnsans *a = arg;

	(void)timeouts;
	a->done = true;
	a->status = status;
	if (status == ARES_SUCCESS && abuf && alen > 0 && (a->buf = malloc((size_t)alen))) {
		memcpy(a->buf, abuf, (size_t)alen);
		a->len = alen;
	}
}

/* One query, run to its end. ARES_SUCCESS, ARES_ENODATA, ARES_ENOTFOUND
 * (NXDOMAIN) or a temporary failure. */
static int
dns_ask(struct doctor *d, const char *name, int type, struct dnsans *a)
{
	memset(a, 0, sizeof(*a));
	ares_query(d->ch, name, ns_c_in, type, query_done, a);
	while (!a->done) {
		fd_set r, w;
		struct timeval tv, *tvp;
		int nfds;

		FD_ZERO(&r);
		FD_ZERO(&w);
		nfds = ares_fds(d->ch, &r, &w);
		tvp = ares_timeout(d->ch, NULL, &tv);
		if (nfds == 0 && !tvp)
			break;
		if (select(nfds, &r, &w, NULL, tvp) < 0 && errno != EINTR)
			break;
		ares_process(d->ch, &r, &w);
	}
	if (!a->done)
		a->status = ARES_ETIMEOUT;
	return a->status;
}

static bool
dns_temporary(int status)
{
	return status != ARES_SUCCESS && status != ARES_ENODATA && status != ARES_ENOTFOUND;
}

/* TXT records of name, each one joined from its strings. */
static int
dns_txt(struct doctor *d, const char *name, char **out, size_t max, size_t *n)
{
	struct ares_txt_ext *txt = NULL, *t;
	struct dnsans a;
	int rc;

	*n = 0;
	if ((rc = dns_ask(d, name, ns_t_txt, &a)) != ARES_SUCCESS)
		return rc;
	rc = ares_parse_txt_reply_ext(a.buf, a.len, &txt);
	free(a.buf);
	if (rc != ARES_SUCCESS)
		return rc;
	for (t = txt; t; t = t->next) {
		if (t->record_start && *n < max) {
			out[(*n)++] = strndup((const char *)t->txt, t->length);
		} else if (!t->record_start && *n > 0 && *n <= max) {
			char *p = out[*n - 1];
			size_t l = strlen(p);
			if ((p = realloc(p, l + t->length + 1))) {
				memcpy(p + l, t->txt, t->length);
				p[l + t->length] = '\0';
				out[*n - 1] = p;
			}
		}
	}
	ares_free_data(txt);
	return *n ? ARES_SUCCESS : ARES_ENODATA;
}

static void
free_strs(char **s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(s[i]);
}

/* A and AAAA records (16 bytes each, IPv4 as v4-mapped), for comparing. */
struct addrs {
	unsigned char a[32][16];
	int family[32];
	size_t n;
};

static int
dns_addrs(struct doctor *d, const char *name, struct addrs *out)
{
	struct ares_addrttl v4[16];
	struct ares_addr6ttl v6[16];
	struct dnsans a;
	int rc4, rc6, n;

	out->n = 0;
	if ((rc4 = dns_ask(d, name, ns_t_a, &a)) == ARES_SUCCESS) {
		n = 16;
		if (ares_parse_a_reply(a.buf, a.len, NULL, v4, &n) == ARES_SUCCESS)
			for (int i = 0; i < n && out->n < 32; i++, out->n++) {
				memset(out->a[out->n], 0, 16);
				memcpy(out->a[out->n], &v4[i].ipaddr, 4);
				out->family[out->n] = AF_INET;
			}
		free(a.buf);
	}
	if ((rc6 = dns_ask(d, name, ns_t_aaaa, &a)) == ARES_SUCCESS) {
		n = 16;
		if (ares_parse_aaaa_reply(a.buf, a.len, NULL, v6, &n) == ARES_SUCCESS)
			for (int i = 0; i < n && out->n < 32; i++, out->n++) {
				memcpy(out->a[out->n], &v6[i].ip6addr, 16);
				out->family[out->n] = AF_INET6;
			}
		free(a.buf);
	}
	if (out->n)
		return ARES_SUCCESS;
	if (dns_temporary(rc4))
		return rc4;
	if (dns_temporary(rc6))
		return rc6;
	return rc4 == ARES_ENOTFOUND ? ARES_ENOTFOUND : ARES_ENODATA;
}

static int
dns_mx(struct doctor *d, const char *name, char **hosts, size_t max, size_t *n)
{
	struct ares_mx_reply *mx = NULL, *m;
	struct dnsans a;
	int rc;

	*n = 0;
	if ((rc = dns_ask(d, name, ns_t_mx, &a)) != ARES_SUCCESS)
		return rc;
	rc = ares_parse_mx_reply(a.buf, a.len, &mx);
	free(a.buf);
	if (rc != ARES_SUCCESS)
		return rc;
	for (m = mx; m && *n < max; m = m->next)
		hosts[(*n)++] = strdup(m->host);
	ares_free_data(mx);
	return ARES_SUCCESS;
}

static int
dns_ptr(struct doctor *d, const char *rname, char **names, size_t max, size_t *n)
{
	struct hostent *he = NULL;
	struct dnsans a;
	int rc;

	*n = 0;
	if ((rc = dns_ask(d, rname, ns_t_ptr, &a)) != ARES_SUCCESS)
		return rc;
	rc = ares_parse_ptr_reply(a.buf, a.len, NULL, 0, AF_INET, &he);
	free(a.buf);
	if (rc != ARES_SUCCESS)
		return rc;
	if (he->h_name && *n < max)
		names[(*n)++] = strdup(he->h_name);
	for (char **al = he->h_aliases; al && *al && *n < max; al++)
		if (strcasecmp(*al, he->h_name) != 0)
			names[(*n)++] = strdup(*al);
	ares_free_hostent(he);
	return *n ? ARES_SUCCESS : ARES_ENODATA;
}

/* The reversed name of the IP under zone ("4.3.2.1.in-addr.arpa", or
 * nibbles for IPv6). */
static void
reverse_name(const struct doctor *d, const char *zone, char *buf, size_t size)
{
	size_t o = 0;

	buf[0] = '\0';
	if (d->family == AF_INET)
		o = (size_t)snprintf(buf, size, "%u.%u.%u.%u.", d->ip[3], d->ip[2], d->ip[1], d->ip[0]);
	else
		for (int i = 15; i >= 0 && o + 4 < size; i--)
			o += (size_t)snprintf(buf + o, size - o, "%x.%x.", d->ip[i] & 0xf, d->ip[i] >> 4);
	snprintf(buf + o, size - o, "%s", zone);
}

static bool
same_ip(const struct doctor *d, const unsigned char *a, int family)
{
	return family == d->family && memcmp(a, d->ip, family == AF_INET ? 4 : 16) == 0;
}

/* ---- the table ---- */

static void
row(struct doctor *d, const char *check, const char *subject, enum verdict v, const char *detail,
    const char *fix)
{
	if (v == V_FAIL)
		d->nfail++;
	else if (v == V_WARN)
		d->nwarn++;
	if (out_json()) {
		j_object(NULL);
		j_str("check", check);
		j_str("subject", subject);
		j_str("verdict", verdict_name[v]);
		j_str("detail", detail);
		if (fix && v != V_PASS)
			j_str("fix", fix);
		else
			j_null("fix");
		j_object_end();
		return;
	}
	printf("%-10s %-34s %-5s %s\n", check, subject, verdict_name[v], detail);
	if (fix && v != V_PASS)
		printf("%-10s %-34s %-5s -> %s\n", "", "", "", fix);
}

/* ---- ptr ---- */

static void
check_ptr(struct doctor *d, const struct hato_config *cf)
{
	char rname[128], *names[MAX_NAMES], detail[600], fix[300];
	struct addrs fw;
	size_t n;
	int rc;

	reverse_name(d, d->family == AF_INET ? "in-addr.arpa" : "ip6.arpa", rname, sizeof(rname));
	if ((rc = dns_ptr(d, rname, names, MAX_NAMES, &n)) != ARES_SUCCESS) {
		snprintf(detail, sizeof(detail), "no PTR record for %s (%s)", d->ipstr, ares_strerror(rc));
		snprintf(fix, sizeof(fix), "ask whoever owns %s (the hosting provider) for a PTR naming %s,"
		    " and an A record of %s back to it", d->ipstr, cf->hostname, cf->hostname);
		row(d, "ptr", d->ipstr, dns_temporary(rc) ? V_WARN : V_FAIL, detail, fix);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		bool back = false;
		if (dns_addrs(d, names[i], &fw) == ARES_SUCCESS)
			for (size_t k = 0; k < fw.n; k++)
				back |= same_ip(d, fw.a[k], fw.family[k]);
		if (back) {
			snprintf(detail, sizeof(detail), "%s -> %s -> %s (forward-confirmed)%s%s", d->ipstr,
			    names[i], d->ipstr, strcasecmp(names[i], cf->hostname) ? "; EHLO name is " : "",
			    strcasecmp(names[i], cf->hostname) ? cf->hostname : "");
			row(d, "ptr", d->ipstr, V_PASS, detail, NULL);
			free_strs(names, n);
			return;
		}
	}
	snprintf(detail, sizeof(detail), "%s -> %s, but %s does not resolve back to %s", d->ipstr, names[0],
	    names[0], d->ipstr);
	snprintf(fix, sizeof(fix), "add an A/AAAA record %s -> %s (or change the PTR to a name that has it)",
	    names[0], d->ipstr);
	row(d, "ptr", d->ipstr, V_FAIL, detail, fix);
	free_strs(names, n);
}

/* ---- mx ---- */

static void
check_mx(struct doctor *d, const char *domain)
{
	char *hosts[MAX_NAMES], detail[600];
	size_t n, o = 0;
	int rc;

	if ((rc = dns_mx(d, domain, hosts, MAX_NAMES, &n)) != ARES_SUCCESS || n == 0) {
		snprintf(detail, sizeof(detail), "no MX for %s (%s): bounces and replies to the envelope"
		    " sender have nowhere to go", domain, rc == ARES_SUCCESS ? "empty" : ares_strerror(rc));
		row(d, "mx", domain, dns_temporary(rc) ? V_WARN : V_FAIL, detail,
		    "publish an MX for the bounce domain pointing at the MTA that feeds hato-intake");
		return;
	}
	o = (size_t)snprintf(detail, sizeof(detail), "MX:");
	for (size_t i = 0; i < n && o < sizeof(detail); i++)
		o += (size_t)snprintf(detail + o, sizeof(detail) - o, " %s", hosts[i]);
	if (n == 1 && (strcmp(hosts[0], "") == 0 || strcmp(hosts[0], ".") == 0)) {
		row(d, "mx", domain, V_FAIL, "null MX (RFC 7505): the domain takes no mail, bounces are lost",
		    "publish a real MX for the bounce domain");
	} else
		row(d, "mx", domain, V_PASS, detail, NULL);
	free_strs(hosts, n);
}

/* ---- spf ---- */

enum spf { SPF_NONE, SPF_NEUTRAL, SPF_PASS, SPF_FAIL, SPF_SOFTFAIL, SPF_TEMPERROR, SPF_PERMERROR, SPF_UNKNOWN };
static const char *spf_name[] = { "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror",
	"neutral/unknown" };

static enum spf spf_eval(struct doctor *d, const char *domain, int depth, char *record, size_t rsize);

/* ip under prefix bits of a (16-byte form, family f). */
static bool
cidr_match(const struct doctor *d, const unsigned char *a, int family, int bits)
{
	int full = bits / 8, rest = bits % 8;

	if (family != d->family)
		return false;
	if (memcmp(a, d->ip, (size_t)full) != 0)
		return false;
	if (rest && ((a[full] ^ d->ip[full]) & (0xff << (8 - rest)) & 0xff))
		return false;
	return true;
}

/* "domain/24//64" -> domain (or the current one), the prefix for our family. */
static bool
spf_target(const struct doctor *d, const char *arg, const char *cur, char *dom, size_t size, int *bits)
{
	char tmp[300];
	char *slash;
	int v4 = 32, v6 = 128;

	snprintf(tmp, sizeof(tmp), "%s", arg ? arg : "");
	if ((slash = strchr(tmp, '/'))) {
		char *s6 = strstr(slash, "//");
		if (s6) {
			v6 = atoi(s6 + 2);
			*s6 = '\0';
		}
		if (slash[1] && slash[1] != '/')
			v4 = atoi(slash + 1);
		*slash = '\0';
	}
	if (strchr(tmp, '%'))
		return false;	/* a macro: not evaluated */
	snprintf(dom, size, "%s", *tmp ? tmp : cur);
	*bits = d->family == AF_INET ? v4 : v6;
	return *bits >= 0 && *bits <= (d->family == AF_INET ? 32 : 128);
}

static int
spf_ip_term(struct doctor *d, const char *arg, int family)
{
	unsigned char a[16] = { 0 };
	char tmp[100], *slash;
	int bits = family == AF_INET ? 32 : 128;

	snprintf(tmp, sizeof(tmp), "%s", arg);
	if ((slash = strchr(tmp, '/'))) {
		bits = atoi(slash + 1);
		*slash = '\0';
	}
	if (inet_pton(family, tmp, a) != 1 || bits < 0 || bits > (family == AF_INET ? 32 : 128))
		return -1;
	return cidr_match(d, a, family, bits);
}

/* a and mx: 1 match, 0 not, -1 permerror, -2 temperror, -3 not evaluated. */
static int
spf_a_term(struct doctor *d, const char *arg, const char *cur)
{
	char dom[300];
	struct addrs ad;
	int bits, rc;

	if (!spf_target(d, arg, cur, dom, sizeof(dom), &bits))
		return -3;
	if (++d->lookups > SPF_MAX_LOOKUPS)
		return -1;
	if ((rc = dns_addrs(d, dom, &ad)) != ARES_SUCCESS)
		return dns_temporary(rc) ? -2 : 0;
	for (size_t i = 0; i < ad.n; i++)
		if (cidr_match(d, ad.a[i], ad.family[i], bits))
			return 1;
	return 0;
}

static int
spf_mx_term(struct doctor *d, const char *arg, const char *cur)
{
	char dom[300], *hosts[MAX_NAMES];
	struct addrs ad;
	size_t n;
	int bits, rc, m = 0;

	if (!spf_target(d, arg, cur, dom, sizeof(dom), &bits))
		return -3;
	if (++d->lookups > SPF_MAX_LOOKUPS)
		return -1;
	if ((rc = dns_mx(d, dom, hosts, MAX_NAMES, &n)) != ARES_SUCCESS)
		return dns_temporary(rc) ? -2 : 0;
	for (size_t i = 0; i < n && i < SPF_MAX_MX && !m; i++)
		if (dns_addrs(d, hosts[i], &ad) == ARES_SUCCESS)
			for (size_t k = 0; k < ad.n; k++)
				m |= cidr_match(d, ad.a[k], ad.family[k], bits);
	free_strs(hosts, n);
	return m;
}

static enum spf
qualifier_result(char q)
{
	switch (q) {
	case '-': return SPF_FAIL;
	case '~': return SPF_SOFTFAIL;
	case '?': return SPF_NEUTRAL;
	default: return SPF_PASS;
	}
}

/* One mechanism: 1 matched, 0 not, or an enum spf error (negated). */
static int
spf_mechanism(struct doctor *d, const char *mech, const char *arg, const char *domain, int depth)
{
	char sub[300];
	int m;

	if (strcasecmp(mech, "all") == 0)
		return 1;
	if (strcasecmp(mech, "ip4") == 0 || strcasecmp(mech, "ip6") == 0) {
		if (!arg || (m = spf_ip_term(d, arg, tolower((unsigned char)mech[2]) == '4' ? AF_INET : AF_INET6)) < 0)
			return -SPF_PERMERROR;
		return m;
	}
	if (strcasecmp(mech, "a") == 0 || strcasecmp(mech, "mx") == 0) {
		m = tolower((unsigned char)mech[0]) == 'a' ? spf_a_term(d, arg, domain) : spf_mx_term(d, arg, domain);
		return m == -1 ? -SPF_PERMERROR : m == -2 ? -SPF_TEMPERROR : m == -3 ? -SPF_UNKNOWN : m;
	}
	if (strcasecmp(mech, "include") == 0) {
		enum spf r;
		if (!arg || strchr(arg, '%'))
			return arg ? -SPF_UNKNOWN : -SPF_PERMERROR;
		if (++d->lookups > SPF_MAX_LOOKUPS)
			return -SPF_PERMERROR;
		r = spf_eval(d, arg, depth + 1, sub, sizeof(sub));
		if (r == SPF_PASS)
			return 1;
		if (r == SPF_NONE || r == SPF_PERMERROR)
			return -SPF_PERMERROR;
		if (r == SPF_TEMPERROR || r == SPF_UNKNOWN)
			return -(int)r;
		return 0;
	}
	if (strcasecmp(mech, "ptr") == 0 || strcasecmp(mech, "exists") == 0) {
		snprintf(d->spf_why, sizeof(d->spf_why), "the %s mechanism is not evaluated here", mech);
		return -SPF_UNKNOWN;
	}
	snprintf(d->spf_why, sizeof(d->spf_why), "unknown mechanism '%s'", mech);
	return -SPF_PERMERROR;
}

/* The SPF record of domain (RFC 7208 check_host), record gets its text. */
static enum spf
spf_eval(struct doctor *d, const char *domain, int depth, char *record, size_t rsize)
{
	char *txt[MAX_NAMES], *spf = NULL, *save = NULL, *term, redirect[300] = "", dummy[300];
	size_t n, nspf = 0;
	enum spf result = SPF_NEUTRAL;
	int rc;

	record[0] = '\0';
	if (depth > SPF_MAX_LOOKUPS)
		return SPF_PERMERROR;
	if ((rc = dns_txt(d, domain, txt, MAX_NAMES, &n)) != ARES_SUCCESS)
		return dns_temporary(rc) ? SPF_TEMPERROR : SPF_NONE;
	for (size_t i = 0; i < n; i++)
		if (strncasecmp(txt[i], "v=spf1", 6) == 0 && (txt[i][6] == '\0' || txt[i][6] == ' ')) {
			nspf++;
			spf = txt[i];
		}
	if (nspf != 1) {
		free_strs(txt, n);
		if (nspf > 1)
			snprintf(d->spf_why, sizeof(d->spf_why), "%s has %zu SPF records", domain, nspf);
		return nspf ? SPF_PERMERROR : SPF_NONE;
	}
	snprintf(record, rsize, "%s", spf);
	for (term = strtok_r(spf + 6, " ", &save); term; term = strtok_r(NULL, " ", &save)) {
		char q = '+', *arg, *eq = strchr(term, '=');
		int m;

		if (eq && (!strchr(term, ':') || eq < strchr(term, ':'))) {
			if (strncasecmp(term, "redirect=", 9) == 0)
				snprintf(redirect, sizeof(redirect), "%s", eq + 1);
			continue;	/* exp= and unknown modifiers change no result */
		}
		if (strchr("+-~?", *term))
			q = *term++;
		if ((arg = strpbrk(term, ":/"))) {
			if (*arg == ':')
				*arg++ = '\0';
			else {
				/* "a/24": keep the prefix with an empty domain. */
				memmove(arg + 1, arg, strlen(arg) + 1);
				*arg++ = '\0';
			}
		}
		if ((m = spf_mechanism(d, term, arg, domain, depth)) < 0) {
			free_strs(txt, n);
			return (enum spf)-m;
		}
		if (m == 1) {
			free_strs(txt, n);
			return qualifier_result(q);
		}
	}
	free_strs(txt, n);
	if (*redirect) {
		if (strchr(redirect, '%'))
			return SPF_UNKNOWN;
		if (++d->lookups > SPF_MAX_LOOKUPS)
			return SPF_PERMERROR;
		result = spf_eval(d, redirect, depth + 1, dummy, sizeof(dummy));
		return result == SPF_NONE ? SPF_PERMERROR : result;
	}
	return result;
}

static void
check_spf(struct doctor *d, const char *domain)
{
	char record[600], detail[1000], fix[400];
	enum spf r;
	enum verdict v;

	d->lookups = 0;
	d->spf_why[0] = '\0';
	r = spf_eval(d, domain, 0, record, sizeof(record));
	if (r == SPF_NONE) {
		snprintf(fix, sizeof(fix), "publish TXT \"v=spf1 ip4:%s -all\" (or add ip4:%s to the existing"
		    " policy) at %s", d->ipstr, d->ipstr, domain);
		row(d, "spf", domain, V_FAIL, "no SPF record: receivers cannot tell the gateway may send", fix);
		return;
	}
	snprintf(detail, sizeof(detail), "%s for %s%s%s%s%s (%d lookups)", spf_name[r], d->ipstr,
	    *record ? ": \"" : "", record, *record ? "\"" : "", *d->spf_why ? "" : "", d->lookups);
	if (*d->spf_why) {
		size_t l = strlen(detail);
		snprintf(detail + l, sizeof(detail) - l, "; %s", d->spf_why);
	}
	v = r == SPF_PASS ? V_PASS : r == SPF_FAIL || r == SPF_PERMERROR ? V_FAIL : V_WARN;
	if (r == SPF_PERMERROR)
		snprintf(fix, sizeof(fix), "fix the SPF record of %s (one record, known mechanisms, at most"
		    " %d DNS lookups)", domain, SPF_MAX_LOOKUPS);
	else
		snprintf(fix, sizeof(fix), "add ip4:%s (or a mechanism that covers it) before the all of %s's SPF",
		    d->ipstr, domain);
	row(d, "spf", domain, v, detail, fix);
}

/* ---- dkim ---- */

/* The base64 DER of key_file's public half, or NULL (why in why). */
static char *
dkim_public_b64(const char *path, char *why, size_t size)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *k;
	unsigned char *der = NULL;
	char *b64;
	int len;

	if (!f) {
		snprintf(why, size, "%s: %s", path, strerror(errno));
		return NULL;
	}
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (!k || (len = i2d_PUBKEY(k, &der)) <= 0) {
		snprintf(why, size, "%s: not a PEM private key", path);
		EVP_PKEY_free(k);
		return NULL;
	}
	EVP_PKEY_free(k);
	if ((b64 = malloc((size_t)(4 * ((len + 2) / 3) + 1))))
		EVP_EncodeBlock((unsigned char *)b64, der, len);
	OPENSSL_free(der);
	return b64;
}

/* The p= of a DKIM key record, without spaces; NULL when there is none. */
static char *
dkim_p(const char *rec)
{
	const char *p = rec;
	char *out, *o;

	while ((p = strchr(p, 'p')) != NULL) {
		const char *b = p;
		bool at_tag = b == rec || b[-1] == ';' || isspace((unsigned char)b[-1]);
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (at_tag && *p == '=')
			break;
	}
	if (!p)
		return NULL;
	if (!(out = o = malloc(strlen(p) + 1)))
		return NULL;
	for (p++; *p && *p != ';'; p++)
		if (!isspace((unsigned char)*p))
			*o++ = *p;
	*o = '\0';
	return out;
}

static void
check_dkim_one(struct doctor *d, const struct dkim_conf *k)
{
	char name[600], *txt[MAX_NAMES], *p = NULL, *mine, why[400], detail[800], fix[400];
	size_t n;
	int rc;

	snprintf(name, sizeof(name), "%s._domainkey.%s", k->selector, k->domain);
	snprintf(fix, sizeof(fix), "publish TXT \"v=DKIM1; k=rsa; p=<public key of %s>\" at %s", k->key_file, name);
	if ((rc = dns_txt(d, name, txt, MAX_NAMES, &n)) != ARES_SUCCESS) {
		snprintf(detail, sizeof(detail), "[dkim %s]: no key at %s (%s): signatures cannot be verified",
		    k->name, name, ares_strerror(rc));
		row(d, "dkim", name, dns_temporary(rc) ? V_WARN : V_FAIL, detail, fix);
		return;
	}
	for (size_t i = 0; i < n && !p; i++)
		p = dkim_p(txt[i]);
	free_strs(txt, n);
	if (!p || !*p) {
		snprintf(detail, sizeof(detail), "[dkim %s]: the record at %s has %s", k->name, name,
		    p ? "an empty p= (the key is revoked)" : "no p= tag");
		row(d, "dkim", name, V_FAIL, detail, fix);
		free(p);
		return;
	}
	if (!(mine = dkim_public_b64(k->key_file, why, sizeof(why)))) {
		snprintf(detail, sizeof(detail), "[dkim %s]: a key is published; not compared with the private"
		    " key (%s)", k->name, why);
		row(d, "dkim", name, V_PASS, detail, NULL);
	} else if (strcmp(mine, p) != 0) {
		snprintf(detail, sizeof(detail), "[dkim %s]: the published key is not the public half of %s",
		    k->name, k->key_file);
		row(d, "dkim", name, V_FAIL, detail, fix);
	} else {
		snprintf(detail, sizeof(detail), "[dkim %s]: published, matches %s", k->name, k->key_file);
		row(d, "dkim", name, V_PASS, detail, NULL);
	}
	free(mine);
	free(p);
}

/* ---- dmarc ---- */

static void
check_dmarc(struct doctor *d, const char *domain)
{
	char name[300], *txt[MAX_NAMES], *rec = NULL, detail[800], fix[400], pol[32] = "";
	size_t n;
	int rc;

	snprintf(name, sizeof(name), "_dmarc.%s", domain);
	snprintf(fix, sizeof(fix), "publish TXT \"v=DMARC1; p=quarantine; rua=mailto:dmarc@%s\" at %s",
	    domain, name);
	if ((rc = dns_txt(d, name, txt, MAX_NAMES, &n)) != ARES_SUCCESS) {
		snprintf(detail, sizeof(detail), "no DMARC record at %s (%s)", name, ares_strerror(rc));
		row(d, "dmarc", domain, dns_temporary(rc) ? V_WARN : V_FAIL, detail, fix);
		return;
	}
	for (size_t i = 0; i < n; i++)
		if (strncasecmp(txt[i], "v=DMARC1", 8) == 0 && !rec)
			rec = txt[i];
	if (!rec) {
		snprintf(detail, sizeof(detail), "TXT at %s but none starts with v=DMARC1", name);
		row(d, "dmarc", domain, V_FAIL, detail, fix);
		free_strs(txt, n);
		return;
	}
	for (const char *p = rec; (p = strcasestr(p, "p=")) != NULL; p += 2)
		if (p == rec || p[-1] == ';' || isspace((unsigned char)p[-1])) {
			sscanf(p + 2, "%31[a-zA-Z]", pol);
			break;
		}
	snprintf(detail, sizeof(detail), "policy %s: \"%s\"", *pol ? pol : "missing", rec);
	if (strcasecmp(pol, "reject") == 0 || strcasecmp(pol, "quarantine") == 0)
		row(d, "dmarc", domain, V_PASS, detail, NULL);
	else if (strcasecmp(pol, "none") == 0)
		row(d, "dmarc", domain, V_WARN, detail,
		    "p=none only monitors; move to p=quarantine once the reports show only your mail");
	else
		row(d, "dmarc", domain, V_FAIL, detail, "give the record a p= of none, quarantine or reject");
	free_strs(txt, n);
}

/* ---- blocklists ---- */

static void
check_blocklist(struct doctor *d, const char *zone)
{
	char name[400], *txt[MAX_NAMES], detail[800], fix[400];
	struct addrs ad;
	size_t n;
	int rc;

	reverse_name(d, zone, name, sizeof(name));
	if ((rc = dns_addrs(d, name, &ad)) == ARES_ENOTFOUND || rc == ARES_ENODATA) {
		snprintf(detail, sizeof(detail), "%s is not listed", d->ipstr);
		row(d, "blocklist", zone, V_PASS, detail, NULL);
		return;
	}
	if (rc != ARES_SUCCESS) {
		snprintf(detail, sizeof(detail), "cannot ask %s: %s", zone, ares_strerror(rc));
		row(d, "blocklist", zone, V_WARN, detail, "check [gateway] dns_servers and the zone's name");
		return;
	}
	for (size_t i = 0; i < ad.n; i++) {
		const unsigned char *a = ad.a[i];
		if (ad.family[i] != AF_INET || a[0] != 127)
			continue;
		/* 127.255.255.x: the list refuses this resolver (Spamhaus). */
		if (a[1] == 255 && a[2] == 255) {
			snprintf(detail, sizeof(detail), "%s refused the query (127.255.255.%u)", zone, a[3]);
			row(d, "blocklist", zone, V_WARN, detail, "ask the list through your own resolver or a data feed");
			return;
		}
		snprintf(detail, sizeof(detail), "%s is LISTED (127.%u.%u.%u)", d->ipstr, a[1], a[2], a[3]);
		if (dns_txt(d, name, txt, MAX_NAMES, &n) == ARES_SUCCESS) {
			size_t l = strlen(detail);
			snprintf(detail + l, sizeof(detail) - l, ": %s", txt[0]);
			free_strs(txt, n);
		}
		snprintf(fix, sizeof(fix), "find why (the reason above), stop it, then ask %s for delisting", zone);
		row(d, "blocklist", zone, V_FAIL, detail, fix);
		return;
	}
	snprintf(detail, sizeof(detail), "%s answers outside 127.0.0.0/8: not a listing", zone);
	row(d, "blocklist", zone, V_WARN, detail, "check the zone name in [doctor] blocklists");
}

/* ---- the command ---- */

static int
channel_open(struct doctor *d, const struct hato_config *cf)
{
	struct ares_options o;
	int rc;

	if ((rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS)
		goto fail;
	memset(&o, 0, sizeof(o));
	o.timeout = (int)cf->dns_timeout_ms;
	o.tries = 2;
	/* Lookups of names as given: no search list, no hosts file. */
	o.flags = ARES_FLAG_NOSEARCH;
	o.lookups = (char *)"b";
	if ((rc = ares_init_options(&d->ch, &o, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS |
	    ARES_OPT_LOOKUPS)) != ARES_SUCCESS)
		goto fail;
	if (*cf->dns_servers && (rc = ares_set_servers_ports_csv(d->ch, cf->dns_servers)) != ARES_SUCCESS) {
		fprintf(stderr, "hatoctl: [gateway] dns_servers \"%s\": %s\n", cf->dns_servers, ares_strerror(rc));
		ares_destroy(d->ch);
		return CTL_CONFIG;
	}
	return CTL_OK;
fail:
	fprintf(stderr, "hatoctl: c-ares: %s\n", ares_strerror(rc));
	return CTL_UNAVAILABLE;
}

/* The From domains: --domain, else the submitters' addresses' domains. */
static size_t
from_domains(const struct hato_config *cf, const char *given, const char **out, size_t max)
{
	size_t n = 0;

	if (given) {
		out[n++] = given;
		return n;
	}
	for (size_t i = 0; i < cf->nsubmitters; i++)
		for (size_t k = 0; k < cf->submitters[i].naddr && n < max; k++) {
			const char *at = strrchr(cf->submitters[i].addresses[k], '@');
			bool seen = false;
			if (!at)
				continue;
			for (size_t j = 0; j < n; j++)
				seen |= strcasecmp(out[j], at + 1) == 0;
			if (!seen)
				out[n++] = at + 1;
		}
	if (n == 0)
		out[n++] = cf->bounce_domain;
	return n;
}

static void
run_checks(struct doctor *d, const struct hato_config *cf, const char *domain)
{
	const char *froms[MAX_NAMES];
	size_t nfrom = from_domains(cf, domain, froms, MAX_NAMES);
	const char *env = domain ? domain : cf->bounce_domain;
	char zones[1024], *save = NULL, *z;

	check_ptr(d, cf);
	check_mx(d, env);
	check_spf(d, env);
	if (cf->ndkims == 0)
		row(d, "dkim", "-", V_WARN, "no [dkim NAME] section: messages go out unsigned",
		    "add a [dkim NAME] section (domain, selector, key_file) and publish its key");
	for (size_t i = 0; i < cf->ndkims; i++)
		check_dkim_one(d, &cf->dkims[i]);
	for (size_t i = 0; i < nfrom; i++)
		check_dmarc(d, froms[i]);
	snprintf(zones, sizeof(zones), "%s", cf->doctor_blocklists);
	for (z = strtok_r(zones, ", \t", &save); z; z = strtok_r(NULL, ", \t", &save))
		check_blocklist(d, z);
}

int
cmd_doctor(const struct hato_config *cf, int argc, char **argv)
{
	struct doctor d = { .nfail = 0 };
	const char *ip = *cf->doctor_ip ? cf->doctor_ip : NULL, *domain = NULL, *v;
	int rc;

	for (int i = 0; i < argc; i++) {
		if ((v = ctl_option_value(argc, argv, &i, "--ip")))
			ip = v;
		else if ((v = ctl_option_value(argc, argv, &i, "--domain")))
			domain = v;
		else
			return ctl_usage();
	}
	if (!ip) {
		fprintf(stderr, "hatoctl: doctor needs the sending IP: --ip ADDR or [doctor] ip\n");
		return CTL_USAGE;
	}
	if (inet_pton(AF_INET, ip, d.ip) == 1)
		d.family = AF_INET;
	else if (inet_pton(AF_INET6, ip, d.ip) == 1)
		d.family = AF_INET6;
	else {
		fprintf(stderr, "hatoctl: --ip '%s' is not an IPv4 or IPv6 address\n", ip);
		return CTL_USAGE;
	}
	inet_ntop(d.family, d.ip, d.ipstr, sizeof(d.ipstr));
	if ((rc = channel_open(&d, cf)) != CTL_OK)
		return rc;
	if (out_json()) {
		j_object(NULL);
		j_str("ip", d.ipstr);
		j_str("envelope_domain", domain ? domain : cf->bounce_domain);
		j_array("checks");
	} else
		printf("%-10s %-34s %-5s %s\n", "CHECK", "SUBJECT", "VERDICT", "DETAIL");
	run_checks(&d, cf, domain);
	if (out_json()) {
		j_array_end();
		j_int("failed", d.nfail);
		j_int("warnings", d.nwarn);
		j_object_end();
	} else
		printf("\n%d failed, %d warnings\n", d.nfail, d.nwarn);
	ares_destroy(d.ch);
	ares_library_cleanup();
	return d.nfail ? CTL_NOTFOUND : CTL_OK;
}
