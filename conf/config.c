/*
 * config: loads hato.ini (iniparser) through one table per section.
 *
 * iniparser gives values but no positions, so the file is also scanned
 * once for the line of every section and key: errors then say
 * "file:line: [section] key: reason", and a key given twice is refused
 * instead of the last one silently winning. Defaults come from the
 * tables; relays and pace policies start from [limits] and override what
 * they set. Everything is checked before anything is used: a config that
 * loads is complete, its route table parsed, its relays resolved, its
 * secrets files private.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <iniparser.h>

#include "conf/config.h"
#include "core/daemon.h"
#include "core/duration.h"
#include "core/log.h"

enum ktype { K_STR, K_UINT, K_BOOL, K_DURATION, K_SIZE, K_LEVEL, K_FACILITY, K_TLS, K_WINDOW };

struct conf_key {
	const char *name;
	enum ktype type;
	const char *def;	/* NULL: keep what is there (inherited) */
	uint64_t min, max;
	size_t off;
	const char *help;
};

#define HC(f) offsetof(struct hato_config, f)
#define RC(f) offsetof(struct relay_conf, f)
#define PC(f) offsetof(struct pace_conf, f)
#define SC(f) offsetof(struct submitter_conf, f)
#define LIM(base, f) (offsetof(base, lim) + offsetof(struct limits, f))
#define U32 UINT32_MAX
#define DAY (86400000ULL)

static const struct conf_key hato_keys[] = {
	{ "node", K_STR, "", 0, 0, HC(node), "name in leases and logs" },
	{ "user", K_STR, "", 0, 0, HC(user), "user to drop root to" },
	{ "secret_file", K_STR, "", 0, 0, HC(secret_file), "MAC key file (mode 600, 32+ bytes)" },
	{ NULL }
};
static const struct conf_key log_keys[] = {
	{ "level", K_LEVEL, "info", 0, 0, HC(log_level), "debug|info|notice|warning|error" },
	{ "syslog", K_BOOL, "no", 0, 0, HC(log_syslog), "log to syslog" },
	{ "facility", K_FACILITY, "mail", 0, 0, HC(log_facility), "syslog facility" },
	{ NULL }
};
static const struct conf_key db_keys[] = {
	{ "socket", K_STR, "/run/mysqld/mysqld.sock", 0, 0, HC(db_socket), "unix socket" },
	{ "host", K_STR, "", 0, 0, HC(db_host), "TCP host" },
	{ "port", K_UINT, "3306", 1, 65535, HC(db_port), "TCP port" },
	{ "user", K_STR, "hato", 0, 0, HC(db_user), "database user" },
	{ "password_file", K_STR, "", 0, 0, HC(db_password_file), "file holding the password" },
	{ "database", K_STR, "hato", 0, 0, HC(db_database), "database name" },
	{ "connect_timeout", K_DURATION, "5s", 100, 300000, HC(db_connect_timeout_ms), "connect timeout" },
	{ NULL }
};
static const struct conf_key intake_keys[] = {
	{ "lmtp_socket", K_STR, "", 0, 0, HC(lmtp_socket), "LMTP unix socket" },
	{ "lmtp_listen", K_STR, "127.0.0.1:2424", 0, 0, HC(lmtp_listen), "LMTP host:port" },
	{ "submit_address", K_STR, "dm@hato.example", 0, 0, HC(submit_address), "submission address" },
	{ "timezone", K_STR, "Asia/Tokyo", 0, 0, HC(timezone), "zone of Send-At" },
	{ "max_message_size", K_SIZE, "50M", 1024, 1ULL << 31, HC(max_message_size), "largest submission" },
	{ "workers", K_UINT, "2", 1, 64, HC(intake_workers), "database threads" },
	{ "approval_expiry", K_DURATION, "24h", 1000, 366 * DAY, HC(approval_expiry_ms), "held jobs expire after it" },
	{ "authserv_id", K_STR, "", 0, 0, HC(authserv_id), "trusted Authentication-Results id" },
	{ "receipt_from", K_STR, "", 0, 0, HC(receipt_from), "From of receipts (default: submit_address)" },
	{ "receipts", K_BOOL, "yes", 0, 0, HC(receipts), "answer submissions with receipts" },
	{ NULL }
};
static const struct conf_key gateway_keys[] = {
	{ "hostname", K_STR, "hato.example", 0, 0, HC(hostname), "EHLO name, Message-ID domain" },
	{ "routes", K_STR, "/etc/hato/carriers.routes", 0, 0, HC(routes_path), "route table" },
	{ "bounce_domain", K_STR, "hato.example", 0, 0, HC(bounce_domain), "envelope sender domain" },
	{ "unsubscribe_url", K_STR, "https://hato.example/unsubscribe/", 0, 0, HC(unsubscribe_url), "one-click URL base" },
	{ "http_listen", K_STR, "127.0.0.1:8025", 0, 0, HC(http_listen), "status and unsubscribe endpoint" },
	{ "http_public", K_BOOL, "no", 0, 0, HC(http_public), "let http_listen be a non-loopback address" },
	{ "http_user", K_STR, "", 0, 0, HC(http_user), "basic auth user of the status page and /metrics" },
	{ "http_password_file", K_STR, "", 0, 0, HC(http_password_file), "its password, mode 600" },
	{ "claim_batch", K_UINT, "200", 1, 10000, HC(claim_batch), "deliveries claimed at once" },
	{ "lease", K_DURATION, "5m", 1000, DAY, HC(lease_ms), "lease length" },
	{ "poll_interval", K_DURATION, "250ms", 10, 600000, HC(poll_ms), "idle poll" },
	{ "connect_timeout", K_DURATION, "30s", 10, 600000, HC(connect_timeout_ms), "SMTP connect" },
	{ "greeting_timeout", K_DURATION, "5m", 10, 3600000, HC(greeting_timeout_ms), "SMTP greeting" },
	{ "command_timeout", K_DURATION, "5m", 10, 3600000, HC(command_timeout_ms), "SMTP command" },
	{ "data_timeout", K_DURATION, "10m", 10, 3600000, HC(data_timeout_ms), "SMTP data" },
	{ "charset", K_STR, "utf-8", 0, 0, HC(charset), "charset for MX delivery" },
	{ "dns_servers", K_STR, "", 0, 0, HC(dns_servers), "DNS servers for MX (ip[:port],...)" },
	{ "mx_tls", K_TLS, "opportunistic", 0, 0, HC(mx_tls), "none or opportunistic" },
	{ "mx_tls_require", K_STR, "", 0, 0, HC(mx_tls_require), "domains needing verified TLS" },
	{ "ca_file", K_STR, "", 0, 0, HC(ca_file), "CA certificates for MX" },
	{ "smtp_port", K_UINT, "25", 1, 65535, HC(smtp_port), "port of MX hosts" },
	{ "dns_timeout", K_DURATION, "5s", 100, 60000, HC(dns_timeout_ms), "DNS query timeout" },
	{ "pid_file", K_STR, "", 0, 0, HC(pid_file), "its process id, for hatoctl routes reload" },
	{ NULL }
};
static const struct conf_key doctor_keys[] = {
	{ "blocklists", K_STR, "", 0, 0, HC(doctor_blocklists), "DNS blocklist zones hatoctl doctor asks" },
	{ "ip", K_STR, "", 0, 0, HC(doctor_ip), "the sending IP hatoctl doctor checks" },
	{ NULL }
};
static const struct conf_key retry_keys[] = {
	{ "intervals", K_STR, "1m 5m 15m 30m 1h", 0, 0, HC(retry_intervals_raw), "retry waits" },
	{ "max_attempts", K_UINT, "30", 1, 1000, HC(max_attempts), "attempts before failing" },
	{ "max_age", K_DURATION, "3d", 1000, 60 * DAY, HC(max_age_ms), "age before failing" },
	{ NULL }
};
static const struct conf_key cleaning_keys[] = {
	{ "min_days", K_UINT, "2", 1, 366, HC(cleaning_min_days), "days with unknown-user failures before suppression" },
	{ "window", K_DURATION, "7d", DAY, 366 * DAY, HC(cleaning_window_ms), "the days counted" },
	{ NULL }
};
#define LIMIT_KEYS(base, dflt_conn, dflt_per, dflt_msg, dflt_int, dflt_susp, dflt_win, dflt_quiet) \
	{ "connections", K_UINT, dflt_conn, 1, 1000, LIM(base, connections), "connections at once" }, \
	{ "per_connection", K_UINT, dflt_per, 1, 100000, LIM(base, per_connection), "messages per connection" }, \
	{ "messages", K_UINT, dflt_msg, 0, 1000000, LIM(base, messages), "messages per interval" }, \
	{ "interval", K_DURATION, dflt_int, 0, DAY, LIM(base, interval_ms), "pace interval" }, \
	{ "suspend", K_DURATION, dflt_susp, 0, DAY, LIM(base, suspend_ms), "suspension after 421" }, \
	{ "send_window", K_WINDOW, dflt_win, 0, 0, LIM(base, window), "HH:MM-HH:MM local, or empty" }, \
	{ "quiet_minutes", K_UINT, dflt_quiet, 0, 59, LIM(base, quiet_minutes), "skip the top of each hour" }

/* [limits] writes into hato_config.limits through a struct with one field. */
struct limits_holder { struct limits lim; };
static const struct conf_key limits_keys[] = {
	LIMIT_KEYS(struct limits_holder, "4", "100", "0", "0", "60s", "", "0"),
	{ NULL }
};
static const struct conf_key relay_keys[] = {
	{ "host", K_STR, "", 0, 0, RC(host), "relay host" },
	{ "port", K_UINT, "25", 1, 65535, RC(port), "relay port" },
	{ "tls", K_TLS, "none", 0, 0, RC(tls), "none|starttls|smtps" },
	{ "verify", K_BOOL, "yes", 0, 0, RC(verify), "verify certificates" },
	{ "charset", K_STR, "utf-8", 0, 0, RC(charset), "utf-8 or iso-2022-jp" },
	{ "suspend_on", K_STR, "", 0, 0, RC(suspend_on), "4xx texts that suspend" },
	{ "ca_file", K_STR, "", 0, 0, RC(ca_file), "CA certificates to verify with" },
	{ "cert_file", K_STR, "", 0, 0, RC(cert_file), "client certificate (PEM)" },
	{ "key_file", K_STR, "", 0, 0, RC(key_file), "client key (PEM, mode 600)" },
	{ "auth_user", K_STR, "", 0, 0, RC(auth_user), "AUTH user" },
	{ "auth_password_file", K_STR, "", 0, 0, RC(auth_password_file), "AUTH password file, mode 600" },
	{ "auth_without_tls", K_BOOL, "no", 0, 0, RC(auth_without_tls), "allow AUTH in clear" },
	{ "retry_intervals", K_STR, "", 0, 0, RC(retry.intervals), "its own [retry] intervals" },
	{ "max_attempts", K_UINT, "0", 0, 1000, RC(retry.max_attempts), "its own [retry] max_attempts" },
	{ "max_age", K_DURATION, "0", 0, 60 * DAY, RC(retry.max_age_ms), "its own [retry] max_age" },
	LIMIT_KEYS(struct relay_conf, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
	{ NULL }
};
static const struct conf_key pace_keys[] = {
	{ "relay", K_STR, "", 0, 0, PC(relay), "send through this relay" },
	{ "mx_domain", K_STR, "", 0, 0, PC(mx_domain), "or to the MX hosts of this domain" },
	{ "retry_intervals", K_STR, "", 0, 0, PC(retry.intervals), "its own [retry] intervals" },
	{ "max_attempts", K_UINT, "0", 0, 1000, PC(retry.max_attempts), "its own [retry] max_attempts" },
	{ "max_age", K_DURATION, "0", 0, 60 * DAY, PC(retry.max_age_ms), "its own [retry] max_age" },
	{ "charset", K_STR, "utf-8", 0, 0, PC(charset), "utf-8 or iso-2022-jp" },
	{ "suspend_on", K_STR, "", 0, 0, PC(suspend_on), "4xx texts that suspend" },
	LIMIT_KEYS(struct pace_conf, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
	{ NULL }
};
#define DC(f) offsetof(struct dkim_conf, f)
static const struct conf_key dkim_keys[] = {
	{ "domain", K_STR, "", 0, 0, DC(domain), "signing domain (d=)" },
	{ "selector", K_STR, "", 0, 0, DC(selector), "selector (s=)" },
	{ "key_file", K_STR, "", 0, 0, DC(key_file), "PEM private key, mode 600" },
	{ NULL }
};
static const struct conf_key submitter_keys[] = {
	{ "address", K_STR, "", 0, 0, SC(address), "From addresses" },
	{ "token_sha256", K_STR, "", 0, 0, SC(token_hex), "SHA-256 of the token" },
	{ "auth", K_STR, "token", 0, 0, SC(auth_raw), "token|authres|token-or-authres" },
	{ "from", K_STR, "", 0, 0, SC(from_raw), "allowed From addresses of their DMs" },
	{ "max_recipients", K_UINT, "0", 0, 100000000, SC(max_recipients), "recipients per job (0: no limit)" },
	{ "max_per_day", K_UINT, "0", 0, 100000000, SC(max_per_day), "recipients per day (0: no limit)" },
	{ "rehearsal", K_STR, "", 0, 0, SC(rehearsal_raw), "rehearsal addresses" },
	{ "approval", K_BOOL, "no", 0, 0, SC(approval), "hold jobs until approved" },
	{ NULL }
};

/* Where each section and key stands in the file. */
struct pos {
	char *key;		/* "section" or "section:key", lower-cased */
	unsigned line;
};

struct loader {
	const char *path;
	const struct hato_config *running;	/* a reload: secrets come from it */
	struct pos *pos;
	size_t npos;
	char *err;
	size_t errlen;
	int failed;
};

static void parse_intervals(struct loader *ld, const char *sec, const char *key, const char *raw,
    uint64_t **out, size_t *n);

static void __attribute__((format(printf, 4, 5)))
fail(struct loader *ld, const char *sec, const char *key, const char *fmt, ...)
{
	char what[512];
	va_list ap;
	unsigned line = 0;
	char look[300];

	if (ld->failed++)
		return;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(look, sizeof(look), key ? "%s:%s" : "%s", sec ? sec : "", key ? key : "");
	for (size_t i = 0; sec && i < ld->npos; i++)
		if (strcmp(ld->pos[i].key, look) == 0)
			line = ld->pos[i].line;
	if (line && key)
		snprintf(ld->err, ld->errlen, "%s:%u: [%s] %s: %s", ld->path, line, sec, key, what);
	else if (line || sec)
		snprintf(ld->err, ld->errlen, "%s:%u: [%s]: %s", ld->path, line, sec, what);
	else
		snprintf(ld->err, ld->errlen, "%s: %s", ld->path, what);
}

static char *
xstrdup(const char *s)
{
	char *d = strdup(s);

	if (!d)
		fatalx("config: out of memory");
	return d;
}

static void
lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* The position scan: sections and keys with their lines; duplicates fail. */
static int
scan_positions(struct loader *ld, FILE *f)
{
	char buf[4096], sec[256] = "";
	unsigned line = 0;

	while (fgets(buf, sizeof(buf), f)) {
		char *s = trim(buf), *eq, look[600];
		line++;
		if (!*s || *s == ';' || *s == '#')
			continue;
		if (*s == '[') {
			char *end = strchr(s, ']');
			if (!end) {
				ld->err[0] = '\0';
				snprintf(ld->err, ld->errlen, "%s:%u: section header without ']'", ld->path, line);
				return -1;
			}
			*end = '\0';
			snprintf(sec, sizeof(sec), "%s", trim(s + 1));
			lower(sec);
			snprintf(look, sizeof(look), "%s", sec);
		} else if ((eq = strchr(s, '='))) {
			*eq = '\0';
			char *k = trim(s);
			lower(k);
			snprintf(look, sizeof(look), "%s:%s", sec, k);
		} else {
			snprintf(ld->err, ld->errlen, "%s:%u: expected 'key = value' or '[section]'", ld->path, line);
			return -1;
		}
		for (size_t i = 0; i < ld->npos; i++) {
			if (strcmp(ld->pos[i].key, look) == 0) {
				snprintf(ld->err, ld->errlen, "%s:%u: %s given twice (first at line %u)",
				    ld->path, line, look, ld->pos[i].line);
				return -1;
			}
		}
		struct pos *np = realloc(ld->pos, (ld->npos + 1) * sizeof(*np));
		if (!np)
			fatalx("config: out of memory");
		ld->pos = np;
		ld->pos[ld->npos].key = xstrdup(look);
		ld->pos[ld->npos++].line = line;
	}
	return 0;
}

static int
parse_bool(const char *v, bool *out)
{
	static const char *yes[] = { "yes", "true", "on", "1" }, *no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0)
			return *out = true, 0;
		if (strcasecmp(v, no[i]) == 0)
			return *out = false, 0;
	}
	return -1;
}

static void
set_value(struct loader *ld, const char *sec, const struct conf_key *k, const char *v, void *base)
{
	char *field = (char *)base + k->off;
	const char *why = NULL;
	uint64_t n;
	int i;

	switch (k->type) {
	case K_STR:
		free(*(char **)field);
		*(char **)field = xstrdup(v);
		return;
	case K_BOOL:
		if (parse_bool(v, (bool *)field) < 0)
			fail(ld, sec, k->name, "'%s' is not yes or no", v);
		return;
	case K_LEVEL:
		if ((i = log_level_parse(v)) < 0)
			fail(ld, sec, k->name, "'%s' is not a log level (%s)", v, k->help);
		*(int *)field = i;
		return;
	case K_FACILITY:
		if ((i = log_facility_parse(v)) < 0)
			fail(ld, sec, k->name, "'%s' is not a syslog facility", v);
		*(int *)field = i;
		return;
	case K_TLS:
		if (strcasecmp(v, "none") == 0)
			*(int *)field = TLS_NONE;
		else if (strcasecmp(v, "starttls") == 0)
			*(int *)field = TLS_STARTTLS;
		else if (strcasecmp(v, "smtps") == 0)
			*(int *)field = TLS_SMTPS;
		else if (strcasecmp(v, "opportunistic") == 0)
			*(int *)field = TLS_OPPORTUNISTIC;
		else
			fail(ld, sec, k->name, "'%s' is not none, starttls, smtps or opportunistic", v);
		return;
	case K_WINDOW: {
		struct send_window *w = (struct send_window *)field;
		int fh, fm, th, tm, used = 0;
		if (!*v) {
			w->from = w->to = -1;
			return;
		}
		if (sscanf(v, "%2d:%2d-%2d:%2d%n", &fh, &fm, &th, &tm, &used) != 4 || v[used] ||
		    fh > 24 || th > 24 || fm > 59 || tm > 59 || fh < 0 || th < 0 || fm < 0 || tm < 0 ||
		    fh * 60 + fm == th * 60 + tm) {
			fail(ld, sec, k->name, "'%s' is not HH:MM-HH:MM (two different times)", v);
			return;
		}
		w->from = fh * 60 + fm;
		w->to = th * 60 + tm;
		return;
	}
	case K_UINT:
	case K_DURATION:
	case K_SIZE:
		break;
	}
	if (k->type == K_UINT) {
		char *end;
		errno = 0;
		n = strtoull(v, &end, 10);
		if (!isdigit((unsigned char)*v) || *end || errno)
			why = "not a whole number";
	} else if (k->type == K_DURATION)
		duration_parse(v, &n, &why);
	else
		size_parse(v, &n, &why);
	if (!why && (n < k->min || n > k->max))
		why = "out of range";
	if (why) {
		fail(ld, sec, k->name, "'%s': %s (%s)", v, why, k->help);
		return;
	}
	if (k->type == K_UINT)
		*(unsigned *)field = (unsigned)n;
	else
		*(uint64_t *)field = n;
}

/* Apply one section: every key present must be in the table; absent keys
 * take the table's default unless it is NULL (inherited). */
static void
apply_section(struct loader *ld, dictionary *d, const char *sec,
    const struct conf_key *tab, void *base, bool defaults)
{
	int n = d ? iniparser_getsecnkeys(d, sec) : 0;
	const char **keys = n > 0 ? calloc((size_t)n, sizeof(*keys)) : NULL;
	size_t seclen = strlen(sec);

	if (n > 0 && iniparser_getseckeys(d, sec, keys)) {
		for (int i = 0; i < n; i++) {
			const char *key = keys[i] + seclen + 1;
			const struct conf_key *k;
			for (k = tab; k->name; k++)
				if (strcmp(k->name, key) == 0)
					break;
			if (!k->name)
				fail(ld, sec, key, "unknown key");
		}
	}
	free(keys);
	for (const struct conf_key *k = tab; k->name; k++) {
		char full[300];
		snprintf(full, sizeof(full), "%s:%s", sec, k->name);
		const char *v = d ? iniparser_getstring(d, full, NULL) : NULL;
		if (v)
			set_value(ld, sec, k, v, base);
		else if (defaults && k->def)
			set_value(ld, sec, k, k->def, base);
	}
}

static void
free_strings(const struct conf_key *tab, void *base)
{
	for (const struct conf_key *k = tab; k->name; k++)
		if (k->type == K_STR)
			free(*(char **)((char *)base + k->off));
}

static bool
valid_name(const char *s)
{
	if (!*s || strlen(s) >= 64)
		return false;
	for (; *s; s++)
		if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '_' && *s != '-')
			return false;
	return true;
}

static int
hex_decode(const char *hex, unsigned char *out, size_t outlen)
{
	if (strlen(hex) != outlen * 2)
		return -1;
	for (size_t i = 0; i < outlen; i++) {
		unsigned v;
		if (!isxdigit((unsigned char)hex[2 * i]) || !isxdigit((unsigned char)hex[2 * i + 1]) ||
		    sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (unsigned char)v;
	}
	return 0;
}

/*
 * Whether http_listen ("host:port", "[v6]:port") names a loopback address.
 * Only literal addresses are judged here, so that the refusal carries the
 * file and line and --check-config finds it; a host name is resolved and
 * judged when the gateway binds (gateway/http.c), which refuses it too.
 */
static bool
listen_is_loopback(const char *v)
{
	const char *colon = strrchr(v, ':');
	unsigned char a[16];
	char host[64];

	if (!colon || colon == v)
		return true;	/* not host:port: http.c says what is wrong */
	if (*v == '[' && colon[-1] == ']')
		snprintf(host, sizeof(host), "%.*s", (int)(colon - v - 2), v + 1);
	else
		snprintf(host, sizeof(host), "%.*s", (int)(colon - v), v);
	if (inet_pton(AF_INET, host, a) == 1)
		return a[0] == 127;
	if (inet_pton(AF_INET6, host, a) == 1)
		return memcmp(a, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16) == 0 ||
		    (memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0 && a[12] == 127);
	return true;
}

static void
check_charset(struct loader *ld, const char *sec, const char *v)
{
	if (strcasecmp(v, "utf-8") != 0 && strcasecmp(v, "iso-2022-jp") != 0)
		fail(ld, sec, "charset", "'%s' is not utf-8 or iso-2022-jp", v);
}

static void
load_dkim(struct loader *ld, dictionary *d, const char *sec, struct hato_config *c)
{
	struct dkim_conf *k;

	c->dkims = realloc(c->dkims, (c->ndkims + 1) * sizeof(*c->dkims));
	if (!c->dkims)
		fatalx("config: out of memory");
	k = &c->dkims[c->ndkims++];
	memset(k, 0, sizeof(*k));
	snprintf(k->name, sizeof(k->name), "%s", sec + strlen("dkim "));
	apply_section(ld, d, sec, dkim_keys, k, true);
	if (!ld->failed && (!*k->domain || !*k->selector || !*k->key_file))
		fail(ld, sec, NULL, "a dkim section needs domain, selector and key_file");
	if (!ld->failed)
		lower(k->domain);
}

static void
load_relay(struct loader *ld, dictionary *d, const char *sec, struct hato_config *c)
{
	struct relay_conf *r;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *ai;
	char port[16];
	int rc;

	c->relays = realloc(c->relays, (c->nrelays + 1) * sizeof(*c->relays));
	if (!c->relays)
		fatalx("config: out of memory");
	r = &c->relays[c->nrelays++];
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", sec + strlen("relay "));
	r->lim = c->limits;
	apply_section(ld, d, sec, relay_keys, r, true);
	if (!ld->failed)
		check_charset(ld, sec, r->charset);
	if (!ld->failed)
		parse_intervals(ld, sec, "retry_intervals", r->retry.intervals, &r->retry.ms, &r->retry.n);
	if (ld->failed)
		return;
	if (!*r->host) {
		fail(ld, sec, NULL, "relay needs a host");
		return;
	}
	if (*r->auth_user && !*r->auth_password_file) {
		fail(ld, sec, "auth_password_file", "auth_user needs a password file");
		return;
	}
	if (*r->auth_user && r->tls == TLS_NONE && !r->auth_without_tls) {
		fail(ld, sec, "auth_user", "AUTH over a connection in clear: set tls, or auth_without_tls = yes");
		return;
	}
	if (*r->auth_password_file && !ld->running) {
		char why[512];
		if (!(r->auth_password = secret_file_read(r->auth_password_file, why, sizeof(why)))) {
			fail(ld, sec, "auth_password_file", "%s", why);
			return;
		}
	} else if (*r->auth_password_file) {
		const struct relay_conf *old = config_relay(ld->running, r->name);
		if (!old || !old->auth_password || strcmp(old->auth_password_file, r->auth_password_file) != 0) {
			fail(ld, sec, "auth_password_file", "a new password file needs a restart");
			return;
		}
		r->auth_password = xstrdup(old->auth_password);
	}
	/* Verification off is said once, loudly, at every start and reload. */
	if (r->tls != TLS_NONE && !r->verify)
		log_warn("%s: [%s] verify = no: the relay's certificate is not checked", ld->path, sec);
	/* Resolved once here, at start-up or reload, never on the event loop. */
	snprintf(port, sizeof(port), "%u", r->port);
	if ((rc = getaddrinfo(r->host, port, &hints, &ai)) != 0) {
		fail(ld, sec, "host", "cannot resolve '%s': %s", r->host, gai_strerror(rc));
		return;
	}
	memcpy(&r->addr, ai->ai_addr, ai->ai_addrlen);
	r->addrlen = ai->ai_addrlen;
	freeaddrinfo(ai);
}

static void
load_pace(struct loader *ld, dictionary *d, const char *sec, struct hato_config *c)
{
	struct pace_conf *p;

	c->paces = realloc(c->paces, (c->npaces + 1) * sizeof(*c->paces));
	if (!c->paces)
		fatalx("config: out of memory");
	p = &c->paces[c->npaces++];
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", sec + strlen("pace "));
	p->lim = c->limits;
	apply_section(ld, d, sec, pace_keys, p, true);
	if (!ld->failed)
		check_charset(ld, sec, p->charset);
	if (!ld->failed)
		parse_intervals(ld, sec, "retry_intervals", p->retry.intervals, &p->retry.ms, &p->retry.n);
	/* One queue serves every domain of the policy, so it needs one place
	 * to send to: a relay, or the MX hosts of one domain (au's domains
	 * share KDDI's exchangers). */
	if (!ld->failed && !*p->relay == !*p->mx_domain)
		fail(ld, sec, NULL, "a pace policy needs either relay or mx_domain");
	if (!ld->failed && p->lim.messages && !p->lim.interval_ms)
		fail(ld, sec, "interval", "a pace with messages needs an interval");
}

/* A comma- or space-separated list of addresses, lower-cased. */
static void
address_list(struct loader *ld, const char *sec, const char *key, const char *raw,
    char ***out, size_t *n)
{
	char *list = xstrdup(raw), *tok, *save = NULL;

	for (tok = strtok_r(list, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		const char *at = strchr(tok, '@');
		if (!at || at == tok || !at[1] || strchr(at + 1, '@')) {
			fail(ld, sec, key, "'%s' is not an address", tok);
			break;
		}
		if (!(*out = realloc(*out, (*n + 1) * sizeof(char *))))
			fatalx("config: out of memory");
		(*out)[*n] = xstrdup(tok);
		lower((*out)[(*n)++]);
	}
	free(list);
}

static void
free_list(char **list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

/* auth, from and rehearsal of a submitter; the token is checked after. */
static void
load_submitter_auth(struct loader *ld, const char *sec, struct hato_config *c, struct submitter_conf *s)
{
	if (strcasecmp(s->auth_raw, "token") == 0)
		s->auth = SUBMITTER_AUTH_TOKEN;
	else if (strcasecmp(s->auth_raw, "authres") == 0)
		s->auth = SUBMITTER_AUTH_AUTHRES;
	else if (strcasecmp(s->auth_raw, "token-or-authres") == 0)
		s->auth = SUBMITTER_AUTH_EITHER;
	else {
		fail(ld, sec, "auth", "'%s' is not token, authres or token-or-authres", s->auth_raw);
		return;
	}
	/* Without a trusted id every Authentication-Results is a stranger's. */
	if (s->auth != SUBMITTER_AUTH_TOKEN && !*c->authserv_id)
		fail(ld, sec, "auth", "'%s' needs [intake] authserv_id (the local MTA's id)", s->auth_raw);
	address_list(ld, sec, "from", s->from_raw, &s->froms, &s->nfrom);
	address_list(ld, sec, "rehearsal", s->rehearsal_raw, &s->rehearsal, &s->nrehearsal);
}

static void
load_submitter(struct loader *ld, dictionary *d, const char *sec, struct hato_config *c)
{
	struct submitter_conf *s;
	char *list, *tok, *save = NULL;

	c->submitters = realloc(c->submitters, (c->nsubmitters + 1) * sizeof(*c->submitters));
	if (!c->submitters)
		fatalx("config: out of memory");
	s = &c->submitters[c->nsubmitters++];
	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%s", sec + strlen("submitter "));
	apply_section(ld, d, sec, submitter_keys, s, true);
	if (ld->failed)
		return;
	list = xstrdup(s->address);
	for (tok = strtok_r(list, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		if (!strchr(tok, '@')) {
			fail(ld, sec, "address", "'%s' is not an address", tok);
			break;
		}
		s->addresses = realloc(s->addresses, (s->naddr + 1) * sizeof(char *));
		if (!s->addresses)
			fatalx("config: out of memory");
		s->addresses[s->naddr] = xstrdup(tok);
		lower(s->addresses[s->naddr++]);
	}
	free(list);
	if (!ld->failed && s->naddr == 0)
		fail(ld, sec, "address", "a submitter needs at least one address");
	if (!ld->failed && *s->token_hex) {
		if (hex_decode(s->token_hex, s->token_sha256, sizeof(s->token_sha256)) < 0)
			fail(ld, sec, "token_sha256", "not 64 hexadecimal digits");
		s->has_token = true;
	}
	if (!ld->failed)
		load_submitter_auth(ld, sec, c, s);
	if (!ld->failed && !s->has_token && s->auth != SUBMITTER_AUTH_AUTHRES)
		fail(ld, sec, "token_sha256", "a submitter needs a token (hatoctl token makes one)");
}

static void
load_multi(struct loader *ld, dictionary *d, struct hato_config *c)
{
	int n = iniparser_getnsec(d);
	static const char *fixed[] = { "hato", "log", "db", "intake", "gateway", "retry", "cleaning", "limits",
		"doctor" };

	for (int i = 0; i < n && !ld->failed; i++) {
		const char *sec = iniparser_getsecname(d, i);
		const char *sp = strchr(sec, ' ');
		bool known = false;

		for (size_t j = 0; j < sizeof(fixed) / sizeof(fixed[0]); j++)
			known |= strcmp(sec, fixed[j]) == 0;
		if (known)
			continue;
		if (!sp) {
			fail(ld, sec, NULL, "unknown section");
			continue;
		}
		if (!valid_name(sp + 1)) {
			fail(ld, sec, NULL, "bad name '%s' (letters, digits, '_' and '-')", sp + 1);
			continue;
		}
		if (strncmp(sec, "relay ", 6) == 0)
			load_relay(ld, d, sec, c);
		else if (strncmp(sec, "pace ", 5) == 0)
			load_pace(ld, d, sec, c);
		else if (strncmp(sec, "submitter ", 10) == 0)
			load_submitter(ld, d, sec, c);
		else if (strncmp(sec, "dkim ", 5) == 0)
			load_dkim(ld, d, sec, c);
		else
			fail(ld, sec, NULL, "unknown section");
	}
}

static void
parse_intervals(struct loader *ld, const char *sec, const char *key, const char *raw,
    uint64_t **out, size_t *n)
{
	char *list = xstrdup(raw), *tok, *save = NULL;
	const char *why = NULL;
	uint64_t ms = 0;

	for (tok = strtok_r(list, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
		why = NULL;
		if (duration_parse(tok, &ms, &why) < 0 || ms == 0) {
			fail(ld, sec, key, "'%s': %s", tok, why ? why : "a wait of zero");
			break;
		}
		*out = realloc(*out, (*n + 1) * sizeof(uint64_t));
		if (!*out)
			fatalx("config: out of memory");
		(*out)[(*n)++] = ms;
	}
	free(list);
}

static void
load_retry(struct loader *ld, struct hato_config *c)
{
	parse_intervals(ld, "retry", "intervals", c->retry_intervals_raw, &c->retry_ms, &c->nretry);
	if (!ld->failed && c->nretry == 0)
		fail(ld, "retry", "intervals", "at least one interval is needed");
}

/* Every relay and pace a route names must exist. */
static void
check_routes(struct loader *ld, struct hato_config *c)
{
	char err[512], *path;
	const char *dir_end = strrchr(ld->path, '/');
	const struct route *r;

	if (c->routes_path[0] != '/' && dir_end) {
		if (asprintf(&path, "%.*s/%s", (int)(dir_end - ld->path), ld->path, c->routes_path) < 0)
			fatalx("config: out of memory");
		free(c->routes_path);
		c->routes_path = path;
	}
	if (!(c->routes = routes_load(c->routes_path, err, sizeof(err)))) {
		fail(ld, "gateway", "routes", "%s", err);
		return;
	}
	for (size_t i = 0; (r = routes_at(c->routes, i)); i++) {
		if (r->kind == ROUTE_RELAY && !config_relay(c, r->name))
			fail(ld, NULL, NULL, "%s:%zu: relay '%s' is not defined (add [relay %s] to %s)",
			    r->file, r->line, r->name, r->name, ld->path);
		if (r->kind == ROUTE_PACE && !config_pace(c, r->name))
			fail(ld, NULL, NULL, "%s:%zu: pace policy '%s' is not defined (add [pace %s] to %s)",
			    r->file, r->line, r->name, r->name, ld->path);
	}
	for (size_t i = 0; i < c->npaces; i++)
		if (*c->paces[i].relay && !config_relay(c, c->paces[i].relay)) {
			char sec[80];
			snprintf(sec, sizeof(sec), "pace %s", c->paces[i].name);
			fail(ld, sec, "relay", "relay '%s' is not defined", c->paces[i].relay);
		}
}

static char ini_error[512];

/* iniparser's error callback: it passes its own format strings. */
static int ini_errback(const char *, ...) __attribute__((format(printf, 1, 2)));

static int
ini_errback(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(ini_error, sizeof(ini_error), fmt, ap);
	va_end(ap);
	return n;
}

static int config_load_ex(const char *path, const struct hato_config *running,
    struct hato_config **out, char *err, size_t errlen);

int
config_load(const char *path, struct hato_config **out, char *err, size_t errlen)
{
	return config_load_ex(path, NULL, out, err, errlen);
}

int
config_reload(const char *path, const struct hato_config *running, struct hato_config **out,
    char *err, size_t errlen)
{
	return config_load_ex(path, running, out, err, errlen);
}

/* running: a reload; the database settings, its password and the node
 * name stay those of the running process (the secrets file may not be
 * readable any more once root is dropped, and need not be). */
static int
config_load_ex(const char *path, const struct hato_config *running,
    struct hato_config **out, char *err, size_t errlen)
{
	struct loader ld = { .path = path, .err = err, .errlen = errlen, .running = running };
	struct hato_config *c;
	dictionary *d = NULL;
	FILE *f;

	*out = NULL;
	if (!(f = fopen(path, "r"))) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (scan_positions(&ld, f) < 0) {
		fclose(f);
		goto fail;
	}
	fclose(f);
	ini_error[0] = '\0';
	iniparser_set_error_callback(ini_errback);
	if (!(d = iniparser_load(path))) {
		snprintf(err, errlen, "%s: %s", path, *ini_error ? trim(ini_error) : "cannot parse");
		goto fail;
	}
	if (!(c = calloc(1, sizeof(*c))))
		fatalx("config: out of memory");
	c->path = xstrdup(path);
	apply_section(&ld, d, "hato", hato_keys, c, true);
	apply_section(&ld, d, "log", log_keys, c, true);
	apply_section(&ld, d, "db", db_keys, c, true);
	apply_section(&ld, d, "intake", intake_keys, c, true);
	apply_section(&ld, d, "gateway", gateway_keys, c, true);
	apply_section(&ld, d, "retry", retry_keys, c, true);
	apply_section(&ld, d, "cleaning", cleaning_keys, c, true);
	apply_section(&ld, d, "limits", limits_keys, &c->limits, true);
	apply_section(&ld, d, "doctor", doctor_keys, c, true);
	if (!ld.failed)
		check_charset(&ld, "gateway", c->charset);
	if (!ld.failed && c->mx_tls != TLS_NONE && c->mx_tls != TLS_OPPORTUNISTIC)
		fail(&ld, "gateway", "mx_tls", "MX delivery takes none or opportunistic (require TLS per domain with mx_tls_require)");
	if (!ld.failed && !c->http_public && *c->http_listen && !listen_is_loopback(c->http_listen))
		fail(&ld, "gateway", "http_listen", "'%s' is not a loopback address (set http_public = yes to serve it to others)",
		    c->http_listen);
	if (!ld.failed)
		load_retry(&ld, c);
	if (!ld.failed)
		load_multi(&ld, d, c);
	if (!ld.failed)
		check_routes(&ld, c);
	if (!ld.failed && running && running->secret) {
		if (!(c->secret = malloc(running->secret_len)))
			fatalx("config: out of memory");
		memcpy(c->secret, running->secret, running->secret_len);
		c->secret_len = running->secret_len;
	} else if (!ld.failed && *c->secret_file) {
		char why[512];
		if (!(c->secret = (unsigned char *)secret_file_read(c->secret_file, why, sizeof(why))))
			fail(&ld, "hato", "secret_file", "%s", why);
		else if ((c->secret_len = strlen((char *)c->secret)) < 32)
			fail(&ld, "hato", "secret_file", "%s: at least 32 bytes are needed (openssl rand -hex 32)",
			    c->secret_file);
	}
	if (!ld.failed && running) {
		free(c->node);
		c->node = xstrdup(running->node);
		if (running->db_password)
			c->db_password = xstrdup(running->db_password);
	} else if (!ld.failed && *c->db_password_file) {
		char why[512];
		if (!(c->db_password = secret_file_read(c->db_password_file, why, sizeof(why))))
			fail(&ld, "db", "password_file", "%s", why);
	}
	if (!ld.failed && !*c->node) {
		char host[200];
		if (gethostname(host, sizeof(host)) < 0)
			snprintf(host, sizeof(host), "hato");
		host[sizeof(host) - 1] = '\0';
		free(c->node);
		if (asprintf(&c->node, "%.40s:%d", host, (int)getpid()) < 0)
			fatalx("config: out of memory");
	}
	iniparser_freedict(d);
	for (size_t i = 0; i < ld.npos; i++)
		free(ld.pos[i].key);
	free(ld.pos);
	if (ld.failed) {
		config_free(c);
		return -1;
	}
	*out = c;
	return 0;
fail:
	for (size_t i = 0; i < ld.npos; i++)
		free(ld.pos[i].key);
	free(ld.pos);
	return -1;
}

void
config_free(struct hato_config *c)
{
	if (!c)
		return;
	free_strings(hato_keys, c);
	free_strings(log_keys, c);
	free_strings(db_keys, c);
	free_strings(intake_keys, c);
	free_strings(gateway_keys, c);
	free_strings(retry_keys, c);
	free_strings(cleaning_keys, c);
	free_strings(doctor_keys, c);
	for (size_t i = 0; i < c->nrelays; i++) {
		free_strings(relay_keys, &c->relays[i]);
		free(c->relays[i].retry.ms);
		if (c->relays[i].auth_password) {
			explicit_bzero(c->relays[i].auth_password, strlen(c->relays[i].auth_password));
			free(c->relays[i].auth_password);
		}
	}
	for (size_t i = 0; i < c->npaces; i++) {
		free_strings(pace_keys, &c->paces[i]);
		free(c->paces[i].retry.ms);
	}
	for (size_t i = 0; i < c->nsubmitters; i++) {
		struct submitter_conf *s = &c->submitters[i];
		free_strings(submitter_keys, s);
		for (size_t j = 0; j < s->naddr; j++)
			free(s->addresses[j]);
		free(s->addresses);
		free_list(s->froms, s->nfrom);
		free_list(s->rehearsal, s->nrehearsal);
	}
	for (size_t i = 0; i < c->ndkims; i++)
		free_strings(dkim_keys, &c->dkims[i]);
	free(c->dkims);
	free(c->relays);
	free(c->paces);
	free(c->submitters);
	free(c->retry_ms);
	if (c->db_password) {
		explicit_bzero(c->db_password, strlen(c->db_password));
		free(c->db_password);
	}
	if (c->secret) {
		explicit_bzero(c->secret, c->secret_len);
		free(c->secret);
	}
	routes_free(c->routes);
	free(c->path);
	free(c);
}

const struct relay_conf *
config_relay(const struct hato_config *c, const char *name)
{
	for (size_t i = 0; i < c->nrelays; i++)
		if (strcmp(c->relays[i].name, name) == 0)
			return &c->relays[i];
	return NULL;
}

const struct pace_conf *
config_pace(const struct hato_config *c, const char *name)
{
	for (size_t i = 0; i < c->npaces; i++)
		if (strcmp(c->paces[i].name, name) == 0)
			return &c->paces[i];
	return NULL;
}

const struct dkim_conf *
config_dkim(const struct hato_config *c, const char *domain)
{
	for (size_t i = 0; i < c->ndkims; i++)
		if (strcasecmp(c->dkims[i].domain, domain) == 0)
			return &c->dkims[i];
	return NULL;
}

const struct submitter_conf *
config_submitter_by_address(const struct hato_config *c, const char *addr)
{
	for (size_t i = 0; i < c->nsubmitters; i++)
		for (size_t j = 0; j < c->submitters[i].naddr; j++)
			if (strcasecmp(c->submitters[i].addresses[j], addr) == 0)
				return &c->submitters[i];
	return NULL;
}

uint64_t
config_retry_delay_ms(const struct hato_config *c, unsigned attempts)
{
	if (attempts == 0)
		return 0;
	if (attempts > c->nretry)
		return c->retry_ms[c->nretry - 1];
	return c->retry_ms[attempts - 1];
}

void
config_dest(const struct hato_config *c, const char *dest,
    const struct relay_conf **relay, const struct pace_conf **pace)
{
	*relay = strncmp(dest, "relay:", 6) == 0 ? config_relay(c, dest + 6) : NULL;
	*pace = strncmp(dest, "pace:", 5) == 0 ? config_pace(c, dest + 5) : NULL;
}

void
config_retry_for(const struct hato_config *c, const char *dest, struct retry_policy *out)
{
	const struct retry_override *o = NULL;
	const struct relay_conf *r;
	const struct pace_conf *p;

	config_dest(c, dest, &r, &p);
	if (r)
		o = &r->retry;
	else if (p)
		o = &p->retry;
	out->ms = o && o->n ? o->ms : c->retry_ms;
	out->n = o && o->n ? o->n : c->nretry;
	out->max_attempts = o && o->max_attempts ? o->max_attempts : c->max_attempts;
	out->max_age_ms = o && o->max_age_ms ? o->max_age_ms : c->max_age_ms;
}

uint64_t
retry_policy_delay_ms(const struct retry_policy *p, unsigned attempts)
{
	if (attempts == 0 || p->n == 0)
		return 0;
	return p->ms[(attempts <= p->n ? attempts : p->n) - 1];
}

const char *
config_default_path(void)
{
	const char *p = getenv("HATO_CONFIG");

	return p && *p ? p : "/etc/hato/hato.ini";
}
