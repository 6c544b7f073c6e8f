/*
 * tls: client TLS for Hato's connections, on libevent's OpenSSL
 * bufferevents.
 *
 * Public: tls_client_ctx, tls_ctx_ref, tls_ctx_free, tls_client_bev,
 * tls_describe, tls_failure.
 *
 * A context is made once (at start-up or reload) and shared by every
 * connection that uses it; it holds the trust store and the optional
 * client certificate, and never says whether to verify: that is decided
 * per connection in tls_client_bev, because a relay with verification and
 * an MX host without it may share one context. Each connection's SSL
 * belongs to its bufferevent and dies with it, and so does its socket.
 *
 * Failures are texts for a log line or a delivery record, never a crash:
 * a context that cannot be made says which file and why; a handshake that
 * fails is explained by tls_failure from what OpenSSL recorded (the
 * verification result first, because "certificate verify failed" alone
 * tells an operator nothing).
 */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/tls.h"

/*
 * The reason of an OpenSSL error code, without its "error:0A000086:"
 * prefix; buf (the caller's: several threads may fail at once) holds it
 * when OpenSSL has no text for it.
 */
static const char *
err_reason(unsigned long e, char *buf, size_t size)
{
	const char *r;

	if (ERR_SYSTEM_ERROR(e))
		return strerror(ERR_GET_REASON(e));
	if ((r = ERR_reason_error_string(e)) != NULL)
		return r;
	ERR_error_string_n(e, buf, size);
	return buf;
}

/* err gets the text of fmt, then ": " and the first reason OpenSSL queued; the queue is emptied. */
static void __attribute__((format(printf, 3, 4)))
ctx_error(char *err, size_t errlen, const char *fmt, ...)
{
	unsigned long e = ERR_get_error();
	char rbuf[256];
	va_list ap;
	size_t n;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
		n = strlen(err);
		snprintf(err + n, errlen - n, ": %s", e != 0 ? err_reason(e, rbuf, sizeof rbuf) : "failed");
	}
	ERR_clear_error();
}

SSL_CTX *
tls_client_ctx(const char *ca_file, const char *cert_file, const char *key_file, char *err, size_t errlen)
{
	SSL_CTX *ctx;

	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		ctx_error(err, errlen, "cannot make a TLS context");
		return NULL;
	}
	/* Mail to carriers goes over modern stacks; below 1.2 is broken crypto. */
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
		ctx_error(err, errlen, "cannot set TLS 1.2 as the lowest version");
		goto fail;
	}
	if (ca_file != NULL && *ca_file != '\0') {
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
			ctx_error(err, errlen, "cannot load CA file %s", ca_file);
			goto fail;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		ctx_error(err, errlen, "cannot load the system trust store");
		goto fail;
	}
	if (cert_file != NULL && *cert_file != '\0') {
		if (key_file == NULL || *key_file == '\0')
			key_file = cert_file;
		if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
			ctx_error(err, errlen, "cannot load client certificate %s", cert_file);
			goto fail;
		}
		if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
			if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
				ctx_error(err, errlen, "client key %s does not match the certificate", key_file);
			else
				ctx_error(err, errlen, "cannot load client key %s", key_file);
			goto fail;
		}
		if (SSL_CTX_check_private_key(ctx) != 1) {
			ctx_error(err, errlen, "client key %s does not match the certificate", key_file);
			goto fail;
		}
	}
	/* Per connection (tls_client_bev); this is only the default. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	/* Idle connections between messages need not hold 2 x 16 KiB each. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *
tls_ctx_ref(SSL_CTX *ctx)
{
	if (ctx != NULL && SSL_CTX_up_ref(ctx) != 1)
		return NULL;
	return ctx;
}

void
tls_ctx_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
}

static bool
is_ip_literal(const char *name)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

/* The name to send and to check: SNI and host name, or an IP address (no SNI, RFC 6066 §3). */
static int
ssl_set_peer_name(SSL *ssl, const char *name)
{
	if (name == NULL || *name == '\0')
		return 1;
	if (is_ip_literal(name))
		return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name);
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	return SSL_set_tlsext_host_name(ssl, name) == 1 && SSL_set1_host(ssl, name) == 1;
}

struct bufferevent *
tls_client_bev(struct event_base *base, evutil_socket_t fd, SSL_CTX *ctx, const char *name, bool verify,
    int options, char *err, size_t errlen)
{
	struct bufferevent *bev;
	char rbuf[256];
	SSL *ssl;

	ERR_clear_error();
	if (ctx == NULL || (ssl = SSL_new(ctx)) == NULL) {
		snprintf(err, errlen, "TLS setup failed: %s", ctx == NULL ? "no TLS context" :
		    err_reason(ERR_peek_error(), rbuf, sizeof rbuf));
		ERR_clear_error();
		evutil_closesocket(fd);
		return NULL;
	}
	if (ssl_set_peer_name(ssl, name) != 1) {
		snprintf(err, errlen, "TLS setup failed: bad peer name \"%s\"", name);
		ERR_clear_error();
		SSL_free(ssl);
		evutil_closesocket(fd);
		return NULL;
	}
	/*
	 * Without verification the chain and the name are still checked, and
	 * the result kept for tls_describe; only the handshake goes on.
	 */
	SSL_set_verify(ssl, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
	    options | BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		/* libevent 2.1.12 frees the SSL itself here (CLOSE_ON_FREE),
		 * but not the socket, which the SSL's BIO does not own. */
		snprintf(err, errlen, "TLS setup failed: cannot make a TLS bufferevent");
		evutil_closesocket(fd);
		return NULL;
	}
	/*
	 * SMTP ends itself (the dot, QUIT): a peer closing without
	 * close_notify truncates nothing we rely on, and many servers do.
	 */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

/* The subject in RFC 2253 form ("CN=relay.example,O=..."), or "". */
static void
name_text(const X509_NAME *n, char *buf, size_t size)
{
	BIO *b;
	int len;

	buf[0] = '\0';
	if (n == NULL || size == 0 || (b = BIO_new(BIO_s_mem())) == NULL)
		return;
	if (X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) >= 0) {
		len = BIO_read(b, buf, (int)(size - 1));
		buf[len > 0 ? len : 0] = '\0';
	}
	BIO_free(b);
}

void
tls_describe(struct bufferevent *bev, char *info, size_t infolen, char *subject, size_t subjlen)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	X509 *peer;
	bool verified;

	if (ssl == NULL) {
		snprintf(info, infolen, "none");
		if (subjlen > 0)
			subject[0] = '\0';
		return;
	}
	peer = SSL_get0_peer_certificate(ssl);
	verified = peer != NULL && SSL_get_verify_result(ssl) == X509_V_OK;
	snprintf(info, infolen, "%s %s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl),
	    verified ? "verified" : "unverified");
	if (subjlen > 0)
		name_text(peer != NULL ? X509_get_subject_name(peer) : NULL, subject, subjlen);
}

/* The text of a verification result, naming what was expected for a name mismatch. */
static void
verify_text(SSL *ssl, long vr, char *buf, size_t size)
{
	X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
	X509 *peer = SSL_get0_peer_certificate(ssl);
	STACK_OF(X509) *chain;
	char subject[256] = "", *ip;
	const char *host;

	/* OpenSSL 3 keeps the peer certificate only once it verified; after
	 * a failure the chain the server sent is still there. */
	if (peer == NULL && (chain = SSL_get_peer_cert_chain(ssl)) != NULL && sk_X509_num(chain) > 0)
		peer = sk_X509_value(chain, 0);
	if (peer != NULL)
		name_text(X509_get_subject_name(peer), subject, sizeof subject);
	switch (vr) {
	case X509_V_ERR_HOSTNAME_MISMATCH:
		host = X509_VERIFY_PARAM_get0_host(param, 0);
		snprintf(buf, size, "host name mismatch: expected %s%s%s%s", host != NULL ? host : "?",
		    *subject != '\0' ? " (certificate " : "", subject, *subject != '\0' ? ")" : "");
		break;
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		ip = X509_VERIFY_PARAM_get1_ip_asc(param);
		snprintf(buf, size, "IP address mismatch: expected %s%s%s%s", ip != NULL ? ip : "?",
		    *subject != '\0' ? " (certificate " : "", subject, *subject != '\0' ? ")" : "");
		OPENSSL_free(ip);
		break;
	default:
		snprintf(buf, size, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
		break;
	}
}

bool
tls_failure(struct bufferevent *bev, char *buf, size_t size)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	unsigned long e, first = 0;
	bool verify_failed = false;
	char rbuf[256];
	long vr;

	if (size == 0)
		return false;
	buf[0] = '\0';
	/*
	 * The bufferevent hands its errors back newest first: keep the oldest.
	 * libevent 2.1 also stores SSL_get_error()'s small code (no library
	 * in it), which says nothing OpenSSL's own entries do not.
	 */
	while ((e = bufferevent_get_openssl_error(bev)) != 0) {
		if (ERR_GET_LIB(e) == 0)
			continue;
		first = e;
		if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED)
			verify_failed = true;
	}
	if (ssl != NULL && verify_failed && (vr = SSL_get_verify_result(ssl)) != X509_V_OK) {
		verify_text(ssl, vr, buf, size);
		return true;
	}
	if (first != 0)
		snprintf(buf, size, "%s", err_reason(first, rbuf, sizeof rbuf));
	return false;
}
