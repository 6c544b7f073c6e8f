/*
 * http: the gateway's HTTP endpoint (see http.h).
 *
 *	http_new	listen address checked (loopback unless http_public)
 *			and bound, the unsubscribe path taken from
 *			unsubscribe_url, the worker and its store started
 *	http_free	the worker drained first (its replies go out), then
 *			evhttp and its connections freed
 *
 * The status page (/ or /status, one compiled-in HTML file that polls
 * /status.json) and /metrics are answered by status.c from its snapshot;
 * with [gateway] http_user they need HTTP basic auth, checked here with a
 * constant-time comparison. /healthz and the unsubscribe path stay open:
 * the recipients who click have no password.
 *
 * The loop thread only parses requests, checks tokens (a MAC, no I/O)
 * and writes replies; store_unsubscribe runs on the worker. A request
 * waiting for the worker stays valid even if its client leaves: evhttp
 * hands it over to us until we reply (and then frees it). Bounds: headers
 * and body sizes, a read/write timeout, and at most MAX_PENDING requests
 * waiting for the database (more get 503 at once).
 *
 * Several gateways on one host share the port (SO_REUSEPORT): any of them
 * may answer, since they share the database and the site secret.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "conf/config.h"
#include "core/daemon.h"
#include "core/log.h"
#include "core/worker.h"
#include "gateway/http.h"
#include "gateway/status.h"
#include "mail/verp.h"
#include "sql/store.h"

#define TIMEOUT_S 30
#define MAX_HEADERS 8192
#define MAX_BODY 8192
#define MAX_PENDING 256
#define PREFIX_MAX 512

struct http {
	const struct hato_config *cf;
	struct evhttp *http;
	struct worker *worker;
	struct status *status;
	char prefix[PREFIX_MAX];	/* path and query of unsubscribe_url: "/unsubscribe/" */
	char *credentials;		/* "user:password" of basic auth, or NULL */
};

struct unsub_request {
	struct http *h;
	struct evhttp_request *req;
	uint64_t id;
	int rc;
	bool found;
	char address[321];
	char err[300];
};

static const char PAGE_HEAD[] =
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
    "<meta name=\"robots\" content=\"noindex\">"
    "<meta name=\"viewport\" content=\"width=device-width\">"
    "<title>配信停止 / Unsubscribe</title></head><body>\n";
static const char PAGE_TAIL[] = "</body></html>\n";

static void
send_body(struct evhttp_request *req, int code, const char *reason, const char *ctype,
    struct evbuffer *body)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);

	evhttp_add_header(out, "Content-Type", ctype);
	evhttp_add_header(out, "Cache-Control", "no-store");
	evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
	evhttp_send_reply(req, code, reason, body);
}

static void
send_text(struct evhttp_request *req, int code, const char *reason, const char *text)
{
	struct evbuffer *b = evbuffer_new();

	if (!b)
		fatalx("http: out of memory");
	evbuffer_add(b, text, strlen(text));
	send_body(req, code, reason, "text/plain; charset=utf-8", b);
	evbuffer_free(b);
}

static const char *
method_name(enum evhttp_cmd_type m)
{
	switch (m) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_HEAD: return "HEAD";
	default: return "other";
	}
}

static void
html_escaped(struct evbuffer *b, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&': evbuffer_add_printf(b, "&amp;"); break;
		case '<': evbuffer_add_printf(b, "&lt;"); break;
		case '>': evbuffer_add_printf(b, "&gt;"); break;
		case '"': evbuffer_add_printf(b, "&quot;"); break;
		default: evbuffer_add(b, s, 1);
		}
	}
}

/* GET: a page asking for the POST; a link scanner that only fetches
 * changes nothing. */
static void
confirm_page(struct evhttp_request *req, const char *uri)
{
	struct evbuffer *b = evbuffer_new();

	if (!b)
		fatalx("http: out of memory");
	evbuffer_add(b, PAGE_HEAD, strlen(PAGE_HEAD));
	evbuffer_add_printf(b, "<h1>配信停止 / Unsubscribe</h1>\n"
	    "<p>このアドレスへの配信を停止しますか？<br>Stop these messages to your address?</p>\n"
	    "<form method=\"post\" action=\"");
	html_escaped(b, uri);
	evbuffer_add_printf(b, "\">\n<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\n"
	    "<button type=\"submit\">配信を停止する / Unsubscribe</button>\n</form>\n");
	evbuffer_add(b, PAGE_TAIL, strlen(PAGE_TAIL));
	send_body(req, 200, "OK", "text/html; charset=utf-8", b);
	evbuffer_free(b);
}

/* RFC 8058 3.1: the POST body holds List-Unsubscribe=One-Click, as
 * application/x-www-form-urlencoded or multipart/form-data. */
static bool
one_click(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	const char *ctype = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
	char body[MAX_BODY + 1];
	struct evkeyvalq q;
	ev_ssize_t n;
	const char *v;
	bool ok;

	if ((n = evbuffer_copyout(in, body, MAX_BODY)) < 0)
		return false;
	body[n] = '\0';
	if (ctype && strncasecmp(ctype, "multipart/form-data", 19) == 0)
		return strstr(body, "name=\"List-Unsubscribe\"") && strstr(body, "One-Click");
	/* evhttp_parse_query_str initialises q, and leaves it to be cleared. */
	if (evhttp_parse_query_str(body, &q) < 0) {
		evhttp_clear_headers(&q);
		return false;
	}
	ok = (v = evhttp_find_header(&q, "List-Unsubscribe")) && strcmp(v, "One-Click") == 0;
	evhttp_clear_headers(&q);
	return ok;
}

static void
unsub_run(void *ctx, void *arg)
{
	struct unsub_request *t = arg;

	t->rc = store_unsubscribe(ctx, t->h->cf->node, t->id, "one-click", t->address,
	    sizeof(t->address), &t->found);
	if (t->rc != STORE_OK)
		snprintf(t->err, sizeof(t->err), "%s", store_error(ctx));
}

static void
unsub_done(void *arg)
{
	struct unsub_request *t = arg;
	unsigned long long id = (unsigned long long)t->id;

	if (t->rc != STORE_OK) {
		log_warn("unsubscribe dlv=%llu via=one-click status=tempfail reason=\"%s\"", id, t->err);
		evhttp_add_header(evhttp_request_get_output_headers(t->req), "Retry-After", "120");
		send_text(t->req, 503, "Service Unavailable", "Please try again later.\n");
	} else if (!t->found) {
		log_notice("unsubscribe dlv=%llu via=one-click status=refused reason=\"no such delivery\"", id);
		send_text(t->req, 404, "Not Found", "This unsubscribe link is not valid.\n");
	} else {
		log_info("unsubscribe dlv=%llu address=%s via=one-click status=suppressed", id, t->address);
		send_text(t->req, 200, "OK", "配信を停止しました。\nYou are unsubscribed: no more of these messages will be sent to you.\n");
	}
	free(t);
}

static void
unsub_request(struct http *h, struct evhttp_request *req, const char *uri, const char *token)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	struct unsub_request *t;
	char q[300];
	uint64_t id;

	if (!*token || unsub_parse(h->cf->secret, h->cf->secret_len, token, strlen(token), &id) < 0) {
		log_notice("unsubscribe via=one-click method=%s status=refused reason=\"not a token of ours\" uri=%s",
		    method_name(m), log_quote(q, sizeof(q), uri));
		send_text(req, 404, "Not Found", "This unsubscribe link is not valid.\n");
		return;
	}
	if (m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD) {
		confirm_page(req, uri);
		return;
	}
	if (m != EVHTTP_REQ_POST) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD, POST");
		send_text(req, 405, "Method Not Allowed", "Use POST to unsubscribe.\n");
		return;
	}
	if (!one_click(req)) {
		send_text(req, 400, "Bad Request", "Expected List-Unsubscribe=One-Click.\n");
		return;
	}
	if (worker_pending(h->worker) >= MAX_PENDING) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "60");
		send_text(req, 503, "Service Unavailable", "Please try again later.\n");
		return;
	}
	if (!(t = calloc(1, sizeof(*t))))
		fatalx("http: out of memory");
	t->h = h;
	t->req = req;
	t->id = id;
	worker_submit(h->worker, unsub_run, unsub_done, t);
}

/* RFC 7617: "Basic " and base64 of user:password. */
static bool
authorized(struct http *h, struct evhttp_request *req)
{
	const char *v = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	unsigned char got[512];
	size_t len, want = strlen(h->credentials);
	int n;

	if (!v || strncasecmp(v, "Basic ", 6) != 0)
		return false;
	v += 6;
	while (*v == ' ')
		v++;
	len = strlen(v);
	if (len == 0 || len % 4 || len / 4 * 3 >= sizeof(got))
		return false;
	if ((n = EVP_DecodeBlock(got, (const unsigned char *)v, (int)len)) < 0)
		return false;
	/* EVP_DecodeBlock counts the padding as bytes. */
	n -= (v[len - 1] == '=') + (v[len - 2] == '=');
	return (size_t)n == want && CRYPTO_memcmp(got, h->credentials, want) == 0;
}

static void
status_request(struct http *h, struct evhttp_request *req, const char *path)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);

	if (h->credentials && !authorized(h, req)) {
		log_info("http path=%s status=refused reason=\"no valid credentials\"", path);
		evhttp_add_header(out, "WWW-Authenticate", "Basic realm=\"Hato\", charset=\"UTF-8\"");
		send_text(req, 401, "Unauthorized", "credentials needed\n");
		return;
	}
	if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
		evhttp_add_header(out, "Allow", "GET, HEAD");
		send_text(req, 405, "Method Not Allowed", "GET only\n");
		return;
	}
	if (strcmp(path, "/status.json") == 0)
		status_serve(h->status, req, STATUS_JSON);
	else if (strcmp(path, "/metrics") == 0)
		status_serve(h->status, req, STATUS_METRICS);
	else {
		struct evbuffer *b = evbuffer_new();
		if (!b)
			fatalx("http: out of memory");
		/* Everything the page needs is inline: no other origin. */
		evhttp_add_header(out, "Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; "
		    "style-src 'unsafe-inline'; img-src data:; connect-src 'self'");
		if (m == EVHTTP_REQ_GET)
			evbuffer_add(b, status_page, status_page_len);
		send_body(req, 200, "OK", "text/html; charset=utf-8", b);
		evbuffer_free(b);
	}
}

static bool
is_status_path(const char *uri, char *path, size_t size)
{
	size_t n = strcspn(uri, "?#");

	if (n >= size)
		return false;
	memcpy(path, uri, n);
	path[n] = '\0';
	return strcmp(path, "/") == 0 || strcmp(path, "/status") == 0 ||
	    strcmp(path, "/status.json") == 0 || strcmp(path, "/metrics") == 0;
}

static void
on_request(struct evhttp_request *req, void *arg)
{
	struct http *h = arg;
	const char *uri = evhttp_request_get_uri(req);
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	size_t plen = strlen(h->prefix);
	char q[300], path[32];

	log_debug("http method=%s uri=%s", method_name(m), log_quote(q, sizeof(q), uri));
	if (strcmp(uri, "/healthz") == 0) {
		if (m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD)
			send_text(req, 200, "OK", "ok\n");
		else {
			evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
			send_text(req, 405, "Method Not Allowed", "GET only\n");
		}
		return;
	}
	if (h->status && is_status_path(uri, path, sizeof(path))) {
		status_request(h, req, path);
		return;
	}
	if (plen && strncmp(uri, h->prefix, plen) == 0) {
		unsub_request(h, req, uri, uri + plen);
		return;
	}
	send_text(req, 404, "Not Found", "not found\n");
}

/* The path (and query) the token is appended to. */
static int
unsub_prefix(struct http *h, char *err, size_t errlen)
{
	const char *url = h->cf->unsubscribe_url, *path, *query;
	struct evhttp_uri *u;

	if (!*url)
		return 0;
	if (!(u = evhttp_uri_parse(url))) {
		snprintf(err, errlen, "%s: [gateway] unsubscribe_url: '%s' is not a URL", h->cf->path, url);
		return -1;
	}
	path = evhttp_uri_get_path(u);
	query = evhttp_uri_get_query(u);
	snprintf(h->prefix, sizeof(h->prefix), "%s%s%s", path && *path ? path : "/",
	    query ? "?" : "", query ? query : "");
	evhttp_uri_free(u);
	return 0;
}

static bool
is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

/* "host:port" or "[v6]:port", resolved once at start-up. */
static struct addrinfo *
listen_addr(const struct hato_config *cf, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV | AI_PASSIVE }, *ai;
	char host[256];
	const char *s = cf->http_listen, *colon = strrchr(s, ':'), *port;
	int rc;

	if (!colon || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
	    atoi(colon + 1) < 1 || atoi(colon + 1) > 65535) {
		snprintf(err, errlen, "%s: [gateway] http_listen: '%s' is not host:port", cf->path, s);
		return NULL;
	}
	port = colon + 1;
	if (*s == '[' && colon > s && colon[-1] == ']')
		snprintf(host, sizeof(host), "%.*s", (int)(colon - s - 2), s + 1);
	else
		snprintf(host, sizeof(host), "%.*s", (int)(colon - s), s);
	if ((rc = getaddrinfo(host, port, &hints, &ai)) != 0) {
		snprintf(err, errlen, "%s: [gateway] http_listen: '%s': %s", cf->path, s, gai_strerror(rc));
		return NULL;
	}
	return ai;
}

static int
http_bind(struct http *h, struct event_base *base, char *err, size_t errlen)
{
	const struct hato_config *cf = h->cf;
	struct addrinfo *ai = listen_addr(cf, err, errlen);
	struct evconnlistener *l;

	if (!ai)
		return -1;
	if (!is_loopback(ai->ai_addr) && !cf->http_public) {
		snprintf(err, errlen, "%s: [gateway] http_listen: '%s' is not a loopback address "
		    "(set http_public = yes to serve it to others)", cf->path, cf->http_listen);
		freeaddrinfo(ai);
		return -1;
	}
	l = evconnlistener_new_bind(base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
	    LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT, 128, ai->ai_addr, (int)ai->ai_addrlen);
	freeaddrinfo(ai);
	if (!l) {
		snprintf(err, errlen, "%s: [gateway] http_listen: cannot listen on %s: %s", cf->path,
		    cf->http_listen, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return -1;
	}
	if (!evhttp_bind_listener(h->http, l)) {
		evconnlistener_free(l);
		snprintf(err, errlen, "%s: [gateway] http_listen: cannot serve %s", cf->path, cf->http_listen);
		return -1;
	}
	return 0;
}

/* [gateway] http_user and http_password_file, both or neither. */
static int
load_credentials(struct http *h, char *err, size_t errlen)
{
	const struct hato_config *cf = h->cf;
	char why[512], *pw;

	if (!*cf->http_user && !*cf->http_password_file)
		return 0;
	if (!*cf->http_user || !*cf->http_password_file) {
		snprintf(err, errlen, "%s: [gateway] %s: http_user and http_password_file go together",
		    cf->path, *cf->http_user ? "http_password_file" : "http_user");
		return -1;
	}
	if (strchr(cf->http_user, ':')) {
		snprintf(err, errlen, "%s: [gateway] http_user: '%s' has a colon (RFC 7617 forbids it)",
		    cf->path, cf->http_user);
		return -1;
	}
	if (!(pw = secret_file_read(cf->http_password_file, why, sizeof(why)))) {
		snprintf(err, errlen, "%s: [gateway] http_password_file: %s", cf->path, why);
		return -1;
	}
	if (asprintf(&h->credentials, "%s:%s", cf->http_user, pw) < 0)
		fatalx("http: out of memory");
	explicit_bzero(pw, strlen(pw));
	free(pw);
	return 0;
}

static void
credentials_free(struct http *h)
{
	if (h->credentials) {
		explicit_bzero(h->credentials, strlen(h->credentials));
		free(h->credentials);
	}
}

struct http *
http_new(struct event_base *base, const struct hato_config *cf, struct dispatch *d,
    char *err, size_t errlen)
{
	struct http *h = calloc(1, sizeof(*h));

	if (!h)
		fatalx("http: out of memory");
	h->cf = cf;
	if (!*cf->http_listen) {
		log_info("http off: [gateway] http_listen is empty");
		return h;
	}
	if (unsub_prefix(h, err, errlen) < 0 || load_credentials(h, err, errlen) < 0 ||
	    !(h->http = evhttp_new(base))) {
		credentials_free(h);
		free(h);
		return NULL;
	}
	evhttp_set_timeout(h->http, TIMEOUT_S);
	evhttp_set_max_headers_size(h->http, MAX_HEADERS);
	evhttp_set_max_body_size(h->http, MAX_BODY);
	evhttp_set_gencb(h->http, on_request, h);
	if (http_bind(h, base, err, errlen) < 0) {
		evhttp_free(h->http);
		credentials_free(h);
		free(h);
		return NULL;
	}
	h->worker = worker_create(base, "http-db", store_worker_init, store_worker_fini, (void *)cf);
	h->status = status_new(base, cf, d);
	log_info("http listening on %s unsubscribe=%s status=/ metrics=/metrics auth=%s", cf->http_listen,
	    *h->prefix ? h->prefix : "-", h->credentials ? "basic" : "none");
	return h;
}

void
http_free(struct http *h)
{
	if (!h)
		return;
	/* Replies of the requests in the works go out before evhttp frees
	 * their connections. */
	worker_free(h->worker);
	status_free(h->status);
	if (h->http)
		evhttp_free(h->http);
	credentials_free(h);
	free(h);
}
