/*
 * worker: one thread, a FIFO of tasks, and an eventfd that wakes the event
 * loop when tasks are finished so that their done() callbacks run there.
 *
 * The loop thread owns struct worker; the two queues are shared under one
 * mutex. A task is allocated by worker_submit and freed after its done()
 * ran. worker_free drains: it waits for the queue to empty, runs the
 * remaining done() callbacks, then joins the thread.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/worker.h"

struct task {
	struct task *next;
	worker_run_fn run;
	worker_done_fn done;
	void *arg;
};

struct tqueue {
	struct task *head, *tail;
};

struct worker {
	char name[32];
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct tqueue todo, finished;
	unsigned pending;
	int stopping;
	int efd;
	struct event *ev;
	void *(*init)(void *);
	void (*fini)(void *);
	void *init_arg;
};

/* Set once at start-up, before any worker runs. */
static worker_observe_fn observer;

void
worker_set_observer(worker_observe_fn fn)
{
	observer = fn;
}

static double
mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
tq_push(struct tqueue *q, struct task *t)
{
	t->next = NULL;
	if (q->tail)
		q->tail->next = t;
	else
		q->head = t;
	q->tail = t;
}

static struct task *
tq_take_all(struct tqueue *q)
{
	struct task *t = q->head;

	q->head = q->tail = NULL;
	return t;
}

static void *
worker_main(void *p)
{
	struct worker *w = p;
	void *ctx = w->init ? w->init(w->init_arg) : NULL;
	uint64_t one = 1;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->todo.head && !w->stopping)
			pthread_cond_wait(&w->cv, &w->mu);
		if (!w->todo.head)
			break;
		struct task *t = w->todo.head;
		w->todo.head = t->next;
		if (!w->todo.head)
			w->todo.tail = NULL;
		pthread_mutex_unlock(&w->mu);
		if (observer) {
			double t0 = mono_s();
			t->run(ctx, t->arg);
			observer(w->name, mono_s() - t0);
		} else
			t->run(ctx, t->arg);
		pthread_mutex_lock(&w->mu);
		tq_push(&w->finished, t);
		/* Wake the loop; a full counter only means it is awake already. */
		if (write(w->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_warn("worker=%s eventfd write: %s", w->name, strerror(errno));
	}
	pthread_mutex_unlock(&w->mu);
	if (w->fini)
		w->fini(ctx);
	return NULL;
}

static void
worker_run_done(struct worker *w)
{
	struct task *t, *next;

	pthread_mutex_lock(&w->mu);
	t = tq_take_all(&w->finished);
	pthread_mutex_unlock(&w->mu);
	for (; t; t = next) {
		next = t->next;
		if (t->done)
			t->done(t->arg);
		pthread_mutex_lock(&w->mu);
		w->pending--;
		pthread_mutex_unlock(&w->mu);
		free(t);
	}
}

static void
worker_on_wake(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	uint64_t n;

	(void)what;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_warn("worker=%s eventfd read: %s", w->name, strerror(errno));
	worker_run_done(w);
}

struct worker *
worker_create(struct event_base *base, const char *name,
    void *(*init)(void *), void (*fini)(void *), void *init_arg)
{
	struct worker *w = calloc(1, sizeof(*w));

	if (!w)
		fatalx("worker: out of memory");
	snprintf(w->name, sizeof(w->name), "%s", name);
	w->init = init;
	w->fini = fini;
	w->init_arg = init_arg;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	if ((w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
		fatalx("worker=%s eventfd: %s", name, strerror(errno));
	w->ev = event_new(base, w->efd, EV_READ | EV_PERSIST, worker_on_wake, w);
	event_add(w->ev, NULL);
	if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
		fatalx("worker=%s: cannot start thread", name);
	return w;
}

void
worker_submit(struct worker *w, worker_run_fn run, worker_done_fn done, void *arg)
{
	struct task *t = calloc(1, sizeof(*t));

	if (!t)
		fatalx("worker: out of memory");
	t->run = run;
	t->done = done;
	t->arg = arg;
	pthread_mutex_lock(&w->mu);
	tq_push(&w->todo, t);
	w->pending++;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

unsigned
worker_pending(const struct worker *w)
{
	unsigned n;

	pthread_mutex_lock((pthread_mutex_t *)&w->mu);
	n = w->pending;
	pthread_mutex_unlock((pthread_mutex_t *)&w->mu);
	return n;
}

void
worker_free(struct worker *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stopping = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	/* done() callbacks may submit more work; run it inline is not
	 * possible any more, so they must not: callers stop submitting
	 * before freeing. */
	worker_run_done(w);
	event_free(w->ev);
	close(w->efd);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w);
}
