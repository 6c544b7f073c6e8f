#ifndef HATO_CORE_LOG_H
#define HATO_CORE_LOG_H
/*
 * log: one line per event, to stderr or syslog. The level is checked before
 * anything is formatted. Lines are "key=value" after a short message, with
 * the job and delivery ids, so that one grep follows one delivery.
 */
#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_DEBUG_L = 0, LOG_INFO_L, LOG_NOTICE_L, LOG_WARNING_L, LOG_ERROR_L };

void log_init(const char *ident, bool use_syslog, int facility);
void log_set_level(enum log_level level);
/* Lines that would go to stderr go to f instead (NULL: stderr again). */
#include <stdio.h>
void log_to_stream(FILE *f);
int log_level_parse(const char *s);	/* -1 when unknown */
int log_facility_parse(const char *s);	/* -1 when unknown */
bool log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
_Noreturn void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Writes s as a double-quoted value safe for one log line (controls and
 * quotes escaped, cut to fit). Returns buf. */
const char *log_quote(char *buf, size_t size, const char *s);

#define LOG_AT(lvl, ...) do { if (log_enabled(lvl)) log_msg(lvl, __VA_ARGS__); } while (0)
#define log_debug(...) LOG_AT(LOG_DEBUG_L, __VA_ARGS__)
#define log_info(...) LOG_AT(LOG_INFO_L, __VA_ARGS__)
#define log_notice(...) LOG_AT(LOG_NOTICE_L, __VA_ARGS__)
#define log_warn(...) LOG_AT(LOG_WARNING_L, __VA_ARGS__)
#define log_error(...) LOG_AT(LOG_ERROR_L, __VA_ARGS__)

#endif
