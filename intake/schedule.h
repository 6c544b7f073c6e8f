#ifndef HATO_INTAKE_SCHEDULE_H
#define HATO_INTAKE_SCHEDULE_H
/*
 * schedule: when a job's recipients are first due. Send-At sets the start
 * (default: now); Rate ("300/h", "20/min", "2/s") or Send-By (a time)
 * spreads the recipients evenly from there, so that one big DM does not
 * crowd out an urgent one: each destination sends its due deliveries in
 * the order they fall due, whatever their job. Pure: takes the parsed
 * values and the time, returns numbers or a specific error.
 */
#include <stddef.h>

struct submission;

struct schedule {
	double start;		/* Unix time of the first recipient */
	double spacing;		/* seconds between two recipients; 0: all at once */
};

/* Returns 0, or -1 with the reason ("Rate: ...", "Send-By: ...") in err. */
int schedule_plan(const struct submission *s, size_t nrcpt, double now, struct schedule *out,
    char *err, size_t errlen);

/* Parse "N/unit" into messages per second. 0, or -1 with why. */
int schedule_parse_rate(const char *s, double *per_second, const char **why);

#endif
