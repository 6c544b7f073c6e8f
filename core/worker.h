#ifndef HATO_CORE_WORKER_H
#define HATO_CORE_WORKER_H
/*
 * worker: a thread that runs blocking work (database transactions, heavy
 * parsing) off the event loop. Tasks run in submission order on the
 * thread; each task's done() then runs on the event loop's thread. The
 * thread owns a context (e.g. a database connection) made by init() on the
 * thread itself.
 */
#include <event2/event.h>

struct worker;

typedef void (*worker_run_fn)(void *ctx, void *arg);	/* on the worker thread */
typedef void (*worker_done_fn)(void *arg);		/* on the loop thread */

/* init() runs first on the new thread and returns the context passed to
 * every run(); fini() runs last on the thread. Either may be NULL. */
struct worker *worker_create(struct event_base *base, const char *name,
    void *(*init)(void *init_arg), void (*fini)(void *ctx), void *init_arg);

/* Queue a task. done may be NULL. Never blocks on the work itself. */
void worker_submit(struct worker *w, worker_run_fn run, worker_done_fn done, void *arg);

/* Tasks queued or running. */
unsigned worker_pending(const struct worker *w);

/* Called on the worker thread after each task with the worker's name and
 * the seconds run() took (the latency of the database work it does). Set
 * before the first worker_create; NULL: none. */
typedef void (*worker_observe_fn)(const char *name, double seconds);
void worker_set_observer(worker_observe_fn fn);

/* Finish every queued task (their done() runs), stop the thread, free. */
void worker_free(struct worker *w);

#endif
