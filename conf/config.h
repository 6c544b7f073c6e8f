#ifndef HATO_CONF_CONFIG_H
#define HATO_CONF_CONFIG_H
/*
 * config: hato.ini loaded into one typed structure. Each section has one
 * table (key, type, default, bounds, help) that the loader and
 * --check-config follow; conf/hato.ini documents the same keys. Unknown
 * sections or keys, bad values, duplicate keys and missing files are
 * refused with "file:line: [section] key: reason". The route table named by
 * [gateway] routes is loaded and checked against the relays and pace
 * policies defined here.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "routes/routes.h"

/* The same numbers as enum smtpc_tls_mode. */
enum tls_mode { TLS_NONE = 0, TLS_STARTTLS, TLS_SMTPS, TLS_OPPORTUNISTIC };

/* Local minutes of the day [from, to) when sending is allowed; from < 0:
 * always. A window may wrap midnight (21:00-08:00). */
struct send_window {
	int from, to;
};

struct limits {
	unsigned connections;		/* at once */
	unsigned per_connection;	/* messages before QUIT */
	unsigned messages;		/* pace: per interval; 0 = unpaced */
	uint64_t interval_ms;
	uint64_t suspend_ms;		/* after a 421 or a suspend_on reply */
	struct send_window window;	/* in the zone of [intake] timezone */
	unsigned quiet_minutes;		/* not in the first N minutes of an hour */
};

/* Retries of one destination: [retry], or a relay's or pace policy's own. */
struct retry_policy {
	const uint64_t *ms;		/* waits after each failed attempt; the last repeats */
	size_t n;
	unsigned max_attempts;
	uint64_t max_age_ms;
};

/* A relay's or pace policy's own retry settings ("" / 0: those of [retry]). */
struct retry_override {
	char *intervals;
	uint64_t *ms;
	size_t n;
	unsigned max_attempts;
	uint64_t max_age_ms;
};

struct relay_conf {
	char name[64];
	struct retry_override retry;
	char *host;
	unsigned port;
	int tls;			/* enum tls_mode */
	bool verify;
	char *charset;			/* of the messages sent through it */
	char *suspend_on;		/* comma-separated texts of 4xx replies that suspend */
	char *ca_file, *cert_file, *key_file;	/* TLS: CA to verify with ("" = system), client cert */
	char *auth_user, *auth_password_file;
	char *auth_password;		/* read from auth_password_file */
	bool auth_without_tls;
	struct limits lim;
	struct sockaddr_storage addr;	/* resolved at load */
	socklen_t addrlen;
};

struct pace_conf {
	char name[64];
	struct retry_override retry;
	char *relay;			/* send through this relay, or */
	char *mx_domain;		/* to the MX hosts of this domain */
	char *charset;
	char *suspend_on;
	struct limits lim;
};

struct submitter_conf {
	char name[64];
	char *address;			/* comma-separated list as written */
	char **addresses;		/* lower-cased */
	size_t naddr;
	char *token_hex;
	unsigned char token_sha256[32];
	bool has_token;
	char *auth_raw;			/* token | authres | token-or-authres */
	int auth;			/* enum submitter_auth */
	char *from_raw;			/* allowed From addresses of their DMs, as written */
	char **froms;			/* lower-cased; none: the submitter's own address */
	size_t nfrom;
	unsigned max_recipients;	/* per job; 0: no limit */
	unsigned max_per_day;		/* recipients accepted per day; 0: no limit */
	char *rehearsal_raw;		/* rehearsal addresses, as written */
	char **rehearsal;		/* lower-cased */
	size_t nrehearsal;
	bool approval;			/* jobs held until approved */
};

/* How a submitter proves who it is: the control block's Token, the local
 * MTA's Authentication-Results ([intake] authserv_id), or either. */
enum submitter_auth { SUBMITTER_AUTH_TOKEN = 0, SUBMITTER_AUTH_AUTHRES, SUBMITTER_AUTH_EITHER };

struct dkim_conf {
	char name[64];
	char *domain, *selector, *key_file;
};

struct hato_config {
	char *path;
	/* [hato] */
	char *node, *user;
	char *secret_file;		/* the MAC key of bounce addresses and unsubscribe tokens */
	unsigned char *secret;		/* its contents */
	size_t secret_len;
	/* [log] */
	int log_level;
	bool log_syslog;
	int log_facility;
	/* [db] */
	char *db_socket, *db_host, *db_user, *db_password_file, *db_database;
	unsigned db_port;
	uint64_t db_connect_timeout_ms;
	char *db_password;		/* read from db_password_file */
	/* [intake] */
	char *lmtp_socket, *lmtp_listen, *submit_address, *timezone;
	char *authserv_id;		/* the local MTA's Authentication-Results id; "": none trusted */
	char *receipt_from;		/* From of receipts and reports; "": submit_address */
	bool receipts;			/* answer submissions with receipts (else 5xx replies) */
	uint64_t max_message_size;
	unsigned intake_workers;
	uint64_t approval_expiry_ms;	/* a held job nobody approved expires after it */
	/* [gateway] */
	char *hostname, *routes_path, *bounce_domain;
	char *unsubscribe_url;		/* token appended: the one-click URL */
	char *http_listen;		/* host:port of the status and unsubscribe endpoint */
	bool http_public;		/* http_listen may be other than a loopback address */
	char *http_user;		/* basic auth of the status page and /metrics; "" = none */
	char *http_password_file;	/* its password (read by the gateway at start-up) */
	unsigned claim_batch;
	uint64_t lease_ms, poll_ms;
	uint64_t connect_timeout_ms, greeting_timeout_ms, command_timeout_ms, data_timeout_ms;
	char *charset;			/* for MX delivery */
	char *dns_servers;		/* "" = the system's */
	int mx_tls;			/* TLS_NONE or TLS_OPPORTUNISTIC */
	char *mx_tls_require;		/* domains whose MX must do verified TLS */
	char *ca_file;			/* CA for MX verification ("" = system) */
	unsigned smtp_port;		/* of MX hosts */
	uint64_t dns_timeout_ms;
	char *pid_file;			/* "" = none */
	/* [doctor] */
	char *doctor_blocklists;	/* zones, comma- or space-separated */
	char *doctor_ip;		/* the sending IP ("" = ask for --ip) */
	/* [retry] */
	char *retry_intervals_raw;
	uint64_t *retry_ms;
	size_t nretry;
	unsigned max_attempts;
	uint64_t max_age_ms;
	/* [cleaning]: suppress an address after unknown-user failures on
	 * min_days different days within window */
	unsigned cleaning_min_days;
	uint64_t cleaning_window_ms;
	/* [limits]: defaults of every relay and pace */
	struct limits limits;

	struct relay_conf *relays;
	size_t nrelays;
	struct pace_conf *paces;
	size_t npaces;
	struct submitter_conf *submitters;
	size_t nsubmitters;
	struct dkim_conf *dkims;
	size_t ndkims;

	struct route_table *routes;
};

/* Returns 0, or -1 with the first problem in err. */
int config_load(const char *path, struct hato_config **out, char *err, size_t errlen);
/* The same for a reload (SIGHUP): the secrets and the node name are taken
 * from the running configuration instead of being read again. */
int config_reload(const char *path, const struct hato_config *running, struct hato_config **out,
    char *err, size_t errlen);
void config_free(struct hato_config *c);

const struct relay_conf *config_relay(const struct hato_config *c, const char *name);
const struct pace_conf *config_pace(const struct hato_config *c, const char *name);
/* What a destination key ("relay:NAME", "pace:NAME", "mx:DOMAIN") names:
 * *relay or *pace is set (the other NULL), or both NULL for MX and for a
 * name the configuration does not have. */
void config_dest(const struct hato_config *c, const char *dest,
    const struct relay_conf **relay, const struct pace_conf **pace);

/* The DKIM signing setup of a sending domain, or NULL. */
const struct dkim_conf *config_dkim(const struct hato_config *c, const char *domain);
/* The submitter owning this From address (case-insensitive), or NULL. */
const struct submitter_conf *config_submitter_by_address(const struct hato_config *c, const char *addr);

/* The wait before attempt number `attempts + 1`, after `attempts` failures. */
uint64_t config_retry_delay_ms(const struct hato_config *c, unsigned attempts);
/* The retry policy of a destination key ("relay:NAME", "pace:NAME", "mx:..."),
 * and its wait after `attempts` failures. */
void config_retry_for(const struct hato_config *c, const char *dest, struct retry_policy *out);
uint64_t retry_policy_delay_ms(const struct retry_policy *p, unsigned attempts);

/* The default config path: $HATO_CONFIG or /etc/hato/hato.ini. */
const char *config_default_path(void);

#endif
