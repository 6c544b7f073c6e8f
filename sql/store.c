/*
 * store: MariaDB Connector/C behind a small API (see store.h).
 *
 * Statements are prepared once per connection and cached by the address of
 * their SQL text (every statement is a constant string here: no SQL is
 * ever built from data). Errors are sorted into "try again" (the server is
 * away, the connection dropped, deadlock 1213, lock wait 1205: what a
 * restart or a Galera failover looks like) and the rest. After a
 * connection error the connection is closed and the next call opens a new
 * one; an open transaction is rolled back first so nothing half-done is
 * ever committed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mysql.h>
#include <errmsg.h>
#include <mysqld_error.h>

#include "conf/config.h"
#include "core/log.h"
#include "sql/migrations.h"
#include "sql/store.h"

#define STMT_CACHE 128
#define MAXP 1300		/* parameters of the largest statement */
#define INSERT_CHUNK 256	/* delivery rows per multi-row INSERT */
#define CLAIM_CHUNK 100		/* ids per lease UPDATE */
#define SUPP_CHUNK 100		/* addresses per suppression lookup */
#define DAY_MS 86400000ULL

struct store {
	const struct hato_config *cf;
	MYSQL *my;
	struct {
		const char *sql;
		MYSQL_STMT *st;
	} cache[STMT_CACHE];
	char err[512];
	bool conflict;		/* the last failure was a deadlock or lock wait */
};

/*
 * Parameters or results of one statement. Small sets live on the stack
 * (BINDS, never zeroed as a whole: each bind_* call sets its own entry);
 * the bulk statements take a heap set sized for them (binds_new).
 */
struct binds {
	MYSQL_BIND *b;
	unsigned long *len;
	my_bool *null;
	unsigned n, cap;
};
#define SMALLP 32
#define BINDS(name) \
	MYSQL_BIND name##_b[SMALLP]; unsigned long name##_len[SMALLP]; my_bool name##_null[SMALLP]; \
	struct binds name = { name##_b, name##_len, name##_null, 0, SMALLP }

static struct binds *
binds_new(unsigned cap)
{
	struct binds *p = malloc(sizeof(*p));

	if (!p || !(p->b = malloc(cap * sizeof(*p->b))) || !(p->len = malloc(cap * sizeof(*p->len))) ||
	    !(p->null = malloc(cap * sizeof(*p->null))))
		fatalx("store: out of memory");
	p->n = 0;
	p->cap = cap;
	return p;
}

static void
binds_free(struct binds *p)
{
	free(p->b);
	free(p->len);
	free(p->null);
	free(p);
}

static unsigned
binds_next(struct binds *p)
{
	if (p->n >= p->cap)
		fatalx("store: statement with more than %u parameters", p->cap);
	return p->n++;
}

/*
 * The numeric binders serve parameters and results alike, so they take a
 * const pointer; a result variable is therefore initialised where it is
 * declared, or clang takes the fetch that fills it for a read before any
 * write (-Wuninitialized).
 */
static void
bind_u64(struct binds *p, const uint64_t *v)
{
	unsigned i = binds_next(p);
	MYSQL_BIND *b = &p->b[i];

	memset(b, 0, sizeof(*b));
	b->buffer_type = MYSQL_TYPE_LONGLONG;
	b->buffer = (void *)v;
	b->is_unsigned = 1;
	b->is_null = &p->null[i];
	p->null[i] = 0;
}

static void
bind_int(struct binds *p, const int *v)
{
	unsigned i = binds_next(p);
	MYSQL_BIND *b = &p->b[i];

	memset(b, 0, sizeof(*b));
	b->buffer_type = MYSQL_TYPE_LONG;
	b->buffer = (void *)v;
	b->is_null = &p->null[i];
	p->null[i] = 0;
}

static void
bind_dbl(struct binds *p, const double *v)
{
	unsigned i = binds_next(p);
	MYSQL_BIND *b = &p->b[i];

	memset(b, 0, sizeof(*b));
	b->buffer_type = MYSQL_TYPE_DOUBLE;
	b->buffer = (void *)v;
	b->is_null = &p->null[i];
	p->null[i] = 0;
}

/* An input string; NULL binds SQL NULL. */
static void
bind_str(struct binds *p, const char *s)
{
	unsigned i = binds_next(p);
	MYSQL_BIND *b = &p->b[i];

	memset(b, 0, sizeof(*b));
	b->buffer_type = MYSQL_TYPE_STRING;
	b->buffer = (void *)(s ? s : "");
	p->len[i] = s ? strlen(s) : 0;
	b->buffer_length = p->len[i];
	b->length = &p->len[i];
	p->null[i] = s == NULL;
	b->is_null = &p->null[i];
}

/* An output string buffer, NUL-terminated after the fetch (see fetch()). */
static void
bind_out(struct binds *p, char *buf, size_t size)
{
	unsigned i = binds_next(p);
	MYSQL_BIND *b = &p->b[i];

	memset(b, 0, sizeof(*b));
	b->buffer_type = MYSQL_TYPE_STRING;
	b->buffer = buf;
	b->buffer_length = size - 1;
	b->length = &p->len[i];
	b->is_null = &p->null[i];
	buf[0] = '\0';
}

const char *
store_error(const struct store *s)
{
	return s->err;
}

bool
store_conflict(const struct store *s)
{
	return s->conflict;
}

static void
cache_clear(struct store *s)
{
	for (int i = 0; i < STMT_CACHE; i++) {
		if (s->cache[i].st)
			mysql_stmt_close(s->cache[i].st);
		s->cache[i].st = NULL;
		s->cache[i].sql = NULL;
	}
}

static void
disconnect(struct store *s)
{
	cache_clear(s);
	if (s->my)
		mysql_close(s->my);
	s->my = NULL;
}

static bool
is_transient(unsigned e)
{
	switch (e) {
	case CR_SERVER_GONE_ERROR: case CR_SERVER_LOST: case CR_CONNECTION_ERROR:
	case CR_CONN_HOST_ERROR: case CR_SERVER_LOST_EXTENDED: case CR_COMMANDS_OUT_OF_SYNC:
	case ER_LOCK_DEADLOCK: case ER_LOCK_WAIT_TIMEOUT: case ER_CONNECTION_KILLED:
	case ER_SERVER_SHUTDOWN: case ER_QUERY_INTERRUPTED: case 4031: /* idle client disconnected */
	case 1047: /* WSREP has not yet prepared node for application use */
		return true;
	}
	return false;
}

static bool
is_connection_error(unsigned e)
{
	return e >= 2000 && e < 3000 ? true : e == ER_CONNECTION_KILLED || e == ER_SERVER_SHUTDOWN || e == 4031;
}

/* Record an error; returns STORE_RETRY or STORE_ERROR. */
static int
failed(struct store *s, unsigned e, const char *msg, const char *what)
{
	snprintf(s->err, sizeof(s->err), "%s: %s (%u)", what, msg, e);
	s->conflict = e == ER_LOCK_DEADLOCK || e == ER_LOCK_WAIT_TIMEOUT;
	if (is_connection_error(e))
		disconnect(s);
	return is_transient(e) || is_connection_error(e) ? STORE_RETRY : STORE_ERROR;
}

static int
my_failed(struct store *s, const char *what)
{
	return failed(s, mysql_errno(s->my), mysql_error(s->my), what);
}

static int
st_failed(struct store *s, MYSQL_STMT *st, const char *what)
{
	unsigned e = mysql_stmt_errno(st);
	char msg[400];

	snprintf(msg, sizeof(msg), "%s", mysql_stmt_error(st));
	return failed(s, e, msg, what);
}

struct store *
store_new(const struct hato_config *cf)
{
	struct store *s = calloc(1, sizeof(*s));

	if (!s)
		fatalx("store: out of memory");
	s->cf = cf;
	return s;
}

void *
store_worker_init(void *cf)
{
	return store_new(cf);
}

void
store_worker_fini(void *store)
{
	store_free(store);
}

void
store_free(struct store *s)
{
	if (!s)
		return;
	disconnect(s);
	free(s);
}

static int
connect_db(struct store *s, const char *db)
{
	const struct hato_config *cf = s->cf;
	unsigned timeout = (unsigned)((cf->db_connect_timeout_ms + 999) / 1000);
	unsigned rw_timeout = 60;
	const char *host = *cf->db_host ? cf->db_host : "localhost";

	if (s->my)
		return STORE_OK;
	if (!(s->my = mysql_init(NULL)))
		fatalx("store: out of memory");
	mysql_options(s->my, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
	mysql_options(s->my, MYSQL_OPT_READ_TIMEOUT, &rw_timeout);
	mysql_options(s->my, MYSQL_OPT_WRITE_TIMEOUT, &rw_timeout);
	mysql_options(s->my, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	mysql_options(s->my, MYSQL_INIT_COMMAND, "SET time_zone = '+00:00'");
	if (!mysql_real_connect(s->my, host, cf->db_user, cf->db_password, db,
	    *cf->db_host ? cf->db_port : 0, *cf->db_host ? NULL : cf->db_socket, 0)) {
		unsigned e = mysql_errno(s->my);
		char msg[400];
		snprintf(msg, sizeof(msg), "%s", mysql_error(s->my));
		mysql_close(s->my);
		s->my = NULL;
		snprintf(s->err, sizeof(s->err), "connect: %s (%u)", msg, e);
		s->conflict = false;
		/* Refused credentials or a missing database are not transient,
		 * but a daemon still waits for an operator to fix them. */
		return e >= 2000 && e < 3000 ? STORE_RETRY : STORE_ERROR;
	}
	return STORE_OK;
}

int
store_connect(struct store *s)
{
	return connect_db(s, s->cf->db_database);
}

static MYSQL_STMT *
prepare(struct store *s, const char *sql, int *rc)
{
	int free_slot = -1;
	MYSQL_STMT *st;

	if ((*rc = store_connect(s)) != STORE_OK)
		return NULL;
	for (int i = 0; i < STMT_CACHE; i++) {
		if (s->cache[i].sql == sql)
			return s->cache[i].st;
		if (!s->cache[i].sql && free_slot < 0)
			free_slot = i;
	}
	if (!(st = mysql_stmt_init(s->my)))
		fatalx("store: out of memory");
	if (mysql_stmt_prepare(st, sql, strlen(sql))) {
		*rc = st_failed(s, st, "prepare");
		mysql_stmt_close(st);
		return NULL;
	}
	if (free_slot >= 0) {
		s->cache[free_slot].sql = sql;
		s->cache[free_slot].st = st;
	} else
		fatalx("store: statement cache full");
	return st;
}

/* Prepare (cached), bind and execute. */
static MYSQL_STMT *
run(struct store *s, const char *sql, struct binds *p, int *rc, const char *what)
{
	MYSQL_STMT *st = prepare(s, sql, rc);

	if (!st)
		return NULL;
	if ((p && mysql_stmt_bind_param(st, p->b)) || mysql_stmt_execute(st)) {
		*rc = st_failed(s, st, what);
		return NULL;
	}
	*rc = STORE_OK;
	return st;
}

/*
 * A read on its own, outside any transaction: a connection that died while
 * idle (a server restart) shows only when used, and a read can simply be
 * made again on a new one, as tx_begin does for a transaction's start.
 */
static MYSQL_STMT *
run_read(struct store *s, const char *sql, struct binds *p, int *rc, const char *what)
{
	MYSQL_STMT *st = run(s, sql, p, rc, what);

	if (!st && *rc == STORE_RETRY && !s->my)
		st = run(s, sql, p, rc, what);
	return st;
}

/* Bind results and fetch one row: 1 row, 0 none, <0 error. NULL strings
 * come back empty. */
static int
fetch(struct store *s, MYSQL_STMT *st, struct binds *r, const char *what)
{
	int f;

	if (mysql_stmt_bind_result(st, r->b))
		return st_failed(s, st, what);
	f = mysql_stmt_fetch(st);
	if (f == MYSQL_NO_DATA)
		return 0;
	if (f == 1)
		return st_failed(s, st, what);
	for (unsigned i = 0; i < r->n; i++) {
		if (r->b[i].buffer_type != MYSQL_TYPE_STRING)
			continue;
		unsigned long l = r->null[i] ? 0 : r->len[i];
		if (l > r->b[i].buffer_length)
			l = r->b[i].buffer_length;	/* truncated */
		((char *)r->b[i].buffer)[l] = '\0';
	}
	return 1;
}

/*
 * A connection idle across a server restart only shows it is dead when it
 * is used. Nothing has happened in the transaction yet, so the one case
 * worth retrying at once, on a new connection, is its start.
 */
static int
tx_begin(struct store *s)
{
	int rc;

	for (int tries = 0; tries < 2; tries++) {
		if ((rc = store_connect(s)) != STORE_OK)
			return rc;
		if (mysql_real_query(s->my, "START TRANSACTION", 17) == 0)
			return STORE_OK;
		if ((rc = my_failed(s, "begin")) != STORE_RETRY || s->my)
			return rc;
	}
	return rc;
}

static int
tx_commit(struct store *s)
{
	if (mysql_commit(s->my))
		return my_failed(s, "commit");
	return STORE_OK;
}

static int
tx_abort(struct store *s, int rc)
{
	if (s->my && mysql_rollback(s->my))
		disconnect(s);
	return rc;
}

/* ---- schema ---- */

static const char SQL_VERSION_TABLE[] =
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INT NOT NULL PRIMARY KEY, name VARCHAR(64) NOT NULL,"
    " applied_at DATETIME(6) NOT NULL) ENGINE=InnoDB";
static const char SQL_VERSION_GET[] = "SELECT COALESCE(MAX(version), 0) FROM schema_version";
static const char SQL_VERSION_ADD[] =
    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, NOW(6))";

int
store_schema_version(struct store *s, int *version)
{
	BINDS(r);
	MYSQL_STMT *st;
	int rc;

	*version = 0;
	if (!(st = run(s, SQL_VERSION_GET, NULL, &rc, "schema version")))
		return rc;
	bind_int(&r, version);
	rc = fetch(s, st, &r, "schema version");
	mysql_stmt_free_result(st);
	return rc < 0 ? rc : STORE_OK;
}

/* Migrations are constant text compiled in; split on ";\n". */
static int
apply_migration(struct store *s, const struct migration *m)
{
	const char *p = m->sql;

	while (*p) {
		const char *end = strstr(p, ";\n");
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *q = p;
		/* Skip statements that are only comments and white space. */
		bool empty = true;
		for (size_t i = 0; i < len; i++) {
			if (q[i] == '-' && i + 1 < len && q[i + 1] == '-') {
				while (i < len && q[i] != '\n')
					i++;
			} else if (q[i] != ' ' && q[i] != '\n' && q[i] != '\t' && q[i] != '\r')
				empty = false;
		}
		if (!empty && mysql_real_query(s->my, p, len))
			return my_failed(s, m->name);
		p += len;
		if (end)
			p += 2;
	}
	return STORE_OK;
}

static int
create_database(struct store *s)
{
	char q[300];
	const char *db = s->cf->db_database;
	int rc;

	/* The name comes from the operator's configuration, not from mail;
	 * identifiers cannot be bound, so it is checked and quoted here. */
	for (const char *c = db; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		    (*c >= '0' && *c <= '9') || *c == '_')) {
			snprintf(s->err, sizeof(s->err), "database name '%s': use letters, digits and _", db);
			return STORE_ERROR;
		}
	if ((rc = connect_db(s, NULL)) != STORE_OK)
		return rc;
	snprintf(q, sizeof(q), "CREATE DATABASE IF NOT EXISTS `%s` CHARACTER SET utf8mb4", db);
	if (mysql_real_query(s->my, q, strlen(q)))
		return my_failed(s, "create database");
	disconnect(s);
	return STORE_OK;
}

int
store_migrate(struct store *s, bool create_db, int *from, int *to)
{
	int rc, v;

	if (create_db && (rc = store_connect(s)) != STORE_OK) {
		if ((rc = create_database(s)) != STORE_OK)
			return rc;
	}
	if ((rc = store_connect(s)) != STORE_OK)
		return rc;
	if (mysql_real_query(s->my, SQL_VERSION_TABLE, strlen(SQL_VERSION_TABLE)))
		return my_failed(s, "schema_version");
	if ((rc = store_schema_version(s, &v)) != STORE_OK)
		return rc;
	*from = *to = v;
	for (int i = 0; i < migrations_count; i++) {
		const struct migration *m = &migrations[i];
		BINDS(p);
		if (m->version <= v)
			continue;
		if ((rc = apply_migration(s, m)) != STORE_OK)
			return rc;
		bind_int(&p, &m->version);
		bind_str(&p, m->name);
		if (!run(s, SQL_VERSION_ADD, &p, &rc, "schema version"))
			return rc;
		*to = m->version;
	}
	return STORE_OK;
}

/* ---- intake ---- */

static const char SQL_JOB_INSERT[] =
    "INSERT INTO jobs (submitter, env_from, from_addr, subject, body, source_msgid,"
    " state, dry_run, recipients, send_at, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, COALESCE(FROM_UNIXTIME(?), NOW(6)), NOW(6))";

#define DLV_ROW "(?, ?, ?, ?, 'queued', 0, COALESCE(FROM_UNIXTIME(?), NOW(6)), NOW(6), NOW(6))"
#define DLV_INSERT "INSERT INTO deliveries (job_id, address, domain, dest, state, attempts," \
    " next_attempt, created_at, updated_at) VALUES "
#define R4(x) x "," x "," x "," x
#define R16(x) R4(x) "," R4(x) "," R4(x) "," R4(x)
#define R64(x) R16(x) "," R16(x) "," R16(x) "," R16(x)
#define R256(x) R64(x) "," R64(x) "," R64(x) "," R64(x)
static const char SQL_DLV_INSERT1[] = DLV_INSERT DLV_ROW;
static const char SQL_DLV_INSERTN[] = DLV_INSERT R256(DLV_ROW);

static int
insert_rows(struct store *s, struct binds *p, uint64_t job_id, const double *send_at,
    const struct store_rcpt_new *r, size_t n)
{
	size_t i = 0;
	int rc = STORE_OK;

	while (i < n && rc == STORE_OK) {
		size_t take = n - i >= INSERT_CHUNK ? INSERT_CHUNK : 1;
		p->n = 0;
		for (size_t k = 0; k < take; k++) {
			bind_u64(p, &job_id);
			bind_str(p, r[i + k].address);
			bind_str(p, r[i + k].domain);
			bind_str(p, r[i + k].dest ? r[i + k].dest : "");
			/* Its own first time (a job spread by Rate or Send-By), or
			 * the job's, or now. */
			const double *at = r[i + k].at > 0 ? &r[i + k].at : send_at;
			bind_dbl(p, at);
			if (*at == 0)
				p->null[p->n - 1] = 1;
		}
		run(s, take == 1 ? SQL_DLV_INSERT1 : SQL_DLV_INSERTN, p, &rc, "insert deliveries");
		i += take;
	}
	return rc;
}

/* The source's rows, a few multi-row INSERTs per chunk: a chunk is a
 * multiple of INSERT_CHUNK, so only the last one leaves single rows. */
#define SOURCE_CHUNK (4 * INSERT_CHUNK)
static int
insert_deliveries(struct store *s, uint64_t job_id, const double *send_at, size_t n,
    const struct store_rcpt_src *src)
{
	struct binds *p = binds_new(MAXP);
	struct store_rcpt_new *rows = calloc(SOURCE_CHUNK, sizeof(*rows));
	size_t k, total = 0;
	int rc = STORE_OK;

	if (!p || !rows)
		fatalx("store: out of memory");
	while (rc == STORE_OK && (k = src->next(src->arg, rows, SOURCE_CHUNK)) > 0) {
		total += k;
		rc = insert_rows(s, p, job_id, send_at, rows, k);
	}
	if (rc == STORE_OK && total != n) {
		snprintf(s->err, sizeof(s->err), "deliveries: %zu rows given for a job of %zu", total, n);
		rc = STORE_ERROR;
	}
	free(rows);
	binds_free(p);
	return rc;
}

/*
 * A retry is the same mail again: the MTA sends it once more when the
 * connection died after the job was committed but before it read our 250.
 * jobs_submitter_created makes this a short range scan.
 */
static const char SQL_JOB_RETRY[] =
    "SELECT id FROM jobs WHERE submitter = ? AND created_at > NOW(6) - INTERVAL ? SECOND"
    " AND kind = 'dm' AND source_msgid = ? ORDER BY id LIMIT 1";

int
store_job_find_retry(struct store *s, const char *submitter, const char *msgid, int window_s,
    uint64_t *job_id)
{
	BINDS(p);
	BINDS(r);
	MYSQL_STMT *st;
	int rc, f;

	*job_id = 0;
	bind_str(&p, submitter);
	bind_int(&p, &window_s);
	bind_str(&p, msgid);
	if (!(st = run_read(s, SQL_JOB_RETRY, &p, &rc, "job by Message-ID")))
		return rc;
	bind_u64(&r, job_id);
	f = fetch(s, st, &r, "job by Message-ID");
	mysql_stmt_free_result(st);
	if (f == 0)
		*job_id = 0;
	return f < 0 ? f : STORE_OK;
}

static int job_create_extra(struct store *s, uint64_t job_id, const struct store_job_new *j);

/* ---- intake: notices (receipts and reports) ---- */

/* reported_at is set at once: nobody reports on a notice. */
static const char SQL_NOTICE_INSERT[] =
    "INSERT INTO jobs (kind, parent_id, submitter, env_from, from_addr, subject, body, source_msgid,"
    " state, dry_run, recipients, send_at, created_at, reported_at)"
    " VALUES ('notice', ?, ?, '', ?, ?, ?, NULL, 'queued', 0, 1, NOW(6), NOW(6), NOW(6))";

/* The notice job and its delivery, inside the caller's transaction. */
static int
insert_notice(struct store *s, const struct store_notice_new *n, uint64_t *job_id)
{
	struct store_rcpt_new r = { .address = n->to, .domain = n->domain, .dest = n->dest };
	BINDS(p);
	MYSQL_STMT *st;
	double now = 0;
	int rc;

	bind_u64(&p, &n->parent_id);
	if (!n->parent_id)
		p.null[p.n - 1] = 1;
	bind_str(&p, n->submitter);
	bind_str(&p, n->from_addr);
	bind_str(&p, n->subject);
	bind_str(&p, n->msg);
	if (!(st = run(s, SQL_NOTICE_INSERT, &p, &rc, "insert notice")))
		return rc;
	*job_id = mysql_stmt_insert_id(st);
	return insert_rows(s, &p, *job_id, &now, &r, 1);
}

static int
insert_receipt(struct store *s, uint64_t job_id, const struct store_job_new *j)
{
	struct store_notice_new n = *j->receipt;
	uint64_t id;
	char *msg;
	int rc;

	if (!(msg = j->receipt_msg(j->receipt_arg, job_id, j))) {
		snprintf(s->err, sizeof(s->err), "job %llu: the receipt cannot be written", (unsigned long long)job_id);
		return STORE_ERROR;
	}
	n.msg = msg;
	n.parent_id = job_id;
	rc = insert_notice(s, &n, &id);
	free(msg);
	return rc;
}

int
store_notice_create(struct store *s, const struct store_notice_new *n, uint64_t *job_id)
{
	int rc;

	if ((rc = tx_begin(s)) != STORE_OK)
		return rc;
	if ((rc = insert_notice(s, n, job_id)) != STORE_OK)
		return tx_abort(s, rc);
	if ((rc = tx_commit(s)) != STORE_OK)
		return tx_abort(s, rc);
	return STORE_OK;
}

static const char SQL_SUBMITTER_DAY[] =
    "SELECT COALESCE(SUM(recipients), 0) FROM jobs"
    " WHERE submitter = ? AND created_at >= FROM_UNIXTIME(?) AND kind = 'dm'";

int
store_submitter_recipients_since(struct store *s, const char *submitter, double since, uint64_t *n)
{
	BINDS(p);
	BINDS(r);
	MYSQL_STMT *st;
	int rc, f;

	*n = 0;
	bind_str(&p, submitter);
	bind_dbl(&p, &since);
	if (!(st = run_read(s, SQL_SUBMITTER_DAY, &p, &rc, "recipients of the day")))
		return rc;
	bind_u64(&r, n);
	f = fetch(s, st, &r, "recipients of the day");
	mysql_stmt_free_result(st);
	return f < 0 ? f : STORE_OK;
}

int
store_job_create(struct store *s, const struct store_job_new *j, size_t n,
    const struct store_rcpt_src *src, uint64_t *job_id)
{
	BINDS(p);
	MYSQL_STMT *st;
	int dry = j->dry_run, rc;
	unsigned cnt32 = (unsigned)n;
	int cnt = (int)cnt32;
	double send_at = j->send_at;

	if ((rc = tx_begin(s)) != STORE_OK)
		return rc;
	bind_str(&p, j->submitter);
	bind_str(&p, j->env_from);
	bind_str(&p, j->from_addr);
	bind_str(&p, j->subject);
	bind_str(&p, j->body);
	bind_str(&p, j->source_msgid);
	bind_int(&p, &dry);
	bind_int(&p, &cnt);
	bind_dbl(&p, &send_at);
	if (send_at == 0)
		p.null[p.n - 1] = 1;
	if (!(st = run(s, SQL_JOB_INSERT, &p, &rc, "insert job")))
		return tx_abort(s, rc);
	*job_id = mysql_stmt_insert_id(st);
	if ((rc = insert_deliveries(s, *job_id, &send_at, n, src)) != STORE_OK)
		return tx_abort(s, rc);
	if ((rc = job_create_extra(s, *job_id, j)) != STORE_OK)
		return tx_abort(s, rc);
	if (j->receipt && (rc = insert_receipt(s, *job_id, j)) != STORE_OK)
		return tx_abort(s, rc);
	if ((rc = tx_commit(s)) != STORE_OK)
		return tx_abort(s, rc);
	return STORE_OK;
}

/* ---- intake: held and rehearsal jobs ---- */

static const char SQL_JOB_HOLD[] =
    "UPDATE jobs SET state = 'held', confirm_code = ?, hold_expires = FROM_UNIXTIME(?) WHERE id = ?";
/* wait_us is set before next_attempt is cleared: assignments run in order. */
static const char SQL_DLV_HOLD[] =
    "UPDATE deliveries d JOIN jobs j ON j.id = d.job_id"
    " SET d.wait_us = GREATEST(0, TIMESTAMPDIFF(MICROSECOND, j.send_at, d.next_attempt)),"
    " d.state = 'held', d.next_attempt = NULL WHERE d.job_id = ? AND d.state = 'queued'";
static const char SQL_DLV_REHEARSAL[] =
    "UPDATE deliveries SET state = 'rehearsal', next_attempt = NULL WHERE job_id = ?";
static const char SQL_DLV_COPY[] =
    "INSERT INTO deliveries (job_id, address, domain, dest, render_dest, state, attempts,"
    " next_attempt, created_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, 'queued', 0, COALESCE(FROM_UNIXTIME(?), NOW(6)), NOW(6), NOW(6))";

/* The real recipients of a dry run stay as the report of what the real
 * run would do; only the copies to the rehearsal addresses are sent. */
static int
insert_rehearsal(struct store *s, uint64_t job_id, const double *send_at,
    const struct store_rcpt_new *c, size_t n)
{
	BINDS(p);
	int rc;

	bind_u64(&p, &job_id);
	if (!run(s, SQL_DLV_REHEARSAL, &p, &rc, "rehearsal"))
		return rc;
	for (size_t i = 0; i < n; i++) {
		const double *at = c[i].at > 0 ? &c[i].at : send_at;
		p.n = 0;
		bind_u64(&p, &job_id);
		bind_str(&p, c[i].address);
		bind_str(&p, c[i].domain);
		bind_str(&p, c[i].dest ? c[i].dest : "");
		bind_str(&p, c[i].render_dest);
		bind_dbl(&p, at);
		if (*at == 0)
			p.null[p.n - 1] = 1;
		if (!run(s, SQL_DLV_COPY, &p, &rc, "rehearsal copy"))
			return rc;
	}
	return STORE_OK;
}

static int
hold_job(struct store *s, uint64_t job_id, const struct store_job_new *j)
{
	BINDS(p);
	int rc;

	bind_str(&p, j->confirm_code);
	bind_dbl(&p, &j->hold_expires);
	bind_u64(&p, &job_id);
	if (!run(s, SQL_JOB_HOLD, &p, &rc, "hold job"))
		return rc;
	p.n = 0;
	bind_u64(&p, &job_id);
	run(s, SQL_DLV_HOLD, &p, &rc, "hold deliveries");
	return rc;
}

/* What store_job_create does beyond a plain job, in its transaction. */
static int
job_create_extra(struct store *s, uint64_t job_id, const struct store_job_new *j)
{
	int rc = STORE_OK;

	if (j->dry_run && j->rehearse)
		rc = insert_rehearsal(s, job_id, &j->send_at, j->rehearse, j->nrehearse);
	if (rc == STORE_OK && j->held)
		rc = hold_job(s, job_id, j);
	return rc;
}

/* ---- gateway ---- */

/*
 * Claims go destination by destination (index dest, next_attempt), so that
 * a destination with a million waiting deliveries never stands in front of
 * another's. A claim moves next_attempt to the end of the lease, so leased
 * rows leave the due range; if the lease runs out unrecorded, the row is
 * due again and another gateway (or this one restarted) sends it.
 */
static const char SQL_DUE_DESTS[] =
    "SELECT dest, MIN(next_attempt) AS due FROM deliveries GROUP BY dest"
    " HAVING due <= NOW(6) LIMIT ?";
static const char SQL_CLAIM_SELECT[] =
    "SELECT id, job_id, attempts, UNIX_TIMESTAMP(created_at), address, domain, dest,"
    " COALESCE(render_dest, '') FROM deliveries WHERE dest = ? AND next_attempt <= NOW(6)"
    " AND state IN ('queued', 'deferred')"
    " ORDER BY next_attempt LIMIT ? FOR UPDATE SKIP LOCKED";
#define ID4 "?,?,?,?"
#define ID20 ID4 "," ID4 "," ID4 "," ID4 "," ID4
#define ID100 ID20 "," ID20 "," ID20 "," ID20 "," ID20
static const char SQL_CLAIM_UPDATE[] =
    "UPDATE deliveries SET lease_owner = ?, lease_until = NOW(6) + INTERVAL ? MICROSECOND,"
    " next_attempt = NOW(6) + INTERVAL ? MICROSECOND WHERE id IN (" ID100 ")";
static const char SQL_JOB_SENDING[] =
    "UPDATE jobs SET state = 'sending' WHERE id = ? AND state = 'queued'";

int
store_due_dests(struct store *s, char (*dests)[128], size_t max, size_t *n)
{
	BINDS(p);
	BINDS(r);
	char due[40];
	uint64_t lim = max;
	MYSQL_STMT *st;
	int rc, f;

	*n = 0;
	bind_u64(&p, &lim);
	if (!(st = run(s, SQL_DUE_DESTS, &p, &rc, "due destinations")))
		return rc;
	while (*n < max) {
		r.n = 0;
		bind_out(&r, dests[*n], 128);
		bind_out(&r, due, sizeof(due));
		if ((f = fetch(s, st, &r, "due destinations")) != 1)
			break;
		(*n)++;
	}
	mysql_stmt_free_result(st);
	return f < 0 ? f : STORE_OK;
}

static int
lease_ids(struct store *s, const char *owner, uint64_t lease_ms,
    const struct store_lease *l, size_t n)
{
	uint64_t us = lease_ms * 1000, zero = 0;
	struct binds *p = binds_new(MAXP);
	int rc = STORE_OK;

	if (!p)
		fatalx("store: out of memory");
	for (size_t i = 0; i < n && rc == STORE_OK; i += CLAIM_CHUNK) {
		p->n = 0;
		bind_str(p, owner);
		bind_u64(p, &us);
		bind_u64(p, &us);
		for (size_t k = 0; k < CLAIM_CHUNK; k++)
			bind_u64(p, i + k < n ? &l[i + k].id : &zero);
		run(s, SQL_CLAIM_UPDATE, p, &rc, "lease");
	}
	binds_free(p);
	return rc;
}

static int
mark_jobs_sending(struct store *s, const struct store_lease *l, size_t n)
{
	uint64_t last = 0;
	int rc = STORE_OK;

	for (size_t i = 0; i < n && rc == STORE_OK; i++) {
		BINDS(p);
		if (l[i].job_id == last)
			continue;
		last = l[i].job_id;
		bind_u64(&p, &l[i].job_id);
		run(s, SQL_JOB_SENDING, &p, &rc, "job sending");
	}
	return rc;
}

static int
claim_dest(struct store *s, const struct store_claim_req *req, struct store_lease *out,
    size_t room, size_t *n)
{
	BINDS(p);
	BINDS(r);
	struct store_lease row;
	uint64_t lim = req->max < room ? req->max : room;
	MYSQL_STMT *st;
	int rc, f = 0;

	bind_str(&p, req->dest);
	bind_u64(&p, &lim);
	if (!(st = run(s, SQL_CLAIM_SELECT, &p, &rc, "claim")))
		return rc;
	bind_u64(&r, &row.id);
	bind_u64(&r, &row.job_id);
	bind_int(&r, (int *)&row.attempts);
	bind_dbl(&r, &row.created);
	bind_out(&r, row.address, sizeof(row.address));
	bind_out(&r, row.domain, sizeof(row.domain));
	bind_out(&r, row.dest, sizeof(row.dest));
	bind_out(&r, row.render_dest, sizeof(row.render_dest));
	while (*n < room && (f = fetch(s, st, &r, "claim")) == 1)
		out[(*n)++] = row;
	mysql_stmt_free_result(st);
	return f < 0 ? f : STORE_OK;
}

int
store_claim(struct store *s, const char *owner, uint64_t lease_ms,
    const struct store_claim_req *req, size_t nreq,
    struct store_lease *out, size_t maxout, size_t *n)
{
	int rc;

	*n = 0;
	if ((rc = tx_begin(s)) != STORE_OK)
		return rc;
	for (size_t i = 0; i < nreq && *n < maxout; i++)
		if ((rc = claim_dest(s, &req[i], out, maxout, n)) != STORE_OK) {
			*n = 0;
			return tx_abort(s, rc);
		}
	if (*n && ((rc = lease_ids(s, owner, lease_ms, out, *n)) != STORE_OK ||
	    (rc = mark_jobs_sending(s, out, *n)) != STORE_OK)) {
		*n = 0;
		return tx_abort(s, rc);
	}
	if ((rc = tx_commit(s)) != STORE_OK) {
		*n = 0;
		return tx_abort(s, rc);
	}
	return STORE_OK;
}

/* ---- pace ---- */

static const char SQL_PACE_ENSURE[] =
    "INSERT IGNORE INTO pace_state (dest, next_slot, factor, updated_at)"
    " VALUES (?, NOW(6), 1, NOW(6))";
static const char SQL_PACE_GET[] =
    "SELECT UNIX_TIMESTAMP(next_slot), UNIX_TIMESTAMP(NOW(6)), factor,"
    " COALESCE(UNIX_TIMESTAMP(suspended_until), 0) FROM pace_state WHERE dest = ? FOR UPDATE";
static const char SQL_PACE_SET[] =
    "UPDATE pace_state SET next_slot = FROM_UNIXTIME(?), factor = ?, updated_at = NOW(6)"
    " WHERE dest = ?";
static const char SQL_PACE_SUSPEND[] =
    "UPDATE pace_state SET"
    " factor = IF(suspended_until IS NULL OR suspended_until < NOW(6), GREATEST(?, factor / 2), factor),"
    " suspended_until = GREATEST(COALESCE(suspended_until, NOW(6)), NOW(6) + INTERVAL ? MICROSECOND),"
    " reason = ?, updated_at = NOW(6) WHERE dest = ?";

static int
pace_ensure(struct store *s, const char *dest)
{
	BINDS(p);
	int rc;

	bind_str(&p, dest);
	run(s, SQL_PACE_ENSURE, &p, &rc, "pace");
	return rc;
}

int
store_pace_reserve(struct store *s, const char *dest, uint64_t base_gap_us, unsigned k,
    double factor_add, struct store_pace *out)
{
	BINDS(p);
	BINDS(r);
	double next_slot = 0, next;
	MYSQL_STMT *st;
	int rc, f;

	memset(out, 0, sizeof(*out));
	if ((rc = tx_begin(s)) != STORE_OK)
		return rc;
	if ((rc = pace_ensure(s, dest)) != STORE_OK)
		return tx_abort(s, rc);
	bind_str(&p, dest);
	if (!(st = run(s, SQL_PACE_GET, &p, &rc, "pace")))
		return tx_abort(s, rc);
	bind_dbl(&r, &next_slot);
	bind_dbl(&r, &out->db_now);
	bind_dbl(&r, &out->factor);
	bind_dbl(&r, &out->suspended_until);
	f = fetch(s, st, &r, "pace");
	mysql_stmt_free_result(st);
	if (f <= 0)
		return tx_abort(s, f == 0 ? STORE_RETRY : f);
	if (out->suspended_until <= out->db_now)
		out->suspended_until = 0;
	out->factor += factor_add;
	if (out->factor > 1)
		out->factor = 1;
	if (out->factor <= 0)
		out->factor = 1.0 / 64;
	out->gap = (double)base_gap_us / 1e6 / out->factor;
	out->start = next_slot > out->db_now ? next_slot : out->db_now;
	if (out->suspended_until > out->start)
		out->start = out->suspended_until;
	next = out->start + out->gap * k;
	p.n = 0;
	bind_dbl(&p, &next);
	bind_dbl(&p, &out->factor);
	bind_str(&p, dest);
	if (!run(s, SQL_PACE_SET, &p, &rc, "pace"))
		return tx_abort(s, rc);
	if ((rc = tx_commit(s)) != STORE_OK)
		return tx_abort(s, rc);
	return STORE_OK;
}

int
store_pace_suspend(struct store *s, const char *dest, uint64_t suspend_ms,
    double min_factor, const char *reason)
{
	BINDS(p);
	uint64_t us = suspend_ms * 1000;
	int rc;

	if ((rc = pace_ensure(s, dest)) != STORE_OK)
		return rc;
	bind_dbl(&p, &min_factor);
	bind_u64(&p, &us);
	bind_str(&p, reason);
	bind_str(&p, dest);
	run(s, SQL_PACE_SUSPEND, &p, &rc, "pace suspend");
	return rc;
}

static const char SQL_REDEST_LIST[] =
    "SELECT DISTINCT domain, dest FROM deliveries WHERE next_attempt IS NOT NULL"
    " AND state IN ('queued', 'deferred')";
static const char SQL_REDEST_SET[] =
    "UPDATE deliveries SET dest = ? WHERE domain = ? AND dest = ?"
    " AND state IN ('queued', 'deferred')";

struct redest_pair {
	char domain[256], dest[128];
};

int
store_redest(struct store *s, size_t (*dest_of)(void *, const char *, char *, size_t),
    void *arg, size_t *moved)
{
	BINDS(p);
	BINDS(r);
	struct redest_pair row, *pairs = NULL;
	size_t n = 0, cap = 0;
	MYSQL_STMT *st;
	int rc, f;

	*moved = 0;
	if (!(st = run(s, SQL_REDEST_LIST, NULL, &rc, "redest")))
		return rc;
	bind_out(&r, row.domain, sizeof(row.domain));
	bind_out(&r, row.dest, sizeof(row.dest));
	while ((f = fetch(s, st, &r, "redest")) == 1) {
		if (n == cap && !(pairs = realloc(pairs, (cap = cap ? cap * 2 : 64) * sizeof(*pairs))))
			fatalx("store: out of memory");
		pairs[n++] = row;
	}
	mysql_stmt_free_result(st);
	rc = f < 0 ? f : STORE_OK;
	for (size_t i = 0; i < n && rc == STORE_OK; i++) {
		char now[128];
		dest_of(arg, pairs[i].domain, now, sizeof(now));
		if (strcmp(now, pairs[i].dest) == 0)
			continue;
		p.n = 0;
		bind_str(&p, now);
		bind_str(&p, pairs[i].domain);
		bind_str(&p, pairs[i].dest);
		if ((st = run(s, SQL_REDEST_SET, &p, &rc, "redest")))
			*moved += (size_t)mysql_stmt_affected_rows(st);
	}
	free(pairs);
	return rc;
}

static const char SQL_JOB_GET[] =
    "SELECT id, submitter, from_addr, dry_run, CHAR_LENGTH(subject), OCTET_LENGTH(body), kind = 'notice'"
    " FROM jobs WHERE id = ?";
static const char SQL_JOB_TEXT[] = "SELECT subject, body FROM jobs WHERE id = ?";

static char *
xmalloc(size_t n)
{
	char *p = malloc(n);

	if (!p)
		fatalx("store: out of memory");
	return p;
}

int
store_job_get(struct store *s, uint64_t id, struct store_job **out)
{
	BINDS(p);
	BINDS(r);
	struct store_job *j = calloc(1, sizeof(*j));
	char sub[65], from[321];
	int dry = 0, slen = 0, blen = 0, notice = 0, rc, f;
	MYSQL_STMT *st;

	*out = NULL;
	if (!j)
		fatalx("store: out of memory");
	bind_u64(&p, &id);
	if (!(st = run(s, SQL_JOB_GET, &p, &rc, "job"))) {
		free(j);
		return rc;
	}
	bind_u64(&r, &j->id);
	bind_out(&r, sub, sizeof(sub));
	bind_out(&r, from, sizeof(from));
	bind_int(&r, &dry);
	bind_int(&r, &slen);
	bind_int(&r, &blen);
	bind_int(&r, &notice);
	f = fetch(s, st, &r, "job");
	mysql_stmt_free_result(st);
	if (f <= 0) {
		free(j);
		if (f == 0)
			snprintf(s->err, sizeof(s->err), "job %llu: no such job", (unsigned long long)id);
		return f == 0 ? STORE_ERROR : f;
	}
	j->submitter = strdup(sub);
	j->from_addr = strdup(from);
	j->dry_run = dry;
	j->notice = notice;
	/* Sized from the row itself: a subject holds up to 4 octets a character. */
	j->subject = xmalloc((size_t)slen * 4 + 1);
	j->body = xmalloc((size_t)blen + 1);
	if (!(st = run(s, SQL_JOB_TEXT, &p, &rc, "job text"))) {
		store_job_free(j);
		return rc;
	}
	r.n = 0;
	bind_out(&r, j->subject, (size_t)slen * 4 + 1);
	bind_out(&r, j->body, (size_t)blen + 1);
	f = fetch(s, st, &r, "job text");
	mysql_stmt_free_result(st);
	if (f <= 0) {
		store_job_free(j);
		return f == 0 ? STORE_RETRY : f;
	}
	*out = j;
	return STORE_OK;
}

void
store_job_free(struct store_job *j)
{
	if (!j)
		return;
	free(j->submitter);
	free(j->from_addr);
	free(j->subject);
	free(j->body);
	free(j);
}

/* ---- completion reports ---- */

static const char SQL_UNREPORTED[] =
    "SELECT id FROM jobs WHERE reported_at IS NULL AND state IN ('done', 'cancelled', 'expired')"
    " AND kind = 'dm' ORDER BY id LIMIT ?";
static const char SQL_REPORT_MARK[] =
    "UPDATE jobs SET reported_at = NOW(6) WHERE id = ? AND reported_at IS NULL";
static const char SQL_REPORT_JOB[] =
    "SELECT submitter, state, COALESCE(source_msgid, ''), LEFT(subject, 60) FROM jobs WHERE id = ?";
/* Where the job's receipt went: the report goes there too. */
static const char SQL_REPORT_TO[] =
    "SELECT d.address FROM jobs n JOIN deliveries d ON d.job_id = n.id"
    " WHERE n.parent_id = ? AND n.kind = 'notice' ORDER BY n.id LIMIT 1";
/* A delivery cancelled because its address was suppressed counts as
 * suppressed (cancel_waiting writes that reason). */
static const char SQL_REPORT_COUNTS[] =
    "SELECT dest, IF(state = 'cancelled' AND last_text LIKE 'suppressed:%', 'suppressed', state) AS st,"
    " COUNT(*) FROM deliveries WHERE job_id = ? GROUP BY dest, st ORDER BY dest, st";
static const char SQL_REPORT_FAILURES[] =
    "SELECT address, COALESCE(last_code, 0), COALESCE(last_status, ''), COALESCE(last_text, '')"
    " FROM deliveries WHERE job_id = ? AND state = 'failed' ORDER BY id";

int
store_unreported_jobs(struct store *s, uint64_t *ids, size_t max, size_t *n)
{
	BINDS(p);
	BINDS(r);
	uint64_t lim = max, id = 0;
	MYSQL_STMT *st;
	int rc, f;

	*n = 0;
	bind_u64(&p, &lim);
	if (!(st = run_read(s, SQL_UNREPORTED, &p, &rc, "unreported jobs")))
		return rc;
	bind_u64(&r, &id);
	while ((f = fetch(s, st, &r, "unreported jobs")) == 1 && *n < max)
		ids[(*n)++] = id;
	mysql_stmt_free_result(st);
	return f < 0 ? f : STORE_OK;
}

static int
report_counts(struct store *s, uint64_t job_id, struct store_report_count **out, size_t *n)
{
	struct store_report_count row, *v = NULL;
	size_t cap = 0;
	BINDS(p);
	BINDS(r);
	MYSQL_STMT *st;
	int rc, f, cnt = 0;

	*n = 0;
	bind_u64(&p, &job_id);
	if (!(st = run(s, SQL_REPORT_COUNTS, &p, &rc, "report counts")))
		return rc;
	bind_out(&r, row.dest, sizeof(row.dest));
	bind_out(&r, row.state, sizeof(row.state));
	bind_int(&r, &cnt);
	while ((f = fetch(s, st, &r, "report counts")) == 1) {
		if (*n == cap && !(v = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v))))
			fatalx("store: out of memory");
		row.n = (unsigned)cnt;
		v[(*n)++] = row;
	}
	mysql_stmt_free_result(st);
	*out = v;
	return f < 0 ? f : STORE_OK;
}

static int
report_failures(struct store *s, uint64_t job_id, struct store_report_failure **out, size_t *n)
{
	struct store_report_failure *v = NULL, *row;
	size_t cap = 0;
	BINDS(p);
	BINDS(r);
	MYSQL_STMT *st;
	int rc, f = 0;

	*n = 0;
	bind_u64(&p, &job_id);
	if (!(st = run(s, SQL_REPORT_FAILURES, &p, &rc, "report failures")))
		return rc;
	for (;;) {
		if (*n == cap && !(v = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v))))
			fatalx("store: out of memory");
		row = &v[*n];
		r.n = 0;
		bind_out(&r, row->address, sizeof(row->address));
		bind_int(&r, &row->code);
		bind_out(&r, row->status, sizeof(row->status));
		bind_out(&r, row->text, sizeof(row->text));
		if ((f = fetch(s, st, &r, "report failures")) != 1)
			break;
		(*n)++;
	}
	mysql_stmt_free_result(st);
	*out = v;
	return f < 0 ? f : STORE_OK;
}

/* The job row and where its receipt went. 0: no such job. */
static int
report_job(struct store *s, uint64_t job_id, struct store_report_data *d)
{
	BINDS(p);
	BINDS(r);
	MYSQL_STMT *st;
	int rc, f;

	bind_u64(&p, &job_id);
	if (!(st = run(s, SQL_REPORT_JOB, &p, &rc, "report job")))
		return rc;
	bind_out(&r, d->submitter, sizeof(d->submitter));
	bind_out(&r, d->state, sizeof(d->state));
	bind_out(&r, d->source_msgid, sizeof(d->source_msgid));
	bind_out(&r, d->subject, sizeof(d->subject));
	f = fetch(s, st, &r, "report job");
	mysql_stmt_free_result(st);
	if (f <= 0)
		return f;
	if (!(st = run(s, SQL_REPORT_TO, &p, &rc, "report address")))
		return rc;
	r.n = 0;
	bind_out(&r, d->receipt_to, sizeof(d->receipt_to));
	f = fetch(s, st, &r, "report address");
	mysql_stmt_free_result(st);
	return f < 0 ? f : 1;
}

int
store_job_report(struct store *s, uint64_t job_id,
    int (*compose)(void *arg, const struct store_report_data *d, struct store_notice_new *out), void *arg,
    bool *made, uint64_t *notice_id)
{
	struct store_report_data d = { .job_id = job_id };
	struct store_report_count *counts = NULL;
	struct store_report_failure *fails = NULL;
	struct store_notice_new n = { 0 };
	BINDS(p);
	MYSQL_STMT *st;
	int rc, f;

	*made = false;
	*notice_id = 0;
	if ((rc = tx_begin(s)) != STORE_OK)
		return rc;
	bind_u64(&p, &job_id);
	if (!(st = run(s, SQL_REPORT_MARK, &p, &rc, "report mark")))
		return tx_abort(s, rc);
	if (mysql_stmt_affected_rows(st) == 0)	/* another gateway's, or done */
		return tx_abort(s, STORE_OK);
	if ((f = report_job(s, job_id, &d)) <= 0) {
		rc = f == 0 ? tx_commit(s) : f;
		goto out;
	}
	if ((rc = report_counts(s, job_id, &counts, &d.ncounts)) != STORE_OK ||
	    (rc = report_failures(s, job_id, &fails, &d.nfailures)) != STORE_OK)
		goto out;
	d.counts = counts;
	d.failures = fails;
	if (compose(arg, &d, &n) == 0) {
		rc = insert_notice(s, &n, notice_id);
		free((char *)n.msg);	/* compose's, handed over */
		if (rc != STORE_OK)
			goto out;
		*made = true;
	}
	rc = tx_commit(s);
out:
	free(counts);
	free(fails);
	if (rc != STORE_OK) {
		*made = false;
		return tx_abort(s, rc);
	}
	return STORE_OK;
}

const char *
store_outcome_name(int outcome)
{
	static const char *names[] = { "sent", "deferred", "failed" };

	return outcome >= 0 && outcome <= OUTCOME_FAILED ? names[outcome] : "?";
}

static const char SQL_RECORD[] =
    "UPDATE deliveries SET state = ?, attempts = attempts + 1,"
    " next_attempt = IF(? = 'deferred', NOW(6) + INTERVAL ? MICROSECOND, NULL),"
    " lease_owner = NULL, lease_until = NULL, last_code = ?, last_status = ?,"
    " last_text = ?, updated_at = NOW(6), done_at = IF(? = 'deferred', NULL, NOW(6))"
    " WHERE id = ? AND lease_owner = ?";
/* The log rows of a batch go in as one multi-row INSERT per chunk. */
#define LOG_ROW "(?, ?, NOW(6), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
#define LOG_INSERT "INSERT INTO delivery_log (delivery_id, job_id, at, attempt, outcome, stage, code," \
    " status, text, class, destination, host, gateway) VALUES "
#define LOG_CHUNK 64
static const char SQL_LOG1[] = LOG_INSERT LOG_ROW;
static const char SQL_LOGN[] = LOG_INSERT R64(LOG_ROW);
static const char SQL_JOB_DONE[] =
    "UPDATE jobs SET state = 'done', finished_at = NOW(6)"
    " WHERE id = ? AND state IN ('queued', 'sending') AND NOT EXISTS"
    " (SELECT 1 FROM deliveries WHERE job_id = ? AND state IN ('queued', 'deferred'))";

static int
record_one(struct store *s, const char *owner, const struct store_result *r, size_t *lost)
{
	const char *state = store_outcome_name(r->outcome);
	uint64_t us = r->retry_ms * 1000;
	BINDS(p);
	MYSQL_STMT *st;
	int code = r->code, rc;

	bind_str(&p, state);
	bind_str(&p, state);
	bind_u64(&p, &us);
	bind_int(&p, &code);
	if (!r->code)
		p.null[p.n - 1] = 1;
	bind_str(&p, *r->status ? r->status : NULL);
	bind_str(&p, r->text);
	bind_str(&p, state);
	bind_u64(&p, &r->id);
	bind_str(&p, owner);
	if (!(st = run(s, SQL_RECORD, &p, &rc, "record")))
		return rc;
	if (mysql_stmt_affected_rows(st) == 0)
		(*lost)++;
	return rc;
}

/*
 * The delivery rows of a batch change 64 at a time: one UPDATE joined to
 * the outcomes as a derived table, instead of one statement a row (the
 * server's cost of a recorded send fell by more than half). The lease
 * check stays per row; the affected rows tell how many leases were lost.
 */
#define REC_FIRST "SELECT ? AS id, ? AS state, ? AS us, ? AS code, ? AS status, ? AS text"
#define REC1 " UNION ALL SELECT ?, ?, ?, ?, ?, ?"
#define REC4 REC1 REC1 REC1 REC1
#define REC16 REC4 REC4 REC4 REC4
#define REC_CHUNK 64
static const char SQL_RECORDN[] =
    "UPDATE deliveries d JOIN (" REC_FIRST REC16 REC16 REC16 REC4 REC4 REC4 REC1 REC1 REC1 ") v"
    " ON d.id = v.id SET d.state = v.state, d.attempts = d.attempts + 1,"
    " d.next_attempt = IF(v.state = 'deferred', NOW(6) + INTERVAL v.us MICROSECOND, NULL),"
    " d.lease_owner = NULL, d.lease_until = NULL, d.last_code = v.code, d.last_status = v.status,"
    " d.last_text = v.text, d.updated_at = NOW(6), d.done_at = IF(v.state = 'deferred', NULL, NOW(6))"
    " WHERE d.lease_owner = ?";

static int
record_chunk(struct store *s, struct binds *p, const char *owner, const struct store_result *r,
    const uint64_t *us, size_t *lost)
{
	MYSQL_STMT *st;
	int rc;

	p->n = 0;
	for (size_t k = 0; k < REC_CHUNK; k++) {
		bind_u64(p, &r[k].id);
		bind_str(p, store_outcome_name(r[k].outcome));
		bind_u64(p, &us[k]);
		bind_int(p, &r[k].code);
		if (!r[k].code)
			p->null[p->n - 1] = 1;
		bind_str(p, *r[k].status ? r[k].status : NULL);
		bind_str(p, r[k].text);
	}
	bind_str(p, owner);
	if (!(st = run(s, SQL_RECORDN, p, &rc, "record")))
		return rc;
	*lost += REC_CHUNK - (size_t)mysql_stmt_affected_rows(st);
	return rc;
}

static int
record_rows(struct store *s, const char *owner, const struct store_result *r, size_t n, size_t *lost)
{
	struct binds *p = binds_new(REC_CHUNK * 6 + 1);
	uint64_t us[REC_CHUNK];
	size_t i = 0;
	int rc = STORE_OK;

	if (!p)
		fatalx("store: out of memory");
	for (; n - i >= REC_CHUNK && rc == STORE_OK; i += REC_CHUNK) {
		for (size_t k = 0; k < REC_CHUNK; k++)
			us[k] = r[i + k].retry_ms * 1000;
		rc = record_chunk(s, p, owner, &r[i], us, lost);
	}
	for (; i < n && rc == STORE_OK; i++)
		rc = record_one(s, owner, &r[i], lost);
	binds_free(p);
	return rc;
}

static void
bind_log_row(struct binds *p, const char *owner, const struct store_result *r, const char *state,
    const int *code)
{
	bind_u64(p, &r->id);
	bind_u64(p, &r->job_id);
	bind_int(p, (const int *)&r->attempt);
	bind_str(p, state);
	bind_str(p, r->stage);
	bind_int(p, code);
	if (!r->code)
		p->null[p->n - 1] = 1;
	bind_str(p, *r->status ? r->status : NULL);
	bind_str(p, r->text);
	bind_str(p, *r->bclass ? r->bclass : NULL);
	bind_str(p, r->dest);
	bind_str(p, r->host);
	bind_str(p, owner);
}

static int
log_results(struct store *s, const char *owner, const struct store_result *r, size_t n)
{
	struct binds *p = binds_new(LOG_CHUNK * 13);
	int *codes = malloc((n ? n : 1) * sizeof(*codes));
	int rc = STORE_OK;

	if (!codes)
		fatalx("store: out of memory");
	for (size_t i = 0; i < n; i++)
		codes[i] = r[i].code;
	for (size_t i = 0; i < n && rc == STORE_OK;) {
		size_t take = n - i >= LOG_CHUNK ? LOG_CHUNK : 1;
		p->n = 0;
		for (size_t k = 0; k < take; k++)
			bind_log_row(p, owner, &r[i + k], store_outcome_name(r[i + k].outcome), &codes[i + k]);
		run(s, take == 1 ? SQL_LOG1 : SQL_LOGN, p, &rc, "log");
		i += take;
	}
	free(codes);
	binds_free(p);
	return rc;
}

/* ---- list cleaning, bounces and unsubscribes ---- */

static const char SQL_FAIL_ADD[] =
    "INSERT INTO address_failures (address, day, class, delivery_id, at, source, reply)"
    " VALUES (?, UTC_DATE(), ?, ?, NOW(6), ?, LEFT(?, 1000))";
#define COUNTING_CLASSES "('unknown-user', 'unknown-domain')"
static const char SQL_FAIL_DAYS[] =
    "SELECT COUNT(DISTINCT day) FROM address_failures"
    " WHERE address = ? AND day > UTC_DATE() - INTERVAL ? DAY AND class IN " COUNTING_CLASSES;
/* An unsubscribe outranks the other reasons: it is the person's own word,
 * and it must outlive an operator lifting a suppression made by cleaning. */
static const char SQL_SUPPRESS_ADD[] =
    "INSERT INTO suppressions (address, reason, created_at, last_reply, delivery_id)"
    " VALUES (?, ?, NOW(6), LEFT(?, 1000), ?)"
    " ON DUPLICATE KEY UPDATE reason = IF(VALUES(reason) = 'unsubscribed', 'unsubscribed', reason)";
static const char SQL_CANCEL_JOBS[] =
    "SELECT DISTINCT job_id FROM deliveries WHERE address = ?"
    " AND state IN ('queued', 'deferred') FOR UPDATE";
static const char SQL_CANCEL_LOG[] =
    "INSERT INTO delivery_log (delivery_id, job_id, at, attempt, outcome, stage, text,"
    " destination, gateway)"
    " SELECT id, job_id, NOW(6), attempts, 'cancelled', '', ?, dest, ? FROM deliveries"
    " WHERE address = ? AND state IN ('queued', 'deferred')";
/* A row leased right now is cancelled too: its gateway finds the lease
 * gone when it records the outcome, and leaves the row alone. */
static const char SQL_CANCEL[] =
    "UPDATE deliveries SET state = 'cancelled', next_attempt = NULL, lease_owner = NULL,"
    " lease_until = NULL, last_text = ?, updated_at = NOW(6), done_at = NOW(6)"
    " WHERE address = ? AND state IN ('queued', 'deferred')";

static bool
counts_against_address(const char *bclass)
{
	/* bounce_class_name() of the classes bounce_counts_against_address() takes. */
	return strcmp(bclass, "unknown-user") == 0 || strcmp(bclass, "unknown-domain") == 0;
}

static int
jobs_done(struct store *s, const uint64_t *jobs, size_t n)
{
	int rc = STORE_OK;

	for (size_t i = 0; i < n && rc == STORE_OK; i++) {
		BINDS(p);
		bind_u64(&p, &jobs[i]);
		bind_u64(&p, &jobs[i]);
		run(s, SQL_JOB_DONE, &p, &rc, "job done");
	}
	return rc;
}

/* Cancel the deliveries of an address still waiting, log each, and end the
 * jobs left with nothing to send. */
static int
cancel_waiting(struct store *s, const char *owner, const char *address, const char *reason,
    size_t *cancelled)
{
	BINDS(p);
	BINDS(r);
	uint64_t job = 0, *jobs = NULL;
	size_t njobs = 0, cap = 0;
	char why[64];
	MYSQL_STMT *st;
	int rc, f;

	*cancelled = 0;
	bind_str(&p, address);
	if (!(st = run(s, SQL_CANCEL_JOBS, &p, &rc, "cancel")))
		return rc;
	bind_u64(&r, &job);
	while ((f = fetch(s, st, &r, "cancel")) == 1) {
		if (njobs == cap && !(jobs = realloc(jobs, (cap = cap ? cap * 2 : 8) * sizeof(*jobs))))
			fatalx("store: out of memory");
		jobs[njobs++] = job;
	}
	mysql_stmt_free_result(st);
	if (f < 0 || njobs == 0) {
		free(jobs);
		return f < 0 ? f : STORE_OK;
	}
	snprintf(why, sizeof(why), "suppressed: %s", reason);
	p.n = 0;
	bind_str(&p, why);
	bind_str(&p, owner);
	bind_str(&p, address);
	if (run(s, SQL_CANCEL_LOG, &p, &rc, "cancel log")) {
		p.n = 0;
		bind_str(&p, why);
		bind_str(&p, address);
		if ((st = run(s, SQL_CANCEL, &p, &rc, "cancel")))
			*cancelled = (size_t)mysql_stmt_affected_rows(st);
	}
	if (rc == STORE_OK)
		rc = jobs_done(s, jobs, njobs);
	free(jobs);
	return rc;
}

/* Suppress an address (inside the caller's transaction) and cancel what
 * of it still waits. *added: it was not suppressed before. */
static int
suppress_address(struct store *s, const char *owner, const char *address, const char *reason,
    const char *last_reply, uint64_t delivery_id, bool *added, size_t *cancelled)
{
	BINDS(p);
	MYSQL_STMT *st;
	int rc;

	*added = false;
	*cancelled = 0;
	bind_str(&p, address);
	bind_str(&p, reason);
	bind_str(&p, last_reply);
	bind_u64(&p, &delivery_id);
	if (!delivery_id)
		p.null[p.n - 1] = 1;
	if (!(st = run(s, SQL_SUPPRESS_ADD, &p, &rc, "suppress")))
		return rc;
	*added = mysql_stmt_affected_rows(st) == 1;
	return cancel_waiting(s, owner, address, reason, cancelled);
}

/* One failure of an address as an unknown user or domain (inside the
 * caller's transaction); suppress it once it has failed on enough days. */
static int
address_failed(struct store *s, const char *owner, const char *address, const char *bclass,
    uint64_t delivery_id, const char *source, const char *reply, bool *suppressed)
{
	const struct hato_config *cf = s->cf;
	int window = (int)((cf->cleaning_window_ms + DAY_MS - 1) / DAY_MS), days = 0, rc, f;
	unsigned min_days = cf->cleaning_min_days ? cf->cleaning_min_days : 2;
	BINDS(p);
	BINDS(r);
	size_t cancelled;
	MYSQL_STMT *st;
	bool added;

	*suppressed = false;
	if (window < 1)
		window = 7;
	bind_str(&p, address);
	bind_str(&p, bclass);
	bind_u64(&p, &delivery_id);
	if (!delivery_id)
		p.null[p.n - 1] = 1;
	bind_str(&p, source);
	bind_str(&p, reply);
	if (!run(s, SQL_FAIL_ADD, &p, &rc, "address failure"))
		return rc;
	p.n = 0;
	bind_str(&p, address);
	bind_int(&p, &window);
	if (!(st = run(s, SQL_FAIL_DAYS, &p, &rc, "address failures")))
		return rc;
	bind_int(&r, &days);
	f = fetch(s, st, &r, "address failures");
	mysql_stmt_free_result(st);
	if (f < 0)
		return f;
	if ((unsigned)days < min_days)
		return STORE_OK;
	if ((rc = suppress_address(s, owner, address, STORE_SUPPRESS_UNKNOWN, reply, delivery_id,
	    &added, &cancelled)) != STORE_OK)
		return rc;
	*suppressed = true;
	return STORE_OK;
}

/* "550 5.1.1 text", from what is known of a reply; a text that starts
 * with its code already (a DSN's Diagnostic-Code) is taken as it is. */
static void
reply_line(char *buf, size_t size, int code, const char *status, const char *text)
{
	char c[16] = "";
	int n = 0;

	if (code > 0)
		n = snprintf(c, sizeof(c), "%d ", code);
	if (n > 1 && text && strncmp(text, c, (size_t)n - 1) == 0 &&
	    (text[n - 1] == ' ' || text[n - 1] == '\0')) {
		snprintf(buf, size, "%s", text);
		return;
	}
	snprintf(buf, size, "%s%s%s%s", c, status && *status ? status : "",
	    status && *status ? " " : "", text ? text : "");
}

static int
record_cleaning(struct store *s, const char *owner, const struct store_result *r, bool *suppressed)
{
	char reply[1100];

	*suppressed = false;
	if (r->outcome == OUTCOME_SENT || !counts_against_address(r->bclass) || !*r->address)
		return STORE_OK;
	reply_line(reply, sizeof(reply), r->code, r->status, r->text);
	return address_failed(s, owner, r->address, r->bclass, r->id, "smtp", reply, suppressed);
}

int
store_record(struct store *s, const char *owner, const struct store_result *r,
    size_t n, size_t *lost)
{
	bool *suppressed;
	int rc;

	*lost = 0;
	if (!(suppressed = calloc(n ? n : 1, sizeof(*suppressed))))
		fatalx("store: out of memory");
	if ((rc = tx_begin(s)) != STORE_OK)
		goto out;
	if ((rc = record_rows(s, owner, r, n, lost)) != STORE_OK)
		goto abort;
	for (size_t i = 0; i < n; i++)
		if ((rc = record_cleaning(s, owner, &r[i], &suppressed[i])) != STORE_OK)
			goto abort;
	if ((rc = log_results(s, owner, r, n)) != STORE_OK)
		goto abort;
	for (size_t i = 0; i < n; i++) {
		BINDS(p);
		if (r[i].outcome == OUTCOME_DEFERRED || (i && r[i].job_id == r[i - 1].job_id))
			continue;
		bind_u64(&p, &r[i].job_id);
		bind_u64(&p, &r[i].job_id);
		if (!run(s, SQL_JOB_DONE, &p, &rc, "job done"))
			goto abort;
	}
	if ((rc = tx_commit(s)) != STORE_OK)
		goto abort;
	for (size_t i = 0; i < n; i++)
		if (suppressed[i])
			log_notice("cleaning dlv=%llu address=%s class=%s status=suppressed",
			    (unsigned long long)r[i].id, r[i].address, r[i].bclass);
	goto out;
abort:
	rc = tx_abort(s, rc);
out:
	free(suppressed);
	return rc;
}

/* ---- bounces, unsubscribes, suppressions ---- */

static const char SQL_SUPPRESSED[] =
    "SELECT address, reason FROM suppressions WHERE address IN (" ID100 ")";

int
store_suppressed(struct store *s, const char *const *addrs, size_t n, char (*reason)[17])
{
	struct binds *p = binds_new(MAXP);
	BINDS(r);
	char addr[321], why[17];
	MYSQL_STMT *st;
	int rc = STORE_OK, f = 0;

	if (!p)
		fatalx("store: out of memory");
	for (size_t i = 0; i < n; i++)
		reason[i][0] = '\0';
	/* Fixed-size chunks, padded with "" (never an address): one
	 * prepared statement whatever the list. */
	for (size_t i = 0; i < n && rc == STORE_OK; i += SUPP_CHUNK) {
		size_t take = n - i < SUPP_CHUNK ? n - i : SUPP_CHUNK;
		p->n = 0;
		for (size_t k = 0; k < SUPP_CHUNK; k++)
			bind_str(p, k < take ? addrs[i + k] : "");
		if (!(st = run_read(s, SQL_SUPPRESSED, p, &rc, "suppressed")))
			break;
		r.n = 0;
		bind_out(&r, addr, sizeof(addr));
		bind_out(&r, why, sizeof(why));
		while ((f = fetch(s, st, &r, "suppressed")) == 1)
			for (size_t k = 0; k < take; k++)
				if (strcmp(addrs[i + k], addr) == 0)
					snprintf(reason[i + k], 17, "%s", why);
		mysql_stmt_free_result(st);
		if (f < 0)
			rc = f;
	}
	binds_free(p);
	return rc;
}

static const char SQL_DLV_ADDRESS[] = "SELECT address FROM deliveries WHERE id = ?";

int
store_delivery_address(struct store *s, uint64_t id, char *addr, size_t size, bool *found)
{
	BINDS(p);
	BINDS(r);
	MYSQL_STMT *st;
	int rc, f;

	*found = false;
	bind_u64(&p, &id);
	if (!(st = run_read(s, SQL_DLV_ADDRESS, &p, &rc, "delivery")))
		return rc;
	bind_out(&r, addr, size);
	f = fetch(s, st, &r, "delivery");
	mysql_stmt_free_result(st);
	*found = f == 1;
	return f < 0 ? f : STORE_OK;
}

static const char SQL_DLV_LOCK[] =
    "SELECT job_id, address FROM deliveries WHERE id = ? FOR UPDATE";
static const char SQL_BOUNCE_LOG[] =
    "INSERT INTO delivery_log (delivery_id, job_id, at, attempt, outcome, stage, code,"
    " status, text, class, destination, host, gateway)"
    " SELECT id, job_id, NOW(6), attempts, ?, 'dsn', ?, ?, LEFT(?, 1000), ?, dest,"
    " LEFT(?, 255), ? FROM deliveries WHERE id = ?";
static const char SQL_BOUNCE_FAIL[] =
    "UPDATE deliveries SET state = 'failed', next_attempt = NULL, lease_owner = NULL,"
    " lease_until = NULL, last_code = ?, last_status = ?, last_text = LEFT(?, 1000),"
    " updated_at = NOW(6), done_at = NOW(6) WHERE id = ?";

/* Lock a delivery row; 1 found (job and address filled), 0 none, <0 error. */
static int
delivery_lock(struct store *s, uint64_t id, uint64_t *job_id, char *addr, size_t size)
{
	BINDS(p);
	BINDS(r);
	MYSQL_STMT *st;
	int rc, f;

	bind_u64(&p, &id);
	if (!(st = run(s, SQL_DLV_LOCK, &p, &rc, "delivery")))
		return rc;
	bind_u64(&r, job_id);
	bind_out(&r, addr, size);
	f = fetch(s, st, &r, "delivery");
	mysql_stmt_free_result(st);
	return f;
}

static int
bounce_apply(struct store *s, const char *owner, const struct store_bounce *b, uint64_t job_id,
    const char *address, bool *suppressed)
{
	BINDS(p);
	char reply[1100];
	int code = b->code, rc;

	bind_str(&p, b->outcome);
	bind_int(&p, &code);
	if (!code)
		p.null[p.n - 1] = 1;
	bind_str(&p, *b->status ? b->status : NULL);
	bind_str(&p, b->text);
	bind_str(&p, *b->bclass ? b->bclass : NULL);
	bind_str(&p, b->host);
	bind_str(&p, owner);
	bind_u64(&p, &b->id);
	if (!run(s, SQL_BOUNCE_LOG, &p, &rc, "bounce log"))
		return rc;
	if (!b->failed)
		return STORE_OK;
	p.n = 0;
	bind_int(&p, &code);
	if (!code)
		p.null[p.n - 1] = 1;
	bind_str(&p, *b->status ? b->status : NULL);
	bind_str(&p, b->text);
	bind_u64(&p, &b->id);
	if (!run(s, SQL_BOUNCE_FAIL, &p, &rc, "bounce") || (rc = jobs_done(s, &job_id, 1)) != STORE_OK)
		return rc;
	if (!counts_against_address(b->bclass))
		return STORE_OK;
	reply_line(reply, sizeof(reply), b->code, b->status, b->text);
	return address_failed(s, owner, address, b->bclass, b->id, "dsn", reply, suppressed);
}

int
store_bounce(struct store *s, const char *owner, const struct store_bounce *b,
    bool *found, bool *suppressed)
{
	char address[321];
	uint64_t job_id = 0;
	int rc, f;

	*found = *suppressed = false;
	if ((rc = tx_begin(s)) != STORE_OK)
		return rc;
	if ((f = delivery_lock(s, b->id, &job_id, address, sizeof(address))) <= 0)
		return tx_abort(s, f < 0 ? f : STORE_OK);
	*found = true;
	if (b->job_id)
		*b->job_id = job_id;
	if ((rc = bounce_apply(s, owner, b, job_id, address, suppressed)) != STORE_OK ||
	    (rc = tx_commit(s)) != STORE_OK) {
		*found = *suppressed = false;
		return tx_abort(s, rc);
	}
	return STORE_OK;
}

static const char SQL_UNSUB_LOG[] =
    "INSERT INTO delivery_log (delivery_id, job_id, at, attempt, outcome, stage, text, gateway)"
    " SELECT id, job_id, NOW(6), attempts, 'unsubscribed', '', ?, ? FROM deliveries WHERE id = ?";

int
store_unsubscribe(struct store *s, const char *owner, uint64_t id, const char *via,
    char *addr, size_t size, bool *found)
{
	BINDS(p);
	uint64_t job_id;
	size_t cancelled;
	char text[64];
	bool added;
	int rc, f;

	*found = false;
	if ((rc = tx_begin(s)) != STORE_OK)
		return rc;
	if ((f = delivery_lock(s, id, &job_id, addr, size)) <= 0)
		return tx_abort(s, f < 0 ? f : STORE_OK);
	snprintf(text, sizeof(text), "List-Unsubscribe by %s", via);
	bind_str(&p, text);
	bind_str(&p, owner);
	bind_u64(&p, &id);
	if (!run(s, SQL_UNSUB_LOG, &p, &rc, "unsubscribe") ||
	    (rc = suppress_address(s, owner, addr, STORE_SUPPRESS_UNSUB, text, id,
	    &added, &cancelled)) != STORE_OK ||
	    (rc = tx_commit(s)) != STORE_OK)
		return tx_abort(s, rc);
	*found = true;
	return STORE_OK;
}

int
store_suppress(struct store *s, const char *owner, const char *address, const char *reason,
    bool *added, size_t *cancelled)
{
	int rc;

	*added = false;
	*cancelled = 0;
	if ((rc = tx_begin(s)) != STORE_OK)
		return rc;
	if ((rc = suppress_address(s, owner, address, reason, NULL, 0, added, cancelled)) != STORE_OK ||
	    (rc = tx_commit(s)) != STORE_OK) {
		*added = false;
		*cancelled = 0;
		return tx_abort(s, rc);
	}
	return STORE_OK;
}

static const char SQL_UNSUPPRESS[] = "DELETE FROM suppressions WHERE address = ?";

int
store_unsuppress(struct store *s, const char *address, bool *removed)
{
	BINDS(p);
	MYSQL_STMT *st;
	int rc;

	*removed = false;
	bind_str(&p, address);
	if (!(st = run(s, SQL_UNSUPPRESS, &p, &rc, "unsuppress")))
		return rc;
	*removed = mysql_stmt_affected_rows(st) > 0;
	return STORE_OK;
}

static const char SQL_SUPPRESSIONS[] =
    "SELECT address, reason, DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s'),"
    " COALESCE(last_reply, ''), COALESCE(delivery_id, 0) FROM suppressions ORDER BY address";

int
store_suppressions_each(struct store *s,
    int (*cb)(void *, const struct store_suppression_row *), void *arg)
{
	BINDS(r);
	struct store_suppression_row row;
	MYSQL_STMT *st;
	int rc, f;

	if (!(st = run(s, SQL_SUPPRESSIONS, NULL, &rc, "suppressions")))
		return rc;
	bind_out(&r, row.address, sizeof(row.address));
	bind_out(&r, row.reason, sizeof(row.reason));
	bind_out(&r, row.created, sizeof(row.created));
	bind_out(&r, row.last_reply, sizeof(row.last_reply));
	bind_u64(&r, &row.delivery_id);
	while ((f = fetch(s, st, &r, "suppressions")) == 1)
		if (cb(arg, &row))
			break;
	mysql_stmt_free_result(st);
	return f < 0 ? f : STORE_OK;
}

static const char SQL_CLEANING[] =
    "SELECT f.address, COUNT(*), COUNT(DISTINCT f.day),"
    " COALESCE((SELECT g.reply FROM address_failures g WHERE g.address = f.address"
    "   AND g.day >= ? AND g.class IN " COUNTING_CLASSES
    "   ORDER BY g.at DESC, g.id DESC LIMIT 1), ''),"
    " DATE_FORMAT(MAX(f.at), '%Y-%m-%d %H:%i:%s')"
    " FROM address_failures f WHERE f.day >= ? AND f.class IN " COUNTING_CLASSES
    " GROUP BY f.address ORDER BY f.address";

int
store_cleaning_each(struct store *s, const char *since,
    int (*cb)(void *, const struct store_cleaning_row *), void *arg)
{
	BINDS(p);
	BINDS(r);
	struct store_cleaning_row row;
	const char *from = since && *since ? since : "1000-01-01";
	MYSQL_STMT *st;
	int rc, f;

	bind_str(&p, from);
	bind_str(&p, from);
	if (!(st = run(s, SQL_CLEANING, &p, &rc, "cleaning report")))
		return rc;
	bind_out(&r, row.address, sizeof(row.address));
	bind_int(&r, (int *)&row.failures);
	bind_int(&r, (int *)&row.days);
	bind_out(&r, row.last_reply, sizeof(row.last_reply));
	bind_out(&r, row.last_at, sizeof(row.last_at));
	while ((f = fetch(s, st, &r, "cleaning report")) == 1)
		if (cb(arg, &row))
			break;
	mysql_stmt_free_result(st);
	return f < 0 ? f : STORE_OK;
}

static const char SQL_RELEASE[] =
    "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL, next_attempt = NOW(6)"
    " WHERE lease_owner = ? AND state IN ('queued', 'deferred')";

int
store_release(struct store *s, const char *owner, size_t *n)
{
	BINDS(p);
	MYSQL_STMT *st;
	int rc;

	*n = 0;
	bind_str(&p, owner);
	if (!(st = run(s, SQL_RELEASE, &p, &rc, "release")))
		return rc;
	*n = (size_t)mysql_stmt_affected_rows(st);
	return STORE_OK;
}

static const char SQL_UNLEASE[] =
    "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL, next_attempt = NOW(6)"
    " WHERE id IN (" ID100 ") AND lease_owner = ? AND state IN ('queued', 'deferred')";

int
store_unlease(struct store *s, const char *owner, const uint64_t *ids, size_t n)
{
	struct binds *p = binds_new(MAXP);
	uint64_t zero = 0;
	int rc = STORE_OK;

	if (!p)
		fatalx("store: out of memory");
	for (size_t i = 0; i < n && rc == STORE_OK; i += CLAIM_CHUNK) {
		p->n = 0;
		for (size_t k = 0; k < CLAIM_CHUNK; k++)
			bind_u64(p, i + k < n ? &ids[i + k] : &zero);
		bind_str(p, owner);
		run(s, SQL_UNLEASE, p, &rc, "unlease");
	}
	binds_free(p);
	return rc;
}

/* ---- job control ---- */

static const char SQL_JOBCTL_LOCK[] =
    "SELECT id, state, submitter, COALESCE(confirm_code, ''), COALESCE(UNIX_TIMESTAMP(hold_expires), 0),"
    " UNIX_TIMESTAMP(send_at), UNIX_TIMESTAMP(NOW(6)) FROM jobs WHERE id = ? FOR UPDATE";
static const char SQL_JOBCTL_BY_CODE[] =
    "SELECT id FROM jobs WHERE confirm_code = ? AND submitter = ? ORDER BY id DESC LIMIT 1";
static const char SQL_JOBCTL_IN_FLIGHT[] =
    "SELECT COUNT(*) FROM deliveries WHERE job_id = ? AND state IN ('queued', 'deferred')"
    " AND lease_until > NOW(6)";
/* Not leased: a row whose lease ran out unrecorded is waiting again. */
#define NOT_LEASED " AND (lease_until IS NULL OR lease_until <= NOW(6))"
static const char SQL_JOBCTL_RELEASE[] =
    "UPDATE deliveries SET state = 'queued',"
    " next_attempt = FROM_UNIXTIME(?) + INTERVAL COALESCE(wait_us, 0) MICROSECOND,"
    " wait_us = NULL, updated_at = NOW(6) WHERE job_id = ? AND state = 'held'";
static const char SQL_JOBCTL_APPROVED[] =
    "UPDATE jobs SET state = 'queued', approved_by = ?, approved_at = NOW(6),"
    " send_at = FROM_UNIXTIME(?) WHERE id = ?";
static const char SQL_JOBCTL_EXPIRE_DLV[] =
    "UPDATE deliveries SET state = 'cancelled', wait_us = NULL, next_attempt = NULL,"
    " last_text = 'approval expired', updated_at = NOW(6), done_at = NOW(6)"
    " WHERE job_id = ? AND state = 'held'";
static const char SQL_JOBCTL_EXPIRE[] =
    "UPDATE jobs SET state = 'expired', finished_at = NOW(6) WHERE id = ?";
static const char SQL_JOBCTL_PAUSE_DLV[] =
    "UPDATE deliveries SET wait_us = TIMESTAMPDIFF(MICROSECOND, FROM_UNIXTIME(?), next_attempt),"
    " state = 'paused', next_attempt = NULL, lease_owner = NULL, lease_until = NULL,"
    " updated_at = NOW(6) WHERE job_id = ? AND state IN ('queued', 'deferred')" NOT_LEASED;
static const char SQL_JOBCTL_RESUME_DLV[] =
    "UPDATE deliveries SET state = 'queued', next_attempt = GREATEST(NOW(6),"
    " FROM_UNIXTIME(?) + INTERVAL COALESCE(wait_us, 0) MICROSECOND), wait_us = NULL,"
    " updated_at = NOW(6) WHERE job_id = ? AND state = 'paused'";
static const char SQL_JOBCTL_STATE[] = "UPDATE jobs SET state = ? WHERE id = ?";
static const char SQL_JOBCTL_CANCEL_LOG[] =
    "INSERT INTO delivery_log (delivery_id, job_id, at, attempt, outcome, stage, text,"
    " destination, gateway)"
    " SELECT id, job_id, NOW(6), attempts, 'cancelled', '', 'job cancelled', dest, ? FROM deliveries"
    " WHERE job_id = ? AND state IN ('queued', 'deferred', 'held', 'paused')" NOT_LEASED;
static const char SQL_JOBCTL_CANCEL_DLV[] =
    "UPDATE deliveries SET state = 'cancelled', next_attempt = NULL, wait_us = NULL,"
    " lease_owner = NULL, lease_until = NULL, last_text = 'job cancelled', updated_at = NOW(6),"
    " done_at = NOW(6) WHERE job_id = ? AND state IN ('queued', 'deferred', 'held', 'paused')" NOT_LEASED;
static const char SQL_JOBCTL_CANCEL[] =
    "UPDATE jobs SET state = 'cancelled', finished_at = NOW(6) WHERE id = ?";
static const char SQL_JOBCTL_MOVE_DLV[] =
    "UPDATE deliveries SET next_attempt = FROM_UNIXTIME(?) + INTERVAL"
    " GREATEST(0, TIMESTAMPDIFF(MICROSECOND, FROM_UNIXTIME(?), next_attempt)) MICROSECOND,"
    " updated_at = NOW(6) WHERE job_id = ? AND state = 'queued' AND attempts = 0" NOT_LEASED;
static const char SQL_JOBCTL_SEND_AT[] = "UPDATE jobs SET send_at = FROM_UNIXTIME(?) WHERE id = ?";
static const char SQL_JOBCTL_WAITING[] =
    "SELECT COUNT(*) FROM deliveries WHERE job_id = ? AND state IN ('held', 'paused')";
static const char SQL_JOBCTL_EXPIRED_LIST[] =
    "SELECT id FROM jobs WHERE state = 'held' AND hold_expires <= NOW(6) ORDER BY id LIMIT 100";
/* In-flight rows of a paused or ended job that came back to wait (a 4xx,
 * or a lease that ran out) are held back or cancelled like the others. */
static const char SQL_JOBCTL_SWEEP[] =
    "UPDATE deliveries d JOIN jobs j ON j.id = d.job_id"
    " SET d.wait_us = IF(j.state = 'paused', TIMESTAMPDIFF(MICROSECOND, j.send_at, d.next_attempt), NULL),"
    " d.done_at = IF(j.state = 'paused', NULL, NOW(6)),"
    " d.state = IF(j.state = 'paused', 'paused', 'cancelled'), d.next_attempt = NULL,"
    " d.updated_at = NOW(6)"
    " WHERE (j.state = 'paused' OR (j.state IN ('cancelled', 'expired')"
    "   AND j.finished_at > NOW(6) - INTERVAL 1 DAY)) AND d.state IN ('queued', 'deferred')"
    " AND (d.lease_until IS NULL OR d.lease_until <= NOW(6))";

struct locked_job {
	char code[33];
	double expires, send_at, now;
};

/* Start a transaction and lock the job row: 1 locked, 0 no such job
 * (transaction ended), <0 error (transaction ended). */
static int
jobctl_begin(struct store *s, uint64_t id, struct store_jobctl_result *out, struct locked_job *lj)
{
	BINDS(p);
	BINDS(r);
	MYSQL_STMT *st;
	int rc, f;

	memset(out, 0, sizeof(*out));
	out->job_id = id;
	if ((rc = tx_begin(s)) != STORE_OK)
		return rc;
	bind_u64(&p, &id);
	if (!(st = run(s, SQL_JOBCTL_LOCK, &p, &rc, "job lock")))
		return tx_abort(s, rc);
	bind_u64(&r, &out->job_id);
	bind_out(&r, out->state, sizeof(out->state));
	bind_out(&r, out->submitter, sizeof(out->submitter));
	bind_out(&r, lj->code, sizeof(lj->code));
	bind_dbl(&r, &lj->expires);
	bind_dbl(&r, &lj->send_at);
	bind_dbl(&r, &lj->now);
	f = fetch(s, st, &r, "job lock");
	mysql_stmt_free_result(st);
	out->send_at = lj->send_at;
	if (f <= 0) {
		out->status = JOBCTL_NO_JOB;
		return tx_abort(s, f);
	}
	return 1;
}

/* End the transaction: commit when the call did something. */
static int
jobctl_end(struct store *s, struct store_jobctl_result *out, int rc)
{
	if (rc == STORE_OK && out->status != JOBCTL_DONE && out->status != JOBCTL_EXPIRED)
		return tx_abort(s, STORE_OK);
	if (rc == STORE_OK && (rc = tx_commit(s)) == STORE_OK)
		return STORE_OK;
	out->changed = out->in_flight = 0;
	return tx_abort(s, rc);
}

/* Run a statement on the job (params: the given u64 last); *n rows changed. */
static int
jobctl_exec(struct store *s, const char *sql, struct binds *p, const uint64_t *id, size_t *n)
{
	MYSQL_STMT *st;
	int rc;

	if (id)
		bind_u64(p, id);
	if (!(st = run(s, sql, p, &rc, "job control")))
		return rc;
	if (n)
		*n = (size_t)mysql_stmt_affected_rows(st);
	return STORE_OK;
}

/* A count of the job's deliveries by one of the counting statements above. */
static int
jobctl_count(struct store *s, const char *sql, uint64_t id, size_t *n)
{
	BINDS(p);
	BINDS(r);
	MYSQL_STMT *st;
	int rc, f, k = 0;

	bind_u64(&p, &id);
	if (!(st = run(s, sql, &p, &rc, "job count")))
		return rc;
	bind_int(&r, &k);
	f = fetch(s, st, &r, "job count");
	mysql_stmt_free_result(st);
	*n = (size_t)k;
	return f < 0 ? f : STORE_OK;
}

static int
jobctl_in_flight(struct store *s, uint64_t id, size_t *n)
{
	return jobctl_count(s, SQL_JOBCTL_IN_FLIGHT, id, n);
}

static bool
state_is(const struct store_jobctl_result *out, const char *a, const char *b)
{
	return strcmp(out->state, a) == 0 || (b && strcmp(out->state, b) == 0);
}

/* Held past its time: expire it (inside the transaction). */
static int
expire_job(struct store *s, uint64_t id, size_t *n)
{
	BINDS(p);
	int rc;

	if ((rc = jobctl_exec(s, SQL_JOBCTL_EXPIRE_DLV, &p, &id, n)) != STORE_OK)
		return rc;
	p.n = 0;
	return jobctl_exec(s, SQL_JOBCTL_EXPIRE, &p, &id, NULL);
}

static bool
codes_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char d = la != lb;

	/* Constant time over the stored code: a reply cannot guess it by timing. */
	for (size_t i = 0; i < la; i++)
		d |= (unsigned char)(a[i] ^ (i < lb ? b[i] : 0));
	return d == 0;
}

static int
approve_locked(struct store *s, uint64_t id, const char *code, const char *by,
    struct store_jobctl_result *out, const struct locked_job *lj)
{
	double base = lj->send_at > lj->now ? lj->send_at : lj->now;
	BINDS(p);
	int rc;

	if (!state_is(out, "held", NULL)) {
		out->status = state_is(out, "expired", NULL) ? JOBCTL_EXPIRED : JOBCTL_STATE;
		return STORE_OK;
	}
	if (code && (!*lj->code || !codes_equal(lj->code, code))) {
		out->status = JOBCTL_BAD_CODE;
		return STORE_OK;
	}
	if (lj->expires > 0 && lj->expires <= lj->now) {
		out->status = JOBCTL_EXPIRED;
		return expire_job(s, id, &out->changed);
	}
	bind_dbl(&p, &base);
	if ((rc = jobctl_exec(s, SQL_JOBCTL_RELEASE, &p, &id, &out->changed)) != STORE_OK)
		return rc;
	p.n = 0;
	bind_str(&p, by);
	bind_dbl(&p, &base);
	out->send_at = base;
	return jobctl_exec(s, SQL_JOBCTL_APPROVED, &p, &id, NULL);
}

int
store_job_approve(struct store *s, uint64_t id, const char *code, const char *by,
    struct store_jobctl_result *out)
{
	struct locked_job lj;
	int rc;

	if ((rc = jobctl_begin(s, id, out, &lj)) <= 0)
		return rc;
	return jobctl_end(s, out, approve_locked(s, id, code, by, out, &lj));
}

int
store_job_approve_code(struct store *s, const char *submitter, const char *code, const char *by,
    struct store_jobctl_result *out)
{
	BINDS(p);
	BINDS(r);
	uint64_t id = 0;
	MYSQL_STMT *st;
	int rc, f;

	memset(out, 0, sizeof(*out));
	bind_str(&p, code);
	bind_str(&p, submitter);
	if (!(st = run_read(s, SQL_JOBCTL_BY_CODE, &p, &rc, "confirmation code")))
		return rc;
	bind_u64(&r, &id);
	f = fetch(s, st, &r, "confirmation code");
	mysql_stmt_free_result(st);
	if (f <= 0) {
		out->status = JOBCTL_NO_JOB;
		return f < 0 ? f : STORE_OK;
	}
	return store_job_approve(s, id, code, by, out);
}

int
store_job_pause(struct store *s, uint64_t id, struct store_jobctl_result *out)
{
	struct locked_job lj;
	BINDS(p);
	int rc;

	if ((rc = jobctl_begin(s, id, out, &lj)) <= 0)
		return rc;
	if (!state_is(out, "queued", "sending")) {
		out->status = JOBCTL_STATE;
		return jobctl_end(s, out, STORE_OK);
	}
	bind_dbl(&p, &lj.send_at);
	if ((rc = jobctl_exec(s, SQL_JOBCTL_PAUSE_DLV, &p, &id, &out->changed)) == STORE_OK &&
	    (rc = jobctl_in_flight(s, id, &out->in_flight)) == STORE_OK) {
		p.n = 0;
		bind_str(&p, "paused");
		rc = jobctl_exec(s, SQL_JOBCTL_STATE, &p, &id, NULL);
	}
	return jobctl_end(s, out, rc);
}

int
store_job_resume(struct store *s, uint64_t id, struct store_jobctl_result *out)
{
	struct locked_job lj;
	BINDS(p);
	int rc;

	if ((rc = jobctl_begin(s, id, out, &lj)) <= 0)
		return rc;
	if (!state_is(out, "paused", NULL)) {
		out->status = JOBCTL_STATE;
		return jobctl_end(s, out, STORE_OK);
	}
	bind_dbl(&p, &lj.send_at);
	if ((rc = jobctl_exec(s, SQL_JOBCTL_RESUME_DLV, &p, &id, &out->changed)) == STORE_OK &&
	    (rc = jobctl_in_flight(s, id, &out->in_flight)) == STORE_OK) {
		p.n = 0;
		bind_str(&p, "sending");
		if ((rc = jobctl_exec(s, SQL_JOBCTL_STATE, &p, &id, NULL)) == STORE_OK)
			rc = jobs_done(s, &id, 1);	/* nothing was left to send */
	}
	return jobctl_end(s, out, rc);
}

int
store_job_cancel(struct store *s, const char *owner, uint64_t id, struct store_jobctl_result *out)
{
	struct locked_job lj;
	BINDS(p);
	int rc;

	if ((rc = jobctl_begin(s, id, out, &lj)) <= 0)
		return rc;
	if (!state_is(out, "queued", "sending") && !state_is(out, "held", "paused")) {
		out->status = JOBCTL_STATE;
		return jobctl_end(s, out, STORE_OK);
	}
	bind_str(&p, owner);
	if ((rc = jobctl_exec(s, SQL_JOBCTL_CANCEL_LOG, &p, &id, NULL)) == STORE_OK) {
		p.n = 0;
		rc = jobctl_exec(s, SQL_JOBCTL_CANCEL_DLV, &p, &id, &out->changed);
	}
	if (rc == STORE_OK && (rc = jobctl_in_flight(s, id, &out->in_flight)) == STORE_OK) {
		p.n = 0;
		rc = jobctl_exec(s, SQL_JOBCTL_CANCEL, &p, &id, NULL);
	}
	return jobctl_end(s, out, rc);
}

int
store_job_reschedule(struct store *s, uint64_t id, double when, struct store_jobctl_result *out)
{
	struct locked_job lj;
	size_t held = 0;
	BINDS(p);
	int rc;

	if ((rc = jobctl_begin(s, id, out, &lj)) <= 0)
		return rc;
	if (!state_is(out, "queued", "sending") && !state_is(out, "held", "paused")) {
		out->status = JOBCTL_STATE;
		return jobctl_end(s, out, STORE_OK);
	}
	if (when < lj.now)
		when = lj.now;
	/* Held and paused rows keep wait_us from send_at: they move with it. */
	bind_dbl(&p, &when);
	bind_dbl(&p, &lj.send_at);
	if ((rc = jobctl_exec(s, SQL_JOBCTL_MOVE_DLV, &p, &id, &out->changed)) == STORE_OK) {
		p.n = 0;
		bind_dbl(&p, &when);
		rc = jobctl_exec(s, SQL_JOBCTL_SEND_AT, &p, &id, NULL);
		out->send_at = when;
	}
	if (rc == STORE_OK && (rc = jobctl_count(s, SQL_JOBCTL_WAITING, id, &held)) == STORE_OK)
		rc = jobctl_in_flight(s, id, &out->in_flight);
	out->changed += held;	/* they move too, by send_at */
	return jobctl_end(s, out, rc);
}

static int
expire_one(struct store *s, uint64_t id, bool *expired)
{
	struct store_jobctl_result out;
	struct locked_job lj;
	int rc;

	*expired = false;
	if ((rc = jobctl_begin(s, id, &out, &lj)) <= 0)
		return rc;
	/* Approved or cancelled meanwhile: nothing to do. */
	if (!state_is(&out, "held", NULL) || lj.expires <= 0 || lj.expires > lj.now) {
		out.status = JOBCTL_STATE;
		return jobctl_end(s, &out, STORE_OK);
	}
	out.status = JOBCTL_EXPIRED;
	if ((rc = jobctl_end(s, &out, expire_job(s, id, &out.changed))) == STORE_OK) {
		*expired = true;
		log_notice("job=%llu submitter=%s status=expired deliveries=%zu reason=\"not approved in time\"",
		    (unsigned long long)id, out.submitter, out.changed);
	}
	return rc;
}

int
store_jobs_maintain(struct store *s, size_t *expired)
{
	BINDS(r);
	uint64_t ids[100], id = 0;
	size_t n = 0;
	MYSQL_STMT *st;
	bool done;
	int rc, f = 0;

	*expired = 0;
	if (!(st = run_read(s, SQL_JOBCTL_EXPIRED_LIST, NULL, &rc, "held jobs")))
		return rc;
	bind_u64(&r, &id);
	while (n < 100 && (f = fetch(s, st, &r, "held jobs")) == 1)
		ids[n++] = id;
	mysql_stmt_free_result(st);
	if (f < 0)
		return f;
	for (size_t i = 0; i < n; i++) {
		if ((rc = expire_one(s, ids[i], &done)) != STORE_OK)
			return rc;
		*expired += done;
	}
	run(s, SQL_JOBCTL_SWEEP, NULL, &rc, "job sweep");
	return rc;
}

void
store_jobctl_describe(const char *verb, const struct store_jobctl_result *r, char *buf, size_t size)
{
	unsigned long long id = (unsigned long long)r->job_id;

	switch (r->status) {
	case JOBCTL_NO_JOB:
		snprintf(buf, size, "no job %llu", id);
		break;
	case JOBCTL_STATE:
		snprintf(buf, size, "job %llu is %s", id, r->state);
		break;
	case JOBCTL_BAD_CODE:
		snprintf(buf, size, "job %llu: that is not its confirmation code", id);
		break;
	case JOBCTL_EXPIRED:
		snprintf(buf, size, "job %llu expired: it was not approved in time", id);
		break;
	default:
		snprintf(buf, size, "job %llu %s: %zu deliveries %s, %zu in flight", id, verb, r->changed,
		    strcmp(verb, "paused") == 0 ? "held back" : strcmp(verb, "cancelled") == 0 ? "cancelled" :
		    strcmp(verb, "rescheduled") == 0 ? "moved" : "queued", r->in_flight);
	}
}

/* ---- hatoctl ---- */

#define JOB_ROW_SELECT \
    "SELECT j.id, j.submitter, LEFT(j.subject, 60), j.state," \
    " DATE_FORMAT(j.created_at, '%Y-%m-%d %H:%i:%s'), COUNT(d.id)," \
    " COALESCE(SUM(d.state = 'queued'), 0), COALESCE(SUM(d.state = 'deferred'), 0)," \
    " COALESCE(SUM(d.state = 'sent'), 0), COALESCE(SUM(d.state = 'failed'), 0)" \
    " FROM jobs j LEFT JOIN deliveries d ON d.job_id = j.id"
static const char SQL_JOBS[] = JOB_ROW_SELECT " GROUP BY j.id ORDER BY j.id";
static const char SQL_JOB_ROW[] = JOB_ROW_SELECT " WHERE j.id = ? GROUP BY j.id";

static void
bind_job_row(struct binds *r, struct store_job_row *row)
{
	bind_u64(r, &row->id);
	bind_out(r, row->submitter, sizeof(row->submitter));
	bind_out(r, row->subject, sizeof(row->subject));
	bind_out(r, row->state, sizeof(row->state));
	bind_out(r, row->created, sizeof(row->created));
	bind_int(r, (int *)&row->total);
	bind_int(r, (int *)&row->queued);
	bind_int(r, (int *)&row->deferred);
	bind_int(r, (int *)&row->sent);
	bind_int(r, (int *)&row->failed);
}

int
store_jobs_each(struct store *s, int (*cb)(void *, const struct store_job_row *), void *arg)
{
	BINDS(r);
	struct store_job_row row;
	MYSQL_STMT *st;
	int rc, f;

	if (!(st = run(s, SQL_JOBS, NULL, &rc, "jobs")))
		return rc;
	bind_job_row(&r, &row);
	while ((f = fetch(s, st, &r, "jobs")) == 1)
		if (cb(arg, &row))
			break;
	mysql_stmt_free_result(st);
	return f < 0 ? f : STORE_OK;
}

int
store_job_row_get(struct store *s, uint64_t id, struct store_job_row *row, bool *found)
{
	BINDS(p);
	BINDS(r);
	MYSQL_STMT *st;
	int rc, f;

	*found = false;
	bind_u64(&p, &id);
	if (!(st = run(s, SQL_JOB_ROW, &p, &rc, "job")))
		return rc;
	bind_job_row(&r, row);
	f = fetch(s, st, &r, "job");
	mysql_stmt_free_result(st);
	*found = f == 1;
	return f < 0 ? f : STORE_OK;
}

static const char SQL_DELIVERIES[] =
    "SELECT id, address, state, attempts, COALESCE(last_code, -1), COALESCE(last_status, ''),"
    " COALESCE(last_text, ''), DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s')"
    " FROM deliveries WHERE job_id = ? ORDER BY id";

int
store_deliveries_each(struct store *s, uint64_t job_id,
    int (*cb)(void *, const struct store_delivery_row *), void *arg)
{
	BINDS(p);
	BINDS(r);
	struct store_delivery_row row;
	MYSQL_STMT *st;
	int rc, f;

	bind_u64(&p, &job_id);
	if (!(st = run(s, SQL_DELIVERIES, &p, &rc, "deliveries")))
		return rc;
	bind_u64(&r, &row.id);
	bind_out(&r, row.address, sizeof(row.address));
	bind_out(&r, row.state, sizeof(row.state));
	bind_int(&r, (int *)&row.attempts);
	bind_int(&r, &row.code);
	bind_out(&r, row.status, sizeof(row.status));
	bind_out(&r, row.text, sizeof(row.text));
	bind_out(&r, row.updated, sizeof(row.updated));
	while ((f = fetch(s, st, &r, "deliveries")) == 1)
		if (cb(arg, &row))
			break;
	mysql_stmt_free_result(st);
	return f < 0 ? f : STORE_OK;
}

static const char SQL_QUEUES[] =
    "SELECT k.dest, COALESCE(q.queued, 0), COALESCE(q.leased, 0), COALESCE(q.deferred, 0),"
    " COALESCE(p.factor, 1),"
    " COALESCE(IF(p.suspended_until > NOW(6), DATE_FORMAT(p.suspended_until, '%Y-%m-%d %H:%i:%s'), ''), ''),"
    " COALESCE(p.reason, ''),"
    " COALESCE((SELECT CONCAT(COALESCE(l.code, ''), ' ', COALESCE(l.text, '')) FROM delivery_log l"
    "   WHERE l.destination = k.dest ORDER BY l.id DESC LIMIT 1), '')"
    " FROM (SELECT dest FROM deliveries WHERE next_attempt IS NOT NULL GROUP BY dest"
    "   UNION SELECT dest FROM pace_state) k"
    " LEFT JOIN (SELECT dest,"
    "   SUM(state = 'queued' AND (lease_until IS NULL OR lease_until <= NOW(6))) AS queued,"
    "   SUM(lease_until > NOW(6)) AS leased,"
    "   SUM(state = 'deferred' AND (lease_until IS NULL OR lease_until <= NOW(6))) AS deferred"
    "   FROM deliveries WHERE next_attempt IS NOT NULL GROUP BY dest) q ON q.dest = k.dest"
    " LEFT JOIN pace_state p ON p.dest = k.dest ORDER BY k.dest";

int
store_queues_each(struct store *s, int (*cb)(void *, const struct store_queue_row *), void *arg)
{
	BINDS(r);
	struct store_queue_row row;
	MYSQL_STMT *st;
	int rc, f;

	if (!(st = run(s, SQL_QUEUES, NULL, &rc, "queues")))
		return rc;
	bind_out(&r, row.dest, sizeof(row.dest));
	bind_int(&r, (int *)&row.queued);
	bind_int(&r, (int *)&row.leased);
	bind_int(&r, (int *)&row.deferred);
	bind_dbl(&r, &row.factor);
	bind_out(&r, row.suspended_until, sizeof(row.suspended_until));
	bind_out(&r, row.reason, sizeof(row.reason));
	bind_out(&r, row.last_reply, sizeof(row.last_reply));
	while ((f = fetch(s, st, &r, "queues")) == 1)
		if (cb(arg, &row))
			break;
	mysql_stmt_free_result(st);
	return f < 0 ? f : STORE_OK;
}

/* ---- hatoctl: the send log and traces ---- */

#define LOG_ROW_SELECT \
    "SELECT l.id, DATE_FORMAT(l.at, '%Y-%m-%d %H:%i:%s.%f'), l.job_id, l.delivery_id," \
    " COALESCE(d.address, ''), l.destination, l.host, l.outcome, l.attempt, COALESCE(l.code, -1)," \
    " COALESCE(l.status, ''), COALESCE(l.text, ''), COALESCE(l.class, '')," \
    " COALESCE(TIMESTAMPDIFF(MICROSECOND, d.created_at, l.at) / 1e6, 0)" \
    " FROM delivery_log l LEFT JOIN deliveries d ON d.id = l.delivery_id"
/*
 * One statement per most selective filter, so that each reads through its
 * index (the address's deliveries, a delivery's or a job's log rows, or
 * the primary key from an id on) instead of the whole log backwards; the
 * other filters then apply to the rows found. The parameters are the same
 * for all: the key of the first condition, then the general ones.
 */
#define LOG_FILTERS \
    " AND l.id > ? AND (? = 0 OR l.job_id = ?) AND (? = 0 OR l.delivery_id = ?)" \
    " AND (? = '' OR d.address = ?)"
#define LOG_BY_ADDR LOG_ROW_SELECT " WHERE d.address = ?" LOG_FILTERS
#define LOG_BY_DLV LOG_ROW_SELECT " WHERE l.delivery_id = ?" LOG_FILTERS
#define LOG_BY_JOB LOG_ROW_SELECT " WHERE l.job_id = ?" LOG_FILTERS
#define LOG_BY_ID LOG_ROW_SELECT " WHERE l.id > ?" LOG_FILTERS
/* The newest rows (the caller turns them round), or the rows after an id. */
#define LOG_TAIL " ORDER BY l.id DESC LIMIT ?"
#define LOG_AFTER " ORDER BY l.id LIMIT ?"
static const char SQL_LOG_ADDR_TAIL[] = LOG_BY_ADDR LOG_TAIL;
static const char SQL_LOG_ADDR_AFTER[] = LOG_BY_ADDR LOG_AFTER;
static const char SQL_LOG_DLV_TAIL[] = LOG_BY_DLV LOG_TAIL;
static const char SQL_LOG_DLV_AFTER[] = LOG_BY_DLV LOG_AFTER;
static const char SQL_LOG_JOB_TAIL[] = LOG_BY_JOB LOG_TAIL;
static const char SQL_LOG_JOB_AFTER[] = LOG_BY_JOB LOG_AFTER;
static const char SQL_LOG_TAIL[] = LOG_BY_ID LOG_TAIL;
static const char SQL_LOG_AFTER[] = LOG_BY_ID LOG_AFTER;

int
store_log_each(struct store *s, const struct store_log_filter *f, bool newest,
    int (*cb)(void *, const struct store_log_row *), void *arg)
{
	BINDS(p);
	BINDS(r);
	struct store_log_row row;
	const char *addr = f->address ? f->address : "";
	int limit = (int)f->limit, rc, k;
	const char *sql;
	MYSQL_STMT *st;

	if (*addr) {
		bind_str(&p, addr);
		sql = newest ? SQL_LOG_ADDR_TAIL : SQL_LOG_ADDR_AFTER;
	} else if (f->delivery_id) {
		bind_u64(&p, &f->delivery_id);
		sql = newest ? SQL_LOG_DLV_TAIL : SQL_LOG_DLV_AFTER;
	} else if (f->job_id) {
		bind_u64(&p, &f->job_id);
		sql = newest ? SQL_LOG_JOB_TAIL : SQL_LOG_JOB_AFTER;
	} else {
		bind_u64(&p, &f->after_id);
		sql = newest ? SQL_LOG_TAIL : SQL_LOG_AFTER;
	}
	bind_u64(&p, &f->after_id);
	bind_u64(&p, &f->job_id);
	bind_u64(&p, &f->job_id);
	bind_u64(&p, &f->delivery_id);
	bind_u64(&p, &f->delivery_id);
	bind_str(&p, addr);
	bind_str(&p, addr);
	bind_int(&p, &limit);
	if (!(st = run_read(s, sql, &p, &rc, "send log")))
		return rc;
	bind_u64(&r, &row.id);
	bind_out(&r, row.at, sizeof(row.at));
	bind_u64(&r, &row.job_id);
	bind_u64(&r, &row.delivery_id);
	bind_out(&r, row.address, sizeof(row.address));
	bind_out(&r, row.dest, sizeof(row.dest));
	bind_out(&r, row.host, sizeof(row.host));
	bind_out(&r, row.outcome, sizeof(row.outcome));
	bind_int(&r, (int *)&row.attempt);
	bind_int(&r, &row.code);
	bind_out(&r, row.status, sizeof(row.status));
	bind_out(&r, row.text, sizeof(row.text));
	bind_out(&r, row.bclass, sizeof(row.bclass));
	bind_dbl(&r, &row.queue_s);
	while ((k = fetch(s, st, &r, "send log")) == 1)
		if (cb(arg, &row))
			break;
	mysql_stmt_free_result(st);
	return k < 0 ? k : STORE_OK;
}

static const char SQL_JOB_SENT_SINCE[] =
    "SELECT COUNT(*) FROM delivery_log WHERE job_id = ? AND outcome = 'sent'"
    " AND at > NOW(6) - INTERVAL ? SECOND";

int
store_job_sent_since(struct store *s, uint64_t job_id, int seconds, unsigned *n)
{
	BINDS(p);
	BINDS(r);
	MYSQL_STMT *st;
	int rc, f;

	*n = 0;
	bind_u64(&p, &job_id);
	bind_int(&p, &seconds);
	if (!(st = run_read(s, SQL_JOB_SENT_SINCE, &p, &rc, "job rate")))
		return rc;
	bind_int(&r, (int *)n);
	f = fetch(s, st, &r, "job rate");
	mysql_stmt_free_result(st);
	return f < 0 ? f : STORE_OK;
}

static const char SQL_TRACE_DELIVERIES[] =
    "SELECT d.id, d.job_id, d.address, d.dest, d.state, d.attempts, COALESCE(d.last_code, -1),"
    " COALESCE(d.last_status, ''), COALESCE(d.last_text, ''),"
    " DATE_FORMAT(d.created_at, '%Y-%m-%d %H:%i:%s'), DATE_FORMAT(d.updated_at, '%Y-%m-%d %H:%i:%s'),"
    " j.submitter, LEFT(j.subject, 60), COALESCE(j.source_msgid, '')"
    " FROM deliveries d JOIN jobs j ON j.id = d.job_id"
    " WHERE (? <> '' AND d.address = ?) OR (? <> 0 AND d.id = ?) OR (? <> 0 AND d.job_id = ?)"
    " ORDER BY d.id";

int
store_trace_deliveries_each(struct store *s, const char *address, uint64_t delivery_id, uint64_t job_id,
    int (*cb)(void *, const struct store_trace_delivery *), void *arg)
{
	BINDS(p);
	BINDS(r);
	struct store_trace_delivery row;
	const char *addr = address ? address : "";
	MYSQL_STMT *st;
	int rc, f;

	bind_str(&p, addr);
	bind_str(&p, addr);
	bind_u64(&p, &delivery_id);
	bind_u64(&p, &delivery_id);
	bind_u64(&p, &job_id);
	bind_u64(&p, &job_id);
	if (!(st = run_read(s, SQL_TRACE_DELIVERIES, &p, &rc, "trace")))
		return rc;
	bind_u64(&r, &row.id);
	bind_u64(&r, &row.job_id);
	bind_out(&r, row.address, sizeof(row.address));
	bind_out(&r, row.dest, sizeof(row.dest));
	bind_out(&r, row.state, sizeof(row.state));
	bind_int(&r, (int *)&row.attempts);
	bind_int(&r, &row.code);
	bind_out(&r, row.status, sizeof(row.status));
	bind_out(&r, row.text, sizeof(row.text));
	bind_out(&r, row.created, sizeof(row.created));
	bind_out(&r, row.updated, sizeof(row.updated));
	bind_out(&r, row.submitter, sizeof(row.submitter));
	bind_out(&r, row.subject, sizeof(row.subject));
	bind_out(&r, row.source_msgid, sizeof(row.source_msgid));
	while ((f = fetch(s, st, &r, "trace")) == 1)
		if (cb(arg, &row))
			break;
	mysql_stmt_free_result(st);
	return f < 0 ? f : STORE_OK;
}

static const char SQL_TRACE_FAILURES[] =
    "SELECT DATE_FORMAT(at, '%Y-%m-%d %H:%i:%s'), DATE_FORMAT(day, '%Y-%m-%d'), class, source,"
    " COALESCE(delivery_id, 0), COALESCE(reply, '') FROM address_failures WHERE address = ? ORDER BY id";

int
store_address_failures_each(struct store *s, const char *address,
    int (*cb)(void *, const struct store_failure_row *), void *arg)
{
	BINDS(p);
	BINDS(r);
	struct store_failure_row row;
	MYSQL_STMT *st;
	int rc, f;

	bind_str(&p, address);
	if (!(st = run_read(s, SQL_TRACE_FAILURES, &p, &rc, "address failures")))
		return rc;
	bind_out(&r, row.at, sizeof(row.at));
	bind_out(&r, row.day, sizeof(row.day));
	bind_out(&r, row.bclass, sizeof(row.bclass));
	bind_out(&r, row.source, sizeof(row.source));
	bind_u64(&r, &row.delivery_id);
	bind_out(&r, row.reply, sizeof(row.reply));
	while ((f = fetch(s, st, &r, "address failures")) == 1)
		if (cb(arg, &row))
			break;
	mysql_stmt_free_result(st);
	return f < 0 ? f : STORE_OK;
}

static const char SQL_SUPPRESSION_GET[] =
    "SELECT address, reason, DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s'),"
    " COALESCE(last_reply, ''), COALESCE(delivery_id, 0) FROM suppressions WHERE address = ?";

int
store_suppression_get(struct store *s, const char *address, struct store_suppression_row *row, bool *found)
{
	BINDS(p);
	BINDS(r);
	MYSQL_STMT *st;
	int rc, f;

	*found = false;
	bind_str(&p, address);
	if (!(st = run_read(s, SQL_SUPPRESSION_GET, &p, &rc, "suppression")))
		return rc;
	bind_out(&r, row->address, sizeof(row->address));
	bind_out(&r, row->reason, sizeof(row->reason));
	bind_out(&r, row->created, sizeof(row->created));
	bind_out(&r, row->last_reply, sizeof(row->last_reply));
	bind_u64(&r, &row->delivery_id);
	f = fetch(s, st, &r, "suppression");
	mysql_stmt_free_result(st);
	*found = f == 1;
	return f < 0 ? f : STORE_OK;
}

static const char SQL_JOB_BY_MSGID[] =
    "SELECT id FROM jobs WHERE source_msgid = ? OR source_msgid = ? ORDER BY id";

int
store_jobs_by_msgid_each(struct store *s, const char *msgid, int (*cb)(void *, uint64_t), void *arg)
{
	BINDS(p);
	BINDS(r);
	char bracketed[300];
	uint64_t id = 0;
	MYSQL_STMT *st;
	int rc, f;

	/* Stored as the Message-ID header had it: with or without <>. */
	snprintf(bracketed, sizeof(bracketed), "<%s>", msgid);
	bind_str(&p, msgid);
	bind_str(&p, bracketed);
	if (!(st = run_read(s, SQL_JOB_BY_MSGID, &p, &rc, "job by Message-ID")))
		return rc;
	bind_u64(&r, &id);
	while ((f = fetch(s, st, &r, "job by Message-ID")) == 1)
		if (cb(arg, id))
			break;
	mysql_stmt_free_result(st);
	return f < 0 ? f : STORE_OK;
}

/* ---- the gateway's status page and metrics ---- */

/*
 * The jobs worth watching: those not finished, then those finished in the
 * last hour. Each job's deliveries are counted through deliveries_job
 * (job_id, state), its last minute of sends through delivery_log_job.
 */
static const char SQL_STATUS_JOBS[] =
    "SELECT j.id, j.kind, j.submitter, LEFT(j.subject, 120), j.state,"
    " DATE_FORMAT(j.created_at, '%Y-%m-%dT%H:%i:%sZ'), DATE_FORMAT(j.send_at, '%Y-%m-%dT%H:%i:%sZ'),"
    " COUNT(d.id), COALESCE(SUM(d.state = 'queued'), 0), COALESCE(SUM(d.state = 'deferred'), 0),"
    " COALESCE(SUM(d.state = 'sent'), 0), COALESCE(SUM(d.state = 'failed'), 0),"
    " COALESCE(SUM(d.state IN ('held', 'paused')), 0),"
    " (SELECT COUNT(*) FROM delivery_log l WHERE l.job_id = j.id AND l.outcome = 'sent'"
    "   AND l.at > NOW(6) - INTERVAL 60 SECOND)"
    " FROM (SELECT id FROM jobs WHERE state NOT IN ('done', 'cancelled', 'expired')"
    "   OR finished_at > NOW(6) - INTERVAL 1 HOUR ORDER BY id DESC LIMIT ?) k"
    " JOIN jobs j ON j.id = k.id LEFT JOIN deliveries d ON d.job_id = j.id"
    " GROUP BY j.id ORDER BY (j.state IN ('done', 'cancelled', 'expired')), j.id DESC";

int
store_status_jobs_each(struct store *s, unsigned max,
    int (*cb)(void *, const struct store_status_job *), void *arg)
{
	BINDS(p);
	BINDS(r);
	struct store_status_job row;
	uint64_t lim = max;
	MYSQL_STMT *st;
	int rc, f;

	bind_u64(&p, &lim);
	if (!(st = run_read(s, SQL_STATUS_JOBS, &p, &rc, "status jobs")))
		return rc;
	memset(&row, 0, sizeof(row));
	bind_u64(&r, &row.id);
	bind_out(&r, row.kind, sizeof(row.kind));
	bind_out(&r, row.submitter, sizeof(row.submitter));
	bind_out(&r, row.subject, sizeof(row.subject));
	bind_out(&r, row.state, sizeof(row.state));
	bind_out(&r, row.created, sizeof(row.created));
	bind_out(&r, row.send_at, sizeof(row.send_at));
	bind_int(&r, (int *)&row.total);
	bind_int(&r, (int *)&row.queued);
	bind_int(&r, (int *)&row.deferred);
	bind_int(&r, (int *)&row.sent);
	bind_int(&r, (int *)&row.failed);
	bind_int(&r, (int *)&row.held);
	bind_int(&r, (int *)&row.sent_last_min);
	while ((f = fetch(s, st, &r, "status jobs")) == 1) {
		row.other = row.total - row.queued - row.deferred - row.sent - row.failed - row.held;
		if (cb(arg, &row))
			break;
	}
	mysql_stmt_free_result(st);
	return f < 0 ? f : STORE_OK;
}

static const char SQL_SENDS_PER_MINUTE[] =
    "SELECT destination, FLOOR(UNIX_TIMESTAMP(at) / 60), COUNT(*) FROM delivery_log"
    " WHERE at >= FROM_UNIXTIME(?) AND outcome = 'sent' GROUP BY destination, 2";

int
store_sends_per_minute_each(struct store *s, double since,
    int (*cb)(void *, const char *dest, int64_t minute, unsigned n), void *arg)
{
	BINDS(p);
	BINDS(r);
	char dest[129];
	uint64_t minute = 0;
	unsigned n = 0;
	MYSQL_STMT *st;
	int rc, f;

	bind_dbl(&p, &since);
	if (!(st = run_read(s, SQL_SENDS_PER_MINUTE, &p, &rc, "sends per minute")))
		return rc;
	bind_out(&r, dest, sizeof(dest));
	bind_u64(&r, &minute);
	bind_int(&r, (int *)&n);
	while ((f = fetch(s, st, &r, "sends per minute")) == 1)
		if (cb(arg, dest, (int64_t)minute, n))
			break;
	mysql_stmt_free_result(st);
	return f < 0 ? f : STORE_OK;
}

static const char SQL_LOG_LAST_ID[] = "SELECT COALESCE(MAX(id), 0) FROM delivery_log";

int
store_log_last_id(struct store *s, uint64_t *id)
{
	BINDS(r);
	MYSQL_STMT *st;
	int rc, f;

	*id = 0;
	if (!(st = run_read(s, SQL_LOG_LAST_ID, NULL, &rc, "last log id")))
		return rc;
	bind_u64(&r, id);
	f = fetch(s, st, &r, "last log id");
	mysql_stmt_free_result(st);
	return f < 0 ? f : STORE_OK;
}

static const char SQL_STATUS_FAILURES[] =
    "SELECT l.id, l.job_id, DATE_FORMAT(l.at, '%Y-%m-%dT%H:%i:%sZ'), COALESCE(d.address, ''),"
    " l.destination, l.outcome, COALESCE(l.code, -1), COALESCE(l.status, ''), LEFT(COALESCE(l.text, ''), 200)"
    " FROM delivery_log l LEFT JOIN deliveries d ON d.id = l.delivery_id"
    " WHERE l.id > ? AND l.id <= ? AND l.outcome IN ('failed', 'deferred', 'bounced')"
    " ORDER BY l.id DESC LIMIT ?";

int
store_status_failures_each(struct store *s, uint64_t after, uint64_t upto, unsigned max,
    int (*cb)(void *, const struct store_status_failure *), void *arg)
{
	BINDS(p);
	BINDS(r);
	struct store_status_failure row;
	uint64_t lim = max;
	MYSQL_STMT *st;
	int rc, f;

	bind_u64(&p, &after);
	bind_u64(&p, &upto);
	bind_u64(&p, &lim);
	if (!(st = run_read(s, SQL_STATUS_FAILURES, &p, &rc, "recent failures")))
		return rc;
	bind_u64(&r, &row.id);
	bind_u64(&r, &row.job_id);
	bind_out(&r, row.at, sizeof(row.at));
	bind_out(&r, row.address, sizeof(row.address));
	bind_out(&r, row.dest, sizeof(row.dest));
	bind_out(&r, row.outcome, sizeof(row.outcome));
	bind_int(&r, &row.code);
	bind_out(&r, row.status, sizeof(row.status));
	bind_out(&r, row.text, sizeof(row.text));
	while ((f = fetch(s, st, &r, "recent failures")) == 1)
		if (cb(arg, &row))
			break;
	mysql_stmt_free_result(st);
	return f < 0 ? f : STORE_OK;
}

static const char SQL_JOBS_BY_STATE[] = "SELECT state, COUNT(*) FROM jobs GROUP BY state";

int
store_jobs_by_state_each(struct store *s, int (*cb)(void *, const char *state, uint64_t n), void *arg)
{
	BINDS(r);
	char state[17];
	uint64_t n = 0;
	MYSQL_STMT *st;
	int rc, f;

	if (!(st = run_read(s, SQL_JOBS_BY_STATE, NULL, &rc, "jobs by state")))
		return rc;
	bind_out(&r, state, sizeof(state));
	bind_u64(&r, &n);
	while ((f = fetch(s, st, &r, "jobs by state")) == 1)
		if (cb(arg, state, n))
			break;
	mysql_stmt_free_result(st);
	return f < 0 ? f : STORE_OK;
}
