/*
 * compose_tool: one outgoing message, composed and signed as the gateway
 * would (gateway/compose, gateway/dkim), written to stdout, for tests that
 * check it with tools of their own (a DKIM verifier, a MIME parser).
 *
 *	compose_tool --from ADDR --to ADDR --subject TEXT --body FILE
 *	    [--charset utf-8|iso-2022-jp] [--reply-to ADDR] [--unsubscribe URI]
 *	    [--key PEM --selector S --domain D] [--time SECONDS]
 *
 * Text arguments are UTF-8. --domain is the DKIM d= and the right side of
 * the Message-ID (hato.test without a key). The charset actually written
 * and the reason of a fallback to UTF-8 go to stderr as
 * "charset=NAME fell_back=0|1 reason=...".
 *
 * Exits 0 with the message written, 1 when it cannot be composed or
 * signed (the reason on stderr), 2 on a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/compose.h"
#include "gateway/dkim.h"

#define BODY_MAX (16 * 1024 * 1024)

static void
usage(void)
{
	fprintf(stderr, "usage: compose_tool --from ADDR --to ADDR --subject TEXT --body FILE\n"
	    "    [--charset CS] [--reply-to ADDR] [--unsubscribe URI]\n"
	    "    [--key PEM --selector S --domain D] [--time SECONDS]\n");
	exit(2);
}

static char *
read_all(const char *path)
{
	FILE *fp = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, n;

	if (fp == NULL)
		return NULL;
	if ((buf = malloc(BODY_MAX + 1)) != NULL) {
		while ((n = fread(buf + len, 1, BODY_MAX - len, fp)) > 0)
			len += n;
		buf[len] = '\0';
		/* The body is text: no NUL can stand in it. */
		if (ferror(fp) || len == BODY_MAX || strlen(buf) != len) {
			free(buf);
			buf = NULL;
			errno = EINVAL;
		}
	}
	fclose(fp);
	return buf;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "from", required_argument, NULL, 'f' },
		{ "to", required_argument, NULL, 't' },
		{ "subject", required_argument, NULL, 's' },
		{ "body", required_argument, NULL, 'b' },
		{ "charset", required_argument, NULL, 'c' },
		{ "reply-to", required_argument, NULL, 'r' },
		{ "unsubscribe", required_argument, NULL, 'u' },
		{ "key", required_argument, NULL, 'k' },
		{ "selector", required_argument, NULL, 'S' },
		{ "domain", required_argument, NULL, 'd' },
		{ "time", required_argument, NULL, 'T' },
		{ NULL, 0, NULL, 0 },
	};
	struct compose_job j = { .job_id = 1, .domain = "hato.test" };
	struct compose_rcpt r = { .delivery_id = 1 };
	const char *body_path = NULL, *key_path = NULL, *selector = NULL, *unsub = NULL;
	struct dkim_key *key = NULL;
	struct compose_body *b;
	char err[512] = "", extra[2048], *body, *head;
	time_t now = time(NULL);
	size_t hl;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'f': j.from = optarg; break;
		case 't': r.to = optarg; break;
		case 's': j.subject = optarg; break;
		case 'b': body_path = optarg; break;
		case 'c': j.charset = optarg; break;
		case 'r': j.reply_to = optarg; break;
		case 'u': unsub = optarg; break;
		case 'k': key_path = optarg; break;
		case 'S': selector = optarg; break;
		case 'd': j.domain = optarg; break;
		case 'T': now = (time_t)strtoll(optarg, NULL, 10); break;
		default: usage();
		}
	}
	if (optind != argc || j.from == NULL || r.to == NULL || j.subject == NULL ||
	    body_path == NULL || (key_path != NULL && selector == NULL))
		usage();
	if ((body = read_all(body_path)) == NULL) {
		fprintf(stderr, "compose_tool: %s: %s\n", body_path, strerror(errno));
		return 1;
	}
	j.body = body;
	if (key_path != NULL &&
	    (key = dkim_key_load(key_path, j.domain, selector, err, sizeof(err))) == NULL) {
		fprintf(stderr, "compose_tool: %s\n", err);
		free(body);
		return 1;
	}
	j.dkim = key;
	if (unsub != NULL) {
		snprintf(extra, sizeof(extra), "List-Unsubscribe: <%s>\r\n"
		    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", unsub);
		r.extra = extra;
	}
	if ((b = compose_prepare(&j, err, sizeof(err))) == NULL) {
		fprintf(stderr, "compose_tool: %s\n", err);
		dkim_key_free(key);
		free(body);
		return 1;
	}
	fprintf(stderr, "charset=%s fell_back=%d reason=%s\n", b->charset_used,
	    b->fell_back ? 1 : 0, b->fallback);
	if ((head = compose_head(b, &r, now, &hl)) == NULL) {
		fprintf(stderr, "compose_tool: cannot write or sign the header\n");
		compose_body_free(b);
		dkim_key_free(key);
		free(body);
		return 1;
	}
	fwrite(head, 1, hl, stdout);
	fwrite(b->body, 1, b->body_len, stdout);
	free(head);
	compose_body_free(b);
	dkim_key_free(key);
	free(body);
	return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
}
