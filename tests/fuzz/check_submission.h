#ifndef HATO_TESTS_FUZZ_CHECK_SUBMISSION_H
#define HATO_TESTS_FUZZ_CHECK_SUBMISSION_H
/*
 * check_submission: what a parsed submission must be, for the submission
 * and the CSV targets.
 *
 * Every recipient is a trimmed UTF-8 line fragment (no CR, no LF) with a
 * source and a line; an invalid one has a reason, the others read as the
 * address they hold. Accepted addresses are all different, a duplicate
 * equals an earlier accepted one, and naccepted counts the accepted. The
 * body is valid UTF-8 and not blank; single values are trimmed (only the
 * Subject may be empty, when the mail's own is). A refused
 * submission says why and leaves the struct empty.
 */
#include <string.h>

#include "intake/submission.h"
#include "check.h"

/* Pairwise duplicate checks are quadratic: only on lists this long. */
#define CHECK_SUBMISSION_PAIRS_MAX 512

static inline bool
check_submission_blank_end(const char *s)
{
	size_t n = strlen(s);

	if (n == 0)
		return false;
	return s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t';
}

static inline void
check_submission_value(const char *v)
{
	if (v == NULL)
		return;
	CHECK(*v != '\0');
	CHECK(fuzz_utf8_ok(v, strlen(v)));
	CHECK(strchr(v, '\n') == NULL && strchr(v, '\r') == NULL);
	CHECK(!check_submission_blank_end(v));
}

static inline bool
check_submission_same(const struct mail_addr *a, const struct mail_addr *b)
{
	return strcmp(a->local, b->local) == 0 && strcmp(a->domain, b->domain) == 0;
}

static inline void
check_submission_rcpts(const struct submission *s)
{
	struct sub_iter it, jt;
	struct sub_rcpt rr, oo;
	size_t accepted = 0, i = 0;

	for (sub_first(&it, s); sub_next(&it, &rr); i++) {
		const struct sub_rcpt *r = &rr;
		struct mail_addr again, kept, other;
		const char *why = NULL;

		CHECK(r->raw != NULL && r->source != NULL && r->line >= 1);
		CHECK(fuzz_utf8_ok(r->raw, strlen(r->raw)));
		CHECK(strchr(r->raw, '\n') == NULL && strchr(r->raw, '\r') == NULL);
		switch (r->verdict) {
		case RCPT_INVALID:
			CHECK(r->reason != NULL && *r->reason != '\0');
			continue;
		case RCPT_ACCEPTED:
			accepted++;
			break;
		case RCPT_DUPLICATE:
			break;
		default:
			CHECK(!"a known verdict");
		}
		CHECK(addr_parse(r->raw, strlen(r->raw), &again, &why) == 0);
		sub_rcpt_addr(r, &kept);
		CHECK(r->addr != NULL && r->domain == strrchr(r->addr, '@') + 1);
		CHECK(check_submission_same(&again, &kept) && again.needs_quote == r->needs_quote);
		if (s->nrcpt > CHECK_SUBMISSION_PAIRS_MAX)
			continue;
		bool earlier = false;
		sub_first(&jt, s);
		for (size_t j = 0; j < i && sub_next(&jt, &oo); j++) {
			const struct sub_rcpt *o = &oo;

			if (o->verdict != RCPT_ACCEPTED)
				continue;
			sub_rcpt_addr(o, &other);
			if (!check_submission_same(&other, &kept))
				continue;
			earlier = true;
		}
		CHECK(earlier == (r->verdict == RCPT_DUPLICATE));
	}
	CHECK(i == s->nrcpt);
	CHECK(accepted == s->naccepted);
}

static inline void
check_submission(const struct submission *s)
{
	CHECK(s->nrcpt >= 1 && s->blocks != NULL);
	check_submission_rcpts(s);
	check_submission_value(s->token);
	/* The mail's own Subject may be empty; it is trimmed all the same. */
	if (s->subject != NULL && *s->subject != '\0')
		check_submission_value(s->subject);
	check_submission_value(s->send_at);
	check_submission_value(s->rate);
	check_submission_value(s->send_by);
	CHECK(s->body != NULL && fuzz_utf8_ok(s->body, strlen(s->body)));
	bool blank = true;
	for (const char *c = s->body; *c; c++)
		blank &= *c == ' ' || *c == '\t' || *c == '\r' || *c == '\n';
	CHECK(!blank);
}

static inline void
check_submission_refused(const struct submission *s, const char *err)
{
	CHECK(err[0] != '\0');
	CHECK(s->nrcpt == 0 && s->blocks == NULL && s->naccepted == 0);
	CHECK(s->token == NULL && s->subject == NULL && s->send_at == NULL && s->body == NULL);
	CHECK(s->rate == NULL && s->send_by == NULL);
}

#endif
