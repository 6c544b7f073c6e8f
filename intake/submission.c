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

#include "intake/submission.h"
#include "mail/charset.h"

#define QUOTE_MAX	40	/* bytes of the submitter's text quoted in an error */

static const char src_to[] = "To";

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

/* Duplicate detection: open addressing on indexes into s->rcpts, plus one. */
struct rset {
	uint32_t *slot;
	size_t cap;	/* a power of two, or 0 */
	size_t used;
};

/* Strings that live as long as the submission, allocated in blocks. */
#define SUB_BLOCK 65536
struct sub_block {
	struct sub_block *next;
	size_t used, cap;
	char data[];
};

struct parse {
	struct submission *s;
	struct rset set;
	size_t rcap;
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

static char *
sub_strdup(struct submission *s, const char *str, size_t len)
{
	struct sub_block *b = s->blocks, *nb;
	char *d;

	if (b == NULL || b->cap - b->used < len + 1) {
		size_t cap = len + 1 > SUB_BLOCK / 4 ? len + 1 : SUB_BLOCK;
		if ((nb = malloc(sizeof(*nb) + cap)) == NULL)
			return NULL;
		nb->used = 0;
		nb->cap = cap;
		/* A long string gets a block of its own behind the current one. */
		if (b != NULL && cap != SUB_BLOCK) {
			nb->next = b->next;
			b->next = nb;
		} else {
			nb->next = b;
			s->blocks = nb;
		}
		b = nb;
	}
	d = b->data + b->used;
	memcpy(d, str, len);
	d[len] = '\0';
	b->used += len + 1;
	return d;
}

/* FNV-1a over the canonical form "local@domain". */
static uint64_t
addr_hash(const char *canon)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (const unsigned char *p = (const unsigned char *)canon; *p != '\0'; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	return h;
}

static int
rset_grow(struct rset *set, const struct sub_rcpt *r)
{
	size_t cap = set->cap ? set->cap * 2 : 1024, i, j;
	uint32_t *slot = calloc(cap, sizeof(*slot));

	if (slot == NULL)
		return -1;
	for (i = 0; i < set->cap; i++) {
		if (set->slot[i] == 0)
			continue;
		j = addr_hash(r[set->slot[i] - 1].addr) & (cap - 1);
		while (slot[j] != 0)
			j = (j + 1) & (cap - 1);
		slot[j] = set->slot[i];
	}
	free(set->slot);
	set->slot = slot;
	set->cap = cap;
	return 0;
}

/* Adds r[idx] unless its address is there already: 1 duplicate, 0 added. */
static int
rset_add(struct rset *set, const struct sub_rcpt *r, size_t idx)
{
	size_t j;

	if ((set->used + 1) * 2 > set->cap && rset_grow(set, r) == -1)
		return -1;
	j = addr_hash(r[idx].addr) & (set->cap - 1);
	for (; set->slot[j] != 0; j = (j + 1) & (set->cap - 1))
		if (strcmp(r[set->slot[j] - 1].addr, r[idx].addr) == 0)
			return 1;
	set->slot[j] = (uint32_t)(idx + 1);
	set->used++;
	return 0;
}

static int
oom(struct parse *p)
{
	snprintf(p->err, p->errlen, "out of memory reading the submission");
	return -1;
}

static int
rcpt_add(struct parse *p, const char *raw, size_t len, const char *source, size_t line)
{
	struct submission *s = p->s;
	struct sub_rcpt *r;
	struct mail_addr a;
	char canon[ADDR_MAX + 1];
	size_t cap, n;
	int dup;

	trim(&raw, &len);
	if (s->nrcpt >= UINT32_MAX - 1)
		return oom(p);
	if (s->nrcpt == p->rcap) {
		/* Half as much again: a list of a million leaves less unused. */
		cap = p->rcap ? p->rcap + p->rcap / 2 : 64;
		if ((r = realloc(s->rcpts, cap * sizeof(*r))) == NULL)
			return oom(p);
		s->rcpts = r;
		p->rcap = cap;
	}
	r = &s->rcpts[s->nrcpt];
	memset(r, 0, sizeof(*r));
	if ((r->raw = sub_strdup(s, raw, len)) == NULL)
		return oom(p);
	r->source = source;
	r->line = (unsigned)line;
	s->nrcpt++;
	/* raw is kept as a C string: a NUL would hide what follows it. */
	if (memchr(raw, '\0', len)) {
		r->verdict = RCPT_INVALID;
		r->reason = "NUL byte in the line";
		return 0;
	}
	if (addr_parse(raw, len, &a, &r->reason) == -1) {
		r->verdict = RCPT_INVALID;
		return 0;
	}
	n = addr_canonical(&a, canon, sizeof(canon));
	if (n >= sizeof(canon))
		return oom(p);
	/* Most lines of a list are the canonical address already: one copy. */
	if (n == len && memcmp(canon, raw, len) == 0)
		r->addr = r->raw;
	else if ((r->addr = sub_strdup(s, canon, n)) == NULL)
		return oom(p);
	r->domain = strrchr(r->addr, '@') + 1;
	r->needs_quote = a.needs_quote;
	if ((dup = rset_add(&p->set, s->rcpts, s->nrcpt - 1)) == -1)
		return oom(p);
	r->verdict = dup ? RCPT_DUPLICATE : RCPT_ACCEPTED;
	if (!dup)
		s->naccepted++;
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
			    rcpt_add(p, v->val + start, i - start, src_to,
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
csv_rest(const char *s, size_t len, size_t i, size_t *lines, bool *empty)
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
	if (i < len)
		(*lines)++;
	return i < len ? i + 1 : i;
}

static int
parse_list(struct parse *p, char *text, size_t len, const char *source)
{
	size_t pos = 0, line = 1, start, lines;
	bool rest_empty, header_done = false;
	const char *f;
	size_t flen;
	char *own;
	int rc = 0;

	len = to_lf(text, len);
	while (pos < len && rc == 0) {
		start = line;
		if (csv_first(text, len, &pos, &f, &flen, &own) == -1)
			return oom(p);
		lines = 0;
		pos = csv_rest(text, len, pos, &lines, &rest_empty);
		line += lines;
		trim(&f, &flen);
		if (flen == 0 && rest_empty) {
			free(own);
			continue;
		}
		/* A title row: "email", "address", "メールアドレス". */
		if (!header_done && memchr(f, '@', flen) == NULL) {
			header_done = true;
			free(own);
			continue;
		}
		header_done = true;
		rc = rcpt_add(p, f, flen, source, start);
		free(own);
	}
	return rc;
}

static int
parse_attachment(struct parse *p, const struct mime_part *a)
{
	const char *name = a->filename ? a->filename : a->content_type;
	char *text = NULL, *source, q[QUOTE_MAX * 2];
	size_t len = 0, before = p->s->nrcpt;
	int rc;

	if (is_workbook(a)) {
		snprintf(p->err, p->errlen, "attachment '%s' is an Excel workbook: "
		    "save the list as CSV", quote_short(name, strlen(name), q, sizeof(q)));
		return -1;
	}
	if (!is_list(a))
		return 0;
	if (a->charset != NULL)
		text = charset_to_utf8(a->charset, a->data, a->len, &len);
	if (text == NULL)
		text = charset_guess_to_utf8(a->data, a->len, &len);
	if (text == NULL) {
		snprintf(p->err, p->errlen, "attachment '%s' is not text in UTF-8, "
		    "Shift_JIS or ISO-2022-JP", quote_short(name, strlen(name), q, sizeof(q)));
		return -1;
	}
	if ((source = strdup(name)) == NULL) {
		free(text);
		return oom(p);
	}
	rc = parse_list(p, text, len, source);
	free(text);
	/* The recipients own the copy; with none, nobody does. */
	if (p->s->nrcpt == before)
		free(source);
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
submission_parse(const struct mime_msg *m, struct submission *out, char *err, size_t errlen)
{
	struct parse p = { .s = out, .err = err, .errlen = errlen };
	int rc;

	memset(out, 0, sizeof(*out));
	rc = parse_all(&p, m);
	free(p.set.slot);
	if (rc == -1)
		submission_free(out);
	return rc;
}

void
submission_free(struct submission *s)
{
	const char *last = src_to;
	size_t i;

	while (s->blocks != NULL) {
		struct sub_block *b = s->blocks;
		s->blocks = b->next;
		free(b);
	}
	for (i = 0; i < s->nrcpt; i++) {
		/* An attachment's name is shared by its run of recipients. */
		if (s->rcpts[i].source != last) {
			last = s->rcpts[i].source;
			free((char *)(uintptr_t)last);
		}
	}
	free(s->rcpts);
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
