/*
 * out: hatoctl's output layer (see out.h). Everything goes to stdout;
 * errors go to stderr from the commands themselves.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl/out.h"
#include "mail/address.h"
#include "sql/store.h"

#define JDEPTH 16

static bool json_mode;
static int depth;
static unsigned count[JDEPTH];

void
out_init(bool json)
{
	json_mode = json;
}

bool
out_json(void)
{
	return json_mode;
}

bool
out_tty(void)
{
	return isatty(STDOUT_FILENO) == 1;
}

/* The length of the UTF-8 sequence at s (1-4), or 0 when it is not one
 * (overlongs, surrogates and values past U+10FFFF are refused). */
static size_t
utf8_len(const unsigned char *s)
{
	unsigned c = s[0], n, v;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, v = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, v = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, v = c & 0x07;
	else
		return 0;
	for (unsigned i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && (v < 0x800 || (v >= 0xd800 && v <= 0xdfff))) || (n == 4 && (v < 0x10000 || v > 0x10ffff)))
		return 0;
	return n;
}

void
json_string(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	size_t n;

	putc('"', f);
	while (*p) {
		if (*p == '"' || *p == '\\') {
			fprintf(f, "\\%c", *p++);
		} else if (*p < 0x20 || *p == 0x7f) {
			fprintf(f, "\\u%04x", *p++);
		} else if ((n = utf8_len(p)) == 0) {
			fputs("\xef\xbf\xbd", f);	/* U+FFFD for a stray byte */
			p++;
		} else {
			fwrite(p, 1, n, f);
			p += n;
		}
	}
	putc('"', f);
}

/* Before a value: the comma, the key, and one more in this container. */
static void
j_value(const char *key)
{
	if (depth > 0 && count[depth]++ > 0)
		putchar(',');
	if (key && depth > 0) {
		json_string(stdout, key);
		putchar(':');
	}
}

static void
j_open(const char *key, char c)
{
	j_value(key);
	putchar(c);
	if (depth + 1 < JDEPTH)
		count[++depth] = 0;
}

static void
j_close(char c)
{
	putchar(c);
	if (depth > 0)
		depth--;
	if (depth == 0) {
		/* One document per line: a --follow reader takes line by line. */
		putchar('\n');
		fflush(stdout);
	}
}

void j_array(const char *key) { j_open(key, '['); }
void j_array_end(void) { j_close(']'); }
void j_object(const char *key) { j_open(key, '{'); }
void j_object_end(void) { j_close('}'); }

void
j_str(const char *key, const char *v)
{
	j_value(key);
	json_string(stdout, v);
}

void
j_u64(const char *key, uint64_t v)
{
	j_value(key);
	printf("%" PRIu64, v);
}

void
j_int(const char *key, long long v)
{
	j_value(key);
	printf("%lld", v);
}

void
j_num(const char *key, double v)
{
	j_value(key);
	/* JSON has no NaN or infinity. */
	if (isfinite(v))
		printf("%.6g", v);
	else
		fputs("null", stdout);
}

void
j_bool(const char *key, bool v)
{
	j_value(key);
	fputs(v ? "true" : "false", stdout);
}

void
j_null(const char *key)
{
	j_value(key);
	fputs("null", stdout);
}

void
out_bar(char *buf, size_t size, unsigned sent, unsigned failed, unsigned total, int width)
{
	int ns = 0, nf = 0, o = 0;

	if (size < (size_t)width + 3)
		width = size > 3 ? (int)size - 3 : 0;
	if (total) {
		ns = (int)((double)sent * width / total);
		nf = (int)((double)(sent + failed) * width / total) - ns;
	}
	buf[o++] = '[';
	for (int i = 0; i < width; i++)
		buf[o++] = i < ns ? '#' : i < ns + nf ? 'x' : '.';
	buf[o++] = ']';
	buf[o] = '\0';
}

void
out_duration(char *buf, size_t size, double seconds)
{
	unsigned long s;

	if (seconds < 0 || !isfinite(seconds) || seconds > 99 * 86400.0) {
		snprintf(buf, size, "-");
		return;
	}
	s = (unsigned long)(seconds + 0.5);
	if (s >= 3600)
		snprintf(buf, size, "%lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
	else
		snprintf(buf, size, "%lu:%02lu", s / 60, s % 60);
}

int
ctl_db_failed(struct store *st, const char *what)
{
	fprintf(stderr, "hatoctl: %s: %s\n", what, store_error(st));
	return CTL_UNAVAILABLE;
}

/* An option "--name VALUE" or "--name=VALUE" at argv[*i]; advances *i. */
const char *
ctl_option_value(int argc, char **argv, int *i, const char *name)
{
	size_t n = strlen(name);

	if (strncmp(argv[*i], name, n) != 0)
		return NULL;
	if (argv[*i][n] == '=')
		return argv[*i] + n + 1;
	if (argv[*i][n] == '\0' && *i + 1 < argc)
		return argv[++*i];
	return NULL;
}

int
ctl_canonical_address(const char *in, char *out, size_t size)
{
	struct mail_addr a;
	const char *why;

	if (addr_parse(in, strlen(in), &a, &why) < 0) {
		fprintf(stderr, "hatoctl: %s: %s\n", in, why);
		return -1;
	}
	addr_canonical(&a, out, size);
	return 0;
}

int
ctl_parse_id(const char *s, const char *what, uint64_t *id)
{
	char *end;

	*id = strtoull(s, &end, 10);
	if (!*s || *end || *s == '-' || *id == 0) {
		fprintf(stderr, "hatoctl: '%s' is not a %s number\n", s, what);
		return -1;
	}
	return 0;
}
