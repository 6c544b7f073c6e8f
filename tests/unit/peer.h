#ifndef HATO_TESTS_PEER_H
#define HATO_TESTS_PEER_H
/*
 * peer: the Python peers (tests/harness/smtpsink.py, dnsserver.py) run by
 * the C tests as subprocesses: started with a port file, waited for until
 * they listen, stopped by PID. Include after <cmocka.h>.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PEER_UNUSED __attribute__((unused))

/* The source tree: $HATO_SOURCE (set by ctest), else from this file's path. */
static PEER_UNUSED const char *
source_dir(void)
{
	static char dir[512];
	const char *env = getenv("HATO_SOURCE");
	char *p;

	if (env != NULL && *env != '\0')
		return env;
	snprintf(dir, sizeof dir, "%s", __FILE__);
	if ((p = strstr(dir, "/tests/unit/")) != NULL)
		*p = '\0';
	else
		snprintf(dir, sizeof dir, ".");
	return dir;
}

static PEER_UNUSED void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* The whole file, NUL-terminated (at most 1 MiB); "" when absent. */
static PEER_UNUSED char *
read_file(const char *path)
{
	static const size_t max = 1 << 20;
	char *buf = calloc(1, max + 1);
	FILE *f = fopen(path, "r");
	size_t n = 0;

	assert_non_null(buf);
	if (f != NULL) {
		n = fread(buf, 1, max, f);
		fclose(f);
	}
	buf[n] = '\0';
	return buf;
}

static PEER_UNUSED void
sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/*
 * Run /usr/bin/python3 with argv (argv[0] "python3"), its standard output
 * to /dev/null and its standard error to errlog (or inherited when NULL),
 * killed if the test dies; then wait up to 10 s for the port it writes to
 * portf once listening. Returns the port; *pid is the child's.
 */
static PEER_UNUSED int
peer_start(pid_t *pid, const char *const *argv, const char *portf, const char *errlog, const char *what)
{
	char *text;
	int port;

	*pid = fork();
	assert_true(*pid >= 0);
	if (*pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		int log = errlog ? open(errlog, O_WRONLY | O_CREAT | O_TRUNC, 0600) : -1;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (devnull >= 0)
			dup2(devnull, STDOUT_FILENO);
		if (log >= 0)
			dup2(log, STDERR_FILENO);
		execv("/usr/bin/python3", (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 500; i++) {
		text = read_file(portf);
		port = atoi(text);
		free(text);
		if (port > 0)
			return port;
		if (waitpid(*pid, NULL, WNOHANG) == *pid) {
			*pid = 0;
			fail_msg("the %s exited before listening", what);
		}
		sleep_ms(20);
	}
	fail_msg("the %s did not listen within 10 s", what);
	return -1;
}

/* SIGTERM, up to 5 s to go, then SIGKILL; by PID, never by name. */
static PEER_UNUSED void
peer_stop(pid_t *pid)
{
	if (*pid <= 0)
		return;
	kill(*pid, SIGTERM);
	for (int i = 0; i < 250; i++) {
		if (waitpid(*pid, NULL, WNOHANG) == *pid) {
			*pid = 0;
			return;
		}
		sleep_ms(20);
	}
	kill(*pid, SIGKILL);
	waitpid(*pid, NULL, 0);
	*pid = 0;
}

#endif
