/*
 * fuzz_config: hato.ini validation on any bytes.
 *
 * config_load reads a file (iniparser takes a path), so each input is
 * written to a directory of its own under /tmp, removed afterwards: the
 * bytes up to the first NUL as hato.ini, the rest as carriers.routes
 * beside it, which "routes = carriers.routes" names.
 *
 * A refused configuration gives a reason that starts with hato.ini's
 * path (a route table's own errors come after it). A loaded one is complete and within the bounds of its tables:
 * relays with a host and a port, retry intervals that are not zero,
 * submitters with addresses and a token, and every relay and pace policy
 * the route table names defined.
 *
 * Relay hosts are resolved while loading. getaddrinfo is replaced below
 * by one that takes numeric hosts only, so that a run never waits on DNS
 * or sends anything to the network.
 */
#include <dlfcn.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/config.h"
#include "check.h"

int
getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
    struct addrinfo **res)
{
	static int (*real)(const char *, const char *, const struct addrinfo *,
	    struct addrinfo **);
	struct addrinfo h = { 0 };

	if (real == NULL && (real = (int (*)(const char *, const char *,
	    const struct addrinfo *, struct addrinfo **))dlsym(RTLD_NEXT, "getaddrinfo")) == NULL)
		abort();
	if (hints != NULL)
		h = *hints;
	h.ai_flags |= AI_NUMERICHOST;
	return real(node, service, &h, res);
}

static int
write_file(const char *path, const uint8_t *data, size_t size)
{
	FILE *f = fopen(path, "w");

	if (f == NULL)
		return -1;
	if (size > 0 && fwrite(data, 1, size, f) != size) {
		fclose(f);
		return -1;
	}
	return fclose(f);
}

static void
check_limits(const struct limits *l)
{
	CHECK(l->connections >= 1 && l->connections <= 1000);
	CHECK(l->per_connection >= 1 && l->per_connection <= 100000);
	CHECK(l->messages <= 1000000);
	CHECK(l->interval_ms <= 86400000ULL);
}

static void
check_config(const struct hato_config *c)
{
	const struct route *r;

	CHECK(c->node != NULL && c->node[0] != '\0');
	CHECK(c->db_port >= 1 && c->db_port <= 65535);
	CHECK(c->max_message_size >= 1024 && c->max_message_size <= (1ULL << 31));
	CHECK(c->intake_workers >= 1 && c->intake_workers <= 64);
	CHECK(c->claim_batch >= 1 && c->claim_batch <= 10000);
	CHECK(c->max_attempts >= 1 && c->max_attempts <= 1000);
	check_limits(&c->limits);
	CHECK(c->nretry >= 1);
	for (size_t i = 0; i < c->nretry; i++)
		CHECK(c->retry_ms[i] > 0);
	CHECK(config_retry_delay_ms(c, 0) == 0);
	for (unsigned k = 1; k <= c->nretry + 2; k++)
		CHECK(config_retry_delay_ms(c, k) == c->retry_ms[(k <= c->nretry ? k : c->nretry) - 1]);
	for (size_t i = 0; i < c->nrelays; i++) {
		const struct relay_conf *rc = &c->relays[i];

		CHECK(rc->name[0] != '\0' && rc->host != NULL && rc->host[0] != '\0');
		CHECK(rc->port >= 1 && rc->port <= 65535);
		CHECK(rc->tls == TLS_NONE || rc->tls == TLS_STARTTLS || rc->tls == TLS_SMTPS);
		CHECK(rc->addrlen > 0 && rc->addrlen <= sizeof(rc->addr));
		CHECK(config_relay(c, rc->name) == rc);
		check_limits(&rc->lim);
	}
	for (size_t i = 0; i < c->npaces; i++) {
		const struct pace_conf *p = &c->paces[i];

		CHECK(p->name[0] != '\0' && p->relay != NULL);
		CHECK(p->relay[0] == '\0' || config_relay(c, p->relay) != NULL);
		CHECK(p->lim.messages == 0 || p->lim.interval_ms > 0);
		CHECK(config_pace(c, p->name) == p);
		check_limits(&p->lim);
	}
	for (size_t i = 0; i < c->nsubmitters; i++) {
		const struct submitter_conf *s = &c->submitters[i];

		CHECK(s->naddr >= 1 && s->has_token);
		for (size_t k = 0; k < s->naddr; k++) {
			CHECK(strchr(s->addresses[k], '@') != NULL);
			CHECK(config_submitter_by_address(c, s->addresses[k]) != NULL);
		}
	}
	CHECK(c->routes != NULL);
	for (size_t i = 0; (r = routes_at(c->routes, i)) != NULL; i++) {
		if (r->kind == ROUTE_RELAY)
			CHECK(config_relay(c, r->name) != NULL);
		if (r->kind == ROUTE_PACE)
			CHECK(config_pace(c, r->name) != NULL);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char dir[] = "/tmp/hato-fuzz-config.XXXXXX", ini[64], routes[64], err[1024] = "";
	const uint8_t *nul = memchr(data, '\0', size);
	size_t ini_len = nul ? (size_t)(nul - data) : size;
	static struct hato_config unset;
	struct hato_config *c = &unset;		/* config_load must reset it */
	int rc;

	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(ini, sizeof(ini), "%s/hato.ini", dir);
	snprintf(routes, sizeof(routes), "%s/carriers.routes", dir);
	if (write_file(ini, data, ini_len) != 0 ||
	    write_file(routes, nul ? nul + 1 : data, nul ? size - ini_len - 1 : 0) != 0)
		abort();
	fuzz_poison_stack();
	rc = config_load(ini, &c, err, sizeof(err));
	/* For looking at seeds: HATO_FUZZ_VERBOSE=1 ./fuzz_config FILE... */
	if (getenv("HATO_FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "config_load: %s\n", rc == 0 ? "loaded" : err);
	if (rc != 0) {
		CHECK(rc == -1 && c == NULL);
		CHECK(strncmp(err, ini, strlen(ini)) == 0);
	} else {
		CHECK(c != NULL);
		check_config(c);
		config_free(c);
	}
	unlink(ini);
	unlink(routes);
	rmdir(dir);
	return 0;
}
