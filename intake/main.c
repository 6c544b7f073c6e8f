/*
 * hato-intake: wires configuration, logging, the LMTP listeners and the
 * intake pipeline, drops root, and runs the event loop. SIGTERM stops
 * accepting and exits once every transaction in the works is answered.
 *
 * --pipe: for an MTA's pipe transport. One message on standard input, the
 * envelope sender from -f, the recipients after it (none: the submit
 * address); the same decision as over LMTP for each recipient (a
 * submission, a bounce, an unsubscribe), the first failure told by the
 * exit code (sysexits): 0 stored (or discarded: an unknown sender), 75
 * EX_TEMPFAIL when the job store is away (the MTA keeps the mail and
 * retries), 65 EX_DATAERR for a submission that cannot be read, 77
 * EX_NOPERM for a refused submitter, 74 EX_IOERR when stdin fails. The
 * reply line goes first to standard error (standard output when it is a
 * 2xx), which the MTA puts in its log or its bounce; the log lines of the
 * run follow it there, or go to syslog with [log] syslog = yes (better:
 * the MTA's bounce then holds the reply alone).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "conf/config.h"
#include "core/daemon.h"
#include "core/log.h"
#include "intake/intake.h"
#include "mail/mime.h"
#include "sql/store.h"

struct app {
	struct event_base *base;
	struct intake *intake;
	int stopping;
};

static void
usage(void)
{
	fprintf(stderr, "usage: hato-intake [--config FILE] [--check-config] [--pipe [-f SENDER] [--] [RECIPIENT...]]\n");
	exit(64);
}

static int
exit_code_of(const char *reply)
{
	if (reply[0] == '2')
		return 0;
	if (reply[0] == '4')
		return 75;	/* EX_TEMPFAIL */
	if (strncmp(reply + 4, "5.7.", 4) == 0)
		return 77;	/* EX_NOPERM */
	return 65;		/* EX_DATAERR */
}

static int
run_pipe(const struct hato_config *cf, const char *sender, char **rcpts, int nrcpt)
{
	const char *submit[] = { cf->submit_address };
	struct store *st;
	char reply[512], *data = NULL;
	size_t len = 0, cap = 0, n;
	int rc = 0;

	for (;;) {
		if (len == cap && !(data = realloc(data, (cap = cap ? cap * 2 : 65536) + 1)))
			fatalx("out of memory");
		if ((n = fread(data + len, 1, cap - len, stdin)) == 0)
			break;
		len += n;
		if (len > cf->max_message_size) {
			fprintf(stderr, "552 5.3.4 message too big for this intake\n");
			free(data);
			return 65;
		}
	}
	if (ferror(stdin)) {
		fprintf(stderr, "cannot read the message: %s\n", strerror(errno));
		free(data);
		return 74;	/* EX_IOERR */
	}
	data[len] = '\0';
	if (nrcpt == 0) {
		rcpts = (char **)submit;
		nrcpt = 1;
	}
	/* The MTA shows the first line: hold the log lines until the reply
	 * has been written. */
	char *logbuf = NULL;
	size_t loglen = 0;
	FILE *logs = cf->log_syslog ? NULL : open_memstream(&logbuf, &loglen);
	if (logs)
		log_to_stream(logs);
	st = store_new(cf);
	/* The first failure decides the exit code: the MTA then retries or
	 * bounces the whole message (pipe transports take one recipient at a
	 * time: hato_destination_recipient_limit = 1). */
	for (int i = 0; i < nrcpt && rc == 0; i++) {
		intake_deliver(st, cf, sender, rcpts[i], data, len, reply, sizeof(reply));
		rc = exit_code_of(reply);
		fprintf(rc ? stderr : stdout, "%s\n", reply);
	}
	store_free(st);
	free(data);
	if (logs) {
		log_to_stream(NULL);
		fclose(logs);
		fflush(stdout);
		fwrite(logbuf, 1, loglen, stderr);
		free(logbuf);
	}
	return rc;
}

static void
on_idle(void *arg)
{
	struct app *a = arg;

	event_base_loopexit(a->base, NULL);
}

static void
on_stop(void *arg)
{
	struct app *a = arg;

	if (a->stopping++)
		return;
	log_info("intake stopping: finishing transactions in the works");
	intake_stop(a->intake, on_idle, a);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "pipe", no_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = config_default_path();
	struct hato_config *cf;
	struct daemon_signals *sig;
	struct app a = { 0 };
	char err[1024];
	int check = 0, pipe_mode = 0, ch;
	const char *sender = "";

	while ((ch = getopt_long(argc, argv, "c:Chf:", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'C': check = 1; break;
		case 'p': pipe_mode = 1; break;
		case 'f': sender = optarg; break;
		default: usage();
		}
	}
	if (optind != argc && !pipe_mode)
		usage();
	log_init("hato-intake", false, 0);
	if (config_load(path, &cf, err, sizeof(err)) < 0) {
		fprintf(stderr, "hato-intake: %s\n", err);
		return 78;	/* EX_CONFIG */
	}
	if (check) {
		printf("%s: ok\n", path);
		config_free(cf);
		return 0;
	}
	if (!cf->secret) {
		fprintf(stderr, "hato-intake: %s: [hato] secret_file is needed: it checks bounce addresses and unsubscribe tokens\n", path);
		config_free(cf);
		return 78;
	}
	log_init("hato-intake", cf->log_syslog, cf->log_facility);
	log_set_level(cf->log_level);
	/* Send-At values without an offset are in this zone. */
	setenv("TZ", cf->timezone, 1);
	tzset();
	mime_init();
	if (pipe_mode) {
		/* The MTA runs the pipe as its own user: nothing to drop. */
		int rc = run_pipe(cf, sender, argv + optind, argc - optind);
		config_free(cf);
		return rc;
	}
	if (!(a.base = event_base_new()))
		fatalx("cannot create the event loop");
	a.intake = intake_new(a.base, cf);
	if (intake_listen(a.intake, err, sizeof(err)) < 0)
		fatalx("%s", err);
	if (daemon_drop_root(cf->user, err, sizeof(err)) < 0)
		fatalx("%s", err);
	sig = daemon_signals(a.base, on_stop, NULL, &a);
	log_info("intake ready lmtp_listen=%s lmtp_socket=%s submit_address=%s",
	    *cf->lmtp_listen ? cf->lmtp_listen : "-", *cf->lmtp_socket ? cf->lmtp_socket : "-",
	    cf->submit_address);
	event_base_dispatch(a.base);
	intake_free(a.intake);
	daemon_signals_free(sig);
	event_base_free(a.base);
	config_free(cf);
	log_info("intake stopped");
	return 0;
}
