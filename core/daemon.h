#ifndef HATO_CORE_DAEMON_H
#define HATO_CORE_DAEMON_H
/*
 * daemon: start-up plumbing shared by the daemons: secrets files, dropping
 * root, and signals turned into loop events.
 */
#include <stddef.h>
#include <event2/event.h>

/* Read a secrets file: refused when group or others may read it or when it
 * is not a regular file. Trailing CR/LF are cut. Returns a malloc'd string
 * or NULL with the reason in err. */
char *secret_file_read(const char *path, char *err, size_t errlen);

/* When running as root: switch to user (groups too). Refuses to go on as
 * root without a user. Returns 0 or -1 with the reason. */
int daemon_drop_root(const char *user, char *err, size_t errlen);

/* SIGTERM/SIGINT call on_stop, SIGHUP calls on_reload (may be NULL);
 * SIGPIPE is ignored. The events are returned for freeing at exit. */
struct daemon_signals;
struct daemon_signals *daemon_signals(struct event_base *base,
    void (*on_stop)(void *), void (*on_reload)(void *), void *arg);
void daemon_signals_free(struct daemon_signals *s);

#endif
