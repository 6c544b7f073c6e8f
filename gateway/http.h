#ifndef HATO_GATEWAY_HTTP_H
#define HATO_GATEWAY_HTTP_H
/*
 * http: the gateway's HTTP endpoint (libevent's evhttp) on [gateway]
 * http_listen, a loopback address unless [gateway] http_public = yes; an
 * HTTPS proxy in front of it serves [gateway] unsubscribe_url. It answers
 *
 *	GET  /healthz			200
 *	GET  / or /status		the status page (status.c), polling
 *	GET  /status.json		its data
 *	GET  /metrics			Prometheus text format
 *	GET  <unsubscribe path><token>	a page whose form POSTs (nothing changes:
 *					link scanners fetch every URL of a mail)
 *	POST <unsubscribe path><token>	RFC 8058 one-click: List-Unsubscribe=One-Click
 *					suppresses the delivery's address; 200
 *
 * A token that is not ours or names no delivery gets 404 and changes
 * nothing. The database work runs on the module's own worker thread, never
 * on the event loop; while the database is away the answer is 503. The
 * address and the URL are those at start-up (a reload does not move them).
 * With [gateway] http_user and http_password_file, the status page, its
 * data and /metrics answer 401 without those credentials (HTTP basic auth);
 * /healthz and the unsubscribe path never ask for them.
 */
#include <stddef.h>
#include <event2/event.h>

struct dispatch;
struct hato_config;
struct http;

/* Bind and serve (call before dropping root). NULL with the reason: a
 * listen address that is not loopback without http_public, one that does
 * not parse or cannot be bound, an unsubscribe_url that is no URL, a
 * password file that cannot be read or that others may read. An empty
 * http_listen serves nothing. cf and d (the live state the status page
 * shows; may be NULL) must outlive the module. */
struct http *http_new(struct event_base *base, const struct hato_config *cf, struct dispatch *d,
    char *err, size_t errlen);
/* Answer the requests in the works, then close everything. */
void http_free(struct http *h);

#endif
