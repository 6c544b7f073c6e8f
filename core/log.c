/*
 * log: the one log module. log_init() picks stderr or syslog; every line
 * carries a level and, on stderr, a UTC time stamp and the process name.
 * Logging never fails the caller: a line that does not fit is cut.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

static enum log_level cur_level = LOG_INFO_L;
static bool to_syslog;
static FILE *out;		/* NULL: stderr */
static char ident[32] = "hato";

static const char *level_names[] = { "debug", "info", "notice", "warning", "error" };
static const int level_prio[] = { LOG_DEBUG, LOG_INFO, LOG_NOTICE, LOG_WARNING, LOG_ERR };

void
log_init(const char *name, bool use_syslog, int facility)
{
	snprintf(ident, sizeof(ident), "%s", name);
	to_syslog = use_syslog;
	if (to_syslog)
		openlog(ident, LOG_PID | LOG_NDELAY, facility);
}

void
log_to_stream(FILE *f)
{
	out = f;
}

void
log_set_level(enum log_level level)
{
	cur_level = level;
}

int
log_level_parse(const char *s)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcasecmp(s, level_names[i]) == 0)
			return (int)i;
	if (strcasecmp(s, "warn") == 0)
		return LOG_WARNING_L;
	return -1;
}

int
log_facility_parse(const char *s)
{
	static const struct { const char *name; int fac; } facs[] = {
		{ "mail", LOG_MAIL }, { "daemon", LOG_DAEMON }, { "user", LOG_USER },
		{ "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 }, { "local2", LOG_LOCAL2 },
		{ "local3", LOG_LOCAL3 }, { "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 },
		{ "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
	};
	for (size_t i = 0; i < sizeof(facs) / sizeof(facs[0]); i++)
		if (strcasecmp(s, facs[i].name) == 0)
			return facs[i].fac;
	return -1;
}

bool
log_enabled(enum log_level level)
{
	return level >= cur_level;
}

static void log_vmsg(enum log_level, const char *, va_list) __attribute__((format(printf, 2, 0)));

static void
log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	char line[4096];
	struct timespec ts;
	struct tm tm;
	char when[32];

	vsnprintf(line, sizeof(line), fmt, ap);
	if (to_syslog) {
		syslog(level_prio[level], "%s: %s", level_names[level], line);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	/* One fprintf per line: stdio's lock keeps threads' lines whole. */
	fprintf(out ? out : stderr, "%s.%03ldZ %s[%d]: %s: %s\n", when, ts.tv_nsec / 1000000,
	    ident, (int)getpid(), level_names[level], line);
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_ERROR_L, fmt, ap);
	va_end(ap);
	exit(1);
}

const char *
log_quote(char *buf, size_t size, const char *s)
{
	size_t o = 0;

	if (size < 3) {
		if (size)
			buf[0] = '\0';
		return buf;
	}
	buf[o++] = '"';
	for (; s && *s && o + 5 < size; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
		} else
			buf[o++] = (char)c;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}
