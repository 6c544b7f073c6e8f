/*
 * schedule: Send-At, Rate and Send-By turned into a start and a spacing
 * (see schedule.h). A Send-At in the past means now; a Send-By that is not
 * after the start is an error, and so is giving both Rate and Send-By.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "intake/intake.h"
#include "intake/schedule.h"
#include "intake/submission.h"

int
schedule_parse_rate(const char *s, double *per_second, const char **why)
{
	static const struct { const char *name; double secs; } units[] = {
		{ "s", 1 }, { "sec", 1 }, { "second", 1 }, { "min", 60 }, { "m", 60 }, { "minute", 60 },
		{ "h", 3600 }, { "hour", 3600 }, { "d", 86400 }, { "day", 86400 },
	};
	char *end;
	double n;

	while (isspace((unsigned char)*s))
		s++;
	errno = 0;
	n = strtod(s, &end);
	if (end == s || errno || n <= 0 || n > 1e6) {
		*why = "Rate: expected a number of messages per unit, like 300/h or 20/min";
		return -1;
	}
	while (isspace((unsigned char)*end))
		end++;
	if (*end++ != '/') {
		*why = "Rate: expected N/unit (s, min or h), like 300/h";
		return -1;
	}
	while (isspace((unsigned char)*end))
		end++;
	size_t len = strlen(end);
	while (len && isspace((unsigned char)end[len - 1]))
		len--;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strlen(units[i].name) == len && strncasecmp(end, units[i].name, len) == 0) {
			*per_second = n / units[i].secs;
			return 0;
		}
	*why = "Rate: the unit must be s, min or h";
	return -1;
}

int
schedule_plan(const struct submission *s, size_t nrcpt, double now, struct schedule *out,
    char *err, size_t errlen)
{
	const char *why;
	double rate, by;

	out->start = now;
	out->spacing = 0;
	if (s->send_at) {
		if (intake_parse_send_at(s->send_at, &out->start, &why) < 0) {
			snprintf(err, errlen, "%s", why);
			return -1;
		}
		if (out->start < now)
			out->start = now;
	}
	if (s->rate && s->send_by) {
		snprintf(err, errlen, "give Rate or Send-By, not both");
		return -1;
	}
	if (s->rate) {
		if (schedule_parse_rate(s->rate, &rate, &why) < 0) {
			snprintf(err, errlen, "%s", why);
			return -1;
		}
		out->spacing = 1.0 / rate;
	} else if (s->send_by) {
		if (intake_parse_send_at(s->send_by, &by, &why) < 0) {
			snprintf(err, errlen, "Send-By: not a valid date and time (YYYY-MM-DD HH:MM)");
			return -1;
		}
		if (by <= out->start) {
			snprintf(err, errlen, "Send-By: must be after the start (%s)",
			    s->send_at ? "Send-At" : "now");
			return -1;
		}
		out->spacing = nrcpt > 1 ? (by - out->start) / (double)nrcpt : 0;
	}
	return 0;
}
