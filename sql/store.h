#ifndef HATO_SQL_STORE_H
#define HATO_SQL_STORE_H
/*
 * store: the job store, the only code that talks to MariaDB. Blocking:
 * daemons call it from worker threads only, never from the event loop.
 * One struct store is one connection, used by one thread at a time.
 * Prepared statements only; times are the database's clock, in UTC.
 *
 * Every call returns STORE_OK, STORE_RETRY (the server is away, the
 * connection was lost, a deadlock or lock wait: try again later; nothing
 * was committed) or STORE_ERROR (a bug or a schema problem), with the
 * reason in store_error(). A lost connection is re-made on the next call.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hato_config;

enum { STORE_OK = 0, STORE_RETRY = -1, STORE_ERROR = -2 };

struct store;

struct store *store_new(const struct hato_config *c);
void store_free(struct store *s);
/* A worker thread's own connection (core/worker.h init and fini hooks;
 * the init argument is the struct hato_config). */
void *store_worker_init(void *cf);
void store_worker_fini(void *store);
const char *store_error(const struct store *s);
/* Whether the last failure was a lost lock conflict (deadlock 1213, lock
 * wait timeout 1205): the transaction was rolled back as a whole, and
 * running it again at once is safe and likely to work. */
bool store_conflict(const struct store *s);
/* Connect now (all other calls connect on demand). */
int store_connect(struct store *s);

/* Schema: the recorded version, and migrating to the newest. create_db:
 * create the database first when it does not exist. */
int store_schema_version(struct store *s, int *version);
int store_migrate(struct store *s, bool create_db, int *from, int *to);

/* ---- intake ---- */
struct store_job_new {
	const char *submitter, *env_from, *from_addr, *subject, *body, *source_msgid;
	double send_at;		/* Unix time; 0 = now */
	bool dry_run;
	/* Held for approval: deliveries 'held' until store_job_approve. */
	bool held;
	const char *confirm_code;	/* what a reply must carry to approve */
	double hold_expires;		/* Unix time */
	/* Dry run: the recipients (r) are kept in state 'rehearsal', never
	 * sent; these copies (each with its render_dest) are sent instead. */
	const struct store_rcpt_new *rehearse;
	size_t nrehearse;
	/* The receipt, committed in the same transaction as the job: a
	 * notice to receipt->to whose message receipt_msg writes once the
	 * job number is known (malloc'd; NULL fails the transaction).
	 * NULL: no receipt. */
	const struct store_notice_new *receipt;
	char *(*receipt_msg)(void *arg, uint64_t job_id, const struct store_job_new *j);
	void *receipt_arg;
};
struct store_rcpt_new {
	const char *address;	/* canonical, unquoted */
	const char *domain;
	const char *dest;	/* routes_dest_key() of the domain */
	double at;		/* first due (Unix time); 0: the job's send_at */
	const char *render_dest;	/* a rehearsal copy: written as for this route */
};
/* The first DM job of this submitter with this source Message-ID made in
 * the last window_s seconds (a retry of a mail already stored), or 0. */
int store_job_find_retry(struct store *s, const char *submitter, const char *msgid, int window_s,
    uint64_t *job_id);
/*
 * A notice: a receipt or report to a submitter. A job of kind 'notice'
 * whose body is the whole RFC 5322 message, sent as it is with an empty
 * envelope sender; one delivery to `to`; parent_id the job it is about.
 */
struct store_notice_new {
	const char *submitter, *from_addr, *subject;
	const char *to, *domain, *dest;	/* the recipient, its domain and destination */
	const char *msg;		/* the whole message, CRLF line ends */
	uint64_t parent_id;		/* 0: none (an error receipt) */
};
int store_notice_create(struct store *s, const struct store_notice_new *n, uint64_t *job_id);
/* Recipients accepted into this submitter's DM jobs created since the
 * Unix time since (the start of its quota day). */
int store_submitter_recipients_since(struct store *s, const char *submitter, double since, uint64_t *n);

/*
 * The recipients of a new job, a chunk at a time, so that a list of a
 * million is never held whole: next fills up to max rows and returns how
 * many, 0 at the end. Its strings stay valid until the next call.
 */
struct store_rcpt_src {
	size_t (*next)(void *arg, struct store_rcpt_new *rows, size_t max);
	void *arg;
};
/* The job (recipients: n) and all its deliveries in one transaction. A
 * source that gives other than n rows fails it (STORE_ERROR). */
int store_job_create(struct store *s, const struct store_job_new *j, size_t n,
    const struct store_rcpt_src *src, uint64_t *job_id);

/* ---- job control: approval, pause, resume, cancel, reschedule ----
 *
 * A held job waits for approval; a paused one for resume. Their waiting
 * deliveries have state 'held' or 'paused', next_attempt NULL and wait_us,
 * their due time as an offset from the job's send_at, so that a release
 * keeps a Rate or Send-By spread (and is never due before now). Each call
 * is one transaction on the job row, locked first: two operators (or an
 * operator and a reply mail) never both act on one job.
 */
enum store_jobctl {
	JOBCTL_DONE = 0,	/* did it */
	JOBCTL_NO_JOB,		/* no such job (or no held job with that code) */
	JOBCTL_STATE,		/* not possible in the job's state (in .state) */
	JOBCTL_BAD_CODE,	/* the code is not this job's */
	JOBCTL_EXPIRED,		/* held too long: expired now or before */
};
struct store_jobctl_result {
	int status;		/* enum store_jobctl */
	uint64_t job_id;
	char state[17];		/* the job's state before the call */
	char submitter[65];
	size_t changed;		/* deliveries released, held back or cancelled */
	size_t in_flight;	/* deliveries leased right now (left to finish) */
	double send_at;		/* the job's send_at after the call (Unix time) */
};
/* One line saying what happened, for hatoctl, logs and receipts:
 * "job 12 paused: 840 deliveries held back, 3 in flight". */
void store_jobctl_describe(const char *verb, const struct store_jobctl_result *r, char *buf, size_t size);

/* Approve a held job: its deliveries become due (spread kept, from
 * max(send_at, now)). code: the code a reply carried, or NULL (an
 * operator). by: who approved, for jobs.approved_by. */
int store_job_approve(struct store *s, uint64_t id, const char *code, const char *by,
    struct store_jobctl_result *out);
/* The same for a reply mail that carries only the code: the held job of
 * this submitter with that code. */
int store_job_approve_code(struct store *s, const char *submitter, const char *code, const char *by,
    struct store_jobctl_result *out);
/* Waiting deliveries held back (in-flight ones finish); resume gives them
 * their due times back (never before now). */
int store_job_pause(struct store *s, uint64_t id, struct store_jobctl_result *out);
int store_job_resume(struct store *s, uint64_t id, struct store_jobctl_result *out);
/* Waiting, held and paused deliveries cancelled; the job ends 'cancelled'. */
int store_job_cancel(struct store *s, const char *owner, uint64_t id, struct store_jobctl_result *out);
/* A new send_at (Unix time; the past means now) for a job not ended; the
 * deliveries not attempted yet move with it, keeping their spread. */
int store_job_reschedule(struct store *s, uint64_t id, double when, struct store_jobctl_result *out);
/* Periodic upkeep (the gateway's worker thread): held jobs past
 * hold_expires become 'expired' with their deliveries 'cancelled'; rows of
 * paused or cancelled jobs that were in flight and came back to wait are
 * held back or cancelled too. *expired counts the jobs expired. */
int store_jobs_maintain(struct store *s, size_t *expired);

/* ---- gateway ---- */
struct store_lease {
	uint64_t id, job_id;
	unsigned attempts;	/* attempts made before this one */
	double created;		/* Unix time the delivery was created */
	char address[321];
	char domain[256];
	char dest[128];
	char render_dest[128];	/* a rehearsal copy: rendered as for this route; "" */
};

/* Destinations with deliveries due now (at most max, in *n). */
int store_due_dests(struct store *s, char (*dests)[128], size_t max, size_t *n);

/* Lease up to req[i].max due deliveries of each destination req[i].dest
 * (at most maxout in all) for lease_ms, in one transaction. */
struct store_claim_req {
	const char *dest;
	size_t max;
};
int store_claim(struct store *s, const char *owner, uint64_t lease_ms,
    const struct store_claim_req *req, size_t nreq,
    struct store_lease *out, size_t maxout, size_t *n);

/*
 * A paced destination's shared schedule. store_pace_reserve takes k send
 * slots, base_gap_us / factor apart, starting at the first free slot (not
 * before now, nor before a suspension ends), after adding factor_add to
 * the rate factor (capped at 1): the additive increase earned by the
 * successes since the last reservation. Times are the database's clock in
 * Unix seconds; db_now lets the caller map them to its own clock.
 */
struct store_pace {
	double start;		/* the first reserved slot */
	double gap;		/* seconds between the reserved slots */
	double db_now;
	double factor;
	double suspended_until;	/* 0 when not suspended */
};
int store_pace_reserve(struct store *s, const char *dest, uint64_t base_gap_us, unsigned k,
    double factor_add, struct store_pace *out);
/* Suspend for suspend_ms and halve the rate (not below min_factor) unless
 * it is suspended already: a burst of refusals counts once. */
int store_pace_suspend(struct store *s, const char *dest, uint64_t suspend_ms,
    double min_factor, const char *reason);

/* Re-route the waiting deliveries after the route table changed: dest_of
 * gives a domain's destination now. *moved counts the rows changed. */
int store_redest(struct store *s, size_t (*dest_of)(void *arg, const char *domain, char *buf, size_t size),
    void *arg, size_t *moved);

struct store_job {
	uint64_t id;
	char *submitter, *from_addr, *subject, *body;
	bool dry_run;
	bool notice;		/* kind 'notice': body is the whole message */
};
int store_job_get(struct store *s, uint64_t id, struct store_job **out);
void store_job_free(struct store_job *j);

/*
 * Completion reports. store_unreported_jobs lists DM jobs that ended
 * (done, cancelled, or expired unapproved) with no report yet.
 * store_job_report, in one transaction, marks the job reported (UPDATE ... WHERE reported_at IS
 * NULL: of several gateways one wins, the others get *made false), reads
 * what became of its deliveries, lets compose write the report and inserts
 * it as a notice.
 */
int store_unreported_jobs(struct store *s, uint64_t *ids, size_t max, size_t *n);
struct store_report_count {
	char dest[129];
	char state[17];		/* sent, failed, suppressed, cancelled, ... */
	unsigned n;
};
struct store_report_failure {
	char address[321], status[17], text[1001];
	int code;		/* 0: none */
};
struct store_report_data {
	uint64_t job_id;
	char submitter[65], state[17], source_msgid[256], subject[256];
	char receipt_to[321];	/* where its receipt went, "" when it had none */
	const struct store_report_count *counts;
	size_t ncounts;
	const struct store_report_failure *failures;
	size_t nfailures;
};
/* compose fills out (msg malloc'd, freed by the store) or returns -1 to
 * send nothing (the job is still marked reported). */
int store_job_report(struct store *s, uint64_t job_id,
    int (*compose)(void *arg, const struct store_report_data *d, struct store_notice_new *out), void *arg,
    bool *made, uint64_t *notice_id);

enum store_outcome { OUTCOME_SENT = 0, OUTCOME_DEFERRED, OUTCOME_FAILED };
const char *store_outcome_name(int outcome);

struct store_result {
	uint64_t id, job_id;
	int outcome;		/* enum store_outcome */
	unsigned attempt;	/* which attempt this was (1 for the first) */
	uint64_t retry_ms;	/* deferred: wait before the next attempt */
	int code;		/* 0: no reply */
	char status[16];
	char text[512];
	char stage[12];
	char dest[128];
	char host[256];
	char bclass[16];	/* bounce_class_name() of a failure, "" when sent */
	char address[321];	/* the recipient, for list cleaning */
};
/* Record outcomes (one transaction): the delivery row, a log row, the
 * list cleaning of failures that count against their address (see below),
 * and the job's end when nothing of it is left. A row whose lease this
 * owner no longer holds is logged but left alone. *lost counts those. */
int store_record(struct store *s, const char *owner, const struct store_result *r,
    size_t n, size_t *lost);
/* Give back this owner's leases (at shutdown). */
int store_release(struct store *s, const char *owner, size_t *n);
/* Give back the leases of these deliveries, unattempted: due again now. */
int store_unlease(struct store *s, const char *owner, const uint64_t *ids, size_t n);

/* ---- list cleaning, bounces and unsubscribes ----
 *
 * An address that fails as an unknown user or domain (store_record with a
 * bclass of "unknown-user" or "unknown-domain", or a bounce of that class)
 * gets an address_failures row for the day (the database's UTC_DATE()).
 * Once it has such rows on [cleaning] min_days different days within
 * [cleaning] window, it is suppressed (reason "unknown-user"). Suppressing
 * an address, for any reason, cancels its deliveries still queued or
 * deferred (state "cancelled", with a log row) in the same transaction.
 */
#define STORE_SUPPRESS_UNKNOWN	"unknown-user"
#define STORE_SUPPRESS_UNSUB	"unsubscribed"
#define STORE_SUPPRESS_MANUAL	"manual"

/* Which of the n canonical addresses are suppressed: reason[i] gets the
 * reason ("" when not suppressed; each at least 17 bytes). One query per
 * chunk of addresses. */
int store_suppressed(struct store *s, const char *const *addrs, size_t n, char (*reason)[17]);

/* The address of a delivery; *found false when there is no such delivery. */
int store_delivery_address(struct store *s, uint64_t id, char *addr, size_t size, bool *found);

struct store_bounce {
	uint64_t id;		/* the delivery its VERP address names */
	bool failed;		/* a permanent failure: the delivery fails */
	const char *outcome;	/* of the log row: "bounced", "delayed", ... */
	int code;		/* 0: none */
	const char *status;	/* "5.1.1", or "" */
	const char *text;	/* the diagnostic */
	const char *bclass;	/* bounce_class_name() */
	const char *host;	/* the reporting or remote MTA, or "" */
	uint64_t *job_id;	/* when not NULL: gets the delivery's job, for the log */
};
/* Record a bounce in one transaction: a delivery_log row; when failed, the
 * delivery's state "failed" and its last reply; when the class counts
 * against the address, its failure and maybe its suppression. *found is
 * false (and nothing changed) when there is no such delivery; *suppressed
 * says the address is suppressed now. */
int store_bounce(struct store *s, const char *owner, const struct store_bounce *b,
    bool *found, bool *suppressed);

/* Unsubscribe: suppress the address of delivery id with the reason
 * "unsubscribed", and log it against the delivery (via: "mail",
 * "one-click"). *found false (nothing changed) when there is no such
 * delivery; addr gets the address. */
int store_unsubscribe(struct store *s, const char *owner, uint64_t id, const char *via,
    char *addr, size_t size, bool *found);

/* Suppress an address (canonical) by hand; *added false when it was
 * suppressed already (the reason stays). *cancelled counts the waiting
 * deliveries cancelled. */
int store_suppress(struct store *s, const char *owner, const char *address, const char *reason,
    bool *added, size_t *cancelled);
/* Lift a suppression; *removed false when there was none. */
int store_unsuppress(struct store *s, const char *address, bool *removed);

struct store_suppression_row {
	char address[321], reason[17], created[32], last_reply[1001];
	uint64_t delivery_id;	/* 0: none */
};
int store_suppressions_each(struct store *s,
    int (*cb)(void *, const struct store_suppression_row *), void *arg);

/* Per address failed (unknown user or domain) on or after the UTC day
 * since ("YYYY-MM-DD"): failures, distinct days, the last reply. */
struct store_cleaning_row {
	char address[321], last_reply[1001], last_at[32];
	unsigned failures, days;
};
int store_cleaning_each(struct store *s, const char *since,
    int (*cb)(void *, const struct store_cleaning_row *), void *arg);

/* ---- hatoctl ---- */
struct store_queue_row {
	char dest[128];
	unsigned queued, leased, deferred;
	double factor;			/* 1 when the destination has no pace state */
	char suspended_until[32];	/* "" when not suspended */
	char reason[256];
	char last_reply[300];
};
int store_queues_each(struct store *s, int (*cb)(void *, const struct store_queue_row *), void *arg);

struct store_job_row {
	uint64_t id;
	char submitter[65], subject[256], state[17], created[32];
	unsigned total, queued, deferred, sent, failed;
};
int store_jobs_each(struct store *s, int (*cb)(void *, const struct store_job_row *), void *arg);
int store_job_row_get(struct store *s, uint64_t id, struct store_job_row *row, bool *found);

struct store_delivery_row {
	uint64_t id;
	char address[321], state[17], status[17], text[1001], updated[32];
	unsigned attempts;
	int code;		/* -1: none yet */
};
int store_deliveries_each(struct store *s, uint64_t job_id,
    int (*cb)(void *, const struct store_delivery_row *), void *arg);

/* The send log: delivery_log rows with their address and queue time (the
 * seconds from the delivery's creation to the attempt). Filters left 0 or
 * NULL match everything. newest: the last limit rows, newest first; else
 * the first limit rows with an id above after_id, oldest first. */
struct store_log_filter {
	uint64_t after_id, job_id, delivery_id;
	const char *address;	/* canonical, or NULL */
	unsigned limit;
};
struct store_log_row {
	uint64_t id, job_id, delivery_id;
	char at[32], address[321], dest[129], host[256], outcome[17], status[17], text[1001], bclass[17];
	unsigned attempt;
	int code;		/* -1: no reply */
	double queue_s;
};
int store_log_each(struct store *s, const struct store_log_filter *f, bool newest,
    int (*cb)(void *, const struct store_log_row *), void *arg);
/* Messages of a job sent in the last `seconds` (its current rate). */
int store_job_sent_since(struct store *s, uint64_t job_id, int seconds, unsigned *n);

/* Deliveries to an address, or the one delivery id, or those of a job
 * (whichever is given), with their job. */
struct store_trace_delivery {
	uint64_t id, job_id;
	char address[321], dest[129], state[17], status[17], text[1001], created[32], updated[32];
	char submitter[65], subject[256], source_msgid[256];
	unsigned attempts;
	int code;		/* -1: none */
};
int store_trace_deliveries_each(struct store *s, const char *address, uint64_t delivery_id, uint64_t job_id,
    int (*cb)(void *, const struct store_trace_delivery *), void *arg);
struct store_failure_row {
	char at[32], day[16], bclass[17], source[9], reply[1001];
	uint64_t delivery_id;
};
int store_address_failures_each(struct store *s, const char *address,
    int (*cb)(void *, const struct store_failure_row *), void *arg);
int store_suppression_get(struct store *s, const char *address, struct store_suppression_row *row, bool *found);
/* Jobs whose submission had this Message-ID (with or without <>). */
int store_jobs_by_msgid_each(struct store *s, const char *msgid, int (*cb)(void *, uint64_t), void *arg);

/* ---- the gateway's status page and metrics (reads only) ---- */
struct store_status_job {
	uint64_t id;
	char kind[9], submitter[65], subject[512], state[17], created[32], send_at[32];
	unsigned total, queued, deferred, sent, failed, held, other;
	unsigned sent_last_min;		/* sent in the last 60 seconds */
};
/* Jobs not finished, then those finished in the last hour, newest first,
 * at most max, with their deliveries counted by state. */
int store_status_jobs_each(struct store *s, unsigned max,
    int (*cb)(void *, const struct store_status_job *), void *arg);
/* Sends (outcome "sent") per destination and minute (Unix time / 60) from
 * the Unix time since on. */
int store_sends_per_minute_each(struct store *s, double since,
    int (*cb)(void *, const char *dest, int64_t minute, unsigned n), void *arg);
/* The newest delivery_log id (0: none). */
int store_log_last_id(struct store *s, uint64_t *id);
/* Attempts that failed, were deferred or bounced, with log ids in
 * (after, upto], newest first, at most max. */
struct store_status_failure {
	uint64_t id, job_id;
	char at[32], address[321], dest[129], outcome[17], status[17], text[256];
	int code;		/* -1: no reply */
};
int store_status_failures_each(struct store *s, uint64_t after, uint64_t upto, unsigned max,
    int (*cb)(void *, const struct store_status_failure *), void *arg);
/* Jobs counted by state. */
int store_jobs_by_state_each(struct store *s, int (*cb)(void *, const char *state, uint64_t n), void *arg);

#endif
