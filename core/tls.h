#ifndef HATO_CORE_TLS_H
#define HATO_CORE_TLS_H
/*
 * tls: the OpenSSL side of Hato's client connections. Every SSL_* call of
 * the daemons is in core/tls.c; sessions see a context made at start-up,
 * bufferevents that speak TLS, and texts that describe a connection or
 * say why its handshake failed.
 *
 *	SSL_CTX *ctx = tls_client_ctx(ca_file, NULL, NULL, err, sizeof err);
 *	...
 *	bev = tls_client_bev(base, fd, ctx, "relay.example", true, BEV_OPT_DEFER_CALLBACKS,
 *	    err, sizeof err);
 *	... BEV_EVENT_CONNECTED: handshake done, tls_describe(bev, ...)
 *	... BEV_EVENT_ERROR while handshaking: tls_failure(bev, ...)
 *
 * Verification is chosen per connection, not per context, so one context
 * serves relays that verify and MX hosts that do not. Nothing blocks: the
 * handshake runs inside the bufferevent, driven by the event loop.
 */
#include <stdbool.h>
#include <stddef.h>

#include <event2/bufferevent.h>
#include <event2/util.h>
#include <openssl/types.h>

/*
 * A client context: TLS 1.2 at least, the system's trust store or ca_file
 * (PEM, one or more CA certificates), and when cert_file is given a client
 * certificate (PEM, chain allowed) with its key (key_file, or the same
 * file when key_file is NULL). NULL with the reason in err when a file
 * cannot be read or the key does not match the certificate.
 */
SSL_CTX *tls_client_ctx(const char *ca_file, const char *cert_file, const char *key_file,
    char *err, size_t errlen);
/*
 * Contexts are counted: tls_ctx_ref takes another reference (for a holder
 * that may outlive its maker's, as a session across a reload), and
 * tls_ctx_free drops one. NULL stays NULL and freeing it does nothing.
 */
SSL_CTX *tls_ctx_ref(SSL_CTX *ctx);
void tls_ctx_free(SSL_CTX *ctx);

/*
 * A bufferevent that runs the client handshake over fd, a connected
 * socket that it takes over (closed when the bufferevent is freed, and
 * also when this call fails). name is sent as SNI (unless it is an IP
 * address) and is what the certificate must name; with verify false the
 * handshake goes on whatever the certificate says, and tls_describe tells
 * whether it would have passed. Options as for bufferevent_socket_new
 * (BEV_OPT_CLOSE_ON_FREE is implied). The bufferevent reports
 * BEV_EVENT_CONNECTED once the handshake is done, BEV_EVENT_ERROR when it
 * fails. NULL with the reason in err when it cannot be made.
 */
struct bufferevent *tls_client_bev(struct event_base *base, evutil_socket_t fd, SSL_CTX *ctx,
    const char *name, bool verify, int options, char *err, size_t errlen);

/*
 * The connection once its handshake is done: "TLSv1.3 TLS_AES_256_GCM_SHA384
 * verified" (or "unverified": the chain or the name did not check, which
 * only a connection without verification gets this far with), and the
 * peer certificate's subject ("CN=relay.example", "" without one).
 */
void tls_describe(struct bufferevent *bev, char *info, size_t infolen, char *subject, size_t subjlen);

/*
 * Why the handshake (or a later TLS read or write) failed, for a log line
 * or a delivery record. True when the peer's certificate was refused, with
 * buf saying why ("certificate verify failed: unable to get local issuer
 * certificate", "host name mismatch: expected relay.example (certificate
 * CN=mx.example)"); false otherwise, with buf holding OpenSSL's reason
 * ("wrong version number", "tlsv1 alert protocol version"), or "" when
 * OpenSSL recorded nothing (the peer only closed the connection). Consumes
 * the errors the bufferevent kept.
 */
bool tls_failure(struct bufferevent *bev, char *buf, size_t size);

#endif
