/*
 * daemon: secrets files, privilege drop and signal events. Failures here
 * happen at start-up and are returned to main(), which refuses to start.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/daemon.h"

char *
secret_file_read(const char *path, char *err, size_t errlen)
{
	struct stat st;
	char *buf;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		close(fd);
		return NULL;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(err, errlen, "%s: readable by others (mode %03o); chmod 600 it",
		    path, (unsigned)(st.st_mode & 0777));
		close(fd);
		return NULL;
	}
	if (st.st_size > 65536) {
		snprintf(err, errlen, "%s: too large for a secret", path);
		close(fd);
		return NULL;
	}
	buf = malloc((size_t)st.st_size + 1);
	n = buf ? read(fd, buf, (size_t)st.st_size) : -1;
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	return buf;
}

int
daemon_drop_root(const char *user, char *err, size_t errlen)
{
	struct passwd *pw;

	if (geteuid() != 0)
		return 0;
	if (!user || !*user) {
		snprintf(err, errlen, "running as root: set [hato] user to the service user");
		return -1;
	}
	if (strcmp(user, "root") == 0)
		return 0;	/* the operator said so, in so many words */
	if (!(pw = getpwnam(user))) {
		snprintf(err, errlen, "[hato] user: no such user '%s'", user);
		return -1;
	}
	if (setgroups(1, &pw->pw_gid) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0) {
		snprintf(err, errlen, "cannot drop privileges to %s: %s", user, strerror(errno));
		return -1;
	}
	return 0;
}

struct daemon_signals {
	struct event *term, *intr, *hup;
	void (*on_stop)(void *);
	void (*on_reload)(void *);
	void *arg;
};

static void
on_signal(evutil_socket_t sig, short what, void *p)
{
	struct daemon_signals *s = p;

	(void)what;
	if (sig == SIGHUP) {
		if (s->on_reload)
			s->on_reload(s->arg);
	} else if (s->on_stop)
		s->on_stop(s->arg);
}

struct daemon_signals *
daemon_signals(struct event_base *base, void (*on_stop)(void *),
    void (*on_reload)(void *), void *arg)
{
	struct daemon_signals *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	signal(SIGPIPE, SIG_IGN);
	s->on_stop = on_stop;
	s->on_reload = on_reload;
	s->arg = arg;
	s->term = evsignal_new(base, SIGTERM, on_signal, s);
	s->intr = evsignal_new(base, SIGINT, on_signal, s);
	s->hup = evsignal_new(base, SIGHUP, on_signal, s);
	event_add(s->term, NULL);
	event_add(s->intr, NULL);
	event_add(s->hup, NULL);
	return s;
}

void
daemon_signals_free(struct daemon_signals *s)
{
	if (!s)
		return;
	event_free(s->term);
	event_free(s->intr);
	event_free(s->hup);
	free(s);
}
