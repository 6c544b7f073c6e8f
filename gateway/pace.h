#ifndef HATO_GATEWAY_PACE_H
#define HATO_GATEWAY_PACE_H
/*
 * pace: a paced destination's local view of its shared schedule. Pure: no
 * I/O, no clock of its own (every call takes "now" in milliseconds of the
 * caller's monotonic clock), so it is tested with simulated time.
 *
 * The schedule is a sequence of send slots, at least `gap` apart, handed
 * out by the database in batches to whichever gateway asks (store_pace_*);
 * this object keeps the slots this gateway holds. The gap is the
 * configured interval / messages, divided by the current rate factor, plus
 * a margin: with it, no window of length `interval` ever holds more than
 * `messages` sends, even when a send leaves a little after its slot, as
 * long as it leaves no later than `late_ms` after it; a slot missed by more
 * than that is dropped rather than used late, since a late send followed by
 * punctual ones is what would crowd a window.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PACE_SLOTS_MAX 256

struct pace {
	unsigned messages;
	double interval_ms;
	double base_gap_ms;	/* interval / messages, with the margin */
	double late_ms;		/* a slot may be used this late, no later */
	double lookahead_ms;	/* how far ahead slots are reserved */
	double factor;		/* current fraction of the configured rate */
	double add;		/* factor earned by successes, not reported yet */
	double suspended_until;	/* local ms; 0 when not suspended */
	double slots[PACE_SLOTS_MAX];	/* local ms, ascending */
	size_t head, count;
	bool reserving;		/* a reservation is in the works */
	double recent[32];	/* local ms of this gateway's last sends */
	size_t nrecent;
	double *window;		/* local ms of this gateway's last `messages` sends */
	uint64_t nwindow;
	uint64_t sent, dropped;
};

void pace_init(struct pace *p, unsigned messages, uint64_t interval_ms);
void pace_fini(struct pace *p);

/* The base gap the database spaces slots by, in microseconds. */
uint64_t pace_base_gap_us(const struct pace *p);

/* May a message start now? 1: yes (a slot is used); 0: not yet, and *wait_ms
 * says when the next slot is (-1: no slot held: reserve). */
int pace_take(struct pace *p, double now, double *wait_ms);

/* How many slots to reserve for `waiting` messages (0: enough held, or a
 * reservation is in the works). Marks a reservation as started. */
unsigned pace_want(struct pace *p, double now, size_t waiting);

/* A reservation came back: k slots from start, gap apart (database clock,
 * seconds), with offset_ms = local ms - database ms. */
void pace_grant(struct pace *p, double start_s, double gap_s, unsigned k, double offset_ms,
    double factor, double suspended_until_s);
/* A reservation failed: nothing was reserved. */
void pace_grant_failed(struct pace *p);

/* Feedback: a message was accepted; or the destination asked us to stop. */
void pace_success(struct pace *p);
void pace_suspend(struct pace *p, double now, uint64_t suspend_ms);
/* The factor earned since the last call, for the next reservation. */
double pace_take_increase(struct pace *p);

/* Messages per second now, for the destination as a whole. */
double pace_rate(const struct pace *p);
/* Messages per second this gateway has been getting of it (several
 * gateways share one pace): what it should hold no more than a lease of. */
double pace_local_rate(const struct pace *p);

#endif
