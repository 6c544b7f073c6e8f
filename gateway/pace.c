/*
 * pace: slots held by this gateway for one paced destination (see pace.h).
 *
 * Margin: 1.5% of the gap. Over a window of `messages` gaps that is
 * 1.5% of the interval (30 ms for 20 per 2 s): two thirds for sends that
 * leave late (late_ms: timers fire late on a busy machine), one third for
 * the receiver's own jitter in when it reads our MAIL FROM. The rate this
 * leaves is 98.5% of the configured one.
 *
 * Rate factor: halved on suspension (never below 1/64); each success adds
 * 1/(8 * messages), so a halved rate is back to full after about four
 * intervals' worth of accepted mail.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/pace.h"

#define MARGIN 0.015
#define MIN_FACTOR (1.0 / 64)

void
pace_init(struct pace *p, unsigned messages, uint64_t interval_ms)
{
	memset(p, 0, sizeof(*p));
	if (!(p->window = calloc(messages ? messages : 1, sizeof(double))))
		abort();
	p->messages = messages ? messages : 1;
	p->interval_ms = (double)interval_ms;
	p->base_gap_ms = p->interval_ms / p->messages * (1 + MARGIN);
	p->late_ms = p->interval_ms * MARGIN * 2 / 3;
	/* Slots a gateway holds and cannot use are lost to every gateway:
	 * hold little ahead (but at least two slots, at most the ring). */
	p->lookahead_ms = 600;
	p->factor = 1;
}

void
pace_fini(struct pace *p)
{
	free(p->window);
	p->window = NULL;
}

uint64_t
pace_base_gap_us(const struct pace *p)
{
	return (uint64_t)ceil(p->base_gap_ms * 1000);
}

static double
gap_now(const struct pace *p)
{
	return p->base_gap_ms / p->factor;
}

int
pace_take(struct pace *p, double now, double *wait_ms)
{
	if (p->suspended_until > now) {
		*wait_ms = p->suspended_until - now;
		return 0;
	}
	/* Slots missed by more than late_ms are dropped, never used late. */
	while (p->count && p->slots[p->head] + p->late_ms < now) {
		p->head = (p->head + 1) % PACE_SLOTS_MAX;
		p->count--;
		p->dropped++;
	}
	if (!p->count) {
		*wait_ms = -1;
		return 0;
	}
	if (p->slots[p->head] > now) {
		*wait_ms = p->slots[p->head] - now;
		return 0;
	}
	/* This gateway's own sends keep the window whatever its timers did:
	 * the send `messages` ago must be more than an interval back. */
	if (p->nwindow >= p->messages) {
		double open = p->window[p->nwindow % p->messages] + p->interval_ms + p->late_ms / 2;
		if (now < open) {
			*wait_ms = open - now;
			return 0;
		}
	}
	p->window[p->nwindow++ % p->messages] = now;
	p->head = (p->head + 1) % PACE_SLOTS_MAX;
	p->count--;
	p->sent++;
	p->recent[p->nrecent++ % 32] = now;
	return 1;
}

unsigned
pace_want(struct pace *p, double now, size_t waiting)
{
	double gap = gap_now(p), horizon;
	size_t want;

	if (p->reserving || waiting <= p->count)
		return 0;
	/* Held slots still cover the next half second: ask later. */
	horizon = p->count ? p->slots[(p->head + p->count - 1) % PACE_SLOTS_MAX] - now : 0;
	if (horizon > p->lookahead_ms / 2)
		return 0;
	want = (size_t)(p->lookahead_ms / gap);
	if (want < 2)
		want = 2;
	if (want > waiting - p->count)
		want = waiting - p->count;
	if (want > PACE_SLOTS_MAX - p->count)
		want = PACE_SLOTS_MAX - p->count;
	if (want == 0)
		return 0;
	p->reserving = true;
	return (unsigned)want;
}

void
pace_grant(struct pace *p, double start_s, double gap_s, unsigned k, double offset_ms,
    double factor, double suspended_until_s)
{
	p->reserving = false;
	p->factor = factor > 0 ? factor : 1;
	if (suspended_until_s > 0) {
		double until = suspended_until_s * 1000 + offset_ms;
		if (until > p->suspended_until)
			p->suspended_until = until;
	}
	for (unsigned i = 0; i < k && p->count < PACE_SLOTS_MAX; i++) {
		double t = (start_s + gap_s * i) * 1000 + offset_ms;
		p->slots[(p->head + p->count) % PACE_SLOTS_MAX] = t;
		p->count++;
	}
}

void
pace_grant_failed(struct pace *p)
{
	p->reserving = false;
}

void
pace_success(struct pace *p)
{
	if (p->factor + p->add < 1)
		p->add += 1.0 / (8.0 * p->messages);
}

void
pace_suspend(struct pace *p, double now, uint64_t suspend_ms)
{
	/* A burst of refusals while suspended counts once. */
	if (p->suspended_until > now)
		return;
	p->suspended_until = now + (double)suspend_ms;
	p->factor = p->factor / 2 < MIN_FACTOR ? MIN_FACTOR : p->factor / 2;
	p->add = 0;
	/* Slots held are for the old rate and the time of the suspension. */
	p->head = p->count = 0;
}

double
pace_take_increase(struct pace *p)
{
	double a = p->add;

	p->add = 0;
	return a;
}

double
pace_rate(const struct pace *p)
{
	return p->messages * p->factor * 1000.0 / p->interval_ms;
}

/* Over this gateway's last 32 sends (slots come in blocks shared with
 * other gateways, so a short view would see only one block). */
double
pace_local_rate(const struct pace *p)
{
	double full = pace_rate(p), first, last, r;
	size_t n = p->nrecent < 32 ? p->nrecent : 32;

	if (n < 16)
		return full;
	last = p->recent[(p->nrecent - 1) % 32];
	first = p->recent[(p->nrecent - n) % 32];
	if (last <= first)
		return full;
	r = (double)(n - 1) * 1000.0 / (last - first);
	return r < full ? r : full;
}
