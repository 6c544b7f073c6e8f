/*
 * submission: the control block and the recipient list of a submission
 * mail (DESIGN.md, "Submission format").
 *
 *	submission_parse	struct mime_msg -> struct submission
 *	submission_free
 *
 * The first text/plain part starts with "Key: value" lines up to the first
 * empty line; the rest is the DM body. Keys are case-insensitive: Token,
 * To (repeatable, a list separated by ',' or ';', entries may be
 * "Name <addr>"), Subject, Send-At, Dry-Run, Rate, Send-By, From. A line that starts with white
 * space continues the previous value, as a folded header would. Any other
 * key is refused, so a submitter cannot set a header Hato does not allow.
 *
 * Recipients also come from list attachments: text/csv and its aliases,
 * named text/plain parts, application/vnd.ms-excel (how Windows labels a
 * .csv), and anything named *.csv or *.txt. Each record gives its first
 * column; blank records and a first header row (no '@' in its first
 * column) are skipped. An unnamed text/plain part is not read as a list:
 * it is what mailing-list software adds as a footer.
 *
 * Every recipient gets a verdict. Duplicates are found with a hash set on
 * the canonical address (local part as written, domain lower-cased), so a
 * list of 100,000 lines costs linear time.
 *
 * Memory: a list attachment is read from the mail a chunk at a time
 * (mime_part_open), never decoded or converted whole; the recipients are
 * kept packed (about the length of their addresses, see "struct
 * sub_block"), and the duplicate set costs 4 octets a slot. A list of
 * 652,173 addresses in a 20.5 MB mail takes 21 MB beside the mail.
 *
 * Pure: no I/O. Failure: -1 and a sentence for the submitter in err, with
 * the line it concerns ("control block line 3: unknown key 'Bcc'"); out is
 * then empty. The struct owns all its strings, so the mime_msg may be
 * freed first.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "intake/submission.h"
#include "mail/charset.h"

#define QUOTE_MAX	40	/* bytes of the submitter's text quoted in an error */

static char src_to[] = "To";

enum cb_key {
	K_TOKEN,
	K_TO,
	K_SUBJECT,
	K_SEND_AT,
	K_DRY_RUN,
	K_RATE,
	K_SEND_BY,
	K_FROM,
	K_NONE,
};

static const char *const cb_names[] = {
	[K_TOKEN] = "Token",
	[K_TO] = "To",
	[K_SUBJECT] = "Subject",
	[K_SEND_AT] = "Send-At",
	[K_DRY_RUN] = "Dry-Run",
	[K_RATE] = "Rate",
	[K_SEND_BY] = "Send-By",
	[K_FROM] = "From",
};

/*
 * Duplicate detection: open addressing on where an accepted address is
 * kept (pos_of), so that a set of a million costs 4 octets a slot.
 */
struct rset {
	uint32_t *slot;
	size_t cap;	/* a power of two, or 0 */
	size_t used;
};

/*
 * The recipients, packed in blocks. An entry is a flag octet; with
 * E_SOURCE a source index (2 octets, little-endian) and the line, else the
 * line's difference from the entry before (unsigned LEB128); an invalid
 * one's reason (a pointer to static text) and its text as written; any
 * other's canonical address, then with E_RAW its text as written.
 */
#define SUB_BLOCK	(1u << 18)	/* an offset in a block fits in 18 bits */
#define SUB_BLOCKS_MAX	(1u << 14)	/* so a position fits in 32 */
#define E_VERDICT	0x03
#define E_QUOTE		0x04
#define E_RAW		0x08
#define E_SOURCE	0x10
#define SOURCES_MAX	65535
#define CHUNK_DEFAULT	65536

struct sub_block {
	size_t used, cap;
	char data[];
};

struct parse {
	struct submission *s;
	struct rset set;
	size_t chunk;		/* octets of an attachment read at a time */
	size_t last_source;	/* of the entry written last */
	unsigned last_line;
	char *err;
	size_t errlen;
};

/* One control-block value, with the text line each part of it came from. */
struct cb_value {
	enum cb_key key;
	size_t line;
	char *val;
	size_t len, cap;
	size_t *seg_off, *seg_line;
	size_t nseg, segcap;
};

/* Errors quote the submitter's text: shortened, cut on a UTF-8 boundary. */
static const char *
quote_short(const char *s, size_t len, char *buf, size_t size)
{
	size_t n = len;

	if (n > QUOTE_MAX) {
		n = QUOTE_MAX;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	snprintf(buf, size, "%.*s%s", (int)n, s, n < len ? "..." : "");
	return buf;
}

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void
trim(const char **s, size_t *len)
{
	for (;;) {
		if (*len > 0 && is_space(**s))
			(*s)++, (*len)--;
		else if (*len >= 3 && memcmp(*s, "\xe3\x80\x80", 3) == 0)
			*s += 3, *len -= 3;	/* U+3000 IDEOGRAPHIC SPACE */
		else
			break;
	}
	for (;;) {
		if (*len > 0 && is_space((*s)[*len - 1]))
			(*len)--;
		else if (*len >= 3 && memcmp(*s + *len - 3, "\xe3\x80\x80", 3) == 0)
			*len -= 3;
		else
			break;
	}
}

static bool
blank(const char *s, size_t len)
{
	trim(&s, &len);
	return len == 0;
}

static char *
dup_n(const char *s, size_t len)
{
	char *p = malloc(len + 1);

	if (p != NULL) {
		memcpy(p, s, len);
		p[len] = '\0';
	}
	return p;
}

/* FNV-1a over the canonical form "local@domain", mixed (murmur3's
 * finalizer) so that the low bits serve as an index. */
static uint64_t
addr_hash(const char *canon)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (const unsigned char *p = (const unsigned char *)canon; *p != '\0'; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

static const char *
addr_at(const struct submission *s, uint32_t pos)
{
	return s->blocks[pos >> 18]->data + (pos & (SUB_BLOCK - 1));
}

static int
rset_grow(struct rset *set, const struct submission *s)
{
	size_t cap = set->cap ? set->cap * 2 : 1024, i, j;
	uint32_t *slot = calloc(cap, sizeof(*slot));

	if (slot == NULL)
		return -1;
	for (i = 0; i < set->cap; i++) {
		if (set->slot[i] == 0)
			continue;
		j = addr_hash(addr_at(s, set->slot[i])) & (cap - 1);
		while (slot[j] != 0)
			j = (j + 1) & (cap - 1);
		slot[j] = set->slot[i];
	}
	free(set->slot);
	set->slot = slot;
	set->cap = cap;
	return 0;
}

/* The slot for canon: empty (it is new) or holding it (a duplicate).
 * -1 when the set cannot grow. Filled to three quarters at most. */
static ssize_t
rset_find(struct rset *set, const struct submission *s, const char *canon)
{
	size_t j;

	if ((set->used + 1) * 4 > set->cap * 3 && rset_grow(set, s) == -1)
		return -1;
	j = addr_hash(canon) & (set->cap - 1);
	for (; set->slot[j] != 0; j = (j + 1) & (set->cap - 1))
		if (strcmp(addr_at(s, set->slot[j]), canon) == 0)
			break;
	return (ssize_t)j;
}

static int
oom(struct parse *p)
{
	snprintf(p->err, p->errlen, "out of memory reading the submission");
	return -1;
}

/* Room for len octets at the end of the blocks; the block is the last. */
static char *
list_room(struct parse *p, size_t len)
{
	struct submission *s = p->s;
	struct sub_block *b = s->nblocks ? s->blocks[s->nblocks - 1] : NULL, **nb;
	size_t cap;

	if (b != NULL && b->cap - b->used >= len)
		return b->data + b->used;
	if (s->nblocks + 1 >= SUB_BLOCKS_MAX) {
		snprintf(p->err, p->errlen, "the recipient list is too long");
		return NULL;
	}
	if (s->nblocks == s->capblocks) {
		cap = s->capblocks ? s->capblocks * 2 : 16;
		if ((nb = realloc(s->blocks, cap * sizeof(*nb))) == NULL)
			return oom(p), NULL;
		s->blocks = nb;
		s->capblocks = cap;
	}
	/* A long entry (a line of a megabyte) gets a block of its own; it
	 * starts the block, so its address is still within 18 bits. */
	cap = len > SUB_BLOCK ? len : SUB_BLOCK;
	if ((b = malloc(sizeof(*b) + cap)) == NULL)
		return oom(p), NULL;
	b->used = 0;
	b->cap = cap;
	s->blocks[s->nblocks++] = b;
	return b->data;
}

static size_t
put_uleb(char *d, unsigned v)
{
	size_t n = 0;

	do {
		d[n++] = (char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v != 0);
	return n;
}

/* Appends one entry; *addr_pos is where its address went (0: none). */
static int
entry_put(struct parse *p, unsigned flags, size_t source, unsigned line, const char *reason,
    const char *addr, size_t alen, const char *raw, size_t rlen, uint32_t *addr_pos)
{
	struct submission *s = p->s;
	char head[1 + 2 + 5 + sizeof(reason)], *d;
	size_t n = 1, total;

	if (source != p->last_source || line < p->last_line || s->nrcpt == 0) {
		flags |= E_SOURCE;
		head[n++] = (char)(source & 0xff);
		head[n++] = (char)(source >> 8);
		n += put_uleb(head + n, line);
	} else
		n += put_uleb(head + n, line - p->last_line);
	head[0] = (char)flags;
	if ((flags & E_VERDICT) == RCPT_INVALID) {
		memcpy(head + n, &reason, sizeof(reason));
		n += sizeof(reason);
	}
	total = n + (addr ? alen + 1 : 0) + (raw ? rlen + 1 : 0);
	if ((d = list_room(p, total)) == NULL)
		return -1;
	memcpy(d, head, n);
	*addr_pos = 0;
	if (addr != NULL) {
		*addr_pos = (uint32_t)((s->nblocks - 1) << 18 |
		    (size_t)(d + n - s->blocks[s->nblocks - 1]->data));
		memcpy(d + n, addr, alen);
		d[n + alen] = '\0';
		n += alen + 1;
	}
	if (raw != NULL) {
		memcpy(d + n, raw, rlen);
		d[n + rlen] = '\0';
	}
	s->blocks[s->nblocks - 1]->used += total;
	s->nrcpt++;
	p->last_source = source;
	p->last_line = line;
	return 0;
}

static int
rcpt_add(struct parse *p, const char *raw, size_t len, size_t source, size_t line)
{
	struct submission *s = p->s;
	struct mail_addr a;
	const char *reason = NULL;
	char canon[ADDR_MAX + 1];
	unsigned flags;
	uint32_t pos;
	ssize_t slot;
	size_t n;
	bool own;

	trim(&raw, &len);
	if (s->nrcpt >= UINT32_MAX - 1 || line > UINT32_MAX)
		return oom(p);
	/* raw is kept as a C string: a NUL would hide what follows it. */
	if (memchr(raw, '\0', len))
		reason = "NUL byte in the line";
	else if (addr_parse(raw, len, &a, &reason) == -1 && reason == NULL)
		reason = "not an address";
	/* Kept as a C string: up to a NUL, as a receipt would show it. */
	if (reason != NULL)
		return entry_put(p, RCPT_INVALID, source, (unsigned)line, reason, NULL, 0, raw,
		    strnlen(raw, len), &pos);
	n = addr_canonical(&a, canon, sizeof(canon));
	if (n >= sizeof(canon))
		return oom(p);
	if ((slot = rset_find(&p->set, s, canon)) == -1)
		return oom(p);
	/* Most lines of a list are the canonical address already: one copy. */
	own = !(n == len && memcmp(canon, raw, len) == 0);
	flags = (p->set.slot[slot] ? RCPT_DUPLICATE : RCPT_ACCEPTED) | (a.needs_quote ? E_QUOTE : 0) |
	    (own ? E_RAW : 0);
	if (entry_put(p, flags, source, (unsigned)line, NULL, canon, n, own ? raw : NULL, len, &pos) == -1)
		return -1;
	if (p->set.slot[slot] == 0) {
		p->set.slot[slot] = pos;
		p->set.used++;
		s->naccepted++;
	}
	return 0;
}

/* ---- control block ---------------------------------------------------- */

static enum cb_key
cb_lookup(const char *key, size_t len)
{
	size_t k;

	for (k = 0; k < K_NONE; k++)
		if (strlen(cb_names[k]) == len && strncasecmp(key, cb_names[k], len) == 0)
			return (enum cb_key)k;
	return K_NONE;
}

/* "Key: value" (or the full-width '：' a Japanese input method types):
 * the key's length, or 0 when the line has no colon. */
static size_t
cb_split(const char *line, size_t len, size_t *val_off)
{
	const char *c = memchr(line, ':', len);
	const char *w = memmem(line, len, "\xef\xbc\x9a", 3);

	if (w != NULL && (c == NULL || w < c)) {
		*val_off = (size_t)(w - line) + 3;
		return (size_t)(w - line);
	}
	if (c == NULL)
		return 0;
	*val_off = (size_t)(c - line) + 1;
	return (size_t)(c - line);
}

static int
cb_append(struct cb_value *v, const char *s, size_t len, size_t line)
{
	size_t cap, *o, *l;
	char *p;

	if (v->len + len + 1 > v->cap) {
		cap = (v->len + len + 1) * 2;
		if ((p = realloc(v->val, cap)) == NULL)
			return -1;
		v->val = p;
		v->cap = cap;
	}
	if (v->nseg == v->segcap) {
		cap = v->segcap ? v->segcap * 2 : 8;
		if ((o = realloc(v->seg_off, cap * sizeof(*o))) == NULL)
			return -1;
		v->seg_off = o;
		if ((l = realloc(v->seg_line, cap * sizeof(*l))) == NULL)
			return -1;
		v->seg_line = l;
		v->segcap = cap;
	}
	v->seg_off[v->nseg] = v->len;
	v->seg_line[v->nseg++] = line;
	memcpy(v->val + v->len, s, len);
	v->len += len;
	v->val[v->len] = '\0';
	return 0;
}

static void
cb_reset(struct cb_value *v)
{
	free(v->val);
	free(v->seg_off);
	free(v->seg_line);
	memset(v, 0, sizeof(*v));
	v->key = K_NONE;
}

/* The line of the segment holding off: a binary search, as a To value
 * folded over many lines holds many entries. */
static size_t
cb_line_at(const struct cb_value *v, size_t off)
{
	size_t lo = 0, hi = v->nseg, mid;

	while (hi - lo > 1) {
		mid = lo + (hi - lo) / 2;
		if (v->seg_off[mid] <= off)
			lo = mid;
		else
			hi = mid;
	}
	return v->seg_line[lo];
}

/* Entries of a To value: split on ',' and ';' outside quotes and <>. */
static int
cb_to(struct parse *p, const struct cb_value *v)
{
	size_t i, start = 0, first;
	bool quoted = false;
	int angle = 0;

	for (i = 0; i <= v->len; i++) {
		char c = i < v->len ? v->val[i] : ',';

		if (quoted && c == '\\' && i + 1 < v->len) {
			i++;
			continue;
		}
		if (c == '"')
			quoted = !quoted;
		else if (!quoted && c == '<')
			angle++;
		else if (!quoted && c == '>' && angle > 0)
			angle--;
		else if ((c == ',' || c == ';') && ((!quoted && angle == 0) || i == v->len)) {
			/* The line is the one the address itself starts on. */
			for (first = start; first < i && is_space(v->val[first]); first++)
				;
			if (!blank(v->val + start, i - start) &&
			    rcpt_add(p, v->val + start, i - start, 0,
			    cb_line_at(v, first)) == -1)
				return -1;
			start = i + 1;
		}
	}
	return 0;
}

static int
cb_dry_run(struct parse *p, const char *val, size_t line)
{
	static const char *const yes[] = { "yes", "true", "1" };
	static const char *const no[] = { "no", "false", "0" };
	char q[QUOTE_MAX * 2];
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(val, yes[i]) == 0) {
			p->s->dry_run = true;
			return 0;
		}
		if (strcasecmp(val, no[i]) == 0) {
			p->s->dry_run = false;
			return 0;
		}
	}
	snprintf(p->err, p->errlen, "control block line %zu: Dry-Run must be "
	    "yes or no, not '%s'", line, quote_short(val, strlen(val), q, sizeof(q)));
	return -1;
}

/* A single-valued key: kept once, trimmed; empty means absent. */
static int
cb_single(struct parse *p, char **dst, const struct cb_value *v)
{
	const char *s = v->val;
	size_t len = v->len;

	trim(&s, &len);
	if (len == 0)
		return 0;
	return (*dst = dup_n(s, len)) == NULL ? oom(p) : 0;
}

static int
cb_commit(struct parse *p, struct cb_value *v)
{
	struct submission *s = p->s;
	const char *val;
	size_t len;
	char *tmp;
	int rc;

	switch (v->key) {
	case K_TO:
		return cb_to(p, v);
	case K_TOKEN:
		return cb_single(p, &s->token, v);
	case K_SUBJECT:
		return cb_single(p, &s->subject, v);
	case K_SEND_AT:
		return cb_single(p, &s->send_at, v);
	case K_RATE:
		return cb_single(p, &s->rate, v);
	case K_SEND_BY:
		return cb_single(p, &s->send_by, v);
	case K_FROM:
		return cb_single(p, &s->from, v);
	case K_DRY_RUN:
		val = v->val;
		len = v->len;
		trim(&val, &len);
		if ((tmp = dup_n(val, len)) == NULL)
			return oom(p);
		rc = cb_dry_run(p, tmp, v->line);
		free(tmp);
		return rc;
	default:
		return 0;
	}
}

static int
cb_key_line(struct parse *p, struct cb_value *v, const char *line, size_t len,
    size_t lineno, bool first, unsigned int *seen)
{
	const char *key = line;
	size_t klen, voff = 0;
	enum cb_key k = K_NONE;
	char q[QUOTE_MAX * 2];

	if ((klen = cb_split(line, len, &voff)) != 0) {
		trim(&key, &klen);
		k = cb_lookup(key, klen);
	}
	if (k == K_NONE && first) {
		snprintf(p->err, p->errlen, "no control block: the first text/plain "
		    "part must start with Key: value lines (To:, Subject:, ...)");
		return -1;
	}
	if (k == K_NONE && klen == 0) {
		snprintf(p->err, p->errlen, "control block line %zu: not a Key: value "
		    "line (end the control block with an empty line)", lineno);
		return -1;
	}
	if (k == K_NONE) {
		snprintf(p->err, p->errlen, "control block line %zu: unknown key '%s'",
		    lineno, quote_short(key, klen, q, sizeof(q)));
		return -1;
	}
	if (k != K_TO && (*seen & (1u << k))) {
		snprintf(p->err, p->errlen, "control block line %zu: %s given twice",
		    lineno, cb_names[k]);
		return -1;
	}
	*seen |= 1u << k;
	v->key = k;
	v->line = lineno;
	return cb_append(v, line + voff, len - voff, lineno) == -1 ? oom(p) : 0;
}

/*
 * Reads the control block of text; *body is set to where the DM starts
 * (the end of the text when no empty line ends the block).
 */
static int
parse_control(struct parse *p, const char *text, size_t tlen, const char **body)
{
	struct cb_value v = { .key = K_NONE };
	size_t pos = 0, n, lineno = 0;
	unsigned int seen = 0;
	bool first = true;
	const char *line;
	int rc = 0;

	*body = text + tlen;
	while (pos < tlen) {
		line = text + pos;
		n = strcspn(line, "\n");
		if (pos + n > tlen)
			n = tlen - pos;
		pos += n + (pos + n < tlen);
		lineno++;
		if (blank(line, n)) {
			if (first)
				continue;	/* blank lines before the block */
			*body = text + pos;
			break;
		}
		if ((line[0] == ' ' || line[0] == '\t') && v.key != K_NONE) {
			if (cb_append(&v, line, n, lineno) == -1) {
				rc = oom(p);
				break;
			}
			continue;
		}
		if (v.key != K_NONE && (rc = cb_commit(p, &v)) == -1)
			break;
		cb_reset(&v);
		if ((rc = cb_key_line(p, &v, line, n, lineno, first, &seen)) == -1)
			break;
		first = false;
	}
	if (rc == 0 && v.key != K_NONE)
		rc = cb_commit(p, &v);
	cb_reset(&v);
	if (rc == 0 && first) {
		snprintf(p->err, p->errlen, "no control block: the first text/plain "
		    "part must start with Key: value lines (To:, Subject:, ...)");
		rc = -1;
	}
	return rc;
}

/* ---- list attachments ------------------------------------------------- */

static bool
ends_with(const char *s, const char *suffix)
{
	size_t n, m = strlen(suffix);

	if (s == NULL || (n = strlen(s)) < m)
		return false;
	return strcasecmp(s + n - m, suffix) == 0;
}

static bool
is_workbook(const struct mime_part *a)
{
	return ends_with(a->filename, ".xls") || ends_with(a->filename, ".xlsx") ||
	    strcmp(a->content_type,
	    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet") == 0;
}

static bool
is_list(const struct mime_part *a)
{
	static const char *const types[] = {
		"text/csv", "application/csv", "text/comma-separated-values",
		"text/x-csv", "application/x-csv", "application/vnd.ms-excel",
		"text/tab-separated-values",
	};
	size_t i;

	if (ends_with(a->filename, ".csv") || ends_with(a->filename, ".txt"))
		return true;
	if (strcmp(a->content_type, "text/plain") == 0)
		return a->filename != NULL;
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(a->content_type, types[i]) == 0)
			return true;
	return false;
}

/* CRLF and a lone CR (old Mac Excel) to LF, in place. */
static size_t
to_lf(char *s, size_t len)
{
	size_t r, w = 0;

	for (r = 0; r < len; r++) {
		if (s[r] == '\r') {
			s[w++] = '\n';
			if (r + 1 < len && s[r + 1] == '\n')
				r++;
		} else
			s[w++] = s[r];
	}
	s[w] = '\0';
	return w;
}

static bool
is_sep(char c)
{
	return c == ',' || c == ';' || c == '\t';
}

/* A CSV field: where it ends (at a separator, '\n' or the end). Quotes
 * are tracked so "a,b"@example.com stays whole. */
static size_t
field_end_raw(const char *s, size_t len, size_t i)
{
	bool quoted = false;

	for (; i < len && s[i] != '\n'; i++) {
		if (s[i] == '"')
			quoted = !quoted;
		else if (!quoted && is_sep(s[i]))
			break;
	}
	return i;
}

/*
 * The first column of the record at *pos: a quoted CSV field is unquoted
 * into *own; a field such as "a b"@example.com, whose closing quote is
 * not followed by a separator, is an address with a quoted local part and
 * is taken as written. Returns the field as (*f, *flen).
 */
static int
csv_first(const char *s, size_t len, size_t *pos, const char **f, size_t *flen, char **own)
{
	size_t i = *pos, j, k, e;
	char *u;

	while (i < len && (s[i] == ' ' || s[i] == '\t'))
		i++;
	*own = NULL;
	if (i < len && s[i] == '"') {
		for (j = i + 1; j < len && s[j] != '\n'; j++) {
			if (s[j] == '"' && j + 1 < len && s[j + 1] == '"')
				j++;
			else if (s[j] == '"')
				break;
		}
		for (e = j + 1; e < len && (s[e] == ' ' || s[e] == '\t'); e++)
			;
		if (j < len && s[j] == '"' && (e >= len || s[e] == '\n' || is_sep(s[e]))) {
			if ((u = *own = malloc(j - i)) == NULL)
				return -1;
			for (k = i + 1, *flen = 0; k < j; k++) {
				u[(*flen)++] = s[k];
				if (s[k] == '"')
					k++;
			}
			*f = u;
			*pos = e;
			return 0;
		}
	}
	e = field_end_raw(s, len, i);
	*f = s + i;
	*flen = e - i;
	*pos = e;
	return 0;
}

/* Skips the other columns to the start of the next record; a quoted field
 * there may hold line breaks. Tells whether they were all empty. */
static size_t
csv_rest(const char *s, size_t len, size_t i, size_t *lines, bool *empty, bool *ended)
{
	bool field_start = false;

	*empty = true;
	while (i < len && s[i] != '\n') {
		if (is_sep(s[i])) {
			field_start = true;
			i++;
			continue;
		}
		if (field_start && s[i] == '"') {
			for (i++; i < len; i++) {
				if (s[i] == '"' && i + 1 < len && s[i + 1] == '"')
					i++, *empty = false;
				else if (s[i] == '"')
					break;
				else if (s[i] == '\n')
					(*lines)++;
				else if (!is_space(s[i]))
					*empty = false;
			}
			if (i >= len)
				break;
		} else if (!is_space(s[i]))
			*empty = false;
		if (s[i] != ' ' && s[i] != '\t')
			field_start = false;
		i++;
	}
	if ((*ended = i < len))
		(*lines)++;
	return i < len ? i + 1 : i;
}

/*
 * A list attachment is read a chunk at a time, each cut at a line end (no
 * character of the charsets read here holds a CR or LF octet), converted
 * to UTF-8 on its own, and its records parsed; a record whose quoted
 * field goes on past the chunk waits for the next one. A chunk grows only
 * for a line (or such a record) longer than itself.
 */
struct chunker {
	struct mime_reader *r;
	size_t want;		/* octets to gather before a cut */
	char *buf;
	size_t len, cap, cut;	/* cut: octets handed out last time */
	bool eof;
};

/* After the last line end of buf (a lone CR counts; a CR at the very end
 * may be half of a CRLF); 0 when there is none. */
static size_t
line_cut(const char *buf, size_t len)
{
	const char *nl = memrchr(buf, '\n', len), *cr;

	if (nl != NULL)
		return (size_t)(nl - buf) + 1;
	cr = len > 1 ? memrchr(buf, '\r', len - 1) : NULL;
	return cr != NULL ? (size_t)(cr - buf) + 1 : 0;
}

/* 1 and the next piece, 0 at the end, -1 when the part cannot be read. */
static int
chunk_next(struct chunker *c, const char **piece, size_t *n)
{
	size_t at = 0, room;
	ssize_t k;
	char *nb;

	if (c->cut > 0) {
		memmove(c->buf, c->buf + c->cut, c->len - c->cut);
		c->len -= c->cut;
		c->cut = 0;
	}
	while (!c->eof && (c->len < c->want || (at = line_cut(c->buf, c->len)) == 0)) {
		if (c->cap - c->len < c->want) {
			room = c->cap ? c->cap * 2 : c->want;
			while (room - c->len < c->want)
				room *= 2;
			if ((nb = realloc(c->buf, room)) == NULL)
				return -1;
			c->buf = nb;
			c->cap = room;
		}
		if ((k = mime_reader_read(c->r, c->buf + c->len, c->want)) < 0)
			return -1;
		if (k == 0)
			c->eof = true;
		c->len += (size_t)k;
	}
	if (c->eof)
		at = c->len;
	if (at == 0)
		return 0;
	c->cut = at;
	*piece = c->buf;
	*n = at;
	return 1;
}

/* fn on every piece of the part, in order: 0, fn's -1, or -1 with err
 * set when the part cannot be read. */
static int
each_piece(struct parse *p, const struct mime_part *a, const char *name,
    int (*fn)(void *, const char *, size_t), void *arg)
{
	struct chunker c = { .want = p->chunk };
	const char *piece;
	size_t n;
	int rc;
	char q[QUOTE_MAX * 2];

	if ((c.r = mime_part_open(a)) == NULL)
		return oom(p);
	while ((rc = chunk_next(&c, &piece, &n)) == 1 && (rc = fn(arg, piece, n)) == 0)
		;
	if (rc == -1 && c.r != NULL && p->err[0] == '\0')
		snprintf(p->err, p->errlen, "attachment '%s' cannot be read",
		    quote_short(name, strlen(name), q, sizeof(q)));
	mime_reader_close(c.r);
	free(c.buf);
	return rc;
}

/* The records of a list: its UTF-8 text with LF line ends, in pieces. */
struct records {
	struct parse *p;
	size_t source;
	size_t line;
	bool header_done;
	char *t;		/* the text not parsed yet */
	size_t len, cap;
	size_t retry_at;	/* parse again once len is this long */
	bool started;		/* a piece was converted */
	const char *charset;	/* what each piece is converted from */
	const char *name;
};

/* The records that end within r->t (all of them when last); keeps the
 * rest for the next piece. */
static int
records_parse(struct records *r, bool last)
{
	size_t pos = 0, start, lines, rs, flen;
	bool rest_empty, ended;
	const char *f;
	char *own;
	int rc = 0;

	while (pos < r->len && rc == 0) {
		rs = pos;
		start = r->line;
		if (csv_first(r->t, r->len, &pos, &f, &flen, &own) == -1)
			return oom(r->p);
		lines = 0;
		pos = csv_rest(r->t, r->len, pos, &lines, &rest_empty, &ended);
		if (!ended && !last) {
			free(own);
			pos = rs;
			break;
		}
		r->line += lines;
		trim(&f, &flen);
		if (flen == 0 && rest_empty) {
			free(own);
			continue;
		}
		/* A title row: "email", "address", "メールアドレス". */
		if (!r->header_done && memchr(f, '@', flen) == NULL) {
			r->header_done = true;
			free(own);
			continue;
		}
		r->header_done = true;
		rc = rcpt_add(r->p, f, flen, r->source, start);
		free(own);
	}
	if (pos > 0) {
		memmove(r->t, r->t + pos, r->len - pos);
		r->len -= pos;
	}
	/* A record still open (a quoted field over many lines) is parsed
	 * again only once the text has doubled: linear, however long. */
	r->retry_at = r->len > 0 ? r->len * 2 : 0;
	return rc;
}

/* Room for n more octets and a NUL in the text. */
static int
records_room(struct records *r, size_t n)
{
	size_t cap;
	char *nt;

	if (r->cap - r->len >= n + 1)
		return 0;
	cap = r->cap ? r->cap : 4096;
	while (cap - r->len < n + 1)
		cap *= 2;
	if ((nt = realloc(r->t, cap)) == NULL)
		return oom(r->p);
	r->t = nt;
	r->cap = cap;
	return 0;
}

/* Appends UTF-8 text, CRLF and lone CR turned to LF. */
static int
records_add(struct records *r, const char *u, size_t n)
{
	if (records_room(r, n) == -1)
		return -1;
	memcpy(r->t + r->len, u, n);
	r->len += to_lf(r->t + r->len, n);
	return 0;
}

static int
not_text(struct parse *p, const char *name)
{
	char q[QUOTE_MAX * 2];

	snprintf(p->err, p->errlen, "attachment '%s' is not text in UTF-8, "
	    "Shift_JIS or ISO-2022-JP", quote_short(name, strlen(name), q, sizeof(q)));
	return -1;
}

static int
records_piece(void *arg, const char *piece, size_t n)
{
	struct records *r = arg;
	size_t ulen;
	char *u;
	int rc;

	if ((u = charset_piece_to_utf8(r->charset, piece, n, !r->started, &ulen)) == NULL)
		return not_text(r->p, r->name);
	r->started = true;
	rc = records_add(r, u, ulen);
	free(u);
	if (rc == 0 && r->len >= r->retry_at)
		rc = records_parse(r, false);
	return rc;
}

/* What the pieces of a part are read in: the declared charset when all
 * of them are valid in it, else the guess over all of them. */
struct cs_scan {
	const char *try;	/* a charset every piece must convert from */
	bool fits;
	struct charset_guess g;
};

static int
scan_piece(void *arg, const char *piece, size_t n)
{
	struct cs_scan *c = arg;
	char *u;

	if (c->try != NULL && c->fits) {
		if ((u = charset_to_utf8(c->try, piece, n, NULL)) == NULL)
			c->fits = false;
		free(u);
	}
	if (c->try == NULL)
		charset_guess_feed(&c->g, piece, n);
	return c->try != NULL && !c->fits ? 1 : 0;
}

/* Whether every piece of the part converts from cs. */
static int
fits_all(struct parse *p, const struct mime_part *a, const char *name, const char *cs, bool *fits)
{
	struct cs_scan c = { .try = cs, .fits = true };
	int rc = each_piece(p, a, name, scan_piece, &c);

	*fits = c.fits;
	return rc == -1 ? -1 : 0;
}

/* The charset to read the part in: 0 and *cs (NULL: the whole part must
 * be read at once: UTF-16, ISO-2022-JP, anything not charset_cuttable),
 * or -1. */
static int
pick_charset(struct parse *p, const struct mime_part *a, const char *name, const char **cs)
{
	struct cs_scan c = { 0 };
	bool fits;

	*cs = NULL;
	if (a->charset != NULL && !charset_cuttable(a->charset))
		return 0;
	if (a->charset != NULL) {
		if (fits_all(p, a, name, a->charset, &fits) == -1)
			return -1;
		if (fits)
			return (*cs = a->charset), 0;
	}
	if (each_piece(p, a, name, scan_piece, &c) == -1)
		return -1;
	if ((*cs = charset_guess_name(&c.g)) != NULL) {
		if (**cs != '\0' && !charset_cuttable(*cs))
			*cs = NULL;
		else if (**cs == '\0')
			return not_text(p, name);
		return 0;
	}
	if (fits_all(p, a, name, "CP932", &fits) == -1)
		return -1;
	*cs = fits ? "CP932" : "EUC-JP";
	return 0;
}

/* UTF-16 (Excel's "Unicode text"), ISO-2022-JP and the charsets nobody
 * writes lists in: the whole part, converted at once. */
static int
whole_piece(void *arg, const char *piece, size_t n)
{
	struct records *r = arg;

	if (records_room(r, n) == -1)
		return -1;
	memcpy(r->t + r->len, piece, n);
	r->len += n;
	return 0;
}

static int
parse_whole(struct records *r, const struct mime_part *a)
{
	char *raw, *text = NULL;
	size_t rawlen, len = 0;
	int rc;

	if (each_piece(r->p, a, r->name, whole_piece, r) == -1)
		return -1;
	raw = r->t;
	rawlen = r->len;
	if (a->charset != NULL)
		text = charset_to_utf8(a->charset, raw ? raw : "", rawlen, &len);
	if (text == NULL)
		text = charset_guess_to_utf8(raw ? raw : "", rawlen, &len);
	free(raw);
	r->t = NULL;
	r->len = r->cap = 0;
	if (text == NULL)
		return not_text(r->p, r->name);
	r->t = text;
	r->cap = len + 1;
	r->len = to_lf(text, len);
	rc = records_parse(r, true);
	return rc;
}

static int
parse_attachment(struct parse *p, const struct mime_part *a)
{
	const char *name = a->filename ? a->filename : a->content_type;
	struct records r = { .p = p, .line = 1, .name = name };
	struct submission *s = p->s;
	char q[QUOTE_MAX * 2], **ns;
	int rc;

	if (is_workbook(a)) {
		snprintf(p->err, p->errlen, "attachment '%s' is an Excel workbook: "
		    "save the list as CSV", quote_short(name, strlen(name), q, sizeof(q)));
		return -1;
	}
	if (!is_list(a))
		return 0;
	if (s->nsources >= SOURCES_MAX) {
		snprintf(p->err, p->errlen, "too many list attachments");
		return -1;
	}
	if ((ns = realloc(s->sources, (s->nsources + 1) * sizeof(*ns))) == NULL)
		return oom(p);
	s->sources = ns;
	if ((ns[s->nsources] = strdup(name)) == NULL)
		return oom(p);
	r.source = s->nsources++;
	if (pick_charset(p, a, name, &r.charset) == -1)
		return -1;
	if (r.charset == NULL)
		rc = parse_whole(&r, a);
	else if ((rc = each_piece(p, a, name, records_piece, &r)) == 0)
		rc = records_parse(&r, true);
	free(r.t);
	return rc;
}

/* ---- the whole ------------------------------------------------------- */

static int
set_body(struct parse *p, const char *body, size_t len)
{
	if (blank(body, len)) {
		snprintf(p->err, p->errlen, "empty DM body: write the text after "
		    "the control block and an empty line");
		return -1;
	}
	return (p->s->body = dup_n(body, len)) == NULL ? oom(p) : 0;
}

static int
parse_all(struct parse *p, const struct mime_msg *m)
{
	const char *body;
	size_t i;

	if (m->text == NULL) {
		snprintf(p->err, p->errlen, "no text/plain part: the submission "
		    "must have one, starting with the control block");
		return -1;
	}
	if ((p->s->sources = malloc(sizeof(*p->s->sources))) == NULL)
		return oom(p);
	p->s->sources[p->s->nsources++] = src_to;
	if (parse_control(p, m->text, m->text_len, &body) == -1)
		return -1;
	if (set_body(p, body, m->text_len - (size_t)(body - m->text)) == -1)
		return -1;
	for (i = 0; i < m->nattach; i++)
		if (parse_attachment(p, &m->attachments[i]) == -1)
			return -1;
	if (p->s->nrcpt == 0) {
		snprintf(p->err, p->errlen, "no recipients: add To: lines or a CSV attachment");
		return -1;
	}
	if (p->s->subject == NULL && m->subject != NULL &&
	    (p->s->subject = strdup(m->subject)) == NULL)
		return oom(p);
	return 0;
}

int
submission_parse_chunked(const struct mime_msg *m, size_t chunk, struct submission *out,
    char *err, size_t errlen)
{
	struct parse p = { .s = out, .err = err, .errlen = errlen, .chunk = chunk ? chunk : 1 };
	int rc;

	memset(out, 0, sizeof(*out));
	if (errlen > 0)
		err[0] = '\0';
	rc = parse_all(&p, m);
	free(p.set.slot);
	if (rc == -1)
		submission_free(out);
	return rc;
}

int
submission_parse(const struct mime_msg *m, struct submission *out, char *err, size_t errlen)
{
	return submission_parse_chunked(m, CHUNK_DEFAULT, out, err, errlen);
}

void
submission_free(struct submission *s)
{
	for (size_t i = 0; i < s->nblocks; i++)
		free(s->blocks[i]);
	free(s->blocks);
	for (size_t i = 1; i < s->nsources; i++)
		free(s->sources[i]);
	free(s->sources);
	free(s->token);
	free(s->subject);
	free(s->send_at);
	free(s->rate);
	free(s->send_by);
	free(s->from);
	free(s->body);
	memset(s, 0, sizeof(*s));
}

void
sub_first(struct sub_iter *it, const struct submission *s)
{
	memset(it, 0, sizeof(*it));
	it->s = s;
}

static unsigned
get_uleb(const unsigned char **p)
{
	unsigned v = 0, shift = 0;
	unsigned char c;

	do {
		c = *(*p)++;
		v |= (unsigned)(c & 0x7f) << shift;
		shift += 7;
	} while (c & 0x80);
	return v;
}

bool
sub_next(struct sub_iter *it, struct sub_rcpt *r)
{
	const struct submission *s = it->s;
	const struct sub_block *b;
	const unsigned char *p;
	unsigned flags;

	for (;;) {
		if (it->block >= s->nblocks)
			return false;
		b = s->blocks[it->block];
		if (it->off < b->used)
			break;
		it->block++;
		it->off = 0;
	}
	p = (const unsigned char *)b->data + it->off;
	flags = *p++;
	if (flags & E_SOURCE) {
		it->source = (size_t)p[0] | (size_t)p[1] << 8;
		p += 2;
		it->line = get_uleb(&p);
	} else
		it->line += get_uleb(&p);
	memset(r, 0, sizeof(*r));
	r->verdict = (enum rcpt_verdict)(flags & E_VERDICT);
	r->source = s->sources[it->source];
	r->line = it->line;
	r->needs_quote = (flags & E_QUOTE) != 0;
	if (r->verdict == RCPT_INVALID) {
		memcpy(&r->reason, p, sizeof(r->reason));
		p += sizeof(r->reason);
		r->raw = (const char *)p;
	} else {
		r->addr = (const char *)p;
		r->raw = r->addr;
		r->domain = strrchr(r->addr, '@') + 1;
		if (flags & E_RAW) {
			p += strlen(r->addr) + 1;
			r->raw = (const char *)p;
		}
	}
	p += strlen((const char *)p) + 1;
	it->off = (size_t)((const char *)p - b->data);
	return true;
}

void
sub_rcpt_addr(const struct sub_rcpt *r, struct mail_addr *a)
{
	const char *at = r->addr ? strrchr(r->addr, '@') : NULL;

	memset(a, 0, sizeof(*a));
	if (at == NULL)
		return;
	snprintf(a->local, sizeof(a->local), "%.*s", (int)(at - r->addr), r->addr);
	snprintf(a->domain, sizeof(a->domain), "%s", at + 1);
	a->needs_quote = r->needs_quote;
}
