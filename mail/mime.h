#ifndef HATO_MAIL_MIME_H
#define HATO_MAIL_MIME_H
/*
 * mime: reading an incoming mail (GMime) into plain UTF-8 values. Pure: bytes
 * in, values out, no I/O. Transfer encodings, RFC 2047 words and the
 * charsets of Japanese mail (ISO-2022-JP, Shift_JIS/CP932, EUC-JP, UTF-8)
 * are decoded. CR and LF never survive in a header value returned here.
 */
#include <stddef.h>

struct mime_part {
	char *content_type;	/* "text/csv", lower-cased */
	char *filename;		/* decoded, or NULL */
	char *charset;		/* declared charset parameter, or NULL */
	char *data;		/* transfer-decoded bytes, still in their charset */
	size_t len;
};

struct mime_header {
	char *name;		/* as written */
	char *value;		/* unfolded, RFC 2047 decoded, UTF-8 */
};

struct mime_msg {
	char *from;		/* addr-spec of the first From address, or NULL */
	char *subject;		/* decoded UTF-8, or NULL */
	char *message_id;	/* without <>, or NULL */
	char *text;		/* first text/plain part (not an attachment) in UTF-8, LF line ends, or NULL */
	size_t text_len;
	struct mime_part *attachments;	/* every other leaf part with a body */
	size_t nattach;
	struct mime_header *headers;	/* top-level headers in order */
	size_t nheaders;
};

/* Once per process, before any mime_parse (not thread-safe itself). */
void mime_init(void);

/* Returns 0, or -1 with a specific reason in err. */
int mime_parse(const char *data, size_t len, struct mime_msg *out, char *err, size_t errlen);

/* First top-level header of that name (case-insensitive), or NULL. */
const char *mime_header(const struct mime_msg *m, const char *name);

void mime_msg_free(struct mime_msg *m);

#endif
