#ifndef HATO_CTL_JOBCTL_H
#define HATO_CTL_JOBCTL_H
/*
 * jobctl: hatoctl job approve|pause|resume|cancel|reschedule N.
 */
#include <stdbool.h>

struct hato_config;
struct store;

/* verb is one of the job control verbs. */
bool jobctl_verb(const char *verb);
/* argv[0] is the verb, argv[1] the job, reschedule's argv[2] the time.
 * Returns the exit code: 0 done, 1 not possible now (one line on stderr
 * says why), 2 usage, 69 the database is unavailable. */
int jobctl_cmd(struct store *st, const struct hato_config *cf, int argc, char **argv);

#endif
