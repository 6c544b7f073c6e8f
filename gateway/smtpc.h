#ifndef HATO_GATEWAY_SMTPC_H
#define HATO_GATEWAY_SMTPC_H
/*
 * smtpc: one SMTP client session to one server, sending messages one
 * transaction at a time over one connection (EHLO with HELO fallback,
 * PIPELINING of MAIL/RCPT/DATA when offered, RSET after a refused
 * transaction, QUIT at the end, RFC 5321 timeouts per stage).
 *
 * The owner (a destination queue) opens a session, is told when it is ready
 * for a message, hands it one with smtpc_send, hears the outcome through
 * done(), and either sends another or quits. Every failure is reported as a
 * reply with the stage it came at; code 0 means no reply at all (connection
 * refused or lost, timeout, TLS failure), with the reason in text.
 *
 * TLS (RFC 3207 STARTTLS, or RFC 8314 implicit TLS) and AUTH (RFC 4954,
 * PLAIN or LOGIN) are set in the conf. A TLS that the conf requires and
 * that cannot be had ends the session at stage SMTPC_TLS before anything
 * else is sent; a refused AUTH ends it at stage SMTPC_AUTH with the
 * server's reply. No text of the session ever holds the password.
 */
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <event2/event.h>
#include <openssl/types.h>

enum smtpc_stage {
	SMTPC_CONNECT = 0, SMTPC_GREETING, SMTPC_EHLO, SMTPC_TLS, SMTPC_AUTH,
	SMTPC_MAIL, SMTPC_RCPT, SMTPC_DATA, SMTPC_DOT, SMTPC_QUIT,
};
const char *smtpc_stage_name(enum smtpc_stage s);	/* "connect", "rcpt", ... */

struct smtpc_reply {
	int code;		/* 0 when the server said nothing */
	char status[16];	/* enhanced status code "5.1.1", or "" */
	char text[512];		/* reply text without codes, lines joined by " " */
	enum smtpc_stage stage;
};

/* Values of smtpc_conf.tls. */
enum smtpc_tls_mode {
	SMTPC_TLS_NONE = 0,		/* plain SMTP, STARTTLS never tried */
	SMTPC_TLS_STARTTLS = 1,		/* STARTTLS required: no TLS, no mail */
	SMTPC_TLS_SMTPS = 2,		/* TLS from the first octet (port 465) */
	SMTPC_TLS_OPPORTUNISTIC = 3,	/* STARTTLS when offered, else clear */
};

struct smtpc_conf {
	const struct sockaddr *addr;	/* where to connect */
	socklen_t addrlen;
	const char *host;	/* server name: for logs and the default tls_name */
	const char *helo;	/* our name in EHLO/HELO */
	/* Timeouts in milliseconds; 0 means the RFC 5321 §4.5.3.2 value. */
	unsigned connect_ms, greeting_ms, command_ms, data_init_ms, data_block_ms, data_term_ms;

	/*
	 * TLS: one of enum smtpc_tls_mode (0 none, 1 STARTTLS required, 2
	 * SMTPS, 3 opportunistic STARTTLS, the MX default). In opportunistic
	 * mode a STARTTLS refused by the server means going on in clear, and
	 * a failed handshake means one new connection in clear (RFC 7435);
	 * there tls_verify is normally false, and the connection is
	 * described as "unverified" when the certificate would not pass.
	 * The TLS handshake has command_ms to finish.
	 */
	int tls;
	bool tls_verify;	/* refuse a certificate whose chain or name does not check */
	SSL_CTX *tls_ctx;	/* from tls_client_ctx; the session takes its own reference */
	const char *tls_name;	/* the name the certificate must carry, and SNI; NULL: host */
	/*
	 * AUTH after the (TLS) EHLO when auth_user is set: PLAIN when
	 * offered, else LOGIN. Never over a connection in clear unless
	 * auth_without_tls. The session keeps a copy of the password and
	 * wipes it when freed.
	 */
	const char *auth_user, *auth_password;
	bool auth_without_tls;
};

struct smtpc_msg {
	const char *mail_from;	/* envelope sender, RFC 5321 form without <> ("" for null) */
	const char *rcpt;	/* recipient, RFC 5321 form without <> */
	const char *head;	/* message = head then body, CRLF lines, not dot-stuffed */
	size_t head_len;
	const char *body;
	size_t body_len;
	void *arg;		/* the owner's */
};

struct smtpc;

struct smtpc_cbs {
	/* Connected and idle: call smtpc_send or smtpc_quit (now or later). */
	void (*ready)(struct smtpc *s, void *arg);
	/* The outcome of the message handed over: 2xx at DOT means accepted. */
	void (*done)(struct smtpc *s, const struct smtpc_msg *m, const struct smtpc_reply *r, void *arg);
	/* The session is over (after QUIT, or on failure with why != NULL).
	 * Nothing is called after this; the session is freed on return. */
	void (*closed)(struct smtpc *s, const struct smtpc_reply *why, void *arg);
};

/* Starts connecting; returns NULL only when no socket could be made. */
struct smtpc *smtpc_open(struct event_base *base, const struct smtpc_conf *c, const struct smtpc_cbs *cbs, void *arg);

/* Only when ready. m and the memory it points to must live until done(). */
int smtpc_send(struct smtpc *s, const struct smtpc_msg *m);

/* QUIT politely and close; closed(NULL) follows. */
void smtpc_quit(struct smtpc *s);

/* Drop the connection now; no callback follows. */
void smtpc_abort(struct smtpc *s);

/* Capabilities seen in the EHLO reply (valid once ready). */
bool smtpc_has_pipelining(const struct smtpc *s);

/*
 * The connection's TLS once its handshake is done, for the owner's log:
 * "TLSv1.3 TLS_AES_256_GCM_SHA384 verified" ("unverified" when the
 * certificate would not pass, which only a session without tls_verify
 * gets past), or "none". smtpc_tls_peer: the server certificate's subject
 * ("CN=relay.example"), or "".
 */
const char *smtpc_tls_info(const struct smtpc *s);
const char *smtpc_tls_peer(const struct smtpc *s);

#endif
