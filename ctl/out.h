#ifndef HATO_CTL_OUT_H
#define HATO_CTL_OUT_H
/*
 * out: how hatoctl prints. Aligned text for people, JSON (--json) for
 * scripts; progress bars only on a terminal. Also the exit codes and the
 * small helpers every hatoctl command shares.
 *
 * The JSON writer keeps a stack of open arrays and objects and puts the
 * commas itself; strings are escaped per RFC 8259 and bytes that are not
 * UTF-8 become U+FFFD, so the output always parses.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct store;

/* Exit codes: documented in hatoctl help and hatoctl(8). */
enum {
	CTL_OK = 0,		/* done; every check passed */
	CTL_NOTFOUND = 1,	/* not there, not right, or a check failed */
	CTL_USAGE = 2,		/* bad command line */
	CTL_UNAVAILABLE = 69,	/* the database (or DNS) cannot be reached: EX_UNAVAILABLE */
	CTL_CONFIG = 78,	/* the configuration does not load: EX_CONFIG */
};

void out_init(bool json);
bool out_json(void);
/* stdout is a terminal (progress bars, colour-free redraws). */
bool out_tty(void);

/* The JSON writer. key is NULL inside arrays and at the top. */
void j_array(const char *key);
void j_array_end(void);
void j_object(const char *key);
void j_object_end(void);
void j_str(const char *key, const char *v);
void j_u64(const char *key, uint64_t v);
void j_int(const char *key, long long v);
void j_num(const char *key, double v);
void j_bool(const char *key, bool v);
void j_null(const char *key);
/* A string as a JSON literal on f. */
void json_string(FILE *f, const char *s);

/* "[#####xx......]": sent, failed, the rest waiting, width cells. */
void out_bar(char *buf, size_t size, unsigned sent, unsigned failed, unsigned total, int width);
/* "1:02:03", "4:05" or "-" for a number of seconds (negative: unknown). */
void out_duration(char *buf, size_t size, double seconds);

/* Shared by the commands. */
int ctl_db_failed(struct store *st, const char *what);
int ctl_usage(void);
const char *ctl_option_value(int argc, char **argv, int *i, const char *name);
/* The stored form of an address, or -1 (said on stderr). */
int ctl_canonical_address(const char *in, char *out, size_t size);
/* Parse a positive decimal id; -1 (said on stderr) when it is not one. */
int ctl_parse_id(const char *s, const char *what, uint64_t *id);

#endif
