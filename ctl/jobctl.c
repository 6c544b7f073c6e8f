/*
 * jobctl: job control for operators and scripts. Each command is one
 * store call (one transaction on the locked job row) and prints one line
 * saying what it did ("job 12 paused: 840 deliveries held back, 3 in
 * flight"), or, with --json, one object. A command that is not possible
 * in the job's state ("job 12 is done") exits 1 with that line on stderr,
 * so that a script can tell "did nothing" from "failed".
 */
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf/config.h"
#include "ctl/jobctl.h"
#include "ctl/out.h"
#include "intake/intake.h"
#include "sql/store.h"

static const struct {
	const char *verb, *done;
} verbs[] = {
	{ "approve", "approved" }, { "pause", "paused" }, { "resume", "resumed" },
	{ "cancel", "cancelled" }, { "reschedule", "rescheduled" },
};

bool
jobctl_verb(const char *verb)
{
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (strcmp(verb, verbs[i].verb) == 0)
			return true;
	return false;
}

static const char *
done_word(const char *verb)
{
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (strcmp(verb, verbs[i].verb) == 0)
			return verbs[i].done;
	return verb;
}

/* approved_by: the operator's login name. */
static void
operator_name(char *buf, size_t size)
{
	struct passwd *pw = getpwuid(getuid());

	snprintf(buf, size, "hatoctl:%s", pw ? pw->pw_name : "?");
}

static int
run_verb(struct store *st, const char *verb, uint64_t id, double when, struct store_jobctl_result *r)
{
	char who[80];

	if (strcmp(verb, "approve") == 0) {
		operator_name(who, sizeof(who));
		return store_job_approve(st, id, NULL, who, r);
	}
	if (strcmp(verb, "pause") == 0)
		return store_job_pause(st, id, r);
	if (strcmp(verb, "resume") == 0)
		return store_job_resume(st, id, r);
	if (strcmp(verb, "cancel") == 0)
		return store_job_cancel(st, "hatoctl", id, r);
	return store_job_reschedule(st, id, when, r);
}

/* The line, with the new start time for approve and reschedule. */
static void
say(const char *verb, const struct store_jobctl_result *r, char *line, size_t size)
{
	size_t len;
	struct tm tm;
	time_t t = (time_t)r->send_at;
	char when[64];

	store_jobctl_describe(done_word(verb), r, line, size);
	if (r->status != JOBCTL_DONE || (strcmp(verb, "reschedule") != 0 && strcmp(verb, "approve") != 0))
		return;
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %z", localtime_r(&t, &tm));
	len = strlen(line);
	snprintf(line + len, size - len, ", starting %s", when);
}

static void
print_json(const char *verb, const struct store_jobctl_result *r, const char *line)
{
	static const char *status[] = { "done", "no-job", "state", "bad-code", "expired" };

	j_object(NULL);
	j_u64("job", r->job_id);
	j_str("command", verb);
	j_str("result", status[r->status]);
	j_str("state_before", r->state);
	j_u64("deliveries", r->changed);
	j_u64("in_flight", r->in_flight);
	j_str("message", line);
	j_object_end();
}

int
jobctl_cmd(struct store *st, const struct hato_config *cf, int argc, char **argv)
{
	struct store_jobctl_result r;
	const char *verb = argv[0], *why;
	double when = 0;
	char line[400];
	uint64_t id;
	int rc;

	/* Times without an offset are in the site's zone, as in Send-At. */
	setenv("TZ", cf->timezone, 1);
	tzset();
	if (argc != (strcmp(verb, "reschedule") == 0 ? 3 : 2))
		return ctl_usage();
	if (ctl_parse_id(argv[1], "job", &id) < 0)
		return CTL_USAGE;
	if (argc == 3 && intake_parse_send_at(argv[2], &when, &why) < 0) {
		fprintf(stderr, "hatoctl: %s: %s\n", argv[2], why);
		return CTL_USAGE;
	}
	/* A job's rows are locked by the gateways claiming and recording
	 * them: a lost lock conflict is rolled back whole, so try again. */
	for (int tries = 1; (rc = run_verb(st, verb, id, when, &r)) != STORE_OK; tries++)
		if (!store_conflict(st) || tries == 5)
			return ctl_db_failed(st, verb);
	say(verb, &r, line, sizeof(line));
	if (out_json())
		print_json(verb, &r, line);
	else
		fprintf(r.status == JOBCTL_DONE ? stdout : stderr, "%s%s\n",
		    r.status == JOBCTL_DONE ? "" : "hatoctl: ", line);
	return r.status == JOBCTL_DONE ? CTL_OK : CTL_NOTFOUND;
}
