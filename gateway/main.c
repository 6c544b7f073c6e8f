/*
 * hato-gateway: wires configuration, logging and the dispatcher, drops
 * root, and runs the event loop. SIGTERM drains: no new claims, sessions
 * finish their current message, outcomes are recorded, leases given back.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "conf/config.h"
#include "core/daemon.h"
#include "core/log.h"
#include "gateway/dispatch.h"
#include "gateway/http.h"
#include "gateway/metrics.h"
#include "gateway/upkeep.h"

struct app {
	struct event_base *base;
	struct dispatch *dispatch;
	struct http *http;
	struct upkeep *upkeep;		/* held jobs' expiry, paused and cancelled jobs' stragglers */
	const char *path;
	struct hato_config *cf;
	int stopping;
};

static void
usage(void)
{
	fprintf(stderr, "usage: hato-gateway [--config FILE] [--check-config]\n");
	exit(64);
}

static void
on_drained(void *arg)
{
	struct app *a = arg;

	event_base_loopexit(a->base, NULL);
}

static void
on_stop(void *arg)
{
	struct app *a = arg;

	if (a->stopping++) {
		log_warn("second stop signal: exiting now; leases run out by themselves");
		event_base_loopbreak(a->base);
		return;
	}
	dispatch_stop(a->dispatch, on_drained, a);
}

/*
 * SIGHUP: read the configuration and route table again. A file that does
 * not load changes nothing: the error is logged with file:line and the old
 * tables go on. Listening addresses, the database and the user are fixed
 * for the life of the process.
 */
static void
on_reload(void *arg)
{
	struct app *a = arg;
	struct hato_config *cf;
	char err[1024];

	if (a->stopping)
		return;
	if (config_reload(a->path, a->cf, &cf, err, sizeof(err)) < 0) {
		log_error("reload refused, the running configuration stays: %s", err);
		return;
	}
	log_set_level(cf->log_level);
	dispatch_reload(a->dispatch, cf);
	a->cf = cf;
}

/*
 * [gateway] pid_file: written after root is dropped, so that the service
 * user can remove it at exit (systemd's RuntimeDirectory gives it a
 * directory of its own). hatoctl routes reload signals the process in it.
 */
static char pid_path[4096];	/* the one written: a reload may name another */

static void
pid_file_write(const char *path)
{
	FILE *f;

	if (!*path)
		return;
	snprintf(pid_path, sizeof(pid_path), "%s", path);
	if (!(f = fopen(path, "w")) || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0)
		fatalx("[gateway] pid_file %s: %s", path, strerror(errno));
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = config_default_path();
	struct hato_config *cf;
	struct daemon_signals *sig;
	struct app a = { 0 };
	char err[1024];
	int check = 0, ch;

	while ((ch = getopt_long(argc, argv, "c:Ch", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'C': check = 1; break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	log_init("hato-gateway", false, 0);
	if (config_load(path, &cf, err, sizeof(err)) < 0) {
		fprintf(stderr, "hato-gateway: %s\n", err);
		return 78;	/* EX_CONFIG */
	}
	if (check) {
		printf("%s: ok\n", path);
		config_free(cf);
		return 0;
	}
	if (!cf->secret) {
		fprintf(stderr, "hato-gateway: %s: [hato] secret_file is needed: it makes bounce addresses and unsubscribe tokens unforgeable\n", path);
		config_free(cf);
		return 78;
	}
	log_init("hato-gateway", cf->log_syslog, cf->log_facility);
	log_set_level(cf->log_level);
	/* Send windows are in the site's zone, the one Send-At uses. */
	setenv("TZ", cf->timezone, 1);
	tzset();
	/* Before any worker thread starts: they report their latencies. */
	metrics_init();
	if (!(a.base = event_base_new()))
		fatalx("cannot create the event loop");
	/* Keys are read as root, then root is dropped. */
	if (!(a.dispatch = dispatch_new(a.base, cf, err, sizeof(err))))
		fatalx("%s", err);
	/* The one-click unsubscribe endpoint; binds before root is dropped. */
	if (!(a.http = http_new(a.base, cf, a.dispatch, err, sizeof(err))))
		fatalx("%s", err);
	if (daemon_drop_root(cf->user, err, sizeof(err)) < 0)
		fatalx("%s", err);
	a.path = path;
	a.cf = cf;
	sig = daemon_signals(a.base, on_stop, on_reload, &a);
	pid_file_write(cf->pid_file);
	log_info("gateway ready node=%s routes=%s", cf->node, cf->routes_path);
	dispatch_start(a.dispatch);
	a.upkeep = upkeep_new(a.base, cf);
	event_base_dispatch(a.base);
	upkeep_free(a.upkeep);
	http_free(a.http);
	size_t nold;
	const struct hato_config *const *old = dispatch_old_configs(a.dispatch, &nold);
	struct hato_config **keep = calloc(nold ? nold : 1, sizeof(*keep));
	for (size_t i = 0; keep && i < nold; i++)
		keep[i] = (struct hato_config *)old[i];
	dispatch_free(a.dispatch);
	for (size_t i = 0; keep && i < nold; i++)
		config_free(keep[i]);
	free(keep);
	daemon_signals_free(sig);
	event_base_free(a.base);
	if (*pid_path)
		unlink(pid_path);
	config_free(a.cf);
	log_info("gateway stopped");
	return 0;
}
