/*
 * receipt: receipts, error receipts and completion reports (receipt.h).
 *
 *	receipt_compose		after intake: a job, or an error receipt
 *	report_compose		when a job ends
 *
 * The text is written with stdio into a memory stream, then wrapped: the
 * header block (everything from the submission passes through RFC 2047 or
 * a strict check first, so no CR or LF of the submitter's starts a header),
 * a text/plain UTF-8 part in base64, and, for long lists, a text/csv
 * attachment in base64. Failures: NULL when memory runs out, nothing else.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "core/strbuf.h"
#include "intake/receipt.h"
#include "mail/rfc2047.h"

static const char *const outcome_names[RO_COUNT] = {
	[RO_ACCEPTED] = "accepted",
	[RO_DUPLICATE] = "duplicate",
	[RO_INVALID] = "invalid",
	[RO_SUPPRESSED] = "suppressed",
	[RO_OVER_QUOTA] = "over quota",
};

const char *
receipt_outcome_name(int outcome)
{
	return outcome >= 0 && outcome < RO_COUNT ? outcome_names[outcome] : "?";
}

/* A growable text written with stdio. */
struct text {
	FILE *fp;
	char *p;
	size_t len;
};

static int
text_open(struct text *t)
{
	t->p = NULL;
	t->len = 0;
	return (t->fp = open_memstream(&t->p, &t->len)) ? 0 : -1;
}

/* The text, or NULL (and nothing left allocated). */
static char *
text_close(struct text *t)
{
	bool bad = ferror(t->fp);

	if (fclose(t->fp) != 0 || bad) {
		free(t->p);
		return NULL;
	}
	return t->p;
}

/* A Message-ID goes in a header only when it is a plain token. */
static bool
msgid_ok(const char *id)
{
	if (!id || !*id || strlen(id) > 250)
		return false;
	for (const unsigned char *p = (const unsigned char *)id; *p; p++)
		if (*p <= ' ' || *p >= 0x7f || *p == '<' || *p == '>')
			return false;
	return true;
}

/* An address in a header: printable ASCII or UTF-8, no controls, no <>. */
static bool
addr_ok(const char *a)
{
	if (!a || !*a || strlen(a) > 320 || !strchr(a, '@'))
		return false;
	for (const unsigned char *p = (const unsigned char *)a; *p; p++)
		if (*p < ' ' || *p == 0x7f || *p == '<' || *p == '>' || *p == ',')
			return false;
	return true;
}

static void
base64_lines(struct strbuf *b, const char *s, size_t len)
{
	unsigned char out[80];

	/* 57 octets make one line of 76 characters. */
	for (size_t i = 0; i < len; i += 57) {
		size_t take = len - i < 57 ? len - i : 57;
		int n = EVP_EncodeBlock(out, (const unsigned char *)s + i, (int)take);
		strbuf_add(b, (const char *)out, (size_t)n);
		strbuf_add(b, "\r\n", 2);
	}
}

/* LF to CRLF (a CR already there is kept). */
static void
add_crlf(struct strbuf *b, const char *s, size_t len)
{
	size_t start = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] != '\n')
			continue;
		strbuf_add(b, s + start, i - start);
		strbuf_add(b, i > 0 && s[i - 1] == '\r' ? "\n" : "\r\n", i > 0 && s[i - 1] == '\r' ? 1 : 2);
		start = i + 1;
	}
	strbuf_add(b, s + start, len - start);
}

static void
add_str(struct strbuf *b, const char *s)
{
	strbuf_add(b, s, strlen(s));
}

static void
write_time(char *buf, size_t size, double when)
{
	time_t t = (time_t)when;
	struct tm tm;

	if (!localtime_r(&t, &tm) || !strftime(buf, size, "%Y-%m-%d %H:%M:%S %Z (UTC%z)", &tm))
		snprintf(buf, size, "@%lld", (long long)t);
}

/*
 * The whole message: headers, then the text and maybe a CSV attachment.
 * kind names the Message-ID ("receipt", "report").
 */
static char *
wrap(const struct notice_head *h, const char *kind, uint64_t job_id, const char *subject,
    const char *text, const char *csv, const char *csv_name, time_t now, size_t *len)
{
	struct strbuf b = { 0 };
	unsigned char rnd[8];
	char line[600], date[64], boundary[64], hex[17];
	char *subj;
	struct tm tm;

	if (RAND_bytes(rnd, sizeof(rnd)) != 1 || !addr_ok(h->from) || !addr_ok(h->to))
		return NULL;
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
	if (!(subj = rfc2047_encode(subject, strlen("Subject: "))))
		return NULL;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	snprintf(line, sizeof(line), "From: <%s>\r\nTo: <%s>\r\nSubject: ", h->from, h->to);
	add_str(&b, line);
	add_str(&b, subj);
	free(subj);
	snprintf(line, sizeof(line), "\r\nDate: %s\r\nMessage-ID: <%s.%" PRIu64 ".%s@%s>\r\n",
	    date, kind, job_id, hex, h->domain);
	add_str(&b, line);
	if (msgid_ok(h->in_reply_to)) {
		snprintf(line, sizeof(line), "In-Reply-To: <%s>\r\nReferences: <%s>\r\n",
		    h->in_reply_to, h->in_reply_to);
		add_str(&b, line);
	}
	add_str(&b, "Auto-Submitted: auto-replied\r\nX-Auto-Response-Suppress: All\r\nMIME-Version: 1.0\r\n");
	if (csv) {
		snprintf(boundary, sizeof(boundary), "=_hato_%s", hex);
		snprintf(line, sizeof(line), "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n"
		    "This is a MIME message.\r\n--%s\r\n", boundary, boundary);
		add_str(&b, line);
	}
	add_str(&b, "Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\n");
	{
		struct strbuf crlf = { 0 };
		add_crlf(&crlf, text, strlen(text));
		char *t = strbuf_take(&crlf);
		if (!t) {
			free(strbuf_take(&b));
			return NULL;
		}
		base64_lines(&b, t, strlen(t));
		free(t);
	}
	if (csv) {
		snprintf(line, sizeof(line), "--%s\r\nContent-Type: text/csv; charset=UTF-8; name=\"%s\"\r\n"
		    "Content-Disposition: attachment; filename=\"%s\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
		    boundary, csv_name, csv_name);
		add_str(&b, line);
		base64_lines(&b, csv, strlen(csv));
		snprintf(line, sizeof(line), "--%s--\r\n", boundary);
		add_str(&b, line);
	}
	char *msg = strbuf_take(&b);
	if (msg && len)
		*len = strlen(msg);
	return msg;
}

/* One CSV field: quoted when it holds a comma, a quote or a line end. */
static void
csv_field(FILE *fp, const char *s, bool last)
{
	if (s && strpbrk(s, ",\"\r\n")) {
		fputc('"', fp);
		for (; *s; s++) {
			if (*s == '"')
				fputc('"', fp);
			fputc(*s, fp);
		}
		fputc('"', fp);
	} else if (s)
		fputs(s, fp);
	fputs(last ? "\r\n" : ",", fp);
}

static void
reject_line(FILE *fp, const struct receipt_reject *x)
{
	fprintf(fp, "  %s: %s", x->address, receipt_outcome_name(x->outcome));
	if (x->reason && *x->reason)
		fprintf(fp, " (%s)", x->reason);
	if (x->source && x->line)
		fprintf(fp, ", %s line %zu", x->source, x->line);
	fputc('\n', fp);
}

static char *
rejects_csv(const struct receipt *r)
{
	struct text t;
	char num[32];

	if (text_open(&t) < 0)
		return NULL;
	fputs("address,outcome,reason,source,line\r\n", t.fp);
	for (size_t i = 0; i < r->nrejects; i++) {
		const struct receipt_reject *x = &r->rejects[i];
		snprintf(num, sizeof(num), "%zu", x->line);
		csv_field(t.fp, x->address, false);
		csv_field(t.fp, receipt_outcome_name(x->outcome), false);
		csv_field(t.fp, x->reason ? x->reason : "", false);
		csv_field(t.fp, x->source ? x->source : "", false);
		csv_field(t.fp, x->line ? num : "", true);
	}
	return text_close(&t);
}

static void
counts_table(FILE *fp, const struct receipt *r)
{
	fprintf(fp, "Recipients per carrier route:\n");
	for (size_t i = 0; i < r->ndests; i++) {
		const struct receipt_dest *d = &r->dests[i];
		fprintf(fp, "  %-24s", *d->dest ? d->dest : "(no route)");
		for (int o = 0; o < RO_COUNT; o++)
			if (d->n[o])
				fprintf(fp, " %s %zu", receipt_outcome_name(o), d->n[o]);
		fputc('\n', fp);
	}
	fprintf(fp, "\nIn all:");
	for (int o = 0; o < RO_COUNT; o++)
		fprintf(fp, "%s %s %zu", o ? "," : "", receipt_outcome_name(o), r->total[o]);
	fprintf(fp, "\n");
}

static void
receipt_text(FILE *fp, const struct receipt *r, bool attach)
{
	char when[80];

	if (!r->job_id) {
		fprintf(fp, "Your submission was not accepted: no job was created and nothing will be sent.\n\n"
		    "Reason: %s\n", r->error ? r->error : "unknown");
	} else {
		fprintf(fp, "Your submission is job %" PRIu64 ".\n\n", r->job_id);
		if (r->subject)
			fprintf(fp, "Subject: %s\n", r->subject);
		if (r->dm_from)
			fprintf(fp, "From:    %s\n", r->dm_from);
		if (r->send_at > 0) {
			write_time(when, sizeof(when), r->send_at);
			fprintf(fp, "Sending starts at %s.\n", when);
		} else
			fprintf(fp, "Sending starts now.\n");
		if (r->dry_run)
			fprintf(fp, "This is a rehearsal (Dry-Run): only the rehearsal addresses get mail.\n");
		fputc('\n', fp);
	}
	if (r->confirm_code) {
		fprintf(fp, "This job is HELD until it is approved: nothing is sent before.\n"
		    "To approve it, reply to this mail keeping the code %s in the subject,\n"
		    "or ask an operator to run: hatoctl job approve %" PRIu64 "\n",
		    r->confirm_code, r->job_id);
		if (r->hold_expires > 0) {
			write_time(when, sizeof(when), r->hold_expires);
			fprintf(fp, "Unless approved, it expires at %s.\n", when);
		}
		fputc('\n', fp);
	}
	if (r->ndests || r->nrejects)
		counts_table(fp, r);
	if (r->nrejects && attach)
		fprintf(fp, "\nThe %zu addresses not accepted are listed in the attachment rejected.csv.\n",
		    r->nrejects);
	else if (r->nrejects) {
		fprintf(fp, "\nNot accepted:\n");
		for (size_t i = 0; i < r->nrejects; i++)
			reject_line(fp, &r->rejects[i]);
	}
	fprintf(fp, "\n-- \nHato mail gateway. This mail was written automatically; replies are not read%s.\n",
	    r->confirm_code ? " except for approvals" : "");
}

char *
receipt_compose(const struct receipt *r, time_t now, size_t *len)
{
	bool attach = r->nrejects > RECEIPT_INLINE_MAX;
	char subject[400], *body, *csv = NULL, *msg;
	struct text t;
	size_t n = r->total[RO_ACCEPTED];

	if (!r->job_id)
		snprintf(subject, sizeof(subject), "[Hato] submission refused: %.200s", r->error ? r->error : "error");
	else if (r->confirm_code)
		snprintf(subject, sizeof(subject), "[Hato] job %" PRIu64 " held for approval (code %s): %zu recipient%s",
		    r->job_id, r->confirm_code, n, n == 1 ? "" : "s");
	else
		snprintf(subject, sizeof(subject), "[Hato] job %" PRIu64 " %s: %zu recipient%s", r->job_id,
		    r->dry_run ? "rehearsal accepted" : "accepted", n, n == 1 ? "" : "s");
	if (text_open(&t) < 0)
		return NULL;
	receipt_text(t.fp, r, attach);
	if (!(body = text_close(&t)))
		return NULL;
	if (attach && !(csv = rejects_csv(r))) {
		free(body);
		return NULL;
	}
	msg = wrap(&r->h, r->job_id ? "receipt" : "refused", r->job_id, subject, body, csv, "rejected.csv",
	    now, len);
	free(body);
	free(csv);
	return msg;
}

static char *
failures_csv(const struct report *r)
{
	struct text t;
	char num[16];

	if (text_open(&t) < 0)
		return NULL;
	fputs("address,code,status,text\r\n", t.fp);
	for (size_t i = 0; i < r->nfailures; i++) {
		const struct report_failure *f = &r->failures[i];
		snprintf(num, sizeof(num), "%d", f->code);
		csv_field(t.fp, f->address, false);
		csv_field(t.fp, f->code ? num : "", false);
		csv_field(t.fp, f->status ? f->status : "", false);
		csv_field(t.fp, f->text ? f->text : "", true);
	}
	return text_close(&t);
}

char *
report_compose(const struct report *r, time_t now, size_t *len)
{
	unsigned sent = 0, failed = 0, supp = 0, canc = 0;
	char subject[300], *body, *csv = NULL, *msg;
	struct text t;

	for (size_t i = 0; i < r->ndests; i++) {
		sent += r->dests[i].sent;
		failed += r->dests[i].failed;
		supp += r->dests[i].suppressed;
		canc += r->dests[i].cancelled;
	}
	snprintf(subject, sizeof(subject), "[Hato] job %" PRIu64 " %s: %u sent, %u failed", r->job_id,
	    r->state && strcmp(r->state, "done") != 0 ? r->state : "finished", sent, failed);
	if (text_open(&t) < 0)
		return NULL;
	fprintf(t.fp, "Job %" PRIu64 " has ended (%s).\n\n", r->job_id, r->state ? r->state : "done");
	if (r->state && strcmp(r->state, "expired") == 0)
		fprintf(t.fp, "It was held for approval, and nobody approved it before the hold ran out:\n"
		    "nothing was sent. Submit it again to send it.\n\n");
	if (r->subject)
		fprintf(t.fp, "Subject: %s\n\n", r->subject);
	fprintf(t.fp, "Per carrier route:\n");
	for (size_t i = 0; i < r->ndests; i++) {
		const struct report_dest *d = &r->dests[i];
		fprintf(t.fp, "  %-24s sent %u, failed %u, suppressed %u, cancelled %u", *d->dest ? d->dest : "(no route)",
		    d->sent, d->failed, d->suppressed, d->cancelled);
		if (d->other)
			fprintf(t.fp, ", other %u", d->other);
		fputc('\n', t.fp);
	}
	fprintf(t.fp, "\nIn all: sent %u, failed %u, suppressed %u, cancelled %u\n", sent, failed, supp, canc);
	if (r->nfailures)
		fprintf(t.fp, "\nThe %zu failed addresses, with the last reply of each, are in failures.csv.\n",
		    r->nfailures);
	fprintf(t.fp, "\n-- \nHato mail gateway. This mail was written automatically; replies are not read.\n");
	if (!(body = text_close(&t)))
		return NULL;
	if (r->nfailures && !(csv = failures_csv(r))) {
		free(body);
		return NULL;
	}
	msg = wrap(&r->h, "report", r->job_id, subject, body, csv, "failures.csv", now, len);
	free(body);
	free(csv);
	return msg;
}
