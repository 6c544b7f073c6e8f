/*
 * duration: number-with-unit parsers for the configuration, and the two
 * clocks. Overflow and trailing garbage are errors, never silently cut.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/duration.h"

struct unit {
	const char *name;
	uint64_t mult;
};

static int
scaled_parse(const char *s, const struct unit *units, uint64_t *out, const char **why)
{
	char *end;
	unsigned long long v;

	while (isspace((unsigned char)*s))
		s++;
	if (!isdigit((unsigned char)*s)) {
		*why = "expected a number";
		return -1;
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno) {
		*why = "number too large";
		return -1;
	}
	size_t ulen = strlen(end);
	while (ulen && isspace((unsigned char)end[ulen - 1]))
		ulen--;
	for (const struct unit *u = units; u->name; u++) {
		if (strlen(u->name) == ulen && strncasecmp(end, u->name, ulen) == 0) {
			if (u->mult && v > UINT64_MAX / u->mult) {
				*why = "number too large";
				return -1;
			}
			*out = v * u->mult;
			return 0;
		}
	}
	*why = "unknown unit";
	return -1;
}

int
duration_parse(const char *s, uint64_t *ms, const char **why)
{
	static const struct unit units[] = {
		{ "", 1000 }, { "ms", 1 }, { "s", 1000 }, { "m", 60000 },
		{ "h", 3600000 }, { "d", 86400000 }, { NULL, 0 },
	};
	return scaled_parse(s, units, ms, why);
}

int
size_parse(const char *s, uint64_t *bytes, const char **why)
{
	static const struct unit units[] = {
		{ "", 1 }, { "b", 1 }, { "k", 1024 }, { "m", 1024 * 1024 },
		{ "g", 1024ULL * 1024 * 1024 }, { NULL, 0 },
	};
	return scaled_parse(s, units, bytes, why);
}

uint64_t
clock_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t
clock_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
