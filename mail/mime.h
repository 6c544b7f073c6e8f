#ifndef HATO_MAIL_MIME_H
#define HATO_MAIL_MIME_H
/*
 * mime: reading an incoming mail (GMime) into plain UTF-8 values. Pure: bytes
 * in, values out, no I/O. Transfer encodings, RFC 2047 words and the
 * charsets of Japanese mail (ISO-2022-JP, Shift_JIS/CP932, EUC-JP, UTF-8)
 * are decoded. CR and LF never survive in a header value returned here.
 */
#include <stddef.h>
#include <sys/types.h>

struct mime_part {
	char *content_type;	/* "text/csv", lower-cased */
	char *filename;		/* decoded, or NULL */
	char *charset;		/* declared charset parameter, or NULL */
	char *data;		/* transfer-decoded bytes, still in their charset; NULL for a part left in the mail (mime_parse_lazy) */
	size_t len;		/* length of data; 0 for a part left in the mail */
	void *lazy;		/* private: what a part left in the mail is read from */
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
	struct mime_part *attachments;	/* every other leaf part with a body; read with mime_part_open */
	size_t nattach;
	struct mime_header *headers;	/* top-level headers in order */
	size_t nheaders;
};

/* Once per process, before any mime_parse (not thread-safe itself). */
void mime_init(void);

/* Returns 0, or -1 with a specific reason in err. The mail is read in
 * place, never changed, and not needed once this returns. */
int mime_parse(const char *data, size_t len, struct mime_msg *out, char *err, size_t errlen);

/* Like mime_parse, but an attachment whose body (still encoded) is longer than lazy_min
 * octets is not decoded now: its data is NULL, and mime_part_open reads it in pieces.
 * The mail's bytes must then stay unchanged and alive until mime_msg_free. */
int mime_parse_lazy(const char *data, size_t len, size_t lazy_min, struct mime_msg *out, char *err, size_t errlen);

struct mime_reader;
/* The transfer-decoded bytes of a part, in pieces: from data when it was decoded, else
 * decoded from the mail as they are read. NULL when memory runs out. */
struct mime_reader *mime_part_open(const struct mime_part *p);
/* Up to n octets into buf: how many, 0 at the end, -1 on an error. */
ssize_t mime_reader_read(struct mime_reader *r, char *buf, size_t n);
void mime_reader_close(struct mime_reader *r);

/* First top-level header of that name (case-insensitive), or NULL. */
const char *mime_header(const struct mime_msg *m, const char *name);

/* After every reader of its parts is closed: the mail may go with it. */
void mime_msg_free(struct mime_msg *m);

#endif
